//! Defaults that more than one binary relies on. Each binary exposes these
//! through its own `clap` flags; keeping the numbers here keeps them equal.

use std::time::Duration;

pub const NATS_URL: &str = "nats://127.0.0.1:4222";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const HTTP_ADDR: &str = "0.0.0.0:8000";
pub const BALANCER_URL: &str = "http://127.0.0.1:8000";

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
pub const JOB_TIMEOUT_BUFFER: f64 = 1.2;
pub const MAX_ATTEMPTS: u32 = 3;
pub const MAX_QUEUED: u64 = 1_000_000;

/// A job's run-time limit when the producer gives none.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest run-time limit a producer may ask for.
pub const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most attempts a producer may ask for.
pub const MAX_MAX_ATTEMPTS: u32 = 100;
/// The largest submission message accepted, in bytes.
pub const MAX_JOB_BYTES: usize = 1024 * 1024;
/// The deepest nesting of arrays and objects accepted in a job's args.
pub const MAX_ARGS_DEPTH: usize = 32;
/// The largest result an agent reports, in bytes of JSON.
pub const MAX_RESULT_BYTES: usize = 512 * 1024;
/// The largest agent event accepted, in bytes: a completion carrying the
/// largest result, with room for its other fields (a heartbeat listing
/// thousands of running jobs stays well under it).
pub const MAX_EVENT_BYTES: usize = MAX_RESULT_BYTES + 64 * 1024;
/// How long results stay in the `FLEET_RESULTS` stream.
pub const RESULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
