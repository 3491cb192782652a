//! Messages from the balancer to one agent, on the agent's own subjects.
//!
//! These travel over core NATS, not JetStream: the lease in Redis is the
//! truth, so a lost assignment costs one accept timeout, never the job.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One leased job for an agent to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub job_id: String,
    /// The fencing token: every event about this run must carry it.
    pub attempt: u32,
    pub kind: String,
    pub args: Value,
    pub timeout_ms: u64,
    /// Device indices the job may use on this agent.
    #[serde(default)]
    pub gpus: Vec<u32>,
}

/// The body of `fleet.agent.<id>.assign`: one or more assignments, so the
/// balancer can hand a deep queue to an agent in one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentBatch {
    pub assignments: Vec<Assignment>,
}

/// The body of `fleet.agent.<id>.control`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlMessage {
    /// The balancer does not count this incarnation of the agent as alive
    /// (it was declared dead, or its state was lost): every lease it held
    /// was failed. The agent drops that work and registers again as a new
    /// incarnation. An agent whose incarnation differs ignores this (it
    /// answers a heartbeat of a process that was already replaced).
    Register { incarnation: String },
    /// Stop running this attempt of a job.
    Cancel { job_id: String, attempt: u32 },
}
