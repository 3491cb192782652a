//! Workloads through the whole fleet: `exec` only where the operator
//! allowed it, with a clear error for what it did not allow, and CUDA
//! kinds never sent to an agent without a GPU.

use std::time::Duration;

use fleet_protocol::{JobSpec, JobState};
use fleet_tests::{wait_until, Fleet, FleetConfig};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_only_where_allowed_and_refuses_other_commands() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::with_agents(1, 2)).await?;
    fleet.start_agent_with("runner", 2, &["--allow-exec", "/bin/echo"])?;
    wait_until(Duration::from_secs(20), "both agents", || async {
        Ok(fleet.stats().await?["healthy_agents"] == 2)
    })
    .await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_jobs_never_reach_an_agent_without_a_gpu() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(2, 2)).await?;
    let client = fleet.client().await?;
    let ids = client
        .submit_many(
            [
                "cuda.vector_add",
                "cuda.saxpy",
                "cuda.matmul",
                "cuda.kernel",
            ]
            .into_iter()
            .map(|k| JobSpec::new(k, json!({"n": 1024})))
            .collect(),
        )
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
