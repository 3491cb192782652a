//! The live dashboard: `GET /` serves one self-contained page (no CDN, no
//! library: the balancer may have no internet), which follows
//! `GET /api/stream`, server-sent events carrying a snapshot every second:
//! the stats document, queue depth by priority, the latest failed
//! attempts and the latest dead letters.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Html;
use fleet_protocol::api::{DeadSummary, Snapshot};
use fleet_protocol::time::now_ms;
use futures::Stream;

use super::app_state::AppState;
use super::stats;

const PAGE: &str = include_str!("dashboard/index.html");
const PERIOD: Duration = Duration::from_secs(1);
const RECENT_DEAD: usize = 10;

pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// One snapshot, or `None` while Redis cannot be read.
async fn snapshot(state: &AppState) -> Option<Snapshot> {
    let now = now_ms();
    let mut doc = stats::collect(&state.store, &state.directory, now)
        .await
        .ok()?;
    stats::add_activity(&mut doc, &state.activity, now);
    let mut dead = Vec::new();
    for id in state.store.dead_letters(RECENT_DEAD).await.ok()? {
        if let Ok(Some(job)) = state.store.job(&id).await {
            dead.push(DeadSummary {
                id,
                kind: job.kind,
                error: job.error,
                attempts: job.attempts.len(),
            });
        }
    }
    Some(Snapshot {
        at_ms: now,
        queue_by_priority: doc.queued_by_priority.clone(),
        stats: doc,
        dead,
        failures: state.activity.failures(),
    })
}

pub(crate) async fn stream(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = futures::stream::unfold((state, true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(PERIOD).await;
        }
        let event = match snapshot(&state).await {
            Some(s) => match serde_json::to_string(&s) {
                Ok(text) => Event::default().event("snapshot").data(text),
                Err(e) => Event::default().comment(format!("cannot encode the snapshot: {e}")),
            },
            None => Event::default().comment("redis unreachable"),
        };
        Some((Ok(event), (state, false)))
    });
    Sse::new(ticks).keep_alive(KeepAlive::default())
}
