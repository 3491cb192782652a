//! Chaos tests: real processes killed with SIGKILL (or paused with
//! SIGSTOP) mid-run. Each runs a few hundred short jobs, injects its fault,
//! waits for every job to end with a deadline, then runs the audit.
//!
//! The fleet here uses short timeouts (heartbeats every 300 ms, an agent
//! dead after 1.5 s of silence, a sweep every 200 ms, 1 s to confirm an
//! assignment) so faults resolve in seconds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleet_client::Client;
use fleet_protocol::{JobResult, JobSpec, JobState};
use fleet_tests::{agent_entry, wait_leader, wait_until, EventSpy, Fleet, FleetConfig};
use serde_json::{json, Value};

const HEARTBEAT_TIMEOUT: Duration = FleetConfig::QUICK_HEARTBEAT_TIMEOUT;
const SWEEP: Duration = FleetConfig::QUICK_SWEEP;

fn sleep_jobs(n: usize, ms: u64) -> Vec<JobSpec> {
    vec![JobSpec::new("sleep", json!({ "ms": ms })); n]
}

/// Waits for every result in the background, counting them as they come.
struct Waiter {
    done: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<JobResult>>>,
}

impl Waiter {
    fn start(client: Client, ids: Vec<String>, limit: Duration) -> Waiter {
        let done = Arc::new(AtomicUsize::new(0));
        let counter = done.clone();
        let task = tokio::spawn(async move {
            Ok(client
                .wait_many(&ids, limit, |_| {
                    counter.fetch_add(1, Ordering::Relaxed);
                })
                .await?)
        });
        Waiter { done, task }
    }

    async fn reached(&self, n: usize) -> anyhow::Result<()> {
        let done = self.done.clone();
        wait_until(Duration::from_secs(60), &format!("{n} results"), || {
            let done = done.clone();
            async move { Ok(done.load(Ordering::Relaxed) >= n) }
        })
        .await
    }

    async fn all(self) -> anyhow::Result<Vec<JobResult>> {
        self.task.await?
    }
}

/// 1. An agent dies holding jobs: its leases are re-queued within the
/// heartbeat timeout plus one sweep, and every job still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_agent_holding_jobs() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::quick_detection(3, 4)).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;
    let ids = client.submit_many(sleep_jobs(300, 100)).await?;
    let waiter = Waiter::start(client, ids, Duration::from_secs(120));

    // Killed while it runs jobs whose starts the balancer has applied:
    // only its loss can re-queue those. (Killed as soon as it merely
    // holds leases, it may not have started any, and an unstarted lease
    // goes back on the accept timeout, sooner than the loss is noticed.)
    wait_until(
        Duration::from_secs(20),
        "agent-1 running 2 jobs",
        || async {
            let mut running = 0;
            for s in spy.started().iter().filter(|s| s.agent_id == "agent-1") {
                if fleet.job(&s.job_id).await?["state"] == "running" {
                    running += 1;
                }
            }
            Ok(running >= 2)
        },
    )
    .await?;
    fleet.agents[1].kill9();
    // Detection takes up to the heartbeat timeout after its last beat,
    // then one sweep; allow one heartbeat interval and a second of slack.
    let limit = HEARTBEAT_TIMEOUT + SWEEP + Duration::from_millis(1300);
    wait_until(limit, "agent-1's leases re-queued", || async {
        let a = agent_entry(&fleet.stats().await?, "agent-1");
        Ok(a["current_jobs"] == 0 && a["is_healthy"] == false)
    })
    .await?;

    let results = waiter.all().await?;
    fleet.assert_all_succeeded_once(&results, 300).await?;
    let lost: Vec<&JobResult> = results
        .iter()
        .filter(|r| {
            r.attempts.iter().any(|a| {
                a.error
                    .as_deref()
                    .is_some_and(|e| e.contains("agent-1 lost"))
            })
        })
        .collect();
    let failed_attempts: Vec<(&str, Option<&str>)> = results
        .iter()
        .flat_map(|r| &r.attempts)
        .filter(|a| a.error.is_some())
        .map(|a| (a.agent_id.as_str(), a.error.as_deref()))
        .collect();
    assert!(
        !lost.is_empty(),
        "some jobs were taken from the dead agent; failed attempts: {failed_attempts:?}"
    );
    for r in lost {
        assert_ne!(r.agent_id.as_deref(), Some("agent-1"), "{r:?}");
    }
    Ok(())
}

