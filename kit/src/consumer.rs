//! The consuming side every sink shares: the durable pull consumer and the loop that turns
//! its messages into batches (up to `max` events, or what arrived within `wait`).
//!
//! Batches go through a channel of capacity one, so at most one batch waits while another is
//! applied: memory stays bounded however far behind a sink is, and the backlog stays in the
//! stream.

use async_nats::jetstream::{self, consumer::pull};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tally_schema::{StoredEvent, StreamSpec};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

/// Messages fetched together and applied together.
#[derive(Clone, Debug)]
pub struct EventBatch {
    pub messages: Arc<Vec<jetstream::Message>>,
}

pub type Consumer = jetstream::consumer::Consumer<pull::Config>;

/// A sink's durable consumer.
#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    /// Durable name; instances sharing it share the work.
    pub name: String,
    pub description: String,
    /// JetStream redelivers a message not acked within this.
    pub ack_wait: Duration,
    /// Unacknowledged messages the consumer may hold; bounds a slow sink's memory.
    pub max_ack_pending: i64,
    /// For sinks that record what they applied: recreate the consumer so delivery resumes
    /// right after this stream sequence, in order (a crashed instance's unacked messages
    /// would otherwise come back after newer ones).
    pub resume_after: Option<u64>,
}

/// How a sink cuts the stream into batches.
#[derive(Clone, Copy, Debug)]
pub struct BatchSpec {
    pub max: usize,
    pub wait: Duration,
}

/// A durable consumer over every event subject: with a resume point, deleted and created
/// anew to start right after it; without one, created or updated.
pub async fn durable_consumer(
    js: &jetstream::Context,
    events: &StreamSpec,
    spec: &ConsumerSpec,
) -> Result<Consumer, async_nats::Error> {
    let stream = js.get_stream(&events.name).await?;
    let deliver_policy = match spec.resume_after {
        Some(seq) => {
            // Not found is fine: the first start. Any other failure must stop here: creating
            // over a consumer that was not deleted would keep its deliveries and pending acks.
            delete_consumer(&stream, &spec.name).await?;
            jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: seq + 1,
            }
        }
        None => jetstream::consumer::DeliverPolicy::All,
    };
    let config = pull::Config {
        deliver_policy,
        durable_name: Some(spec.name.clone()),
        description: Some(spec.description.clone()),
        filter_subjects: events.subjects(),
        ack_policy: ack_policy(spec),
        ack_wait: spec.ack_wait,
        // Unbounded on purpose: a message that hit a delivery limit would never reach
        // the sink. Poison messages are dead-lettered by the sink instead.
        max_deliver: -1,
        max_ack_pending: spec.max_ack_pending,
        ..Default::default()
    };
    let consumer = match spec.resume_after {
        // Strict: fails rather than quietly update a consumer someone else just created.
        Some(_) => stream.create_consumer_strict(config).await?,
        None => stream.create_consumer(config).await?,
    };
    Ok(consumer)
}

/// An ordered sink (one with a resume point) applies its deliveries in order and acks a
/// whole batch by acking its last message: one ack per batch instead of one per event. A
/// shared consumer must ack each message, since an all-ack would also acknowledge messages
/// delivered to another instance and not yet applied.
fn ack_policy(spec: &ConsumerSpec) -> jetstream::consumer::AckPolicy {
    match spec.resume_after {
        Some(_) => jetstream::consumer::AckPolicy::All,
        None => jetstream::consumer::AckPolicy::Explicit,
    }
}

