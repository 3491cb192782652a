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
//!
//! SIGTERM or SIGINT stops it gracefully: it asks the balancer for no new
//! jobs, finishes what it holds within `--stop-grace`, hands back the
//! rest, and exits 0. A second signal stops it at once.

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
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use crate::config::{Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    fleet_runtime::logging::init(config.log_format, "info");
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
        None => {
            let outcome = run(config).await;
            // Nothing of this process's work may outlive it: exec jobs'
            // process groups go, and a CUDA call still running must not
            // hold up the exit (the runtime would wait for it).
            workloads::process_groups::LIVE.kill_all();
            if let Err(e) = outcome {
                eprintln!("Error: {e:?}");
                std::process::exit(1);
            }
            std::process::exit(0);
        }
    }
}

/// How long past its stop grace a stopping agent may take to hand jobs
/// back and store their events before the process ends regardless (NATS
/// may be gone: `scripts/fleet-down` stops everything together).
const STOP_SLACK: Duration = Duration::from_secs(10);

/// Turns the first SIGTERM or SIGINT into a stop request for every agent
/// of this process; the second, or the stop grace plus [`STOP_SLACK`]
/// running out, ends the process at once.
fn stop_on_signals(grace: Duration) -> anyhow::Result<watch::Receiver<bool>> {
    let mut signals = fleet_runtime::stop_signals::StopSignals::install()?;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        signals.next().await;
        tracing::warn!(
            "stopping: no new jobs; finishing what is held (a second signal stops at once)"
        );
        let _ = stop.send(true);
        tokio::select! {
            () = signals.next() => tracing::warn!("second signal: stopping at once"),
            () = tokio::time::sleep(grace + STOP_SLACK) => {
                tracing::error!("still stopping past the grace: stopping at once");
            }
        }
        let killed = workloads::process_groups::LIVE.kill_all();
        tracing::warn!(killed, "exec jobs killed; exiting");
        std::process::exit(1);
    });
    Ok(stopped)
}

/// Resolves once a stop was requested.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        // No one can ask any more.
        std::future::pending::<()>().await;
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
        stop: stop_on_signals(config.stop_grace)?,
        stop_grace: config.stop_grace,
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
    /// Becomes true when the process is asked to stop.
    stop: watch::Receiver<bool>,
    stop_grace: Duration,
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
            Timing {
                heartbeat_interval: self.heartbeat_interval,
                report_start_after: self.report_start_after,
                stop_grace: self.stop_grace,
            },
            self.stop.clone(),
        ))
    }
}

/// Ends an agent's heartbeats, control subscription and jobs together
/// with its `serve` task: an aborted agent (a churn crash) must fall
/// silent at once, as a machine that lost power does.
struct Silence {
    runner: Arc<runner::Runner>,
    tasks: [AbortHandle; 3],
}

impl Drop for Silence {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.runner.halt();
    }
}

/// An agent's intervals and limits.
struct Timing {
    heartbeat_interval: Duration,
    report_start_after: Duration,
    stop_grace: Duration,
}

/// Runs one agent: subscribes, registers, heartbeats, and serves its
/// assignments until the connection ends or it is stopped.
async fn serve(
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    register: Register,
    workloads: workloads::Workloads,
    timing: Timing,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let agent_id = register.agent_id.clone();
    let reporter = reporter::Reporter::new(js, agent_id.clone());
    // Subscribe before registering: the first assignment may follow the
    // registration at once.
    let assignments = nats.subscribe(subjects::assign(&agent_id)).await?;
    let control = nats.subscribe(subjects::control(&agent_id)).await?;
    let runner = Arc::new(
        runner::Runner::new(register, reporter.clone(), workloads)
            .report_start_after(timing.report_start_after),
    );
    runner.register().await;
    // Assignments are served until the very end, also while stopping:
    // one already on its way when the balancer learned of the stop is
    // still taken and run.
    let mut assigned = tokio::spawn(runner.clone().serve_assignments(assignments));
    let _silence = Silence {
        tasks: [
            tokio::spawn(heartbeat::run(
                runner.clone(),
                reporter,
                timing.heartbeat_interval,
            ))
            .abort_handle(),
            tokio::spawn(runner.clone().serve_control(control)).abort_handle(),
            assigned.abort_handle(),
        ],
        runner: runner.clone(),
    };
    tokio::select! {
        ended = &mut assigned => {
            ended?;
            return Ok(());
        }
        () = stop_requested(&mut stop) => {}
    }
    let agent_id = runner.agent_id().to_string();
    tracing::info!(agent_id = %agent_id, held = runner.held(), grace = ?timing.stop_grace, "stopping: asking for no new jobs");
    runner.stop();
    if tokio::time::timeout(timing.stop_grace, runner.until_idle())
        .await
        .is_err()
    {
        runner
            .hand_back(&format!(
                "agent {agent_id} stopped: the job was still running after its {:?} stop grace",
                timing.stop_grace
            ))
            .await;
        // Jobs that were finishing send their own terminal events.
        let _ = tokio::time::timeout(Duration::from_secs(5), runner.until_idle()).await;
    }
    tracing::info!(agent_id = %agent_id, "stopped");
    Ok(())
}
