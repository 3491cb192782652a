//! `flaky`: a test workload that misbehaves on its first attempts.
//!
//! `{"fail_attempts": F, "hang_attempts": H, "ms": T}`: attempts up to H
//! never finish (until cancelled or timed out), attempts up to F fail with
//! an error naming the attempt, later attempts sleep T ms and succeed.
//! Chaos tests use it to drive retries, dead letters and timeouts.

use std::time::Duration;

use serde_json::{json, Value};

pub async fn run(args: &Value, attempt: u32) -> Result<Value, String> {
    let field = |name: &str| -> Result<u64, String> {
        match args.get(name) {
            None => Ok(0),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("flaky: {name:?} must be a non-negative integer, got {v}")),
        }
    };
    let (fail, hang, ms) = (
        field("fail_attempts")?,
        field("hang_attempts")?,
        field("ms")?,
    );
    if u64::from(attempt) <= hang {
        std::future::pending::<()>().await;
    }
    if u64::from(attempt) <= fail {
        return Err(format!("flaky: attempt {attempt} fails on purpose"));
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(json!({ "attempt": attempt }))
}
