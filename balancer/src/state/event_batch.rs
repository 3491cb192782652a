//! One `events.lua` call: the batch of agent events it applies
//! ([`EventArgs`]) and what it answered for each ([`EventReply`]).
//!
//! The script replies with one flat string array per event; what the
//! positions after the first mean depends on the event's kind and that
//! first word, so decoding needs both and happens here, once.

use fleet_protocol::{AgentEvent, AttemptRecord};

use super::error::{StoreError, StoreResult};
use super::records::decode_history;

/// The kind of an agent event, as `events.lua` dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Register,
    Heartbeat,
    Started,
    Completed,
    Failed,
}

impl EventKind {
    /// The name the script dispatches on (`AgentEvent::type_name`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Register => "register",
            EventKind::Heartbeat => "heartbeat",
            EventKind::Started => "started",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
        }
    }

    /// The kind named `name`, if it is one.
    pub fn parse(name: &str) -> Option<EventKind> {
        [
            EventKind::Register,
            EventKind::Heartbeat,
            EventKind::Started,
            EventKind::Completed,
            EventKind::Failed,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

impl From<&AgentEvent> for EventKind {
    fn from(event: &AgentEvent) -> EventKind {
        match event {
            AgentEvent::Register(_) => EventKind::Register,
            AgentEvent::Heartbeat(_) => EventKind::Heartbeat,
            AgentEvent::Started(_) => EventKind::Started,
            AgentEvent::Completed(_) => EventKind::Completed,
            AgentEvent::Failed(_) => EventKind::Failed,
        }
    }
}

/// The ARGV tail of one `events.lua` call: per event, its type, its field
/// count, then its fields.
#[derive(Debug, Default)]
pub struct EventArgs {
    pub(super) fields: Vec<String>,
    pub(super) kinds: Vec<EventKind>,
}

impl EventArgs {
    pub fn push(&mut self, kind: EventKind, fields: Vec<String>) {
        self.fields.push(kind.as_str().to_string());
        self.fields.push(fields.len().to_string());
        self.fields.extend(fields);
        self.kinds.push(kind);
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

/// What `events.lua` did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventReply {
    /// `register`: the agent is alive and holds `leases`. When it
    /// restarted, its old leases ended as failed attempts; `dead` are
    /// those that spent their last attempt.
    Registered {
        leases: u32,
        dead: Vec<DeadLetter>,
    },
    /// `heartbeat`: applied. Each of `dropped` was a running lease the
    /// agent no longer reports, now ended as a failed attempt.
    Beat {
        dropped: Vec<Dropped>,
    },
    /// `heartbeat` from an agent not alive here.
    NotAlive(NotAlive),
    /// `started`: the job is running.
    Started,
    /// `completed`: this result is the job's.
    Accepted(Completion),
    /// `completed` again for the result already accepted (a redelivery).
    DuplicateCompletion(Completion),
    /// `failed`: the attempt ended; the job is queued again or dead.
    Failed(AttemptEnded),
    /// `failed` again for the attempt that already dead-lettered the job.
    DuplicateDead {
        history: Vec<AttemptRecord>,
    },
    /// `started` again for a job already running (a redelivery).
    Duplicate,
    /// The event's attempt is not the job's live lease.
    Stale(StaleReason),
    UnknownJob,
    /// The script knows no such event type.
    UnknownEvent,
}

/// A job dead-lettered by an agent's restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub job_id: String,
    pub history: Vec<AttemptRecord>,
}

/// A running lease a heartbeat no longer listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub job_id: String,
    pub ended: AttemptEnded,
}

/// What a failed attempt led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnded {
    Requeued,
    /// Its last attempt: dead, with this history.
    Dead {
        history: Vec<AttemptRecord>,
    },
}

/// Why a heartbeat's agent is not alive here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAlive {
    UnknownAgent,
    DeadAgent,
    StaleIncarnation,
}

/// Why an event about a job was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// Another agent holds the lease: forged or misrouted.
    NotLeaseHolder,
    /// An earlier attempt's event, late.
    StaleAttempt,
    /// The attempt is no longer live (the job ended or moved on).
    NotLive,
}

