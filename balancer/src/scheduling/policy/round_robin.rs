//! `round-robin`: each job goes to the next feasible agent after the one
//! chosen last, in agent-id order.

use super::{Feasible, JobContext, Policy};

#[derive(Default)]
pub struct RoundRobin {
    last: Option<String>,
}

impl Policy for RoundRobin {
    fn name(&self) -> &'static str {
        "round-robin"
    }

    fn choose(&mut self, _job: &JobContext<'_>, feasible: &[Feasible<'_>]) -> usize {
        let mut order: Vec<usize> = (0..feasible.len()).collect();
        order.sort_by(|&a, &b| feasible[a].agent.id.cmp(&feasible[b].agent.id));
        let next = match &self.last {
            Some(last) => order
                .iter()
                .copied()
                .find(|&i| feasible[i].agent.id > *last)
                .unwrap_or(order[0]),
            None => order[0],
        };
        self.last = Some(feasible[next].agent.id.clone());
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::policy::testing::{agent, context, job, one_slot_each};

    #[test]
    fn cycles_through_agents_in_id_order() {
        let agents = [agent("c", 4, 0), agent("a", 4, 3), agent("b", 4, 0)];
        let feasible = one_slot_each(&agents);
        let j = job();
        let ctx = context(&j);
        let mut rr = RoundRobin::default();
        let picks: Vec<&str> = (0..4)
            .map(|_| feasible[rr.choose(&ctx, &feasible)].agent.id.as_str())
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a"]);
    }
}
