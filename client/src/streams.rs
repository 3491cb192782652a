//! The JetStream streams fleet relies on, defined once.
//!
//! Any fleet process may be the first to start, so each one calls
//! [`ensure`] for the streams it touches; `get_or_create_stream` makes that
//! idempotent, and one definition here keeps every creator in agreement.
//! The stream names are the wire contract's ([`fleet_protocol::streams`]).

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{DiscardPolicy, RetentionPolicy, StorageType},
};

use fleet_protocol::{defaults, subjects};

pub use fleet_protocol::streams::{EVENTS, JOBS, RESULTS};

/// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate publish.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The configuration of one of fleet's streams, by name.
pub fn config(name: &str) -> Option<jetstream::stream::Config> {
    let base = jetstream::stream::Config {
        name: name.to_string(),
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    Some(match name {
        JOBS => jetstream::stream::Config {
            subjects: vec![subjects::SUBMIT.to_string()],
            retention: RetentionPolicy::WorkQueue,
            // A full stream refuses new submissions (the producer sees the
            // error) rather than discarding accepted ones.
            discard: DiscardPolicy::New,
            ..base
        },
        EVENTS => jetstream::stream::Config {
            subjects: vec![subjects::EVENTS_ALL.to_string()],
            retention: RetentionPolicy::WorkQueue,
            discard: DiscardPolicy::New,
            ..base
        },
        RESULTS => jetstream::stream::Config {
            subjects: vec![subjects::RESULTS_ALL.to_string()],
            retention: RetentionPolicy::Limits,
            max_age: defaults::RESULT_RETENTION,
            max_messages_per_subject: 1,
            ..base
        },
        _ => return None,
    })
}

/// Error from [`ensure`].
#[derive(Debug, thiserror::Error)]
#[error("cannot create or open stream {name}: {source}")]
pub struct EnsureError {
    pub name: String,
    #[source]
    pub source: jetstream::context::CreateStreamError,
}

/// Creates each named stream that does not exist yet.
pub async fn ensure(js: &jetstream::Context, names: &[&str]) -> Result<(), EnsureError> {
    for name in names {
        let Some(config) = config(name) else { continue };
        js.get_or_create_stream(config)
            .await
            .map_err(|source| EnsureError {
                name: name.to_string(),
                source,
            })?;
    }
    Ok(())
}
