//! fleet-protocol: everything two fleet processes must agree on.
//!
//! fleet's processes talk only through NATS subjects and Redis keys, so this
//! crate is the contract between them: the JSON wire types ([`job`],
//! [`assignment`], [`event`], [`result`]), the subject names ([`subjects`]),
//! the JetStream streams ([`streams`]), the Redis key layout ([`keys`]), the
//! defaults every binary shares ([`defaults`]), and the producer [`Client`]
//! that submits jobs and waits for their results.
//!
//! Every message is plain JSON that a producer in any language can write by
//! hand; `PROTOCOL.md` at the top of the repository shows one of each.

pub mod assignment;
pub mod capabilities;
pub mod client;
pub mod connect;
pub mod defaults;
pub mod event;
pub mod ids;
pub mod job;
pub mod keys;
#[cfg(feature = "logging")]
pub mod logging;
pub mod priority;
pub mod result;
pub mod stop_signals;
pub mod streams;
pub mod subjects;
pub mod time;
pub mod workload;
pub mod workload_args;

pub use assignment::{Assignment, AssignmentBatch, ControlMessage};
pub use capabilities::{gpus_wanted, Capabilities, GpuInfo};
pub use client::{Client, ClientError};
pub use connect::{ConnectError, NatsOptions};
pub use event::{
    AgentEvent, Completed, Failed, GpuStatus, Heartbeat, Register, RunningJob, Started,
};
pub use ids::{is_valid_token, new_job_id, InvalidId};
pub use job::{InvalidJob, JobSpec, Requirements, ValidJob};
pub use keys::Keys;
pub use priority::Priority;
pub use result::{AttemptRecord, JobResult, JobState, Rejection, Timing};
