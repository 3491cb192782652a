//! Intake: turns submissions on `fleet.jobs.submit` into queued or
//! leased jobs.
//!
//! A batch of submissions is validated, the valid ones are admitted by one
//! script call, and only then are their messages acked: a crash in between
//! redelivers them, and the script ignores ids it already has. Invalid
//! submissions are refused with a [`Rejection`] on `fleet.rejected`,
//! counted, and dropped, without touching the jobs around them.
//!
//! While the queue is empty ([`Backlog`]), the intake chooses agents for
//! the new jobs itself, as the scheduler would, and the same script call
//! leases them: on an idle fleet a job reaches its agent one Redis round
//! trip after its submission arrives, not three (enqueue, the scheduler's
//! peek, assign). Jobs it cannot place, or that would overtake waiting
//! ones, are queued for the scheduler.

use std::sync::Arc;

use async_nats::jetstream;
use fleet_protocol::{streams, subjects, time::now_ms, InvalidJob, JobSpec, Rejection, ValidJob};
use tokio::sync::Notify;

use crate::consumer::{self, BatchHandler};
use crate::scheduling::backlog::Backlog;
use crate::scheduling::directory::Directory;
use crate::scheduling::dispatch::{lease_deadlines, send_leases};
use crate::scheduling::families::FamilyTable;
use crate::scheduling::placement::Round;
use crate::scheduling::policy::Policy;
use crate::state::{Enqueued, Placement, QueuedJob, Store};
use crate::Config;

const DURABLE: &str = "fleet-balancer-jobs";
/// How often a paused intake re-reads the queue depth.
const BACKPRESSURE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs intake forever.
pub async fn run(
    js: jetstream::Context,
    store: Store,
    directory: Arc<Directory>,
    backlog: Arc<Backlog>,
    wake: Arc<Notify>,
    config: Arc<Config>,
) -> anyhow::Result<()> {
    let handler = Intake {
        nats: js.client(),
        store,
        directory,
        backlog,
        // Its own instance of the policy: the scheduler's lives in the
        // scheduler's task.
        policy: config.policy()?,
        families: FamilyTable::new(&config.model_families).map_err(anyhow::Error::msg)?,
        wake,
        config,
    };
    consumer::consume(js, streams::JOBS, DURABLE, handler).await
}

struct Intake {
    nats: async_nats::Client,
    store: Store,
    directory: Arc<Directory>,
    backlog: Arc<Backlog>,
    policy: Box<dyn Policy>,
    families: FamilyTable,
    wake: Arc<Notify>,
    config: Arc<Config>,
}

/// A new job the intake found an agent for.
struct Placed {
    job: QueuedJob,
    placement: Placement,
    family: Option<String>,
}

