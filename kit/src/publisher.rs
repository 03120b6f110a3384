//! Publishing to JetStream: the one publisher of every event, by ingest for the requests it
//! answers and by the workers for the events they make (the draw's status changes). Each
//! publish awaits its own acknowledgement, so many publishes are
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
    service: Service,
}

/// Who publishes: each service reports under its own metric names, so its dashboards keep
/// their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Ingest,
    Workers,
}

impl Service {
    fn duration(self) -> metrics::Histogram {
        match self {
            Self::Ingest => metrics::histogram!("tally_ingest_publish_duration_seconds"),
            Self::Workers => metrics::histogram!("tally_workers_publish_duration_seconds"),
        }
    }

    fn in_flight(self) -> metrics::Gauge {
        match self {
            Self::Ingest => metrics::gauge!("tally_ingest_publish_in_flight_messages"),
            Self::Workers => metrics::gauge!("tally_workers_publish_in_flight_messages"),
        }
    }
}

impl Publisher {
    /// `max_in_flight` publishes may await their acks at once; one that finds no slot within
    /// `slot_wait` fails with [`PublishError::Overloaded`].
    pub fn new(
        service: Service,
        js: jetstream::Context,
        spec: StreamSpec,
        timeout: Duration,
        max_in_flight: usize,
        slot_wait: Duration,
    ) -> Self {
        Self {
            client: js.client(),
            js,
            spec,
            timeout,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            slot_wait,
            service,
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
        let _in_flight = InFlight::enter(self.service.in_flight());
        let publish = async {
            let ack = self.js.send_publish(subject, message).await?;
            ack.await
        };
        let result = tokio::time::timeout(self.timeout, publish).await;
        self.service
            .duration()
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
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
