//! Broadcast channels' followers on this instance. One feed per followed channel (an ordered
//! consumer on the channel's stream) fans each message out to every follower through a
//! broadcast queue and keeps the newest few in memory. A follower that resumes from an older
//! sequence (`Last-Event-ID`) first reads what it missed from the stream, then joins the feed.
//! No gap and no repeat: a follower remembers the last sequence it delivered and skips
//! anything at or below it; the feed's memory and the stream meet without a hole because a
//! follower takes its place in the queue and a copy of the memory under one lock.
//!
//! A follower that cannot keep up gets only the newest message of a `latest` channel; on an
//! `every` channel it falls back to reading the stream from where it was, so it still
//! receives every message, in order.

use futures::{Stream, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_kit::channels::{self as streams, ChannelError, ChannelMessage};
use tally_schema::StreamSpec;
use tally_schema::channels::{Channel, Delivery};
use tally_schema::ids::ChannelId;
use tokio::sync::broadcast::{self, error::RecvError};

/// Settings of channels on this instance.
#[derive(Clone, Debug, clap::Args)]
pub struct ChannelConfig {
    /// Largest channel message, in bytes (the JSON body of a publish).
    #[arg(long, env = "TALLY_CHANNEL_MESSAGE_MAX_BYTES", default_value_t = 64 * 1024)]
    pub channel_message_max_bytes: usize,
    /// Messages of each followed channel kept in memory, and queued for each follower: a
    /// follower further behind reads the stream instead (or, on a `latest` channel, skips to
    /// the newest).
    #[arg(long, env = "TALLY_CHANNEL_BUFFER", default_value_t = 256)]
    pub channel_buffer: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            channel_message_max_bytes: 64 * 1024,
            channel_buffer: 256,
        }
    }
}

type Shared = Arc<ChannelMessage>;

/// Every followed channel of this instance.
#[derive(Clone)]
pub struct Channels(Arc<Inner>);

struct Inner {
    js: async_nats::jetstream::Context,
    spec: StreamSpec,
    buffer: usize,
    hubs: tokio::sync::Mutex<HashMap<ChannelId, Arc<Hub>>>,
}

/// One followed channel: its feed, its newest messages, its followers' queue.
struct Hub {
    channel: ChannelId,
    state: Mutex<HubState>,
    tx: broadcast::Sender<Shared>,
    followers: AtomicUsize,
    /// The feed task, stopped with the hub.
    feed: Mutex<Option<tokio_util::task::AbortOnDropHandle<()>>>,
}

struct HubState {
    recent: VecDeque<Shared>,
    /// The sequence the feed delivers next.
    next: u64,
    /// The stream's last sequence when the hub started: a new follower begins at the newest.
    newest_at_start: u64,
}

/// Why a channel cannot be followed now.
#[derive(Debug, thiserror::Error)]
#[error("channel {channel}: {source}")]
pub struct FollowError {
    channel: ChannelId,
    source: ChannelError,
}

