//! The stats document served at `GET /api/admin/load-balancer`.
//!
//! Everything in it is read from Redis, so a restarted balancer, or a
//! second one, reports the same totals.

use std::collections::HashMap;

use fleet_protocol::api::{AgentStats, JobsByState, StatsDocument};

use crate::scheduling::directory::{AgentView, Directory};
use crate::scheduling::policy::{score, Weights};
use crate::state::{Store, StoreResult};
use crate::telemetry::rate::Activity;

/// Fills in everything the leader's recent activity tells: throughput,
/// the drain estimate, the windowed throughput and percentiles.
pub(crate) fn add_activity(doc: &mut StatsDocument, activity: &Activity, now_ms: u64) {
    doc.set_throughput(activity.finished.per_second(now_ms));
    doc.throughput_1m = activity.succeeded_1m.per_second(now_ms);
    doc.throughput_5m = activity.succeeded_5m.per_second(now_ms);
    if let Some((wait, run)) = activity.recent.percentiles(now_ms) {
        doc.queue_wait_ms = Some(wait);
        doc.run_ms = Some(run);
    }
}

/// Reads the document: everything from Redis but the GPU temperatures,
/// which only the leader's directory holds (from heartbeats).
pub(crate) async fn collect(
    store: &Store,
    directory: &Directory,
    now_ms: u64,
) -> StoreResult<StatsDocument> {
    let totals = store.counters().await?;
    let agents = store.load_agents().await?.into_iter().map(AgentView::from);
    let live: HashMap<String, AgentView> = directory
        .snapshot()
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    let counter = |name: &str| totals.counters.get(name).copied().unwrap_or(0);

    let mut doc_agents = Vec::new();
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
