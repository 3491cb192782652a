//! `fleetctl bench`: drives a running fleet and measures it from the
//! producer's side.
//!
//! It submits `--jobs` jobs (all at once, or at `--rate` per second),
//! waits for every result, and reports throughput and latency:
//! submit → assigned, submit → started, submit → result received
//! (e2e), queue wait and run time, with p50/p90/p99/p99.9/max, plus
//! makespan, jobs per agent, utilization and the spread of load across
//! agents. Jobs still without a result at the deadline are `lost`. The
//! balancer's timestamps are compared with this process's clock: run it
//! on the balancer's host (or one with a synchronised clock).
//!
//! `--mix gpu` submits a mixed GPU workload (the policy comparison in
//! BENCHMARKS.md): 20% need one GPU with ≥ 40 GiB for 200 ms, 30% one GPU
//! for 100 ms, 50% no GPU for 10–100 ms, chosen by `--seed`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use fleet_client::Client;
use fleet_protocol::{
    time::{now_ms, now_us},
    JobResult, JobSpec, JobState, Priority, Requirements,
};
use futures::StreamExt;
use serde_json::{json, Value};

use super::report;
use crate::{balancer_api, Cli};

/// The latency summaries of the report, in the order they are shown.
pub const LATENCY_KEYS: [&str; 5] = [
    "assign_latency_ms",
    "start_latency_ms",
    "e2e_latency_ms",
    "queue_wait_ms",
    "run_ms",
];

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How many jobs.
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Submissions per second, or `max` (all at once).
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Workload kind (without --mix).
    #[arg(long, default_value = "sleep")]
    pub kind: String,
    /// Workload arguments as JSON (without --mix).
    #[arg(long, default_value = r#"{"ms":0}"#)]
    pub args: String,
    /// A preset workload instead of --kind/--args: `gpu` (simulated GPU
    /// mix, for placement) or `cuda` (real CUDA kernels, for a GPU fleet).
    #[arg(long)]
    pub mix: Option<String>,
    /// Priorities by weight, e.g. `low:1,normal:3,high:1` (default: normal).
    #[arg(long)]
    pub priority_mix: Option<String>,
    /// Seed for --mix and --priority-mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long to wait for the last result.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Submit everything at once (the same as --rate max).
    #[arg(long)]
    pub burst: bool,
    /// With --rate R: the middle third of the run goes at 4 × R.
    #[arg(long)]
    pub spike: bool,
    /// With --rate R: run this long (jobs = R × duration, instead of --jobs).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Also write a self-contained HTML report (charts as inline SVG).
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
}

pub async fn run(cli: &Cli, a: &BenchArgs) -> anyhow::Result<i32> {
    let rate: Option<f64> = match a.rate.as_str() {
        _ if a.burst => None,
        "max" => None,
        r => Some(
            r.parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0)
                .context("--rate is a positive number or max")?,
        ),
    };
    anyhow::ensure!(
        rate.is_some() || !(a.spike || a.duration.is_some()),
        "--spike and --duration need a --rate"
    );
    let count = match (a.duration, rate) {
        (Some(d), Some(r)) => (d.as_secs_f64() * r).ceil() as usize,
        _ => a.jobs,
    };
    let mut rng = a.seed;
    let priorities = parse_priority_mix(a.priority_mix.as_deref())?;
    let template: Value = serde_json::from_str(&a.args).context("--args is not JSON")?;
    let jobs: Vec<JobSpec> = (0..count)
        .map(|_| {
            let mut job = match a.mix.as_deref() {
                None => Ok(JobSpec::new(a.kind.clone(), template.clone())),
                Some("gpu") => Ok(gpu_mix(&mut rng)),
                Some("cuda") => Ok(cuda_mix(&mut rng)),
                Some(other) => Err(anyhow::anyhow!("unknown --mix {other:?}; known: gpu, cuda")),
            }?;
            job.priority = pick(&priorities, &mut rng);
            Ok(job)
        })
        .collect::<anyhow::Result<_>>()?;
    let capacity = fleet_capacity(cli).await;
    let kinds: Vec<String> = jobs.iter().map(|j| j.kind.clone()).collect();

    let client = Client::connect_with(&cli.nats).await?;
    // Time each result as it is published, while submissions continue.
    let watch = client.watch_results().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut watch = std::pin::pin!(watch);
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return seen,
                next = watch.next() => match next {
                    Some(r) => { seen.entry(r.job_id).or_insert_with(now_us); }
                    None => return seen,
                },
            }
        }
    });
    let started = Instant::now();
    let first_submit_ms = now_ms();
    let (ids, submitted_at) = submit(&client, jobs, rate, a.spike).await?;
    let submit_secs = started.elapsed().as_secs_f64();

    let mut received_at: HashMap<String, u64> = HashMap::with_capacity(ids.len());
    let results = client
        .collect_results(&ids, a.timeout, |r| {
            received_at.insert(r.job_id.clone(), now_us());
        })
        .await?;
    let duration_s = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    for (id, at) in watcher.await.unwrap_or_default() {
        received_at
            .entry(id)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }

    let report = Report::build(
        &submitted_at,
        &received_at,
        &results,
        capacity,
        first_submit_ms,
    );
    let doc = json!({
        "jobs": ids.len(),
        "succeeded": report.count(JobState::Succeeded),
        "dead": report.count(JobState::Dead),
        "cancelled": report.count(JobState::Cancelled),
        "lost": ids.len() - results.len(),
        "submit_s": submit_secs,
        "duration_s": duration_s,
        "jobs_per_s": ids.len() as f64 / duration_s,
        "assign_latency_ms": summary(report.assign.clone()),
        "start_latency_ms": summary(report.start.clone()),
        "e2e_latency_ms": summary(report.e2e.clone()),
        "queue_wait_ms": summary(report.queue_wait.clone()),
        "run_ms": summary(report.run.clone()),
        "makespan_s": report.makespan_s,
        "utilization": report.utilization,
        "load_cv": report.load_cv,
        "agents_used": report.per_agent.len(),
        "per_agent": report.per_agent,
        "per_kind": per_kind(&ids, &kinds, &results),
    });
    if let Some(path) = &a.report {
        let received_ms: HashMap<String, u64> = received_at
            .iter()
            .map(|(id, us)| (id.clone(), us / 1000))
            .collect();
        let html = report::html(&doc, &received_ms, first_submit_ms, &report.e2e);
        std::fs::write(path, html)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if cli.json {
        println!("{doc}");
    } else {
        print_text(&doc);
    }
    Ok(if results.len() == ids.len() { 0 } else { 1 })
}

