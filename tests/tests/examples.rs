//! The producer examples against a real fleet: the Python one (nats-py
//! and the documented JSON only) and the Rust one (`fleet_client::Client`).

use std::path::Path;
use std::process::Command;

use fleet_tests::{bin_dir, Fleet, FleetConfig};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_producer_submits_and_waits() -> anyhow::Result<()> {
    let python = std::env::var("FLEET_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo().join(".tools/venv/bin/python"));
    if !python.exists() {
        eprintln!(
            "SKIPPED: no {} (scripts/install-servers makes it)",
            python.display()
        );
        return Ok(());
    }
    let fleet = Fleet::start(FleetConfig::with_agents(1, 4)).await?;
    let out = Command::new(&python)
        .arg(repo().join("examples/python/producer.py"))
        .args(["--nats-url", &fleet.nats.url(), "--count", "5"])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 5, "{stdout}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["state"], "succeeded", "{l}");
        assert_eq!(l["result"]["from"], "python", "{l}");
        assert_eq!(l["result"]["n"], i, "{l}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_producer_submits_and_waits() -> anyhow::Result<()> {
    let example = bin_dir()?.join("examples/producer");
    anyhow::ensure!(
        example.exists(),
        "{} not built (cargo test builds examples)",
        example.display()
    );
    let fleet = Fleet::start(FleetConfig::with_agents(1, 4)).await?;
    let out = Command::new(example)
        .args([fleet.nats.url(), "4".to_string()])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains("Succeeded")).count(),
        4,
        "{stdout}"
    );
    Ok(())
}
