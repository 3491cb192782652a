//! Events: applies the agents' reports from `FLEET_EVENTS` to Redis.
//!
//! A batch of events is decoded, applied in stream order by one call of
//! `events.lua`, then each terminal outcome's result is published, and
//! only after its publish is acknowledged is the event acked. A crash
//! anywhere in between redelivers the events: the scripts recognise what
//! they already applied and the result is published again under the same
//! message id, so nothing is counted twice and no result is lost.
//!
//! Waiting for JetStream to store a batch's results does not hold up the
//! next batch (up to 4 batches wait at once): a slot freed by a completion
//! is free for the scheduler and the intake as soon as Redis has applied
//! it, not a result round trip later.
//!
//! What agents fail to report is this subsystem's too: the [`sweeper`]
//! fails the leases of silent agents, of assignments never started and of
//! jobs past their timeout, counting silence only while the balancer was
//! able to hear ([`watch`]).

pub(crate) mod sweeper;
pub(crate) mod watch;

use std::sync::Arc;

use async_nats::jetstream::{self, context::PublishAckFuture};
use fleet_protocol::event::BadEvent;
use fleet_protocol::{
    streams, time::now_ms, AgentEvent, AttemptRecord, ControlMessage, JobResult, JobState, Timing,
};
use tokio::sync::Notify;

use crate::consumer::{self, BatchHandler};
use crate::control;
use crate::events::watch::Watch;
use crate::results;
use crate::scheduling::directory::Directory;
use crate::state::{AttemptEnded, Completion, EventArgs, EventKind, EventReply, Store};
use crate::telemetry::rate::Activity;
use crate::Config;
use fleet_protocol::api::Failure;

const DURABLE: &str = "fleet-balancer-events";

/// Runs the event consumer forever.
pub async fn run(
    js: jetstream::Context,
    store: Store,
    directory: Arc<Directory>,
    wake: Arc<Notify>,
    watch: Arc<Watch>,
    activity: Arc<Activity>,
    config: Arc<Config>,
) -> anyhow::Result<()> {
    let handler = Events {
        js: js.clone(),
        storing: Arc::new(tokio::sync::Semaphore::new(MAX_BATCHES_STORING)),
        store,
        directory,
        wake,
        watch,
        activity,
        config,
    };
    consumer::consume(js, streams::EVENTS, DURABLE, handler).await
}

struct Events {
    js: jetstream::Context,
    /// Permits for batches whose results are being stored.
    storing: Arc<tokio::sync::Semaphore>,
    store: Store,
    directory: Arc<Directory>,
    wake: Arc<Notify>,
    watch: Arc<Watch>,
    /// What ended, for the stats' throughput and percentiles.
    activity: Arc<Activity>,
    config: Arc<Config>,
}

/// The script arguments of one event.
fn script_fields(event: &AgentEvent) -> Vec<String> {
    match event {
        AgentEvent::Register(e) => vec![
            e.agent_id.clone(),
            e.incarnation.clone(),
            e.slots.to_string(),
            e.prefetch.to_string(),
            serde_json::to_string(&e.capabilities).unwrap_or_else(|_| "{}".into()),
        ],
        AgentEvent::Heartbeat(e) => {
            let stopping = if e.stopping { "1" } else { "0" };
            let mut fields = vec![e.agent_id.clone(), e.incarnation.clone(), stopping.into()];
            for job in e.running.iter().chain(&e.waiting).chain(&e.finishing) {
                fields.push(job.job_id.clone());
                fields.push(job.attempt.to_string());
            }
            fields
        }
        AgentEvent::Started(e) => vec![e.agent_id.clone(), e.job_id.clone(), e.attempt.to_string()],
        AgentEvent::Completed(e) => vec![
            e.agent_id.clone(),
            e.job_id.clone(),
            e.attempt.to_string(),
            e.result.to_string(),
            e.duration_ms.to_string(),
        ],
        AgentEvent::Failed(e) => vec![
            e.agent_id.clone(),
            e.job_id.clone(),
            e.attempt.to_string(),
            e.error.clone(),
            e.duration_ms.to_string(),
            if e.handed_back { "1" } else { "0" }.into(),
        ],
    }
}

