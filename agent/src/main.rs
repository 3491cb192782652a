//! `fleet-agent`: runs the jobs the balancer assigns to it.
//!
//! The agent detects what it has ([`capabilities`]), registers, then serves
//! its own assignment subject ([`runner`]), heartbeating on the side
//! ([`heartbeat`]). Every report goes through JetStream ([`reporter`]), so
//! it waits for a balancer that is down. `--simulate N` runs N simulated
//! agents in one process for load tests ([`simulate`]), optionally with
//! agents crashing and joining as it runs ([`churn`]). Before any CUDA
//! call it finds CUDA's libraries ([`cuda_libraries`]). `fleet-agent
//! selftest` checks the local GPUs against a CPU reference ([`selftest`]);
//! `fleet-agent check-kernel` compiles a user's kernel without a GPU
//! ([`check_kernel`]).

mod capabilities;
mod check_kernel;
mod churn;
mod config;
mod cuda_libraries;
mod gpu;
mod heartbeat;
mod reporter;
mod runner;
mod selftest;
mod simulate;
mod telemetry;
mod workloads;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use fleet_protocol::{event::Register, subjects, Capabilities};
use tokio::task::{AbortHandle, JoinSet};

use crate::config::{Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    fleet_protocol::logging::init(config.log_format, "info");
    // Simulated agents never touch CUDA, so they need none of its
    // libraries.
    let simulated = config.simulate.is_some() || config.simulate_gpus.is_some();
    let libraries = if simulated && config.command.is_none() {
        Vec::new()
    } else {
        cuda_libraries::prepare(&cuda_libraries::search_dirs(&config.cuda_lib_dirs()))
    };
    match &config.command {
        Some(Command::Selftest { json }) => {
            let ok = selftest::run(*json, &libraries).await?;
            std::process::exit(if ok { 0 } else { 1 });
        }
        Some(Command::CheckKernel {
            file,
            entry,
            arch,
            output,
        }) => {
            let outcome = check_kernel::run(file, entry, arch.clone(), output.as_deref())?;
            std::process::exit(outcome.exit_code());
        }
        None => run(config).await,
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let agent_id = config.agent_id()?;
    let simulated = config.simulate_gpus.clone().map(|s| s.0);
    let exec = workloads::exec::ExecPolicy::new(config.allowed_commands(), config.exec_env.clone())
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
                config.gpu_overrun_grace,
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
    let launcher = Launcher {
        nats,
        js,
        slots: config.slots,
        prefetch: config.prefetch,
        capabilities,
        heartbeat_interval: config.heartbeat_interval,
        report_start_after: config.report_start_after,
    };
    let mut churn = config
        .simulate
        .and_then(|n| churn::Churn::new(&config.churn, n));
    let mut running = JoinSet::new();
    for (id, workloads) in agents {
        let task = launcher.start(&mut running, id.clone(), workloads);
        if let Some(churn) = churn.as_mut() {
            churn.joined(id, task);
        }
    }
    loop {
        tokio::select! {
            ended = running.join_next() => match ended {
                None => return Ok(()),
                Some(Ok(served)) => served?,
                // An agent crashed on purpose (churn).
                Some(Err(e)) if e.is_cancelled() => {}
                Some(Err(e)) => return Err(e.into()),
            },
            () = churn::next_step(&mut churn) => {
                if let Some(churn) = churn.as_mut() {
                    churn.step(|k| {
                        let id = format!("{agent_id}-{k}");
                        let sim = simulate::Simulation::for_agent(&config.sim, k);
                        let workloads = workloads::Workloads::simulated(sim);
                        (id.clone(), launcher.start(&mut running, id, workloads))
                    });
                }
            }
        }
    }
}

/// What every agent of this process shares, to start one more.
struct Launcher {
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    slots: u32,
    prefetch: u32,
    capabilities: Capabilities,
    heartbeat_interval: Duration,
    report_start_after: Duration,
}

impl Launcher {
    /// Starts agent `id` as a new incarnation; aborting the returned
    /// handle crashes it.
    fn start(
        &self,
        running: &mut JoinSet<anyhow::Result<()>>,
        id: String,
        workloads: workloads::Workloads,
    ) -> AbortHandle {
        let register = Register {
            agent_id: id,
            incarnation: ulid::Ulid::new().to_string(),
            slots: self.slots,
            prefetch: self.prefetch,
            capabilities: self.capabilities.clone(),
        };
        running.spawn(serve(
            self.nats.clone(),
            self.js.clone(),
            register,
            workloads,
            self.heartbeat_interval,
            self.report_start_after,
        ))
    }
}

/// Ends an agent's heartbeats, control subscription and jobs together
/// with its `serve` task: an aborted agent (a churn crash) must fall
/// silent at once, as a machine that lost power does.
struct Silence {
    runner: Arc<runner::Runner>,
    tasks: [AbortHandle; 2],
}

impl Drop for Silence {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.runner.halt();
    }
}

/// Runs one agent: subscribes, registers, heartbeats, and serves its
/// assignments until the connection ends.
async fn serve(
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    register: Register,
    workloads: workloads::Workloads,
    heartbeat_interval: Duration,
    report_start_after: Duration,
) -> anyhow::Result<()> {
    let agent_id = register.agent_id.clone();
    let reporter = reporter::Reporter::new(js, agent_id.clone());
    // Subscribe before registering: the first assignment may follow the
    // registration at once.
    let assignments = nats.subscribe(subjects::assign(&agent_id)).await?;
    let control = nats.subscribe(subjects::control(&agent_id)).await?;
    let runner = Arc::new(
        runner::Runner::new(register, reporter.clone(), workloads)
            .report_start_after(report_start_after),
    );
    runner.register().await;
    let _silence = Silence {
        tasks: [
            tokio::spawn(heartbeat::run(runner.clone(), reporter, heartbeat_interval))
                .abort_handle(),
            tokio::spawn(runner.clone().serve_control(control)).abort_handle(),
        ],
        runner: runner.clone(),
    };
    runner.serve_assignments(assignments).await;
    Ok(())
}
