//! Running assignments within the agent's slots.
//!
//! The balancer never leases more jobs to an agent than its slots; the
//! runner still checks, and refuses an assignment that would exceed them,
//! so the agent's own count stays the proof of invariant 3.
//!
//! A job's life here: its slot is claimed (under one lock with the check),
//! `started` is published from the job's own task (so it always precedes
//! the terminal event), the workload runs, the job moves to *finishing*
//! (its slot is free: the balancer may reuse it as soon as it reads the
//! terminal event), the terminal event is stored, and the job is dropped.
//! Heartbeats list running and finishing jobs, so a heartbeat never omits
//! a job whose terminal event it could overtake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fleet_protocol::event::{Completed, Failed, Register, Started};
use fleet_protocol::{
    AgentEvent, Assignment, AssignmentBatch, ControlMessage, Heartbeat, RunningJob,
};
use futures::StreamExt;
use tokio::task::AbortHandle;

use crate::reporter::{job_event_id, Reporter};
use crate::workloads::Workloads;

/// One job the agent holds.
struct Held {
    attempt: u32,
    task: AbortHandle,
    /// Ended; its terminal event is being sent. Takes no slot.
    finishing: bool,
}

pub struct Runner {
    agent_id: String,
    slots: u32,
    reporter: Reporter,
    workloads: Arc<Workloads>,
    jobs: Mutex<HashMap<String, Held>>,
    /// What this process registers as; its incarnation changes when the
    /// balancer declares it dead and it registers again.
    register: Mutex<Register>,
}

impl Runner {
    pub fn new(register: Register, reporter: Reporter, workloads: Workloads) -> Runner {
        Runner {
            agent_id: register.agent_id.clone(),
            slots: register.slots,
            reporter,
            workloads: Arc::new(workloads),
            jobs: Mutex::new(HashMap::new()),
            register: Mutex::new(register),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn registration(&self) -> Register {
        self.register
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// This agent's heartbeat now.
    pub fn heartbeat(&self) -> Heartbeat {
        let register = self.registration();
        let mut running = Vec::new();
        let mut finishing = Vec::new();
        for (job_id, held) in self.jobs().iter() {
            let job = RunningJob {
                job_id: job_id.clone(),
                attempt: held.attempt,
            };
            if held.finishing {
                finishing.push(job);
            } else {
                running.push(job);
            }
        }
        Heartbeat {
            agent_id: register.agent_id,
            incarnation: register.incarnation,
            running,
            finishing,
            // Per-GPU free memory, temperature and utilization need NVML;
            // until the agent reads them, heartbeats carry none.
            gpus: Vec::new(),
        }
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
                Ok(ControlMessage::Cancel { job_id, attempt }) => self.cancel(&job_id, attempt),
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
        let dropped: Vec<(String, Held)> = self.jobs().drain().collect();
        for (job_id, held) in &dropped {
            held.task.abort();
            tracing::warn!(job_id = %job_id, attempt = held.attempt, "dropping a job the balancer re-queued");
        }
        let incarnation = ulid::Ulid::new().to_string();
        self.register
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .incarnation = incarnation;
        tracing::warn!(agent_id = %self.agent_id, dropped = dropped.len(), "balancer asked us to register again");
        self.register().await;
    }

    fn cancel(&self, job_id: &str, attempt: u32) {
        let mut jobs = self.jobs();
        if jobs.get(job_id).is_some_and(|h| h.attempt == attempt) {
            if let Some(held) = jobs.remove(job_id) {
                held.task.abort();
                tracing::info!(job_id, attempt, agent_id = %self.agent_id, "job cancelled");
            }
        }
    }

    async fn accept(self: Arc<Self>, assignment: Assignment) {
        let job_id = assignment.job_id.clone();
        let attempt = assignment.attempt;
        // Claim the slot and start the task under one lock, so the count
        // can never pass the slots (the task's own bookkeeping waits for it).
        let claimed = {
            let mut jobs = self.jobs();
            match jobs.get(&job_id) {
                Some(h) if h.attempt == attempt => {
                    tracing::debug!(job_id = %job_id, attempt, "duplicate assignment ignored");
                    return;
                }
                // A newer attempt of a job we still hold: the balancer gave
                // up on ours, so stop it before taking the new one.
                Some(h) => {
                    h.task.abort();
                    jobs.remove(&job_id);
                }
                None => {}
            }
            let busy = jobs.values().filter(|h| !h.finishing).count();
            if busy >= self.slots as usize {
                false
            } else {
                let running_now = busy as u32 + 1;
                let task = tokio::spawn(self.clone().run(assignment, running_now));
                jobs.insert(
                    job_id.clone(),
                    Held {
                        attempt,
                        task: task.abort_handle(),
                        finishing: false,
                    },
                );
                true
            }
        };
        if !claimed {
            tracing::error!(job_id = %job_id, attempt, agent_id = %self.agent_id, slots = self.slots, "assignment over capacity refused");
            let failed = AgentEvent::Failed(Failed {
                agent_id: self.agent_id.clone(),
                job_id: job_id.clone(),
                attempt,
                error: format!("agent over capacity ({} slots busy)", self.slots),
                duration_ms: 0,
            });
            let id = job_event_id("failed", &job_id, attempt);
            self.reporter.send_reliably(failed, Some(id)).await;
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
        self.announce_start(&job_id, attempt, running_now).await;
        let began = Instant::now();
        let outcome = self.workloads.run(&assignment).await;
        let duration_ms = began.elapsed().as_millis() as u64;
        {
            let mut jobs = self.jobs();
            match jobs.get_mut(&job_id) {
                Some(held) if held.attempt == attempt => held.finishing = true,
                // Cancelled or dropped meanwhile: nothing to report.
                _ => return,
            }
        }
        let (kind, event) = match outcome {
            Ok(result) => (
                "completed",
                AgentEvent::Completed(Completed {
                    agent_id: self.agent_id.clone(),
                    job_id: job_id.clone(),
                    attempt,
                    result,
                    duration_ms,
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
                        error,
                        duration_ms,
                    }),
                )
            }
        };
        let id = job_event_id(kind, &job_id, attempt);
        self.reporter.send_reliably(event, Some(id)).await;
        let mut jobs = self.jobs();
        if jobs.get(&job_id).is_some_and(|h| h.attempt == attempt) {
            jobs.remove(&job_id);
        }
    }
}