impl BatchHandler for Events {
    fn interrupted(&mut self) {
        // Heartbeats may be waiting unread: silence is not yet evidence.
        self.watch.restart("event consumer interrupted");
    }

    async fn handle(&mut self, batch: Vec<jetstream::Message>) {
        let mut args = EventArgs::default();
        let mut events = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        for message in batch {
            match decode(&message) {
                Ok(event) => {
                    args.push(EventKind::from(&event), script_fields(&event));
                    events.push(event);
                    messages.push(message);
                }
                Err(error) => {
                    crate::telemetry::metrics::rejected("event", error.reason());
                    tracing::warn!(subject = %message.subject, %error, "bad event dropped");
                    if let Err(e) = self.store.count("bad_events", 1).await {
                        tracing::warn!(error = %e, "cannot count bad event");
                    }
                    consumer::discard(&message).await;
                }
            }
        }
        if events.is_empty() {
            return;
        }
        let now = now_ms();
        let replies = match self
            .store
            .apply_events(
                &args,
                now,
                self.config.job_timeout_buffer,
                self.config.heartbeat_timeout,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Unapplied heartbeats must not count as silence.
                self.watch.restart("events not applied");
                tracing::error!(error = %e, events = events.len(), "applying events failed; they will be redelivered");
                for m in &messages {
                    consumer::retry_later(m).await;
                }
                return;
            }
        };

        let mut publishes: Vec<(usize, std::time::Instant, PublishAckFuture)> = Vec::new();
        let mut failed_publish = vec![false; events.len()];
        let mut freed = false;
        for (i, (event, reply)) in events.iter().zip(&replies).enumerate() {
            match self.apply_outcome(event, reply, now).await {
                Outcome::Nothing => {}
                Outcome::Freed => freed = true,
                Outcome::Publish(ended, freed_slot) => {
                    freed |= freed_slot;
                    if freed_slot {
                        self.activity.finished.add(ended.len() as u64, now);
                        self.activity.finished_5m.add(ended.len() as u64, now);
                    }
                    for result in ended {
                        match results::publish(&self.js, &result).await {
                            Ok(ack) => publishes.push((i, std::time::Instant::now(), ack)),
                            Err(e) => {
                                tracing::error!(job_id = %result.job_id, error = %e, "cannot publish result");
                                failed_publish[i] = true;
                            }
                        }
                    }
                }
            }
        }
        if freed {
            self.wake.notify_one();
        }
        // Waiting for JetStream to store the results is a round trip in
        // which this batch needs nothing more from Redis, so the next batch
        // is applied meanwhile: the wait and the acks after it go on in a
        // task of their own, up to MAX_BATCHES_STORING at once. Each event
        // is still acked only once its results are stored.
        let storing = match self.storing.clone().acquire_owned().await {
            Ok(permit) => permit,
            // Never closed; were it, the batch would finish here.
            Err(_) => return finish_batch(messages, publishes, failed_publish).await,
        };
        tokio::spawn(async move {
            finish_batch(messages, publishes, failed_publish).await;
            drop(storing);
        });
    }
}

/// Batches whose results may wait for JetStream's acks at once.
const MAX_BATCHES_STORING: usize = 4;

/// Waits until a batch's results are stored, then acks each event whose
/// results all were (and asks for the others again).
async fn finish_batch(
    messages: Vec<jetstream::Message>,
    publishes: Vec<(usize, std::time::Instant, PublishAckFuture)>,
    mut failed_publish: Vec<bool>,
) {
    // Acks are awaited in publish order; each is timed from its own
    // publish (a late one includes the wait behind earlier ones).
    for (i, published, ack) in publishes {
        let outcome = ack.await;
        crate::telemetry::metrics::nats_ack(published.elapsed());
        if let Err(e) = outcome {
            tracing::error!(error = %e, "result publish not acknowledged");
            failed_publish[i] = true;
        }
    }
    for (message, failed) in messages.iter().zip(failed_publish) {
        if failed {
            consumer::retry_later(message).await;
        } else {
            consumer::ack(message).await;
        }
    }
}

