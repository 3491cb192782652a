//! The agent's command line, with `FLEET_*` environment fallbacks.

use std::time::Duration;

use clap::{Parser, Subcommand};
use fleet_client::NatsOptions;
use fleet_runtime::logging::LogFormat;

/// fleet-agent: runs jobs the fleet balancer assigns to this machine.
#[derive(Debug, Parser)]
#[command(name = "fleet-agent", version, about)]
pub struct Config {
    /// NATS URL, credentials and TLS.
    #[command(flatten)]
    pub nats: NatsOptions,

    /// This agent's id: one token of [A-Za-z0-9_-]. Defaults to the host name.
    #[arg(long, env = "FLEET_AGENT_ID")]
    pub id: Option<String>,

    /// How many jobs run at once.
    #[arg(long, env = "FLEET_SLOTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub slots: u32,

    /// Assigned jobs to hold beyond the slots, not yet started, so the
    /// next job is on hand when a slot frees.
    #[arg(long, env = "FLEET_PREFETCH", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub prefetch: u32,

    /// Tags the balancer can match jobs against (model families, pools).
    #[arg(long, env = "FLEET_TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,

    /// How often to report liveness and running jobs.
    #[arg(long, env = "FLEET_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// Publish `started` only for jobs still running this long after they
    /// began: a shorter job is reported by its completion alone, one
    /// persisted message fewer. `0s`: always report starts at once.
    #[arg(long, env = "FLEET_REPORT_START_AFTER", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub report_start_after: Duration,

    /// Absolute paths of programs `exec` jobs may run (none: no `exec`).
    #[arg(long, env = "FLEET_ALLOW_EXEC", value_delimiter = ',', value_parser = path_or_empty)]
    pub allow_exec: Vec<std::path::PathBuf>,

    /// Environment variables passed through to `exec` jobs (all others
    /// are cleared).
    #[arg(long, env = "FLEET_EXEC_ENV", value_delimiter = ',')]
    pub exec_env: Vec<String>,

    /// How long a CUDA job may keep its GPU busy after its attempt timed
    /// out or was cancelled (CUDA work cannot be interrupted) before the
    /// agent exits with status 75 so the driver frees the GPU; its
    /// supervisor restarts it. Meanwhile that GPU refuses new jobs.
    #[arg(long, env = "FLEET_GPU_OVERRUN_GRACE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub gpu_overrun_grace: Duration,

    /// On SIGTERM or SIGINT the agent asks for no new jobs and finishes
    /// what it holds; jobs still held after this long are stopped and
    /// handed back (failed attempts, re-queued at once). A second signal
    /// stops everything at once.
    #[arg(long, env = "FLEET_STOP_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub stop_grace: Duration,

    /// Measure each GPU (f16 GEMM TFLOP/s, memory GB/s) before
    /// registering, so the balancer's speed score starts from a measurement.
    #[arg(long, env = "FLEET_BENCHMARK_ON_START")]
    pub benchmark_on_start: bool,

    /// Pretend to have these GPUs ("NAME:MEM:CC,…", e.g.
    /// "H100:80GiB:9.0,RTX4090:24GiB:8.9"), for placement tests without
    /// hardware. Simulated GPUs run no CUDA work.
    #[arg(long, env = "FLEET_SIMULATE_GPUS", value_parser = SimulatedGpus::parse)]
    pub simulate_gpus: Option<SimulatedGpus>,

    /// Run N simulated agents in this process (ids `<id>-0` … `<id>-(N-1)`),
    /// each a full NATS participant, whose jobs only take time. With
    /// --churn-interval, agents crash and new ones join as it runs.
    #[arg(long, env = "FLEET_SIMULATE", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub simulate: Option<u32>,

    #[command(flatten)]
    pub sim: crate::simulate::SimArgs,

    #[command(flatten)]
    pub churn: crate::churn::ChurnArgs,

    /// Fault injection for tests: never time jobs out here, leaving it to
    /// the balancer's lease (as if the agent hung).
    #[arg(long, hide = true)]
    pub fault_no_timeouts: bool,

