//! Placement end to end: agents declaring different (simulated) GPUs,
//! requirements, unschedulable jobs, affinity, drain, and every policy.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_protocol::{AssignmentBatch, JobSpec, JobState, Requirements};
use fleet_tests::{wait_until, EventSpy, Fleet, FleetConfig};
use futures::StreamExt;
use serde_json::{json, Value};

const H100: &str = "H100:80GiB:9.0";
const TWO_4090: &str = "RTX4090:24GiB:8.9,RTX4090:24GiB:8.9";

fn sleep_requiring(ms: u64, requires: Value) -> anyhow::Result<JobSpec> {
    Ok(JobSpec {
        requires: serde_json::from_value::<Requirements>(requires)?,
        ..JobSpec::new("sleep", json!({ "ms": ms }))
    })
}

/// Records every assignment message: (agent, job, gpus).
async fn spy_assignments(
    nats: &async_nats::Client,
) -> anyhow::Result<Arc<Mutex<Vec<(String, String, Vec<u32>)>>>> {
    let mut sub = nats.subscribe("fleet.agent.*.assign").await?;
    nats.flush().await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let agent = m.subject.split('.').nth(2).unwrap_or_default().to_string();
            if let Ok(batch) = serde_json::from_slice::<AssignmentBatch>(&m.payload) {
                let mut s = sink.lock();
                for a in batch.assignments {
                    s.push((agent.clone(), a.job_id, a.gpus));
                }
            }
        }
    });
    Ok(seen)
}