/// What an applied event asks of the balancer afterwards.
enum Outcome {
    Nothing,
    /// A slot came free: schedule again.
    Freed,
    /// Jobs ended: publish their results (and whether a slot came free).
    Publish(Vec<JobResult>, bool),
}

impl Events {
    async fn apply_outcome(&self, event: &AgentEvent, reply: &EventReply, now: u64) -> Outcome {
        let agent = event.agent_id();
        self.directory.touch(agent, now);
        match (event, reply) {
            (AgentEvent::Register(e), EventReply::Registered { leases, dead }) => {
                let leases = *leases;
                tracing::info!(agent_id = %agent, slots = e.slots, gpus = e.capabilities.gpus.len(), leases, "agent registered");
                self.directory.register(
                    agent,
                    (e.slots, e.prefetch),
                    e.capabilities.clone(),
                    leases,
                    now,
                );
                // A restarted agent's old leases ended as failed attempts;
                // those that spent their last attempt are dead.
                let dead: Vec<JobResult> = dead
                    .iter()
                    .map(|d| {
                        tracing::warn!(job_id = %d.job_id, agent_id = %agent, "job dead-lettered: its agent restarted");
                        results::dead_with(
                            &d.job_id,
                            d.history.clone(),
                            Some("agent restarted".to_string()),
                            now,
                        )
                    })
                    .collect();
                if dead.is_empty() {
                    Outcome::Freed
                } else {
                    Outcome::Publish(dead, true)
                }
            }
            // A stale incarnation is usually a dead process's last beat, and
            // the request (naming that incarnation) goes unanswered. But an
            // old register redelivered after a newer one makes the live
            // process the stale one; asking it to register is what lets it
            // back in (found by tests/tests/state_machine.rs).
            (AgentEvent::Heartbeat(h), EventReply::NotAlive(why)) => {
                tracing::info!(agent_id = %agent, outcome = why.as_str(), "heartbeat from an agent not alive here; asking it to register");
                self.ask_to_register(agent, &h.incarnation).await;
                Outcome::Nothing
            }
            (AgentEvent::Heartbeat(h), EventReply::Beat { dropped }) => {
                let hottest = h
                    .gpus
                    .iter()
                    .filter_map(|g| g.temperature_c)
                    .reduce(f32::max);
                let busiest = h
                    .gpus
                    .iter()
                    .filter_map(|g| g.utilization_pct)
                    .reduce(f32::max);
                self.directory.thermal(agent, hottest, busiest);
                if h.stopping {
                    self.directory.set_stopping(agent);
                }
                let mut dead = Vec::new();
                for d in dropped {
                    tracing::warn!(job_id = %d.job_id, agent_id = %agent, outcome = d.ended.as_str(), "agent no longer runs a job it leased");
                    self.directory.released(agent, &d.job_id, false);
                    if let AttemptEnded::Dead { history } = &d.ended {
                        dead.push(results::dead(&d.job_id, history.clone(), now));
                    }
                }
                match (dropped.is_empty(), dead.is_empty()) {
                    (true, _) => Outcome::Nothing,
                    (false, true) => Outcome::Freed,
                    (false, false) => Outcome::Publish(dead, true),
                }
            }
            (AgentEvent::Started(e), EventReply::Started) => {
                tracing::debug!(job_id = %e.job_id, agent_id = %agent, attempt = e.attempt, "job started");
                Outcome::Nothing
            }
            (
                AgentEvent::Completed(e),
                EventReply::Accepted(done) | EventReply::DuplicateCompletion(done),
            ) => {
                let accepted = matches!(reply, EventReply::Accepted(_));
                self.completed(e, done, accepted, now)
            }
            (AgentEvent::Failed(e), EventReply::Failed(ended)) => {
                self.activity.failed(Failure {
                    at_ms: now,
                    job_id: e.job_id.clone(),
                    agent_id: agent.to_string(),
                    error: e.error.clone(),
                });
                match ended {
                    AttemptEnded::Requeued => {
                        tracing::info!(job_id = %e.job_id, agent_id = %agent, attempt = e.attempt, error = %e.error, "attempt failed; job re-queued");
                        crate::telemetry::metrics::jobs("failed_attempt", 1);
                        crate::telemetry::metrics::jobs("retried", 1);
                        self.directory.released(agent, &e.job_id, false);
                        Outcome::Freed
                    }
                    AttemptEnded::Dead { history } => {
                        tracing::warn!(job_id = %e.job_id, agent_id = %agent, attempt = e.attempt, error = %e.error, "job dead-lettered");
                        crate::telemetry::metrics::jobs("failed_attempt", 1);
                        crate::telemetry::metrics::jobs("dead", 1);
                        self.directory.released(agent, &e.job_id, false);
                        Outcome::Publish(vec![dead_by_failure(e, history, now)], true)
                    }
                }
            }
            // The dead letter again, so a result lost before its ack is
            // published after all (under the same message id).
            (AgentEvent::Failed(e), EventReply::DuplicateDead { history }) => {
                Outcome::Publish(vec![dead_by_failure(e, history, now)], false)
            }
            (_, EventReply::Duplicate) => Outcome::Nothing,
            (_, other) => {
                let reason = match other {
                    EventReply::Stale(why) => why.as_str(),
                    other => other.status(),
                };
                // Forged or misrouted events show up here (late ones too);
                // an old incarnation's heartbeat is ordinary after a restart.
                if matches!(other, EventReply::Stale(_) | EventReply::UnknownJob) {
                    crate::telemetry::metrics::rejected("event", reason);
                }
                tracing::warn!(agent_id = %agent, event = event.type_name(), outcome = other.status(), reason, "event changed nothing");
                Outcome::Nothing
            }
        }
    }

