//! `fleetctl cancel ID` and `fleetctl retry ID`: an operator moves a job.

use crate::{balancer_api, Cli};

/// `action` is `cancel` or `retry`, the balancer route's last segment.
pub async fn run(cli: &Cli, id: &str, action: &str) -> anyhow::Result<i32> {
    fleet_protocol::is_valid_token(id)?;
    let reply = balancer_api::post(
        &cli.balancer_url,
        cli.admin_token.as_deref(),
        &format!("/api/jobs/{id}/{action}"),
    )
    .await?;
    if cli.json {
        println!("{reply}");
    } else {
        println!("{id}: {}", reply["state"].as_str().unwrap_or("done"));
    }
    Ok(0)
}
