//! Churn in a simulated fleet: `fleet-agent --simulate N
//! --churn-interval 2s --churn-fraction 0.05` crashes a share of the
//! running simulated agents every interval and starts as many brand-new
//! ones, so tests and benchmarks exercise registration, loss detection
//! and re-queueing at scale.
//!
//! A crash is abrupt: the agent's task is aborted, which ends its
//! heartbeats, its subscriptions and its jobs without a word (see `serve`
//! in `main.rs`), as if the machine lost power. The balancer must notice
//! the silence after its heartbeat timeout and re-queue the leases. A new
//! agent takes the next unused index (`<id>-N`, `<id>-(N+1)`, …), so it
//! registers as an agent the balancer has never seen. Which agents crash
//! is drawn from `--churn-seed`: the same seed crashes the same agents,
//! step by step (when and what they hold depends on the run).

use std::time::Duration;

use clap::Args;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::simulate::mix;

/// The `--churn-*` flags.
#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    /// With --simulate: every this often (e.g. "2s"), crash a share of the
    /// running simulated agents (no more heartbeats or events: the balancer
    /// must detect them and re-queue their jobs) and start as many new ones
    /// with fresh ids (`<id>-N`, `<id>-(N+1)`, …). Off unless given.
    #[arg(long, env = "FLEET_CHURN_INTERVAL", value_parser = parse_interval, requires = "simulate")]
    pub churn_interval: Option<Duration>,

    /// Share of the running simulated agents crashed and replaced at each
    /// churn step (0 < share ≤ 1; at least one agent per step).
    #[arg(long, env = "FLEET_CHURN_FRACTION", default_value_t = 0.05, value_parser = parse_share)]
    pub churn_fraction: f64,

    /// Seed of the draw of which agents crash at each step.
    #[arg(long, env = "FLEET_CHURN_SEED", default_value_t = 0)]
    pub churn_seed: u64,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the churn interval must be longer than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number above 0 and at most 1")),
    }
}

/// How many of `running` agents one step crashes.
fn victims(running: usize, fraction: f64) -> usize {
    if running == 0 {
        return 0;
    }
    ((running as f64 * fraction).round() as usize).clamp(1, running)
}

/// A running simulated agent, as churn knows it.
struct Member {
    id: String,
    task: AbortHandle,
}

/// The churn of one simulating process: its schedule, its draw, and the
/// agents it may crash.
pub struct Churn {
    ticker: Interval,
    fraction: f64,
    /// splitmix64 state: a seeded, repeatable stream of draws.
    draw: u64,
    members: Vec<Member>,
    next_index: u32,
    step: u64,
}

impl Churn {
    /// The churn `args` ask for (`None` when `--churn-interval` is not
    /// given); new agents are numbered from `first_new_index` on.
    pub fn new(args: &ChurnArgs, first_new_index: u32) -> Option<Churn> {
        let period = args.churn_interval?;
        // The first step comes one interval after the start, not at once:
        // the initial agents need a chance to register and take work.
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tracing::info!(
            interval = %humantime::format_duration(period),
            fraction = args.churn_fraction,
            seed = args.churn_seed,
            "churn on: simulated agents will crash and be replaced"
        );
        Some(Churn {
            ticker,
            fraction: args.churn_fraction,
            draw: args.churn_seed,
            members: Vec::new(),
            next_index: first_new_index,
            step: 0,
        })
    }

    /// Counts a started agent among those that may crash.
    pub fn joined(&mut self, id: String, task: AbortHandle) {
        self.members.push(Member { id, task });
    }

    /// Waits for the next step.
    pub async fn tick(&mut self) {
        self.ticker.tick().await;
    }

    /// One step: crashes this step's share of the agents, then starts as
    /// many new ones through `start` (given each new agent's index, it
    /// returns the agent's id and task).
    pub fn step(&mut self, mut start: impl FnMut(u32) -> (String, AbortHandle)) {
        self.step += 1;
        let n = victims(self.members.len(), self.fraction);
        let mut crashed = Vec::with_capacity(n);
        for _ in 0..n {
            let pick = (self.next_draw() % self.members.len() as u64) as usize;
            let member = self.members.swap_remove(pick);
            member.task.abort();
            crashed.push(member.id);
        }
        let mut started = Vec::with_capacity(n);
        for _ in 0..n {
            let index = self.next_index;
            self.next_index += 1;
            let (id, task) = start(index);
            started.push(id.clone());
            self.joined(id, task);
        }
        tracing::info!(
            step = self.step,
            crashed = crashed.len(),
            started = started.len(),
            running = self.members.len(),
            crashed_ids = ?crashed,
            started_ids = ?started,
            "churn: simulated agents crashed and replaced"
        );
    }

    fn next_draw(&mut self) -> u64 {
        self.draw = self.draw.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.draw)
    }
}

/// The next churn step, or never when there is no churn.
pub async fn next_step(churn: &mut Option<Churn>) {
    match churn {
        Some(c) => c.tick().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(fraction: f64, seed: u64) -> ChurnArgs {
        ChurnArgs {
            churn_interval: Some(Duration::from_secs(1)),
            churn_fraction: fraction,
            churn_seed: seed,
        }
    }

    #[test]
    fn a_step_crashes_a_share_but_at_least_one() {
        assert_eq!(victims(1000, 0.05), 50);
        assert_eq!(victims(20, 0.05), 1);
        assert_eq!(victims(20, 0.1), 2);
        assert_eq!(victims(3, 1.0), 3);
        assert_eq!(victims(0, 0.5), 0);
    }

    #[test]
    fn flags_are_checked() {
        assert!(parse_share("0").is_err());
        assert!(parse_share("1.5").is_err());
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert!(parse_interval("0s").is_err());
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
    }

    /// Runs `steps` steps over 20 pretend agents; returns the ids whose
    /// tasks were aborted and the ids started, in order.
    async fn run(seed: u64, steps: usize) -> (Vec<String>, Vec<String>) {
        let Some(mut churn) = Churn::new(&args(0.1, seed), 20) else {
            return (Vec::new(), Vec::new());
        };
        let mut tasks = tokio::task::JoinSet::new();
        let mut handles = Vec::new();
        for k in 0..20 {
            let task = tasks.spawn(std::future::pending::<()>());
            handles.push((format!("sim-{k}"), task.clone()));
            churn.joined(format!("sim-{k}"), task);
        }
        let mut started = Vec::new();
        for _ in 0..steps {
            churn.step(|k| {
                let task = tasks.spawn(std::future::pending::<()>());
                started.push(format!("sim-{k}"));
                handles.push((format!("sim-{k}"), task.clone()));
                (format!("sim-{k}"), task)
            });
        }
        // Aborted tasks end once the runtime polls them.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let crashed = handles
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        (crashed, started)
    }

    #[tokio::test]
    async fn steps_replace_the_crashed_with_new_ids_repeatably() {
        let (crashed, started) = run(7, 3).await;
        assert_eq!(crashed.len(), 6, "{crashed:?}");
        assert_eq!(
            started,
            ["sim-20", "sim-21", "sim-22", "sim-23", "sim-24", "sim-25"]
        );
        assert_eq!(run(7, 3).await.0, crashed, "same seed, same victims");
        assert_ne!(run(8, 3).await.0, crashed, "another seed, other victims");
    }
}
