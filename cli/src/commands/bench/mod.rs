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
//!
//! This file submits and collects; `workload` makes the jobs, `samples`
//! times them, `summary` builds the [`summary::BenchReport`] that
//! `--json` prints, and `text` and `html` draw it.

mod html;
mod samples;
mod summary;
mod text;
mod workload;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use fleet_client::Client;
use fleet_protocol::api::StatsDocument;
use fleet_protocol::{
    time::{now_ms, now_us},
    JobSpec,
};
use futures::StreamExt;
use serde_json::Value;

use crate::{balancer_api, Cli};
use samples::{Clock, Samples};
use summary::RunTimes;

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
    let priorities = workload::parse_priority_mix(a.priority_mix.as_deref())?;
    let template: Value = serde_json::from_str(&a.args).context("--args is not JSON")?;
    let jobs: Vec<JobSpec> = (0..count)
        .map(|_| {
            let mut job = match a.mix.as_deref() {
                None => Ok(JobSpec::new(a.kind.clone(), template.clone())),
                Some("gpu") => Ok(workload::gpu_mix(&mut rng)),
                Some("cuda") => Ok(workload::cuda_mix(&mut rng)),
                Some(other) => Err(anyhow::anyhow!("unknown --mix {other:?}; known: gpu, cuda")),
            }?;
            job.priority = workload::pick(&priorities, &mut rng);
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

    let clock = Clock {
        submitted: &submitted_at,
        received: &received_at,
        first_submit_ms,
    };
    let samples = Samples::take(&clock, &results, capacity);
    let e2e = samples.e2e.clone();
    let times = RunTimes {
        submit_s: submit_secs,
        duration_s,
    };
    let report = summary::report(&ids, &kinds, &results, samples, times);
    if let Some(path) = &a.report {
        let received_ms: HashMap<String, u64> = received_at
            .iter()
            .map(|(id, us)| (id.clone(), us / 1000))
            .collect();
        let page = html::page(&report, &received_ms, first_submit_ms, &e2e);
        std::fs::write(path, page)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
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
    balancer_api::get::<StatsDocument>(&cli.balancer_url, "/api/admin/load-balancer")
        .await
        .ok()
        .map(|d| d.total_capacity)
}
