//! One module per fleetctl command. Each `run` returns the exit code.

pub mod agents;
pub mod audit;
pub mod bench;
pub mod dead;
pub mod job;
pub mod lifecycle;
pub mod stats;
pub mod submit;
pub mod wait;
