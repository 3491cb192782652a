//! Watching what agents report, from outside the balancer: a plain NATS
//! subscription to every agent event, decoded and kept in arrival order.

use parking_lot::Mutex;
use std::sync::Arc;

use fleet_protocol::{subjects, AgentEvent};
use futures::StreamExt;

/// Every agent event seen since [`EventSpy::start`].
#[derive(Clone)]
pub struct EventSpy {
    events: Arc<Mutex<Vec<AgentEvent>>>,
}

impl EventSpy {
    /// Subscribes before returning, so nothing published after this call is missed.
    pub async fn start(nats: &async_nats::Client) -> anyhow::Result<EventSpy> {
        let mut sub = nats.subscribe(subjects::EVENTS_ALL).await?;
        nats.flush().await?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Ok(e) = AgentEvent::decode(&m.subject, &m.payload) {
                    sink.lock().push(e);
                }
            }
        });
        Ok(EventSpy { events })
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<AgentEvent> {
        self.events.lock().clone()
    }

    /// Waits until an agent reported starting `job_id`.
    pub async fn wait_started(
        &self,
        job_id: &str,
        limit: std::time::Duration,
    ) -> anyhow::Result<()> {
        crate::wait_until(limit, &format!("{job_id} started"), || async {
            Ok(self.started().iter().any(|s| s.job_id == job_id))
        })
        .await
    }

    /// Every started event so far, in arrival order.
    pub fn started(&self) -> Vec<fleet_protocol::Started> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                AgentEvent::Started(s) => Some(s),
                _ => None,
            })
            .collect()
    }
}
