//! The balancer's HTTP API: the stats document, jobs, dead letters,
//! cancel and retry, the audit, health.
//!
//! Every balancer serves it, leader or standby; the two calls that change
//! state (cancel, retry) need the leader's fenced store and answer 503 on
//! a standby.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_nats::jetstream;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fleet_protocol::{time::now_ms, ControlMessage, JobResult, JobState, Priority};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::admin_token::{self, AdminToken};
use crate::directory::Directory;
use crate::rate::Activity;
use crate::store::{Cancelled, Store};
use crate::{audit, control, results, stats};

/// The leader's fenced store while this balancer leads.
#[derive(Default)]
pub struct LeaderSlot(RwLock<Option<Store>>);

impl LeaderSlot {
    pub fn set(&self, store: Option<Store>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = store;
    }

    pub fn get(&self) -> Option<Store> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
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

/// Serves the API on `listener` until the server fails.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> anyhow::Result<()> {
    let writes = Router::new()
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/api/jobs/{id}/retry", post(retry))
        .route("/api/agents/{id}/drain", post(drain))
        .route("/api/agents/{id}/undrain", post(undrain))
        .route_layer(axum::middleware::from_fn_with_state(
            state.admin_token.clone(),
            admin_token::require,
        ));
    let app = Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/api/stream", get(crate::dashboard::stream))
        .route("/healthz", get(healthz))
        .route("/api/admin/load-balancer", get(load_balancer))
        .route("/metrics", get(prometheus_metrics))
        .route("/api/admin/audit", get(audit_report))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/dead", get(dead_letters))
        .route("/api/agents", get(agents))
        .merge(writes)
        .with_state(state);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn healthz(State(state): State<AppState>) -> Response {
    let role = if state.leader.get().is_some() {
        "leader"
    } else {
        "standby"
    };
    let mut conn = state.store.conn();
    match redis::cmd("PING").query_async::<String>(&mut conn).await {
        Ok(_) => Json(json!({"status": "ok", "role": role})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "redis unreachable", "role": role, "error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn load_balancer(State(state): State<AppState>) -> Response {
    let now = now_ms();
    match stats::collect(&state.store, &state.directory, now).await {
        Ok(mut doc) => {
            doc.set_activity(&state.activity, now);
            Json(doc).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")),
    }
}

async fn prometheus_metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.prometheus else {
        return error(
            StatusCode::NOT_FOUND,
            "metrics are not recorded in this process".into(),
        );
    };
    let now = now_ms();
    match stats::collect(&state.store, &state.directory, now).await {
        Ok(mut doc) => {
            doc.set_activity(&state.activity, now);
            crate::metrics::fleet_gauges(&doc);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the fleet from Redis"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    )
        .into_response()
}

async fn audit_report(State(state): State<AppState>) -> Response {
    match audit::run(&state.store).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")),
    }
}

async fn job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if let Err(e) = fleet_protocol::is_valid_token(&id) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    match state.store.job(&id).await {
        Ok(Some(h)) => Json(job_view(&h)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")),
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct JobFilter {
    state: Option<String>,
    limit: Option<usize>,
}

async fn jobs(State(state): State<AppState>, Query(q): Query<JobFilter>) -> Response {
    if let Some(s) = q.state.as_deref() {
        if JobState::parse(s).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown state {s:?}: queued, assigned, running, succeeded, dead or cancelled"
                ),
            );
        }
    }
    let limit = q.limit.unwrap_or(50).min(10_000);
    let ids = match state.store.job_ids(q.state.as_deref(), limit).await {
        Ok(ids) => ids,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")),
    };
    let mut list = Vec::with_capacity(ids.len());
    for id in ids {
        match state.store.job(&id).await {
            Ok(Some(h)) => list.push(job_view(&h)),
            Ok(None) => {}
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")),
        }
    }
    Json(json!({ "jobs": list })).into_response()
}

async fn dead_letters(State(state): State<AppState>, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(100).min(10_000);
    let ids = match state.store.dead_letters(limit).await {
        Ok(ids) => ids,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")),
    };
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        match state.store.job(&id).await {
            Ok(Some(h)) => jobs.push(job_view(&h)),
            Ok(None) => {}
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")),
        }
    }
    Json(json!({ "dead": jobs })).into_response()
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if let Err(e) = fleet_protocol::is_valid_token(&id) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let Some(store) = state.leader.get() else {
        return not_leader();
    };
    let now = now_ms();
    match store.cancel(&id, now).await {
        Ok(Cancelled::Done { lease, history }) => {
            if let Some((agent, attempt)) = &lease {
                state.directory.released(agent, &id, false);
                state.wake.notify_one();
                let stop = ControlMessage::Cancel {
                    job_id: id.clone(),
                    attempt: *attempt,
                };
                control::send(&state.js.client(), agent, &stop).await;
            }
            tracing::info!(job_id = %id, "job cancelled by operator");
            crate::metrics::jobs("cancelled", 1);
            let result = JobResult {
                job_id: id.clone(),
                state: JobState::Cancelled,
                result: None,
                error: Some("cancelled by operator".into()),
                agent_id: None,
                attempts: results::history(Some(&history)),
                finished_at_ms: now,
                timing: None,
            };
            results::publish_reliably(&state.js, &result).await;
            Json(json!({"job_id": id, "state": "cancelled"})).into_response()
        }
        Ok(Cancelled::Unknown) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Ok(Cancelled::AlreadyEnded(s)) => {
            error(StatusCode::CONFLICT, format!("job {id} already ended: {s}"))
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn retry(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if let Err(e) = fleet_protocol::is_valid_token(&id) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let Some(store) = state.leader.get() else {
        return not_leader();
    };
    // The result a producer's `wait` would read until the retry ends is
    // the old, dead one: note which it is, to remove it once the job is
    // queued again (and not a newer one, if the retry already finished).
    let results = state
        .js
        .get_stream(fleet_protocol::streams::RESULTS)
        .await
        .ok();
    let subject = fleet_protocol::subjects::result(&id);
    let old_result = match &results {
        Some(stream) => stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .ok()
            .map(|m| m.sequence),
        None => None,
    };
    match store.retry(&id, now_ms()).await {
        Ok(Ok(())) => {
            tracing::info!(job_id = %id, "job re-queued by operator");
            state.wake.notify_one();
            if let (Some(stream), Some(seq)) = (&results, old_result) {
                // Purges this subject's messages below seq + 1: the old
                // result only.
                if let Err(e) = stream.purge().filter(&subject).sequence(seq + 1).await {
                    tracing::warn!(job_id = %id, error = %e, "cannot remove the old result; a wait may return it");
                }
            }
            Json(json!({"job_id": id, "state": "queued"})).into_response()
        }
        Ok(Err(s)) if s == "unknown" => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Ok(Err(s)) => error(
            StatusCode::CONFLICT,
            format!("job {id} is {s}; only dead or cancelled jobs can be retried"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn agents(State(state): State<AppState>) -> Response {
    match stats::collect(&state.store, &state.directory, now_ms()).await {
        Ok(doc) => Json(json!({ "agents": doc.agents })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")),
    }
}

async fn drain(state: State<AppState>, id: Path<String>) -> Response {
    set_draining(state, id, true).await
}

async fn undrain(state: State<AppState>, id: Path<String>) -> Response {
    set_draining(state, id, false).await
}

async fn set_draining(
    State(state): State<AppState>,
    Path(id): Path<String>,
    draining: bool,
) -> Response {
    if let Err(e) = fleet_protocol::is_valid_token(&id) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let Some(store) = state.leader.get() else {
        return not_leader();
    };
    match store.drain(&id, draining).await {
        Ok(true) => {
            state.directory.set_draining(&id, draining);
            state.wake.notify_one();
            tracing::info!(agent_id = %id, draining, "agent drain changed by operator");
            Json(json!({"agent_id": id, "draining": draining})).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no agent {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// A job's Redis hash as the JSON document `fleetctl job` prints.
fn job_view(h: &HashMap<String, String>) -> Value {
    let text = |f: &str| h.get(f).filter(|v| !v.is_empty()).cloned();
    let num = |f: &str| text(f).and_then(|v| v.parse::<u64>().ok());
    let json_field = |f: &str| text(f).and_then(|v| serde_json::from_str::<Value>(&v).ok());
    let priority = |f: &str| {
        num(f)
            .and_then(|r| Priority::from_rank(r as u8))
            .map(|p| p.as_str())
    };
    let attempts = match json_field("history") {
        Some(Value::Array(a)) => Value::Array(a),
        _ => Value::Array(Vec::new()),
    };
    json!({
        "id": text("id"),
        "kind": text("kind"),
        "state": text("state"),
        "priority": priority("rank"),
        "submitted_priority": priority("submitted_rank"),
        "args": json_field("args"),
        "requires": json_field("requires"),
        "timeout_ms": num("timeout_ms"),
        "lease_timeout_ms": num("lease_timeout_ms"),
        "max_attempts": num("max_attempts"),
        "attempt": num("attempt"),
        "agent_id": text("agent"),
        "attempts": attempts,
        "result": json_field("result"),
        "error": text("error"),
        "unschedulable_reason": text("unschedulable_reason"),
        "submitted_at_ms": num("submitted_at"),
        "assigned_at_ms": num("assigned_at"),
        "started_at_ms": num("started_at"),
        "finished_at_ms": num("finished_at"),
    })
}

fn not_leader() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "this balancer is a standby; send this to the leader".into(),
    )
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
