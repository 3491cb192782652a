//! Wall-clock milliseconds, the one time unit fleet writes to Redis and the
//! wire. Leases and deadlines compare these numbers across processes, so
//! they are Unix epoch milliseconds, never monotonic instants.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch; 0 if the clock reads before 1970.
/// Only for measuring (the `*_us` fields of a result's timing), never for
/// leases or deadlines.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch; 0 if the clock reads before 1970.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
