//! Choosing an agent for a job: which agents qualify, and which of them
//! scores best.
//!
//! Score = availability × 0.5 + success rate × 0.3 + speed × 0.2 (the
//! composite policy of DESIGN.md). Speed has no history behind it yet and
//! counts every agent as equally fast.

use crate::directory::AgentView;
use crate::store::QueuedJob;

/// Weights of the composite score.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub availability: f64,
    pub success: f64,
    pub speed: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            availability: 0.5,
            success: 0.3,
            speed: 0.2,
        }
    }
}

/// An agent's composite score, 0.0 to 1.0, given its free slots now.
pub fn score(agent: &AgentView, free_slots: u32, weights: Weights) -> f64 {
    let availability = if agent.slots == 0 {
        0.0
    } else {
        f64::from(free_slots) / f64::from(agent.slots)
    };
    let speed = 1.0;
    availability * weights.availability
        + agent.success_rate() * weights.success
        + speed * weights.speed
}

/// The candidates for one scheduling round, with the free slots the round
/// has not yet handed out.
pub struct Candidates {
    agents: Vec<AgentView>,
    free: Vec<u32>,
    weights: Weights,
}

impl Candidates {
    pub fn new(agents: Vec<AgentView>, weights: Weights) -> Candidates {
        let free = agents.iter().map(AgentView::free_slots).collect();
        Candidates {
            agents,
            free,
            weights,
        }
    }

    /// Free slots left across all candidates.
    pub fn free_total(&self) -> u64 {
        self.free.iter().map(|&f| u64::from(f)).sum()
    }

    /// Picks the best qualifying agent for `job` and takes one of its
    /// slots; `None` when no candidate qualifies or has room. A retry
    /// avoids the agent its last attempt failed on while another fits.
    pub fn place(&mut self, job: &QueuedJob) -> Option<&str> {
        let avoid = job.last_agent.as_deref();
        let i = self.best(job, avoid).or_else(|| self.best(job, None))?;
        self.free[i] -= 1;
        Some(&self.agents[i].id)
    }

    fn best(&self, job: &QueuedJob, avoid: Option<&str>) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, agent) in self.agents.iter().enumerate() {
            if self.free[i] == 0
                || avoid == Some(agent.id.as_str())
                || agent
                    .capabilities
                    .satisfies(&job.kind, &job.requires)
                    .is_err()
            {
                continue;
            }
            let s = score(agent, self.free[i], self.weights);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::{Capabilities, Requirements};

    fn agent(id: &str, slots: u32, leases: u32, kinds: &[&str]) -> AgentView {
        AgentView {
            id: id.into(),
            slots,
            leases,
            capabilities: Capabilities {
                kinds: kinds.iter().map(|k| k.to_string()).collect(),
                ..Capabilities::default()
            },
            last_seen_ms: 0,
            succeeded: 0,
            failed: 0,
            alive: true,
        }
    }

    fn job(kind: &str) -> QueuedJob {
        QueuedJob {
            id: "j".into(),
            kind: kind.into(),
            args: "{}".into(),
            rank: 1,
            timeout_ms: 1000,
            requires: Requirements::default(),
            last_agent: None,
        }
    }

    #[test]
    fn a_retry_goes_elsewhere_when_it_can() {
        let mut c = Candidates::new(
            vec![agent("a", 4, 0, &["sleep"]), agent("b", 4, 3, &["sleep"])],
            Weights::default(),
        );
        let retry = QueuedJob {
            last_agent: Some("a".into()),
            ..job("sleep")
        };
        assert_eq!(c.place(&retry), Some("b"));
        // With b full, the failed agent is better than nothing.
        assert_eq!(c.place(&retry), Some("a"));
    }

    #[test]
    fn spreads_a_batch_over_the_least_loaded() {
        let mut c = Candidates::new(
            vec![agent("a", 4, 3, &["sleep"]), agent("b", 4, 0, &["sleep"])],
            Weights::default(),
        );
        let picks: Vec<String> = (0..4)
            .filter_map(|_| c.place(&job("sleep")).map(str::to_string))
            .collect();
        assert_eq!(picks.iter().filter(|p| *p == "b").count(), 3);
        assert_eq!(picks.iter().filter(|p| *p == "a").count(), 1);
        assert_eq!(c.free_total(), 1);
    }

    #[test]
    fn never_places_where_the_kind_is_not_offered_or_no_slot_is_free() {
        let mut c = Candidates::new(
            vec![
                agent("cpu", 8, 0, &["sleep"]),
                agent("full", 1, 1, &["cuda.vector_add"]),
            ],
            Weights::default(),
        );
        assert_eq!(c.place(&job("cuda.vector_add")), None);
        assert_eq!(c.place(&job("sleep")), Some("cpu"));
    }

    #[test]
    fn a_failing_agent_scores_lower() {
        let mut flaky = agent("flaky", 4, 0, &["sleep"]);
        flaky.failed = 9;
        flaky.succeeded = 1;
        let steady = agent("steady", 4, 0, &["sleep"]);
        let w = Weights::default();
        assert!(score(&steady, 4, w) > score(&flaky, 4, w));
    }
}
