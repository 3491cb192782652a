//! The records the balancer keeps in Redis, decoded once from their hashes
//! and script replies into types, so no caller reads a field by name or
//! position.

use std::collections::HashMap;

use fleet_protocol::{AttemptRecord, Capabilities, JobState, Priority, Requirements, ValidJob};
use serde_json::Value;

/// A queued job as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub id: String,
    pub kind: String,
    /// The job's arguments, as the JSON text stored at submission.
    pub args: String,
    pub rank: u8,
    /// The producer's timeout; `None` leaves it to the balancer.
    pub timeout_ms: Option<u64>,
    pub requires: Requirements,
    /// The agent whose attempt failed last, if any: retries go elsewhere
    /// when they can.
    pub last_agent: Option<String>,
}

impl QueuedJob {
    /// A job just submitted, as the intake places it before it reaches
    /// the queue.
    pub fn submitted(job: &ValidJob) -> QueuedJob {
        QueuedJob {
            id: job.id.clone(),
            kind: job.kind.clone(),
            args: job.args.to_string(),
            rank: job.priority.rank(),
            timeout_ms: job.timeout_given.then_some(job.timeout.as_millis() as u64),
            requires: job.requires.clone(),
            last_agent: None,
        }
    }

    /// A job from the first six fields the scripts return for it: id,
    /// kind, args, rank, timeout_ms, requires.
    pub(crate) fn from_fields(f: &[String], last_agent: Option<String>) -> QueuedJob {
        QueuedJob {
            id: f[0].clone(),
            kind: f[1].clone(),
            args: f[2].clone(),
            rank: f[3].parse().unwrap_or(1),
            timeout_ms: f[4].parse().ok(),
            requires: serde_json::from_str(&f[5]).unwrap_or_default(),
            last_agent,
        }
    }

    /// What the agent is sent for this job's lease.
    pub fn assignment(&self, attempt: u32, placement: &Placement) -> fleet_protocol::Assignment {
        fleet_protocol::Assignment {
            job_id: self.id.clone(),
            attempt,
            kind: self.kind.clone(),
            args: serde_json::from_str(&self.args).unwrap_or_default(),
            timeout_ms: placement.timeout_ms,
            gpus: placement.gpus.clone(),
        }
    }
}

/// A job placed in this round: the agent, the devices it gets, and the
/// run-time limit of this lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub agent: String,
    pub gpus: Vec<u32>,
    pub timeout_ms: u64,
}

/// Run-time history of one workload kind on one agent (moving averages).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perf {
    /// Average run time, ms.
    pub ms: f64,
    /// Average success, 0.0 to 1.0.
    pub ok: f64,
    /// Attempts behind the averages.
    pub n: u64,
}

/// Reads a `P:agent:<id>:perf` hash: `<kind>|ms`, `<kind>|ok`, `<kind>|n`.
pub(crate) fn parse_perf(row: &HashMap<String, String>) -> HashMap<String, Perf> {
    let mut out: HashMap<String, Perf> = HashMap::new();
    for (field, value) in row {
        let (Some((kind, what)), Ok(v)) = (field.rsplit_once('|'), value.parse::<f64>()) else {
            continue;
        };
        let p = out.entry(kind.to_string()).or_insert(Perf {
            ms: 0.0,
            ok: 1.0,
            n: 0,
        });
        match what {
            "ms" => p.ms = v,
            "ok" => p.ok = v,
            "n" => p.n = v as u64,
            _ => {}
        }
    }
    out
}

/// One registered agent as Redis holds it: `P:agent:<id>` with its lease
/// set, GPU holders and performance history.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub id: String,
    pub slots: u32,
    /// Not-started jobs it may hold beyond its slots.
    pub prefetch: u32,
    pub capabilities: Capabilities,
    pub last_seen_ms: u64,
    /// Jobs leased to it now (`P:agent:<id>:jobs`).
    pub leases: u32,
    pub succeeded: u64,
    pub failed: u64,
    /// `state` is `alive` (not declared dead by the sweeper).
    pub alive: bool,
    pub draining: bool,
    /// It said it is shutting down.
    pub stopping: bool,
    /// Device index → the job holding it.
    pub gpu_jobs: HashMap<u32, String>,
    /// Per workload kind.
    pub perf: HashMap<String, Perf>,
}

