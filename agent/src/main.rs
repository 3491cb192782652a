//! `fleet-agent`: runs the jobs the balancer assigns to it.
//!
//! The agent detects what it has ([`capabilities`]), registers, then serves
//! its own assignment subject ([`runner`]), heartbeating on the side
//! ([`heartbeat`]). Every report goes through JetStream ([`reporter`]), so
//! it waits for a balancer that is down. `fleet-agent selftest` checks the
//! local GPUs against a CPU reference ([`selftest`]).

mod capabilities;
mod config;
mod gpu;
mod heartbeat;
mod reporter;
mod runner;
mod selftest;
mod workloads;

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use fleet_protocol::{event::Register, subjects};

use crate::config::{Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    fleet_protocol::logging::init(config.log_format, "info");
    if let Some(Command::Selftest { json }) = config.command {
        let ok = selftest::run(json).await?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    run(config).await
}

async fn run(config: Config) -> anyhow::Result<()> {
    let agent_id = config.agent_id()?;
    let simulated = config.simulate_gpus.clone().map(|s| s.0);
    let capabilities = capabilities::detect(&config.tags, simulated);
    tracing::info!(
        agent_id = %agent_id,
        slots = config.slots,
        gpus = capabilities.gpus.len(),
        kinds = ?capabilities.kinds,
        "starting agent"
    );
    let nats = async_nats::ConnectOptions::new()
        .name(format!("fleet-agent {agent_id}"))
        .retry_on_initial_connect()
        .connect(&config.nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats_url))?;
    let reporter = reporter::Reporter::new(nats.clone(), agent_id.clone()).await?;
    let register = Register {
        agent_id: agent_id.clone(),
        incarnation: ulid::Ulid::new().to_string(),
        slots: config.slots,
        prefetch: config.prefetch,
        capabilities,
    };
    // Subscribe before registering: the first assignment may follow the
    // registration at once.
    let assignments = nats.subscribe(subjects::assign(&agent_id)).await?;
    let control = nats.subscribe(subjects::control(&agent_id)).await?;
    let runner = Arc::new(runner::Runner::new(
        register,
        reporter.clone(),
        workloads::Workloads::detect(!config.fault_no_timeouts),
    ));
    runner.register().await;
    tokio::spawn(heartbeat::run(
        runner.clone(),
        reporter.clone(),
        config.heartbeat_interval,
    ));
    tokio::spawn(runner.clone().serve_control(control));
    runner.serve_assignments(assignments).await;
    Ok(())
}
