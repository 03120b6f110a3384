//! The optional Kafka mirror: every accepted event, in stream order, onto one Kafka topic,
//! keyed by scope (a poll, arena or tournament id) so each scope's events share a partition
//! and keep their order. For teams whose data platform reads Kafka.
//!
//! Same rule as every sink: a JetStream message is acknowledged only after Kafka acknowledged
//! its copy (`acks=all`, idempotent producer, so the client's own retries neither duplicate
//! nor reorder). Delivery is at least once: after a crash the mirror restarts at its
//! consumer's ack floor and sends the unacknowledged batch again; each Kafka record carries
//! the event id and stream sequence as headers (`tally-event-id`, `tally-seq`) for consumers
//! that deduplicate.

use crate::ordered_sink::{Applied, OrderedSink};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tally_schema::StoredEvent;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("cannot create topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Where the mirror writes.
#[derive(Clone, Debug)]
pub struct KafkaTarget {
    /// `host:port` list, comma-separated.
    pub brokers: String,
    pub topic: String,
    /// Partitions of the topic when the mirror creates it.
    pub partitions: i32,
}

impl KafkaTarget {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "tally-aggregator")
            // Acknowledged by every in-sync replica, and the producer's retries are
            // idempotent: what Kafka acknowledged is there once, in order.
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        config
    }

    /// Creates the topic if it does not exist yet.
    pub async fn ensure_topic(&self) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let topic = NewTopic::new(&self.topic, self.partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics([&topic], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaError::Topic { topic, code }),
            }
        }
        Ok(())
    }
}

pub struct KafkaMirror {
    producer: FutureProducer,
    topic: String,
    /// Highest sequence sent in this process: a redelivery inside one run is not re-sent.
    high: AtomicU64,
}

impl KafkaMirror {
    pub fn new(target: &KafkaTarget) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: target.client_config().create()?,
            topic: target.topic.clone(),
            high: AtomicU64::new(0),
        })
    }
}

impl OrderedSink for KafkaMirror {
    const NAME: &'static str = "kafka";
    type Error = KafkaError;

    async fn apply(&self, events: &[StoredEvent]) -> Result<Applied, KafkaError> {
        let high = self.high.load(Ordering::Acquire);
        let fresh: Vec<&StoredEvent> = events.iter().filter(|e| e.stream_seq > high).collect();
        let records: Vec<(String, Vec<u8>, OwnedHeaders)> = fresh
            .iter()
            .map(|e| {
                let (id, seq) = (e.envelope.id.to_string(), e.stream_seq.to_string());
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "tally-event-id",
                        value: Some(&id),
                    })
                    .insert(Header {
                        key: "tally-seq",
                        value: Some(&seq),
                    })
                    .insert(Header {
                        key: "tally-kind",
                        value: Some(e.envelope.event.kind().as_str()),
                    });
                (
                    e.envelope.event.scope().to_owned(),
                    e.envelope.to_json(),
                    headers,
                )
            })
            .collect();
        // Enqueued in stream order (join_all polls in order), then every delivery awaited.
        let deliveries = records.iter().map(|(key, payload, headers)| {
            self.producer.send(
                FutureRecord::to(&self.topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers.clone()),
                Timeout::After(Duration::from_secs(30)),
            )
        });
        for delivery in futures::future::join_all(deliveries).await {
            delivery.map_err(|(e, _)| e)?;
        }
        let new_high = fresh.last().map_or(high, |e| e.stream_seq);
        self.high.store(new_high, Ordering::Release);
        Ok(Applied {
            applied: fresh.len() as u64,
            skipped: (events.len() - fresh.len()) as u64,
            high: new_high,
        })
    }
}
