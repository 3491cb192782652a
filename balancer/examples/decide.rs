//! A fixed scheduling workload for instruction counts: 10,000 agents (a
//! third with two 80 GiB GPUs, a third with one 24 GiB GPU, a third
//! CPU-only, half of them busy), one round, 1,000 jobs placed, a tenth of
//! them needing a 40 GiB GPU. Deterministic, so `valgrind --tool=callgrind`
//! gives the same count for the same binary:
//!
//! ```sh
//! cargo build --release -p fleet-balancer --example decide
//! valgrind --tool=callgrind --callgrind-out-file=decide.out target/release/examples/decide
//! ```

use fleet_balancer::scheduling::Round;
use fleet_balancer::scheduling::{Composite, Weights};
use fleet_protocol::Requirements;

#[path = "../benches/support/mixed_fleet.rs"]
mod mixed_fleet;

fn main() {
    let agents = mixed_fleet::mixed_fleet(10_000);
    let mut policy = Composite::new(Weights::default());
    let mut round = Round::new(agents, &mut policy, 0);
    let mut placed = 0;
    for n in 0..1_000 {
        let requires = if n % 10 == 0 {
            mixed_fleet::one_40gib_gpu()
        } else {
            Requirements::default()
        };
        let job = mixed_fleet::sleep_job(&format!("job-{n}"), requires);
        if round.place(&job, None).is_some() {
            placed += 1;
        }
    }
    println!("placed {placed} of 1000");
}
