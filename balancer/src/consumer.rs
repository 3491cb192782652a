//! The durable JetStream consumers the balancer reads from, and the batch
//! loop both of them share.
//!
//! Messages arrive through one long-lived pull; `ready_chunks` hands the
//! handler whatever is already buffered, so a busy stream is processed in
//! batches while a quiet one passes each message on at once. When the
//! server restarts and loses or resets the consumer, the pull keeps
//! failing; after a run of errors the consumer is opened again.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;

/// The most messages handed to one batch.
pub const MAX_BATCH: usize = 512;
/// How many unacknowledged messages the server lets a consumer hold.
const MAX_ACK_PENDING: i64 = 50_000;
/// Errors in a row after which the consumer is re-opened.
const ERRORS_BEFORE_REOPEN: u32 = 5;

/// Something that processes one batch of messages, acking each itself.
pub trait BatchHandler {
    fn handle(&mut self, batch: Vec<jetstream::Message>) -> impl Future<Output = ()> + Send;

    /// The flow of messages broke (consumer errors, re-opening): messages
    /// may be waiting that were not handed over.
    fn interrupted(&mut self) {}
}

/// Opens (or creates) the durable consumer `durable` on `stream`.
async fn open(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> anyhow::Result<pull::Stream> {
    let stream = js.get_stream(stream).await?;
    let consumer = stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.to_string()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(MAX_BATCH)
        // Short pulls with frequent idle heartbeats: after a nats-server
        // restart a lost pull is noticed within seconds, not half a minute
        // (the chaos test's restart run went from about 21 s to 16–19 s).
        .heartbeat(Duration::from_secs(1))
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    Ok(messages)
}

/// Feeds batches from the durable consumer to `handler` forever,
/// re-opening the consumer when the server loses it.
pub async fn consume(
    js: jetstream::Context,
    stream: &'static str,
    durable: &'static str,
    mut handler: impl BatchHandler,
) -> anyhow::Result<()> {
    loop {
        let messages = match open(&js, stream, durable).await {
            Ok(m) => m,
            Err(e) => {
                handler.interrupted();
                tracing::warn!(stream, durable, error = %e, "cannot open consumer; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(stream, durable, "consuming");
        let mut chunks = messages.ready_chunks(MAX_BATCH);
        let mut errors = 0;
        while let Some(chunk) = chunks.next().await {
            let mut batch = Vec::with_capacity(chunk.len());
            for item in chunk {
                match item {
                    Ok(m) => batch.push(m),
                    Err(e) => {
                        errors += 1;
                        handler.interrupted();
                        tracing::warn!(stream, error = %e, "consumer error");
                    }
                }
            }
            if !batch.is_empty() {
                errors = 0;
                handler.handle(batch).await;
            }
            if errors >= ERRORS_BEFORE_REOPEN {
                break;
            }
        }
        tracing::warn!(stream, durable, "consumer stopped; re-opening");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Acknowledges a message, logging (not failing) when that cannot be sent:
/// an unacknowledged message is redelivered, and every handler is
/// idempotent.
pub async fn ack(message: &jetstream::Message) {
    if let Err(e) = message.ack().await {
        tracing::warn!(subject = %message.subject, error = %e, "ack failed; it will be redelivered");
    }
}

/// Asks for redelivery soon, after a failure to process the message.
pub async fn retry_later(message: &jetstream::Message) {
    let nak = AckKind::Nak(Some(Duration::from_millis(500)));
    if let Err(e) = message.ack_with(nak).await {
        tracing::warn!(subject = %message.subject, error = %e, "nak failed; it will be redelivered after ack_wait");
    }
}

/// Drops a message for good: it can never be processed.
pub async fn discard(message: &jetstream::Message) {
    if let Err(e) = message.ack_with(AckKind::Term).await {
        tracing::warn!(subject = %message.subject, error = %e, "term failed");
    }
}
