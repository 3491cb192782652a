//! The balancer's command line, with `FLEET_*` environment fallbacks.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use fleet_client::NatsOptions;
use fleet_protocol::defaults;
use fleet_runtime::logging::LogFormat;

use crate::scheduling::policy::{Policy, Weights};
use crate::state::RedisOptions;

/// fleet-balancer: places queued jobs on agents and keeps their state in Redis.
#[derive(Debug, Clone, Parser)]
#[command(name = "fleet-balancer", version, about)]
pub struct Config {
    /// NATS URL, credentials and TLS.
    #[command(flatten)]
    pub nats: NatsOptions,

    /// Redis URL, credentials and TLS.
    #[command(flatten)]
    pub redis: RedisOptions,

    /// Address for the stats API and health check.
    #[arg(long, env = "FLEET_HTTP_ADDR", default_value = defaults::HTTP_ADDR)]
    pub http_addr: SocketAddr,

    /// Bearer token the HTTP API's state-changing routes (cancel, retry,
    /// drain, undrain) require; unset: they are open.
    #[arg(long, env = "FLEET_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// An agent silent this long is unhealthy and gets no new jobs.
    #[arg(long, env = "FLEET_HEARTBEAT_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub heartbeat_timeout: Duration,

    /// How long an agent has to confirm it started an assigned job.
    #[arg(long, env = "FLEET_ACCEPT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub accept_timeout: Duration,

    /// A running job's lease lasts its timeout times this factor.
    #[arg(long, env = "FLEET_JOB_TIMEOUT_BUFFER", default_value_t = defaults::JOB_TIMEOUT_BUFFER)]
    pub job_timeout_buffer: f64,

    /// Attempts per job when the producer does not say.
    #[arg(long, env = "FLEET_MAX_ATTEMPTS", default_value_t = defaults::MAX_ATTEMPTS)]
    pub max_attempts: u32,

    /// Stop pulling submissions while more than this many jobs are queued.
    #[arg(long, env = "FLEET_MAX_QUEUED", default_value_t = defaults::MAX_QUEUED)]
    pub max_queued: u64,

    /// Period of the housekeeping tick (re-checks agent health).
    #[arg(long, env = "FLEET_SWEEP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,

    /// Placement policy: composite (scores availability, success rate,
    /// speed, affinity and heat), round-robin, weighted-round-robin,
    /// least-loaded or fastest.
    #[arg(long, env = "FLEET_POLICY", default_value = "composite", value_parser = crate::scheduling::policy::NAMES)]
    pub policy: String,

    /// Weights of the composite score: availability,success,speed.
    #[arg(long, env = "FLEET_SCORE_WEIGHTS", default_value = "0.5,0.3,0.2", value_parser = Weights::parse)]
    pub score_weights: Weights,

    /// How long a finished job (succeeded, dead or cancelled) stays
    /// readable before Redis deletes it, e.g. `7d`; its id may be used
    /// again after that. Default: kept forever.
    #[arg(long, env = "FLEET_RETAIN_FINISHED", value_parser = positive_duration)]
    pub retain_finished: Option<Duration>,

    /// An agent dead for this long, holding nothing, is forgotten: it
    /// leaves the agent list, the stats and /metrics, and its records are
    /// deleted (it registers as new if it comes back).
    #[arg(long, env = "FLEET_FORGET_AGENTS_AFTER", default_value = "24h", value_parser = positive_duration)]
    pub forget_agents_after: Duration,

    /// A queued job no live agent can run is dead-lettered after this long.
    #[arg(long, env = "FLEET_UNSCHEDULABLE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub unschedulable_timeout: Duration,

    /// Extra model-family patterns for affinity, PATTERN=FAMILY (a
    /// substring of the job's `model` argument); repeatable.
    #[arg(
        long = "model-family",
        env = "FLEET_MODEL_FAMILIES",
        value_delimiter = ','
    )]
    pub model_families: Vec<String>,

    /// This balancer's name in the leadership lease (default: `balancer-<ULID>`).
    #[arg(long, env = "FLEET_BALANCER_ID", default_value_t = format!("balancer-{}", ulid::Ulid::new()))]
    pub balancer_id: String,

    /// The leadership lease's lifetime: a standby takes over within about
    /// this long after the leader dies.
    #[arg(long, env = "FLEET_LEADER_TTL", default_value = "3s", value_parser = humantime::parse_duration)]
    pub leader_ttl: Duration,

    /// Log format: text or json.
    #[arg(long, env = "FLEET_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// A fresh instance of the configured placement policy.
    pub fn policy(&self) -> anyhow::Result<Box<dyn Policy>> {
        crate::scheduling::policy::by_name(&self.policy, self.score_weights)
            .ok_or_else(|| anyhow::anyhow!("unknown policy {:?}", self.policy))
    }
}

/// A duration above zero (`0s` would delete every job as it finishes;
/// leaving the flag out keeps them forever).
fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be above zero; leave it out to keep jobs forever".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
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

    #[test]
    fn a_zero_retention_is_refused() {
        assert!(super::positive_duration("0s").is_err());
        assert_eq!(
            super::positive_duration("7d"),
            Ok(std::time::Duration::from_secs(7 * 86_400))
        );
    }
}
