//! The Lua scripts, loaded from `src/lua/` at compile time.
//!
//! `lib.lua` (key names and shared helpers) is prepended to each script, so
//! the helpers exist once in the source and each script stays one
//! self-contained EVAL. `events.lua` also carries every event handler, so
//! one call applies a whole batch of mixed events in stream order.

use redis::Script;

/// Every script the balancer runs.
pub struct Scripts {
    pub lead: Script,
    pub enqueue: Script,
    pub peek: Script,
    pub assign: Script,
    pub events: Script,
    pub expire: Script,
    pub cancel: Script,
    pub retry: Script,
    pub park: Script,
    pub unpark: Script,
    pub drain: Script,
    pub stealable: Script,
    pub steal: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            lead: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/lead.lua")
            )),
            expire: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/expire.lua")
            )),
            cancel: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/cancel.lua")
            )),
            retry: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/retry.lua")
            )),
            park: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/park.lua")
            )),
            unpark: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/unpark.lua")
            )),
            drain: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/drain.lua")
            )),
            stealable: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/stealable.lua")
            )),
            steal: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/steal.lua")
            )),
            enqueue: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/enqueue.lua")
            )),
            peek: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/peek.lua")
            )),
            assign: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/assign.lua")
            )),
            events: Script::new(concat!(
                include_str!("lua/lib.lua"),
                include_str!("lua/started.lua"),
                include_str!("lua/completed.lua"),
                include_str!("lua/failed.lua"),
                include_str!("lua/register.lua"),
                include_str!("lua/heartbeat.lua"),
                include_str!("lua/events.lua")
            )),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts::new()
    }
}