/// Submits the jobs, all at once or paced; returns ids and submit times.
async fn submit(
    client: &Client,
    jobs: Vec<JobSpec>,
    rate: Option<f64>,
    spike: bool,
) -> anyhow::Result<(Vec<String>, HashMap<String, u64>)> {
    let total = jobs.len();
    let mut ids = Vec::with_capacity(total);
    let mut at = HashMap::with_capacity(total);
    let mut jobs = jobs.into_iter();
    let began = Instant::now();
    let mut sent = 0usize;
    loop {
        // Paced: each 10 ms tick sends what the rate owes by then.
        let chunk: Vec<JobSpec> = match rate {
            None => jobs.by_ref().take(5_000).collect(),
            Some(r) => {
                // A spike sends the middle third of the jobs four times
                // as fast: jobs owed by time t follow a piecewise rate.
                let t = began.elapsed().as_secs_f64();
                let owed = if spike {
                    let third = total as f64 / 3.0;
                    let (t1, t2) = (third / r, third / r + third / (4.0 * r));
                    if t < t1 {
                        t * r
                    } else if t < t2 {
                        third + (t - t1) * 4.0 * r
                    } else {
                        2.0 * third + (t - t2) * r
                    }
                    .ceil() as usize
                } else {
                    (t * r).ceil() as usize
                };
                let n = owed.saturating_sub(sent).max(usize::from(sent == 0));
                jobs.by_ref().take(n).collect()
            }
        };
        if chunk.is_empty() {
            if jobs.len() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let t = now_us();
        sent += chunk.len();
        for id in client.submit_many(chunk).await? {
            at.insert(id.clone(), t);
            ids.push(id);
        }
        if rate.is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok((ids, at))
}

/// Total slots of the healthy agents, if the balancer answers.
async fn fleet_capacity(cli: &Cli) -> Option<u64> {
    balancer_api::get(&cli.balancer_url, "/api/admin/load-balancer")
        .await
        .ok()
        .and_then(|d| d["total_capacity"].as_u64())
}

struct Report {
    states: Vec<JobState>,
    assign: Vec<f64>,
    start: Vec<f64>,
    e2e: Vec<f64>,
    queue_wait: Vec<f64>,
    run: Vec<f64>,
    makespan_s: f64,
    utilization: Option<f64>,
    load_cv: f64,
    per_agent: HashMap<String, usize>,
}

impl Report {
    fn build(
        // Epoch µs on this process's clock.
        submitted: &HashMap<String, u64>,
        received: &HashMap<String, u64>,
        results: &[JobResult],
        capacity: Option<u64>,
        first_submit_ms: u64,
    ) -> Report {
        let mut r = Report {
            states: results.iter().map(|x| x.state).collect(),
            assign: Vec::new(),
            start: Vec::new(),
            e2e: Vec::new(),
            queue_wait: Vec::new(),
            run: Vec::new(),
            makespan_s: 0.0,
            utilization: None,
            load_cv: 0.0,
            per_agent: HashMap::new(),
        };
        let mut busy_ms = 0f64;
        let mut last_finish = first_submit_ms;
        // Submissions and arrivals are on this process's clock in µs; the
        // balancer's assignment and start, in µs where it sends them.
        let since = |at_us: f64, sub_us: u64| ((at_us - sub_us as f64) / 1000.0).max(0.0);
        for result in results {
            let Some(&sub) = submitted.get(&result.job_id) else {
                continue;
            };
            if let Some(&got) = received.get(&result.job_id) {
                r.e2e.push(since(got as f64, sub));
            }
            last_finish = last_finish.max(result.finished_at_ms);
            if let Some(agent) = &result.agent_id {
                *r.per_agent.entry(agent.clone()).or_default() += 1;
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
                r.assign.push(since(assigned, sub));
                r.start.push(since(started, sub));
                r.queue_wait
                    .push(t.started_at_ms.saturating_sub(t.submitted_at_ms) as f64);
                let ran = result.finished_at_ms.saturating_sub(t.started_at_ms) as f64;
                r.run.push(ran);
                busy_ms += ran;
            }
        }
        let span_ms = last_finish.saturating_sub(first_submit_ms).max(1) as f64;
        r.makespan_s = span_ms / 1000.0;
        r.utilization = capacity
            .filter(|c| *c > 0)
            .map(|c| busy_ms / (span_ms * c as f64));
        let loads: Vec<f64> = r.per_agent.values().map(|&n| n as f64).collect();
        if !loads.is_empty() {
            let mean = loads.iter().sum::<f64>() / loads.len() as f64;
            let var = loads.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / loads.len() as f64;
            r.load_cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
        }
        r
    }

    fn count(&self, state: JobState) -> usize {
        self.states.iter().filter(|s| **s == state).count()
    }
}

/// p50, p90, p99, p99.9, max and mean of a sample.
/// Per workload kind: how many ran and how they ended, and the figures the
/// workloads measure themselves (`device_ms`, and `gb_per_s` or
/// `tflop_per_s` for the CUDA kinds), as summaries over succeeded jobs.
fn per_kind(ids: &[String], kinds: &[String], results: &[JobResult]) -> Value {
    let kind_of: HashMap<&str, &str> = ids
        .iter()
        .zip(kinds)
        .map(|(id, kind)| (id.as_str(), kind.as_str()))
        .collect();
    let mut by_kind: std::collections::BTreeMap<&str, Vec<&JobResult>> = Default::default();
    for r in results {
        if let Some(kind) = kind_of.get(r.job_id.as_str()) {
            by_kind.entry(kind).or_default().push(r);
        }
    }
    let mut out = serde_json::Map::new();
    for (kind, rs) in by_kind {
        let figure = |name: &str| {
            summary(
                rs.iter()
                    .filter(|r| r.state == JobState::Succeeded)
                    .filter_map(|r| r.result.as_ref()?.get(name)?.as_f64())
                    .collect(),
            )
        };
        let mut entry = json!({
            "jobs": rs.len(),
            "succeeded": rs.iter().filter(|r| r.state == JobState::Succeeded).count(),
        });
        for name in ["device_ms", "gb_per_s", "tflop_per_s"] {
            let s = figure(name);
            if !s.is_null() {
                entry[name] = s;
            }
        }
        out.insert(kind.to_string(), entry);
    }
    Value::Object(out)
}

fn summary(mut values: Vec<f64>) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() as f64 - 1.0) * q).round() as usize];
    json!({
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": values[values.len() - 1],
        "mean": values.iter().sum::<f64>() / values.len() as f64,
    })
}

