//! Fleet-wide reads: health, the stats document, Prometheus metrics and
//! the audit.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_protocol::api::{AuditReport, Health, Role, StatsDocument};
use fleet_protocol::time::now_ms;

use super::app_state::AppState;
use super::error::{ApiError, ApiResult};
use super::{audit, stats};

/// `GET /healthz`: 200 while Redis answers, 503 (with the same document)
/// while it does not, so a load balancer's probe sees both.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let role = if state.leader.get().is_some() {
        Role::Leader
    } else {
        Role::Standby
    };
    let mut conn = state.store.conn();
    match redis::cmd("PING").query_async::<String>(&mut conn).await {
        Ok(_) => Json(Health {
            status: "ok".into(),
            role,
            error: None,
        })
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "redis unreachable".into(),
                role,
                error: Some(e.to_string()),
            }),
        )
            .into_response(),
    }
}

/// `GET /api/admin/load-balancer`: the stats document.
pub(crate) async fn load_balancer(State(state): State<AppState>) -> ApiResult<StatsDocument> {
    let now = now_ms();
    let mut doc = stats::collect(&state.store, &state.directory, now)
        .await
        .map_err(ApiError::redis)?;
    stats::add_activity(&mut doc, &state.activity, now);
    Ok(Json(doc))
}

/// `GET /metrics`: Prometheus text, with the fleet gauges refreshed from
/// a stats document first.
pub(crate) async fn prometheus_metrics(
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let handle = state.prometheus.as_ref().ok_or(ApiError::NoMetrics)?;
    let now = now_ms();
    match stats::collect(&state.store, &state.directory, now).await {
        Ok(mut doc) => {
            stats::add_activity(&mut doc, &state.activity, now);
            crate::telemetry::metrics::fleet_gauges(&doc);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the fleet from Redis"),
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    )
        .into_response())
}

/// `GET /api/admin/audit`.
pub(crate) async fn audit_report(State(state): State<AppState>) -> ApiResult<AuditReport> {
    let report = audit::run(&state.store).await.map_err(ApiError::redis)?;
    Ok(Json(report))
}
