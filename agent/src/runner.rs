//! Running assignments within the agent's slots, with an optional local
//! queue of prefetched ones.
//!
//! The balancer never leases an agent more jobs than its slots plus its
//! prefetch; the runner still checks and refuses an assignment beyond
//! them, and never runs more than its slots at once, so the agent's own
//! count stays the proof of invariant 3.
//!
//! A job's life here: it is claimed (under one lock with the check) as
//! running, or as waiting when every slot is busy; a waiting job starts
//! when a slot frees. Running, `started` is published from the job's own
//! task (so it always precedes the terminal event), the workload runs, the
//! job moves to *finishing* (its slot is free: the balancer may reuse it as
//! soon as it reads the terminal event), the terminal event is stored, and
//! the job is dropped. Heartbeats list running, waiting and finishing
//! jobs, so a heartbeat never omits a job whose terminal event it could
//! overtake, and waiting jobs keep their leases.
//!
//! Stopping (SIGTERM): heartbeats say `stopping`, at once and from then
//! on, so the balancer leases nothing new; the runner keeps running what
//! it holds (and what was already on its way), and whatever is still held
//! when the grace ends is stopped and reported failed, so the balancer
//! re-queues it at once instead of after the heartbeat timeout.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_protocol::event::{Completed, Failed, Register, Started};
use fleet_protocol::{
    AgentEvent, Assignment, AssignmentBatch, ControlMessage, Heartbeat, RunningJob,
};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::reporter::{job_event_id, Reporter};
use crate::workloads::{WorkloadError, Workloads};

/// Where a held job is.
enum Phase {
    /// Prefetched: holds no slot yet.
    Waiting(Box<Assignment>),
    Running(AbortHandle),
    /// Ended; its terminal event is being sent. Holds no slot.
    Finishing,
}

struct Held {
    attempt: u32,
    phase: Phase,
}

/// Every job the agent holds, and the order waiting ones start in.
#[derive(Default)]
struct Book {
    jobs: HashMap<String, Held>,
    waiting: VecDeque<String>,
}

impl Book {
    fn running(&self) -> usize {
        self.jobs
            .values()
            .filter(|h| matches!(h.phase, Phase::Running(_)))
            .count()
    }

    fn waiting(&self) -> usize {
        self.jobs
            .values()
            .filter(|h| matches!(h.phase, Phase::Waiting(_)))
            .count()
    }

    /// Drops a job, stopping it if it runs.
    fn remove(&mut self, job_id: &str) -> Option<Held> {
        let held = self.jobs.remove(job_id)?;
        if let Phase::Running(task) = &held.phase {
            task.abort();
        }
        self.waiting.retain(|id| id != job_id);
        Some(held)
    }
}

pub struct Runner {
    agent_id: String,
    slots: u32,
    prefetch: u32,
    reporter: Reporter,
    workloads: Arc<Workloads>,
    book: Mutex<Book>,
    /// What this process registers as; its incarnation changes when the
    /// balancer declares it dead and it registers again.
    register: Mutex<Register>,
    /// `started` is published only for a job still running this long
    /// after it began (zero: always, at once).
    report_start_after: Duration,
    /// Shutting down: heartbeats say so.
    stopping: AtomicBool,
    /// Asks the heartbeat task for a heartbeat now.
    beat_now: Notify,
}

impl Runner {
    pub fn new(register: Register, reporter: Reporter, workloads: Workloads) -> Runner {
        Runner {
            agent_id: register.agent_id.clone(),
            slots: register.slots,
            prefetch: register.prefetch,
            reporter,
            workloads: Arc::new(workloads),
            book: Mutex::new(Book::default()),
            register: Mutex::new(register),
            report_start_after: Duration::ZERO,
            stopping: AtomicBool::new(false),
            beat_now: Notify::new(),
        }
    }

    /// Publishes `started` only for jobs still running `after` they began.
    /// A job that ends sooner is reported by its terminal event alone,
    /// which the balancer accepts from an assigned lease: one persisted
    /// message fewer per short job. A longer job's `started` is late by
    /// `after`, far inside the accept timeout it must beat.
    pub fn report_start_after(mut self, after: Duration) -> Runner {
        self.report_start_after = after;
        self
    }

