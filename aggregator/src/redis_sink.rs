//! The Redis sink's loop: its own durable consumer, resumed right after the sequence Redis
//! recorded, so events arrive in stream order (Elo depends on it); each batch is applied by
//! one atomic script and acked after. A failing batch is retried, in place and in order,
//! until Redis takes it: skipping ahead would apply later events before earlier ones.

use crate::leaderboard::{Applied, RedisSink};
use crate::live::Changed;
use async_nats::jetstream::AckKind;
use futures::FutureExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tally_kit::consumer::{EventBatch, decode};
use tally_schema::Kind;

/// Applies batches from `batches` until it closes or `shutdown` resolves.
pub async fn apply_batches(
    sink: RedisSink,
    mut batches: tokio::sync::mpsc::Receiver<EventBatch>,
    changed: Changed,
    shutdown: impl Future<Output = ()> + Send,
) {
    let shutdown = shutdown.shared();
    loop {
        let batch = tokio::select! {
            () = shutdown.clone() => return,
            batch = batches.recv() => match batch {
                Some(batch) => batch,
                None => return,
            },
        };
        if !apply_until_done(&sink, &batch, &changed, shutdown.clone()).await {
            return;
        }
    }
}

/// Returns false when shutdown came first (the batch stays unacked and comes back).
async fn apply_until_done(
    sink: &RedisSink,
    batch: &EventBatch,
    changed: &Changed,
    shutdown: impl Future<Output = ()> + Clone,
) -> bool {
    let mut events = Vec::with_capacity(batch.messages.len());
    for message in batch.messages.iter() {
        match decode(message) {
            Ok(event) => events.push(event),
            // The Postgres writer dead-letters these; here they simply have no effect.
            Err(reason) => tracing::warn!(reason, "Skipping an undecodable message."),
        }
    }
    let mut delay = Duration::from_millis(100);
    loop {
        match sink.apply(&events).await {
            Ok(applied) => {
                record_metrics(&applied, &events);
                changed.mark(&events);
                for message in batch.messages.iter() {
                    if let Err(e) = message.ack().await {
                        tracing::warn!(error = %e, "Ack failed; the redelivery will be skipped.");
                    }
                }
                return true;
            }
            Err(e) => {
                metrics::counter!("tally_aggregator_batch_failures_total", "sink" => "redis")
                    .increment(1);
                tracing::warn!(error = %e, events = events.len(), ?delay, "Redis batch failed; retrying in order.");
                for message in batch.messages.iter() {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.clone() => return false,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn record_metrics(applied: &Applied, events: &[tally_schema::StoredEvent]) {
    metrics::counter!("tally_aggregator_events_applied_total", "sink" => "redis")
        .increment(applied.applied);
    metrics::counter!("tally_aggregator_events_skipped_total", "sink" => "redis")
        .increment(applied.skipped);
    metrics::histogram!("tally_aggregator_batch_size_events", "sink" => "redis")
        .record(events.len() as f64);
    // Lag from ingest's acceptance to the effect, per kind, once per batch (its worst event).
    let now = chrono::Utc::now();
    let mut worst: BTreeMap<Kind, f64> = BTreeMap::new();
    for e in events {
        let lag = (now - e.envelope.received_at)
            .num_microseconds()
            .unwrap_or(i64::MAX) as f64
            / 1e6;
        let entry = worst.entry(e.envelope.event.kind()).or_insert(0.0);
        *entry = entry.max(lag);
    }
    for (kind, lag) in worst {
        metrics::histogram!("tally_aggregator_lag_seconds", "sink" => "redis", "kind" => kind.as_str()).record(lag);
    }
}
