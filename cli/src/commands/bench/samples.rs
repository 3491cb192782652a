//! The timings a bench run takes from its results: one sample per job for
//! each latency, plus makespan, utilization and the spread of load.
//!
//! Submissions and arrivals are on this process's clock in µs; the
//! balancer's assignment and start, in µs where it sends them. Compare
//! them only on the balancer's host or one with a synchronised clock.

use std::collections::HashMap;

use fleet_protocol::JobResult;

/// Per-job latency samples (ms) and the run's load figures.
#[derive(Debug, Default)]
pub struct Samples {
    pub assign: Vec<f64>,
    pub start: Vec<f64>,
    pub e2e: Vec<f64>,
    pub queue_wait: Vec<f64>,
    pub run: Vec<f64>,
    pub makespan_s: f64,
    pub utilization: Option<f64>,
    pub load_cv: f64,
    pub per_agent: HashMap<String, usize>,
}

/// When each job was submitted and its result received, epoch µs on this
/// process's clock, keyed by job id.
pub struct Clock<'a> {
    pub submitted: &'a HashMap<String, u64>,
    pub received: &'a HashMap<String, u64>,
    pub first_submit_ms: u64,
}

impl Samples {
    /// `capacity`: the healthy agents' slots, when the balancer said.
    pub fn take(clock: &Clock<'_>, results: &[JobResult], capacity: Option<u64>) -> Samples {
        let mut s = Samples::default();
        let mut busy_ms = 0f64;
        let mut last_finish = clock.first_submit_ms;
        let since = |at_us: f64, sub_us: u64| ((at_us - sub_us as f64) / 1000.0).max(0.0);
        for result in results {
            let Some(&sub) = clock.submitted.get(&result.job_id) else {
                continue;
            };
            if let Some(&got) = clock.received.get(&result.job_id) {
                s.e2e.push(since(got as f64, sub));
            }
            last_finish = last_finish.max(result.finished_at_ms);
            if let Some(agent) = &result.agent_id {
                *s.per_agent.entry(agent.clone()).or_default() += 1;
            }
            if let Some(t) = result.timing {
                let assigned = t
                    .assigned_at_us
                    .map_or(t.assigned_at_ms as f64 * 1000.0, |us| us as f64);
                // The agent's own stamp where it sends one: the balancer's
                // is when it recorded the start, and a job too short to
                // report one "starts" at its assignment, before the agent
                // has even heard of it.
                let started = t
                    .agent_started_at_us
                    .or(t.started_at_us)
                    .map_or(t.started_at_ms as f64 * 1000.0, |us| us as f64);
                s.assign.push(since(assigned, sub));
                s.start.push(since(started, sub));
                s.queue_wait
                    .push(t.started_at_ms.saturating_sub(t.submitted_at_ms) as f64);
                let ran = result.finished_at_ms.saturating_sub(t.started_at_ms) as f64;
                s.run.push(ran);
                busy_ms += ran;
            }
        }
        let span_ms = last_finish.saturating_sub(clock.first_submit_ms).max(1) as f64;
        s.makespan_s = span_ms / 1000.0;
        s.utilization = capacity
            .filter(|c| *c > 0)
            .map(|c| busy_ms / (span_ms * c as f64));
        let loads: Vec<f64> = s.per_agent.values().map(|&n| n as f64).collect();
        if !loads.is_empty() {
            let mean = loads.iter().sum::<f64>() / loads.len() as f64;
            let var = loads.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / loads.len() as f64;
            s.load_cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
        }
        s
    }
}