    fn book(&self) -> parking_lot::MutexGuard<'_, Book> {
        self.book.lock()
    }

    fn registration(&self) -> Register {
        self.register.lock().clone()
    }

    /// This agent's heartbeat now.
    pub fn heartbeat(&self) -> Heartbeat {
        let register = self.registration();
        let (mut running, mut waiting, mut finishing) = (Vec::new(), Vec::new(), Vec::new());
        for (job_id, held) in self.book().jobs.iter() {
            let job = RunningJob {
                job_id: job_id.clone(),
                attempt: held.attempt,
            };
            match held.phase {
                Phase::Waiting(_) => waiting.push(job),
                Phase::Running(_) => running.push(job),
                Phase::Finishing => finishing.push(job),
            }
        }
        Heartbeat {
            agent_id: register.agent_id,
            incarnation: register.incarnation,
            running,
            waiting,
            finishing,
            gpus: self.workloads.gpu_status(&register.capabilities.gpus),
            stopping: self.stopping.load(Ordering::Relaxed),
        }
    }

    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// Resolves when a heartbeat is wanted before the next interval.
    pub async fn beat_requested(&self) {
        self.beat_now.notified().await;
    }

    /// Starts shutting down: asks the balancer, with a heartbeat now, to
    /// lease this agent nothing new. What it holds runs on.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.beat_now.notify_one();
    }

    /// How many jobs the agent holds: running, waiting, or finishing (its
    /// terminal event not yet stored).
    pub fn held(&self) -> usize {
        self.book().jobs.len()
    }

    /// Resolves once the agent holds no job, every terminal event stored.
    pub async fn until_idle(&self) {
        // Shutdown only, so a short poll is simpler than a wake-up on
        // every path a job can leave the book by.
        while self.held() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every running or waiting job and reports each attempt failed
    /// with `why`, so the balancer re-queues it at once. Jobs already
    /// finishing are left to send their own terminal event.
    pub async fn hand_back(&self, why: &str) {
        let stopped: Vec<(String, u32)> = {
            let mut book = self.book();
            let ids: Vec<String> = book
                .jobs
                .iter()
                .filter(|(_, h)| !matches!(h.phase, Phase::Finishing))
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| book.remove(&id).map(|h| (id, h.attempt)))
                .collect()
        };
        for (job_id, attempt) in stopped {
            tracing::warn!(job_id = %job_id, attempt, agent_id = %self.agent_id, "job handed back: {why}");
            self.report_failed(&job_id, attempt, why.to_string(), true)
                .await;
        }
    }

    /// Reports an attempt failed that never ran here, or was stopped
    /// before it ended (`handed_back`).
    async fn report_failed(&self, job_id: &str, attempt: u32, error: String, handed_back: bool) {
        let failed = AgentEvent::Failed(Failed {
            agent_id: self.agent_id.clone(),
            job_id: job_id.to_string(),
            attempt,
            error,
            duration_ms: 0,
            handed_back,
        });
        let id = job_event_id("failed", job_id, attempt);
        self.reporter.send_reliably(failed, Some(id)).await;
    }

    /// Registers (again). Used at start and when the balancer asks.
    pub async fn register(&self) {
        let register = self.registration();
        self.reporter
            .send_reliably(AgentEvent::Register(register.clone()), None)
            .await;
        tracing::info!(agent_id = %self.agent_id, incarnation = %register.incarnation, "registered");
    }

    /// Serves `fleet.agent.<id>.assign` until the subscription ends.
    pub async fn serve_assignments(self: Arc<Self>, mut subscription: async_nats::Subscriber) {
        while let Some(message) = subscription.next().await {
            match serde_json::from_slice::<AssignmentBatch>(&message.payload) {
                Ok(batch) => {
                    for assignment in batch.assignments {
                        self.clone().accept(assignment).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(agent_id = %self.agent_id, error = %e, "undecodable assignment ignored")
                }
            }
        }
        tracing::error!(agent_id = %self.agent_id, "assignment subscription ended");
    }

    /// Serves `fleet.agent.<id>.control` until the subscription ends.
    pub async fn serve_control(self: Arc<Self>, mut subscription: async_nats::Subscriber) {
        while let Some(message) = subscription.next().await {
            match serde_json::from_slice::<ControlMessage>(&message.payload) {
                Ok(ControlMessage::Register { incarnation }) => {
                    if incarnation == self.registration().incarnation {
                        self.rejoin().await;
                    } else {
                        tracing::debug!(agent_id = %self.agent_id, "register request for a replaced incarnation ignored");
                    }
                }
                Ok(ControlMessage::Cancel { job_id, attempt }) => {
                    self.clone().cancel(&job_id, attempt)
                }
                Err(e) => {
                    tracing::warn!(agent_id = %self.agent_id, error = %e, "undecodable control message ignored")
                }
            }
        }
    }

    /// The balancer does not count this agent as alive (it was silent past
    /// the heartbeat timeout, or its state was lost): every lease it held
    /// has been failed and re-queued. Stop that work and join again as a
    /// new incarnation.
    async fn rejoin(&self) {
        let dropped: Vec<(String, u32)> = {
            let mut book = self.book();
            let ids: Vec<String> = book.jobs.keys().cloned().collect();
            ids.into_iter()
                .filter_map(|id| book.remove(&id).map(|h| (id, h.attempt)))
                .collect()
        };
        for (job_id, attempt) in &dropped {
            tracing::warn!(job_id = %job_id, attempt, "dropping a job the balancer re-queued");
        }
        let incarnation = ulid::Ulid::new().to_string();
        self.register.lock().incarnation = incarnation;
        tracing::warn!(agent_id = %self.agent_id, dropped = dropped.len(), "balancer asked us to register again");
        self.register().await;
    }

    /// Stops every held job at once and forgets it, reporting nothing:
    /// how a simulated agent crashes (`--churn-interval`, see `churn.rs`).
    /// The balancer learns of it only from the heartbeats that stop.
    pub fn halt(&self) {
        let mut book = self.book();
        let ids: Vec<String> = book.jobs.keys().cloned().collect();
        for id in ids {
            book.remove(&id);
        }
    }

    /// Stops (or drops, if still waiting) one attempt of a job: the
    /// balancer cancelled it, timed it out, or moved it to another agent.
    fn cancel(self: Arc<Self>, job_id: &str, attempt: u32) {
        let removed = {
            let mut book = self.book();
            if book.jobs.get(job_id).is_some_and(|h| h.attempt == attempt) {
                book.remove(job_id)
            } else {
                None
            }
        };
        if removed.is_some() {
            tracing::info!(job_id, attempt, agent_id = %self.agent_id, "job cancelled");
            self.start_waiting();
        }
    }

    async fn accept(self: Arc<Self>, assignment: Assignment) {
        let job_id = assignment.job_id.clone();
        let attempt = assignment.attempt;
        // Claim a slot (or a place in the local queue) and start the task
        // under one lock, so the counts can never pass the limits (the
        // task's own bookkeeping waits for the lock).
        let claimed = {
            let mut book = self.book();
            match book.jobs.get(&job_id) {
                Some(h) if h.attempt == attempt => {
                    tracing::debug!(job_id = %job_id, attempt, "duplicate assignment ignored");
                    return;
                }
                // A newer attempt of a job we still hold: the balancer gave
                // up on ours, so stop it before taking the new one.
                Some(_) => {
                    book.remove(&job_id);
                }
                None => {}
            }
            let running = book.running();
            if running < self.slots as usize {
                let task = tokio::spawn(self.clone().run(assignment, running as u32 + 1));
                book.jobs.insert(
                    job_id.clone(),
                    Held {
                        attempt,
                        phase: Phase::Running(task.abort_handle()),
                    },
                );
                true
            } else if book.waiting() < self.prefetch as usize {
                book.waiting.push_back(job_id.clone());
                book.jobs.insert(
                    job_id.clone(),
                    Held {
                        attempt,
                        phase: Phase::Waiting(Box::new(assignment)),
                    },
                );
                true
            } else {
                false
            }
        };
        if !claimed {
            tracing::error!(job_id = %job_id, attempt, agent_id = %self.agent_id, slots = self.slots, prefetch = self.prefetch, "assignment over capacity refused");
            let error = format!(
                "agent over capacity ({} slots and {} prefetch busy)",
                self.slots, self.prefetch
            );
            self.report_failed(&job_id, attempt, error, false).await;
        }
    }

    /// Starts waiting jobs while slots are free.
    fn start_waiting(self: &Arc<Self>) {
        let mut book = self.book();
        while book.running() < self.slots as usize {
            let Some(job_id) = book.waiting.pop_front() else {
                return;
            };
            let running_now = book.running() as u32 + 1;
            let Some(held) = book.jobs.get_mut(&job_id) else {
                continue;
            };
            let Phase::Waiting(assignment) = std::mem::replace(&mut held.phase, Phase::Finishing)
            else {
                continue;
            };
            let task = tokio::spawn(self.clone().run(*assignment, running_now));
            held.phase = Phase::Running(task.abort_handle());
        }
    }

    /// Announces the start of an attempt. Started is advisory (a completion
    /// is accepted without it), so its ack is awaited off the job's path.
    async fn announce_start(&self, job_id: &str, attempt: u32, running_now: u32) {
        let started = AgentEvent::Started(Started {
            agent_id: self.agent_id.clone(),
            job_id: job_id.to_string(),
            attempt,
            running: running_now,
        });
        match self
            .reporter
            .send(&started, Some(&job_event_id("started", job_id, attempt)))
            .await
        {
            Ok(ack) => {
                let job_id = job_id.to_string();
                tokio::spawn(async move {
                    if let Err(e) = ack.await {
                        tracing::warn!(job_id = %job_id, error = %e, "started event not stored");
                    }
                });
            }
            Err(e) => tracing::warn!(job_id = %job_id, error = %e, "cannot publish started event"),
        }
    }

    async fn run(self: Arc<Self>, assignment: Assignment, running_now: u32) {
        let (job_id, attempt) = (assignment.job_id.clone(), assignment.attempt);
        let began = Instant::now();
        let began_us = fleet_protocol::time::now_us();
        let work = self.workloads.run(&assignment);
        tokio::pin!(work);
        let outcome = if self.report_start_after.is_zero() {
            self.announce_start(&job_id, attempt, running_now).await;
            work.await
        } else {
            tokio::select! {
                outcome = &mut work => outcome,
                () = tokio::time::sleep(self.report_start_after) => {
                    self.announce_start(&job_id, attempt, running_now).await;
                    work.await
                }
            }
        };
        let duration_ms = began.elapsed().as_millis() as u64;
        {
            let mut book = self.book();
            match book.jobs.get_mut(&job_id) {
                Some(held) if held.attempt == attempt => held.phase = Phase::Finishing,
                // Cancelled or dropped meanwhile: nothing to report.
                _ => return,
            }
        }
        self.start_waiting();
        // A result too large to report fails the attempt with a clear
        // error instead of an event the stream would refuse.
        let outcome = outcome.and_then(|result| {
            let size = result.to_string().len();
            let limit = fleet_protocol::defaults::MAX_RESULT_BYTES;
            if size > limit {
                Err(WorkloadError::ResultTooLarge { size, limit })
            } else {
                Ok(result)
            }
        });
        let (kind, event) = match outcome {
            Ok(result) => (
                "completed",
                AgentEvent::Completed(Completed {
                    agent_id: self.agent_id.clone(),
                    job_id: job_id.clone(),
                    attempt,
                    result,
                    duration_ms,
                    started_at_us: Some(began_us),
                }),
            ),
            Err(error) => {
                tracing::info!(job_id = %job_id, attempt, %error, "job failed");
                (
                    "failed",
                    AgentEvent::Failed(Failed {
                        agent_id: self.agent_id.clone(),
                        job_id: job_id.clone(),
                        attempt,
                        error: error.to_string(),
                        duration_ms,
                        handed_back: false,
                    }),
                )
            }
        };
        let id = job_event_id(kind, &job_id, attempt);
        self.reporter.send_reliably(event, Some(id)).await;
        let mut book = self.book();
        if book
            .jobs
            .get(&job_id)
            .is_some_and(|h| h.attempt == attempt && matches!(h.phase, Phase::Finishing))
        {
            book.jobs.remove(&job_id);
        }
    }
}