/// Deletes the durable consumer `name`; false when there was none.
pub async fn delete_consumer(
    stream: &jetstream::stream::Stream,
    name: &str,
) -> Result<bool, async_nats::Error> {
    match stream.delete_consumer(name).await {
        Ok(_) => Ok(true),
        Err(e) if consumer_not_found(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn consumer_not_found(e: &jetstream::stream::ConsumerError) -> bool {
    matches!(
        e.kind(),
        jetstream::stream::ConsumerErrorKind::JetStream(ref js)
            if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
    )
}

/// A sink's consumer, wired the one way every sink uses: the durable consumer, the puller
/// that cuts its deliveries into batches (through a channel of capacity one) and the backlog
/// reporter. The sink takes `batches`; the tasks stop when `tasks` is dropped.
pub struct Pipeline {
    pub batches: mpsc::Receiver<EventBatch>,
    pub tasks: PipelineTasks,
}

/// The puller and reporter of a [`Pipeline`]; aborted on drop.
pub struct PipelineTasks {
    puller: tokio::task::JoinHandle<()>,
    reporter: tokio::task::JoinHandle<()>,
}

impl Drop for PipelineTasks {
    fn drop(&mut self) {
        self.puller.abort();
        self.reporter.abort();
    }
}

impl Pipeline {
    /// For a sink that deduplicates by event id and may share its consumer with other
    /// instances (the Postgres writer): a broken delivery stream is reopened.
    pub async fn shared(
        js: &jetstream::Context,
        events: &StreamSpec,
        spec: &ConsumerSpec,
        batches: BatchSpec,
    ) -> Result<Self, async_nats::Error> {
        let consumer = durable_consumer(js, events, spec).await?;
        Ok(Self::wire(js, consumer, batches, Recovery::Reopen))
    }

    /// For an ordered sink that records the last sequence it applied (`spec.resume_after`):
    /// the sink reports each applied sequence on the returned sender, and a gap or a broken
    /// delivery stream recreates the consumer right after it.
    pub async fn ordered(
        js: &jetstream::Context,
        events: &StreamSpec,
        spec: &ConsumerSpec,
        batches: BatchSpec,
    ) -> Result<(Self, watch::Sender<u64>), async_nats::Error> {
        let consumer = durable_consumer(js, events, spec).await?;
        let (applied_tx, applied_rx) = watch::channel(spec.resume_after.unwrap_or(0));
        let recovery = Recovery::recreate(js.clone(), events.clone(), spec.clone(), applied_rx);
        Ok((Self::wire(js, consumer, batches, recovery), applied_tx))
    }

    fn wire(
        js: &jetstream::Context,
        consumer: Consumer,
        batches: BatchSpec,
        recovery: Recovery,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let puller = tokio::spawn(pull_batches(consumer.clone(), batches, tx, recovery));
        let reporter = tokio::spawn(report_backlog(js.clone(), consumer, Duration::from_secs(2)));
        Self {
            batches: rx,
            tasks: PipelineTasks { puller, reporter },
        }
    }
}

/// How far a durable consumer has got through the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The last stream sequence below which everything was acknowledged.
    pub ack_floor: u64,
    /// The stream's last sequence when asked.
    pub last: u64,
}

impl Progress {
    /// Every event the stream held when asked has been applied and acknowledged. The one
    /// test of "has this sink caught up": the draw waits for the Postgres writer, releases
    /// for the Redis sink, a rebuild from Postgres for the writer.
    pub fn caught_up(&self) -> bool {
        self.ack_floor >= self.last
    }
}

/// The progress of `name`; an ack floor of 0 when the consumer does not exist yet, an error
/// when NATS cannot say.
pub async fn progress(
    js: &jetstream::Context,
    events: &StreamSpec,
    name: &str,
) -> Result<Progress, async_nats::Error> {
    let mut stream = js.get_stream(&events.name).await?;
    let last = stream.info().await?.state.last_sequence;
    let ack_floor = match stream.consumer_info(name).await {
        Ok(info) => info.ack_floor.stream_sequence,
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(Progress { ack_floor, last })
}

/// "Has this sink applied everything the stream held when I first asked?", per question (a
/// tournament's draw, the release step, a closing): the stream's last sequence is taken at the
/// first ask and kept until the sink's ack floor passes it. [`Progress::caught_up`] on a fresh
/// [`progress`] asks for the stream's end *now*, which traffic that keeps coming may never let
/// a sink reach; a horizon fixed at the first ask is reached however busy the stream stays.
#[derive(Debug, Default)]
pub struct Horizons {
    targets: std::sync::Mutex<std::collections::HashMap<String, Horizon>>,
}

/// The stream's end as it was when a question was first asked, and when that was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Horizon {
    pub progress: Progress,
    /// When the horizon was fixed: what happened before then is on the stream at or below it
    /// (give publishes in flight a grace before asking).
    pub fixed_at: chrono::DateTime<chrono::Utc>,
}

impl Horizons {
    /// `consumer`'s progress towards the stream's end as it was at the first ask about `key`
    /// (`caught_up` once it has passed it); once it has, the next ask about `key` fixes a new
    /// horizon.
    pub async fn ask(
        &self,
        js: &jetstream::Context,
        events: &StreamSpec,
        consumer: &str,
        key: &str,
    ) -> Result<Horizon, async_nats::Error> {
        let now = progress(js, events, consumer).await?;
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let fixed = *targets.entry(key.to_owned()).or_insert(Horizon {
            progress: now,
            fixed_at: chrono::Utc::now(),
        });
        let horizon = Horizon {
            progress: Progress {
                ack_floor: now.ack_floor,
                last: fixed.progress.last,
            },
            fixed_at: fixed.fixed_at,
        };
        if horizon.progress.caught_up() {
            targets.remove(key);
        }
        Ok(horizon)
    }
}

/// What a puller does when deliveries break off (a NATS restart, a missed heartbeat, a gap).
#[derive(Clone, Debug)]
pub enum Recovery {
    /// Reopen the message stream on the same consumer. For sinks that deduplicate by event id
    /// and may share their durable consumer: a delivery lost in transit simply comes back
    /// after the ack wait, in whatever order.
    Reopen,
    /// Recreate the consumer right after the last stream sequence handed on. For the ordered
    /// sinks, which skip everything at or below the sequence they recorded: a delivery lost in
    /// transit would come back after the ack wait, behind newer events they had applied, and
    /// be taken for a redelivery. So a gap in the deliveries, or a broken message stream,
    /// restarts delivery from the first event not yet handed on.
    Recreate(Box<Restart>),
}

/// What recreating an ordered sink's consumer needs.
#[derive(Clone, Debug)]
pub struct Restart {
    pub js: jetstream::Context,
    pub events: StreamSpec,
    pub spec: ConsumerSpec,
    /// The last stream sequence the sink applied and acked. The consumer is recreated only
    /// once the sink has applied everything handed on: a recreated consumer's ack floor starts
    /// where it resumes, and the Kafka mirror restarts from its ack floor after a crash.
    pub applied: watch::Receiver<u64>,
}

impl Recovery {
    /// Recovery for an ordered sink whose applied sequence `applied` reports.
    pub fn recreate(
        js: jetstream::Context,
        events: StreamSpec,
        spec: ConsumerSpec,
        applied: watch::Receiver<u64>,
    ) -> Self {
        Self::Recreate(Box::new(Restart {
            js,
            events,
            spec,
            applied,
        }))
    }
}

/// The highest stream sequence in a batch: what a sink reports as applied once it acked it.
pub fn last_sequence(batch: &EventBatch) -> Option<u64> {
    batch
        .messages
        .iter()
        .filter_map(|m| sequences(m).map(|(_, seq)| seq))
        .max()
}

/// Pulls messages forever, sending batches until `batches` is closed; recovers from broken
/// deliveries as `recovery` says.
pub async fn pull_batches(
    mut consumer: Consumer,
    spec: BatchSpec,
    batches: mpsc::Sender<EventBatch>,
    recovery: Recovery,
) {
    let mut order = match &recovery {
        Recovery::Recreate(restart) => {
            Some(DeliveryOrder::new(restart.spec.resume_after.unwrap_or(0)))
        }
        Recovery::Reopen => None,
    };
    loop {
        let messages = match consumer
            .stream()
            .max_messages_per_batch(spec.max.min(10_000))
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
        // The message stream lives only in this block: it is dropped (its pull requests
        // stop) before the consumer is recreated, so no pull of the old stream can take
        // deliveries meant for the new consumer.
        let broken = {
            let cut = batched(messages, spec.max, spec.wait);
            tokio::pin!(cut);
            let mut broken = false;
            while let Some(Chunk { mut items, failed }) = cut.next().await {
                if let Some(order) = order.as_mut() {
                    let (admitted, gap) = order.admit(items.iter().map(sequences));
                    if let Some(gap) = gap {
                        tracing::warn!(
                            expected_delivery = gap.expected,
                            delivery = gap.delivery,
                            stream_seq = gap.stream_seq,
                            dropped = items.len() - admitted,
                            resume_after = order.resume_after(),
                            "Deliveries out of order; restarting delivery after the last event handed on."
                        );
                        items.truncate(admitted);
                        broken = true;
                    }
                }
                if !items.is_empty() {
                    let batch = EventBatch {
                        messages: Arc::new(items),
                    };
                    if batches.send(batch).await.is_err() {
                        return; // the writer stopped
                    }
                }
                if failed || broken {
                    broken = true;
                    break; // reopen (or recreate) the message stream
                }
            }
            broken
        };
        if batches.is_closed() {
            return;
        }
        if let (Recovery::Recreate(restart), Some(order)) = (&recovery, order.as_mut())
            && broken
        {
            match recreate(restart, order, &batches).await {
                Some(recreated) => consumer = recreated,
                None => return, // the sink stopped
            }
            continue;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the sink applied all that `order` handed on, then deletes and recreates the
/// consumer so delivery resumes right after it; retries until NATS takes it. None when the
/// sink stopped meanwhile.
async fn recreate(
    restart: &Restart,
    order: &mut DeliveryOrder,
    batches: &mpsc::Sender<EventBatch>,
) -> Option<Consumer> {
    let handed_on = order.resume_after();
    let mut applied = restart.applied.clone();
    applied.wait_for(|a| *a >= handed_on).await.ok()?;
    let spec = ConsumerSpec {
        resume_after: Some(handed_on),
        ..restart.spec.clone()
    };
    metrics::counter!("tally_jetstream_consumer_restarts_total", "consumer" => spec.name.clone())
        .increment(1);
    let create = || durable_consumer(&restart.js, &restart.events, &spec);
    let consumer = retry_every(
        "Recreating the consumer",
        Duration::from_secs(1),
        create,
        batches.closed(),
    )
    .await?;
    tracing::info!(consumer = %spec.name, resume_after = handed_on, "Consumer recreated.");
    order.restarted();
    Some(consumer)
}

/// Tries `attempt` every `period` until it succeeds (logging each failure), or until `stop`
/// resolves (None): what a sink does while NATS, ClickHouse or Kafka is away.
pub async fn retry_every<T, E, Fut>(
    what: &str,
    period: Duration,
    mut attempt: impl FnMut() -> Fut,
    stop: impl Future<Output = ()>,
) -> Option<T>
where
    E: std::fmt::Display,
    Fut: Future<Output = Result<T, E>>,
{
    tokio::pin!(stop);
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(e) => tracing::warn!(error = %e, "{what} failed; retrying in {period:?}."),
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = &mut stop => return None,
        }
    }
}

/// A message's consumer (delivery) sequence and stream sequence, when it carries them.
fn sequences(message: &jetstream::Message) -> Option<(u64, u64)> {
    message
        .info()
        .ok()
        .map(|info| (info.consumer_sequence, info.stream_sequence))
}

/// A delivery that did not follow the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub expected: u64,
    pub delivery: u64,
    pub stream_seq: u64,
}

/// Whether deliveries arrive without a gap: each delivery of a consumer has the next
/// consumer sequence, redeliveries included, so a missing one was lost in transit.
#[derive(Debug)]
pub struct DeliveryOrder {
    /// The consumer sequence of the last delivery handed on; 0 before the first.
    last_delivery: u64,
    handed_on: u64,
}

impl DeliveryOrder {
    /// For a consumer, created anew, that starts right after stream sequence `resume_after`:
    /// its first delivery is number 1.
    pub fn new(resume_after: u64) -> Self {
        Self {
            last_delivery: 0,
            handed_on: resume_after,
        }
    }

    /// How many of these deliveries, `(consumer sequence, stream sequence)` each, follow
    /// the ones before without a gap, and the gap after them if any: the rest must not be
    /// handed on.
    pub fn admit(
        &mut self,
        deliveries: impl IntoIterator<Item = Option<(u64, u64)>>,
    ) -> (usize, Option<Gap>) {
        let mut admitted = 0;
        for delivery in deliveries {
            if let Some((delivery, stream_seq)) = delivery {
                if delivery != self.last_delivery + 1 {
                    let gap = Gap {
                        expected: self.last_delivery + 1,
                        delivery,
                        stream_seq,
                    };
                    return (admitted, Some(gap));
                }
                self.last_delivery = delivery;
                self.handed_on = self.handed_on.max(stream_seq);
            }
            admitted += 1;
        }
        (admitted, None)
    }

    /// The stream sequence a recreated consumer resumes after.
    pub fn resume_after(&self) -> u64 {
        self.handed_on
    }

    /// The consumer was recreated: its deliveries count from 1 again.
    pub fn restarted(&mut self) {
        self.last_delivery = 0;
    }
}

/// A stream message as the event a sink applies, or why it cannot be one.
pub fn decode(message: &jetstream::Message) -> Result<StoredEvent, String> {
    let info = message
        .info()
        .map_err(|e| format!("no JetStream metadata: {e}"))?;
    StoredEvent::decode(info.stream_sequence, &message.payload)
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

/// Publishes the consumer's backlog and its stream's storage as gauges every few seconds:
/// what the alert rules watch for a stalled sink and a filling stream.
pub async fn report_backlog(js: jetstream::Context, mut consumer: Consumer, every: Duration) {
    loop {
        match consumer.info().await {
            Ok(info) => {
                let name = info.name.clone();
                let stream = info.stream_name.clone();
                metrics::gauge!("tally_jetstream_consumer_pending_messages", "consumer" => name.clone())
                    .set(info.num_pending as f64);
                metrics::gauge!("tally_jetstream_consumer_ack_pending_messages", "consumer" => name)
                    .set(info.num_ack_pending as f64);
                report_stream(&js, stream).await;
            }
            Err(e) => tracing::debug!(error = %e, "Consumer info unavailable."),
        }
        tokio::time::sleep(every).await;
    }
}

async fn report_stream(js: &jetstream::Context, name: String) {
    let info = match js.get_stream(&name).await {
        Ok(mut stream) => stream.info().await.cloned(),
        Err(e) => {
            tracing::debug!(error = %e, "Stream info unavailable.");
            return;
        }
    };
    match info {
        Ok(info) => {
            metrics::gauge!("tally_jetstream_stream_bytes", "stream" => name.clone())
                .set(info.state.bytes as f64);
            metrics::gauge!("tally_jetstream_stream_messages", "stream" => name.clone())
                .set(info.state.messages as f64);
            // -1 means unlimited; report the limit only when there is one.
            if info.config.max_bytes > 0 {
                metrics::gauge!("tally_jetstream_stream_max_bytes", "stream" => name)
                    .set(info.config.max_bytes as f64);
            }
        }
        Err(e) => tracing::debug!(error = %e, "Stream info unavailable."),
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

    #[test]
    fn deliveries_without_a_gap_are_all_handed_on() {
        let mut order = DeliveryOrder::new(10);
        assert_eq!(
            order.admit([Some((1, 11)), Some((2, 12)), Some((3, 13))]),
            (3, None)
        );
        // A redelivery of an older event takes the next delivery number: no gap.
        assert_eq!(order.admit([Some((4, 12)), Some((5, 14))]), (2, None));
        assert_eq!(order.resume_after(), 14);
    }

    #[test]
    fn a_gap_stops_the_batch_where_deliveries_went_missing() {
        let mut order = DeliveryOrder::new(0);
        assert_eq!(order.admit([Some((1, 1)), Some((2, 2))]), (2, None));
        // Deliveries 3..=5 were lost in transit; 6 must not overtake them.
        let gap = Gap {
            expected: 3,
            delivery: 6,
            stream_seq: 6,
        };
        assert_eq!(order.admit([Some((6, 6)), Some((7, 7))]), (0, Some(gap)));
        assert_eq!(order.resume_after(), 2);
        let (admitted, gap) = order.admit([Some((3, 3)), Some((4, 4)), Some((6, 6))]);
        assert_eq!((admitted, gap.map(|g| g.expected)), (2, Some(5)));
        assert_eq!(order.resume_after(), 4);
    }

    #[test]
    fn a_recreated_consumer_counts_its_deliveries_from_anew() {
        let mut order = DeliveryOrder::new(0);
        assert_eq!(order.admit([Some((1, 1)), Some((2, 2)), Some((5, 5))]).0, 2);
        order.restarted();
        assert_eq!(
            order.admit([Some((1, 3)), Some((2, 4)), Some((3, 5))]),
            (3, None)
        );
        assert_eq!(order.resume_after(), 5);
    }

    #[test]
    fn a_fresh_consumer_whose_first_deliveries_went_missing_is_caught() {
        let mut order = DeliveryOrder::new(10);
        // Deliveries 1 and 2 (events 11, 12) never arrived.
        let (admitted, gap) = order.admit([Some((3, 13))]);
        assert_eq!(admitted, 0);
        assert_eq!(gap.map(|g| g.expected), Some(1));
        assert_eq!(order.resume_after(), 10);
    }

    #[test]
    fn a_resume_point_never_moves_back() {
        let mut order = DeliveryOrder::new(100);
        assert_eq!(
            order.admit([Some((1, 90)), None, Some((2, 101))]),
            (3, None)
        );
        assert_eq!(order.resume_after(), 101);
    }
}
