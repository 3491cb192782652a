//! The Lua scripts, loaded from `src/lua/` at compile time.
//!
//! `lib.lua` (key names and shared helpers) is prepended to each script, so
//! the helpers exist once in the source and each script stays one
//! self-contained EVAL. `events.lua` also carries every event handler, so
//! one call applies a whole batch of mixed events in stream order.

use redis::Script;

/// One script: `lib.lua`, then the named files as the body of a function
/// whose result is returned after the counters it bumped are written
/// (`flush_stats` in lib.lua: one `HINCRBY` per counter per call, not one
/// per job).
macro_rules! script {
    ($($file:literal),+) => {
        Script::new(concat!(
            include_str!("lua/lib.lua"),
            "local function __main()\n",
            $(include_str!($file), "\n",)+
            "end\nlocal __result = __main()\nflush_stats()\nreturn __result\n"
        ))
    };
}

/// Every script the balancer runs.
pub struct Scripts {
    pub lead: Script,
    pub resign: Script,
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
    pub retain: Script,
    pub forget: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            lead: script!("lua/lead.lua"),
            resign: script!("lua/resign.lua"),
            expire: script!("lua/expire.lua"),
            cancel: script!("lua/cancel.lua"),
            retry: script!("lua/retry.lua"),
            park: script!("lua/park.lua"),
            unpark: script!("lua/unpark.lua"),
            drain: script!("lua/drain.lua"),
            stealable: script!("lua/stealable.lua"),
            steal: script!("lua/steal.lua"),
            retain: script!("lua/retain.lua"),
            forget: script!("lua/forget.lua"),
            enqueue: script!("lua/enqueue.lua"),
            peek: script!("lua/peek.lua"),
            assign: script!("lua/assign.lua"),
            events: script!(
                "lua/started.lua",
                "lua/completed.lua",
                "lua/failed.lua",
                "lua/register.lua",
                "lua/heartbeat.lua",
                "lua/events.lua"
            ),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts::new()
    }
}
