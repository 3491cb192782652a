//! Publishing the agent's events to JetStream.
//!
//! Job events carry `Nats-Msg-Id` = `<type>-<job>-<attempt>`, so a publish
//! retried after a lost ack is stored once. A job's terminal event is
//! retried until JetStream acknowledges it: dropping it would leave the job
//! to its lease timeout.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use fleet_client::streams;
use fleet_protocol::{subjects, AgentEvent};

#[derive(Clone)]
pub struct Reporter {
    js: jetstream::Context,
    agent_id: String,
}

/// The JetStream context agents publish through, once the events stream
/// exists: an agent may start before the balancer, so it makes sure its
/// events have a stream to land in. One context serves many simulated
/// agents.
pub async fn events_context(nats: async_nats::Client) -> jetstream::Context {
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(20_000)
        .backpressure_on_inflight(true)
        .build(nats);
    loop {
        match streams::ensure(&js, &[streams::EVENTS]).await {
            Ok(()) => return js,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the events stream yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

impl Reporter {
    pub fn new(js: jetstream::Context, agent_id: String) -> Reporter {
        Reporter { js, agent_id }
    }

    /// Starts publishing `event`; the returned future resolves to its ack.
    pub async fn send(
        &self,
        event: &AgentEvent,
        message_id: Option<&str>,
    ) -> anyhow::Result<PublishAckFuture> {
        let subject = subjects::event(event.type_name(), &self.agent_id);
        let mut publish = PublishMessage::build().payload(event.to_json()?.into());
        if let Some(id) = message_id {
            publish = publish.message_id(id);
        }
        Ok(self.js.send_publish(subject, publish).await?)
    }

    /// Publishes `event` and retries until JetStream has stored it.
    pub async fn send_reliably(&self, event: AgentEvent, message_id: Option<String>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let stored = match self.send(&event, message_id.as_deref()).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(agent_id = %self.agent_id, event = event.type_name(), error = %e, "event not stored; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The de-duplication id of a job event.
pub fn job_event_id(kind: &str, job_id: &str, attempt: u32) -> String {
    format!("{kind}-{job_id}-{attempt}")
}
