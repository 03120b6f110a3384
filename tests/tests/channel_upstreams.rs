//! The workers' upstream poller against a local upstream that is fine, slow, failing, hung
//! and garbled in turn: changed values are published once, unchanged ones never, the circuit
//! opens and holds calls back, followers keep the last good value marked stale, and calls
//! never exceed the token bucket.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_ingest::auth::Role;
use tally_kit::channels::{self as streams, ChannelMessage};
use tally_schema::channels::MessageKind;
use tally_schema::ids::ChannelId;
use tally_tests::sse::SseStream;
use tally_tests::{AdminClient, Ingest, TestEnv, Writer, wait_until};

#[derive(Clone, Debug)]
enum Mode {
    Value(Value),
    Slow(Duration, Value),
    /// A fresh value on every call.
    Counter,
    Error,
    Hang,
    Garbage,
}

/// A local upstream whose behaviour the test changes, recording when it was called.
#[derive(Clone)]
struct Upstream {
    mode: Arc<Mutex<Mode>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Upstream {
    async fn start(mode: Mode) -> (Self, String) {
        let upstream = Self {
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::default(),
        };
        let state = upstream.clone();
        let app = axum::Router::new().route(
            "/feed",
            axum::routing::get(move || {
                let state = state.clone();
                async move { state.answer().await }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/feed", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (upstream, url)
    }

    async fn answer(&self) -> axum::response::Response {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Instant::now());
            calls.len()
        };
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::Value(v) => axum::Json(v).into_response(),
            Mode::Slow(wait, v) => {
                tokio::time::sleep(wait).await;
                axum::Json(v).into_response()
            }
            Mode::Counter => axum::Json(json!({"call": n})).into_response(),
            Mode::Error => {
                (StatusCode::BAD_GATEWAY, "upstream of the upstream is down").into_response()
            }
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::OK.into_response()
            }
            Mode::Garbage => (StatusCode::OK, "<html>surprise</html>").into_response(),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

async fn messages(env: &TestEnv, channel: &str) -> Vec<ChannelMessage> {
    let id: ChannelId = channel.try_into().unwrap();
    let Ok((_, last)) = streams::bounds(&env.js, &env.nats.spec(), &id).await else {
        return Vec::new();
    };
    if last == 0 {
        return Vec::new();
    }
    use futures::StreamExt;
    let read = streams::read_from(&env.js, &env.nats.spec(), &id, 1)
        .await
        .unwrap();
    let mut read = std::pin::pin!(read);
    let mut all = Vec::new();
    while all.last().is_none_or(|m: &ChannelMessage| m.seq < last) {
        all.push(read.next().await.unwrap().unwrap());
    }
    all
}

fn payload(m: &ChannelMessage) -> Value {
    serde_json::from_slice(&m.payload).unwrap()
}

/// Waits until the channel holds `n` messages.
async fn wait_for_messages(env: &TestEnv, channel: &str, n: usize) -> Vec<ChannelMessage> {
    let what = format!("{n} messages on {channel}");
    wait_until(what, Duration::from_secs(20), async || {
        let all = messages(env, channel).await;
        match all.len() >= n {
            true => Ok(()),
            false => Err(format!("{} so far", all.len())),
        }
    })
    .await;
    messages(env, channel).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_poller_publishes_changes_skips_repeats_and_marks_a_dead_upstream_stale() {
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    let (upstream, url) = Upstream::start(Mode::Value(json!({"price": 1}))).await;
    admin
        .create(
            "channels",
            json!({"id": "price", "upstream": {
                "url": url, "every_secs": 1, "timeout_ms": 400, "burst": 5, "per_minute": 120,
                "failures_to_open": 2, "open_secs": 3}}),
        )
        .await;
    let writer = Writer::start(env.workers_config()).await;
    let http = reqwest::Client::new();
    let mut follower =
        SseStream::open(&http, &ingest.url("/v1/channels/price/stream"), Some(0)).await;

    let first = wait_for_messages(&env, "price", 1).await;
    assert_eq!(payload(&first[0]), json!({"price": 1}));
    // The same value again and again: nothing new is published.
    let calls_before = upstream.calls().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(upstream.calls().len() >= calls_before + 2, "still polled");
    assert_eq!(
        messages(&env, "price").await.len(),
        1,
        "unchanged values are skipped"
    );

    // Slow but within the timeout: the new value goes out.
    upstream.set(Mode::Slow(Duration::from_millis(150), json!({"price": 2})));
    let all = wait_for_messages(&env, "price", 2).await;
    assert_eq!(payload(&all[1]), json!({"price": 2}));

    // Failing: two failures in a row open the circuit, and the last good value goes out
    // again marked stale.
    upstream.set(Mode::Error);
    let all = wait_for_messages(&env, "price", 3).await;
    let stale = &all[2];
    assert_eq!(
        (stale.kind, payload(stale)),
        (MessageKind::Stale, json!({"price": 2}))
    );
    let opened = Instant::now();
    // While open, no calls; then one call tries again (hung: timed out, open again).
    upstream.set(Mode::Hang);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during_open: Vec<_> = upstream
        .calls()
        .into_iter()
        .filter(|t| {
            *t > opened + Duration::from_millis(300) && *t < opened + Duration::from_millis(2500)
        })
        .collect();
    assert!(
        during_open.is_empty(),
        "{} calls while the circuit was open",
        during_open.len()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    upstream.set(Mode::Garbage);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        messages(&env, "price").await.len(),
        3,
        "hung and garbled answers publish nothing, and a stale channel is marked once"
    );

    // Back with the same value as before it failed: published fresh.
    upstream.set(Mode::Value(json!({"price": 2})));
    let all = wait_for_messages(&env, "price", 4).await;
    assert_eq!(
        (all[3].kind, payload(&all[3])),
        (MessageKind::Message, json!({"price": 2}))
    );

    // The follower saw the same four, the stale one as a `stale` event.
    let events = follower.take(4).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["message", "message", "stale", "message"]);
    assert_eq!(events[2].data, json!({"price": 2}));
    writer.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_calls_never_exceed_the_bucket() {
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    let (upstream, url) = Upstream::start(Mode::Counter).await;
    // Due every second, but the bucket allows 2 at once and then 1 every 10 s.
    admin
        .create(
            "channels",
            json!({"id": "ticks", "upstream": {
                "url": url, "every_secs": 1, "burst": 2, "per_minute": 6}}),
        )
        .await;
    // Two workers: the turn in Redis makes them call once per interval between them.
    let one = Writer::start(env.workers_config()).await;
    let two = Writer::start(env.workers_config()).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let calls = upstream.calls();
    let span = calls.last().unwrap().duration_since(calls[0]);
    // Per worker: 2 + span/10 s. Both together, in turn: at most twice that.
    let bound = 2 * (2 + span.as_secs() / 10 + 1);
    assert!(
        (2..=bound as usize).contains(&calls.len()),
        "{} calls in {span:?}",
        calls.len()
    );
    let all = messages(&env, "ticks").await;
    assert_eq!(all.len(), calls.len(), "each changed value published once");
    one.stop().await;
    two.stop().await;
    ingest.stop().await;
}
