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
        let chunks = messages.chunks_timeout(config.batch_max, config.batch_wait());
        tokio::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let mut ok = Vec::with_capacity(chunk.len());
            let mut failed = false;
            for message in chunk {
                match message {
                    Ok(m) => ok.push(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "Message stream error; reopening it.");
                        failed = true;
                    }
                }
            }
            if !ok.is_empty() {
                let batch = EventBatch {
                    messages: Arc::new(ok),
                };
                if batches.send(batch).await.is_err() {
                    return; // the writer stopped
                }
            }
            if failed {
                break;
            }
        }
        if batches.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
