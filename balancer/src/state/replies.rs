//! What each Lua script answered, decoded once into a type of its own.
//!
//! The scripts reply with flat arrays (Lua has no richer type that Redis
//! carries back); [`Store`](super::Store) turns each into one of these
//! enums, so callers match on variants instead of reading positions.

use fleet_protocol::AttemptRecord;

/// What the enqueue script did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// Leased at once, as attempt 1, to the agent the intake chose.
    Leased,
    /// The id was seen before; nothing changed.
    Duplicate,
}

/// What the assign script did with one placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// Leased; the value is the attempt number, the lease's fencing token.
    Leased(u32),
    Refused(String),
}

/// The outcome of a leadership attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lead {
    /// We lead; the token fences every write.
    Leader(String),
    /// Someone else leads, holding this token.
    Follower(String),
}

/// What the sweeper's script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    AgentLost(String),
    Requeued {
        job_id: String,
        agent_id: String,
        /// Why the attempt failed (agent lost, never started, timed out).
        error: String,
    },
    Dead {
        job_id: String,
        agent_id: String,
        history: Vec<AttemptRecord>,
    },
    Cancel {
        job_id: String,
        agent_id: String,
        attempt: u32,
    },
    /// Parked past the unschedulable timeout; now dead.
    Unschedulable {
        job_id: String,
        error: String,
        history: Vec<AttemptRecord>,
    },
}

/// What retry.lua did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// Queued again with fresh attempts.
    Queued,
    Unknown,
    /// Only dead and cancelled jobs are retried; this one is in that state.
    NotRetryable(fleet_protocol::JobState),
}

/// What cancel.lua did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// Cancelled; the agent (if leased) must stop that attempt.
    Done {
        lease: Option<(String, u32)>,
        history: Vec<AttemptRecord>,
    },
    Unknown,
    /// The job had already ended in this (terminal) state.
    AlreadyEnded(fleet_protocol::JobState),
}
