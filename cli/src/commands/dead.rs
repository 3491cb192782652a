//! `fleetctl dead`: the dead letters, with each job's last error.

use crate::{balancer_api, Cli};

pub async fn run(cli: &Cli, limit: usize) -> anyhow::Result<i32> {
    let doc = balancer_api::get(&cli.balancer_url, &format!("/api/dead?limit={limit}")).await?;
    if cli.json {
        println!("{doc}");
        return Ok(0);
    }
    let jobs = doc["dead"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        println!("no dead letters");
        return Ok(0);
    }
    println!("{:<28} {:<16} {:>8}  last error", "JOB", "KIND", "ATTEMPTS");
    for job in jobs {
        println!(
            "{:<28} {:<16} {:>8}  {}",
            job["id"].as_str().unwrap_or("?"),
            job["kind"].as_str().unwrap_or("?"),
            job["attempts"].as_array().map(Vec::len).unwrap_or(0),
            job["error"].as_str().unwrap_or("-")
        );
    }
    Ok(0)
}
