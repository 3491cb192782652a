//! fleet-client: how a process reaches fleet over NATS.
//!
//! Every fleet process connects the same way, so they accept the same
//! credentials and TLS settings ([`NatsOptions`]), and any of them may be
//! the first to start, so each makes sure the JetStream streams it uses
//! exist, from one set of definitions ([`streams`]). On top of those sits
//! the producer [`Client`]: submit jobs, wait for their results.
//!
//! The messages themselves are `fleet-protocol`'s; this crate only moves
//! them.

mod client;
pub mod connect;
pub mod streams;

pub use client::{Client, ClientError};
pub use connect::{ConnectError, NatsOptions};
