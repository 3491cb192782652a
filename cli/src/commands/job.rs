//! `fleetctl job ID`: one job's state, attempts and result.

use serde_json::Value;

use crate::{balancer_api, Cli};

pub async fn run(cli: &Cli, id: &str) -> anyhow::Result<i32> {
    fleet_protocol::is_valid_token(id)?;
    let job = balancer_api::get(&cli.balancer_url, &format!("/api/jobs/{id}")).await?;
    if cli.json {
        println!("{job}");
        return Ok(0);
    }
    let s = |k: &str| match &job[k] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!("job       {}", s("id"));
    println!("kind      {}", s("kind"));
    println!("state     {}", s("state"));
    println!(
        "priority  {} (submitted {})",
        s("priority"),
        s("submitted_priority")
    );
    println!("attempt   {} of {}", s("attempt"), s("max_attempts"));
    println!("agent     {}", s("agent_id"));
    if let Some(reason) = job["unschedulable_reason"].as_str() {
        println!("unschedulable: {reason}");
    }
    if let Some(attempts) = job["attempts"].as_array() {
        for a in attempts {
            println!(
                "  attempt {} on {}: {} in {} ms{}",
                a["attempt"],
                a["agent_id"].as_str().unwrap_or("?"),
                a["outcome"].as_str().unwrap_or("?"),
                a["duration_ms"],
                a["error"]
                    .as_str()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if !job["result"].is_null() {
        println!("result    {}", job["result"]);
    }
    if let Some(e) = job["error"].as_str() {
        println!("error     {e}");
    }
    Ok(0)
}

/// `fleetctl jobs [--state S] [--limit N]`.
pub async fn list(cli: &Cli, state: Option<&str>, limit: usize) -> anyhow::Result<i32> {
    let mut path = format!("/api/jobs?limit={limit}");
    if let Some(s) = state {
        path.push_str(&format!("&state={s}"));
    }
    let doc = balancer_api::get(&cli.balancer_url, &path).await?;
    if cli.json {
        println!("{doc}");
        return Ok(0);
    }
    let jobs = doc["jobs"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<28} {:<16} {:<10} {:<8} {:>7}  AGENT / ERROR",
        "JOB", "KIND", "STATE", "PRIORITY", "ATTEMPT"
    );
    for j in &jobs {
        let detail = j["error"]
            .as_str()
            .or_else(|| j["unschedulable_reason"].as_str())
            .or_else(|| j["agent_id"].as_str())
            .unwrap_or("-");
        println!(
            "{:<28} {:<16} {:<10} {:<8} {:>7}  {}",
            j["id"].as_str().unwrap_or("?"),
            j["kind"].as_str().unwrap_or("?"),
            j["state"].as_str().unwrap_or("?"),
            j["priority"].as_str().unwrap_or("?"),
            j["attempt"].as_u64().unwrap_or(0),
            detail
        );
    }
    if jobs.is_empty() {
        println!("no jobs");
    }
    Ok(0)
}
