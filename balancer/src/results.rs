//! Publishing a job's terminal record where its producer will look.
//!
//! Results go to the `FLEET_RESULTS` stream on `fleet.results.<job_id>`
//! with a `Nats-Msg-Id` naming the job, its attempt count and its state,
//! so publishing the same outcome again (after a crash, or a redelivered
//! event) stores it once, while a later outcome of the same job (after an
//! operator's retry) is stored anew. Dead-lettered jobs are also announced
//! on `fleet.dead`.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use fleet_protocol::{subjects, AttemptRecord, JobResult, JobState};

/// Starts publishing `result`; await the returned future for the ack.
pub async fn publish(
    js: &jetstream::Context,
    result: &JobResult,
) -> anyhow::Result<PublishAckFuture> {
    let body = serde_json::to_vec(result)?;
    let message_id = format!(
        "result-{}-{}-{}",
        result.job_id,
        result.attempts.len(),
        result.state.as_str()
    );
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
    for _ in 0..10 {
        let stored = match publish(js, result).await {
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

/// Decodes the attempt history a script returned (a JSON array).
pub fn history(json: Option<&String>) -> Vec<AttemptRecord> {
    json.and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default()
}

/// The record of a dead-lettered job, its error being its last attempt's.
pub fn dead(job_id: &str, history_json: &str, now_ms: u64) -> JobResult {
    let attempts = history(Some(&history_json.to_string()));
    JobResult {
        job_id: job_id.to_string(),
        state: JobState::Dead,
        result: None,
        error: attempts.last().and_then(|a| a.error.clone()),
        agent_id: None,
        attempts,
        finished_at_ms: now_ms,
        timing: None,
    }
}
