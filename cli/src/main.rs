//! `fleetctl`: submit jobs, wait for them, and look at the fleet.
//!
//! Producer commands (`submit`, `wait`) talk to NATS through
//! [`fleet_client::Client`]; operator commands (`job`, `stats`, `agents`,
//! `cancel`, `retry`, `dead`, `drain`, `undrain`, `audit`) use the
//! balancer's HTTP API. Every command takes `--json` for scripts.

mod balancer_api;
mod commands;

use std::time::Duration;

use clap::{Parser, Subcommand};
use commands::lifecycle::Action;
use fleet_client::NatsOptions;
use fleet_protocol::{defaults, JobState};

/// The `--help` heading of the flags that say how to reach the balancer,
/// listed after the command's own options.
const BALANCER_HEADING: &str = "Balancer connection";

/// fleetctl: the fleet producer and operator command line.
#[derive(Debug, Parser)]
#[command(name = "fleetctl", version, about)]
pub struct Cli {
    /// NATS URL, credentials and TLS.
    #[command(flatten)]
    pub nats: NatsOptions,

    /// Balancer HTTP URL.
    #[arg(long, global = true, help_heading = BALANCER_HEADING, env = "FLEET_BALANCER_URL", default_value = defaults::BALANCER_URL)]
    pub balancer_url: String,

    /// The balancer's admin token, for cancel, retry, drain and undrain.
    #[arg(long, global = true, help_heading = BALANCER_HEADING, env = "FLEET_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit one job, or --count of them.
    Submit(commands::submit::SubmitArgs),
    /// Wait for a job's result.
    Wait {
        /// The job id.
        id: String,
        /// How long to wait.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Show one job: state, attempts, result.
    Job {
        /// The job id.
        id: String,
    },
    /// Show the fleet's stats document.
    Stats {
        /// Refresh in place until interrupted.
        #[arg(long)]
        watch: bool,
        /// How often --watch refreshes.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// List jobs, optionally in one state.
    Jobs {
        /// queued, assigned, running, succeeded, dead or cancelled.
        #[arg(long, value_parser = parse_state)]
        state: Option<JobState>,
        /// How many to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// Re-queue a dead-lettered or cancelled job.
    Retry {
        /// The job id.
        id: String,
    },
    /// List dead-lettered jobs, newest first.
    Dead {
        /// How many to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Check every job against fleet's invariants; non-zero exit on a breach.
    Audit,
    /// List agents: health, load, GPUs, draining.
    Agents,
    /// Drive the fleet with a workload and report throughput and latency.
    Bench(commands::bench::BenchArgs),
    /// Stop new assignments to an agent; its running jobs finish.
    Drain {
        /// The agent id.
        id: String,
    },
    /// Let a drained agent take new jobs again.
    Undrain {
        /// The agent id.
        id: String,
    },
}

/// `--state`, checked before anything is asked of the balancer.
fn parse_state(s: &str) -> Result<JobState, String> {
    JobState::parse(s).ok_or_else(|| {
        format!("unknown state {s:?}: queued, assigned, running, succeeded, dead or cancelled")
    })
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    fleet_runtime::logging::init(fleet_runtime::logging::LogFormat::Text, "warn");
    let outcome = match &cli.command {
        Command::Submit(args) => commands::submit::run(&cli, args).await,
        Command::Wait { id, timeout } => commands::wait::run(&cli, id, *timeout).await,
        Command::Job { id } => commands::job::run(&cli, id).await,
        Command::Stats { watch, interval } => commands::stats::run(&cli, *watch, *interval).await,
        Command::Jobs { state, limit } => commands::job::list(&cli, *state, *limit).await,
        Command::Cancel { id } => commands::lifecycle::run(&cli, id, Action::Cancel).await,
        Command::Retry { id } => commands::lifecycle::run(&cli, id, Action::Retry).await,
        Command::Dead { limit } => commands::dead::run(&cli, *limit).await,
        Command::Audit => commands::audit::run(&cli).await,
        Command::Agents => commands::agents::run(&cli).await,
        Command::Bench(args) => commands::bench::run(&cli, args).await,
        Command::Drain { id } => commands::agents::drain(&cli, id, true).await,
        Command::Undrain { id } => commands::agents::drain(&cli, id, false).await,
    };
    match outcome {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("fleetctl: {e:#}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod command_line_tests {
    use clap::CommandFactory;

    /// clap checks flag names and ids for clashes only when asked (or in a
    /// debug build at run time); flattened option groups make that easy
    /// to miss.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
