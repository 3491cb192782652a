//! `sleep`: waits `{"ms": N}` milliseconds. For tests and load runs.

use std::time::Duration;

use serde_json::{json, Value};

pub async fn run(args: &Value) -> Result<Value, String> {
    let ms = match args.get("ms") {
        None => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("sleep: \"ms\" must be a non-negative integer, got {v}"))?,
    };
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(json!({ "slept_ms": ms }))
}
