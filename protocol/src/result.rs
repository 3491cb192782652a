//! What a producer gets back: the terminal record of a job, and the
//! rejection notice for a submission that was refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a job is in its life. The last three are terminal.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum JobState {
    Queued,
    Assigned,
    Running,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }

    /// The state's name, as serde writes it and Redis stores it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The state named `s` exactly (as Redis stores it).
    pub fn parse(s: &str) -> Option<JobState> {
        s.parse().ok()
    }
}

/// How one attempt ended.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum AttemptOutcome {
    /// Its result was accepted.
    Succeeded,
    /// It failed, was lost with its agent, or ran out of time.
    Failed,
    /// An operator cancelled the job while this attempt held it.
    Cancelled,
    /// Work stealing moved it, not started, to another agent.
    Moved,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Compares with the name as it appears on the wire.
impl PartialEq<&str> for AttemptOutcome {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

/// One attempt at running a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub agent_id: String,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub duration_ms: u64,
}

/// The terminal record of a job, on `fleet.results.<job_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub job_id: String,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The agent whose result was accepted, for a succeeded job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    pub finished_at_ms: u64,
    /// When the balancer queued the job, leased and started the accepted
    /// attempt (its clock, ms since the epoch), for a succeeded job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
}

/// A succeeded job's milestones on the balancer's clock (ms since epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub submitted_at_ms: u64,
    pub assigned_at_ms: u64,
    pub started_at_ms: u64,
    /// The assignment and start again in microseconds, stamped as the
    /// balancer sends the script call that commits them (the millisecond
    /// fields at the start of its round or batch, up to a few ms earlier), for
    /// sub-millisecond latency figures (`fleetctl bench`); absent from
    /// older balancers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_at_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_us: Option<u64>,
    /// When the agent began the accepted attempt, in µs on the agent's
    /// clock (its completion says), after the assignment reached it: what
    /// `fleetctl bench` takes as a job's start. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_started_at_us: Option<u64>,
}

/// A refused submission, on `fleet.rejected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The job id, when the submission carried a readable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// A short stable reason: `malformed`, `unknown_kind`, `too_large`, …
    pub reason: String,
    /// The full message.
    pub error: String,
}
