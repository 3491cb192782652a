//! `fleetctl dead`: the dead letters, with each job's last error.

use fleet_protocol::api::DeadLetters;

use crate::{balancer_api, Cli};

pub async fn run(cli: &Cli, limit: usize) -> anyhow::Result<i32> {
    let path = format!("/api/dead?limit={limit}");
    if cli.json {
        println!("{}", balancer_api::get_raw(&cli.balancer_url, &path).await?);
        return Ok(0);
    }
    let doc: DeadLetters = balancer_api::get(&cli.balancer_url, &path).await?;
    if doc.dead.is_empty() {
        println!("no dead letters");
        return Ok(0);
    }
    println!("{:<28} {:<16} {:>8}  last error", "JOB", "KIND", "ATTEMPTS");
    for job in &doc.dead {
        println!(
            "{:<28} {:<16} {:>8}  {}",
            job.id.as_deref().unwrap_or("?"),
            job.kind.as_deref().unwrap_or("?"),
            job.attempts.len(),
            job.error.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}
