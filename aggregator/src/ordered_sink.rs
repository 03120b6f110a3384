//! The loop every aggregator sink runs: its own durable consumer, resumed right after the
//! sequence the sink recorded, so events arrive in stream order; each batch is applied
//! atomically with that record and acked after, by one ack of its last message. A failing batch
//! is retried, in place and in order, until the sink takes it: skipping ahead would apply later
//! events before earlier ones, and the earlier ones would then be taken for redeliveries.

use async_nats::jetstream::AckKind;
use futures::FutureExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tally_kit::consumer::{EventBatch, decode, last_sequence};
use tally_schema::{Kind, StoredEvent};

/// What one batch did to a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub applied: u64,
    /// Events at or below the recorded sequence: redeliveries, changed nothing.
    pub skipped: u64,
    /// The recorded sequence after the batch.
    pub high: u64,
}

/// A store that applies events in stream order and records the last sequence it applied.
pub trait OrderedSink: Send + Sync {
    /// The `sink` label of its metrics.
    const NAME: &'static str;
    type Error: std::fmt::Display;
    fn apply(
        &self,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<Applied, Self::Error>> + Send;
    /// Called once a batch is applied (before its acks).
    fn applied(&self, _events: &[StoredEvent]) {}
}

/// Applies batches from `batches` until it closes or `shutdown` resolves; reports the last
/// stream sequence applied and acked on `applied` (the puller waits for it before it
/// recreates the consumer).
pub async fn apply_batches<S: OrderedSink>(
    sink: S,
    mut batches: tokio::sync::mpsc::Receiver<EventBatch>,
    applied: tokio::sync::watch::Sender<u64>,
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
        if !apply_until_done(&sink, &batch, shutdown.clone()).await {
            return;
        }
        if let Some(last) = last_sequence(&batch) {
            applied.send_modify(|a| *a = (*a).max(last));
        }
    }
}

/// Returns false when shutdown came first (the batch stays unacked and comes back).
async fn apply_until_done<S: OrderedSink>(
    sink: &S,
    batch: &EventBatch,
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
                record_metrics(S::NAME, &applied, &events);
                sink.applied(&events);
                // The consumer acks all (kit::consumer::durable_consumer): the batch's last
                // delivery acknowledges every one before it.
                if let Some(last) = batch.messages.last()
                    && let Err(e) = last.ack().await
                {
                    tracing::warn!(error = %e, "Ack failed; the redelivery will be skipped.");
                }
                return true;
            }
            Err(e) => {
                metrics::counter!("tally_aggregator_batch_failures_total", "sink" => S::NAME)
                    .increment(1);
                tracing::warn!(sink = S::NAME, error = %e, events = events.len(), ?delay, "Batch failed; retrying in order.");
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

fn record_metrics(sink: &'static str, applied: &Applied, events: &[StoredEvent]) {
    metrics::counter!("tally_aggregator_events_applied_total", "sink" => sink)
        .increment(applied.applied);
    metrics::counter!("tally_aggregator_events_skipped_total", "sink" => sink)
        .increment(applied.skipped);
    metrics::histogram!("tally_aggregator_batch_size_events", "sink" => sink)
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
        metrics::histogram!("tally_aggregator_lag_seconds", "sink" => sink, "kind" => kind.as_str()).record(lag);
    }
}
