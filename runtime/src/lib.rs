//! fleet-runtime: the process plumbing that fleet's binaries share.
//!
//! The balancer, the agent and fleetctl write their logs the same way
//! ([`logging`]) and, for the long-running ones, take the same signals as
//! a request to stop ([`stop_signals`]). None of this is part of the wire
//! contract, so it lives apart from `fleet-protocol`, which producers in
//! any language read without pulling in tokio.

pub mod logging;
pub mod stop_signals;

pub use logging::LogFormat;
pub use stop_signals::StopSignals;