impl Channels {
    pub fn new(js: async_nats::jetstream::Context, spec: StreamSpec, buffer: usize) -> Self {
        Self(Arc::new(Inner {
            js,
            spec,
            buffer: buffer.max(1),
            hubs: Default::default(),
        }))
    }

    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.0.js
    }

    pub fn spec(&self) -> &StreamSpec {
        &self.0.spec
    }

    /// Followers by channel, for `/healthz?details`.
    pub async fn followers(&self) -> Vec<(String, usize)> {
        let hubs = self.0.hubs.lock().await;
        let mut all: Vec<_> = hubs
            .values()
            .map(|h| (h.channel.to_string(), h.followers.load(Ordering::Relaxed)))
            .collect();
        all.sort();
        all
    }

    /// Follows `channel` from after `last_seen` (a resumed follower), or from its newest
    /// message (a new one).
    pub async fn follow(
        &self,
        channel: &Channel,
        last_seen: Option<u64>,
    ) -> Result<impl Stream<Item = Shared> + Send + use<>, FollowError> {
        // Counted as a follower before the hubs' lock is let go, so the last follower of the
        // hub leaving at the same moment cannot stop its feed under this one.
        let hub = self.hub(channel).await.map_err(|source| FollowError {
            channel: channel.id.clone(),
            source,
        })?;
        let follower = Follower {
            guard: Leaving {
                channels: self.clone(),
                hub: hub.clone(),
            },
            hub,
            delivery: channel.delivery,
            last: last_seen,
            queue: VecDeque::new(),
            catch_up: None,
            rx: None,
            skip_to_newest: false,
            resumed_up_to: 0,
        };
        Ok(futures::stream::unfold(follower, |mut f| async move {
            let next = f.next().await?;
            Some((next, f))
        }))
    }

    /// The channel's hub, started on its first follower, with one more follower counted.
    async fn hub(&self, channel: &Channel) -> Result<Arc<Hub>, ChannelError> {
        let mut hubs = self.0.hubs.lock().await;
        if let Some(hub) = hubs.get(&channel.id) {
            hub.followers.fetch_add(1, Ordering::Relaxed);
            return Ok(hub.clone());
        }
        let (js, spec) = (&self.0.js, &self.0.spec);
        let (first, last) = match streams::bounds(js, spec, &channel.id).await {
            Err(ChannelError::NoStream { .. }) => {
                // Defined before its stream was (a restored JetStream, say): declare it.
                streams::ensure(js, spec, channel).await?;
                streams::bounds(js, spec, &channel.id).await?
            }
            other => other?,
        };
        let keep = self.0.buffer as u64;
        let start = match last {
            0 => 1,
            last => first.max(last.saturating_sub(keep - 1)).max(1),
        };
        let (tx, _) = broadcast::channel(self.0.buffer);
        let hub = Arc::new(Hub {
            channel: channel.id.clone(),
            state: Mutex::new(HubState {
                recent: VecDeque::with_capacity(self.0.buffer),
                next: start,
                newest_at_start: last,
            }),
            tx,
            followers: AtomicUsize::new(1),
            feed: Mutex::new(None),
        });
        let task = tokio::spawn(feed(self.clone(), hub.clone()));
        *hub.feed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(tokio_util::task::AbortOnDropHandle::new(task));
        hubs.insert(channel.id.clone(), hub.clone());
        metrics::gauge!("tally_ingest_channel_feed_streams").set(hubs.len() as f64);
        Ok(hub)
    }

    /// A follower left: the last one stops the channel's feed.
    async fn left(&self, hub: &Arc<Hub>) {
        let mut hubs = self.0.hubs.lock().await;
        if hub.followers.load(Ordering::Relaxed) == 0
            && hubs.get(&hub.channel).is_some_and(|h| Arc::ptr_eq(h, hub))
        {
            hubs.remove(&hub.channel);
            hub.feed.lock().unwrap_or_else(|e| e.into_inner()).take();
            metrics::gauge!("tally_ingest_channel_feed_streams").set(hubs.len() as f64);
        }
    }
}