/// 2. The balancer is killed twice mid-run and restarted each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_balancer_twice() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::quick_detection(3, 4)).await?;
    let client = fleet.client().await?;
    let ids = client.submit_many(sleep_jobs(600, 10)).await?;
    let waiter = Waiter::start(client, ids, Duration::from_secs(120));

    waiter.reached(100).await?;
    fleet.restart_balancer().await?;
    waiter.reached(350).await?;
    fleet.restart_balancer().await?;

    let results = waiter.all().await?;
    fleet.assert_all_succeeded_once(&results, 600).await?;
    Ok(())
}

/// 3. A standby takes over within 5 s of the leader's death.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_when_the_leader_dies() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::quick_detection(3, 4)).await?;
    let (standby, standby_port) = fleet.start_balancer("standby")?;
    let health = |port: u16| async move {
        let body: Value = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await?
            .json()
            .await?;
        anyhow::Ok(body["role"].as_str().unwrap_or_default().to_string())
    };
    wait_until(Duration::from_secs(10), "the standby up", || async {
        Ok(health(standby_port).await.is_ok())
    })
    .await?;
    assert_eq!(health(standby_port).await?, "standby");
    assert_eq!(health(fleet.http_port).await?, "leader");

    let client = fleet.client().await?;
    let ids = client.submit_many(sleep_jobs(400, 10)).await?;
    let waiter = Waiter::start(client, ids, Duration::from_secs(120));
    waiter.reached(100).await?;

    fleet.balancer.kill9();
    wait_leader(standby_port, Duration::from_secs(5)).await?;

    let results = waiter.all().await?;
    fleet.http_port = standby_port;
    fleet.assert_all_succeeded_once(&results, 400).await?;
    drop(standby);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_mid_run_hands_over_at_once() -> anyhow::Result<()> {
    // A lease of 20 s: a standby that took over sooner did so because the
    // leader gave the lease up, not because it ran out.
    let mut config = FleetConfig::quick_detection(3, 4);
    config
        .balancer_args
        .extend(["--leader-ttl".to_string(), "20s".to_string()]);
    let mut fleet = Fleet::start(config).await?;
    let (standby, standby_port) = fleet.start_balancer("standby")?;
    wait_until(Duration::from_secs(10), "the standby up", || async {
        Ok(
            reqwest::get(format!("http://127.0.0.1:{standby_port}/healthz"))
                .await
                .is_ok(),
        )
    })
    .await?;

    let client = fleet.client().await?;
    let ids = client.submit_many(sleep_jobs(400, 10)).await?;
    let waiter = Waiter::start(client, ids, Duration::from_secs(120));
    waiter.reached(100).await?;

    fleet.balancer.signal("TERM")?;
    let exit = fleet.balancer.wait_exit(Duration::from_secs(10)).await?;
    assert_eq!(exit, Some(0), "a stopped balancer exits 0");
    wait_leader(standby_port, Duration::from_secs(10)).await?;

    let results = waiter.all().await?;
    fleet.http_port = standby_port;
    fleet.assert_all_succeeded_once(&results, 400).await?;
    drop(standby);
    Ok(())
}

/// 4. redis-server and then nats-server are killed and restarted mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_nats_restarts_mid_run() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::quick_detection(3, 4)).await?;
    let client = fleet.client().await?;
    let ids = client.submit_many(sleep_jobs(400, 10)).await?;
    let waiter = Waiter::start(client, ids, Duration::from_secs(150));

    waiter.reached(100).await?;
    fleet.restart_redis()?;
    waiter.reached(220).await?;
    fleet.restart_nats()?;

    let results = waiter.all().await?;
    fleet.assert_all_succeeded_once(&results, 400).await?;
    Ok(())
}