impl BatchHandler for Intake {
    async fn handle(&mut self, batch: Vec<jetstream::Message>) {
        let mut jobs = Vec::with_capacity(batch.len());
        let mut accepted = Vec::with_capacity(batch.len());
        let arrived_us = fleet_protocol::time::now_us();
        for message in batch {
            if let Ok(info) = message.info() {
                let stored_us = (info.published.unix_timestamp_nanos() / 1000) as u64;
                crate::telemetry::metrics::intake_lag(arrived_us.saturating_sub(stored_us));
            }
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
        // Queue order (priority, then arrival), which the script keeps
        // when it leases some and queues others.
        let mut pairs: Vec<(ValidJob, jetstream::Message)> =
            jobs.into_iter().zip(accepted).collect();
        pairs.sort_by_key(|(job, _)| std::cmp::Reverse(job.priority.rank()));
        let (jobs, accepted): (Vec<ValidJob>, Vec<jetstream::Message>) = pairs.into_iter().unzip();
        let now = now_ms();
        let placed = self.place(&jobs, now);
        let placements: Vec<Option<Placement>> = placed
            .iter()
            .map(|p| p.as_ref().map(|p| p.placement.clone()))
            .collect();
        let deadlines = lease_deadlines(&self.config, now);
        let (outcomes, depth) = match self.store.admit(&jobs, &placements, now, deadlines).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, jobs = jobs.len(), "admitting jobs failed; submissions will be redelivered");
                for m in &accepted {
                    consumer::retry_later(m).await;
                }
                return;
            }
        };
        // The leases are committed: send them before the acks, which
        // nothing waits on.
        let leased = placed
            .iter()
            .zip(&outcomes)
            .filter_map(|(p, outcome)| match (p, outcome) {
                (Some(p), Enqueued::Leased) => Some((&p.job, &p.placement, p.family.as_deref(), 1)),
                _ => None,
            });
        if let Err(e) = send_leases(&self.nats, &self.directory, leased, now).await {
            tracing::warn!(error = %e, "cannot send assignments; their accept timeout will requeue them");
        }
        let count = |wanted| outcomes.iter().filter(|o| **o == wanted).count() as u64;
        let (queued, leased, duplicates) = (
            count(Enqueued::Queued),
            count(Enqueued::Leased),
            count(Enqueued::Duplicate),
        );
        for ((job, outcome), message) in jobs.iter().zip(&outcomes).zip(&accepted) {
            match outcome {
                Enqueued::Queued => {
                    tracing::debug!(job_id = %job.id, kind = %job.kind, priority = %job.priority, "job queued")
                }
                Enqueued::Leased => {
                    tracing::debug!(job_id = %job.id, kind = %job.kind, priority = %job.priority, "job leased on arrival")
                }
                Enqueued::Duplicate => {
                    tracing::info!(job_id = %job.id, "duplicate submission ignored")
                }
            }
            consumer::ack(message).await;
        }
        crate::telemetry::metrics::jobs("submitted", queued + leased);
        crate::telemetry::metrics::jobs("assigned", leased);
        crate::telemetry::metrics::jobs("leased_at_intake", leased);
        crate::telemetry::metrics::jobs("duplicate", duplicates);
        if queued > 0 {
            self.backlog.mark_waiting();
            self.wake.notify_one();
        }
        self.hold_while_full(depth).await;
    }
}

impl Intake {
    /// Agents for as many of `jobs` (in queue order) as the fleet can
    /// take now: one entry per job, `None` for those left to the queue;
    /// none at all while jobs wait in the queue.
    fn place(&mut self, jobs: &[ValidJob], now: u64) -> Vec<Option<Placed>> {
        let mut placed: Vec<Option<Placed>> = jobs.iter().map(|_| None).collect();
        if self.backlog.is_waiting() {
            return placed;
        }
        // Timed as the scheduler times its decisions, into the same
        // histogram: building the candidates, then each placement.
        let building = std::time::Instant::now();
        let agents = self.directory.available(now);
        if agents.is_empty() {
            return placed;
        }
        let mut round = Round::new(agents, self.policy.as_mut(), now);
        round.set_gpu_demand(
            jobs.iter()
                .any(|j| fleet_protocol::gpus_wanted(&j.kind, &j.requires) > 0),
        );
        let build_time = building.elapsed();
        let mut place_times = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            if round.capacity_total() == 0 {
                break;
            }
            let job = QueuedJob::submitted(job);
            let family = self.families.job_family(&job);
            let placing = std::time::Instant::now();
            if let Some(placement) = round.place(&job, family.as_deref()) {
                place_times.push(placing.elapsed());
                placed[i] = Some(Placed {
                    job,
                    placement,
                    family,
                });
            }
        }
        crate::telemetry::metrics::decisions(build_time, &place_times);
        placed
    }

    /// Refuses one submission: logged, counted, announced, dropped.
    async fn reject(&self, message: &jetstream::Message, error: InvalidJob) {
        let job_id = claimed_id(message);
        crate::telemetry::metrics::rejected("submission", error.reason());
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
        consumer::discard(message).await;
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
