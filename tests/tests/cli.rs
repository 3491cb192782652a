//! fleetctl against a real fleet: the producer and operator commands,
//! their exit codes, and their JSON.

use std::process::Output;
use std::time::Duration;

use fleet_tests::{binary, wait_until, Fleet, FleetConfig};
use serde_json::Value;

fn fleetctl(fleet: &Fleet, args: &[&str]) -> anyhow::Result<Output> {
    Ok(std::process::Command::new(binary("fleetctl")?)
        .args([
            "--nats-url",
            &fleet.nats.url(),
            "--balancer-url",
            &fleet.balancer_url(),
        ])
        .args(args)
        .output()?)
}

fn json_of(out: &Output) -> anyhow::Result<Value> {
    serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_work_end_to_end() -> anyhow::Result<()> {
    let fleet = Fleet::start(FleetConfig::with_agents(1, 2)).await?;

    let out = fleetctl(
        &fleet,
        &[
            "--json",
            "submit",
            "--kind",
            "sleep",
            "--args",
            r#"{"ms":5}"#,
            "--count",
            "20",
            "--wait",
        ],
    )?;
    assert!(out.status.success(), "{out:?}");
    let summary = json_of(&out)?;
    assert_eq!(summary["jobs"], 20);
    assert_eq!(summary["succeeded"], 20);

    let out = fleetctl(
        &fleet,
        &[
            "submit",
            "--kind",
            "flaky",
            "--args",
            r#"{"fail_attempts":9}"#,
            "--max-attempts",
            "2",
            "--id",
            "cli-doomed",
            "--wait",
        ],
    )?;
    assert_eq!(out.status.code(), Some(1), "a dead job exits 1: {out:?}");

    let out = fleetctl(&fleet, &["--json", "job", "cli-doomed"])?;
    let job = json_of(&out)?;
    assert_eq!(job["state"], "dead");
    assert_eq!(job["attempts"].as_array().map(Vec::len), Some(2), "{job}");
    let out = fleetctl(&fleet, &["job", "cli-doomed"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("attempt 2 on agent-0: failed"), "{text}");

    let out = fleetctl(&fleet, &["--json", "dead"])?;
    let dead = json_of(&out)?;
    assert_eq!(dead["dead"][0]["id"], "cli-doomed", "{dead}");

    let out = fleetctl(&fleet, &["retry", "cli-doomed"])?;
    assert!(out.status.success(), "{out:?}");
    wait_until(
        Duration::from_secs(20),
        "dead again after the retry",
        || async {
            Ok(fleet.job("cli-doomed").await?["attempts"]
                .as_array()
                .map(Vec::len)
                == Some(4))
        },
    )
    .await?;

    let out = fleetctl(
        &fleet,
        &[
            "--json",
            "submit",
            "--kind",
            "sleep",
            "--args",
            r#"{"ms":60000}"#,
            "--id",
            "cli-long",
        ],
    )?;
    assert!(out.status.success(), "{out:?}");
    let out = fleetctl(&fleet, &["cancel", "cli-long"])?;
    assert!(out.status.success(), "{out:?}");
    let out = fleetctl(&fleet, &["--json", "wait", "cli-long", "--timeout", "10s"])?;
    assert_eq!(json_of(&out)?["state"], "cancelled");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cancelled job is not a success"
    );

    let out = fleetctl(
        &fleet,
        &["--json", "jobs", "--state", "dead", "--limit", "5"],
    )?;
    let listed = json_of(&out)?;
    assert_eq!(listed["jobs"][0]["id"], "cli-doomed", "{listed}");
    let out = fleetctl(
        &fleet,
        &["--json", "jobs", "--state", "succeeded", "--limit", "7"],
    )?;
    assert_eq!(json_of(&out)?["jobs"].as_array().map(Vec::len), Some(7));
    let out = fleetctl(&fleet, &["jobs", "--state", "cancelled"])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli-long"));
    let out = fleetctl(&fleet, &["jobs", "--state", "sleeping"])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown state"));

    let out = fleetctl(&fleet, &["audit"])?;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("all invariants hold"));

    let out = fleetctl(&fleet, &["stats"])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("agent-0"));

    // Bad input and unreachable services: a clear message and a non-zero exit.
    let out = fleetctl(&fleet, &["submit", "--kind", "teleport"])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload kind"));
    let out = fleetctl(&fleet, &["job", "no-such-job"])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job no-such-job"));
    let out = std::process::Command::new(binary("fleetctl")?)
        .args([
            "--nats-url",
            "nats://127.0.0.1:9",
            "submit",
            "--kind",
            "echo",
        ])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to NATS"));
    let out = std::process::Command::new(binary("fleetctl")?)
        .args(["--balancer-url", "http://127.0.0.1:9", "stats"])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the balancer"));
    Ok(())
}

