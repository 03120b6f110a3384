//! Publishing to JetStream. Each request awaits its own acknowledgement, so many publishes are
//! in flight across concurrent requests, and the whole publish is bounded by a timeout: a slow
//! or absent JetStream means 503, never a hang and never a false 202. Publishes in flight are
//! bounded too: past the bound ingest is behind, and a publish waits at most a short while for a
//! free slot (a batch's items take turns) before its request is answered 503, rather than
//! queue without bound (its wait would only grow, and so would memory).

use async_nats::jetstream::{self, message::PublishMessage};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_schema::{Envelope, StreamSpec};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// JetStream stored the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub id: Uuid,
    pub seq: u64,
    /// The idempotency key was seen inside the duplicate window: stored once, earlier.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to NATS")]
    Disconnected,
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("JetStream refused the event: {0}")]
    Refused(String),
    #[error("{0} publishes already await JetStream's acknowledgement")]
    Overloaded(usize),
}

impl PublishError {
    /// A short, bounded reason for clients and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Disconnected => "broker_disconnected",
            PublishError::Timeout(_) => "broker_timeout",
            PublishError::Refused(_) => "broker_refused",
            PublishError::Overloaded(_) => "overloaded",
        }
    }
}

#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    spec: StreamSpec,
    timeout: Duration,
    /// One permit per publish awaiting its ack, shared by every clone.
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    /// How long a publish may wait for a slot before it is shed.
    slot_wait: Duration,
}

impl Publisher {
    /// `max_in_flight` publishes may await their acks at once; one that finds no slot within
    /// `slot_wait` fails with [`PublishError::Overloaded`].
    pub fn new(
        client: async_nats::Client,
        js: jetstream::Context,
        spec: StreamSpec,
        timeout: Duration,
        max_in_flight: usize,
        slot_wait: Duration,
    ) -> Self {
        Self {
            client,
            js,
            spec,
            timeout,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            slot_wait,
        }
    }

    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes and waits for the acknowledgement. With `dedup`, the event id becomes the
    /// JetStream message id (only for client idempotency keys: the header costs throughput).
    #[tracing::instrument(name = "publish", level = "debug", skip_all, fields(kind = envelope.event.kind().as_str(), event_id = %envelope.id))]
    pub async fn publish(&self, envelope: &Envelope, dedup: bool) -> Result<Stored, PublishError> {
        // While NATS is away the client would buffer the publish until the timeout; answer now.
        if !self.is_connected() {
            return Err(PublishError::Disconnected);
        }
        let subject = self.spec.subject_for(&envelope.event);
        let mut message = PublishMessage::build().payload(envelope.to_json().into());
        if dedup {
            message = message.message_id(envelope.id.to_string());
        }
        // Shed, not queue: a slot soon or a 503 soon. The semaphore is never closed.
        let Ok(Ok(_permit)) = tokio::time::timeout(self.slot_wait, self.in_flight.acquire()).await
        else {
            return Err(PublishError::Overloaded(self.max_in_flight));
        };
        let started = Instant::now();
        let _in_flight = InFlight::enter();
        let publish = async {
            let ack = self.js.send_publish(subject, message).await?;
            ack.await
        };
        let result = tokio::time::timeout(self.timeout, publish).await;
        metrics::histogram!("tally_ingest_publish_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Err(_) => Err(PublishError::Timeout(self.timeout)),
            Ok(Err(e)) if e.kind() == jetstream::context::PublishErrorKind::TimedOut => {
                Err(PublishError::Timeout(self.timeout))
            }
            Ok(Err(e)) => Err(PublishError::Refused(e.to_string())),
            Ok(Ok(ack)) => Ok(Stored {
                id: envelope.id,
                seq: ack.sequence,
                duplicate: ack.duplicate,
            }),
        }
    }
}

/// Counts publishes awaiting their acknowledgement, also when a request is dropped mid-way.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!("tally_ingest_publish_in_flight_messages").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("tally_ingest_publish_in_flight_messages").decrement(1.0);
    }
}
