//! `fleetctl wait ID`: blocks until the job's result exists.

use std::time::Duration;

use fleet_client::Client;
use fleet_protocol::JobState;

use crate::Cli;

pub async fn run(cli: &Cli, id: &str, timeout: Duration) -> anyhow::Result<i32> {
    let client = Client::connect_with(&cli.nats).await?;
    let result = client.wait(id, timeout).await?;
    if cli.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(if result.state == JobState::Succeeded {
        0
    } else {
        1
    })
}