/// `fleetctl bench` in smoke mode over simulated agents: every job ends,
/// none is lost, and the report has its figures (no speed asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_over_simulated_agents() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.start_agent_with(
        "sim",
        2,
        &[
            "--simulate",
            "20",
            "--sim-fail-rate",
            "0.2",
            "--sim-speed-spread",
            "0.5",
        ],
    )?;
    fleet.wait_healthy_agents(20).await?;
    let html_path = fleet.dir.path().join("bench-report.html");
    let out = fleetctl(
        &fleet,
        &[
            "--json",
            "bench",
            "--jobs",
            "500",
            "--args",
            r#"{"ms":2}"#,
            "--priority-mix",
            "low:1,high:1",
            "--report",
            &html_path.to_string_lossy(),
        ],
    )?;
    let report = json_of(&out)?;
    let html = std::fs::read_to_string(&html_path)?;
    assert!(
        html.contains("<svg") && html.contains("fleet bench"),
        "the HTML report was written"
    );
    assert!(
        html.contains("500 jobs"),
        "{}",
        &html[..html.len().min(500)]
    );
    assert_eq!(report["jobs"], 500, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    let ended = report["succeeded"].as_u64().unwrap_or(0) + report["dead"].as_u64().unwrap_or(0);
    assert_eq!(ended, 500, "{report}");
    assert!(report["agents_used"].as_u64() > Some(10), "{report}");
    // One kind here; its count and outcomes, as the whole run's.
    assert_eq!(report["per_kind"]["sleep"]["jobs"], 500, "{report}");
    assert_eq!(
        report["per_kind"]["sleep"]["succeeded"], report["succeeded"],
        "{report}"
    );
    for key in [
        "assign_latency_ms",
        "start_latency_ms",
        "e2e_latency_ms",
        "queue_wait_ms",
    ] {
        for q in ["p50", "p99", "max"] {
            assert!(report[key][q].is_number(), "{key}.{q} in {report}");
        }
    }
    let stats = fleet.stats().await?;
    assert!(
        stats["total_failed_attempts"].as_i64() > Some(0),
        "simulated failures happened"
    );
    let audit = fleet.audit().await?;
    assert_eq!(audit["ok"], true, "{audit}");
    Ok(())
}

#[test]
fn submit_refuses_a_job_the_balancer_would_reject_before_connecting() -> anyhow::Result<()> {
    // Nothing listens on port 1: the refusal must come before any
    // connection is tried.
    let out = std::process::Command::new(binary("fleetctl")?)
        .args(["--nats-url", "nats://127.0.0.1:1", "submit", "--kind"])
        .args(["cuda.kernel", "--args", r#"{"entry": "k"}"#])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 2: bad input, as an unreachable NATS would also give; the message
    // tells them apart.
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr.contains("the job would be rejected"), "{stderr}");
    assert!(!stderr.contains("cannot connect"), "{stderr}");
    assert!(stderr.contains("source"), "names what is missing: {stderr}");
    Ok(())
}
