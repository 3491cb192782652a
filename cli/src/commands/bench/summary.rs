//! What a bench run reports: [`BenchReport`], the one document that the
//! text summary, `--json` and the HTML page are all drawn from.

use std::collections::{BTreeMap, HashMap};

use fleet_protocol::{JobResult, JobState};
use serde::{Deserialize, Serialize};

use super::samples::Samples;

/// One run, as `fleetctl bench --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub jobs: usize,
    pub succeeded: usize,
    pub dead: usize,
    pub cancelled: usize,
    /// Jobs still without a result at the deadline.
    pub lost: usize,
    pub submit_s: f64,
    pub duration_s: f64,
    pub jobs_per_s: f64,
    /// Submit → assigned, submit → started, submit → result received,
    /// then the balancer's queue wait and run time; null when no job
    /// gave that figure.
    pub assign_latency_ms: Option<Summary>,
    pub start_latency_ms: Option<Summary>,
    pub e2e_latency_ms: Option<Summary>,
    pub queue_wait_ms: Option<Summary>,
    pub run_ms: Option<Summary>,
    pub makespan_s: f64,
    /// Busy slot time over the healthy slots' time; null when the
    /// balancer did not say how many slots there are.
    pub utilization: Option<f64>,
    /// Coefficient of variation of jobs per agent: 0 is perfectly even.
    pub load_cv: f64,
    pub agents_used: usize,
    pub per_agent: HashMap<String, usize>,
    pub per_kind: BTreeMap<String, KindSummary>,
}

impl BenchReport {
    /// The latency summaries, named as in the JSON, in the order shown.
    pub fn latencies(&self) -> [(&'static str, Option<&Summary>); 5] {
        [
            ("assign_latency_ms", self.assign_latency_ms.as_ref()),
            ("start_latency_ms", self.start_latency_ms.as_ref()),
            ("e2e_latency_ms", self.e2e_latency_ms.as_ref()),
            ("queue_wait_ms", self.queue_wait_ms.as_ref()),
            ("run_ms", self.run_ms.as_ref()),
        ]
    }
}

/// What the run itself timed, beside the samples.
#[derive(Debug, Clone, Copy)]
pub struct RunTimes {
    pub submit_s: f64,
    pub duration_s: f64,
}

/// The report of `submitted` jobs of which `results` ended.
pub fn report(
    ids: &[String],
    kinds: &[String],
    results: &[JobResult],
    samples: Samples,
    times: RunTimes,
) -> BenchReport {
    let count = |state: JobState| results.iter().filter(|r| r.state == state).count();
    BenchReport {
        jobs: ids.len(),
        succeeded: count(JobState::Succeeded),
        dead: count(JobState::Dead),
        cancelled: count(JobState::Cancelled),
        lost: ids.len().saturating_sub(results.len()),
        submit_s: times.submit_s,
        duration_s: times.duration_s,
        jobs_per_s: ids.len() as f64 / times.duration_s,
        assign_latency_ms: Summary::of(samples.assign),
        start_latency_ms: Summary::of(samples.start),
        e2e_latency_ms: Summary::of(samples.e2e),
        queue_wait_ms: Summary::of(samples.queue_wait),
        run_ms: Summary::of(samples.run),
        makespan_s: samples.makespan_s,
        utilization: samples.utilization,
        load_cv: samples.load_cv,
        agents_used: samples.per_agent.len(),
        per_agent: samples.per_agent,
        per_kind: per_kind(ids, kinds, results),
    }
}

/// p50, p90, p99, p99.9, max and mean of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// None for an empty sample.
    pub fn of(mut values: Vec<f64>) -> Option<Summary> {
        values.sort_by(f64::total_cmp);
        let max = *values.last()?;
        let at = |q: f64| values[((values.len() as f64 - 1.0) * q).round() as usize];
        Some(Summary {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max,
            mean: values.iter().sum::<f64>() / values.len() as f64,
        })
    }
}