/// 5. Retries escalate and are bounded: a job failing twice succeeds on
/// its third attempt; one that always fails is dead after three, with
/// three errors, and an operator's retry gives it three more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_escalate_then_dead_letter() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::quick_detection(2, 2)).await?;
    let client = fleet.client().await?;
    let flaky = client
        .submit(JobSpec::new("flaky", json!({"fail_attempts": 2})))
        .await?;
    let doomed = client
        .submit(JobSpec {
            id: Some("doomed".into()),
            ..JobSpec::new("flaky", json!({"fail_attempts": 1000}))
        })
        .await?;

    let r = client.wait(&flaky, Duration::from_secs(30)).await?;
    assert_eq!(r.state, JobState::Succeeded, "{r:?}");
    assert_eq!(r.result, Some(json!({"attempt": 3})));
    let outcomes: Vec<&str> = r.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    let job = fleet.job(&flaky).await?;
    assert_eq!(job["submitted_priority"], "normal", "{job}");
    assert_eq!(
        job["priority"], "urgent",
        "escalated one class per failure: {job}"
    );

    let d = client.wait(&doomed, Duration::from_secs(30)).await?;
    assert_eq!(d.state, JobState::Dead, "{d:?}");
    assert_eq!(d.attempts.len(), 3, "{d:?}");
    for (i, a) in d.attempts.iter().enumerate() {
        assert_eq!(a.attempt, i as u32 + 1);
        let expected = format!("attempt {} fails on purpose", i + 1);
        assert!(
            a.error.as_deref().is_some_and(|e| e.contains(&expected)),
            "{a:?}"
        );
    }
    let dead: Value = reqwest::get(format!("{}/api/dead", fleet.balancer_url()))
        .await?
        .json()
        .await?;
    let listed: Vec<&str> = dead["dead"]
        .as_array()
        .map(|a| a.iter().filter_map(|j| j["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, ["doomed"]);

    // An operator's retry: three more attempts, then dead again.
    let retried = reqwest::Client::new()
        .post(format!("{}/api/jobs/doomed/retry", fleet.balancer_url()))
        .send()
        .await?;
    assert!(retried.status().is_success());
    wait_until(
        Duration::from_secs(30),
        "doomed dead again after 6 attempts",
        || async {
            let job = fleet.job("doomed").await?;
            Ok(job["state"] == "dead" && job["attempts"].as_array().map(Vec::len) == Some(6))
        },
    )
    .await?;
    let stats = fleet.stats().await?;
    assert_eq!(stats["total_jobs_dead"], 2, "{stats}");
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "audit: {audit}");
    Ok(())
}

/// 6. An agent paused past the heartbeat timeout loses its job; when it
/// resumes, its late completion is refused and the one accepted result
/// comes from the agent that took the job over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_agent_late_completion_is_refused() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::quick_detection(1, 1)).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;
    let id = client
        .submit(JobSpec::new("sleep", json!({"ms": 500})))
        .await?;
    spy.wait_started(&id, Duration::from_secs(10)).await?;
    fleet.agents[0].signal("STOP")?;
    fleet.start_agent("agent-1", 1)?;
    wait_until(
        Duration::from_secs(10),
        "the job re-leased to agent-1",
        || async { Ok(fleet.job(&id).await?["agent_id"] == "agent-1") },
    )
    .await?;
    fleet.agents[0].signal("CONT")?;

    let r = client.wait(&id, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Succeeded);
    assert_eq!(r.agent_id.as_deref(), Some("agent-1"), "{r:?}");
    // agent-0's own completion of attempt 1 arrives and changes nothing.
    wait_until(
        Duration::from_secs(10),
        "agent-0's stale completion",
        || async {
            Ok(spy.events().iter().any(|e| {
                matches!(e, fleet_protocol::AgentEvent::Completed(c)
                if c.job_id == id && c.agent_id == "agent-0")
            }))
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(10),
        "the stale completion refused",
        || async { Ok(fleet.stats().await?["total_stale_events"].as_u64() >= Some(1)) },
    )
    .await?;
    let job = fleet.job(&id).await?;
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["agent_id"], "agent-1", "{job}");
    let outcomes: Vec<(String, String)> = job["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| (x["agent_id"].to_string(), x["outcome"].to_string()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        outcomes,
        [
            ("\"agent-0\"".into(), "\"failed\"".into()),
            ("\"agent-1\"".into(), "\"succeeded\"".into())
        ],
        "{job}"
    );
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "audit: {audit}");
    // The resumed agent rejoins as a new incarnation.
    wait_until(Duration::from_secs(10), "agent-0 healthy again", || async {
        Ok(agent_entry(&fleet.stats().await?, "agent-0")["is_healthy"] == true)
    })
    .await?;
    Ok(())
}