/// What an accepted completion carries back: the job's history and its
/// milestones (balancer clock), each absent when Redis had none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub history: Vec<AttemptRecord>,
    pub submitted_at_ms: Option<u64>,
    pub assigned_at_ms: Option<u64>,
    pub started_at_ms: Option<u64>,
    pub assigned_at_us: Option<u64>,
    pub started_at_us: Option<u64>,
}

impl EventReply {
    /// The script's word for this reply, for logs and metrics.
    pub fn status(&self) -> &'static str {
        match self {
            EventReply::Registered { .. } | EventReply::Beat { .. } | EventReply::Started => "ok",
            EventReply::NotAlive(n) => n.as_str(),
            EventReply::Accepted(_) => "accepted",
            EventReply::DuplicateCompletion(_) | EventReply::Duplicate => "duplicate",
            EventReply::Failed(ended) => ended.as_str(),
            EventReply::DuplicateDead { .. } => "duplicate_dead",
            EventReply::Stale(_) => "stale",
            EventReply::UnknownJob => "unknown_job",
            EventReply::UnknownEvent => "unknown_event",
        }
    }

    /// Reads the reply to an event of `kind`.
    pub fn decode(kind: EventKind, reply: Vec<String>) -> StoreResult<EventReply> {
        let bad = |detail: String| StoreError::Reply {
            script: "events",
            detail: format!("{} reply {detail}", kind.as_str()),
        };
        let mut fields = reply.into_iter();
        let status = fields.next().unwrap_or_default();
        let rest: Vec<String> = fields.collect();
        let at = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok());
        let history = || rest.first().map(|h| decode_history(h)).unwrap_or_default();
        Ok(match (kind, status.as_str()) {
            (_, "unknown_job") => EventReply::UnknownJob,
            (_, "unknown_event") => EventReply::UnknownEvent,
            (_, "stale") => EventReply::Stale(match rest.first().map(String::as_str) {
                Some("not_lease_holder") => StaleReason::NotLeaseHolder,
                Some("stale_attempt") => StaleReason::StaleAttempt,
                Some("not_live") => StaleReason::NotLive,
                other => return Err(bad(format!("stale for {other:?}"))),
            }),
            (EventKind::Register, "ok") => {
                let leases = rest
                    .first()
                    .and_then(|l| l.parse().ok())
                    .ok_or_else(|| bad("without a lease count".into()))?;
                let dead = rest[1..]
                    .chunks_exact(2)
                    .map(|pair| DeadLetter {
                        job_id: pair[0].clone(),
                        history: decode_history(&pair[1]),
                    })
                    .collect();
                EventReply::Registered { leases, dead }
            }
            (EventKind::Heartbeat, "ok") => EventReply::Beat {
                dropped: rest
                    .chunks_exact(3)
                    .map(|f| {
                        let ended = AttemptEnded::from_parts(&f[1], &f[2])
                            .ok_or_else(|| bad(format!("drops {} as {:?}", f[0], f[1])))?;
                        Ok(Dropped {
                            job_id: f[0].clone(),
                            ended,
                        })
                    })
                    .collect::<StoreResult<_>>()?,
            },
            (EventKind::Heartbeat, "unknown_agent") => EventReply::NotAlive(NotAlive::UnknownAgent),
            (EventKind::Heartbeat, "dead_agent") => EventReply::NotAlive(NotAlive::DeadAgent),
            (EventKind::Heartbeat, "stale_incarnation") => {
                EventReply::NotAlive(NotAlive::StaleIncarnation)
            }
            (EventKind::Started, "ok") => EventReply::Started,
            (EventKind::Started, "duplicate") => EventReply::Duplicate,
            (EventKind::Completed, "accepted" | "duplicate") => {
                let completion = Completion {
                    history: history(),
                    submitted_at_ms: at(1),
                    assigned_at_ms: at(2),
                    started_at_ms: at(3),
                    assigned_at_us: at(4),
                    started_at_us: at(5),
                };
                if status == "accepted" {
                    EventReply::Accepted(completion)
                } else {
                    EventReply::DuplicateCompletion(completion)
                }
            }
            (EventKind::Failed, "requeued" | "dead") => EventReply::Failed(
                AttemptEnded::from_parts(&status, rest.first().map_or("", String::as_str))
                    .ok_or_else(|| bad(format!("{status:?}")))?,
            ),
            (EventKind::Failed, "duplicate_dead") => {
                EventReply::DuplicateDead { history: history() }
            }
            (_, other) => return Err(bad(format!("{other:?} is not one it gives"))),
        })
    }
}