fn print_text(doc: &Value) {
    println!(
        "{} jobs: {} succeeded, {} dead, {} lost in {:.2}s ({:.0} jobs/s; submitting took {:.2}s)",
        doc["jobs"],
        doc["succeeded"],
        doc["dead"],
        doc["lost"],
        doc["duration_s"].as_f64().unwrap_or(0.0),
        doc["jobs_per_s"].as_f64().unwrap_or(0.0),
        doc["submit_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "ms", "p50", "p90", "p99", "p99.9", "max"
    );
    for key in LATENCY_KEYS {
        let s = &doc[key];
        if s.is_null() {
            continue;
        }
        let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{key:<22} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            f("p50"),
            f("p90"),
            f("p99"),
            f("p999"),
            f("max")
        );
    }
    if let Some(kinds) = doc["per_kind"]
        .as_object()
        .filter(|k| k.len() > 1 || k.values().any(|v| v.get("device_ms").is_some()))
    {
        for (kind, k) in kinds {
            let p50 = |name: &str| k[name]["p50"].as_f64();
            let rate = p50("gb_per_s")
                .map(|g| format!(", p50 {g:.1} GB/s"))
                .or_else(|| p50("tflop_per_s").map(|t| format!(", p50 {t:.1} TFLOP/s")))
                .unwrap_or_default();
            let device = p50("device_ms")
                .map(|d| format!(", device p50 {d:.3} ms"))
                .unwrap_or_default();
            println!(
                "{kind:<22} {} jobs, {} succeeded{device}{rate}",
                k["jobs"], k["succeeded"]
            );
        }
    }
    println!(
        "makespan {:.2}s, utilization {}, {} agents used, load CV {:.3}",
        doc["makespan_s"].as_f64().unwrap_or(0.0),
        doc["utilization"]
            .as_f64()
            .map(|u| format!("{:.1}%", u * 100.0))
            .unwrap_or("-".into()),
        doc["agents_used"],
        doc["load_cv"].as_f64().unwrap_or(0.0)
    );
}