/// 7. A job whose agent hangs past the job's timeout is cancelled on that
/// agent and retried elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_job_is_cancelled_and_retried_elsewhere() -> anyhow::Result<()> {
    let mut config = FleetConfig::quick_detection(0, 1);
    config.agent_args = vec!["--fault-no-timeouts".into()];
    let mut fleet = Fleet::start(config).await?;
    fleet.start_agent("hangs", 1)?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;
    let id = client
        .submit(JobSpec {
            timeout_ms: Some(1000),
            ..JobSpec::new("flaky", json!({"hang_attempts": 1}))
        })
        .await?;
    spy.wait_started(&id, Duration::from_secs(10)).await?;
    fleet.config.agent_args.clear();
    fleet.start_agent("healthy", 1)?;

    let r = client.wait(&id, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Succeeded, "{r:?}");
    assert_eq!(r.agent_id.as_deref(), Some("healthy"), "{r:?}");
    assert_eq!(r.attempts.len(), 2, "{r:?}");
    assert_eq!(r.attempts[0].agent_id, "hangs");
    assert!(
        r.attempts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{r:?}"
    );
    let hanging_log = fleet.agents[0].log();
    wait_until(
        Duration::from_secs(5),
        "the hanging agent told to cancel",
        || {
            let log = fleet.agents[0].log();
            async move { Ok(log.contains("job cancelled")) }
        },
    )
    .await
    .map_err(|e| e.context(hanging_log))?;
    // The dashboard lists the timeout among recent failures, as it lists
    // failures agents report.
    let snapshot = dashboard_snapshot(&fleet).await?;
    let failures = snapshot["failures"].as_array().cloned().unwrap_or_default();
    assert!(
        failures.iter().any(|f| f["job_id"] == id.as_str()
            && f["agent_id"] == "hangs"
            && f["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("timed out"))),
        "{failures:?}"
    );
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "audit: {audit}");
    Ok(())
}

