//! The scheduler: matches queued jobs to free agent slots.
//!
//! It sleeps until woken (jobs queued, a slot freed, an agent joined, or
//! the housekeeping tick), then runs rounds until a round places nothing.
//! A round reads a window of the queue head, places each job in priority
//! order on the best qualifying agent ([`placement`]), commits all leases
//! with one script call, and only then publishes the assignments, grouped
//! into one message per agent. A job no free agent can take is skipped,
//! so it never holds back the jobs behind it.

use std::collections::HashMap;
use std::sync::Arc;

use fleet_protocol::{subjects, time::now_ms, Assignment, AssignmentBatch};
use tokio::sync::Notify;

use crate::directory::Directory;
use crate::placement::{Candidates, Weights};
use crate::store::{Assigned, QueuedJob, Store, StoreError};
use crate::Config;

/// Jobs read from the queue head per round, as a multiple of free slots.
const WINDOW_PER_FREE_SLOT: u64 = 4;
const MIN_WINDOW: u64 = 64;
const MAX_WINDOW: u64 = 4096;

/// Runs the scheduler forever.
pub async fn run(
    nats: async_nats::Client,
    store: Store,
    directory: Arc<Directory>,
    wake: Arc<Notify>,
    config: Arc<Config>,
) -> anyhow::Result<()> {
    loop {
        wake.notified().await;
        loop {
            match round(&nats, &store, &directory, &config).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    if matches!(e.downcast_ref::<StoreError>(), Some(StoreError::NotLeader)) {
                        anyhow::bail!("scheduler: no longer leading");
                    }
                    tracing::warn!(error = %e, "scheduling round failed; retrying on the next wake-up");
                    break;
                }
            }
        }
    }
}

/// One scheduling round; returns how many jobs it assigned.
async fn round(
    nats: &async_nats::Client,
    store: &Store,
    directory: &Directory,
    config: &Config,
) -> anyhow::Result<usize> {
    let now = now_ms();
    let agents = directory.available(now);
    if agents.is_empty() {
        return Ok(0);
    }
    let mut candidates = Candidates::new(agents, Weights::default());
    let window = (candidates.free_total() * WINDOW_PER_FREE_SLOT).clamp(MIN_WINDOW, MAX_WINDOW);
    let queued = store.peek(window as usize).await?;

    let mut plan: Vec<(QueuedJob, String)> = Vec::new();
    for job in queued {
        if candidates.free_total() == 0 {
            break;
        }
        if let Some(agent) = candidates.place(&job) {
            let agent = agent.to_string();
            plan.push((job, agent));
        }
    }
    if plan.is_empty() {
        return Ok(0);
    }

    let placements: Vec<(&str, &str)> = plan
        .iter()
        .map(|(job, agent)| (job.id.as_str(), agent.as_str()))
        .collect();
    let deadline = now + config.accept_timeout.as_millis() as u64;
    let outcomes = store.assign(&placements, now, deadline).await?;

    let mut batches: HashMap<&str, Vec<Assignment>> = HashMap::new();
    for ((job, agent), outcome) in plan.iter().zip(outcomes) {
        match outcome {
            Assigned::Leased(attempt) => {
                directory.leased(agent);
                tracing::debug!(job_id = %job.id, agent_id = %agent, attempt, "job assigned");
                batches.entry(agent).or_default().push(Assignment {
                    job_id: job.id.clone(),
                    attempt,
                    kind: job.kind.clone(),
                    args: serde_json::from_str(&job.args).unwrap_or_default(),
                    timeout_ms: job.timeout_ms,
                    gpus: Vec::new(),
                });
            }
            Assigned::Refused(reason) => {
                tracing::debug!(job_id = %job.id, agent_id = %agent, %reason, "placement refused by Redis");
                directory.correct(agent, &reason);
            }
        }
    }
    let mut assigned = 0;
    for (agent, assignments) in batches {
        assigned += assignments.len();
        let body = serde_json::to_vec(&AssignmentBatch { assignments })?;
        // The leases are committed; a lost message costs an accept
        // timeout, never the job.
        if let Err(e) = nats.publish(subjects::assign(agent), body.into()).await {
            tracing::warn!(agent_id = %agent, error = %e, "cannot publish assignment");
        }
    }
    Ok(assigned)
}
