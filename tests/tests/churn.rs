//! Churn end to end: a simulated fleet (`fleet-agent --simulate 20
//! --churn-interval …`) whose agents crash and are replaced by new ones
//! while a few hundred jobs run. The crashed agents fall silent holding
//! leases, so the balancer must detect each loss by its heartbeat timeout
//! and re-queue the jobs, and the new agents must register and take work.
//! Every job must still succeed exactly once.
//!
//! Short timeouts, as in the chaos tests (heartbeats every 300 ms, an
//! agent dead after 1.5 s of silence, a sweep every 200 ms, 1 s to confirm
//! an assignment), so a crash resolves in about two seconds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fleet_protocol::JobSpec;
use fleet_tests::{metrics, wait_until, Fleet, FleetConfig};
use serde_json::json;

const AGENTS: usize = 20;
const JOBS: usize = 400;
/// 400 jobs of 250 ms on 20 agents × 2 slots: about 2.5 s of work, over
/// which churn crashes 2 agents every 500 ms.
const JOB_MS: u64 = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_fleet_loses_no_job() -> anyhow::Result<()> {
    let began = Instant::now();
    let mut config = FleetConfig::quick_detection(0, 1);
    // An attempt lands on an agent about to crash by chance, and the same
    // job can be that unlucky more than the default three times in a row;
    // this test is about never losing a job, not about the retry bound
    // (chaos.rs tests that).
    config
        .balancer_args
        .extend(["--max-attempts".into(), "10".into()]);
    let mut fleet = Fleet::start(config).await?;
    let agents = AGENTS.to_string();
    fleet.start_agent_with(
        "sim",
        2,
        &[
            "--simulate",
            &agents,
            "--churn-interval",
            "500ms",
            "--churn-fraction",
            "0.1",
            "--churn-seed",
            "7",
        ],
    )?;
    wait_until(Duration::from_secs(20), "20 simulated agents", || async {
        Ok(fleet.stats().await?["healthy_agents"].as_u64() >= Some(AGENTS as u64))
    })
    .await?;

    let client = fleet.client().await?;
    let ids = client
        .submit_many(vec![JobSpec::new("sleep", json!({ "ms": JOB_MS })); JOBS])
        .await?;
    let results = client
        .wait_many(&ids, Duration::from_secs(60), |_| {})
        .await?;

    // None lost, each accepted exactly once, the audit clean.
    fleet.assert_all_succeeded_once(&results, JOBS).await?;

    // New agents joined and did work.
    let agents_seen: BTreeSet<&str> = results
        .iter()
        .flat_map(|r| r.attempts.iter().map(|a| a.agent_id.as_str()))
        .collect();
    assert!(
        agents_seen.len() > AGENTS,
        "only {} agents took part: {agents_seen:?}",
        agents_seen.len()
    );
    let newcomers: BTreeSet<&str> = results
        .iter()
        .filter_map(|r| r.agent_id.as_deref())
        .filter(|id| is_newcomer(id))
        .collect();
    assert!(
        !newcomers.is_empty(),
        "no agent started by churn completed a job: {agents_seen:?}"
    );

    // Crashed agents were noticed and their leases re-queued.
    let requeued: Vec<&str> = results
        .iter()
        .flat_map(|r| &r.attempts)
        .filter(|a| a.outcome == "failed")
        .filter_map(|a| a.error.as_deref())
        .collect();
    assert!(
        !requeued.is_empty(),
        "no job was caught by a crash (churn ran too early or too late?)"
    );
    wait_until(Duration::from_secs(10), "lost agents counted", || async {
        let samples = metrics::scrape(&fleet).await?;
        Ok(metrics::get(&samples, "fleet_agents_lost_total") >= 1.0)
    })
    .await?;

    let log = fleet.agents[0].log();
    assert!(
        log.contains("churn: simulated agents crashed and replaced"),
        "the churn steps are logged"
    );
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "audit: {audit}");
    let samples = metrics::scrape(&fleet).await?;
    eprintln!(
        "churn: {} jobs, {} agents took part ({} newcomers completed jobs), {} attempts \
         re-queued, {} agents lost, {:.1} s",
        JOBS,
        agents_seen.len(),
        newcomers.len(),
        requeued.len(),
        metrics::get(&samples, "fleet_agents_lost_total"),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether `id` is one churn started: `sim-<k>` with k past the first N.
fn is_newcomer(id: &str) -> bool {
    id.strip_prefix("sim-")
        .and_then(|k| k.parse::<usize>().ok())
        .is_some_and(|k| k >= AGENTS)
}
