//! `fleetctl stats`: the fleet at a glance.

use std::time::Duration;

use fleet_protocol::api::StatsDocument;

use crate::{balancer_api, Cli};

const STATS: &str = "/api/admin/load-balancer";

pub async fn run(cli: &Cli, watch: bool, interval: Duration) -> anyhow::Result<i32> {
    loop {
        if cli.json {
            println!("{}", balancer_api::get_raw(&cli.balancer_url, STATS).await?);
        } else {
            let doc: StatsDocument = balancer_api::get(&cli.balancer_url, STATS).await?;
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

fn print_table(doc: &StatsDocument) {
    println!(
        "agents     {} healthy of {}",
        doc.healthy_agents, doc.total_agents
    );
    println!(
        "load       {} of {} slots ({:.1}% utilization)",
        doc.current_load,
        doc.total_capacity,
        doc.utilization * 100.0
    );
    println!(
        "jobs       {} queued, {} leased",
        doc.queued_jobs, doc.assigned_jobs
    );
    println!(
        "totals     {} submitted, {} succeeded, {} dead, {} retried, {} rejected, {} duplicates",
        doc.total_jobs_submitted,
        doc.total_jobs_succeeded,
        doc.total_jobs_dead,
        doc.total_jobs_retried,
        doc.total_jobs_rejected,
        doc.total_duplicate_submissions
    );
    println!();
    println!(
        "{:<24} {:>7} {:>6} {:>7} {:>8} {:>6} {:>5}  kinds",
        "AGENT", "HEALTHY", "JOBS", "LOAD%", "SUCCESS", "SCORE", "GPUS"
    );
    for a in &doc.agents {
        println!(
            "{:<24} {:>7} {:>6} {:>7.1} {:>8.3} {:>6.3} {:>5}  {}",
            a.agent_id,
            if a.is_healthy { "yes" } else { "no" },
            format!("{}/{}", a.current_jobs, a.max_jobs),
            a.load_percent,
            a.success_rate,
            a.score,
            a.gpus.len(),
            a.kinds.join(",")
        );
    }
}
