//! Publishing to JetStream: the one publisher of every event, by ingest for the requests it
//! answers and by the workers for the events they make (the draw's status changes). Each
//! publish awaits its own acknowledgement, so many publishes are
//! in flight across concurrent requests, and the whole publish is bounded by a timeout: a slow
//! or absent JetStream means 503, never a hang and never a false 202. Publishes in flight are
//! bounded too: past the bound ingest is behind, and a publish waits at most a short while for a
//! free slot (a batch's items take turns) before its request is answered 503, rather than
//! queue without bound (its wait would only grow, and so would memory).
//!
//! With a linger, publishes are handed to one task that sends those arriving within the
//! linger back to back: the NATS connection writes them in one flush and nats-server reads,
//! stores and acknowledges them in one pass, instead of one wakeup and one syscall on each
//! side per event. Each event is still its own stream message with its own ack, id and
//! sequence, and its request still waits for that ack: the guarantees are unchanged. A
//! request waits at most the linger longer, and only while other publishes await their acks
//! (a lone request goes at once).

use async_nats::jetstream::{self, message::PublishMessage};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_schema::{Envelope, StreamSpec};
use tokio::sync::{Semaphore, mpsc, oneshot};
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
    /// The task that sends lingered publishes together; None: each request sends its own.
    coalescer: Option<mpsc::Sender<Pending>>,
}

/// How publishes reach the connection: each on its own, or gathered for a short while.
#[derive(Clone, Copy, Debug)]
pub struct Coalescing {
    /// How long the first publish of a group waits for others (zero: no gathering).
    pub linger: Duration,
    /// A group is sent at once when it reaches this many publishes.
    pub max: usize,
}

impl Coalescing {
    pub const OFF: Self = Self {
        linger: Duration::ZERO,
        max: 1,
    };
}

/// A publish waiting for the coalescer, and where its ack future goes.
struct Pending {
    subject: async_nats::Subject,
    message: PublishMessage,
    sent: oneshot::Sender<
        Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>,
    >,
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

    /// Publishes sent together by the coalescer.
    fn group_size(self) -> metrics::Histogram {
        match self {
            Self::Ingest => metrics::histogram!("tally_ingest_publish_group_messages"),
            Self::Workers => metrics::histogram!("tally_workers_publish_group_messages"),
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
        coalescing: Coalescing,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(max_in_flight));
        let coalescer = (!coalescing.linger.is_zero()).then(|| {
            // Bounded by the in-flight slots a publish holds while it waits here.
            let (tx, rx) = mpsc::channel(max_in_flight.max(1));
            tokio::spawn(coalesce(
                js.clone(),
                rx,
                coalescing,
                service,
                in_flight.clone(),
                max_in_flight,
            ));
            tx
        });
        Self {
            client: js.client(),
            js,
            spec,
            timeout,
            in_flight,
            max_in_flight,
            slot_wait,
            service,
            coalescer,
        }
    }

    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    fn jetstream_error(&self, e: jetstream::context::PublishError) -> PublishError {
        match e.kind() {
            jetstream::context::PublishErrorKind::TimedOut => PublishError::Timeout(self.timeout),
            _ => PublishError::Refused(e.to_string()),
        }
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
        let refused = |e| self.jetstream_error(e);
        let publish = async {
            let ack = match &self.coalescer {
                None => self
                    .js
                    .send_publish(subject, message)
                    .await
                    .map_err(refused)?,
                Some(coalescer) => {
                    let (sent, ack) = oneshot::channel();
                    let pending = Pending {
                        subject: subject.into(),
                        message,
                        sent,
                    };
                    // Closed only when the runtime shuts down: treat as disconnected.
                    coalescer
                        .send(pending)
                        .await
                        .map_err(|_| PublishError::Disconnected)?;
                    ack.await
                        .map_err(|_| PublishError::Disconnected)?
                        .map_err(refused)?
                }
            };
            ack.await.map_err(refused)
        };
        let result = tokio::time::timeout(self.timeout, publish).await;
        self.service
            .duration()
            .record(started.elapsed().as_secs_f64());
        match result {
            Err(_) => Err(PublishError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(ack)) => Ok(Stored {
                id: envelope.id,
                seq: ack.sequence,
                duplicate: ack.duplicate,
            }),
        }
    }
}

/// Gathers publishes for up to `linger` after the first (or until `max`) while others await
/// their acks, then sends them back to back without yielding, so the connection task finds
/// them all in one wakeup.
async fn coalesce(
    js: jetstream::Context,
    mut pending: mpsc::Receiver<Pending>,
    how: Coalescing,
    service: Service,
    in_flight: Arc<Semaphore>,
    slots: usize,
) {
    let sizes = service.group_size();
    let mut group = Vec::with_capacity(how.max);
    while pending.recv_many(&mut group, how.max).await > 0 {
        // Every publish holds a slot from before it is handed here until its ack: when only
        // this group holds slots, nothing else is on its way and lingering would only add
        // latency (a lone request goes at once; under load, groups form).
        let held = slots.saturating_sub(in_flight.available_permits());
        let awaiting_acks = held.saturating_sub(group.len());
        let linger = if awaiting_acks == 0 {
            Duration::ZERO
        } else {
            how.linger
        };
        let until = tokio::time::Instant::now() + linger;
        while group.len() < how.max && !linger.is_zero() {
            let room = how.max - group.len();
            match tokio::time::timeout_at(until, pending.recv_many(&mut group, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        sizes.record(group.len() as f64);
        for p in group.drain(..) {
            // The requester may have given up (its timeout): then the ack future is dropped.
            let _ = p.sent.send(js.send_publish(p.subject, p.message).await);
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
