//! `weighted-round-robin`: round robin in proportion to capacity (slots),
//! smoothly interleaved (each agent's credit grows by its weight; the
//! richest is chosen and pays the total), as nginx does it.

use std::collections::HashMap;

use super::{Feasible, JobContext, Policy};

#[derive(Default)]
pub struct WeightedRoundRobin {
    credit: HashMap<String, i64>,
}

impl Policy for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "weighted-round-robin"
    }

    fn choose(&mut self, _job: &JobContext<'_>, feasible: &[Feasible<'_>]) -> usize {
        let total: i64 = feasible.iter().map(|f| i64::from(f.agent.slots)).sum();
        let mut best = 0;
        let mut best_credit = i64::MIN;
        for (i, f) in feasible.iter().enumerate() {
            let c = self.credit.entry(f.agent.id.clone()).or_insert(0);
            *c += i64::from(f.agent.slots);
            if *c > best_credit || (*c == best_credit && f.agent.id < feasible[best].agent.id) {
                best = i;
                best_credit = *c;
            }
        }
        if let Some(c) = self.credit.get_mut(&feasible[best].agent.id) {
            *c -= total;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::policy::testing::{agent, context, job, one_slot_each};

    #[test]
    fn shares_follow_capacity() {
        let agents = [agent("big", 6, 0), agent("small", 2, 0)];
        let feasible = one_slot_each(&agents);
        let j = job();
        let ctx = context(&j);
        let mut wrr = WeightedRoundRobin::default();
        let big = (0..80)
            .filter(|_| feasible[wrr.choose(&ctx, &feasible)].agent.id == "big")
            .count();
        assert_eq!(big, 60, "6:2 slots → 3 in 4 picks");
    }
}
