//! `fleetctl cancel ID` and `fleetctl retry ID`: an operator moves a job.

use fleet_protocol::api::JobChanged;

use crate::{balancer_api, Cli};

/// What an operator asks of one job.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Cancel,
    Retry,
}

impl Action {
    /// The balancer route's last segment.
    fn route(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Retry => "retry",
        }
    }
}

pub async fn run(cli: &Cli, id: &str, action: Action) -> anyhow::Result<i32> {
    fleet_protocol::is_valid_token(id)?;
    let (reply, changed): (_, JobChanged) = balancer_api::post(
        &cli.balancer_url,
        cli.admin_token.as_deref(),
        &format!("/api/jobs/{id}/{}", action.route()),
    )
    .await?;
    if cli.json {
        println!("{reply}");
    } else {
        println!("{id}: {}", changed.state);
    }
    Ok(0)
}
