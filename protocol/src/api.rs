//! The balancer's HTTP API documents: what each route answers, as the
//! balancer writes it and as fleetctl and the tests read it.
//!
//! One set of types on both sides means a renamed field fails to compile
//! rather than reading as `null` in the CLI. Field names are a contract
//! (PROTOCOL.md documents each route), so every rename here is a change of
//! the API.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AttemptRecord, GpuInfo, JobState, Priority, Requirements};

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or what is wrong (`redis unreachable`).
    pub status: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether the balancer answering leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Standby,
}

/// `GET /api/admin/load-balancer`: the fleet-wide stats document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsDocument {
    pub total_agents: usize,
    pub healthy_agents: usize,
    pub total_capacity: u64,
    pub current_load: u64,
    /// A fraction (0–1) of the healthy agents' slots in use.
    pub utilization: f64,
    /// Queued jobs, unschedulable ones included.
    pub queued_jobs: u64,
    /// Queued jobs no live agent can run (each has its reason).
    pub unschedulable_jobs: u64,
    pub assigned_jobs: u64,
    pub dead_letters: u64,
    pub total_jobs_retried: i64,
    pub total_jobs_submitted: i64,
    pub total_jobs_assigned: i64,
    pub total_jobs_succeeded: i64,
    pub total_jobs_dead: i64,
    pub total_jobs_cancelled: i64,
    pub total_jobs_rejected: i64,
    pub total_failed_attempts: i64,
    pub total_duplicate_submissions: i64,
    pub total_stale_events: i64,
    pub total_bad_events: i64,
    /// Jobs ending per second over about the last minute (as counted by
    /// the leader; a standby reports 0).
    pub completions_per_s: f64,
    /// Seconds until the queue drains at that pace; null when nothing ends.
    pub queue_drain_eta_s: Option<f64>,
    /// Jobs succeeded per second over about the last 1 and 5 minutes
    /// (moving averages).
    pub throughput_1m: f64,
    pub throughput_5m: f64,
    /// Queue wait and run time of jobs succeeded in the last 5 minutes
    /// (ms; null when none).
    pub queue_wait_ms: Option<Percentiles>,
    pub run_ms: Option<Percentiles>,
    /// Jobs in each state now (succeeded, dead and cancelled: totals).
    pub jobs_by_state: JobsByState,
    /// Queued jobs (not parked) per priority class, highest first.
    pub queued_by_priority: Vec<(Priority, u64)>,
    pub agents: Vec<AgentStats>,
}

impl StatsDocument {
    /// Fills in the throughput and the drain estimate it implies.
    pub fn set_throughput(&mut self, per_second: f64) {
        self.completions_per_s = per_second;
        self.queue_drain_eta_s = (per_second > 0.01).then(|| self.queued_jobs as f64 / per_second);
    }
}

/// Jobs per state, in the stats document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsByState {
    pub queued: u64,
    pub leased: u64,
    pub succeeded: i64,
    pub dead: u64,
    pub cancelled: i64,
}

/// Percentiles of one measure over a window, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// One agent's line in the stats document and in `GET /api/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStats {
    pub agent_id: String,
    pub current_jobs: u32,
    pub max_jobs: u32,
    pub load_percent: f64,
    pub success_rate: f64,
    pub score: f64,
    pub is_healthy: bool,
    pub draining: bool,
    /// Shutting down: finishing what it holds, taking nothing new.
    pub stopping: bool,
    pub gpus: Vec<GpuInfo>,
    pub gpus_in_use: usize,
    pub temperature_c: Option<f32>,
    pub kinds: Vec<String>,
    pub tags: Vec<String>,
}

/// `GET /api/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<AgentStats>,
}

/// `GET /api/jobs/{id}`: one job as the balancer holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub state: Option<JobState>,
    pub priority: Option<Priority>,
    /// The priority it was submitted with, when ageing raised it since.
    pub submitted_priority: Option<Priority>,
    pub args: Option<Value>,
    pub requires: Option<Requirements>,
    /// The producer's run-time limit.
    pub timeout_ms: Option<u64>,
    /// The current lease's run-time limit (the producer's, or derived).
    pub lease_timeout_ms: Option<u64>,
    pub max_attempts: Option<u64>,
    pub attempt: Option<u64>,
    pub agent_id: Option<String>,
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub unschedulable_reason: Option<String>,
    pub submitted_at_ms: Option<u64>,
    pub assigned_at_ms: Option<u64>,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
}

/// `GET /api/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// `GET /api/dead`: dead-lettered jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetters {
    pub dead: Vec<JobView>,
}

/// What `POST /api/jobs/{id}/cancel` and `/retry` answer: the job's new
/// state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobChanged {
    pub job_id: String,
    pub state: JobState,
}

/// What `POST /api/agents/{id}/drain` and `/undrain` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainChanged {
    pub agent_id: String,
    pub draining: bool,
}

/// `GET /api/admin/audit`: every job and agent checked against the
/// invariants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub ok: bool,
    pub jobs: usize,
    pub agents: usize,
    pub by_state: HashMap<JobState, usize>,
    pub breaches: Vec<Breach>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    /// A job id, or `agent:<id>`.
    pub id: String,
    pub problem: String,
}

/// One `snapshot` event of `GET /api/stream`, which the dashboard draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at_ms: u64,
    pub stats: StatsDocument,
    pub queue_by_priority: Vec<(Priority, u64)>,
    /// The latest dead letters.
    pub dead: Vec<DeadSummary>,
    /// The latest failed attempts, newest first.
    pub failures: Vec<Failure>,
}

/// A dead letter as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadSummary {
    pub id: String,
    pub kind: Option<String>,
    pub error: Option<String>,
    pub attempts: usize,
}

/// One failed attempt, for the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub at_ms: u64,
    pub job_id: String,
    pub agent_id: String,
    pub error: String,
}

/// Every error reply: `{"error": "<message>"}` with the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stats document lists priorities as `["high", 3]` pairs, as the
    /// dashboard reads them.
    #[test]
    fn queued_by_priority_is_a_list_of_name_count_pairs() {
        let pairs: Vec<(Priority, u64)> = vec![(Priority::High, 3), (Priority::Low, 0)];
        let text = serde_json::to_string(&pairs).unwrap_or_default();
        assert_eq!(text, r#"[["high",3],["low",0]]"#);
        let back: Vec<(Priority, u64)> = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, pairs);
    }

    #[test]
    fn a_job_view_with_nothing_known_reads_back() {
        let text = r#"{"id":"j","kind":null,"state":"dead","priority":"low",
            "submitted_priority":null,"args":null,"requires":null,"timeout_ms":null,
            "lease_timeout_ms":null,"max_attempts":3,"attempt":3,"agent_id":null,
            "attempts":[{"attempt":1,"agent_id":"a","outcome":"failed","error":"x","duration_ms":5}],
            "result":null,"error":"x","unschedulable_reason":null,"submitted_at_ms":1,
            "assigned_at_ms":null,"started_at_ms":null,"finished_at_ms":9}"#;
        let view: Result<JobView, _> = serde_json::from_str(text);
        let view = view.map_err(|e| e.to_string());
        assert_eq!(view.as_ref().map(|v| v.state), Ok(Some(JobState::Dead)));
        assert_eq!(view.map(|v| v.attempts.len()), Ok(1));
    }
}
