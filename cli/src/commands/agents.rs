//! `fleetctl agents`, `fleetctl drain ID`, `fleetctl undrain ID`.

use fleet_protocol::api::{AgentList, AgentStats, DrainChanged};

use crate::{balancer_api, Cli};

pub async fn run(cli: &Cli) -> anyhow::Result<i32> {
    if cli.json {
        println!(
            "{}",
            balancer_api::get_raw(&cli.balancer_url, "/api/agents").await?
        );
        return Ok(0);
    }
    let doc: AgentList = balancer_api::get(&cli.balancer_url, "/api/agents").await?;
    println!(
        "{:<24} {:<9} {:>6} {:>7} {:>6} {:>5}  GPUS",
        "AGENT", "STATE", "JOBS", "SUCCESS", "SCORE", "TEMP"
    );
    for a in &doc.agents {
        let gpus: Vec<String> = a
            .gpus
            .iter()
            .map(|g| {
                format!(
                    "{}:{}",
                    g.name,
                    fleet_protocol::capabilities::format_mb(g.memory_mb)
                )
            })
            .collect();
        println!(
            "{:<24} {:<9} {:>6} {:>7.3} {:>6.3} {:>5}  {}",
            a.agent_id,
            state(a),
            format!("{}/{}", a.current_jobs, a.max_jobs),
            a.success_rate,
            a.score,
            // As the balancer wrote it (`45.0`), not as f32 prints (`45`).
            a.temperature_c
                .and_then(|t| serde_json::to_string(&t).ok())
                .unwrap_or_else(|| "-".into()),
            if gpus.is_empty() {
                "-".to_string()
            } else {
                gpus.join(", ")
            }
        );
    }
    Ok(0)
}

/// The one word the table shows for an agent.
fn state(a: &AgentStats) -> &'static str {
    match (a.is_healthy, a.stopping, a.draining) {
        (true, true, _) => "stopping",
        (true, _, true) => "draining",
        (true, _, _) => "healthy",
        _ => "down",
    }
}

pub async fn drain(cli: &Cli, id: &str, draining: bool) -> anyhow::Result<i32> {
    fleet_protocol::is_valid_token(id)?;
    let action = if draining { "drain" } else { "undrain" };
    let (reply, changed): (_, DrainChanged) = balancer_api::post(
        &cli.balancer_url,
        cli.admin_token.as_deref(),
        &format!("/api/agents/{id}/{action}"),
    )
    .await?;
    if cli.json {
        println!("{reply}");
    } else if changed.draining {
        println!("{id}: draining (running jobs finish; no new ones)");
    } else {
        println!("{id}: taking jobs again");
    }
    Ok(0)
}
