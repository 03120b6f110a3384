//! The JetStream side of the writer: the durable pull consumer and the loop that turns its
//! messages into batches (up to `batch_max` events, or what arrived within `batch_wait`).
//!
//! Batches go through a channel of capacity one, so at most one batch waits while others are
//! written: memory stays bounded however far behind Postgres is, and the backlog stays in
//! the stream.

use crate::config::WriterConfig;
use async_nats::jetstream::{self, consumer::pull};
use std::sync::Arc;
use std::time::Duration;
use tally_schema::StreamSpec;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// Messages fetched together and written in one transaction.
#[derive(Clone, Debug)]
pub struct EventBatch {
    pub messages: Arc<Vec<jetstream::Message>>,
}

pub type Consumer = jetstream::consumer::Consumer<pull::Config>;

/// Creates or updates the durable consumer over every event subject.
pub async fn durable_consumer(
    js: &jetstream::Context,
    spec: &StreamSpec,
    config: &WriterConfig,
) -> Result<Consumer, async_nats::Error> {
    let stream = js.get_stream(&spec.name).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(config.consumer.clone()),
            description: Some("Tally: every event into Postgres".into()),
            filter_subjects: spec.subjects(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: config.ack_wait(),
            // Unbounded on purpose: a message that hit a delivery limit would never reach
            // Postgres. Poison messages are dead-lettered by the writer instead.
            max_deliver: -1,
            max_ack_pending: config.max_ack_pending,
            ..Default::default()
        })
        .await?;
    Ok(consumer)
}

/// Pulls messages forever, sending batches until `batches` is closed. Reconnects the
/// message stream after errors (NATS restarts, missed heartbeats).
pub async fn pull_batches(
    consumer: Consumer,
    config: WriterConfig,
    batches: mpsc::Sender<EventBatch>,
) {
    loop {
        let messages = match consumer
            .stream()
            .max_messages_per_batch(config.batch_max.min(10_000))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot open the message stream; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let cut = batched(messages, config.batch_max, config.batch_wait());
        tokio::pin!(cut);
        while let Some(Chunk { items, failed }) = cut.next().await {
            if !items.is_empty() {
                let batch = EventBatch {
                    messages: Arc::new(items),
                };
                if batches.send(batch).await.is_err() {
                    return; // the writer stopped
                }
            }
            if failed {
                break; // reopen the message stream
            }
        }
        if batches.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One cut of the message stream: the good items, and whether an error was seen in it.
#[derive(Debug, PartialEq)]
pub struct Chunk<T> {
    pub items: Vec<T>,
    pub failed: bool,
}

/// Cuts a stream into chunks of at most `max` items, or what arrived within `wait` of the
/// first one; errors are logged and flagged so the caller can reopen its source.
pub fn batched<T, E: std::fmt::Display>(
    stream: impl futures::Stream<Item = Result<T, E>>,
    max: usize,
    wait: Duration,
) -> impl futures::Stream<Item = Chunk<T>> {
    stream.chunks_timeout(max.max(1), wait).map(|chunk| {
        let mut items = Vec::with_capacity(chunk.len());
        let mut failed = false;
        for item in chunk {
            match item {
                Ok(item) => items.push(item),
                Err(e) => {
                    tracing::warn!(error = %e, "Message stream error; reopening it.");
                    failed = true;
                }
            }
        }
        Chunk { items, failed }
    })
}

/// Publishes the consumer's backlog as a gauge every few seconds.
pub async fn report_pending(mut consumer: Consumer, every: Duration) {
    loop {
        match consumer.info().await {
            Ok(info) => {
                let name = info.name.clone();
                metrics::gauge!("tally_workers_consumer_pending_messages", "consumer" => name.clone())
                    .set(info.num_pending as f64);
                metrics::gauge!("tally_workers_consumer_ack_pending_messages", "consumer" => name)
                    .set(info.num_ack_pending as f64);
            }
            Err(e) => tracing::debug!(error = %e, "Consumer info unavailable."),
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(range: std::ops::Range<u32>) -> Vec<Result<u32, String>> {
        range.map(Ok).collect()
    }

    #[tokio::test]
    async fn batches_are_cut_at_the_size_limit() {
        let chunks: Vec<_> = batched(futures::stream::iter(ok(0..12)), 5, Duration::from_secs(60))
            .collect()
            .await;
        let sizes: Vec<usize> = chunks.iter().map(|c| c.items.len()).collect();
        assert_eq!(sizes, vec![5, 5, 2]);
        assert_eq!(chunks[2].items, vec![10, 11]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_leaves_after_the_time_bound() {
        let (tx, rx) = mpsc::channel(16);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let cut = batched(stream, 1000, Duration::from_millis(100));
        tokio::pin!(cut);
        for i in 0..3 {
            tx.send(Ok::<u32, String>(i)).await.unwrap();
        }
        let started = tokio::time::Instant::now();
        let first = cut.next().await.unwrap();
        assert_eq!(first.items, vec![0, 1, 2]);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_millis(200));
    }

    #[tokio::test]
    async fn errors_are_flagged_and_good_items_kept() {
        let items = vec![Ok(1), Err("missed heartbeat".to_owned()), Ok(2)];
        let chunks: Vec<_> = batched(futures::stream::iter(items), 10, Duration::from_secs(1))
            .collect()
            .await;
        assert_eq!(
            chunks,
            vec![Chunk {
                items: vec![1, 2],
                failed: true
            }]
        );
    }
}
