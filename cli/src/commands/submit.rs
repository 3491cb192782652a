//! `fleetctl submit`: one job or a batch, optionally waiting for results.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use fleet_client::Client;
use fleet_protocol::{JobResult, JobSpec, JobState, Priority, Requirements};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Cli;

/// Jobs published per pipelined batch.
const SUBMIT_CHUNK: usize = 5_000;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Workload kind: sleep, echo, flaky, cuda.vector_add.
    #[arg(long)]
    pub kind: String,
    /// Workload arguments as JSON.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// low, normal, high or urgent.
    #[arg(long)]
    pub priority: Option<Priority>,
    /// What the job pays; sets the priority when --priority is absent.
    #[arg(long)]
    pub reward: Option<f64>,
    /// Run-time limit, e.g. 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Attempts before the job is dead-lettered.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Requirements as JSON, e.g. '{"gpus":1,"gpu_mem_mb":40960}'.
    #[arg(long)]
    pub requires: Option<String>,
    /// Job id (with --count, ids are <id>-0, <id>-1, …).
    #[arg(long)]
    pub id: Option<String>,
    /// How many jobs to submit.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Wait for every result and summarise.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
}

pub async fn run(cli: &Cli, a: &SubmitArgs) -> anyhow::Result<i32> {
    let args: serde_json::Value =
        serde_json::from_str(&a.args).context("--args is not valid JSON")?;
    let requires: Requirements = match &a.requires {
        Some(r) => serde_json::from_str(r).context("--requires is not valid requirements JSON")?,
        None => Requirements::default(),
    };
    let template = JobSpec {
        id: None,
        kind: a.kind.clone(),
        args,
        priority: a.priority,
        reward: a.reward,
        timeout_ms: a.timeout.map(|t| t.as_millis() as u64),
        max_attempts: a.max_attempts,
        requires,
    };
    // Catch what the balancer would refuse before anything is sent.
    template
        .check(a.id.as_deref().unwrap_or("check"))
        .context("the job would be rejected")?;

    let client = Client::connect_with(&cli.nats).await?;
    let started = Instant::now();
    let mut ids = Vec::with_capacity(a.count);
    let indices: Vec<usize> = (0..a.count).collect();
    for chunk in indices.chunks(SUBMIT_CHUNK) {
        let jobs = chunk
            .iter()
            .map(|&i| JobSpec {
                id: match (&a.id, a.count) {
                    (Some(id), 1) => Some(id.clone()),
                    (Some(id), _) => Some(format!("{id}-{i}")),
                    (None, _) => None,
                },
                ..template.clone()
            })
            .collect();
        ids.extend(client.submit_many(jobs).await?);
    }
    let submit_secs = started.elapsed().as_secs_f64();
    if !a.wait {
        if cli.json {
            println!("{}", serde_json::json!({ "submitted": ids }));
        } else {
            for id in &ids {
                println!("{id}");
            }
        }
        return Ok(0);
    }

    let bar = if cli.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(ids.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} done ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    let results = client.wait_many(&ids, a.wait_timeout, |_| bar.inc(1)).await;
    bar.finish_and_clear();
    let results = results?;
    let total_secs = started.elapsed().as_secs_f64();
    let summary = Summary::of(&results);
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "jobs": ids.len(),
                "succeeded": summary.succeeded,
                "dead": summary.dead,
                "cancelled": summary.cancelled,
                "submit_s": submit_secs,
                "duration_s": total_secs,
                "jobs_per_s": ids.len() as f64 / total_secs,
                "results": if ids.len() == 1 { serde_json::to_value(&results)? } else { serde_json::Value::Null },
            })
        );
    } else {
        if let [one] = results.as_slice() {
            println!("{}", serde_json::to_string_pretty(one)?);
        }
        println!(
            "{} jobs: {} succeeded, {} dead, {} cancelled in {:.2}s ({:.0} jobs/s end to end; submitting took {:.2}s)",
            ids.len(),
            summary.succeeded,
            summary.dead,
            summary.cancelled,
            total_secs,
            ids.len() as f64 / total_secs,
            submit_secs
        );
    }
    Ok(if summary.succeeded == ids.len() { 0 } else { 1 })
}

struct Summary {
    succeeded: usize,
    dead: usize,
    cancelled: usize,
}

impl Summary {
    fn of(results: &[JobResult]) -> Summary {
        let count = |s: JobState| results.iter().filter(|r| r.state == s).count();
        Summary {
            succeeded: count(JobState::Succeeded),
            dead: count(JobState::Dead),
            cancelled: count(JobState::Cancelled),
        }
    }
}
