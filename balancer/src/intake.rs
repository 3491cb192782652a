//! Intake: turns submissions on `fleet.jobs.submit` into queued jobs.
//!
//! A batch of submissions is validated, the valid ones are enqueued by one
//! script call, and only then are their messages acked: a crash in between
//! redelivers them, and the script ignores ids it already has. Invalid
//! submissions are refused with a [`Rejection`] on `fleet.rejected`,
//! counted, and dropped, without touching the jobs around them.

use std::sync::Arc;

use async_nats::jetstream;
use fleet_protocol::{streams, subjects, time::now_ms, InvalidJob, JobSpec, Rejection};
use tokio::sync::Notify;

use crate::durable::{self, BatchHandler};
use crate::store::{Enqueued, Store};
use crate::Config;

const DURABLE: &str = "fleet-balancer-jobs";
/// How often a paused intake re-reads the queue depth.
const BACKPRESSURE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs intake forever.
pub async fn run(
    js: jetstream::Context,
    store: Store,
    wake: Arc<Notify>,
    config: Arc<Config>,
) -> anyhow::Result<()> {
    let handler = Intake {
        nats: js.client(),
        store,
        wake,
        config,
    };
    durable::consume(js, streams::JOBS, DURABLE, handler).await
}

struct Intake {
    nats: async_nats::Client,
    store: Store,
    wake: Arc<Notify>,
    config: Arc<Config>,
}

impl BatchHandler for Intake {
    async fn handle(&mut self, batch: Vec<jetstream::Message>) {
        let mut jobs = Vec::with_capacity(batch.len());
        let mut accepted = Vec::with_capacity(batch.len());
        for message in batch {
            let fallback_id = fallback_id(&message);
            match JobSpec::decode(&message.payload).and_then(|mut spec| {
                spec.max_attempts.get_or_insert(self.config.max_attempts);
                spec.validate(&fallback_id)
            }) {
                Ok(job) => {
                    jobs.push(job);
                    accepted.push(message);
                }
                Err(error) => self.reject(&message, error).await,
            }
        }
        if jobs.is_empty() {
            return;
        }
        let (outcomes, depth) = match self.store.enqueue(&jobs, now_ms()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, jobs = jobs.len(), "enqueue failed; submissions will be redelivered");
                for m in &accepted {
                    durable::retry_later(m).await;
                }
                return;
            }
        };
        for ((job, outcome), message) in jobs.iter().zip(&outcomes).zip(&accepted) {
            match outcome {
                Enqueued::Queued => {
                    tracing::debug!(job_id = %job.id, kind = %job.kind, priority = %job.priority, "job queued")
                }
                Enqueued::Duplicate => {
                    tracing::info!(job_id = %job.id, "duplicate submission ignored")
                }
            }
            durable::ack(message).await;
        }
        let queued = outcomes.iter().filter(|o| **o == Enqueued::Queued).count();
        crate::metrics::jobs("submitted", queued as u64);
        crate::metrics::jobs("duplicate", (outcomes.len() - queued) as u64);
        if queued > 0 {
            self.wake.notify_one();
        }
        self.hold_while_full(depth).await;
    }
}

impl Intake {
    /// Refuses one submission: logged, counted, announced, dropped.
    async fn reject(&self, message: &jetstream::Message, error: InvalidJob) {
        let job_id = claimed_id(message);
        crate::metrics::rejected("submission", error.reason());
        tracing::warn!(job_id = job_id.as_deref().unwrap_or("-"), reason = error.reason(), %error, "submission rejected");
        let rejection = Rejection {
            job_id,
            reason: error.reason().to_string(),
            error: error.to_string(),
        };
        if let Ok(body) = serde_json::to_vec(&rejection) {
            if let Err(e) = self.nats.publish(subjects::REJECTED, body.into()).await {
                tracing::warn!(error = %e, "cannot publish rejection");
            }
        }
        for field in [
            "rejected".to_string(),
            format!("rejected:{}", error.reason()),
        ] {
            if let Err(e) = self.store.count(&field, 1).await {
                tracing::warn!(error = %e, "cannot count rejection");
            }
        }
        durable::discard(message).await;
    }

    /// Backpressure: while the queue is over its bound, stop pulling, so
    /// submissions wait in JetStream instead of growing Redis.
    async fn hold_while_full(&self, mut depth: u64) {
        let mut warned = false;
        while depth > self.config.max_queued {
            if !warned {
                tracing::warn!(
                    depth,
                    max = self.config.max_queued,
                    "queue full; pausing intake"
                );
                warned = true;
            }
            // Poll briskly: a fast fleet drains a full queue in moments.
            tokio::time::sleep(BACKPRESSURE_POLL).await;
            depth = match self.store.queue_depth().await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read queue depth");
                    depth
                }
            };
        }
        if warned {
            tracing::info!(depth, "queue below its bound; resuming intake");
        }
    }
}

/// The id a submission without its own gets: its `Nats-Msg-Id`, else one
/// derived from its stream sequence, so a redelivery gets the same id.
fn fallback_id(message: &jetstream::Message) -> String {
    if let Some(id) = message
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
    {
        return id.as_str().to_string();
    }
    match message.info() {
        Ok(info) => format!("seq-{}", info.stream_sequence),
        Err(_) => fleet_protocol::new_job_id(),
    }
}

/// The job id a refused submission claims, if one can be read, so the
/// producer can match the rejection to what it sent.
fn claimed_id(message: &jetstream::Message) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(&message.payload)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string))
        .or_else(|| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|id| id.as_str().to_string())
        })
}
