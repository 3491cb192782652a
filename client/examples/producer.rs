//! A fleet producer in Rust: submit a batch of jobs through
//! [`fleet_client::Client`] and wait for every result.
//!
//! ```sh
//! cargo run -p fleet-client --example producer -- nats://127.0.0.1:4222 10
//! ```

use std::time::Duration;

use fleet_client::Client;
use fleet_protocol::{JobSpec, JobState};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let count: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(3);

    let client = Client::connect(&url).await?;
    let jobs = (0..count)
        .map(|i| JobSpec::new("echo", json!({ "from": "rust", "n": i })))
        .collect();
    let ids = client.submit_many(jobs).await?;
    let results = client
        .wait_many(&ids, Duration::from_secs(60), |r| {
            println!(
                "{} {:?} {}",
                r.job_id,
                r.state,
                r.result.clone().unwrap_or_default()
            )
        })
        .await?;
    let failed = results
        .iter()
        .filter(|r| r.state != JobState::Succeeded)
        .count();
    if failed > 0 {
        return Err(format!("{failed} of {count} jobs did not succeed").into());
    }
    Ok(())
}
