//! `fleet-agent`: runs the jobs the balancer assigns to it.
//!
//! The agent detects what it has ([`capabilities`]), registers, then serves
//! its own assignment subject ([`runner`]), heartbeating on the side
//! ([`heartbeat`]). Every report goes through JetStream ([`reporter`]), so
//! it waits for a balancer that is down. `--simulate N` runs N simulated
//! agents in one process for load tests ([`simulate`]). `fleet-agent selftest` checks the
//! local GPUs against a CPU reference ([`selftest`]).

mod capabilities;
mod config;
mod gpu;
mod heartbeat;
mod reporter;
mod runner;
mod selftest;
mod simulate;
mod telemetry;
mod workloads;

use std::sync::Arc;

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
    let exec = workloads::exec::ExecPolicy::new(config.allow_exec.clone(), config.exec_env.clone())
        .map_err(anyhow::Error::msg)?;
    let mut capabilities = capabilities::detect(&config.tags, simulated, exec.enabled());
    if config.benchmark_on_start && config.simulate_gpus.is_none() && !capabilities.gpus.is_empty()
    {
        let mut gpus = std::mem::take(&mut capabilities.gpus);
        gpus = tokio::task::spawn_blocking(move || {
            capabilities::benchmark(&mut gpus);
            gpus
        })
        .await?;
        capabilities.gpus = gpus;
    }
    // Replies (JetStream acks) come to an inbox under the agent's own id,
    // so the server can let each agent read only its own (deploy/nats.conf).
    let options = config
        .nats
        .connect_options()
        .await?
        .name(format!("fleet-agent {agent_id}"))
        .custom_inbox_prefix(subjects::agent_inbox_prefix(&agent_id))
        .retry_on_initial_connect();
    let nats = config.nats.connect_with(options).await?;
    let js = reporter::events_context(nats.clone()).await;

    // One agent, or N simulated ones sharing this process and connection.
    let agents: Vec<(String, workloads::Workloads)> = match config.simulate {
        None => vec![(
            agent_id.clone(),
            workloads::Workloads::detect(
                !config.fault_no_timeouts,
                exec.clone(),
                config.simulate_gpus.is_none(),
            ),
        )],
        Some(n) => (0..n)
            .map(|k| {
                let sim = simulate::Simulation::for_agent(&config.sim, k);
                (
                    format!("{agent_id}-{k}"),
                    workloads::Workloads::simulated(sim),
                )
            })
            .collect(),
    };
    tracing::info!(
        agents = agents.len(),
        slots = config.slots,
        prefetch = config.prefetch,
        gpus = capabilities.gpus.len(),
        kinds = ?capabilities.kinds,
        "starting"
    );
    let mut running = tokio::task::JoinSet::new();
    for (id, workloads) in agents {
        let register = Register {
            agent_id: id,
            incarnation: ulid::Ulid::new().to_string(),
            slots: config.slots,
            prefetch: config.prefetch,
            capabilities: capabilities.clone(),
        };
        running.spawn(serve(
            nats.clone(),
            js.clone(),
            register,
            workloads,
            config.heartbeat_interval,
        ));
    }
    while let Some(ended) = running.join_next().await {
        ended??;
    }
    Ok(())
}

/// Runs one agent: subscribes, registers, heartbeats, and serves its
/// assignments until the connection ends.
async fn serve(
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    register: Register,
    workloads: workloads::Workloads,
    heartbeat_interval: std::time::Duration,
) -> anyhow::Result<()> {
    let agent_id = register.agent_id.clone();
    let reporter = reporter::Reporter::new(js, agent_id.clone());
    // Subscribe before registering: the first assignment may follow the
    // registration at once.
    let assignments = nats.subscribe(subjects::assign(&agent_id)).await?;
    let control = nats.subscribe(subjects::control(&agent_id)).await?;
    let runner = Arc::new(runner::Runner::new(register, reporter.clone(), workloads));
    runner.register().await;
    tokio::spawn(heartbeat::run(runner.clone(), reporter, heartbeat_interval));
    tokio::spawn(runner.clone().serve_control(control));
    runner.serve_assignments(assignments).await;
    Ok(())
}
