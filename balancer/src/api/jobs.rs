//! Jobs: one job, a list by state, dead letters, and the operator's
//! cancel and retry.

use axum::extract::{Path, Query, State};
use axum::Json;
use fleet_protocol::api::{DeadLetters, JobChanged, JobList, JobView};
use fleet_protocol::{time::now_ms, ControlMessage, JobResult, JobState};
use serde::Deserialize;

use super::app_state::AppState;
use super::error::{ApiError, ApiResult};
use crate::state::{Cancelled, Retried, Store};
use crate::{control, results};

#[derive(Deserialize)]
pub(crate) struct Limit {
    limit: Option<usize>,
}

#[derive(Deserialize)]
pub(crate) struct JobFilter {
    state: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/jobs/{id}`.
pub(crate) async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<JobView> {
    fleet_protocol::is_valid_token(&id)?;
    match state.store.job(&id).await.map_err(ApiError::redis)? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError::NotFound(format!("no job {id}"))),
    }
}

/// `GET /api/jobs?state=…&limit=…`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<JobFilter>,
) -> ApiResult<JobList> {
    let wanted = match q.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown state {s:?}: queued, assigned, running, succeeded, dead or cancelled"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(50).min(10_000);
    let ids = state
        .store
        .job_ids(wanted, limit)
        .await
        .map_err(ApiError::redis)?;
    let jobs = views(&state.store, ids).await?;
    Ok(Json(JobList { jobs }))
}

/// `GET /api/dead?limit=…`: dead letters, newest first.
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    Query(q): Query<Limit>,
) -> ApiResult<DeadLetters> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    let ids = state
        .store
        .dead_letters(limit)
        .await
        .map_err(ApiError::redis)?;
    let dead = views(&state.store, ids).await?;
    Ok(Json(DeadLetters { dead }))
}

/// The jobs of `ids` still held, in that order (one finished and past
/// its retention since the list was read is left out).
async fn views(store: &Store, ids: Vec<String>) -> Result<Vec<JobView>, ApiError> {
    let mut list = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(job) = store.job(&id).await.map_err(ApiError::redis)? {
            list.push(job);
        }
    }
    Ok(list)
}

/// `POST /api/jobs/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<JobChanged> {
    fleet_protocol::is_valid_token(&id)?;
    let store = state.leader.get().ok_or(ApiError::NotLeader)?;
    let now = now_ms();
    match store.cancel(&id, now).await? {
        Cancelled::Done { lease, history } => {
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
            crate::telemetry::metrics::jobs("cancelled", 1);
            let result = JobResult {
                job_id: id.clone(),
                state: JobState::Cancelled,
                result: None,
                error: Some("cancelled by operator".into()),
                agent_id: None,
                attempts: history,
                finished_at_ms: now,
                timing: None,
            };
            results::publish_reliably(&state.js, &result).await;
            Ok(Json(JobChanged {
                job_id: id,
                state: JobState::Cancelled,
            }))
        }
        Cancelled::Unknown => Err(ApiError::NotFound(format!("no job {id}"))),
        Cancelled::AlreadyEnded(s) => Err(ApiError::Conflict(format!(
            "job {id} already ended: {}",
            s.as_str()
        ))),
    }
}

/// `POST /api/jobs/{id}/retry`: a dead or cancelled job queued again with
/// fresh attempts.
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<JobChanged> {
    fleet_protocol::is_valid_token(&id)?;
    let store = state.leader.get().ok_or(ApiError::NotLeader)?;
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
    match store.retry(&id, now_ms()).await? {
        Retried::Queued => {
            tracing::info!(job_id = %id, "job re-queued by operator");
            state.wake.notify_one();
            if let (Some(stream), Some(seq)) = (&results, old_result) {
                // Purges this subject's messages below seq + 1: the old
                // result only.
                if let Err(e) = stream.purge().filter(&subject).sequence(seq + 1).await {
                    tracing::warn!(job_id = %id, error = %e, "cannot remove the old result; a wait may return it");
                }
            }
            Ok(Json(JobChanged {
                job_id: id,
                state: JobState::Queued,
            }))
        }
        Retried::Unknown => Err(ApiError::NotFound(format!("no job {id}"))),
        Retried::NotRetryable(s) => Err(ApiError::Conflict(format!(
            "job {id} is {}; only dead or cancelled jobs can be retried",
            s.as_str()
        ))),
    }
}
