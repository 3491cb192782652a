//! Prometheus metrics, rendered on the balancer's own HTTP server
//! (`GET /metrics`): no second listener.
//!
//! Counters and histograms are recorded where things happen, through the
//! `metrics` facade (per process: a restarted balancer starts them from
//! zero, which Prometheus' `rate()` handles). Gauges that describe the
//! fleet (queue depth by priority, agents, leases, per-agent load) are
//! read from Redis at scrape time, so any balancer, leader or standby,
//! reports the same.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

/// How long a gauge series outlives its last update.
const GAUGE_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// Installs the process-wide recorder; `None` if one already exists.
pub fn install() -> Option<PrometheusHandle> {
    let seconds = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
        .ok()?
        // Every gauge is set at each scrape from the stats document, so a
        // series not set for this long belongs to an agent that is gone.
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
        .install_recorder()
        .ok()
}

/// Counts `n` jobs into `fleet_jobs_total{event="<what>"}`.
pub fn jobs(what: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!("fleet_jobs_total", "event" => what).increment(n);
    }
}

/// Records how long a Redis call took.
pub fn redis_call(op: &'static str, took: Duration) {
    metrics::histogram!("fleet_redis_call_seconds", "op" => op).record(took.as_secs_f64());
}

/// Records how long a submission waited between JetStream storing it and
/// the intake taking it up (both clocks are this machine's when the
/// server runs here; across machines, clock skew adds in).
pub fn intake_lag(waited_us: u64) {
    metrics::histogram!("fleet_intake_lag_seconds").record(waited_us as f64 / 1e6);
}

/// Records how long a JetStream publish waited for its ack.
pub fn nats_ack(took: Duration) {
    metrics::histogram!("fleet_nats_publish_ack_seconds").record(took.as_secs_f64());
}

/// Records one scheduling round's duration (Redis and NATS round trips
/// included).
pub fn schedule_round(took: Duration, _placed: usize) {
    metrics::histogram!("fleet_schedule_round_seconds").record(took.as_secs_f64());
}

/// Records each placement decision of a round: its own time plus an even
/// share of building the round's candidates (`build`).
pub fn decisions(build: Duration, placements: &[Duration]) {
    if placements.is_empty() {
        return;
    }
    let share = build / placements.len() as u32;
    for took in placements {
        metrics::histogram!("fleet_schedule_decision_seconds")
            .record((share + *took).as_secs_f64());
    }
}

/// Records a finished job's queue wait and run time (ms on the balancer's clock).
pub fn job_timing(queue_wait_ms: u64, run_ms: u64) {
    metrics::histogram!("fleet_queue_wait_seconds").record(queue_wait_ms as f64 / 1000.0);
    metrics::histogram!("fleet_run_seconds").record(run_ms as f64 / 1000.0);
}

/// A refused submission or event, by reason.
pub fn rejected(kind: &'static str, reason: &str) {
    let name = match kind {
        "event" => "fleet_rejected_events_total",
        "admin_request" => "fleet_rejected_admin_requests_total",
        _ => "fleet_rejected_submissions_total",
    };
    metrics::counter!(name, "reason" => reason.to_string()).increment(1);
}

/// Sets the fleet gauges from a fresh stats document.
pub fn fleet_gauges(doc: &fleet_protocol::api::StatsDocument) {
    for (priority, n) in &doc.queued_by_priority {
        metrics::gauge!("fleet_queue_depth", "priority" => priority.as_str()).set(*n as f64);
    }
    metrics::gauge!("fleet_jobs_unschedulable").set(doc.unschedulable_jobs as f64);
    metrics::gauge!("fleet_leases").set(doc.assigned_jobs as f64);
    metrics::gauge!("fleet_dead_letters").set(doc.dead_letters as f64);
    metrics::gauge!("fleet_agents", "state" => "healthy").set(doc.healthy_agents as f64);
    metrics::gauge!("fleet_agents", "state" => "unhealthy")
        .set((doc.total_agents - doc.healthy_agents) as f64);
    metrics::gauge!("fleet_capacity_slots").set(doc.total_capacity as f64);
    metrics::gauge!("fleet_utilization_ratio").set(doc.utilization);
    metrics::gauge!("fleet_completions_per_second").set(doc.completions_per_s);
    for a in &doc.agents {
        let id = a.agent_id.clone();
        metrics::gauge!("fleet_agent_jobs", "agent" => id.clone()).set(f64::from(a.current_jobs));
        metrics::gauge!("fleet_agent_slots", "agent" => id.clone()).set(f64::from(a.max_jobs));
        metrics::gauge!("fleet_agent_healthy", "agent" => id.clone()).set(if a.is_healthy {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("fleet_agent_score", "agent" => id).set(a.score);
    }
}
