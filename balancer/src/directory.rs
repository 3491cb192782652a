//! The balancer's in-memory view of the agents.
//!
//! Redis holds the truth (the assign script re-checks every lease against
//! it); this view exists so that a placement decision costs no round trip.
//! It is rebuilt from Redis at start, then kept current by the events the
//! balancer applies: registrations set an agent outright, leases and
//! releases move its count by one, and any event refreshes its liveness.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use fleet_protocol::Capabilities;

use crate::store::AgentRecord;

/// One agent as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub id: String,
    pub slots: u32,
    pub leases: u32,
    pub capabilities: Capabilities,
    pub last_seen_ms: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// False once Redis refused it as not alive.
    pub alive: bool,
}

impl AgentView {
    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.leases)
    }

    /// Successes over finished attempts; 1.0 before any finished.
    pub fn success_rate(&self) -> f64 {
        let total = self.succeeded + self.failed;
        if total == 0 {
            1.0
        } else {
            self.succeeded as f64 / total as f64
        }
    }
}

/// The agent map, shared by the scheduler, the event consumer and HTTP.
pub struct Directory {
    agents: Mutex<HashMap<String, AgentView>>,
    heartbeat_timeout_ms: u64,
}

impl Directory {
    pub fn new(heartbeat_timeout: Duration) -> Directory {
        Directory {
            agents: Mutex::new(HashMap::new()),
            heartbeat_timeout_ms: heartbeat_timeout.as_millis() as u64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AgentView>> {
        // A panic while holding this lock cannot leave the map half-updated
        // in a way worse than stale counts, which Redis re-checks anyway.
        self.agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an agent last heard from at `last_seen_ms` is healthy at `now_ms`.
    pub fn is_healthy(&self, agent: &AgentView, now_ms: u64) -> bool {
        agent.alive && now_ms.saturating_sub(agent.last_seen_ms) <= self.heartbeat_timeout_ms
    }

    /// Replaces the whole view with what Redis has.
    pub fn reset(&self, records: Vec<AgentRecord>) {
        self.lock().clear();
        for r in records {
            self.restore(r);
        }
    }

    /// The sweeper declared the agent dead.
    pub fn mark_dead(&self, id: &str) {
        if let Some(a) = self.lock().get_mut(id) {
            a.alive = false;
        }
    }

    /// Loads an agent as Redis has it.
    pub fn restore(&self, r: AgentRecord) {
        self.lock().insert(
            r.id.clone(),
            AgentView {
                id: r.id,
                slots: r.slots,
                leases: r.leases,
                capabilities: r.capabilities,
                last_seen_ms: r.last_seen_ms,
                succeeded: r.succeeded,
                failed: r.failed,
                alive: r.alive,
            },
        );
    }

    /// An agent (re)registered with `leases` still held.
    pub fn register(
        &self,
        id: &str,
        slots: u32,
        capabilities: Capabilities,
        leases: u32,
        now_ms: u64,
    ) {
        let mut agents = self.lock();
        let entry = agents.entry(id.to_string()).or_insert_with(|| AgentView {
            id: id.to_string(),
            slots,
            leases,
            capabilities: Capabilities::default(),
            last_seen_ms: now_ms,
            succeeded: 0,
            failed: 0,
            alive: true,
        });
        entry.slots = slots;
        entry.leases = leases;
        entry.capabilities = capabilities;
        entry.last_seen_ms = now_ms;
        entry.alive = true;
    }

    /// The agent was heard from.
    pub fn touch(&self, id: &str, now_ms: u64) {
        if let Some(a) = self.lock().get_mut(id) {
            a.last_seen_ms = a.last_seen_ms.max(now_ms);
        }
    }

    /// A lease was committed to the agent.
    pub fn leased(&self, id: &str) {
        if let Some(a) = self.lock().get_mut(id) {
            a.leases += 1;
        }
    }

    /// A lease of the agent ended; `succeeded` says how its attempt went.
    pub fn released(&self, id: &str, succeeded: bool) {
        if let Some(a) = self.lock().get_mut(id) {
            a.leases = a.leases.saturating_sub(1);
            if succeeded {
                a.succeeded += 1;
            } else {
                a.failed += 1;
            }
        }
    }

    /// Redis refused a lease for this agent; take its word for the count.
    pub fn correct(&self, id: &str, reason: &str) {
        if let Some(a) = self.lock().get_mut(id) {
            match reason {
                "agent_full" => a.leases = a.slots,
                "agent_unavailable" => a.alive = false,
                _ => {}
            }
        }
    }

    /// A copy of every agent that can take work now.
    pub fn available(&self, now_ms: u64) -> Vec<AgentView> {
        self.lock()
            .values()
            .filter(|a| a.free_slots() > 0 && self.is_healthy(a, now_ms))
            .cloned()
            .collect()
    }

    /// A copy of every agent.
    pub fn snapshot(&self) -> Vec<AgentView> {
        let mut all: Vec<AgentView> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}
