//! Publishing a job's terminal record where its producer will look.
//!
//! Results go to the `FLEET_RESULTS` stream on `fleet.results.<job_id>`
//! with a `Nats-Msg-Id` naming the job, its attempt count and its state,
//! so publishing the same outcome again (after a crash, or a redelivered
//! event) stores it once, while a later outcome of the same job (after an
//! operator's retry) is stored anew. Outcomes the sweeper or an operator
//! decide (once, not on a redeliverable event) add the time they were
//! decided to the id. Dead-lettered jobs are also announced on
//! `fleet.dead`.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use fleet_protocol::{subjects, AttemptRecord, JobResult, JobState};

/// Starts publishing `result`, the outcome of an agent event; await the
/// returned future for the ack. Its message id names the job, its attempt
/// count and its state, so a redelivered event's result is stored once.
pub async fn publish(
    js: &jetstream::Context,
    result: &JobResult,
) -> anyhow::Result<PublishAckFuture> {
    publish_as(js, result, event_message_id(result)).await
}

fn event_message_id(result: &JobResult) -> String {
    format!(
        "result-{}-{}-{}",
        result.job_id,
        result.attempts.len(),
        result.state.as_str()
    )
}

/// The message id of an outcome decided once, by the sweeper or an
/// operator: the event form plus when it was decided. A cancellation of a
/// queued job, or a job dead as unschedulable, adds no attempt, so after
/// an operator's retry the same outcome again would otherwise carry the
/// same id and be dropped as a duplicate within JetStream's window.
fn decided_message_id(result: &JobResult) -> String {
    format!("{}-{}", event_message_id(result), result.finished_at_ms)
}

async fn publish_as(
    js: &jetstream::Context,
    result: &JobResult,
    message_id: String,
) -> anyhow::Result<PublishAckFuture> {
    let body = serde_json::to_vec(result)?;
    let ack = js
        .send_publish(
            subjects::result(&result.job_id),
            PublishMessage::build()
                .payload(body.clone().into())
                .message_id(message_id),
        )
        .await?;
    if result.state == JobState::Dead {
        js.client().publish(subjects::DEAD, body.into()).await?;
    }
    Ok(ack)
}

/// Publishes `result` and waits for its ack, retrying for a while. For
/// outcomes that no redeliverable message stands behind (the sweeper's,
/// an operator's): the state is already in Redis either way.
pub async fn publish_reliably(js: &jetstream::Context, result: &JobResult) {
    let mut backoff = Duration::from_millis(100);
    // One id for every try: a try whose ack was lost is stored once.
    let message_id = decided_message_id(result);
    for _ in 0..10 {
        let stored = match publish_as(js, result, message_id.clone()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(job_id = %result.job_id, error = %e, "result not stored; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    tracing::error!(job_id = %result.job_id, "result could not be published; it stays readable in Redis");
}

/// The record of a dead-lettered job, its error being its last attempt's.
pub fn dead(job_id: &str, attempts: Vec<AttemptRecord>, now_ms: u64) -> JobResult {
    let error = attempts.last().and_then(|a| a.error.clone());
    dead_with(job_id, attempts, error, now_ms)
}

/// The record of a dead-lettered job whose error the caller knows (the
/// failure that spent its last attempt).
pub fn dead_with(
    job_id: &str,
    attempts: Vec<AttemptRecord>,
    error: Option<String>,
    now_ms: u64,
) -> JobResult {
    JobResult {
        job_id: job_id.to_string(),
        state: JobState::Dead,
        result: None,
        error,
        agent_id: None,
        attempts,
        finished_at_ms: now_ms,
        timing: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cancelled_at(finished_at_ms: u64) -> JobResult {
        JobResult {
            job_id: "j".into(),
            state: JobState::Cancelled,
            result: None,
            error: Some("cancelled by operator".into()),
            agent_id: None,
            attempts: Vec::new(),
            finished_at_ms,
            timing: None,
        }
    }

    #[test]
    fn a_redelivered_outcome_keeps_its_id_and_a_decided_one_is_told_apart_by_time() {
        // The same event's result, built again later: one id.
        assert_eq!(
            event_message_id(&cancelled_at(1)),
            event_message_id(&cancelled_at(2))
        );
        // A queued job cancelled, retried and cancelled again adds no
        // attempt: only the time tells the two outcomes apart.
        assert_ne!(
            decided_message_id(&cancelled_at(1)),
            decided_message_id(&cancelled_at(2))
        );
    }
}