impl AgentRecord {
    /// Decodes the agent hash (`None` when it is gone) with its lease
    /// count, GPU holders and perf hash. A field missing or unreadable
    /// reads as zero or false, as the scripts treat it.
    pub(crate) fn decode(
        id: &str,
        hash: &HashMap<String, String>,
        leases: u32,
        gpu_jobs: HashMap<u32, String>,
        perf: &HashMap<String, String>,
    ) -> Option<AgentRecord> {
        if hash.is_empty() {
            return None;
        }
        let num = |f: &str| hash.get(f).and_then(|v| v.parse().ok()).unwrap_or(0u64);
        let flag = |f: &str, on: &str| hash.get(f).map(String::as_str) == Some(on);
        Some(AgentRecord {
            id: id.to_string(),
            slots: num("slots") as u32,
            prefetch: num("prefetch") as u32,
            capabilities: hash
                .get("caps")
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default(),
            last_seen_ms: num("last_seen"),
            leases,
            succeeded: num("succeeded"),
            failed: num("failed"),
            alive: flag("state", "alive"),
            draining: flag("draining", "1"),
            stopping: flag("stopping", "1"),
            gpu_jobs,
            perf: parse_perf(perf),
        })
    }
}

/// One job as its hash `P:job:<id>` holds it. Every field is optional as
/// Redis has it (an empty string reads as absent): a job's hash grows
/// through its life, and a field unreadable as its type reads as absent
/// rather than failing the whole record.
///
/// The API shows a job exactly as Redis holds it, so the record and the
/// document `GET /api/jobs/{id}` answers with are one type: a field added
/// to the hash reaches fleetctl by being added there, once.
pub type JobRecord = fleet_protocol::api::JobView;

/// Decodes the job hash; `None` when there is no such job.
pub(crate) fn decode_job(hash: &HashMap<String, String>) -> Option<JobRecord> {
    if hash.is_empty() {
        return None;
    }
    let text = |f: &str| hash.get(f).filter(|v| !v.is_empty()).cloned();
    let num = |f: &str| text(f).and_then(|v| v.parse::<u64>().ok());
    let json = |f: &str| text(f).and_then(|v| serde_json::from_str::<Value>(&v).ok());
    let priority = |f: &str| num(f).and_then(|r| Priority::from_rank(r as u8));
    Some(JobRecord {
        id: text("id"),
        kind: text("kind"),
        state: text("state").and_then(|s| JobState::parse(&s)),
        priority: priority("rank"),
        submitted_priority: priority("submitted_rank"),
        args: json("args"),
        result: json("result"),
        requires: text("requires").and_then(|r| serde_json::from_str(&r).ok()),
        timeout_ms: num("timeout_ms"),
        lease_timeout_ms: num("lease_timeout_ms"),
        max_attempts: num("max_attempts"),
        attempt: num("attempt"),
        agent_id: text("agent"),
        attempts: text("history")
            .map(|h| decode_history(&h))
            .unwrap_or_default(),
        error: text("error"),
        unschedulable_reason: text("unschedulable_reason"),
        submitted_at_ms: num("submitted_at"),
        assigned_at_ms: num("assigned_at"),
        started_at_ms: num("started_at"),
        finished_at_ms: num("finished_at"),
    })
}

/// Decodes a job's attempt history (`history` in its hash, and in the
/// scripts' replies: a JSON array of [`AttemptRecord`]s). Only the
/// scripts write it; should one ever be unreadable, the job's outcome is
/// still reported, with no attempts listed, rather than held back.
pub(crate) fn decode_history(json: &str) -> Vec<AttemptRecord> {
    serde_json::from_str(json).unwrap_or_default()
}
