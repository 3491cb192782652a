//! The balancer's in-memory view of the agents.
//!
//! Redis holds the truth (the assign script re-checks every lease, slot
//! and GPU against it); this view exists so that a placement decision
//! costs no round trip. It is rebuilt from Redis when the balancer starts
//! leading, then kept current by what the balancer itself commits and
//! applies: registrations set an agent outright, leases and releases move
//! its slots and GPUs, heartbeats refresh its liveness and temperatures,
//! and the sweeper refreshes its performance history.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleet_protocol::Capabilities;

use crate::state::{AgentRecord, Perf};

/// How long a model family counts as warm on an agent after it last ran.
const AFFINITY_WINDOW_MS: u64 = 10 * 60 * 1000;
/// At or above this GPU temperature (°C) an agent takes no new work.
pub const TOO_HOT_C: f32 = 90.0;

/// One agent as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub id: String,
    pub slots: u32,
    /// Not-started jobs it holds beyond its slots.
    pub prefetch: u32,
    pub leases: u32,
    pub capabilities: Capabilities,
    pub last_seen_ms: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// False once Redis refused it as not alive.
    pub alive: bool,
    pub draining: bool,
    /// The agent said it is shutting down: nothing new until it
    /// registers again.
    pub stopping: bool,
    /// Device index → the job holding it.
    pub gpu_jobs: HashMap<u32, String>,
    /// Hottest GPU at the last heartbeat, °C.
    pub temperature_c: Option<f32>,
    /// Busiest GPU at the last heartbeat, percent.
    pub utilization_pct: Option<f32>,
    /// Per workload kind.
    pub perf: HashMap<String, Perf>,
    /// Model family → when it was last assigned here (ms).
    pub recent_families: HashMap<String, u64>,
    /// A lease on it expired (an assignment never started, or a job
    /// overran): it gets no new work until it is heard from again. A
    /// crashed agent looks idle until its heartbeat timeout, and without
    /// this every retry would be offered to it first.
    pub suspect: bool,
}

impl From<AgentRecord> for AgentView {
    /// The agent as Redis last recorded it; what only heartbeats tell
    /// (temperatures, recent families, suspicion) starts unknown.
    fn from(record: AgentRecord) -> AgentView {
        AgentView {
            id: record.id,
            slots: record.slots,
            prefetch: record.prefetch,
            leases: record.leases,
            capabilities: record.capabilities,
            last_seen_ms: record.last_seen_ms,
            succeeded: record.succeeded,
            failed: record.failed,
            alive: record.alive,
            draining: record.draining,
            stopping: record.stopping,
            gpu_jobs: record.gpu_jobs,
            temperature_c: None,
            utilization_pct: None,
            perf: record.perf,
            recent_families: HashMap::new(),
            suspect: false,
        }
    }
}

impl AgentView {
    /// A freshly registered agent with nothing held.
    pub fn new(id: &str, slots: u32, capabilities: Capabilities, now_ms: u64) -> AgentView {
        AgentView {
            id: id.to_string(),
            slots,
            prefetch: 0,
            leases: 0,
            capabilities,
            last_seen_ms: now_ms,
            succeeded: 0,
            failed: 0,
            alive: true,
            draining: false,
            stopping: false,
            gpu_jobs: HashMap::new(),
            temperature_c: None,
            utilization_pct: None,
            perf: HashMap::new(),
            recent_families: HashMap::new(),
            suspect: false,
        }
    }

    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.leases)
    }

    /// Room for prefetched jobs once every slot is taken.
    pub fn free_prefetch(&self) -> u32 {
        (self.slots + self.prefetch)
            .saturating_sub(self.leases)
            .saturating_sub(self.free_slots())
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

    /// Which of `capabilities.gpus` are held, in that order.
    pub fn gpu_busy(&self) -> Vec<bool> {
        self.capabilities
            .gpus
            .iter()
            .map(|g| self.gpu_jobs.contains_key(&g.index))
            .collect()
    }

    /// Whether the family ran here recently.
    pub fn is_warm_for(&self, family: &str, now_ms: u64) -> bool {
        self.recent_families
            .get(family)
            .is_some_and(|&t| now_ms.saturating_sub(t) <= AFFINITY_WINDOW_MS)
    }

    /// Too hot to take more work until it cools down.
    pub fn too_hot(&self) -> bool {
        self.temperature_c.is_some_and(|t| t >= TOO_HOT_C)
    }
}

/// The agent map, shared by the scheduler, the event consumer and HTTP.
pub struct Directory {
    /// Shared snapshots: a scheduling round takes `Arc` clones (cheap at
    /// 10,000 agents); an update copies an agent only while a round holds it.
    agents: Mutex<HashMap<String, Arc<AgentView>>>,
    heartbeat_timeout_ms: u64,
    /// Bumped whenever the set of agents that could take work grows or
    /// changes shape, so the scheduler re-examines parked jobs.
    generation: AtomicU64,
}

