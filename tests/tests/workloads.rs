//! Workloads through the whole fleet: `exec` only where the operator
//! allowed it, with a clear error for what it did not allow, CUDA kinds
//! never sent to an agent without a GPU, and arguments no agent could run
//! refused at submission.

use std::time::Duration;

use fleet_client::ClientError;
use fleet_protocol::{subjects, JobSpec, JobState, Rejection};
use fleet_tests::{wait_until, Fleet, FleetConfig};
use futures::StreamExt;
use serde_json::{json, Value};

/// A well-formed user kernel request.
fn scale_kernel() -> Value {
    json!({
        "source": "extern \"C\" __global__ void scale(float a, float* x) { x[threadIdx.x] *= a; }",
        "entry": "scale", "grid": [1], "block": [32],
        "args": [{"scalar": "f32", "value": 2.0},
                 {"buffer": "x", "dtype": "f32", "len": 32, "init": "random"}],
        "outputs": ["x"]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_only_where_allowed_and_refuses_other_commands() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::with_agents(1, 2)).await?;
    fleet.start_agent_with("runner", 2, &["--allow-exec", "/bin/echo"])?;
    fleet.wait_healthy_agents(2).await?;
    let client = fleet.client().await?;

    let ok = client
        .submit(JobSpec::new(
            "exec",
            json!({"command": "/bin/echo", "args": ["hello", "$USER"]}),
        ))
        .await?;
    let r = client.wait(&ok, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Succeeded, "{r:?}");
    assert_eq!(
        r.agent_id.as_deref(),
        Some("runner"),
        "only the allowing agent runs exec"
    );
    let out = r.result.unwrap_or_default();
    assert_eq!(out["stdout_tail"], "hello $USER\n");
    assert_eq!(out["exit_code"], 0);

    let refused = client
        .submit(JobSpec {
            max_attempts: Some(1),
            ..JobSpec::new("exec", json!({"command": "/bin/sh", "args": ["-c", "id"]}))
        })
        .await?;
    let r = client.wait(&refused, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Dead, "{r:?}");
    let error = r.error.unwrap_or_default();
    assert!(
        error.contains("/bin/sh is not an allowed command"),
        "{error}"
    );
    Ok(())
}

/// Whether process `pid` is alive: listed and not a zombie (an adopted
/// process stays listed until whoever adopted it reaps it).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_command_dies_with_its_agent() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::with_agents(1, 2)).await?;
    fleet.start_agent_with("runner", 2, &["--allow-exec", "/bin/sh"])?;
    fleet.wait_healthy_agents(2).await?;
    let pid_file = fleet.dir.path().join("exec.pid");
    let script = format!("echo $$ > {}; exec sleep 120", pid_file.display());
    fleet
        .client()
        .await?
        .submit(JobSpec::new(
            "exec",
            json!({"command": "/bin/sh", "args": ["-c", script]}),
        ))
        .await?;
    let command_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
    };
    wait_until(Duration::from_secs(20), "the command running", || async {
        Ok(command_pid().is_some_and(alive))
    })
    .await?;
    let Some(pid) = command_pid() else {
        anyhow::bail!("the pid file went away");
    };

    // The agent is killed outright: no code of its own runs.
    fleet.agents[1].kill9();
    wait_until(
        Duration::from_secs(10),
        "the command killed with its agent",
        || async { Ok(!alive(pid)) },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_jobs_never_reach_an_agent_without_a_gpu() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(2, 2)).await?;
    let client = fleet.client().await?;
    let ids = client
        .submit_many(vec![
            JobSpec::new("cuda.vector_add", json!({"n": 1024})),
            JobSpec::new("cuda.saxpy", json!({"n": 1024})),
            JobSpec::new("cuda.matmul", json!({"m": 64, "n": 64, "k": 64})),
            JobSpec::new("cuda.kernel", scale_kernel()),
        ])
        .await?;
    let sleep = client
        .submit(JobSpec::new("sleep", json!({"ms": 1})))
        .await?;
    client.wait(&sleep, Duration::from_secs(20)).await?;
    wait_until(Duration::from_secs(10), "the CUDA jobs parked", || async {
        Ok(fleet.stats().await?["unschedulable_jobs"] == 4)
    })
    .await?;
    for id in &ids {
        let job = fleet.job(id).await?;
        assert_eq!(job["state"], "queued", "{job}");
        assert_eq!(job["attempts"].as_array().map(Vec::len), Some(0), "{job}");
        let reason = job["unschedulable_reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("no live agent offers workload kind"),
            "{reason}"
        );
    }
    // The agents report no GPU and offer no CUDA kind.
    let stats = fleet.stats().await?;
    for a in stats["agents"].as_array().cloned().unwrap_or_default() {
        assert_eq!(a["gpus"].as_array().map(Vec::len), Some(0), "{a}");
        let kinds = a["kinds"].as_array().cloned().unwrap_or_default();
        assert!(
            kinds
                .iter()
                .all(|k| !k.as_str().unwrap_or("").starts_with("cuda.")),
            "{a}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_result_fails_the_attempt_with_a_clear_error() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(1, 2)).await?;
    let client = fleet.client().await?;
    // 600 KB of args echoed back: a legal submission, an oversized result.
    let big = "x".repeat(600 * 1024);
    let id = client
        .submit(JobSpec {
            max_attempts: Some(1),
            ..JobSpec::new("echo", json!({ "blob": big }))
        })
        .await?;
    let r = client.wait(&id, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Dead, "{:?}", r.error);
    let error = r.error.unwrap_or_default();
    assert!(error.contains("exceeds the 524288 byte limit"), "{error}");
    // The agent carries on.
    let next = client
        .submit(JobSpec::new("echo", json!({"ok": 1})))
        .await?;
    assert_eq!(
        client.wait(&next, Duration::from_secs(20)).await?.state,
        JobState::Succeeded
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_no_agent_could_run_are_refused_at_submission() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(1, 2)).await?;
    let nats = fleet.nats_client().await?;
    let mut rejections = nats.subscribe(subjects::REJECTED).await?;
    nats.flush().await?;
    let client = fleet.client().await?;

    let mut oversized = scale_kernel();
    oversized["args"][1]["len"] = json!(1u64 << 30); // 4 GiB of f32
    let bad = [
        (
            "no-source",
            "cuda.kernel",
            json!({"entry": "scale"}),
            "\"source\" (CUDA C) is required",
        ),
        (
            "huge-buffer",
            "cuda.kernel",
            oversized,
            "buffer x is over 1073741824 bytes",
        ),
        (
            "zero-k",
            "cuda.matmul",
            json!({"m": 8, "n": 8, "k": 0}),
            "\"k\" must be 1..=32768, got 0",
        ),
        (
            "relative",
            "exec",
            json!({"command": "rm", "args": ["-rf", "/"]}),
            "\"command\" (an absolute path) is required",
        ),
    ];
    let js = async_nats::jetstream::new(nats.clone());
    for (id, kind, args, why) in &bad {
        let spec = JobSpec {
            id: Some(id.to_string()),
            ..JobSpec::new(*kind, args.clone())
        };
        // The Rust client refuses it at once, submitting nothing...
        match client.submit(spec.clone()).await {
            Err(ClientError::Invalid { job_id, error }) => {
                assert_eq!(job_id, *id);
                assert_eq!(error.reason(), "bad_args");
                assert!(error.to_string().contains(why), "{error}");
            }
            other => anyhow::bail!("{id}: the client should refuse it, got {other:?}"),
        }
        // ...and a producer without that check meets the balancer's.
        js.publish(subjects::SUBMIT, serde_json::to_vec(&spec)?.into())
            .await?
            .await?;
    }
    // A good job behind them runs: nothing was queued in its way.
    let good = client
        .submit(JobSpec::new("echo", json!({"ok": true})))
        .await?;
    let r = client.wait(&good, Duration::from_secs(20)).await?;
    assert_eq!(r.state, JobState::Succeeded, "{r:?}");

    let mut seen = Vec::new();
    while seen.len() < bad.len() {
        let m = tokio::time::timeout(Duration::from_secs(10), rejections.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("rejection subscription ended"))?;
        seen.push(serde_json::from_slice::<Rejection>(&m.payload)?);
    }
    for (id, _, _, why) in &bad {
        let r = seen
            .iter()
            .find(|r| r.job_id.as_deref() == Some(*id))
            .ok_or_else(|| anyhow::anyhow!("no rejection of {id}: {seen:?}"))?;
        assert_eq!(r.reason, "bad_args", "{r:?}");
        assert!(r.error.contains(why), "{id}: {r:?}");
    }
    let stats = fleet.stats().await?;
    assert_eq!(stats["total_jobs_rejected"], bad.len(), "{stats}");
    assert_eq!(stats["queued_jobs"], 0, "{stats}");
    Ok(())
}
