//! Everything the balancer keeps in Redis, and the only code that talks
//! to it.
//!
//! Redis holds the truth about every job and agent; each change of a
//! job's state is one Lua script (`lua/*.lua`, loaded by [`scripts`]), so
//! a crash between two steps never leaves a job half-moved, and every
//! script that writes first checks the caller's leadership token.
//! [`Store`] is the typed face of those scripts: it takes records and
//! returns [`replies`] decoded once (the events script's in
//! [`event_batch`]), so no caller reads a reply by position.

mod error;
mod event_batch;
mod records;
mod redis_options;
mod replies;
mod scripts;
mod store;

pub use error::{StoreError, StoreResult};
pub use event_batch::{
    AttemptEnded, Completion, DeadLetter, Dropped, EventArgs, EventKind, EventReply, NotAlive,
    StaleReason,
};
pub(crate) use records::decode_history;
pub use records::{AgentRecord, JobRecord, Perf, Placement, QueuedJob};
pub use redis_options::{RedisOptions, RedisOptionsError};
pub use replies::{Assigned, Cancelled, Enqueued, Expired, Lead, Retried};
pub use store::{Counters, Move, Store};
