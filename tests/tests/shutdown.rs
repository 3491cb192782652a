//! An agent stopped with SIGTERM: it asks for no new jobs, finishes what it
//! holds, hands back what outlives its grace, and exits 0.

use std::time::Duration;

use fleet_protocol::{JobSpec, JobState};
use fleet_tests::{agent_entry, wait_until, Fleet, FleetConfig};
use serde_json::json;

fn sleep_job(ms: u64) -> JobSpec {
    JobSpec::new("sleep", json!({ "ms": ms }))
}

/// Waits until every job in `ids` runs.
async fn wait_running(fleet: &Fleet, ids: &[String]) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(20), "the jobs running", || async {
        for id in ids {
            if fleet.job(id).await?["state"] != "running" {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
}

/// How long a stopping agent gets to exit.
const EXIT_LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_agent_finishes_its_jobs_takes_no_new_ones_and_exits_0() -> anyhow::Result<()> {
    // agent-0 keeps free slots while it stops, and has more than the
    // other: only its stopping keeps new jobs away from it.
    let mut fleet = Fleet::start(FleetConfig::with_agents(1, 4)).await?;
    let client = fleet.client().await?;
    let held = client.submit_many(vec![sleep_job(2_000); 2]).await?;
    wait_running(&fleet, &held).await?;
    fleet.start_agent("late", 1)?;
    fleet.wait_healthy_agents(2).await?;

    fleet.agents[0].signal("TERM")?;
    wait_until(Duration::from_secs(10), "agent-0 stopping", || async {
        Ok(agent_entry(&fleet.stats().await?, "agent-0")["stopping"] == true)
    })
    .await?;
    let later = client.submit_many(vec![sleep_job(10); 4]).await?;
    for r in client
        .wait_many(&later, Duration::from_secs(20), |_| {})
        .await?
    {
        assert_eq!(r.state, JobState::Succeeded, "{r:?}");
        assert_eq!(
            r.agent_id.as_deref(),
            Some("late"),
            "a stopping agent got {r:?}"
        );
    }

    // What it held finished there, in its first attempt.
    for r in client
        .wait_many(&held, Duration::from_secs(20), |_| {})
        .await?
    {
        assert_eq!(r.state, JobState::Succeeded, "{r:?}");
        assert_eq!(r.agent_id.as_deref(), Some("agent-0"), "{r:?}");
        assert_eq!(r.attempts.len(), 1, "{r:?}");
    }
    assert_eq!(fleet.agents[0].wait_exit(EXIT_LIMIT).await?, Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_grace_a_stopping_agent_hands_its_jobs_back() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::with_agents(0, 1)).await?;
    fleet.start_agent_with("brief", 1, &["--stop-grace", "300ms"])?;
    fleet.wait_healthy_agents(1).await?;
    let client = fleet.client().await?;
    // One attempt only: the one handed back must not use it up.
    let id = client
        .submit(JobSpec {
            max_attempts: Some(1),
            ..sleep_job(3_000)
        })
        .await?;
    wait_running(&fleet, std::slice::from_ref(&id)).await?;
    fleet.start_agent("late", 1)?;
    fleet.wait_healthy_agents(2).await?;

    fleet.agents[0].signal("TERM")?;
    assert_eq!(fleet.agents[0].wait_exit(EXIT_LIMIT).await?, Some(0));
    // Handed back at once, not after a heartbeat timeout, and without
    // using up the job's one attempt: it runs again elsewhere.
    let r = client.wait(&id, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Succeeded, "{r:?}");
    assert_eq!(r.agent_id.as_deref(), Some("late"), "{r:?}");
    let first = r.attempts.first().cloned();
    assert!(
        first.as_ref().is_some_and(|a| a.agent_id == "brief"
            && a.outcome == "failed"
            && a.error
                .as_deref()
                .unwrap_or_default()
                .contains("stop grace")),
        "{r:?}"
    );
    // Nor does it count against the agent that stopped.
    let brief = agent_entry(&fleet.stats().await?, "brief");
    assert_eq!(brief["success_rate"], 1.0, "{brief}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_agent_that_cannot_report_still_exits() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::with_agents(0, 1)).await?;
    fleet.start_agent_with("cut-off", 1, &["--stop-grace", "200ms"])?;
    fleet.wait_healthy_agents(1).await?;
    let id = fleet.client().await?.submit(sleep_job(60_000)).await?;
    wait_running(&fleet, std::slice::from_ref(&id)).await?;

    // NATS gone (as `scripts/fleet-down` stops everything at once): the
    // job can be neither finished nor handed back.
    fleet.nats.process().kill9();
    fleet.agents[0].signal("TERM")?;
    // Past the grace and its slack the process ends anyway, non-zero:
    // what it held is left to the balancer's timeouts.
    assert_eq!(fleet.agents[0].wait_exit(EXIT_LIMIT).await?, Some(1));
    Ok(())
}