async fn agent_of(fleet: &Fleet, id: &str) -> anyhow::Result<String> {
    Ok(fleet.job(id).await?["agent_id"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_lands_only_where_it_fits() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.start_agent_with("h100", 2, &["--simulate-gpus", H100])?;
    fleet.start_agent_with("rtx", 4, &["--simulate-gpus", TWO_4090])?;
    fleet.start_agent("cpu", 4)?;
    fleet.wait_healthy_agents(3).await?;
    let assignments = spy_assignments(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;

    let mut expect: HashMap<String, &str> = HashMap::new();
    let groups = [
        (json!({"gpus": 1, "gpu_mem_mb": 40960}), "h100"),
        (json!({"compute_capability": "9.0"}), "h100"),
        (json!({"gpus": 2}), "rtx"),
    ];
    for (requires, agent) in groups {
        let jobs = (0..8)
            .map(|_| sleep_requiring(30, requires.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for id in client.submit_many(jobs).await? {
            expect.insert(id, agent);
        }
    }
    let anywhere = client
        .submit_many(vec![JobSpec::new("sleep", json!({"ms": 30})); 20])
        .await?;
    let all: Vec<String> = expect.keys().cloned().chain(anywhere.clone()).collect();
    let results = client
        .wait_many(&all, Duration::from_secs(60), |_| {})
        .await?;
    assert!(results.iter().all(|r| r.state == JobState::Succeeded));

    for r in &results {
        if let Some(agent) = expect.get(&r.job_id) {
            assert_eq!(r.agent_id.as_deref(), Some(*agent), "{r:?}");
        }
    }
    let seen = assignments.lock().clone();
    for (agent, job, gpus) in &seen {
        match expect.get(job) {
            Some(&"h100") => assert_eq!(gpus, &vec![0], "{job} on {agent}"),
            Some(&"rtx") => assert_eq!(gpus, &vec![0, 1], "{job} on {agent}"),
            _ => assert!(gpus.is_empty(), "a CPU job holds no GPU: {job} {gpus:?}"),
        }
    }
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "{audit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_job_is_reported_does_not_block_and_runs_when_a_fit_joins(
) -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.start_agent_with("rtx", 2, &["--simulate-gpus", TWO_4090])?;
    fleet.wait_healthy_agents(1).await?;
    let client = fleet.client().await?;

    // The impossible job first: it must not hold back what follows.
    let big = client
        .submit(JobSpec {
            priority: Some(fleet_protocol::Priority::Urgent),
            ..sleep_requiring(10, json!({"gpus": 1, "gpu_mem_mb": 81920}))?
        })
        .await?;
    let small = client
        .submit_many(vec![JobSpec::new("sleep", json!({"ms": 5})); 30])
        .await?;
    let results = client
        .wait_many(&small, Duration::from_secs(30), |_| {})
        .await?;
    assert!(results.iter().all(|r| r.state == JobState::Succeeded));

    let job = fleet.job(&big).await?;
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(
        job["unschedulable_reason"], "needs 1 GPU with ≥ 80 GiB; largest live: 24 GiB",
        "{job}"
    );
    assert_eq!(fleet.stats().await?["unschedulable_jobs"], 1);

    // An agent that fits joins: the job runs there.
    fleet.start_agent_with("h100", 1, &["--simulate-gpus", H100])?;
    let r = client.wait(&big, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Succeeded);
    assert_eq!(r.agent_id.as_deref(), Some("h100"));
    let job = fleet.job(&big).await?;
    assert!(job["unschedulable_reason"].is_null(), "{job}");
    assert_eq!(fleet.stats().await?["unschedulable_jobs"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_unschedulable_too_long_is_dead_lettered() -> anyhow::Result<()> {
    let config = FleetConfig {
        balancer_args: vec!["--unschedulable-timeout".into(), "1s".into()],
        ..FleetConfig::with_agents(1, 2)
    };
    let fleet = Fleet::start(config).await?;
    let client = fleet.client().await?;
    let id = client
        .submit(sleep_requiring(5, json!({"tags": ["whisper"]}))?)
        .await?;
    let r = client.wait(&id, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Dead, "{r:?}");
    let error = r.error.unwrap_or_default();
    assert!(error.contains("unschedulable"), "{error}");
    assert!(error.contains("whisper"), "{error}");
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "{audit}");
    Ok(())
}

async fn post(fleet: &Fleet, path: &str) -> anyhow::Result<()> {
    let reply = reqwest::Client::new()
        .post(format!("{}{path}", fleet.balancer_url()))
        .send()
        .await?;
    anyhow::ensure!(
        reply.status().is_success(),
        "{path}: {}",
        reply.text().await?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_new_work_and_affinity_returns_families_to_warm_agents() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(2, 4)).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;
    let llama = |ms: u64| {
        JobSpec::new(
            "sleep",
            json!({"ms": ms, "model": "meta-llama/Llama-3.1-8B"}),
        )
    };

    // agent-0 runs a long job, then is drained: it finishes that job and
    // gets nothing new.
    let long = client
        .submit(JobSpec::new("sleep", json!({"ms": 1500})))
        .await?;
    spy.wait_started(&long, Duration::from_secs(10)).await?;
    let holder = agent_of(&fleet, &long).await?;
    assert_eq!(holder, "agent-0", "ties go to the lowest id");
    post(&fleet, "/api/agents/agent-0/drain").await?;
    let during = client.submit_many(vec![llama(5); 6]).await?;
    for r in client
        .wait_many(&during, Duration::from_secs(20), |_| {})
        .await?
    {
        assert_eq!(
            r.agent_id.as_deref(),
            Some("agent-1"),
            "drained agent got work: {r:?}"
        );
    }
    let r = client.wait(&long, Duration::from_secs(10)).await?;
    assert_eq!(
        r.state,
        JobState::Succeeded,
        "the drained agent's job finished"
    );
    let stats = fleet.stats().await?;
    assert_eq!(stats["agents"][0]["draining"], true, "{stats}");

    // Undrained, both agents are idle and equal, and ties go to agent-0;
    // but agent-1 is warm for llama, so llama jobs go back there, while
    // another family goes to agent-0.
    post(&fleet, "/api/agents/agent-0/undrain").await?;
    for _ in 0..3 {
        let id = client.submit(llama(5)).await?;
        client.wait(&id, Duration::from_secs(10)).await?;
        assert_eq!(agent_of(&fleet, &id).await?, "agent-1", "llama stays warm");
    }
    let other = client
        .submit(JobSpec::new(
            "sleep",
            json!({"ms": 5, "model": "openai/whisper-large-v3"}),
        ))
        .await?;
    client.wait(&other, Duration::from_secs(10)).await?;
    assert_eq!(agent_of(&fleet, &other).await?, "agent-0");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_runs_a_mixed_workload() -> anyhow::Result<()> {
    for policy in [
        "composite",
        "round-robin",
        "weighted-round-robin",
        "least-loaded",
        "fastest",
    ] {
        let config = FleetConfig {
            balancer_args: vec!["--policy".into(), policy.into()],
            ..FleetConfig::with_agents(3, 3)
        };
        let fleet = Fleet::start(config).await?;
        let client = fleet.client().await?;
        let ids = client
            .submit_many(
                (0..60)
                    .map(|i| JobSpec::new("sleep", json!({"ms": i % 7})))
                    .collect(),
            )
            .await?;
        let results = client
            .wait_many(&ids, Duration::from_secs(60), |_| {})
            .await?;
        assert!(
            results.iter().all(|r| r.state == JobState::Succeeded),
            "{policy}"
        );
        let used: std::collections::HashSet<_> =
            results.iter().filter_map(|r| r.agent_id.clone()).collect();
        assert_eq!(used.len(), 3, "{policy} used every agent: {used:?}");
        let audit = fleet.audit().await?;
        assert_eq!(audit["ok"], true, "{policy}: {audit}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_holds_submissions_in_jetstream_and_drops_nothing() -> anyhow::Result<()> {
    let config = FleetConfig {
        balancer_args: vec!["--max-queued".into(), "100".into()],
        ..FleetConfig::default()
    };
    let mut fleet = Fleet::start(config).await?;
    let client = fleet.client().await?;
    let ids = client
        .submit_many(vec![JobSpec::new("sleep", json!({"ms": 0})); 3000])
        .await?;

    // With no agent, the balancer stops pulling once over its bound: the
    // rest wait in the FLEET_JOBS stream.
    let js = async_nats::jetstream::new(fleet.nats_client().await?);
    let split = || async {
        let queued = fleet.stats().await?["queued_jobs"].as_u64().unwrap_or(0);
        let mut stream = js.get_stream(fleet_protocol::streams::JOBS).await?;
        anyhow::Ok((queued, stream.info().await?.state.messages))
    };
    wait_until(
        Duration::from_secs(20),
        "intake paused over its bound",
        || async {
            let (queued, in_stream) = split().await?;
            Ok(queued > 100 && queued + in_stream == 3000)
        },
    )
    .await?;
    let (queued, in_stream) = split().await?;
    assert!(queued < 3000, "the balancer held back: {queued} in Redis");
    assert!(in_stream > 0, "the rest wait in JetStream");

    fleet.start_agent("agent-0", 16)?;
    let results = client
        .wait_many(&ids, Duration::from_secs(120), |_| {})
        .await?;
    assert_eq!(results.len(), 3000);
    assert!(results.iter().all(|r| r.state == JobState::Succeeded));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_work_is_stolen_by_an_idle_agent_and_runs_once() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.start_agent_with("slow", 1, &["--prefetch", "4"])?;
    fleet.wait_healthy_agents(1).await?;
    let spy = EventSpy::start(&fleet.nats_client().await?).await?;
    let client = fleet.client().await?;

    // One long job takes the slot; four short ones wait in its prefetch.
    let long = client
        .submit(JobSpec::new("sleep", json!({"ms": 6000})))
        .await?;
    let short = client
        .submit_many(vec![JobSpec::new("sleep", json!({"ms": 10})); 4])
        .await?;
    wait_until(
        Duration::from_secs(10),
        "5 leases on the slow agent",
        || async {
            let stats = fleet.stats().await?;
            Ok(stats["agents"][0]["current_jobs"] == 5)
        },
    )
    .await?;
    // The start event may trail the lease count the stats show.
    wait_until(
        Duration::from_secs(10),
        "the slot's job started",
        || async { Ok(!spy.started().is_empty()) },
    )
    .await?;
    assert_eq!(spy.started().len(), 1, "only the slot's job started");

    // An idle agent joins: it takes the four waiting jobs.
    fleet.start_agent("idle", 4)?;
    let results = client
        .wait_many(&short, Duration::from_secs(20), |_| {})
        .await?;
    for r in &results {
        assert_eq!(r.state, JobState::Succeeded, "{r:?}");
        assert_eq!(r.agent_id.as_deref(), Some("idle"), "{r:?}");
        let outcomes: Vec<&str> = r.attempts.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(outcomes, ["moved", "succeeded"], "{r:?}");
    }
    let r = client.wait(&long, Duration::from_secs(20)).await?;
    assert_eq!(r.agent_id.as_deref(), Some("slow"));

    // No job ran twice: one start each, all on the agent that finished it.
    let started = spy.started();
    for id in short.iter().chain([&long]) {
        let runs: Vec<&str> = started
            .iter()
            .filter(|s| &s.job_id == id)
            .map(|s| s.agent_id.as_str())
            .collect();
        assert_eq!(runs.len(), 1, "{id} started {runs:?}");
    }
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "{audit}");
    Ok(())
}
