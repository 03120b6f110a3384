//! Live updates: one core-NATS subscription to the aggregator's change notifications, and a
//! watch channel per followed poll or tournament. A notification is turned into the current
//! view with one Redis read, however many clients follow that scope; each client sees the
//! latest value, so a slow one skips intermediate states instead of holding anything up or
//! growing a queue.

use crate::catalog::Catalog;
use crate::views::{ViewError, Views};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tally_schema::ids::{MatchId, TournamentId};
use tally_schema::resources::Tournament;
use tally_schema::{LiveView, StreamSpec};
use tokio::sync::watch;

/// The latest rendering of a view (JSON), or None before the first one.
pub type Latest = Option<Arc<str>>;
type Topic = (LiveView, String);

/// At most this many followed scopes are kept before unfollowed ones are swept.
const SWEEP_ABOVE: usize = 1024;

#[derive(Clone)]
pub struct Live {
    views: Views,
    catalog: Catalog,
    topics: Arc<Mutex<HashMap<Topic, watch::Sender<Latest>>>>,
    /// Turns true when the server stops: every stream ends, so graceful shutdown can finish.
    closing: watch::Receiver<bool>,
}

impl Live {
    pub fn new(views: Views, catalog: Catalog, closing: watch::Receiver<bool>) -> Self {
        Self {
            views,
            catalog,
            topics: Arc::default(),
            closing,
        }
    }

    /// Resolves when the server begins to stop.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.clone();
        async move {
            let _ = closing.wait_for(|c| *c).await;
        }
    }

    /// Follows a scope; a first follower gets the current view rendered once.
    pub fn follow(&self, view: LiveView, scope: &str) -> watch::Receiver<Latest> {
        let topic = (view, scope.to_owned());
        let (receiver, fresh) = {
            let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
            if topics.len() > SWEEP_ABOVE {
                topics.retain(|_, tx| tx.receiver_count() > 0);
            }
            match topics.get(&topic) {
                Some(tx) => (tx.subscribe(), false),
                None => {
                    let (tx, rx) = watch::channel(None);
                    topics.insert(topic.clone(), tx);
                    (rx, true)
                }
            }
        };
        if fresh {
            let live = self.clone();
            tokio::spawn(async move { live.refresh(topic).await });
        }
        receiver
    }

    /// Re-renders a followed topic; forgets it when nobody follows it any more.
    async fn refresh(&self, topic: Topic) {
        let followed = {
            let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
            match topics.get(&topic) {
                Some(tx) if tx.receiver_count() == 0 => {
                    topics.remove(&topic);
                    false
                }
                Some(_) => true,
                None => false,
            }
        };
        if !followed {
            return;
        }
        // A status or match topic is named by its tournament, then the user or match.
        let tournament = topic.1.split(USER_SEPARATOR).next().unwrap_or_default();
        let snapshot = self.catalog.snapshot();
        let definition = snapshot.tournament(tournament).ok();
        match render(&self.views, topic.0, &topic.1, definition).await {
            Ok(json) => {
                if let Some(tx) = self
                    .topics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&topic)
                {
                    tx.send_replace(Some(json.into()));
                }
            }
            Err(e) => tracing::warn!(error = %e, "Live view could not be read."),
        }
        metrics::counter!("tally_ingest_live_refreshes_total", "view" => topic.0.as_str())
            .increment(1);
    }

    /// Refreshes every followed topic of `view` within `tournament` (a user's status, a match).
    pub async fn refresh_within(&self, view: LiveView, tournament: &str) {
        let prefix = format!("{tournament}{USER_SEPARATOR}");
        let followed: Vec<Topic> = self
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|(v, s)| *v == view && s.starts_with(&prefix))
            .cloned()
            .collect();
        for topic in followed {
            self.refresh(topic).await;
        }
    }

    /// Listens to the aggregator's notifications until the subscription ends.
    pub async fn run(self, mut notifications: async_nats::Subscriber, spec: StreamSpec) {
        while let Some(message) = notifications.next().await {
            match spec.parse_live_subject(&message.subject) {
                // One notification per tournament: every follower of a status in it refreshes.
                Some((LiveView::RegistrationStatus, tournament)) => {
                    self.refresh_within(LiveView::RegistrationStatus, tournament)
                        .await;
                }
                // Scores change the standings and their matches' views alike.
                Some((LiveView::Standings, tournament)) => {
                    self.refresh((LiveView::Standings, tournament.to_owned()))
                        .await;
                    self.refresh_within(LiveView::Match, tournament).await;
                }
                Some((view, scope)) => self.refresh((view, scope.to_owned())).await,
                None => {}
            }
        }
    }
}

