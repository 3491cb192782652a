//! The balancer's HTTP API: the stats document, job lookups, health.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fleet_protocol::{time::now_ms, Priority};
use serde_json::{json, Value};

use crate::directory::Directory;
use crate::stats;
use crate::store::Store;
use crate::Config;

#[derive(Clone)]
struct AppState {
    store: Store,
    directory: Arc<Directory>,
}

/// Serves the API on `listener` until the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    directory: Arc<Directory>,
    _config: Arc<Config>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/api/admin/load-balancer", get(load_balancer))
        .route("/api/jobs/{id}", get(job))
        .with_state(AppState { store, directory });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn healthz(State(state): State<AppState>) -> Response {
    let mut conn = state.store.conn();
    match redis::cmd("PING").query_async::<String>(&mut conn).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}\n")).into_response(),
    }
}

async fn load_balancer(State(state): State<AppState>) -> Response {
    let now = now_ms();
    let directory = state.directory.clone();
    match stats::collect(&state.store, |a| directory.is_healthy(a, now)).await {
        Ok(doc) => Json(doc).into_response(),
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

/// A job's Redis hash as the JSON document `fleetctl job` prints.
fn job_view(h: &HashMap<String, String>) -> Value {
    let text = |f: &str| h.get(f).filter(|v| !v.is_empty()).cloned();
    let num = |f: &str| text(f).and_then(|v| v.parse::<u64>().ok());
    let json_field = |f: &str| text(f).and_then(|v| serde_json::from_str::<Value>(&v).ok());
    let priority = num("rank")
        .and_then(|r| Priority::from_rank(r as u8))
        .map(|p| p.as_str());
    let submitted_priority = num("submitted_rank")
        .and_then(|r| Priority::from_rank(r as u8))
        .map(|p| p.as_str());
    let attempts = match json_field("history") {
        Some(Value::Array(a)) => Value::Array(a),
        _ => Value::Array(Vec::new()),
    };
    json!({
        "id": text("id"),
        "kind": text("kind"),
        "state": text("state"),
        "priority": priority,
        "submitted_priority": submitted_priority,
        "args": json_field("args"),
        "requires": json_field("requires"),
        "timeout_ms": num("timeout_ms"),
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

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