/// One workload kind: how many ran and how they ended, and the figures
/// the workloads measure themselves, over its succeeded jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindSummary {
    pub jobs: usize,
    pub succeeded: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ms: Option<Summary>,
    /// Memory-bound CUDA kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gb_per_s: Option<Summary>,
    /// Compute-bound CUDA kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tflop_per_s: Option<Summary>,
}

/// `ids[i]` was submitted as `kinds[i]`.
fn per_kind(
    ids: &[String],
    kinds: &[String],
    results: &[JobResult],
) -> BTreeMap<String, KindSummary> {
    let kind_of: HashMap<&str, &str> = ids
        .iter()
        .zip(kinds)
        .map(|(id, kind)| (id.as_str(), kind.as_str()))
        .collect();
    let mut by_kind: BTreeMap<&str, Vec<&JobResult>> = BTreeMap::new();
    for r in results {
        if let Some(kind) = kind_of.get(r.job_id.as_str()) {
            by_kind.entry(kind).or_default().push(r);
        }
    }
    by_kind
        .into_iter()
        .map(|(kind, rs)| {
            let succeeded: Vec<&JobResult> = rs
                .iter()
                .copied()
                .filter(|r| r.state == JobState::Succeeded)
                .collect();
            let figure = |name: &str| {
                Summary::of(
                    succeeded
                        .iter()
                        .filter_map(|r| r.result.as_ref()?.get(name)?.as_f64())
                        .collect(),
                )
            };
            let summary = KindSummary {
                jobs: rs.len(),
                succeeded: succeeded.len(),
                device_ms: figure("device_ms"),
                gb_per_s: figure("gb_per_s"),
                tflop_per_s: figure("tflop_per_s"),
            };
            (kind.to_string(), summary)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn ended(id: &str, state: JobState, result: Option<Value>) -> JobResult {
        JobResult {
            job_id: id.into(),
            state,
            result,
            error: None,
            agent_id: None,
            attempts: Vec::new(),
            finished_at_ms: 0,
            timing: None,
        }
    }

    #[test]
    fn per_kind_summarises_what_the_workloads_measured() {
        let ids = ["a", "b", "c", "d"].map(String::from);
        let kinds = [
            "cuda.vector_add",
            "cuda.vector_add",
            "cuda.matmul",
            "cuda.matmul",
        ]
        .map(String::from);
        let results = [
            ended(
                "a",
                JobState::Succeeded,
                Some(json!({"device_ms": 1.0, "gb_per_s": 3000.0})),
            ),
            ended(
                "b",
                JobState::Succeeded,
                Some(json!({"device_ms": 3.0, "gb_per_s": 1000.0})),
            ),
            ended(
                "c",
                JobState::Succeeded,
                Some(json!({"device_ms": 2.0, "tflop_per_s": 700.0})),
            ),
            // A failed job's figures (it has none) count in jobs only.
            ended("d", JobState::Dead, None),
        ];
        let k = per_kind(&ids, &kinds, &results);
        let add = &k["cuda.vector_add"];
        assert_eq!((add.jobs, add.succeeded), (2, 2));
        assert_eq!(add.gb_per_s.map(|s| s.max), Some(3000.0));
        assert_eq!(add.device_ms.map(|s| s.mean), Some(2.0));
        assert_eq!(add.tflop_per_s, None);
        let matmul = &k["cuda.matmul"];
        assert_eq!((matmul.jobs, matmul.succeeded), (2, 1));
        assert_eq!(matmul.tflop_per_s.map(|s| s.p50), Some(700.0));
        // A figure no job measured is left out of the JSON, not null.
        let text = serde_json::to_value(add).unwrap_or_default();
        assert!(text.get("tflop_per_s").is_none(), "{text}");
    }

    #[test]
    fn a_summary_of_nothing_is_none_and_of_one_value_is_that_value() {
        assert_eq!(Summary::of(Vec::new()), None);
        let one = Summary::of(vec![4.0]);
        assert_eq!(
            one.map(|s| (s.p50, s.p999, s.max, s.mean)),
            Some((4.0, 4.0, 4.0, 4.0))
        );
    }
}
