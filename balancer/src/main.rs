//! `fleet-balancer`: the service that places jobs on agents.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = fleet_balancer::Config::parse();
    fleet_runtime::logging::init(config.log_format, "info");
    fleet_balancer::run(config).await
}
