//! fleet-protocol: everything two fleet processes must agree on.
//!
//! fleet's processes talk only through NATS subjects and Redis keys, so this
//! crate is the contract between them: the JSON wire types ([`job`],
//! [`assignment`], [`event`], [`result`]), the subject names ([`subjects`]),
//! the JetStream stream names ([`streams`]), the Redis key layout
//! ([`keys`]), the defaults every binary shares ([`defaults`]), and the
//! documents of the balancer's HTTP API ([`api`]).
//!
//! It holds types and rules only, with no runtime: connecting, the stream
//! definitions and the producer `Client` are `fleet-client`'s.
//!
//! Every message is plain JSON that a producer in any language can write by
//! hand; `PROTOCOL.md` at the top of the repository shows one of each.

pub mod api;
pub mod assignment;
pub mod capabilities;
pub mod defaults;
pub mod event;
pub mod ids;
pub mod job;
pub mod keys;
pub mod priority;
pub mod result;
pub mod streams;
pub mod subjects;
pub mod time;
pub mod workload;
pub mod workload_args;

pub use assignment::{Assignment, AssignmentBatch, ControlMessage};
pub use capabilities::{gpus_wanted, Capabilities, GpuInfo};
pub use event::{
    AgentEvent, Completed, Failed, GpuStatus, Heartbeat, Register, RunningJob, Started,
};
pub use ids::{is_valid_token, new_job_id, InvalidId};
pub use job::{InvalidJob, JobSpec, Requirements, ValidJob};
pub use keys::Keys;
pub use priority::Priority;
pub use result::{AttemptOutcome, AttemptRecord, JobResult, JobState, Rejection, Timing};
