//! Events from agents to the balancer, on `fleet.events.<type>.<agent_id>`.
//!
//! They go through the `FLEET_EVENTS` stream so that a balancer that is down
//! finds them waiting when it returns. Every job event carries the job's
//! attempt number, the fencing token of its lease: an event from an older
//! attempt or from another agent is recorded and changes nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capabilities::Capabilities;

/// An agent announces itself (at start, and when the balancer asks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub agent_id: String,
    /// A fresh id per agent process: a new one means the agent restarted
    /// and no longer runs what its previous process held.
    pub incarnation: String,
    /// How many jobs it runs at once.
    pub slots: u32,
    /// How many more it will hold, not yet started, to hide dispatch
    /// latency (the balancer leases up to slots + prefetch).
    #[serde(default)]
    pub prefetch: u32,
    pub capabilities: Capabilities,
}

/// A job an agent reports as running, in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunningJob {
    pub job_id: String,
    pub attempt: u32,
}

/// Sent every heartbeat interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub agent_id: String,
    pub incarnation: String,
    /// Every job occupying one of the agent's slots right now.
    pub running: Vec<RunningJob>,
    /// Prefetched jobs held, not yet started. Listing them renews their
    /// leases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<RunningJob>,
    /// Jobs that ended whose terminal event is still being sent: the agent
    /// holds them, but they no longer take a slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finishing: Vec<RunningJob>,
    /// Each GPU's state now, where the agent can read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuStatus>,
    /// The agent is shutting down (SIGTERM): it finishes what it holds and
    /// must be given nothing new. Unlike an operator's drain, this ends
    /// with the process: the next incarnation registers without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
}

/// One GPU's state in a heartbeat; each reading is optional (no NVML, no
/// reading).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuStatus {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_pct: Option<f32>,
}

/// The agent began running an assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub agent_id: String,
    pub job_id: String,
    pub attempt: u32,
    /// How many jobs the agent is running, this one included: the agent's
    /// own count, which tests hold against its slots.
    pub running: u32,
}

/// The attempt succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub agent_id: String,
    pub job_id: String,
    pub attempt: u32,
    pub result: Value,
    pub duration_ms: u64,
    /// When the agent began the attempt, in µs since the epoch on its own
    /// clock: when the work really started, also for a job too short to
    /// send `started`. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_us: Option<u64>,
}

/// The attempt failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub agent_id: String,
    pub job_id: String,
    pub attempt: u32,
    pub error: String,
    pub duration_ms: u64,
    /// The agent stopped before the job ended and hands it back: not the
    /// job's fault, so the attempt is spared (as one lost to a crash), and
    /// not the agent's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handed_back: bool,
}

/// Any agent event, named by the `<type>` token of its subject.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    Register(Register),
    Heartbeat(Heartbeat),
    Started(Started),
    Completed(Completed),
    Failed(Failed),
}

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEvent {
    #[error("event is {size} bytes; the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("{kind} event is not UTF-8 text")]
    NotUtf8 { kind: &'static str },
    #[error("subject {0:?} is not fleet.events.<type>.<agent_id>")]
    Subject(String),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("malformed {kind} event: {error}")]
    Malformed { kind: &'static str, error: String },
    #[error("event body names agent {body:?} but was published by {subject:?}")]
    AgentMismatch { subject: String, body: String },
}

impl BadEvent {
    /// A short stable name for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            BadEvent::TooLarge { .. } => "too_large",
            BadEvent::NotUtf8 { .. } => "not_utf8",
            BadEvent::Subject(_) => "bad_subject",
            BadEvent::UnknownType(_) => "unknown_type",
            BadEvent::Malformed { .. } => "malformed",
            BadEvent::AgentMismatch { .. } => "agent_mismatch",
        }
    }
}

