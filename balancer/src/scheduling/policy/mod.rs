//! Placement policies: given a job and the agents that can take it now,
//! which one gets it.
//!
//! The scheduler finds the feasible agents (kind, tags, free slot, free
//! fitting GPUs); a [`Policy`] only chooses among them. One file per
//! policy; `--policy` picks one per balancer.

mod composite;
mod fastest;
mod least_loaded;
mod round_robin;
mod weighted_round_robin;

pub use composite::{score, Composite, Weights};
pub use fastest::Fastest;
pub use least_loaded::LeastLoaded;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

use crate::scheduling::directory::AgentView;
use crate::state::QueuedJob;

/// One agent that could take the job now.
pub struct Feasible<'a> {
    pub agent: &'a AgentView,
    /// Free slots left in this scheduling round.
    pub free_slots: u32,
}

/// What a policy knows about the job beyond the job itself.
pub struct JobContext<'a> {
    pub job: &'a QueuedJob,
    /// The job's model family, for affinity.
    pub family: Option<&'a str>,
    pub now_ms: u64,
    /// Whether jobs that need GPUs are waiting in the queue this round.
    pub gpu_demand: bool,
}

/// A placement policy.
pub trait Policy: Send + Sync {
    fn name(&self) -> &'static str;

    /// The position in `feasible` (never empty) of the chosen agent.
    fn choose(&mut self, job: &JobContext<'_>, feasible: &[Feasible<'_>]) -> usize;
}

/// The policy named on the command line.
pub fn by_name(name: &str, weights: Weights) -> Option<Box<dyn Policy>> {
    Some(match name {
        "composite" => Box::new(Composite::new(weights)),
        "round-robin" => Box::new(RoundRobin::default()),
        "weighted-round-robin" => Box::new(WeightedRoundRobin::default()),
        "least-loaded" => Box::new(LeastLoaded),
        "fastest" => Box::new(Fastest),
        _ => return None,
    })
}

/// Every policy name `--policy` accepts.
pub const NAMES: [&str; 5] = [
    "composite",
    "round-robin",
    "weighted-round-robin",
    "least-loaded",
    "fastest",
];

/// The index of the largest `key`, ties to the lowest agent id (so
/// choices are deterministic).
fn best_by(feasible: &[Feasible<'_>], mut key: impl FnMut(&Feasible<'_>) -> f64) -> usize {
    let mut best = 0;
    let mut best_key = f64::NEG_INFINITY;
    for (i, f) in feasible.iter().enumerate() {
        let k = key(f);
        if k > best_key || (k == best_key && f.agent.id < feasible[best].agent.id) {
            best = i;
            best_key = k;
        }
    }
    best
}

#[cfg(test)]
pub(crate) mod testing {
    use fleet_protocol::{Capabilities, Requirements};

    use crate::scheduling::directory::AgentView;
    use crate::state::QueuedJob;

    pub fn agent(id: &str, slots: u32, leases: u32) -> AgentView {
        let mut a = AgentView::new(
            id,
            slots,
            Capabilities {
                kinds: vec!["sleep".into()],
                ..Capabilities::default()
            },
            0,
        );
        a.leases = leases;
        a
    }

    /// The plain context of `job`: no family, time 0, no GPU demand.
    pub fn context(job: &QueuedJob) -> super::JobContext<'_> {
        super::JobContext {
            job,
            family: None,
            now_ms: 0,
            gpu_demand: false,
        }
    }

    /// Every agent as a candidate with its free slots.
    pub fn feasible(agents: &[AgentView]) -> Vec<super::Feasible<'_>> {
        agents
            .iter()
            .map(|a| super::Feasible {
                agent: a,
                free_slots: a.free_slots(),
            })
            .collect()
    }

    /// Every agent as a candidate with one free slot.
    pub fn one_slot_each(agents: &[AgentView]) -> Vec<super::Feasible<'_>> {
        agents
            .iter()
            .map(|a| super::Feasible {
                agent: a,
                free_slots: 1,
            })
            .collect()
    }

    pub fn job() -> QueuedJob {
        QueuedJob {
            id: "j".into(),
            kind: "sleep".into(),
            args: "{}".into(),
            rank: 1,
            timeout_ms: Some(1000),
            requires: Requirements::default(),
            last_agent: None,
        }
    }
}
