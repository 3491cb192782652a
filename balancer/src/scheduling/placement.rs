//! One scheduling round's placements: which agents can take a job right
//! now, and (through the [`Policy`]) which of them does.
//!
//! An agent can take a job when it offers the job's kind, has its tags,
//! has a free slot, and has enough free GPUs that each fit the job's
//! per-GPU requirements; the job is given specific device indices. A retry
//! avoids the agent its last attempt failed on while another can take it.
//! Every placement in the round is tentative until the assign script
//! commits it, so the round tracks slots and GPUs it has handed out.
//!
//! Prefetch room (jobs held beyond an agent's slots, not yet started) is
//! used only once no candidate has a free slot for the job: it exists for
//! a queue deeper than the free slots, never to pile work on one agent
//! while another sits idle.
//!
//! A decision stays cheap at 10,000 agents: the round holds shared
//! snapshots (`Arc`) of the directory's agents rather than copies, keeps
//! its free-slot totals as it goes, and the policy chooses among at most
//! [`SAMPLE`] feasible agents, found from a cursor that moves on with every
//! decision — the "power of d choices" that load balancers use, which
//! lands within a small factor of the best pick over all agents while
//! costing O(SAMPLE) instead of O(agents).

use std::sync::Arc;

use fleet_protocol::defaults;

use crate::scheduling::directory::AgentView;
use crate::scheduling::policy::{Feasible, JobContext, Policy};
use crate::state::{Placement, QueuedJob};

/// The run-time limit of a job whose producer gave none: ten times what
/// the job's kind takes on that agent once there is history (at least
/// [`MIN_DERIVED_TIMEOUT_MS`]), capped by and else equal to the default.
pub fn derived_timeout_ms(agent: &AgentView, kind: &str) -> u64 {
    let default = defaults::JOB_TIMEOUT.as_millis() as u64;
    match agent.perf.get(kind) {
        Some(p) if p.n >= MIN_HISTORY && p.ms > 0.0 => {
            ((p.ms * 10.0) as u64).clamp(MIN_DERIVED_TIMEOUT_MS, default)
        }
        _ => default,
    }
}

/// A derived timeout is never shorter than this.
pub const MIN_DERIVED_TIMEOUT_MS: u64 = 30_000;
/// Attempts of a kind on an agent before its history sets timeouts.
const MIN_HISTORY: u64 = 5;
/// About how long a dispatch takes (event, scripts, assignment message):
/// the waiting work an agent needs on hand to never idle between jobs.
const DISPATCH_MS: f64 = 10.0;

/// How much of its prefetch an agent gets: enough jobs to cover one
/// dispatch at its measured pace (at least one), all of it without
/// history. Fast agents get several; slow ones one.
pub fn prefetch_allowance(agent: &AgentView) -> u32 {
    let (weighted_ms, n) = agent
        .perf
        .values()
        .filter(|p| p.ms > 0.0)
        .fold((0.0, 0u64), |(ms, n), p| (ms + p.ms * p.n as f64, n + p.n));
    if n == 0 {
        return agent.prefetch;
    }
    let pace_ms = weighted_ms / n as f64;
    ((DISPATCH_MS / pace_ms).ceil() as u32)
        .clamp(1, agent.prefetch.max(1))
        .min(agent.prefetch)
}

/// The most feasible agents the policy weighs for one job.
pub const SAMPLE: usize = 64;

/// The prefetch room an agent has left beyond its free slots: the
/// allowance caps what it holds beyond its slots, not what one round adds.
fn prefetch_room(agent: &AgentView) -> u32 {
    (agent.slots + prefetch_allowance(agent))
        .saturating_sub(agent.leases)
        .saturating_sub(agent.free_slots())
}

/// How many more jobs an agent can take now: its free slots and its
/// prefetch room, as a [`Round`] would count them.
pub fn room(agent: &AgentView) -> u64 {
    u64::from(agent.free_slots()) + u64::from(prefetch_room(agent))
}

