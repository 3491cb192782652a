//! Publishing a job's terminal record where its producer will look.
//!
//! Results go to the `FLEET_RESULTS` stream on `fleet.results.<job_id>`
//! with `Nats-Msg-Id` = `result-<job_id>`, so publishing the same result
//! again (after a crash, or a redelivered event) stores it once.
//! Dead-lettered jobs are also announced on `fleet.dead`.

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use fleet_protocol::{subjects, AttemptRecord, JobResult, JobState};

/// Starts publishing `result`; await the returned future for the ack.
pub async fn publish(
    js: &jetstream::Context,
    result: &JobResult,
) -> anyhow::Result<PublishAckFuture> {
    let body = serde_json::to_vec(result)?;
    let ack = js
        .send_publish(
            subjects::result(&result.job_id),
            PublishMessage::build()
                .payload(body.into())
                .message_id(format!("result-{}", result.job_id)),
        )
        .await?;
    if result.state == JobState::Dead {
        let body = serde_json::to_vec(result)?;
        js.client().publish(subjects::DEAD, body.into()).await?;
    }
    Ok(ack)
}

/// Decodes the attempt history a script returned (a JSON array).
pub fn history(json: Option<&String>) -> Vec<AttemptRecord> {
    json.and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default()
}
