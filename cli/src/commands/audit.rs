//! `fleetctl audit`: checks every job in Redis against fleet's invariants
//! (one terminal state each, at most one accepted result, attempts within
//! bounds, no lease without a live job, no agent over capacity). Exits 1
//! with the offending ids on any breach.

use fleet_protocol::api::AuditReport;

use crate::{balancer_api, Cli};

const AUDIT: &str = "/api/admin/audit";

pub async fn run(cli: &Cli) -> anyhow::Result<i32> {
    if cli.json {
        let report = balancer_api::get_raw(&cli.balancer_url, AUDIT).await?;
        println!("{report}");
        let ok = serde_json::from_value::<AuditReport>(report).map(|r| r.ok);
        return Ok(if ok.unwrap_or(false) { 0 } else { 1 });
    }
    let report: AuditReport = balancer_api::get(&cli.balancer_url, AUDIT).await?;
    println!(
        "audited {} jobs and {} agents: {}",
        report.jobs,
        report.agents,
        if report.ok {
            "all invariants hold"
        } else {
            "BREACHES FOUND"
        }
    );
    let mut states: Vec<_> = report
        .by_state
        .iter()
        .map(|(state, n)| (state.as_str(), n))
        .collect();
    states.sort();
    for (state, n) in states {
        println!("  {state:<10} {n}");
    }
    for b in &report.breaches {
        println!("  {}: {}", b.id, b.problem);
    }
    Ok(if report.ok { 0 } else { 1 })
}
