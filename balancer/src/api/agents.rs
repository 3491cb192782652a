//! Agents: the list, and the operator's drain and undrain.

use axum::extract::{Path, State};
use axum::Json;
use fleet_protocol::api::{AgentList, DrainChanged};
use fleet_protocol::time::now_ms;

use super::app_state::AppState;
use super::error::{ApiError, ApiResult};
use super::stats;

/// `GET /api/agents`: the agents' lines of the stats document.
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<AgentList> {
    let doc = stats::collect(&state.store, &state.directory, now_ms())
        .await
        .map_err(ApiError::redis)?;
    Ok(Json(AgentList { agents: doc.agents }))
}

/// `POST /api/agents/{id}/drain`.
pub(crate) async fn drain(state: State<AppState>, id: Path<String>) -> ApiResult<DrainChanged> {
    set_draining(state, id, true).await
}

/// `POST /api/agents/{id}/undrain`.
pub(crate) async fn undrain(state: State<AppState>, id: Path<String>) -> ApiResult<DrainChanged> {
    set_draining(state, id, false).await
}

async fn set_draining(
    State(state): State<AppState>,
    Path(id): Path<String>,
    draining: bool,
) -> ApiResult<DrainChanged> {
    fleet_protocol::is_valid_token(&id)?;
    let store = state.leader.get().ok_or(ApiError::NotLeader)?;
    if !store.drain(&id, draining).await? {
        return Err(ApiError::NotFound(format!("no agent {id}")));
    }
    state.directory.set_draining(&id, draining);
    state.wake.notify_one();
    tracing::info!(agent_id = %id, draining, "agent drain changed by operator");
    Ok(Json(DrainChanged {
        agent_id: id,
        draining,
    }))
}