/// The same JSON the read API answers for the view; `tournament` is the definition of the
/// tournament a standings, status or match topic belongs to.
pub async fn render(
    views: &Views,
    view: LiveView,
    scope: &str,
    tournament: Option<&Tournament>,
) -> Result<String, ViewError> {
    let order = tournament.map(|t| t.sort).unwrap_or_default();
    let value = match view {
        LiveView::PollResults => serde_json::json!(views.poll_results(scope).await?),
        LiveView::RegistrationStatus => {
            let (tournament, user) = scope.split_once(USER_SEPARATOR).unwrap_or((scope, ""));
            let status = views.draw_result(tournament, user).await?;
            serde_json::json!({ "tournament": tournament, "user": user, "registration": status })
        }
        LiveView::Standings => {
            let teams = views
                .top(&views.keys().standings(scope), LIVE_STANDINGS, order)
                .await?;
            serde_json::json!(tally_schema::api::StandingsView {
                tournament: scope.to_owned(),
                teams,
                is_final: tournament.is_some_and(|d| d.is_final()),
            })
        }
        LiveView::Match => {
            let (t, m) = scope.split_once(USER_SEPARATOR).unwrap_or((scope, ""));
            let status = tournament
                .and_then(|d| d.matches.iter().find(|x| x.id.as_str() == m))
                .map(|x| x.status)
                .unwrap_or_default();
            // Topics are made from checked ids only.
            match (TournamentId::try_from(t), MatchId::try_from(m)) {
                (Ok(t), Ok(m)) => {
                    serde_json::to_value(views.match_view(&t, &m, status, order).await?)
                        .expect("a match view serializes")
                }
                _ => serde_json::Value::Null,
            }
        }
    };
    Ok(value.to_string())
}

/// Separates tournament and user in a registration-status topic (no id contains it).
pub const USER_SEPARATOR: char = '\u{1f}';

/// Teams in a live standings update.
pub const LIVE_STANDINGS: usize = 50;

/// How a live stream reaches its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// Server-sent events (`text/event-stream`).
    Sse,
    /// WebSocket text frames, each `{"id", "event", "data"}`.
    WebSocket,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::WebSocket => "websocket",
        }
    }
}

/// What a stream follows, for the caps' gauges: a live view's name, or `channel`.
pub type StreamKind = (&'static str, Transport);

/// How many live streams may be open: per client address (an IPv6 client by its /64) and on
/// this instance. Each open stream holds a [`StreamSlot`]; dropping it frees the place.
pub struct StreamSlots {
    per_address: usize,
    per_instance: usize,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    by_address: HashMap<String, usize>,
    total: usize,
    by_kind: HashMap<StreamKind, usize>,
}

/// Why a stream was not opened.
#[derive(Debug, PartialEq, Eq)]
pub enum SlotRefusal {
    /// This address holds as many as it may.
    Address(usize),
    /// This instance holds as many as it may.
    Instance(usize),
}

impl StreamSlots {
    pub fn new(per_address: usize, per_instance: usize) -> Arc<Self> {
        Arc::new(Self {
            per_address,
            per_instance,
            state: Mutex::default(),
        })
    }

    /// Takes a place for a stream of `kind` from `ip`, or says which cap is reached.
    pub fn take(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
        kind: StreamKind,
    ) -> Result<StreamSlot, SlotRefusal> {
        let address = crate::rate_limit::ip_bucket(ip);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.total >= self.per_instance {
            return Err(SlotRefusal::Instance(self.per_instance));
        }
        let held = state.by_address.entry(address.clone()).or_default();
        if *held >= self.per_address {
            return Err(SlotRefusal::Address(self.per_address));
        }
        *held += 1;
        state.total += 1;
        let open = state.by_kind.entry(kind).or_default();
        *open += 1;
        gauge(kind).set(*open as f64);
        Ok(StreamSlot {
            slots: self.clone(),
            address,
            kind,
        })
    }

    /// Open streams by view (or `channel`) and transport, for `/healthz?details`.
    pub fn open(&self) -> Vec<(StreamKind, usize)> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut open: Vec<_> = state.by_kind.iter().map(|(k, n)| (*k, *n)).collect();
        open.sort();
        open
    }
}

fn gauge((view, transport): StreamKind) -> metrics::Gauge {
    metrics::gauge!("tally_ingest_live_streams", "view" => view, "transport" => transport.as_str())
}

/// One open stream's place; freed when dropped (the client went away or the server stops).
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    address: String,
    kind: StreamKind,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut state = self.slots.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = state.by_address.get_mut(&self.address) {
            *held -= 1;
            if *held == 0 {
                state.by_address.remove(&self.address);
            }
        }
        state.total = state.total.saturating_sub(1);
        if let Some(open) = state.by_kind.get_mut(&self.kind) {
            *open = open.saturating_sub(1);
            gauge(self.kind).set(*open as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_address_and_per_instance_and_freed_on_drop() {
        let slots = StreamSlots::new(2, 3);
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: std::net::IpAddr = "2001:db8::ffff".parse().unwrap();
        let (poll, standings) = (
            ("poll", Transport::Sse),
            ("standings", Transport::WebSocket),
        );
        let first = slots.take(a, poll).unwrap();
        let _second = slots.take(a, standings).unwrap();
        assert_eq!(slots.take(a, poll).err(), Some(SlotRefusal::Address(2)));
        let _third = slots.take(b, poll).unwrap();
        assert_eq!(
            slots.take(b_same_64, poll).err(),
            Some(SlotRefusal::Instance(3))
        );
        drop(first);
        assert_eq!(slots.open(), vec![(poll, 1), (standings, 1)]);
        assert!(slots.take(b_same_64, poll).is_ok());
    }
}
