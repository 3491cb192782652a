//! Handing committed leases to their agents: each agent's new assignments
//! in one message on its own subject (`fleet.agent.<id>.assign`).
//!
//! The scheduler and the intake (which leases jobs at once while the queue
//! is empty) both end here, after Redis has committed the leases: a lost
//! message costs an accept timeout, never the job.

use std::collections::HashMap;

use fleet_protocol::{subjects, Assignment, AssignmentBatch};

use super::directory::Directory;
use crate::state::{Placement, QueuedJob};
use crate::Config;

/// A new lease's deadlines: to be accepted by its agent, or, prefetched
/// beyond the agent's slots, to be renewed by its heartbeats.
pub(crate) fn lease_deadlines(config: &Config, now_ms: u64) -> (u64, u64) {
    let deadline = now_ms + config.accept_timeout.as_millis() as u64;
    (
        deadline,
        deadline + config.heartbeat_timeout.as_millis() as u64,
    )
}

/// Records leases that Redis committed in the directory, then sends each
/// agent its new assignments in one message; returns how many.
pub(crate) async fn send_leases<'a>(
    nats: &async_nats::Client,
    directory: &Directory,
    leased: impl IntoIterator<Item = (&'a QueuedJob, &'a Placement, Option<&'a str>, u32)>,
    now_ms: u64,
) -> anyhow::Result<usize> {
    let mut batches: HashMap<&str, Vec<Assignment>> = HashMap::new();
    for (job, placement, family, attempt) in leased {
        let agent = placement.agent.as_str();
        directory.leased(agent, &job.id, &placement.gpus, family, now_ms);
        tracing::debug!(job_id = %job.id, agent_id = %agent, attempt, gpus = ?placement.gpus, "job assigned");
        batches
            .entry(agent)
            .or_default()
            .push(job.assignment(attempt, placement));
    }
    publish_assignments(nats, batches).await
}

/// Sends each agent its assignments in one message; returns how many.
pub(crate) async fn publish_assignments(
    nats: &async_nats::Client,
    batches: HashMap<&str, Vec<Assignment>>,
) -> anyhow::Result<usize> {
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
