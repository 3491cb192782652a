//! The stats document served at `GET /api/admin/load-balancer`.
//!
//! Everything in it is read from Redis, so a restarted balancer, or a
//! second one, reports the same totals.

use serde::Serialize;

use std::collections::HashMap;

use fleet_protocol::GpuInfo;

use crate::directory::{AgentView, Directory};
use crate::policy::{score, Weights};
use crate::rate::{Activity, Percentiles};
use crate::store::{Store, StoreResult};

/// The fleet-wide document. Field names are a contract (DESIGN.md).
#[derive(Debug, Clone, Serialize)]
pub struct StatsDocument {
    pub total_agents: usize,
    pub healthy_agents: usize,
    pub total_capacity: u64,
    pub current_load: u64,
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
    /// Queued jobs (not parked) per priority class.
    pub queued_by_priority: Vec<(&'static str, u64)>,
    pub agents: Vec<AgentStats>,
}

/// Jobs per state.
#[derive(Debug, Clone, Serialize)]
pub struct JobsByState {
    pub queued: u64,
    pub leased: u64,
    pub succeeded: i64,
    pub dead: u64,
    pub cancelled: i64,
}

impl StatsDocument {
    /// Fills in everything the leader's recent activity tells.
    pub fn set_activity(&mut self, activity: &Activity, now_ms: u64) {
        self.set_throughput(activity.finished.per_second(now_ms));
        self.set_recent(activity, now_ms);
    }

    /// Fills in the windowed throughput and percentiles.
    fn set_recent(&mut self, activity: &Activity, now_ms: u64) {
        self.throughput_1m = activity.succeeded_1m.per_second(now_ms);
        self.throughput_5m = activity.succeeded_5m.per_second(now_ms);
        if let Some((wait, run)) = activity.recent.percentiles(now_ms) {
            self.queue_wait_ms = Some(wait);
            self.run_ms = Some(run);
        }
    }

    /// Fills in the throughput and the drain estimate it implies.
    pub fn set_throughput(&mut self, per_second: f64) {
        self.completions_per_s = per_second;
        self.queue_drain_eta_s = (per_second > 0.01).then(|| self.queued_jobs as f64 / per_second);
    }
}

/// One agent's line in the document.
#[derive(Debug, Clone, Serialize)]
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

/// Reads the document: everything from Redis but the GPU temperatures,
/// which only the leader's directory holds (from heartbeats).
pub async fn collect(
    store: &Store,
    directory: &Directory,
    now_ms: u64,
) -> StoreResult<StatsDocument> {
    let totals = store.counters().await?;
    let agents = store.load_agents().await?;
    let live: HashMap<String, AgentView> = directory
        .snapshot()
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    let counter = |name: &str| totals.counters.get(name).copied().unwrap_or(0);

    let mut doc_agents = Vec::with_capacity(agents.len());
    let (mut healthy_agents, mut capacity, mut load, mut healthy_load) = (0, 0u64, 0u64, 0u64);
    for mut view in agents {
        if let Some(l) = live.get(&view.id) {
            view.temperature_c = l.temperature_c;
            view.utilization_pct = l.utilization_pct;
        }
        let is_healthy = directory.is_healthy(&view, now_ms);
        if is_healthy {
            healthy_agents += 1;
            capacity += u64::from(view.slots);
            healthy_load += u64::from(view.leases);
        }
        load += u64::from(view.leases);
        doc_agents.push(AgentStats {
            current_jobs: view.leases,
            max_jobs: view.slots,
            load_percent: percent(u64::from(view.leases), u64::from(view.slots)),
            success_rate: view.success_rate(),
            score: score(
                &view,
                view.free_slots(),
                Weights::default(),
                None,
                (None, None),
            ),
            is_healthy,
            draining: view.draining,
            stopping: view.stopping,
            gpus: view.capabilities.gpus.clone(),
            gpus_in_use: view.gpu_jobs.len(),
            temperature_c: view.temperature_c,
            kinds: view.capabilities.kinds.clone(),
            tags: view.capabilities.tags.clone(),
            agent_id: view.id,
        });
    }
    doc_agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    Ok(StatsDocument {
        total_agents: doc_agents.len(),
        healthy_agents,
        total_capacity: capacity,
        current_load: load,
        // A fraction (0–1) of the healthy agents' slots in use.
        utilization: percent(healthy_load, capacity) / 100.0,
        queued_jobs: totals.queued + totals.parked,
        unschedulable_jobs: totals.parked,
        assigned_jobs: totals.leased,
        dead_letters: totals.dead,
        total_jobs_retried: counter("retried"),
        total_jobs_submitted: counter("submitted"),
        total_jobs_assigned: counter("assigned"),
        total_jobs_succeeded: counter("succeeded"),
        total_jobs_dead: counter("dead"),
        total_jobs_cancelled: counter("cancelled"),
        total_jobs_rejected: counter("rejected"),
        total_failed_attempts: counter("failed_attempts"),
        total_duplicate_submissions: counter("duplicates"),
        total_stale_events: counter("stale_events"),
        total_bad_events: counter("bad_events"),
        completions_per_s: 0.0,
        queue_drain_eta_s: None,
        throughput_1m: 0.0,
        throughput_5m: 0.0,
        queue_wait_ms: None,
        run_ms: None,
        jobs_by_state: JobsByState {
            queued: totals.queued + totals.parked,
            leased: totals.leased,
            succeeded: counter("succeeded"),
            dead: totals.dead,
            cancelled: counter("cancelled"),
        },
        queued_by_priority: store.queue_by_priority().await?,
        agents: doc_agents,
    })
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
