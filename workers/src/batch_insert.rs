//! The Postgres batch writer as an apalis job: each task is one [`EventBatch`] from the
//! durable consumer. apalis supplies the retries (exponential backoff), the concurrency
//! limit, panic isolation, tracing and graceful shutdown; the job itself is a plain function.
//!
//! Acks are sent only after the transaction committed. A crash between commit and ack means
//! a redelivery, which the insert's `ON CONFLICT (event_id) DO NOTHING` turns into a no-op.

use crate::store::PgStore;
use apalis::prelude::*;
use async_nats::jetstream::AckKind;
use std::sync::Arc;
use std::time::Instant;
use tally_kit::consumer::{EventBatch, decode};
use tally_kit::dead_letters::DeadLetters;

/// What the job needs, injected once through apalis' `Data`.
pub struct Writer {
    pub store: PgStore,
    pub dead_letters: DeadLetters,
}

/// Writes one batch, then acknowledges it. An error makes apalis retry the whole batch.
pub async fn write_batch(batch: EventBatch, writer: Data<Arc<Writer>>) -> Result<(), BoxDynError> {
    let mut events = Vec::with_capacity(batch.messages.len());
    let mut decoded = Vec::with_capacity(batch.messages.len());
    for message in batch.messages.iter() {
        match decode(message) {
            Ok(event) => {
                events.push(event);
                decoded.push(message);
            }
            Err(reason) => {
                if let Err(e) = writer.dead_letters.handle(message, &reason).await {
                    // Not acked, so JetStream redelivers it and we try again.
                    tracing::warn!(error = %e, "Could not dead-letter a message.");
                }
            }
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    metrics::histogram!("tally_workers_batch_size_events").record(events.len() as f64);
    let started = Instant::now();
    match writer.store.write(&events).await {
        Ok(written) => {
            metrics::histogram!("tally_workers_flush_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("tally_workers_duplicates_skipped_total")
                .increment(written.duplicates);
            tracing::debug!(
                inserted = written.inserted,
                duplicates = written.duplicates,
                "Batch committed."
            );
            for message in decoded {
                // A lost ack means a harmless redelivery; nothing to undo here.
                if let Err(e) = message.ack().await {
                    tracing::warn!(error = %e, "Ack failed; the event will be redelivered and skipped.");
                }
            }
            Ok(())
        }
        Err(e) => {
            metrics::counter!("tally_workers_batch_failures_total").increment(1);
            tracing::warn!(error = %e, events = events.len(), "Batch write failed; apalis will retry it.");
            // Keep JetStream from redelivering the batch while apalis retries it.
            for message in decoded {
                let _ = message.ack_with(AckKind::Progress).await;
            }
            Err(e.into())
        }
    }
}
