//! `fleetctl stats`: the fleet at a glance.

use std::time::Duration;

use serde_json::Value;

use crate::{balancer_api, Cli};

pub async fn run(cli: &Cli, watch: bool, interval: Duration) -> anyhow::Result<i32> {
    loop {
        let doc = balancer_api::get(&cli.balancer_url, "/api/admin/load-balancer").await?;
        if cli.json {
            println!("{doc}");
        } else {
            if watch {
                // Clear the screen and home the cursor: refresh in place.
                print!("\x1b[2J\x1b[H");
            }
            print_table(&doc);
        }
        if !watch {
            return Ok(0);
        }
        tokio::time::sleep(interval).await;
    }
}

fn print_table(doc: &Value) {
    let n = |k: &str| doc[k].as_f64().unwrap_or(0.0);
    println!(
        "agents     {} healthy of {}",
        n("healthy_agents"),
        n("total_agents")
    );
    println!(
        "load       {} of {} slots ({:.1}% utilization)",
        n("current_load"),
        n("total_capacity"),
        n("utilization") * 100.0
    );
    println!(
        "jobs       {} queued, {} leased",
        n("queued_jobs"),
        n("assigned_jobs")
    );
    println!(
        "totals     {} submitted, {} succeeded, {} dead, {} retried, {} rejected, {} duplicates",
        n("total_jobs_submitted"),
        n("total_jobs_succeeded"),
        n("total_jobs_dead"),
        n("total_jobs_retried"),
        n("total_jobs_rejected"),
        n("total_duplicate_submissions")
    );
    if let Some(agents) = doc["agents"].as_array() {
        println!();
        println!(
            "{:<24} {:>7} {:>6} {:>7} {:>8} {:>6} {:>5}  kinds",
            "AGENT", "HEALTHY", "JOBS", "LOAD%", "SUCCESS", "SCORE", "GPUS"
        );
        for a in agents {
            println!(
                "{:<24} {:>7} {:>6} {:>7.1} {:>8.3} {:>6.3} {:>5}  {}",
                a["agent_id"].as_str().unwrap_or("?"),
                if a["is_healthy"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                },
                format!("{}/{}", a["current_jobs"], a["max_jobs"]),
                a["load_percent"].as_f64().unwrap_or(0.0),
                a["success_rate"].as_f64().unwrap_or(0.0),
                a["score"].as_f64().unwrap_or(0.0),
                a["gpus"].as_array().map(Vec::len).unwrap_or(0),
                a["kinds"]
                    .as_array()
                    .map(|k| k
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            );
        }
    }
}
