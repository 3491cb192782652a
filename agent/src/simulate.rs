//! Simulated agents for load tests: `fleet-agent --simulate N` runs N
//! agents in one process, each with its own id, subjects, heartbeats and
//! events, whose jobs only take time (and fail at a set rate).
//!
//! Each simulated agent gets a speed factor: `--sim-speed` spread by up to
//! ±`--sim-speed-spread` across the agents (deterministically by index),
//! so a fleet has fast and slow members for the policies to tell apart. A
//! job takes its `ms` argument (or `--sim-duration-ms`) times the factor.

use std::time::Duration;

use clap::Args;
use fleet_protocol::Assignment;
use serde_json::{json, Value};

/// The `--sim-*` flags.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Every simulated job takes this long (before the speed factor),
    /// instead of its own `ms` argument.
    #[arg(long)]
    pub sim_duration_ms: Option<u64>,

    /// Share of simulated attempts that fail (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub sim_fail_rate: f64,

    /// Time factor of the simulated agents (2.0 = twice as slow).
    #[arg(long, default_value_t = 1.0, value_parser = parse_positive)]
    pub sim_speed: f64,

    /// Spread of the time factor across simulated agents (0.5 = ±50%).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub sim_speed_spread: f64,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number from 0 to 1")),
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// One simulated agent's behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub time_factor: f64,
    pub duration_ms: Option<u64>,
    pub fail_rate: f64,
}

impl Simulation {
    /// The simulation of agent number `k`: its factor is spread evenly
    /// over [speed × (1 − spread), speed × (1 + spread)] by a fixed
    /// shuffle of `k`, so runs are repeatable.
    pub fn for_agent(args: &SimArgs, k: u32) -> Simulation {
        let position = f64::from(mix(u64::from(k)) as u32) / f64::from(u32::MAX);
        let time_factor = args.sim_speed * (1.0 + args.sim_speed_spread * (2.0 * position - 1.0));
        Simulation {
            time_factor: time_factor.max(0.01),
            duration_ms: args.sim_duration_ms,
            fail_rate: args.sim_fail_rate,
        }
    }

    /// "Runs" an assignment: waits, then succeeds or fails as drawn from
    /// the job id and attempt (the same draw on every run).
    pub async fn run(&self, a: &Assignment) -> Result<Value, String> {
        let base = self
            .duration_ms
            .or_else(|| a.args.get("ms").and_then(Value::as_u64))
            .unwrap_or(0);
        let ms = (base as f64 * self.time_factor).round() as u64;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let draw = mix(hash(&a.job_id) ^ u64::from(a.attempt)) as f64 / u64::MAX as f64;
        if draw < self.fail_rate {
            return Err(format!("simulated failure (attempt {})", a.attempt));
        }
        Ok(json!({ "simulated_ms": ms }))
    }
}

/// splitmix64's finalizer: a fixed, well-spread shuffle of a number.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a of a string.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(spread: f64) -> SimArgs {
        SimArgs {
            sim_duration_ms: None,
            sim_fail_rate: 0.0,
            sim_speed: 1.0,
            sim_speed_spread: spread,
        }
    }

    #[test]
    fn speed_spread_stays_in_bounds_and_varies() {
        let factors: Vec<f64> = (0..100)
            .map(|k| Simulation::for_agent(&args(0.5), k).time_factor)
            .collect();
        assert!(
            factors.iter().all(|f| (0.5..=1.5).contains(f)),
            "{factors:?}"
        );
        let min = factors.iter().copied().fold(f64::MAX, f64::min);
        let max = factors.iter().copied().fold(f64::MIN, f64::max);
        assert!(max - min > 0.5, "spread used: {min}..{max}");
        assert_eq!(Simulation::for_agent(&args(0.0), 7).time_factor, 1.0);
    }

    #[tokio::test]
    async fn fail_rate_is_honoured_and_repeatable() {
        let sim = Simulation {
            time_factor: 1.0,
            duration_ms: Some(0),
            fail_rate: 0.3,
        };
        let mut failures = 0;
        for i in 0..1000 {
            let a = Assignment {
                job_id: format!("job-{i}"),
                attempt: 1,
                kind: "sleep".into(),
                args: json!({}),
                timeout_ms: 1000,
                gpus: vec![],
            };
            let first = sim.run(&a).await.is_err();
            assert_eq!(first, sim.run(&a).await.is_err(), "repeatable");
            failures += usize::from(first);
        }
        assert!((220..=380).contains(&failures), "{failures} of 1000 failed");
    }
}
