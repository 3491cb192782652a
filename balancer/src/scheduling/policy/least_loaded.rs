//! `least-loaded`: the agent with the smallest share of its slots in use.

use super::{best_by, Feasible, JobContext, Policy};

pub struct LeastLoaded;

impl Policy for LeastLoaded {
    fn name(&self) -> &'static str {
        "least-loaded"
    }

    fn choose(&mut self, _job: &JobContext<'_>, feasible: &[Feasible<'_>]) -> usize {
        best_by(feasible, |f| {
            f64::from(f.free_slots) / f64::from(f.agent.slots.max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::policy::testing::{agent, context, feasible, job};

    #[test]
    fn picks_the_emptiest_share_not_the_most_free_slots() {
        // 8 of 16 free (50%) vs 3 of 4 free (75%).
        let agents = [agent("big", 16, 8), agent("small", 4, 1)];
        let feasible = feasible(&agents);
        let j = job();
        let ctx = context(&j);
        assert_eq!(
            feasible[LeastLoaded.choose(&ctx, &feasible)].agent.id,
            "small"
        );
    }
}