/// The first snapshot the dashboard's event stream sends.
async fn dashboard_snapshot(fleet: &Fleet) -> anyhow::Result<Value> {
    let mut stream = reqwest::get(format!("{}/api/stream", fleet.balancer_url())).await?;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // An event ends with a blank line; its data is one `data:` line.
        if let Some(end) = text.find("\n\n") {
            if let Some(data) = text[..end].lines().find_map(|l| l.strip_prefix("data:")) {
                return Ok(serde_json::from_str(data.trim())?);
            }
            text.drain(..end + 2);
            continue;
        }
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .map_err(|_| anyhow::anyhow!("no dashboard snapshot within 10 s"))??;
        let chunk = chunk.ok_or_else(|| anyhow::anyhow!("the dashboard stream ended"))?;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A leader paused past its lease is replaced; when it resumes, its writes
/// are refused and it steps down to standby, and no job is lost or run
/// to two accepted results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_is_deposed_and_its_writes_refused() -> anyhow::Result<()> {
    let mut config = FleetConfig::quick_detection(3, 4);
    config
        .balancer_args
        .extend(["--leader-ttl".to_string(), "1s".to_string()]);
    let mut fleet = Fleet::start(config).await?;
    let (standby, standby_port) = fleet.start_balancer("standby")?;
    let client = fleet.client().await?;
    let ids = client.submit_many(sleep_jobs(400, 10)).await?;
    let waiter = Waiter::start(client, ids, Duration::from_secs(120));
    waiter.reached(80).await?;

    fleet.balancer.signal("STOP")?;
    wait_leader(standby_port, Duration::from_secs(5)).await?;
    fleet.balancer.signal("CONT")?;
    let old_port = fleet.http_port;
    wait_until(
        Duration::from_secs(10),
        "the old leader standing by",
        || async {
            let body: Value = reqwest::get(format!("http://127.0.0.1:{old_port}/healthz"))
                .await?
                .json()
                .await?;
            Ok(body["role"] == "standby")
        },
    )
    .await?;

    let results = waiter.all().await?;
    fleet.http_port = standby_port;
    fleet.assert_all_succeeded_once(&results, 400).await?;
    let log = fleet.balancer_log();
    assert!(log.contains("stepped down"), "the old leader stepped down");
    drop(standby);
    Ok(())
}

/// Cancelling a queued job and a running one: both end `cancelled`, the
/// running one is stopped on its agent, and the fleet carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_queued_and_running_jobs() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::quick_detection(1, 1)).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;
    let running = client
        .submit(JobSpec::new("sleep", json!({"ms": 30_000})))
        .await?;
    let queued = client.submit(JobSpec::new("echo", json!({}))).await?;
    spy.wait_started(&running, Duration::from_secs(10)).await?;
    assert_eq!(fleet.job(&queued).await?["state"], "queued");

    let http = reqwest::Client::new();
    for id in [&queued, &running] {
        let reply = http
            .post(format!("{}/api/jobs/{id}/cancel", fleet.balancer_url()))
            .send()
            .await?;
        assert!(reply.status().is_success(), "{}", reply.text().await?);
        let r = client.wait(id, Duration::from_secs(10)).await?;
        assert_eq!(r.state, JobState::Cancelled, "{r:?}");
    }
    // Cancelling again is refused: the job already ended.
    let again = http
        .post(format!(
            "{}/api/jobs/{running}/cancel",
            fleet.balancer_url()
        ))
        .send()
        .await?;
    assert_eq!(again.status(), reqwest::StatusCode::CONFLICT);
    wait_until(Duration::from_secs(5), "the agent stopped the job", || {
        let log = fleet.agents[0].log();
        async move { Ok(log.contains("job cancelled")) }
    })
    .await?;
    // The slot is free again.
    let next = client.submit(JobSpec::new("echo", json!({"n": 1}))).await?;
    assert_eq!(
        client.wait(&next, Duration::from_secs(10)).await?.state,
        JobState::Succeeded
    );
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "audit: {audit}");
    assert_eq!(audit["by_state"]["cancelled"], 2, "audit: {audit}");
    Ok(())
}