/// A fixed pseudo-random sequence (splitmix64), so --seed repeats a run.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn gpu_mix(rng: &mut u64) -> JobSpec {
    let roll = next(rng) % 100;
    let (ms, requires) = if roll < 20 {
        (
            200,
            Requirements {
                gpus: Some(1),
                gpu_mem_mb: Some(40_960),
                ..Requirements::default()
            },
        )
    } else if roll < 50 {
        (
            100,
            Requirements {
                gpus: Some(1),
                ..Requirements::default()
            },
        )
    } else {
        (10 + next(rng) % 91, Requirements::default())
    };
    JobSpec {
        requires,
        ..JobSpec::new("sleep", json!({ "ms": ms }))
    }
}

/// Real CUDA work: vector add, SAXPY and reductions over 4M elements, a
/// 1024³ f16 GEMM, and a user kernel.
fn cuda_mix(rng: &mut u64) -> JobSpec {
    let n = 1u64 << 22;
    let (kind, args) = match next(rng) % 20 {
        0..=4 => ("cuda.vector_add", json!({"n": n})),
        5..=8 => ("cuda.saxpy", json!({"n": n, "a": 1.5})),
        9..=12 => ("cuda.reduce_sum", json!({"n": n})),
        13..=16 => (
            "cuda.matmul",
            json!({"m": 1024, "n": 1024, "k": 1024, "dtype": "f16"}),
        ),
        _ => (
            "cuda.kernel",
            json!({
                "source": "extern \"C\" __global__ void scale(float a, float* x, unsigned int n) { unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] = a * x[i]; }",
                "entry": "scale", "grid": [4096], "block": [256],
                "args": [{"scalar": "f32", "value": 3.0},
                         {"buffer": "x", "dtype": "f32", "len": 1048576, "init": "random"},
                         {"scalar": "u32", "value": 1048576}],
                "outputs": ["x"]
            }),
        ),
    };
    JobSpec::new(kind, args)
}

fn parse_priority_mix(spec: Option<&str>) -> anyhow::Result<Vec<(Priority, u64)>> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    spec.split(',')
        .map(|part| {
            let (p, w) = part
                .split_once(':')
                .with_context(|| format!("{part:?} is not PRIORITY:WEIGHT"))?;
            Ok((p.parse::<Priority>()?, w.parse::<u64>()?))
        })
        .collect()
}

fn pick(mix: &[(Priority, u64)], rng: &mut u64) -> Option<Priority> {
    let total: u64 = mix.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut roll = next(rng) % total;
    for (p, w) in mix {
        if roll < *w {
            return Some(*p);
        }
        roll -= w;
    }
    None
}

#[cfg(test)]
mod tests {
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
        assert_eq!(k["cuda.vector_add"]["jobs"], 2);
        assert_eq!(k["cuda.vector_add"]["succeeded"], 2);
        assert_eq!(k["cuda.vector_add"]["gb_per_s"]["max"], 3000.0);
        assert_eq!(k["cuda.vector_add"]["device_ms"]["mean"], 2.0);
        assert!(k["cuda.vector_add"].get("tflop_per_s").is_none());
        assert_eq!(k["cuda.matmul"]["jobs"], 2);
        assert_eq!(k["cuda.matmul"]["succeeded"], 1);
        assert_eq!(k["cuda.matmul"]["tflop_per_s"]["p50"], 700.0);
    }
}