impl Directory {
    pub fn new(heartbeat_timeout: Duration) -> Directory {
        Directory {
            agents: Mutex::new(HashMap::new()),
            heartbeat_timeout_ms: heartbeat_timeout.as_millis() as u64,
            generation: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Arc<AgentView>>> {
        // A panic while holding this lock cannot leave the map worse than
        // stale, and Redis re-checks every lease anyway.
        self.agents.lock()
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// A number that changes whenever the schedulable fleet changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether an agent was heard from within half the heartbeat timeout:
    /// only such agents get new work. One silent for longer is still
    /// healthy (its leases stand) but may have crashed, and a crashed
    /// agent looks idle; this halves the time new work can go to it.
    fn is_fresh(&self, agent: &AgentView, now_ms: u64) -> bool {
        now_ms.saturating_sub(agent.last_seen_ms) <= self.heartbeat_timeout_ms / 2
    }

    /// Whether an agent is healthy at `now_ms`: alive and heard from
    /// within the heartbeat timeout.
    pub fn is_healthy(&self, agent: &AgentView, now_ms: u64) -> bool {
        agent.alive && now_ms.saturating_sub(agent.last_seen_ms) <= self.heartbeat_timeout_ms
    }

    /// Replaces the whole view with what Redis has.
    pub fn reset(&self, records: Vec<AgentView>) {
        let mut agents = self.lock();
        agents.clear();
        for r in records {
            agents.insert(r.id.clone(), Arc::new(r));
        }
        drop(agents);
        self.changed();
    }

    /// An agent (re)registered with `(slots, prefetch)` and `leases` still held.
    pub fn register(
        &self,
        id: &str,
        (slots, prefetch): (u32, u32),
        capabilities: Capabilities,
        leases: u32,
        now_ms: u64,
    ) {
        let mut agents = self.lock();
        let entry =
            Arc::make_mut(agents.entry(id.to_string()).or_insert_with(|| {
                Arc::new(AgentView::new(id, slots, capabilities.clone(), now_ms))
            }));
        entry.slots = slots;
        entry.prefetch = prefetch;
        entry.leases = leases;
        entry.capabilities = capabilities;
        entry.last_seen_ms = now_ms;
        entry.alive = true;
        entry.suspect = false;
        entry.stopping = false;
        if leases == 0 {
            entry.gpu_jobs.clear();
        }
        drop(agents);
        self.changed();
    }

    /// The agent was heard from.
    pub fn touch(&self, id: &str, now_ms: u64) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            a.last_seen_ms = a.last_seen_ms.max(now_ms);
            a.suspect = false;
        }
    }

    /// A lease held by the agent expired: no new work for it until it is
    /// heard from ([`Directory::touch`]).
    pub fn mark_suspect(&self, id: &str) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            a.suspect = true;
        }
    }

    /// The agent's hottest and busiest GPU, from a heartbeat.
    pub fn thermal(&self, id: &str, temperature_c: Option<f32>, utilization_pct: Option<f32>) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            let was_hot = a.too_hot();
            a.temperature_c = temperature_c;
            a.utilization_pct = utilization_pct;
            if was_hot && !a.too_hot() {
                self.changed();
            }
        }
    }

    /// A lease was committed: `job` holds a slot and `gpus` of the agent.
    pub fn leased(&self, id: &str, job: &str, gpus: &[u32], family: Option<&str>, now_ms: u64) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            a.leases += 1;
            for &g in gpus {
                a.gpu_jobs.insert(g, job.to_string());
            }
            if let Some(f) = family {
                a.recent_families.insert(f.to_string(), now_ms);
            }
        }
    }

    /// `job`'s lease moved from this agent to another before it started.
    pub fn moved_away(&self, id: &str, job: &str) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            a.leases = a.leases.saturating_sub(1);
            a.gpu_jobs.retain(|_, holder| holder != job);
        }
    }

    /// `job`'s lease on the agent ended; `succeeded` says how its attempt went.
    pub fn released(&self, id: &str, job: &str, succeeded: bool) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            a.leases = a.leases.saturating_sub(1);
            a.gpu_jobs.retain(|_, holder| holder != job);
            if succeeded {
                a.succeeded += 1;
            } else {
                a.failed += 1;
            }
        }
    }

    /// Redis refused a lease for this agent; take its word for it.
    pub fn correct(&self, id: &str, reason: &str) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            match reason {
                "agent_full" => a.leases = a.slots + a.prefetch,
                "agent_unavailable" => a.alive = false,
                _ => {}
            }
        }
    }

    /// The sweeper forgot the agent (dead long enough, holding nothing).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The sweeper declared the agent dead.
    pub fn mark_dead(&self, id: &str) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            a.alive = false;
        }
    }

    /// An operator drained or undrained the agent.
    pub fn set_draining(&self, id: &str, draining: bool) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            a.draining = draining;
        }
        if !draining {
            self.changed();
        }
    }

    /// The agent is shutting down (its heartbeat said so).
    pub fn set_stopping(&self, id: &str) {
        if let Some(a) = self.lock().get_mut(id).map(Arc::make_mut) {
            a.stopping = true;
        }
    }

    /// Fresh performance history from Redis.
    pub fn set_perf(&self, perf: HashMap<String, HashMap<String, Perf>>) {
        let mut agents = self.lock();
        for (id, p) in perf {
            if let Some(a) = agents.get_mut(&id).map(Arc::make_mut) {
                a.perf = p;
            }
        }
    }

    /// A copy of every agent that can take work now: healthy, not
    /// draining, not too hot, with a free slot or prefetch room.
    pub fn available(&self, now_ms: u64) -> Vec<Arc<AgentView>> {
        self.lock()
            .values()
            .filter(|a| self.is_available(a, now_ms))
            .cloned()
            .collect()
    }

    /// `measure` summed over the agents [`Directory::available`] returns,
    /// without copying them; `None` when there are none.
    pub fn sum_available(&self, now_ms: u64, measure: impl Fn(&AgentView) -> u64) -> Option<u64> {
        self.lock()
            .values()
            .filter(|a| self.is_available(a, now_ms))
            .map(|a| measure(a))
            .reduce(|sum, m| sum + m)
    }

    fn is_available(&self, a: &AgentView, now_ms: u64) -> bool {
        a.free_slots() + a.free_prefetch() > 0
            && !a.suspect
            && self.is_fresh(a, now_ms)
            && self.schedulable(a, now_ms)
    }

    /// Healthy agents holding more leases than slots (prefetched jobs
    /// waiting), most backed up first: where idle agents can steal from.
    pub fn backed_up(&self, now_ms: u64) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .lock()
            .values()
            .filter(|a| a.leases > a.slots && self.is_healthy(a, now_ms))
            .map(|a| (a.id.clone(), a.leases - a.slots))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Every agent that could take work, busy or not: what decides whether
    /// a job can run anywhere at all.
    pub fn schedulable_agents(&self, now_ms: u64) -> Vec<Arc<AgentView>> {
        self.lock()
            .values()
            .filter(|a| self.schedulable(a, now_ms))
            .cloned()
            .collect()
    }

    fn schedulable(&self, a: &AgentView, now_ms: u64) -> bool {
        self.is_healthy(a, now_ms) && !a.draining && !a.stopping && !a.too_hot()
    }

    /// Every agent id.
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// A copy of every agent, by id.
    pub fn snapshot(&self) -> Vec<AgentView> {
        let mut all: Vec<AgentView> = self.lock().values().map(|a| (**a).clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_whose_lease_expired_gets_no_work_until_heard_from() {
        let directory = Directory::new(Duration::from_secs(15));
        directory.register("a", (2, 0), Capabilities::default(), 0, 1_000);
        assert_eq!(directory.available(1_000).len(), 1);
        directory.mark_suspect("a");
        assert!(directory.available(1_000).is_empty());
        // It still counts when deciding whether a job can run anywhere, so
        // nothing is parked as unschedulable on its account.
        assert_eq!(directory.schedulable_agents(1_000).len(), 1);
        directory.touch("a", 1_500);
        assert_eq!(directory.available(1_500).len(), 1);
        // Silent for over half the timeout: healthy, but given no work.
        assert!(directory.available(1_500 + 7_600).is_empty());
        assert_eq!(directory.schedulable_agents(1_500 + 7_600).len(), 1);
    }

    #[test]
    fn sums_over_the_available_agents_only() {
        let directory = Directory::new(Duration::from_secs(15));
        let slots = |a: &AgentView| u64::from(a.slots);
        assert_eq!(directory.sum_available(1_000, slots), None);
        directory.register("a", (2, 0), Capabilities::default(), 0, 1_000);
        directory.register("b", (3, 0), Capabilities::default(), 0, 1_000);
        assert_eq!(directory.sum_available(1_000, slots), Some(5));
        directory.mark_suspect("b");
        assert_eq!(directory.sum_available(1_000, slots), Some(2));
        directory.mark_suspect("a");
        assert_eq!(directory.sum_available(1_000, slots), None);
    }
}
