//! The names of the JetStream streams fleet relies on.
//!
//! Which subjects each stream holds and how long it keeps them is part of
//! the contract too; the definitions themselves (retention, storage,
//! de-duplication window) live with the code that creates the streams,
//! `fleet_client::streams`, because they are written in async-nats types.

/// Job submissions on [`crate::subjects::SUBMIT`]. Work-queue retention: a
/// message leaves the stream once the balancer has the job in Redis and
/// acks it.
pub const JOBS: &str = "FLEET_JOBS";
/// Agent events (register, heartbeat, started, completed, failed) on
/// [`crate::subjects::EVENTS_ALL`].
pub const EVENTS: &str = "FLEET_EVENTS";
/// Terminal job results on [`crate::subjects::RESULTS_ALL`], one per job,
/// kept for [`crate::defaults::RESULT_RETENTION`].
pub const RESULTS: &str = "FLEET_RESULTS";
