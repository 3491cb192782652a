//! NATS subject names. Every subject fleet uses is built here.

/// Producers publish job submissions here (stream `FLEET_JOBS`).
pub const SUBMIT: &str = "fleet.jobs.submit";
/// Every agent event (stream `FLEET_EVENTS`).
pub const EVENTS_ALL: &str = "fleet.events.>";
/// Every job result (stream `FLEET_RESULTS`).
pub const RESULTS_ALL: &str = "fleet.results.>";
/// Dead-lettered jobs, as [`crate::JobResult`]s.
pub const DEAD: &str = "fleet.dead";
/// Refused submissions, as [`crate::Rejection`]s.
pub const REJECTED: &str = "fleet.rejected";

/// Where the balancer sends an agent its assignments.
pub fn assign(agent_id: &str) -> String {
    format!("fleet.agent.{agent_id}.assign")
}

/// The inbox prefix an agent's connection uses for replies (JetStream
/// acks), under its own id so that NATS permissions can keep each agent
/// out of every other connection's replies.
pub fn agent_inbox_prefix(agent_id: &str) -> String {
    format!("_INBOX_AGENT.{agent_id}")
}

/// Where the balancer sends an agent control messages.
pub fn control(agent_id: &str) -> String {
    format!("fleet.agent.{agent_id}.control")
}

/// Where an agent publishes an event of `kind` (`register`, `heartbeat`,
/// `started`, `completed`, `failed`).
pub fn event(kind: &str, agent_id: &str) -> String {
    format!("fleet.events.{kind}.{agent_id}")
}

/// Where a job's terminal result is published.
pub fn result(job_id: &str) -> String {
    format!("fleet.results.{job_id}")
}
