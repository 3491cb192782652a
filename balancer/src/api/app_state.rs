//! What every HTTP handler shares: the stores, the agent directory, NATS,
//! and the slot that holds the leader's fenced store while this balancer
//! leads.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use async_nats::jetstream;
use tokio::sync::Notify;

use super::admin_token::AdminToken;
use crate::scheduling::directory::Directory;
use crate::state::Store;
use crate::telemetry::rate::Activity;

/// The leader's fenced store while this balancer leads. Every request
/// reads it and only leadership changes write it, so it is an atomic
/// pointer swap (`arc-swap`) rather than a lock.
#[derive(Default)]
pub(crate) struct LeaderSlot(ArcSwapOption<Store>);

impl LeaderSlot {
    pub(crate) fn set(&self, store: Option<Store>) {
        self.0.store(store.map(Arc::new));
    }

    pub(crate) fn get(&self) -> Option<Arc<Store>> {
        self.0.load_full()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    /// Reads only.
    pub store: Store,
    pub leader: Arc<LeaderSlot>,
    pub directory: Arc<Directory>,
    pub js: jetstream::Context,
    pub wake: Arc<Notify>,
    /// What the leader saw end recently (a standby's stays empty).
    pub activity: Arc<Activity>,
    /// Renders `/metrics`; `None` when another recorder owns the process.
    pub prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Guards the state-changing routes.
    pub admin_token: AdminToken,
}