    /// A completion the script accepted, or recognised as the one it
    /// already accepted: either way its result is published.
    fn completed(
        &self,
        e: &fleet_protocol::Completed,
        done: &Completion,
        accepted: bool,
        now: u64,
    ) -> Outcome {
        let agent = e.agent_id.as_str();
        if accepted {
            tracing::debug!(job_id = %e.job_id, agent_id = %agent, attempt = e.attempt, "job succeeded");
            self.directory.released(agent, &e.job_id, true);
            crate::telemetry::metrics::jobs("succeeded", 1);
        }
        let timing = match (done.submitted_at_ms, done.assigned_at_ms) {
            (Some(submitted_at_ms), Some(assigned_at_ms)) => Some(Timing {
                submitted_at_ms,
                assigned_at_ms,
                // A completion may beat its own started event (a short
                // job sends none): it started on assignment.
                started_at_ms: done.started_at_ms.unwrap_or(assigned_at_ms),
                assigned_at_us: done.assigned_at_us,
                started_at_us: done.started_at_us.or(done.assigned_at_us),
                agent_started_at_us: e.started_at_us,
            }),
            _ => None,
        };
        if let (true, Some(t)) = (accepted, timing) {
            let wait = t.started_at_ms.saturating_sub(t.submitted_at_ms);
            let run = now.saturating_sub(t.started_at_ms);
            crate::telemetry::metrics::job_timing(wait, run);
            self.activity.recent.add(now, wait, run);
            self.activity.succeeded_1m.add(1, now);
            self.activity.succeeded_5m.add(1, now);
        }
        let result = JobResult {
            job_id: e.job_id.clone(),
            state: JobState::Succeeded,
            result: Some(e.result.clone()),
            error: None,
            agent_id: Some(agent.to_string()),
            attempts: done.history.clone(),
            finished_at_ms: now,
            timing,
        };
        Outcome::Publish(vec![result], accepted)
    }

    async fn ask_to_register(&self, agent: &str, incarnation: &str) {
        let ask = ControlMessage::Register {
            incarnation: incarnation.to_string(),
        };
        control::send(&self.js.client(), agent, &ask).await;
    }
}

/// The dead letter of a job whose last attempt failed with `e`.
fn dead_by_failure(e: &fleet_protocol::Failed, history: &[AttemptRecord], now: u64) -> JobResult {
    results::dead_with(&e.job_id, history.to_vec(), Some(e.error.clone()), now)
}

fn decode(message: &jetstream::Message) -> Result<AgentEvent, BadEvent> {
    AgentEvent::decode(&message.subject, &message.payload)
}
