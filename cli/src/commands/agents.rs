//! `fleetctl agents`, `fleetctl drain ID`, `fleetctl undrain ID`.

use serde_json::Value;

use crate::{balancer_api, Cli};

pub async fn run(cli: &Cli) -> anyhow::Result<i32> {
    let doc = balancer_api::get(&cli.balancer_url, "/api/agents").await?;
    if cli.json {
        println!("{doc}");
        return Ok(0);
    }
    println!(
        "{:<24} {:<9} {:>6} {:>7} {:>6} {:>5}  GPUS",
        "AGENT", "STATE", "JOBS", "SUCCESS", "SCORE", "TEMP"
    );
    for a in doc["agents"].as_array().cloned().unwrap_or_default() {
        let state = match (
            a["is_healthy"].as_bool(),
            a["stopping"].as_bool(),
            a["draining"].as_bool(),
        ) {
            (Some(true), Some(true), _) => "stopping",
            (Some(true), _, Some(true)) => "draining",
            (Some(true), _, _) => "healthy",
            _ => "down",
        };
        let gpus: Vec<String> = a["gpus"]
            .as_array()
            .map(|g| {
                g.iter()
                    .map(|g| {
                        format!(
                            "{}:{}",
                            g["name"].as_str().unwrap_or("?"),
                            fleet_protocol::capabilities::format_mb(
                                g["memory_mb"].as_u64().unwrap_or(0)
                            )
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<24} {:<9} {:>6} {:>7.3} {:>6.3} {:>5}  {}",
            a["agent_id"].as_str().unwrap_or("?"),
            state,
            format!("{}/{}", a["current_jobs"], a["max_jobs"]),
            a["success_rate"].as_f64().unwrap_or(0.0),
            a["score"].as_f64().unwrap_or(0.0),
            match &a["temperature_c"] {
                Value::Number(t) => format!("{t}"),
                _ => "-".into(),
            },
            if gpus.is_empty() {
                "-".to_string()
            } else {
                gpus.join(", ")
            }
        );
    }
    Ok(0)
}

pub async fn drain(cli: &Cli, id: &str, draining: bool) -> anyhow::Result<i32> {
    fleet_protocol::is_valid_token(id)?;
    let action = if draining { "drain" } else { "undrain" };
    let reply = balancer_api::post(
        &cli.balancer_url,
        cli.admin_token.as_deref(),
        &format!("/api/agents/{id}/{action}"),
    )
    .await?;
    if cli.json {
        println!("{reply}");
    } else if draining {
        println!("{id}: draining (running jobs finish; no new ones)");
    } else {
        println!("{id}: taking jobs again");
    }
    Ok(0)
}