/// Attempts lost to dead agents are spared from `max_attempts` (twice per
/// job): a job allowed one attempt survives its agent's SIGKILL and runs
/// elsewhere, and the lost attempt stays in its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_lost_to_a_dead_agent_is_spared() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::quick_detection(1, 1)).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;
    let id = client
        .submit(JobSpec {
            max_attempts: Some(1),
            ..JobSpec::new("sleep", json!({"ms": 500}))
        })
        .await?;
    spy.wait_started(&id, Duration::from_secs(10)).await?;
    fleet.agents[0].kill9();
    fleet.start_agent("agent-1", 1)?;
    let r = client.wait(&id, Duration::from_secs(30)).await?;
    assert_eq!(r.state, JobState::Succeeded, "{r:?}");
    assert_eq!(r.agent_id.as_deref(), Some("agent-1"), "{r:?}");
    assert_eq!(r.attempts.len(), 2, "{r:?}");
    assert!(
        r.attempts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("lost")),
        "{r:?}"
    );
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "audit: {audit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_agent_is_forgotten_after_the_limit() -> anyhow::Result<()> {
    let mut config = FleetConfig::quick_detection(2, 2);
    config
        .balancer_args
        .extend(["--forget-agents-after".into(), "1s".into()]);
    let mut fleet = Fleet::start(config).await?;
    fleet.wait_healthy_agents(2).await?;
    fleet.agents[1].kill9();
    let listed = |stats: &serde_json::Value, id: &str| !agent_entry(stats, id).is_null();
    wait_until(Duration::from_secs(20), "agent-1 declared dead", || async {
        let stats = fleet.stats().await?;
        Ok(stats["healthy_agents"] == 1 && listed(&stats, "agent-1"))
    })
    .await?;
    wait_until(Duration::from_secs(30), "agent-1 forgotten", || async {
        let stats = fleet.stats().await?;
        Ok(!listed(&stats, "agent-1") && listed(&stats, "agent-0"))
    })
    .await?;
    assert!(fleet.balancer_log().contains("dead agent forgotten"));
    Ok(())
}

/// A producer waiting on a job an operator just retried gets the retry's
/// outcome, not the old dead-letter result still in the results stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_after_a_retry_gets_the_new_outcome() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::quick_detection(1, 2)).await?;
    let client = fleet.client().await?;
    let id = client
        .submit(JobSpec {
            id: Some("comeback".into()),
            max_attempts: Some(3),
            ..JobSpec::new("flaky", json!({"fail_attempts": 3, "ms": 200}))
        })
        .await?;
    let d = client.wait(&id, Duration::from_secs(30)).await?;
    assert_eq!(d.state, JobState::Dead, "{d:?}");

    let retried = reqwest::Client::new()
        .post(format!("{}/api/jobs/comeback/retry", fleet.balancer_url()))
        .send()
        .await?;
    assert!(retried.status().is_success());
    let r = client.wait(&id, Duration::from_secs(30)).await?;
    assert_eq!(r.state, JobState::Succeeded, "{r:?}");
    assert_eq!(r.result, Some(json!({"attempt": 4})));
    Ok(())
}

/// A queued job cancelled, retried and cancelled again within JetStream's
/// duplicate window gets its second result too (no attempt tells the two
/// apart), and a `wait` between them does not return the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_again_after_a_retry_gets_a_new_result() -> anyhow::Result<()> {
    // No agent offers CUDA here: the job stays queued (parked).
    let fleet = Fleet::start(FleetConfig::quick_detection(1, 1)).await?;
    let client = fleet.client().await?;
    let id = client
        .submit(JobSpec {
            id: Some("twice".into()),
            ..JobSpec::new("cuda.vector_add", json!({"n": 64}))
        })
        .await?;
    let http = reqwest::Client::new();
    let post = |what: &str| {
        http.post(format!("{}/api/jobs/twice/{what}", fleet.balancer_url()))
            .send()
    };
    wait_until(Duration::from_secs(10), "the job queued", || async {
        Ok(fleet.job(&id).await?["state"] == "queued")
    })
    .await?;
    assert!(post("cancel").await?.status().is_success());
    let first = client.wait(&id, Duration::from_secs(10)).await?;
    assert_eq!(first.state, JobState::Cancelled, "{first:?}");

    assert!(post("retry").await?.status().is_success());
    assert_eq!(fleet.job(&id).await?["state"], "queued");
    assert!(post("cancel").await?.status().is_success());
    let second = client.wait(&id, Duration::from_secs(10)).await?;
    assert_eq!(second.state, JobState::Cancelled, "{second:?}");
    assert!(
        second.finished_at_ms > first.finished_at_ms,
        "the second cancellation's own result: {first:?} then {second:?}"
    );
    Ok(())
}
