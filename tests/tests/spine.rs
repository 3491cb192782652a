//! End-to-end tests of the whole path: producer → NATS → balancer → Redis
//! → agent → result, against real servers and the real binaries.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use fleet_protocol::{subjects, AgentEvent, JobSpec, JobState, Priority, Rejection};
use fleet_tests::{wait_until, EventSpy, Fleet, FleetConfig};
use futures::StreamExt;
use serde_json::json;

fn sleep_job(ms: u64) -> JobSpec {
    JobSpec::new("sleep", json!({ "ms": ms }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_sleep_jobs_over_three_agents_all_succeed() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(3, 4)).await?;
    let client = fleet.client().await?;

    let ids = client.submit_many(vec![sleep_job(2); 500]).await?;
    let results = client
        .wait_many(&ids, Duration::from_secs(120), |_| {})
        .await?;

    assert_eq!(results.len(), 500);
    for r in &results {
        assert_eq!(r.state, JobState::Succeeded, "{r:?}");
        assert_eq!(r.result, Some(json!({"slept_ms": 2})));
        assert_eq!(r.attempts.len(), 1, "{r:?}");
    }
    let per_agent = results.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.agent_id.clone().unwrap_or_default()).or_insert(0) += 1;
        m
    });
    assert_eq!(per_agent.len(), 3, "every agent took work: {per_agent:?}");

    // The counters behind the stats document agree with what happened.
    let stats = fleet.stats().await?;
    assert_eq!(stats["total_jobs_submitted"], 500, "{stats}");
    assert_eq!(stats["total_jobs_assigned"], 500, "{stats}");
    assert_eq!(stats["total_jobs_succeeded"], 500, "{stats}");
    assert_eq!(stats["total_jobs_retried"], 0, "{stats}");
    assert_eq!(stats["total_jobs_dead"], 0, "{stats}");
    assert_eq!(stats["queued_jobs"], 0, "{stats}");
    assert_eq!(stats["assigned_jobs"], 0, "{stats}");
    assert_eq!(stats["current_load"], 0, "{stats}");
    assert_eq!(stats["total_agents"], 3, "{stats}");
    assert_eq!(stats["healthy_agents"], 3, "{stats}");
    assert_eq!(stats["total_capacity"], 12, "{stats}");
    assert!(stats["completions_per_s"].as_f64() > Some(0.0), "{stats}");
    assert_eq!(
        stats["queue_drain_eta_s"], 0.0,
        "an empty queue drains now: {stats}"
    );
    assert_eq!(stats["jobs_by_state"]["succeeded"], 500, "{stats}");
    assert_eq!(stats["jobs_by_state"]["queued"], 0, "{stats}");
    assert!(stats["throughput_1m"].as_f64() > Some(0.0), "{stats}");
    for key in ["queue_wait_ms", "run_ms"] {
        for q in ["p50", "p90", "p99", "max"] {
            assert!(stats[key][q].is_number(), "{key}.{q}: {stats}");
        }
    }
    assert_eq!(stats["queued_by_priority"][0][0], "urgent", "{stats}");
    let agents = stats["agents"].as_array().cloned().unwrap_or_default();
    assert_eq!(agents.len(), 3);
    for a in &agents {
        assert_eq!(a["max_jobs"], 4, "{a}");
        assert_eq!(a["current_jobs"], 0, "{a}");
        assert_eq!(a["success_rate"], 1.0, "{a}");
        assert_eq!(a["is_healthy"], true, "{a}");
        for field in ["agent_id", "load_percent", "score"] {
            assert!(!a[field].is_null(), "agent entry lacks {field}: {a}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_agent_ever_runs_more_jobs_than_its_slots() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(2, 3)).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;

    // Far more work than slots, long enough for heartbeats to catch jobs
    // in flight.
    let ids = client.submit_many(vec![sleep_job(150); 60]).await?;
    let results = client
        .wait_many(&ids, Duration::from_secs(60), |_| {})
        .await?;
    assert!(results.iter().all(|r| r.state == JobState::Succeeded));

    let mut peak: HashMap<String, u32> = HashMap::new();
    let mut beats = 0;
    for event in spy.events() {
        let (agent, running) = match &event {
            AgentEvent::Started(s) => (s.agent_id.clone(), s.running),
            AgentEvent::Heartbeat(h) => {
                beats += 1;
                (h.agent_id.clone(), h.running.len() as u32)
            }
            _ => continue,
        };
        let p = peak.entry(agent).or_default();
        *p = (*p).max(running);
    }
    assert!(beats > 0, "heartbeats were observed");
    assert_eq!(peak.len(), 2, "both agents reported: {peak:?}");
    for (agent, p) in &peak {
        assert!(*p <= 3, "{agent} reported {p} jobs running with 3 slots");
        // The queue was deep: every slot was used, so the bound was tested.
        assert_eq!(*p, 3, "{agent} never filled its slots");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_high_jobs_start_before_earlier_normal_ones() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(1, 2)).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;

    // Occupy both slots.
    let blockers = client.submit_many(vec![sleep_job(3_000); 2]).await?;
    wait_until(Duration::from_secs(10), "both blockers running", || async {
        Ok(spy.started().len() == 2)
    })
    .await?;

    let normal = client
        .submit_many(
            (0..6)
                .map(|_| JobSpec {
                    priority: Some(Priority::Normal),
                    ..sleep_job(5)
                })
                .collect(),
        )
        .await?;
    let high = client
        .submit_many(
            (0..6)
                .map(|_| JobSpec {
                    priority: Some(Priority::High),
                    ..sleep_job(5)
                })
                .collect(),
        )
        .await?;
    // The premise: all twelve wait in the queue while the slots are busy.
    wait_until(Duration::from_secs(10), "12 jobs queued", || async {
        Ok(fleet.stats().await?["queued_jobs"] == 12)
    })
    .await?;
    assert_eq!(
        spy.started().len(),
        2,
        "nothing else started while slots were busy"
    );

    let all: Vec<String> = blockers
        .iter()
        .chain(&normal)
        .chain(&high)
        .cloned()
        .collect();
    client
        .wait_many(&all, Duration::from_secs(30), |_| {})
        .await?;

    let order: Vec<String> = spy
        .started()
        .into_iter()
        .map(|s| s.job_id)
        .skip(2)
        .collect();
    assert_eq!(order.len(), 12, "{order:?}");
    let last_high = order.iter().rposition(|id| high.contains(id));
    let first_normal = order.iter().position(|id| normal.contains(id));
    assert!(
        last_high < first_normal,
        "every HIGH job must start before any NORMAL one: {order:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_twice_runs_once() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(1, 2)).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;

    let job = JobSpec {
        id: Some("twice".into()),
        ..JobSpec::new("echo", json!({"n": 1}))
    };
    // Same id, same Nats-Msg-Id: JetStream drops the second copy.
    client.submit(job.clone()).await?;
    client.submit(job.clone()).await?;
    // Same job id under another message id: it reaches the balancer, whose
    // enqueue script must recognise the id.
    let js = jetstream::new(fleet.nats_client().await?);
    js.send_publish(
        subjects::SUBMIT,
        PublishMessage::build()
            .payload(serde_json::to_vec(&job)?.into())
            .message_id("twice-resent-later"),
    )
    .await?
    .await?;

    let result = client.wait("twice", Duration::from_secs(20)).await?;
    assert_eq!(result.state, JobState::Succeeded);
    wait_until(
        Duration::from_secs(10),
        "the resent copy to be seen",
        || async { Ok(fleet.stats().await?["total_duplicate_submissions"] == 1) },
    )
    .await?;
    // Let one more job through the same agent: by the time it finishes, any
    // second run of "twice" would have been reported.
    let after = client.submit(JobSpec::new("echo", json!({}))).await?;
    client.wait(&after, Duration::from_secs(20)).await?;

    let runs = spy.started().iter().filter(|s| s.job_id == "twice").count();
    assert_eq!(runs, 1, "the job ran {runs} times");
    let job = fleet.job("twice").await?;
    assert_eq!(job["attempts"].as_array().map(Vec::len), Some(1), "{job}");
    let stats = fleet.stats().await?;
    assert_eq!(stats["total_jobs_submitted"], 2, "{stats}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_kind_submissions_are_rejected_and_neighbours_run(
) -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(1, 2)).await?;
    let nats = fleet.nats_client().await?;
    let mut rejections = nats.subscribe(subjects::REJECTED).await?;
    nats.flush().await?;
    let client = fleet.client().await?;
    let js = jetstream::new(nats.clone());

    let before = client.submit(JobSpec::new("echo", json!({"i": 1}))).await?;
    js.publish(subjects::SUBMIT, "{not json".into())
        .await?
        .await?;
    js.publish(
        subjects::SUBMIT,
        serde_json::to_vec(&json!({"id": "bad-kind", "kind": "teleport", "args": {}}))?.into(),
    )
    .await?
    .await?;
    let after = client.submit(JobSpec::new("echo", json!({"i": 2}))).await?;

    for id in [&before, &after] {
        let r = client.wait(id, Duration::from_secs(20)).await?;
        assert_eq!(r.state, JobState::Succeeded, "{r:?}");
    }

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(10), rejections.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("rejection subscription ended"))?;
        seen.push(serde_json::from_slice::<Rejection>(&m.payload)?);
    }
    seen.sort_by(|a, b| a.reason.cmp(&b.reason));
    assert_eq!(seen[0].reason, "malformed", "{seen:?}");
    assert_eq!(seen[0].job_id, None);
    assert_eq!(seen[1].reason, "unknown_kind", "{seen:?}");
    assert_eq!(seen[1].job_id.as_deref(), Some("bad-kind"));
    assert!(seen[1].error.contains("teleport"), "{seen:?}");

    let stats = fleet.stats().await?;
    assert_eq!(stats["total_jobs_rejected"], 2, "{stats}");
    assert_eq!(stats["total_jobs_succeeded"], 2, "{stats}");
    let log = fleet.balancer_log();
    assert!(log.contains("submission rejected"), "rejections are logged");
    assert!(log.contains("unknown_kind") && log.contains("malformed"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_jobs_are_reported_by_their_completion_alone() -> anyhow::Result<()> {
    // The agent's default: `started` only for a job still running 5 ms in.
    let mut fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.start_agent_with("quick", 4, &["--report-start-after", "5ms"])?;
    fleet.wait_healthy_agents(1).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;

    let quick = client
        .submit_many(vec![JobSpec::new("echo", json!({"n": 1})); 200])
        .await?;
    let long = client.submit(sleep_job(300)).await?;
    let results = client
        .wait_many(&quick, Duration::from_secs(60), |_| {})
        .await?;
    assert!(results.iter().all(|r| r.state == JobState::Succeeded));
    let result = client.wait(&long, Duration::from_secs(30)).await?;
    assert_eq!(result.state, JobState::Succeeded);
    // Microsecond timing agrees with the millisecond one; a short job
    // started when it was assigned.
    for r in results.iter().chain([&result]) {
        let t = r
            .timing
            .ok_or_else(|| anyhow::anyhow!("no timing: {r:?}"))?;
        let (assigned_us, started_us) = (
            t.assigned_at_us.unwrap_or_default(),
            t.started_at_us.unwrap_or_default(),
        );
        // The agent began the attempt after the balancer leased it (one
        // machine, one clock here).
        let began = t
            .agent_started_at_us
            .ok_or_else(|| anyhow::anyhow!("no agent start: {t:?}"))?;
        assert!(began >= t.assigned_at_us.unwrap_or_default(), "{t:?}");
        // The µs stamps are taken as the balancer sends the committing
        // script; the ms ones at the start of its round or batch, a
        // little earlier.
        for (us, ms) in [
            (assigned_us, t.assigned_at_ms),
            (started_us, t.started_at_ms),
        ] {
            assert!(us >= ms * 1000 && us / 1000 - ms < 1000, "{t:?}");
        }
    }
    let quick_timing = results[0].timing;
    if let Some(t) = quick_timing.filter(|t| t.started_at_ms == t.assigned_at_ms) {
        assert_eq!(t.started_at_us, t.assigned_at_us, "{t:?}");
    }

    let started = spy.started();
    let quick_starts = started.iter().filter(|s| quick.contains(&s.job_id)).count();
    // Microsecond jobs end before the delay; a starved scheduler may let a
    // few pass it, so "most" is what is asserted.
    assert!(
        quick_starts < quick.len() / 2,
        "{quick_starts} of {} quick jobs published started",
        quick.len()
    );
    assert_eq!(
        started.iter().filter(|s| s.job_id == long).count(),
        1,
        "a long job still reports its start"
    );
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "{audit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_jobs_skip_the_queue_only_while_nothing_waits_in_it() -> anyhow::Result<()> {
    // No agent yet: whatever arrives waits in the queue.
    let mut fleet = Fleet::start(FleetConfig::with_agents(0, 4)).await?;
    let client = fleet.client().await?;
    let early = client
        .submit_many(vec![JobSpec::new("echo", json!({})); 5])
        .await?;
    wait_until(Duration::from_secs(20), "5 jobs queued", || async {
        Ok(fleet.stats().await?["queued_jobs"] == 5)
    })
    .await?;
    assert_eq!(leased_at_intake(&fleet).await?, 0.0);

    // An agent joins: the scheduler drains the queue.
    fleet.start_agent("agent-0", 4)?;
    let results = client
        .wait_many(&early, Duration::from_secs(30), |_| {})
        .await?;
    assert!(results.iter().all(|r| r.state == JobState::Succeeded));
    assert_eq!(
        leased_at_intake(&fleet).await?,
        0.0,
        "queued jobs came through the queue"
    );

    // The queue is empty now: each new job is leased by the call that
    // admits it, and still runs exactly once.
    for _ in 0..10 {
        let id = client.submit(JobSpec::new("echo", json!({}))).await?;
        let result = client.wait(&id, Duration::from_secs(10)).await?;
        assert_eq!(result.state, JobState::Succeeded);
    }
    assert_eq!(leased_at_intake(&fleet).await?, 10.0);
    let stats = fleet.stats().await?;
    assert_eq!(stats["total_jobs_submitted"], 15, "{stats}");
    assert_eq!(stats["total_jobs_assigned"], 15, "{stats}");
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "{audit}");
    Ok(())
}

/// Jobs the intake leased in the call that admitted them.
async fn leased_at_intake(fleet: &Fleet) -> anyhow::Result<f64> {
    let samples = fleet_tests::metrics::scrape(fleet).await?;
    let n = fleet_tests::metrics::get(&samples, "fleet_jobs_total{event=\"leased_at_intake\"}");
    Ok(if n.is_nan() { 0.0 } else { n })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_deleted_after_the_retention_and_running_ones_are_not(
) -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig {
        balancer_args: vec!["--retain-finished".into(), "1s".into()],
        ..FleetConfig::with_agents(1, 2)
    })
    .await?;
    let client = fleet.client().await?;
    let done = client.submit(JobSpec::new("echo", json!({"i": 1}))).await?;
    let r = client.wait(&done, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Succeeded, "{r:?}");
    let running = client.submit(sleep_job(60_000)).await?;
    wait_until(Duration::from_secs(20), "the long job running", || async {
        Ok(fleet.job(&running).await?["state"] == "running")
    })
    .await?;

    let status = |id: String| {
        let url = format!("{}/api/jobs/{id}", fleet.balancer_url());
        async move { Ok::<_, anyhow::Error>(reqwest::get(&url).await?.status()) }
    };
    assert_eq!(status(done.clone()).await?, reqwest::StatusCode::OK);
    wait_until(Duration::from_secs(20), "the finished job deleted", || {
        let check = status(done.clone());
        async move { Ok(check.await? == reqwest::StatusCode::NOT_FOUND) }
    })
    .await?;
    // The running job outlives the retention untouched.
    assert_eq!(fleet.job(&running).await?["state"], "running");
    Ok(())
}
