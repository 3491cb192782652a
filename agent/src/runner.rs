//! Running assignments within the agent's slots.
//!
//! The balancer never leases more jobs to an agent than its slots; the
//! runner still checks, and refuses an assignment that would exceed them,
//! so the agent's own count stays the proof of invariant 3. A slot is
//! freed before the job's terminal event is published, because the
//! balancer may hand the slot on as soon as it reads that event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fleet_protocol::event::{Completed, Failed, Register, Started};
use fleet_protocol::{AgentEvent, Assignment, AssignmentBatch, ControlMessage, RunningJob};
use futures::StreamExt;
use tokio::task::AbortHandle;

use crate::reporter::{job_event_id, Reporter};
use crate::workloads::Workloads;

pub struct Runner {
    agent_id: String,
    slots: u32,
    reporter: Reporter,
    workloads: Arc<Workloads>,
    running: Mutex<HashMap<String, (u32, AbortHandle)>>,
}

impl Runner {
    pub fn new(register: Register, reporter: Reporter, workloads: Workloads) -> Runner {
        Runner {
            agent_id: register.agent_id,
            slots: register.slots,
            reporter,
            workloads: Arc::new(workloads),
            running: Mutex::new(HashMap::new()),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, AbortHandle)>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The jobs running now, for heartbeats.
    pub fn running_jobs(&self) -> Vec<RunningJob> {
        self.running()
            .iter()
            .map(|(job_id, (attempt, _))| RunningJob {
                job_id: job_id.clone(),
                attempt: *attempt,
            })
            .collect()
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
    pub async fn serve_control(
        self: Arc<Self>,
        mut subscription: async_nats::Subscriber,
        register: Register,
    ) {
        while let Some(message) = subscription.next().await {
            match serde_json::from_slice::<ControlMessage>(&message.payload) {
                Ok(ControlMessage::Register) => {
                    tracing::info!(agent_id = %self.agent_id, "balancer asked us to register again");
                    self.reporter
                        .send_reliably(AgentEvent::Register(register.clone()), None)
                        .await;
                }
                Ok(ControlMessage::Cancel { job_id, attempt }) => self.cancel(&job_id, attempt),
                Err(e) => {
                    tracing::warn!(agent_id = %self.agent_id, error = %e, "undecodable control message ignored")
                }
            }
        }
    }

    fn cancel(&self, job_id: &str, attempt: u32) {
        let mut running = self.running();
        if running.get(job_id).is_some_and(|(a, _)| *a == attempt) {
            if let Some((_, handle)) = running.remove(job_id) {
                handle.abort();
                tracing::info!(job_id, attempt, agent_id = %self.agent_id, "job cancelled");
            }
        }
    }

    async fn accept(self: Arc<Self>, assignment: Assignment) {
        let job_id = assignment.job_id.clone();
        let attempt = assignment.attempt;
        // Claim the slot and start the task under one lock, so the count
        // can never pass the slots (the task's own removal waits for it).
        let claimed = {
            let mut running = self.running();
            if running.get(&job_id).is_some_and(|(a, _)| *a == attempt) {
                tracing::debug!(job_id = %job_id, attempt, "duplicate assignment ignored");
                return;
            }
            if running.len() >= self.slots as usize {
                false
            } else {
                let running_now = running.len() as u32 + 1;
                let task = tokio::spawn(self.clone().run(assignment, running_now));
                running.insert(job_id.clone(), (attempt, task.abort_handle()));
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
    /// is accepted without it), so its ack is awaited off the job's path;
    /// it is published from the job's own task, so it always precedes the
    /// job's terminal event.
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
        self.announce_start(&assignment.job_id, assignment.attempt, running_now)
            .await;
        let began = Instant::now();
        let outcome = self.workloads.run(&assignment).await;
        let duration_ms = began.elapsed().as_millis() as u64;
        {
            let mut running = self.running();
            if running
                .get(&assignment.job_id)
                .is_some_and(|(a, _)| *a == assignment.attempt)
            {
                running.remove(&assignment.job_id);
            }
        }
        let (kind, event) = match outcome {
            Ok(result) => (
                "completed",
                AgentEvent::Completed(Completed {
                    agent_id: self.agent_id.clone(),
                    job_id: assignment.job_id.clone(),
                    attempt: assignment.attempt,
                    result,
                    duration_ms,
                }),
            ),
            Err(error) => {
                tracing::info!(job_id = %assignment.job_id, attempt = assignment.attempt, %error, "job failed");
                (
                    "failed",
                    AgentEvent::Failed(Failed {
                        agent_id: self.agent_id.clone(),
                        job_id: assignment.job_id.clone(),
                        attempt: assignment.attempt,
                        error,
                        duration_ms,
                    }),
                )
            }
        };
        let id = job_event_id(kind, &assignment.job_id, assignment.attempt);
        self.reporter.send_reliably(event, Some(id)).await;
    }
}
