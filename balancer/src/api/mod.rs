//! The balancer's HTTP API: the stats document, jobs, dead letters,
//! cancel and retry, agents and their draining, the audit, health, the
//! dashboard and Prometheus metrics.
//!
//! Every balancer serves it, leader or standby; the calls that change
//! state (cancel, retry, drain, undrain) need the leader's fenced store
//! and answer 503 on a standby, and they sit behind the [`admin_token`].

mod admin_token;
mod agents;
mod app_state;
mod audit;
mod dashboard;
mod error;
mod fleet;
mod jobs;
mod stats;

use axum::routing::{get, post};
use axum::Router;

pub(crate) use admin_token::AdminToken;
pub(crate) use app_state::{AppState, LeaderSlot};

/// Serves the API on `listener` until the server fails.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> anyhow::Result<()> {
    let writes = Router::new()
        .route("/api/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/jobs/{id}/retry", post(jobs::retry))
        .route("/api/agents/{id}/drain", post(agents::drain))
        .route("/api/agents/{id}/undrain", post(agents::undrain))
        .route_layer(axum::middleware::from_fn_with_state(
            state.admin_token.clone(),
            admin_token::require,
        ));
    let app = Router::new()
        .route("/", get(dashboard::page))
        .route("/api/stream", get(dashboard::stream))
        .route("/healthz", get(fleet::healthz))
        .route("/api/admin/load-balancer", get(fleet::load_balancer))
        .route("/metrics", get(fleet::prometheus_metrics))
        .route("/api/admin/audit", get(fleet::audit_report))
        .route("/api/jobs", get(jobs::list))
        .route("/api/jobs/{id}", get(jobs::one))
        .route("/api/dead", get(jobs::dead_letters))
        .route("/api/agents", get(agents::list))
        .merge(writes)
        .with_state(state);
    axum::serve(listener, app).await?;
    Ok(())
}
