//! `fastest`: the agent with the shortest average run time for the job's
//! kind. An agent with no history for the kind is tried first (its time
//! counts as zero), so every agent gets measured.

use super::{best_by, Feasible, JobContext, Policy};

pub struct Fastest;

impl Policy for Fastest {
    fn name(&self) -> &'static str {
        "fastest"
    }

    fn choose(&mut self, job: &JobContext<'_>, feasible: &[Feasible<'_>]) -> usize {
        best_by(feasible, |f| {
            -f.agent
                .perf
                .get(&job.job.kind)
                .filter(|p| p.n > 0)
                .map(|p| p.ms)
                .unwrap_or(0.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::policy::testing::{agent, context, job, one_slot_each};
    use crate::state::Perf;

    #[test]
    fn picks_the_fastest_measured_and_tries_the_unmeasured() {
        let mut slow = agent("slow", 4, 0);
        slow.perf.insert(
            "sleep".into(),
            Perf {
                ms: 50.0,
                ok: 1.0,
                n: 9,
            },
        );
        let mut quick = agent("quick", 4, 3);
        quick.perf.insert(
            "sleep".into(),
            Perf {
                ms: 5.0,
                ok: 1.0,
                n: 9,
            },
        );
        let fresh = agent("fresh", 4, 0);
        let j = job();
        let ctx = context(&j);
        let measured = [slow.clone(), quick.clone()];
        let feasible = one_slot_each(&measured);
        assert_eq!(feasible[Fastest.choose(&ctx, &feasible)].agent.id, "quick");
        let all = [slow, quick, fresh];
        let feasible = one_slot_each(&all);
        assert_eq!(feasible[Fastest.choose(&ctx, &feasible)].agent.id, "fresh");
    }
}