/// The candidates of one round, with what the round has not handed out.
pub struct Round<'p> {
    agents: Vec<Arc<AgentView>>,
    free: Vec<u32>,
    /// Prefetch room not yet handed out.
    extra: Vec<u32>,
    free_sum: u64,
    extra_sum: u64,
    /// Which GPUs of each agent are taken, filled in only for agents a
    /// search reaches (a round at 10,000 agents touches few of them).
    busy: Vec<Option<Vec<bool>>>,
    policy: &'p mut dyn Policy,
    now_ms: u64,
    gpu_demand: bool,
    /// Where the next search for feasible agents starts.
    cursor: usize,
}

impl<'p> Round<'p> {
    pub fn new<A: Into<Arc<AgentView>>>(
        agents: impl IntoIterator<Item = A>,
        policy: &'p mut dyn Policy,
        now_ms: u64,
    ) -> Round<'p> {
        let agents: Vec<Arc<AgentView>> = agents.into_iter().map(Into::into).collect();
        let free: Vec<u32> = agents.iter().map(|a| a.free_slots()).collect();
        let extra: Vec<u32> = agents.iter().map(|a| prefetch_room(a)).collect();
        let busy = vec![None; agents.len()];
        let free_sum = free.iter().map(|&f| u64::from(f)).sum();
        let extra_sum = extra.iter().map(|&f: &u32| u64::from(f)).sum();
        // Rounds start their searches at different places, so the same
        // few agents are not always the ones weighed.
        let cursor = (now_ms as usize) % agents.len().max(1);
        Round {
            agents,
            free,
            extra,
            free_sum,
            extra_sum,
            busy,
            policy,
            now_ms,
            gpu_demand: false,
            cursor,
        }
    }

    /// Tells the policy whether jobs needing GPUs wait in the queue.
    pub fn set_gpu_demand(&mut self, waiting: bool) {
        self.gpu_demand = waiting;
    }

    /// Free slots left across all candidates.
    pub fn free_total(&self) -> u64 {
        self.free_sum
    }

    /// Free slots and prefetch room left across all candidates.
    pub fn capacity_total(&self) -> u64 {
        self.free_sum + self.extra_sum
    }

    /// Places `job` (of model family `family`) in a free slot, else in
    /// prefetch room, and takes what it gets; `None` when no candidate can
    /// take it now.
    pub fn place(&mut self, job: &QueuedJob, family: Option<&str>) -> Option<Placement> {
        self.place_in(job, family, true)
    }

    /// Places `job` in a free slot only (for work moved off a backed-up
    /// agent: it must start at once where it goes).
    pub fn place_in_slot(&mut self, job: &QueuedJob, family: Option<&str>) -> Option<Placement> {
        self.place_in(job, family, false)
    }

    fn place_in(
        &mut self,
        job: &QueuedJob,
        family: Option<&str>,
        allow_prefetch: bool,
    ) -> Option<Placement> {
        let mut prefetching = false;
        let mut options = self.candidates(job, false);
        if options.is_empty() && allow_prefetch {
            prefetching = true;
            options = self.candidates(job, true);
        }
        if let Some(last) = &job.last_agent {
            if options.iter().any(|(i, _)| self.agents[*i].id != *last) {
                options.retain(|(i, _)| self.agents[*i].id != *last);
            }
        }
        if options.is_empty() {
            return None;
        }
        let feasible: Vec<Feasible> = options
            .iter()
            .map(|(i, _)| Feasible {
                agent: &self.agents[*i],
                free_slots: self.free[*i],
            })
            .collect();
        let context = JobContext {
            job,
            family,
            now_ms: self.now_ms,
            gpu_demand: self.gpu_demand,
        };
        let pick = self
            .policy
            .choose(&context, &feasible)
            .min(options.len() - 1);
        let (i, gpus) = options.swap_remove(pick);
        if prefetching {
            self.extra[i] -= 1;
            self.extra_sum -= 1;
        } else {
            self.free[i] -= 1;
            self.free_sum -= 1;
        }
        for g in &gpus {
            if let Some(slot) = self.agents[i]
                .capabilities
                .gpus
                .iter()
                .position(|info| info.index == *g)
            {
                if let Some(busy) = self.busy[i].as_mut() {
                    busy[slot] = true;
                }
            }
        }
        if let Some(f) = family {
            // Copies this one agent's snapshot if the directory shares it.
            Arc::make_mut(&mut self.agents[i])
                .recent_families
                .insert(f.to_string(), self.now_ms);
        }
        let timeout_ms = job
            .timeout_ms
            .unwrap_or_else(|| derived_timeout_ms(&self.agents[i], &job.kind));
        Some(Placement {
            agent: self.agents[i].id.clone(),
            gpus,
            timeout_ms,
        })
    }

    /// Up to [`SAMPLE`] agents with room left (prefetch room when
    /// `prefetch`, else free slots) that can run `job` now, with the GPUs
    /// it would get there, searched from the cursor on; the cursor then
    /// moves past the first of them.
    fn candidates(&mut self, job: &QueuedJob, prefetch: bool) -> Vec<(usize, Vec<u32>)> {
        let n = self.agents.len();
        let room = if prefetch { &self.extra } else { &self.free };
        let mut found = Vec::new();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if room[i] == 0 {
                continue;
            }
            let agent = &self.agents[i];
            let busy = self.busy[i].get_or_insert_with(|| agent.gpu_busy());
            if let Ok(gpus) = agent.capabilities.allocate(&job.kind, &job.requires, busy) {
                found.push((i, gpus));
                if found.len() == SAMPLE {
                    break;
                }
            }
        }
        if let Some((first, _)) = found.first() {
            self.cursor = (first + 1) % n;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::policy::{Composite, Weights};
    use crate::state::Perf;
    use fleet_protocol::{Capabilities, GpuInfo, Requirements};

    fn agent(id: &str, slots: u32, leases: u32, kinds: &[&str], gpus: &[(u64, &str)]) -> AgentView {
        let mut a = AgentView::new(
            id,
            slots,
            Capabilities {
                kinds: kinds.iter().map(|k| k.to_string()).collect(),
                gpus: gpus
                    .iter()
                    .enumerate()
                    .map(|(i, (mem, cc))| GpuInfo {
                        index: i as u32,
                        name: "gpu".into(),
                        memory_mb: *mem,
                        compute_capability: cc.to_string(),
                        gemm_tflops: None,
                        memory_gb_per_s: None,
                    })
                    .collect(),
                ..Capabilities::default()
            },
            0,
        );
        a.leases = leases;
        a
    }

    fn job(kind: &str, requires: Requirements) -> QueuedJob {
        QueuedJob {
            id: "j".into(),
            kind: kind.into(),
            args: "{}".into(),
            rank: 1,
            timeout_ms: Some(1000),
            requires,
            last_agent: None,
        }
    }

    #[test]
    fn a_large_fleet_is_sampled_but_the_one_fitting_agent_is_found() {
        // 5,000 CPU agents and one with a GPU, last in the list: the search
        // skips every agent that cannot run the job, whatever the sample.
        let mut agents: Vec<AgentView> = (0..5_000)
            .map(|i| agent(&format!("cpu-{i}"), 4, 0, &["sleep"], &[]))
            .collect();
        agents.push(agent("gpu", 1, 0, &["sleep"], &[(81_920, "9.0")]));
        let mut policy = Composite::new(Weights::default());
        let mut round = Round::new(agents, &mut policy, 12_345);
        let gpu_job = job(
            "sleep",
            Requirements {
                gpus: Some(1),
                ..Requirements::default()
            },
        );
        let p = round.place(&gpu_job, None).map(|p| p.agent);
        assert_eq!(p.as_deref(), Some("gpu"));
        assert!(
            round.place(&gpu_job, None).is_none(),
            "its one GPU is taken"
        );
        assert_eq!(round.free_total(), 5_000 * 4);
    }

    #[test]
    fn sampled_decisions_still_spread_over_the_whole_fleet() {
        // 1,000 idle agents with one slot each, 1,000 jobs: every job
        // finds a slot (the totals are kept right), and every agent gets
        // exactly one, though each decision weighs only SAMPLE of them.
        let agents: Vec<AgentView> = (0..1_000)
            .map(|i| agent(&format!("a{i}"), 1, 0, &["sleep"], &[]))
            .collect();
        let mut policy = Composite::new(Weights::default());
        let mut round = Round::new(agents, &mut policy, 7);
        let mut used = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let p = round.place(&job("sleep", Requirements::default()), None);
            let Some(p) = p else {
                panic!("a job found no slot with {} free", round.free_total());
            };
            assert!(used.insert(p.agent), "an agent got two jobs");
        }
        assert_eq!(round.capacity_total(), 0);
        assert!(round
            .place(&job("sleep", Requirements::default()), None)
            .is_none());
    }

    #[test]
    fn a_timeout_comes_from_history_when_the_producer_gave_none() {
        let mut a = agent("a", 4, 0, &["sleep"], &[]);
        let untimed = QueuedJob {
            timeout_ms: None,
            ..job("sleep", Requirements::default())
        };
        let default = defaults::JOB_TIMEOUT.as_millis() as u64;
        assert_eq!(derived_timeout_ms(&a, "sleep"), default, "no history");
        a.perf.insert(
            "sleep".into(),
            Perf {
                ms: 9_000.0,
                ok: 1.0,
                n: 20,
            },
        );
        assert_eq!(derived_timeout_ms(&a, "sleep"), 90_000);
        a.perf.insert(
            "sleep".into(),
            Perf {
                ms: 5.0,
                ok: 1.0,
                n: 20,
            },
        );
        assert_eq!(derived_timeout_ms(&a, "sleep"), MIN_DERIVED_TIMEOUT_MS);
        let mut policy = Composite::new(Weights::default());
        let mut round = Round::new(vec![a], &mut policy, 0);
        let p = round.place(&untimed, None).map(|p| p.timeout_ms);
        assert_eq!(p, Some(MIN_DERIVED_TIMEOUT_MS));
        // The producer's own timeout always wins.
        let p = round.place(&job("sleep", Requirements::default()), None);
        assert_eq!(p.map(|p| p.timeout_ms), Some(1000));
    }

    #[test]
    fn prefetch_is_sized_by_measured_pace() {
        let mut a = agent("a", 1, 0, &["sleep"], &[]);
        a.prefetch = 8;
        assert_eq!(prefetch_allowance(&a), 8, "no history: all of it");
        a.perf.insert(
            "sleep".into(),
            Perf {
                ms: 2.0,
                ok: 1.0,
                n: 50,
            },
        );
        assert_eq!(prefetch_allowance(&a), 5, "10 ms of 2 ms jobs");
        a.perf.insert(
            "sleep".into(),
            Perf {
                ms: 500.0,
                ok: 1.0,
                n: 50,
            },
        );
        assert_eq!(prefetch_allowance(&a), 1, "slow jobs: one on hand");
        a.prefetch = 0;
        assert_eq!(prefetch_allowance(&a), 0);
    }

    #[test]
    fn spreads_a_batch_over_the_least_loaded() {
        let mut policy = Composite::new(Weights::default());
        let mut round = Round::new(
            vec![
                agent("a", 4, 3, &["sleep"], &[]),
                agent("b", 4, 0, &["sleep"], &[]),
            ],
            &mut policy,
            0,
        );
        let picks: Vec<String> = (0..4)
            .filter_map(|_| round.place(&job("sleep", Requirements::default()), None))
            .map(|p| p.agent)
            .collect();
        assert_eq!(picks.iter().filter(|p| *p == "b").count(), 3);
        assert_eq!(picks.iter().filter(|p| *p == "a").count(), 1);
        assert_eq!(round.free_total(), 1);
    }

    #[test]
    fn never_places_where_the_kind_is_not_offered_or_no_slot_is_free() {
        let mut policy = Composite::new(Weights::default());
        let mut round = Round::new(
            vec![
                agent("cpu", 8, 0, &["sleep"], &[]),
                agent("full", 1, 1, &["cuda.vector_add"], &[(24_576, "8.9")]),
            ],
            &mut policy,
            0,
        );
        assert_eq!(
            round.place(&job("cuda.vector_add", Requirements::default()), None),
            None
        );
        let p = round.place(&job("sleep", Requirements::default()), None);
        assert_eq!(p.map(|p| p.agent).as_deref(), Some("cpu"));
    }

    #[test]
    fn gpus_are_allocated_per_device_and_never_twice() {
        let mut policy = Composite::new(Weights::default());
        let mut round = Round::new(
            vec![agent(
                "box",
                8,
                0,
                &["sleep"],
                &[(24_576, "8.9"), (24_576, "8.9")],
            )],
            &mut policy,
            0,
        );
        let one_gpu = Requirements {
            gpus: Some(1),
            ..Requirements::default()
        };
        let first = round.place(&job("sleep", one_gpu.clone()), None);
        let second = round.place(&job("sleep", one_gpu.clone()), None);
        assert_eq!(first.map(|p| p.gpus), Some(vec![0]));
        assert_eq!(second.map(|p| p.gpus), Some(vec![1]));
        // Slots remain, GPUs do not.
        assert_eq!(round.place(&job("sleep", one_gpu), None), None);
        assert!(round
            .place(&job("sleep", Requirements::default()), None)
            .is_some());
        // Two 24 GiB GPUs never make one 40 GiB GPU.
        let big = Requirements {
            gpus: Some(1),
            gpu_mem_mb: Some(40_960),
            ..Requirements::default()
        };
        let mut policy = Composite::new(Weights::default());
        let mut fresh = Round::new(
            vec![agent(
                "box",
                8,
                0,
                &["sleep"],
                &[(24_576, "8.9"), (24_576, "8.9")],
            )],
            &mut policy,
            0,
        );
        assert_eq!(fresh.place(&job("sleep", big), None), None);
    }

    #[test]
    fn prefetch_room_is_used_only_when_no_slot_is_free() {
        let mut prefetcher = agent("a", 1, 0, &["sleep"], &[]);
        prefetcher.prefetch = 2;
        let plain = agent("b", 1, 0, &["sleep"], &[]);
        let mut policy = Composite::new(Weights::default());
        let mut round = Round::new(vec![prefetcher, plain], &mut policy, 0);
        assert_eq!(round.capacity_total(), 4);
        let picks: Vec<String> = (0..5)
            .filter_map(|_| round.place(&job("sleep", Requirements::default()), None))
            .map(|p| p.agent)
            .collect();
        // Both slots first (one each), then a's prefetch room, then none.
        assert_eq!(picks.len(), 4);
        assert_eq!(picks[..2].iter().filter(|p| *p == "b").count(), 1);
        assert_eq!(&picks[2..], ["a", "a"]);
        assert_eq!(round.capacity_total(), 0);
    }

    #[test]
    fn moved_work_goes_only_to_a_free_slot() {
        let mut prefetcher = agent("a", 1, 1, &["sleep"], &[]);
        prefetcher.prefetch = 2;
        let mut policy = Composite::new(Weights::default());
        let mut round = Round::new(vec![prefetcher], &mut policy, 0);
        assert_eq!(
            round.place_in_slot(&job("sleep", Requirements::default()), None),
            None
        );
        assert!(round
            .place(&job("sleep", Requirements::default()), None)
            .is_some());
    }

    #[test]
    fn a_retry_goes_elsewhere_when_it_can() {
        let mut policy = Composite::new(Weights::default());
        let mut round = Round::new(
            vec![
                agent("a", 4, 0, &["sleep"], &[]),
                agent("b", 4, 3, &["sleep"], &[]),
            ],
            &mut policy,
            0,
        );
        let retry = QueuedJob {
            last_agent: Some("a".into()),
            ..job("sleep", Requirements::default())
        };
        assert_eq!(
            round.place(&retry, None).map(|p| p.agent).as_deref(),
            Some("b")
        );
        // With b full, the failed agent is better than nothing.
        assert_eq!(
            round.place(&retry, None).map(|p| p.agent).as_deref(),
            Some("a")
        );
    }
}
