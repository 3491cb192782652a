//! The Redis key layout.
//!
//! Every key starts with `fleet:` and carries the hash tag `{fleet}`, so all
//! keys live in one slot: every Lua script touches one slot and the layout
//! runs unchanged on Redis Cluster. The Lua scripts build the same names
//! from the prefix they are given (see `balancer/src/lua/lib.lua`); the two
//! must change together.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:job:<id>` | hash | one job: spec, state, attempt, lease holder, result, history |
//! | `P:queue` | sorted set | queued job ids, score = (3 − priority rank) · 2⁴⁴ + arrival |
//! | `P:leases` | sorted set | leased job ids by lease deadline (ms) |
//! | `P:seq` | string | arrival counter |
//! | `P:agents` | set | every agent id registered and not yet forgotten (dead past `--forget-agents-after`) |
//! | `P:agent:<id>` | hash | one agent: slots, capabilities, liveness, counters |
//! | `P:agent:<id>:jobs` | set | job ids leased to that agent |
//! | `P:agent:<id>:gpus` | hash | device index → the job holding that GPU |
//! | `P:agent:<id>:perf` | hash | `<kind>\|ms`, `<kind>\|ok`, `<kind>\|n`: moving averages of run time and success |
//! | `P:parked` | sorted set | queued jobs no live agent can run, by when they became unschedulable (ms) |
//! | `P:agents:seen` | sorted set | alive agent ids by last heartbeat (ms), for the sweeper |
//! | `P:dead` | sorted set | dead-lettered job ids by time of death (ms) |
//! | `P:leader` | string | `<balancer id>:<epoch>`, the leadership lease (with a TTL) |
//! | `P:leader:epoch` | string | leadership counter: each new leader's epoch |
//! | `P:stats` | hash | fleet-wide counters behind the stats document |
//! | `P:config` | hash | `retain_finished_ms`: the leader's retention of finished jobs (`0`: forever) |

/// The default prefix `P`.
pub const DEFAULT_PREFIX: &str = "fleet:{fleet}";

/// Builds key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    pub fn queue(&self) -> String {
        format!("{}:queue", self.prefix)
    }

    pub fn leases(&self) -> String {
        format!("{}:leases", self.prefix)
    }

    pub fn agents(&self) -> String {
        format!("{}:agents", self.prefix)
    }

    pub fn agent(&self, id: &str) -> String {
        format!("{}:agent:{id}", self.prefix)
    }

    pub fn agent_jobs(&self, id: &str) -> String {
        format!("{}:agent:{id}:jobs", self.prefix)
    }

    pub fn agent_gpus(&self, id: &str) -> String {
        format!("{}:agent:{id}:gpus", self.prefix)
    }

    pub fn agent_perf(&self, id: &str) -> String {
        format!("{}:agent:{id}:perf", self.prefix)
    }

    pub fn parked(&self) -> String {
        format!("{}:parked", self.prefix)
    }

    pub fn dead(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    pub fn leader(&self) -> String {
        format!("{}:leader", self.prefix)
    }

    pub fn stats(&self) -> String {
        format!("{}:stats", self.prefix)
    }

    pub fn config(&self) -> String {
        format!("{}:config", self.prefix)
    }
}
