//! Messages from the balancer to one agent's control subject
//! (`fleet.agent.<id>.control`): register again, or stop an attempt.
//!
//! These are core NATS, fire and forget: each exists to speed something
//! up that the leases already guarantee (an agent that misses a cancel has
//! its late events refused; one that misses a register request gets
//! another at its next heartbeat).

use fleet_protocol::{subjects, ControlMessage};

/// Sends `message` to `agent`, logging (not failing) when it cannot.
pub async fn send(nats: &async_nats::Client, agent: &str, message: &ControlMessage) {
    let body = match serde_json::to_vec(message) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(agent_id = %agent, error = %e, "cannot encode a control message");
            return;
        }
    };
    if let Err(e) = nats.publish(subjects::control(agent), body.into()).await {
        tracing::warn!(agent_id = %agent, error = %e, ?message, "cannot send a control message");
    }
}