    /// Log format: text or json.
    #[arg(long, env = "FLEET_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Directories holding CUDA's libraries (NVRTC, cuBLAS, the driver),
    /// searched before the usual places when the loader's path lacks them
    /// (FLEET_CUDA_LIB_DIRS is ':'-separated).
    #[arg(
        long = "cuda-lib-dir",
        env = "FLEET_CUDA_LIB_DIRS",
        value_delimiter = ':',
        global = true,
        value_parser = path_or_empty
    )]
    pub cuda_lib_dirs: Vec<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A path, where an empty one (an environment file's `FLEET_X=`) means
/// none rather than clap's "a value is required"; users drop empty ones.
fn path_or_empty(s: &str) -> Result<std::path::PathBuf, std::convert::Infallible> {
    Ok(std::path::PathBuf::from(s))
}

/// The GPUs `--simulate-gpus` declares (one flag value, many GPUs).
#[derive(Debug, Clone)]
pub struct SimulatedGpus(pub Vec<fleet_protocol::GpuInfo>);

impl SimulatedGpus {
    fn parse(spec: &str) -> Result<SimulatedGpus, String> {
        fleet_protocol::capabilities::parse_simulated_gpus(spec).map(SimulatedGpus)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every CUDA workload on each local GPU and check it against the CPU.
    Selftest {
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Compile a CUDA C kernel with this machine's NVRTC, as a `cuda.kernel`
    /// job would, and say whether it compiles and defines its entry point
    /// (no GPU needed). Exit status 1 when it does not, 2 without NVRTC.
    CheckKernel {
        /// The kernel's CUDA C source file.
        file: std::path::PathBuf,
        /// The `extern "C"` kernel the job would launch.
        #[arg(long)]
        entry: String,
        /// The architecture to compile for: sm_90 for machine code,
        /// compute_90 for PTX (default: what a job on the first local GPU
        /// would get, else NVRTC's default PTX).
        #[arg(long)]
        arch: Option<String>,
        /// Write the compiled PTX or cubin here.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

impl Config {
    /// The programs `exec` jobs may run, less empty entries.
    pub fn allowed_commands(&self) -> Vec<std::path::PathBuf> {
        without_empty(&self.allow_exec)
    }

    /// The operator's CUDA library directories, less empty entries.
    pub fn cuda_lib_dirs(&self) -> Vec<std::path::PathBuf> {
        without_empty(&self.cuda_lib_dirs)
    }

    /// The agent id, from `--id` or the host name.
    pub fn agent_id(&self) -> anyhow::Result<String> {
        let id = match &self.id {
            Some(id) => id.clone(),
            None => hostname_id(),
        };
        fleet_protocol::is_valid_token(&id)
            .map_err(|e| anyhow::anyhow!("invalid agent id {id:?}: {e}"))?;
        Ok(id)
    }
}

fn without_empty(paths: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    paths
        .iter()
        .filter(|p| !p.as_os_str().is_empty())
        .cloned()
        .collect()
}

/// The host name, with every character outside the id alphabet replaced.
fn hostname_id() -> String {
    let raw = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "agent".to_string());
    let id: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(fleet_protocol::ids::MAX_ID_LEN)
        .collect();
    if id.is_empty() {
        "agent".to_string()
    } else {
        id
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
        super::Config::command().debug_assert();
    }

    /// An environment file's `FLEET_CUDA_LIB_DIRS=` means no directory,
    /// not an agent that refuses to start.
    #[test]
    fn empty_path_lists_mean_none() {
        use clap::Parser;
        let config = super::Config::try_parse_from([
            "fleet-agent",
            "--cuda-lib-dir",
            "",
            "--allow-exec",
            "",
        ]);
        let config = config.map_err(|e| e.to_string());
        assert!(config.is_ok(), "{config:?}");
        if let Ok(config) = config {
            assert!(config.cuda_lib_dirs().is_empty());
            assert!(config.allowed_commands().is_empty());
        }
        let config = super::Config::try_parse_from(["fleet-agent", "--cuda-lib-dir", "/a::/b"])
            .map_err(|e| e.to_string());
        assert_eq!(
            config.map(|c| c.cuda_lib_dirs()),
            Ok(vec!["/a".into(), "/b".into()])
        );
    }
}
