//! One module per fleetctl command. Each `run` returns the exit code.

pub mod job;
pub mod stats;
pub mod submit;
pub mod wait;
