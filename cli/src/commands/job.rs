//! `fleetctl job ID` and `fleetctl jobs`: one job's state, attempts and
//! result, or a list of jobs.

use std::fmt::Display;

use fleet_protocol::api::{JobList, JobView};
use fleet_protocol::JobState;

use crate::{balancer_api, Cli};

pub async fn run(cli: &Cli, id: &str) -> anyhow::Result<i32> {
    fleet_protocol::is_valid_token(id)?;
    let path = format!("/api/jobs/{id}");
    if cli.json {
        println!("{}", balancer_api::get_raw(&cli.balancer_url, &path).await?);
        return Ok(0);
    }
    let job: JobView = balancer_api::get(&cli.balancer_url, &path).await?;
    println!("job       {}", or_dash(&job.id));
    println!("kind      {}", or_dash(&job.kind));
    println!("state     {}", or_dash(&job.state));
    println!(
        "priority  {} (submitted {})",
        or_dash(&job.priority),
        or_dash(&job.submitted_priority)
    );
    println!(
        "attempt   {} of {}",
        or_dash(&job.attempt),
        or_dash(&job.max_attempts)
    );
    println!("agent     {}", or_dash(&job.agent_id));
    if let Some(reason) = &job.unschedulable_reason {
        println!("unschedulable: {reason}");
    }
    for a in &job.attempts {
        println!(
            "  attempt {} on {}: {} in {} ms{}",
            a.attempt,
            a.agent_id,
            a.outcome,
            a.duration_ms,
            a.error
                .as_deref()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        );
    }
    if let Some(result) = &job.result {
        println!("result    {result}");
    }
    if let Some(e) = &job.error {
        println!("error     {e}");
    }
    Ok(0)
}

/// A field the balancer may not know yet, shown as `-` then.
fn or_dash<T: Display>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

/// `fleetctl jobs [--state S] [--limit N]`.
pub async fn list(cli: &Cli, state: Option<JobState>, limit: usize) -> anyhow::Result<i32> {
    let mut path = format!("/api/jobs?limit={limit}");
    if let Some(s) = state {
        path.push_str(&format!("&state={s}"));
    }
    if cli.json {
        println!("{}", balancer_api::get_raw(&cli.balancer_url, &path).await?);
        return Ok(0);
    }
    let doc: JobList = balancer_api::get(&cli.balancer_url, &path).await?;
    println!(
        "{:<28} {:<16} {:<10} {:<8} {:>7}  AGENT / ERROR",
        "JOB", "KIND", "STATE", "PRIORITY", "ATTEMPT"
    );
    for j in &doc.jobs {
        let detail = j
            .error
            .as_deref()
            .or(j.unschedulable_reason.as_deref())
            .or(j.agent_id.as_deref())
            .unwrap_or("-");
        println!(
            "{:<28} {:<16} {:<10} {:<8} {:>7}  {}",
            j.id.as_deref().unwrap_or("?"),
            j.kind.as_deref().unwrap_or("?"),
            j.state.map_or("?", JobState::as_str),
            j.priority.map_or("?", |p| p.as_str()),
            j.attempt.unwrap_or(0),
            detail
        );
    }
    if doc.jobs.is_empty() {
        println!("no jobs");
    }
    Ok(0)
}
