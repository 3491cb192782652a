//! `fleetctl audit`: checks every job in Redis against fleet's invariants
//! (one terminal state each, at most one accepted result, attempts within
//! bounds, no lease without a live job, no agent over capacity). Exits 1
//! with the offending ids on any breach.

use crate::{balancer_api, Cli};

pub async fn run(cli: &Cli) -> anyhow::Result<i32> {
    let report = balancer_api::get(&cli.balancer_url, "/api/admin/audit").await?;
    let ok = report["ok"].as_bool().unwrap_or(false);
    if cli.json {
        println!("{report}");
    } else {
        println!(
            "audited {} jobs and {} agents: {}",
            report["jobs"],
            report["agents"],
            if ok {
                "all invariants hold"
            } else {
                "BREACHES FOUND"
            }
        );
        if let Some(states) = report["by_state"].as_object() {
            let mut states: Vec<_> = states.iter().collect();
            states.sort_by(|a, b| a.0.cmp(b.0));
            for (state, n) in states {
                println!("  {state:<10} {n}");
            }
        }
        for b in report["breaches"].as_array().cloned().unwrap_or_default() {
            println!(
                "  {}: {}",
                b["id"].as_str().unwrap_or("?"),
                b["problem"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(if ok { 0 } else { 1 })
}
