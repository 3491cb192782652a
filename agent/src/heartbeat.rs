//! The heartbeat: every interval, tell the balancer this agent is alive
//! and which jobs it holds; and at once when the runner asks (it started
//! shutting down).

use std::sync::Arc;
use std::time::Duration;

use fleet_protocol::AgentEvent;

use crate::reporter::Reporter;
use crate::runner::Runner;

pub async fn run(runner: Arc<Runner>, reporter: Reporter, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = runner.beat_requested() => {}
        }
        let beat = runner.heartbeat();
        let agent_id = beat.agent_id.clone();
        // A lost heartbeat is replaced by the next one: no retry.
        match reporter.send(&AgentEvent::Heartbeat(beat), None).await {
            Ok(ack) => {
                if let Err(e) = ack.await {
                    tracing::warn!(agent_id = %agent_id, error = %e, "heartbeat not stored");
                }
            }
            Err(e) => tracing::warn!(agent_id = %agent_id, error = %e, "cannot send heartbeat"),
        }
    }
}