impl AgentEvent {
    /// The `<type>` token of this event's subject.
    pub fn type_name(&self) -> &'static str {
        match self {
            AgentEvent::Register(_) => "register",
            AgentEvent::Heartbeat(_) => "heartbeat",
            AgentEvent::Started(_) => "started",
            AgentEvent::Completed(_) => "completed",
            AgentEvent::Failed(_) => "failed",
        }
    }

    pub fn agent_id(&self) -> &str {
        match self {
            AgentEvent::Register(e) => &e.agent_id,
            AgentEvent::Heartbeat(e) => &e.agent_id,
            AgentEvent::Started(e) => &e.agent_id,
            AgentEvent::Completed(e) => &e.agent_id,
            AgentEvent::Failed(e) => &e.agent_id,
        }
    }

    /// The JSON body of this event.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            AgentEvent::Register(e) => serde_json::to_vec(e),
            AgentEvent::Heartbeat(e) => serde_json::to_vec(e),
            AgentEvent::Started(e) => serde_json::to_vec(e),
            AgentEvent::Completed(e) => serde_json::to_vec(e),
            AgentEvent::Failed(e) => serde_json::to_vec(e),
        }
    }

    /// Decodes an event from its subject and body. The agent id in the
    /// subject and in the body must agree.
    pub fn decode(subject: &str, payload: &[u8]) -> Result<AgentEvent, BadEvent> {
        let mut tokens = subject.split('.');
        let (Some("fleet"), Some("events"), Some(kind), Some(agent), None) = (
            tokens.next(),
            tokens.next(),
            tokens.next(),
            tokens.next(),
            tokens.next(),
        ) else {
            return Err(BadEvent::Subject(subject.to_string()));
        };
        fn body<T: serde::de::DeserializeOwned>(
            kind: &'static str,
            payload: &[u8],
        ) -> Result<T, BadEvent> {
            serde_json::from_slice(payload).map_err(|e| {
                if std::str::from_utf8(payload).is_err() {
                    BadEvent::NotUtf8 { kind }
                } else {
                    BadEvent::Malformed {
                        kind,
                        error: e.to_string(),
                    }
                }
            })
        }
        if payload.len() > crate::defaults::MAX_EVENT_BYTES {
            return Err(BadEvent::TooLarge {
                size: payload.len(),
                max: crate::defaults::MAX_EVENT_BYTES,
            });
        }
        if crate::ids::is_valid_token(agent).is_err() {
            return Err(BadEvent::Subject(subject.to_string()));
        }
        let event = match kind {
            "register" => AgentEvent::Register(body("register", payload)?),
            "heartbeat" => AgentEvent::Heartbeat(body("heartbeat", payload)?),
            "started" => AgentEvent::Started(body("started", payload)?),
            "completed" => AgentEvent::Completed(body("completed", payload)?),
            "failed" => AgentEvent::Failed(body("failed", payload)?),
            other => return Err(BadEvent::UnknownType(other.to_string())),
        };
        if event.agent_id() != agent {
            return Err(BadEvent::AgentMismatch {
                subject: agent.to_string(),
                body: event.agent_id().to_string(),
            });
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;

    #[test]
    fn oversized_and_non_text_events_are_named() {
        let big = vec![b' '; defaults::MAX_EVENT_BYTES + 1];
        assert_eq!(
            AgentEvent::decode("fleet.events.completed.a1", &big)
                .err()
                .map(|e| e.reason()),
            Some("too_large")
        );
        assert_eq!(
            AgentEvent::decode("fleet.events.completed.a1", b"\xff\xfe")
                .err()
                .map(|e| e.reason()),
            Some("not_utf8")
        );
    }

    #[test]
    fn round_trips_through_subject_and_body() {
        let e = AgentEvent::Started(Started {
            agent_id: "a1".into(),
            job_id: "j1".into(),
            attempt: 2,
            running: 1,
        });
        let body = e.to_json().unwrap_or_default();
        let subject = crate::subjects::event(e.type_name(), e.agent_id());
        assert_eq!(AgentEvent::decode(&subject, &body), Ok(e));
    }

    #[test]
    fn refuses_mismatched_agent_bad_subject_and_garbage() {
        let body = br#"{"agent_id":"a2","job_id":"j","attempt":1,"running":1}"#;
        assert!(matches!(
            AgentEvent::decode("fleet.events.started.a1", body),
            Err(BadEvent::AgentMismatch { .. })
        ));
        assert!(matches!(
            AgentEvent::decode("fleet.events.started", body),
            Err(BadEvent::Subject(_))
        ));
        assert!(matches!(
            AgentEvent::decode("fleet.events.exploded.a2", body),
            Err(BadEvent::UnknownType(_))
        ));
        assert!(matches!(
            AgentEvent::decode("fleet.events.started.a2", b"{nope"),
            Err(BadEvent::Malformed { .. })
        ));
    }
}
