//! The heartbeat: every interval, tell the balancer this agent is alive
//! and which jobs it is running.

use std::sync::Arc;
use std::time::Duration;

use fleet_protocol::{AgentEvent, Heartbeat};

use crate::reporter::Reporter;
use crate::runner::Runner;

pub async fn run(
    runner: Arc<Runner>,
    reporter: Reporter,
    interval: Duration,
    register: fleet_protocol::Register,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let beat = AgentEvent::Heartbeat(Heartbeat {
            agent_id: register.agent_id.clone(),
            incarnation: register.incarnation.clone(),
            running: runner.running_jobs(),
        });
        // A lost heartbeat is replaced by the next one: no retry.
        match reporter.send(&beat, None).await {
            Ok(ack) => {
                if let Err(e) = ack.await {
                    tracing::warn!(agent_id = %register.agent_id, error = %e, "heartbeat not stored");
                }
            }
            Err(e) => {
                tracing::warn!(agent_id = %register.agent_id, error = %e, "cannot send heartbeat")
            }
        }
    }
}