/// Reads the channel's stream from the hub's next sequence into its memory and queue, for as
/// long as the hub lives; a failed read starts again from where it was.
async fn feed(channels: Channels, hub: Arc<Hub>) {
    let keep = channels.0.buffer;
    loop {
        let from = hub.state.lock().unwrap_or_else(|e| e.into_inner()).next;
        let read = streams::read_from(&channels.0.js, &channels.0.spec, &hub.channel, from).await;
        match read {
            Ok(messages) => {
                let mut messages = std::pin::pin!(messages);
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(m) => hub.deliver(m, keep),
                        Err(e) => {
                            tracing::warn!(channel = %hub.channel, error = %e, "Channel feed read failed; reading again.");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(channel = %hub.channel, error = %e, "Channel feed could not start; retrying.");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Hub {
    fn deliver(&self, message: ChannelMessage, keep: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if message.seq < state.next {
            return;
        }
        state.next = message.seq + 1;
        let message = Arc::new(message);
        if state.recent.len() == keep {
            state.recent.pop_front();
        }
        state.recent.push_back(message.clone());
        // No follower listening is fine: the message is kept in `recent`.
        let _ = self.tx.send(message);
        metrics::counter!("tally_ingest_channel_messages_fanned_out_total")
            .increment(self.tx.receiver_count() as u64);
    }

    /// A place in the queue, a copy of the memory, and the first sequence the two cover.
    fn join(&self) -> (broadcast::Receiver<Shared>, Vec<Shared>, u64, u64) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let recent: Vec<Shared> = state.recent.iter().cloned().collect();
        let from = recent.first().map_or(state.next, |m| m.seq);
        let newest = recent
            .last()
            .map_or(0, |m| m.seq)
            .max(state.newest_at_start);
        (rx, recent, from, newest)
    }
}

/// Decrements the follower counts when a follower goes (its client left or the server stops).
struct Leaving {
    channels: Channels,
    hub: Arc<Hub>,
}

impl Drop for Leaving {
    fn drop(&mut self) {
        self.hub.followers.fetch_sub(1, Ordering::Relaxed);
        let (channels, hub) = (self.channels.clone(), self.hub.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { channels.left(&hub).await });
        }
    }
}

type CatchUp = std::pin::Pin<Box<dyn Stream<Item = Result<ChannelMessage, ChannelError>> + Send>>;

struct Follower {
    hub: Arc<Hub>,
    delivery: Delivery,
    /// The last sequence delivered (None: a new follower, not placed yet).
    last: Option<u64>,
    /// Ready to deliver, in order.
    queue: VecDeque<Shared>,
    /// Reading the stream up to (not including) this sequence, before `queue`.
    catch_up: Option<(CatchUp, u64)>,
    rx: Option<broadcast::Receiver<Shared>>,
    /// After falling behind on a `latest` channel: deliver only the newest.
    skip_to_newest: bool,
    /// The channel's newest sequence when this follower joined: everything up to it is
    /// what it asked to resume, delivered whole even on a `latest` channel.
    resumed_up_to: u64,
    guard: Leaving,
}

impl Follower {
    async fn next(&mut self) -> Option<Shared> {
        loop {
            if let Some((stream, until)) = &mut self.catch_up {
                match stream.next().await {
                    Some(Ok(m)) if m.seq < *until => {
                        if m.seq + 1 >= *until {
                            self.catch_up = None;
                        }
                        if self.last.is_none_or(|l| m.seq > l) {
                            self.last = Some(m.seq);
                            return Some(Arc::new(m));
                        }
                        continue;
                    }
                    Some(Ok(_)) => {
                        self.catch_up = None;
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(channel = %self.hub.channel, error = %e, "Catching up failed; the follower reconnects.");
                        return None;
                    }
                    None => return None,
                }
            }
            if let Some(m) = self.queue.pop_front() {
                if self.last.is_none_or(|l| m.seq > l) {
                    self.last = Some(m.seq);
                    return Some(m);
                }
                continue;
            }
            let Some(rx) = &mut self.rx else {
                self.join().await?;
                continue;
            };
            match rx.recv().await {
                Ok(mut m) => {
                    // A `latest` follower that fell behind by a few takes only the newest;
                    // what it resumed to receive (up to the newest when it joined) comes whole.
                    if self.delivery == Delivery::Latest && m.seq > self.resumed_up_to {
                        while let Ok(newer) = rx.try_recv() {
                            m = newer;
                        }
                    }
                    self.queue.push_back(m);
                }
                Err(RecvError::Lagged(missed)) => {
                    metrics::counter!("tally_ingest_channel_follower_lags_total").increment(1);
                    tracing::debug!(channel = %self.hub.channel, missed, "A follower fell behind.");
                    self.rx = None;
                    self.skip_to_newest = self.delivery == Delivery::Latest;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Takes a place in the hub's queue; what lies between the last delivered message and the
    /// hub's memory is read from the stream first.
    async fn join(&mut self) -> Option<()> {
        let (rx, recent, from, newest) = self.hub.join();
        self.rx = Some(rx);
        self.resumed_up_to = newest;
        let last = match self.last {
            // A follower cannot have seen more than the channel holds (an id from before the
            // stream was recreated, or made up): it starts at the newest.
            Some(last) if last <= newest => last,
            _ => newest.saturating_sub(1),
        };
        if self.skip_to_newest {
            self.skip_to_newest = false;
            let newest = recent.last().cloned();
            self.last = Some(newest.as_ref().map_or(last, |m| m.seq.saturating_sub(1)));
            self.queue.extend(newest);
            return Some(());
        }
        self.last = Some(last);
        self.queue = recent.into();
        if last + 1 < from {
            let channels = &self.guard.channels;
            let stream = streams::read_from(
                channels.jetstream(),
                channels.spec(),
                &self.hub.channel,
                last + 1,
            )
            .await
            .map_err(
                |e| tracing::debug!(channel = %self.hub.channel, error = %e, "Cannot catch up."),
            )
            .ok()?;
            self.catch_up = Some((Box::pin(stream), from));
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tally_schema::channels::MessageKind;

    fn message(seq: u64) -> ChannelMessage {
        ChannelMessage {
            seq,
            kind: MessageKind::Message,
            payload: Bytes::from(seq.to_string()),
        }
    }

    fn hub(next: u64) -> Hub {
        let (tx, _) = broadcast::channel(4);
        Hub {
            channel: "c".try_into().unwrap(),
            state: Mutex::new(HubState {
                recent: VecDeque::new(),
                next,
                newest_at_start: next - 1,
            }),
            tx,
            followers: AtomicUsize::new(0),
            feed: Mutex::new(None),
        }
    }

    #[test]
    fn the_memory_keeps_the_newest_and_a_joiner_sees_the_rest_in_its_queue() {
        let hub = hub(1);
        for seq in 1..=5 {
            hub.deliver(message(seq), 3);
        }
        hub.deliver(message(4), 3); // a redelivery is dropped
        let (mut rx, recent, from, newest) = hub.join();
        assert_eq!(recent.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!((from, newest), (3, 5));
        hub.deliver(message(6), 3);
        assert_eq!(rx.try_recv().unwrap().seq, 6);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn an_empty_hub_starts_where_its_feed_will() {
        let hub = hub(8);
        let (_rx, recent, from, newest) = hub.join();
        assert!(recent.is_empty());
        assert_eq!((from, newest), (8, 7));
    }
}