impl AttemptEnded {
    fn from_parts(status: &str, history: &str) -> Option<AttemptEnded> {
        match status {
            "requeued" => Some(AttemptEnded::Requeued),
            "dead" => Some(AttemptEnded::Dead {
                history: decode_history(history),
            }),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptEnded::Requeued => "requeued",
            AttemptEnded::Dead { .. } => "dead",
        }
    }
}

impl NotAlive {
    pub fn as_str(self) -> &'static str {
        match self {
            NotAlive::UnknownAgent => "unknown_agent",
            NotAlive::DeadAgent => "dead_agent",
            NotAlive::StaleIncarnation => "stale_incarnation",
        }
    }
}

impl StaleReason {
    /// The script's word, which metrics count refusals by.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::NotLeaseHolder => "not_lease_holder",
            StaleReason::StaleAttempt => "stale_attempt",
            StaleReason::NotLive => "not_live",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HISTORY: &str =
        r#"[{"attempt":1,"agent_id":"a","outcome":"failed","error":"x","duration_ms":5}]"#;

    fn one_attempt() -> Vec<AttemptRecord> {
        serde_json::from_str(HISTORY).unwrap_or_default()
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ok_means_what_the_event_kind_says() {
        let register = EventReply::decode(EventKind::Register, words(&["ok", "2", "j", HISTORY]));
        assert_eq!(
            register.ok(),
            Some(EventReply::Registered {
                leases: 2,
                dead: vec![DeadLetter {
                    job_id: "j".into(),
                    history: one_attempt()
                }]
            })
        );
        let beat = EventReply::decode(
            EventKind::Heartbeat,
            words(&["ok", "a", "requeued", "", "b", "dead", HISTORY]),
        );
        assert_eq!(
            beat.ok(),
            Some(EventReply::Beat {
                dropped: vec![
                    Dropped {
                        job_id: "a".into(),
                        ended: AttemptEnded::Requeued
                    },
                    Dropped {
                        job_id: "b".into(),
                        ended: AttemptEnded::Dead {
                            history: one_attempt()
                        }
                    },
                ]
            })
        );
        let started = EventReply::decode(EventKind::Started, words(&["ok"]));
        assert_eq!(started.ok(), Some(EventReply::Started));
    }

    #[test]
    fn a_completion_s_missing_milestones_read_as_none() {
        let reply = EventReply::decode(
            EventKind::Completed,
            words(&["accepted", HISTORY, "10", "20", "", "20000", ""]),
        );
        let Ok(EventReply::Accepted(c)) = reply else {
            panic!("accepted expected: {reply:?}");
        };
        assert_eq!(
            (c.submitted_at_ms, c.assigned_at_ms, c.started_at_ms),
            (Some(10), Some(20), None)
        );
        assert_eq!((c.assigned_at_us, c.started_at_us), (Some(20000), None));
        assert_eq!(c.history.len(), 1);
    }

    #[test]
    fn a_reply_the_script_never_gives_is_an_error_not_a_guess() {
        for (kind, reply) in [
            (EventKind::Register, words(&["ok"])),
            (EventKind::Started, words(&["accepted"])),
            (EventKind::Failed, words(&["stale", "because"])),
            (EventKind::Heartbeat, words(&["ok", "a", "vanished", ""])),
            (EventKind::Completed, Vec::new()),
        ] {
            let decoded = EventReply::decode(kind, reply.clone());
            assert!(
                matches!(decoded, Err(StoreError::Reply { .. })),
                "{kind:?} {reply:?}: {decoded:?}"
            );
        }
        assert_eq!(
            EventReply::decode(EventKind::Started, words(&["stale", "not_live"])).ok(),
            Some(EventReply::Stale(StaleReason::NotLive))
        );
    }

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for kind in [
            EventKind::Register,
            EventKind::Heartbeat,
            EventKind::Started,
            EventKind::Completed,
            EventKind::Failed,
        ] {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("teleport"), None);
    }
}
