//! Broadcast channels against the real NATS, Postgres and Redis: publishing with its rules
//! and bounds, following over SSE and WebSocket, resuming after a reconnect with exactly
//! what was missed, retention, and what a follower that cannot keep up receives.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::sse::{SseEvent, SseStream};
use tally_tests::{AdminClient, Ingest, TestEnv, post};

const SECRET: &str = "a shared secret of more than 32 bytes!";

struct Channel {
    http: reqwest::Client,
    ingest: Ingest,
    site: String,
    admin: AdminClient,
}

impl Channel {
    async fn start(env: &TestEnv, change: impl FnOnce(&mut tally_ingest::IngestConfig)) -> Self {
        let mut config = env.ingest_config();
        config.tokens.jwt_hs256_secret = Some(SECRET.into());
        change(&mut config);
        let ingest = Ingest::start(config).await;
        let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
        Self {
            http: reqwest::Client::new(),
            site: env.api_key(Role::Site).await,
            ingest,
            admin,
        }
    }

    async fn create(&self, definition: Value) {
        self.admin.create("channels", definition).await;
    }

    /// Publishes as the site key; returns the status and body.
    async fn publish_as(
        &self,
        credential: Option<&str>,
        channel: &str,
        body: &Value,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.ingest.url(&format!("/v1/channels/{channel}/messages")))
            .json(body);
        if let Some(c) = credential {
            request = request.bearer_auth(c);
        }
        if let Some(k) = key {
            request = request.header("idempotency-key", k);
        }
        let response = request.send().await.expect("publish sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Publishes and returns the sequence; panics unless 202.
    async fn publish(&self, channel: &str, body: Value) -> u64 {
        let (status, answer) = self
            .publish_as(Some(&self.site), channel, &body, None)
            .await;
        assert_eq!(status, 202, "{answer}");
        answer["seq"].as_u64().expect("a sequence")
    }

    async fn follow(&self, channel: &str, last: Option<u64>) -> SseStream {
        let url = self.ingest.url(&format!("/v1/channels/{channel}/stream"));
        SseStream::open(&self.http, &url, last).await
    }
}

fn seqs(events: &[SseEvent]) -> Vec<u64> {
    events.iter().map(SseEvent::seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_that_drops_resumes_with_exactly_what_it_missed() {
    let env = TestEnv::new().await;
    // A small memory, so a resume reads most of what it missed from the stream.
    let c = Channel::start(&env, |config| config.channels.channel_buffer = 16).await;
    c.create(json!({"id": "moves", "delivery": "every"})).await;

    let mut follower = c.follow("moves", None).await;
    for n in 0..20 {
        c.publish("moves", json!({"n": n})).await;
    }
    let seen = follower.take(20).await;
    assert_eq!(seqs(&seen), (1..=20).collect::<Vec<_>>());
    assert!(seen.iter().all(|e| e.event == "message"));
    assert_eq!(seen[19].data, json!({"n": 19}));
    drop(follower);

    // 10 s away while 100 messages are published.
    let away = tokio::time::Instant::now();
    for n in 20..120 {
        c.publish("moves", json!({"n": n})).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    assert!(away.elapsed() >= Duration::from_secs(8));
    let mut follower = c.follow("moves", Some(20)).await;
    let missed = follower.take(100).await;
    assert_eq!(seqs(&missed), (21..=120).collect::<Vec<_>>());
    for (i, event) in missed.iter().enumerate() {
        assert_eq!(event.data, json!({"n": 20 + i}));
    }
    // Then live, with nothing repeated.
    c.publish("moves", json!({"n": 120})).await;
    let live = follower.take(1).await;
    assert_eq!(seqs(&live), [121]);
    assert!(
        follower
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing more"
    );

    // A new follower starts at the newest message; one resuming from 0 gets everything kept.
    let mut newest = c.follow("moves", None).await;
    assert_eq!(seqs(&newest.take(1).await), [121]);
    let mut everything = c.follow("moves", Some(0)).await;
    assert_eq!(
        seqs(&everything.take(121).await),
        (1..=121).collect::<Vec<_>>()
    );
    c.ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnecting_during_a_burst_loses_and_repeats_nothing() {
    let env = TestEnv::new().await;
    let c = Channel::start(&env, |config| config.channels.channel_buffer = 8).await;
    c.create(json!({"id": "feed", "delivery": "every"})).await;
    const MESSAGES: u64 = 600;
    let publisher = {
        let (http, url, site) = (
            c.http.clone(),
            c.ingest.url("/v1/channels/feed/messages"),
            c.site.clone(),
        );
        tokio::spawn(async move {
            for n in 0..MESSAGES {
                let response = http
                    .post(&url)
                    .bearer_auth(&site)
                    .json(&json!({"n": n}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
                if n % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    // The follower drops after every few events and comes back with the last id it saw.
    let mut received = Vec::new();
    let mut last = Some(0);
    let mut reconnects = 0;
    while received.len() < MESSAGES as usize {
        let mut follower = c.follow("feed", last).await;
        let chunk = 1 + (reconnects * 37) % 90;
        for _ in 0..chunk {
            let Some(event) = follower.next_within(Duration::from_secs(15)).await else {
                panic!("stalled after {} events", received.len());
            };
            last = Some(event.seq());
            received.push(event.seq());
            if received.len() == MESSAGES as usize {
                break;
            }
        }
        reconnects += 1;
    }
    publisher.await.unwrap();
    assert!(reconnects > 10, "only {reconnects} reconnects");
    assert_eq!(
        received,
        (1..=MESSAGES).collect::<Vec<_>>(),
        "in order, once each"
    );
    c.ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_and_sse_followers_receive_the_same_messages() {
    let env = TestEnv::new().await;
    let c = Channel::start(&env, |_| {}).await;
    c.create(json!({"id": "scores", "delivery": "every"})).await;
    let first = c.publish("scores", json!({"n": 0})).await;

    let mut sse = c.follow("scores", Some(first)).await;
    let ws_url = format!(
        "ws://{}/v1/channels/scores/ws?last_event_id={first}",
        c.ingest.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("the WebSocket opens");
    for n in 1..=30 {
        c.publish("scores", json!({"n": n, "text": "line\nbreak"}))
            .await;
    }
    let by_sse: Vec<(u64, Value)> = sse
        .take(30)
        .await
        .into_iter()
        .map(|e| (e.seq(), e.data))
        .collect();
    let mut by_ws = Vec::new();
    while by_ws.len() < 30 {
        let frame = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a frame within 15 s")
            .expect("the socket stays open")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let frame: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(frame["event"], "message");
            let seq: u64 = frame["id"].as_str().unwrap().parse().unwrap();
            by_ws.push((seq, frame["data"].clone()));
        }
    }
    assert_eq!(by_sse, by_ws);
    assert_eq!(by_ws[0].0, first + 1);
    assert_eq!(by_ws[29].1, json!({"n": 30, "text": "line\nbreak"}));

    // Both are counted, by transport, until they go.
    let (status, health) = tally_tests::get(&c.http, &c.ingest.url("/healthz?details=true")).await;
    assert_eq!(status, 200);
    assert_eq!(health["channel_followers"]["scores"], 2, "{health}");
    assert_eq!(health["transports"]["websocket"], 1, "{health}");
    ws.send(tokio_tungstenite::tungstenite::Message::Close(None))
        .await
        .unwrap();
    drop(sse);
    tally_tests::wait_until(
        "the followers to be gone",
        Duration::from_secs(10),
        async || {
            let (_, health) =
                tally_tests::get(&c.http, &c.ingest.url("/healthz?details=true")).await;
            match health["channel_followers"].get("scores") {
                None => Ok(()),
                Some(n) => Err(format!("{n} followers left")),
            }
        },
    )
    .await;
    c.ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_follower_gets_the_newest_or_everything_as_its_channel_asks() {
    let env = TestEnv::new().await;
    let c = Channel::start(&env, |config| config.channels.channel_buffer = 4).await;
    let retention = json!({"messages": 10000, "max_age_secs": 3600});
    c.create(json!({"id": "price", "delivery": "latest", "retention": retention}))
        .await;
    c.create(json!({"id": "ledger", "delivery": "every", "retention": retention}))
        .await;
    // 8 KB messages, more than the loopback socket buffers hold, while nobody reads.
    const MESSAGES: u64 = 4000;
    let pad = "x".repeat(8000);
    let mut latest = c.follow("price", Some(0)).await;
    let mut every = c.follow("ledger", Some(0)).await;
    futures::stream::iter(0..MESSAGES)
        .for_each_concurrent(32, |n| {
            let (c, pad) = (&c, &pad);
            async move {
                c.publish("price", json!({"n": n, "pad": pad})).await;
                c.publish("ledger", json!({"n": n, "pad": pad})).await;
            }
        })
        .await;

    let mut got = Vec::new();
    while let Some(event) = latest.next_within(Duration::from_secs(3)).await {
        got.push(event.seq());
    }
    assert_eq!(got.last(), Some(&MESSAGES), "the newest arrives");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    assert!(
        (got.len() as u64) < MESSAGES,
        "a slow follower of a latest channel skips: got all {MESSAGES}"
    );

    let mut all = Vec::new();
    while let Some(event) = every.next_within(Duration::from_secs(3)).await {
        all.push(event.seq());
    }
    assert_eq!(
        all,
        (1..=MESSAGES).collect::<Vec<_>>(),
        "every message, in order"
    );
    c.ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishing_and_following_check_who_asks_and_what_they_send() {
    let env = TestEnv::new().await;
    let c = Channel::start(&env, |config| {
        config.channels.channel_message_max_bytes = 1024;
    })
    .await;
    c.create(json!({"id": "news", "publishers": {"role": "site", "group": "press"}}))
        .await;
    c.create(json!({"id": "members", "followers": "token", "publishers": {}}))
        .await;
    c.create(json!({"id": "short", "retention": {"messages": 10, "max_age_secs": 3600}}))
        .await;
    let body = json!({"headline": "hello"});
    let viewer = env.api_key(Role::Viewer).await;
    let admin = env.api_key(Role::Admin).await;
    let now = chrono::Utc::now().timestamp();
    let token = |group: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "reporter", "exp": now + 300, "tally_group": group}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    };

    let code = |answer: &Value| answer["error"]["code"].as_str().unwrap_or("").to_owned();
    let (status, answer) = c.publish_as(None, "news", &body, None).await;
    assert_eq!((status, code(&answer).as_str()), (401, "unauthorized"));
    let (status, answer) = c.publish_as(Some(&viewer), "news", &body, None).await;
    assert_eq!((status, code(&answer).as_str()), (403, "not_a_publisher"));
    let (status, answer) = c
        .publish_as(Some(&token("fans")), "news", &body, None)
        .await;
    assert_eq!((status, code(&answer).as_str()), (403, "not_a_publisher"));
    let (status, _) = c
        .publish_as(Some(&token("press")), "news", &body, None)
        .await;
    assert_eq!(status, 202, "a token in the publisher group");
    let (status, _) = c.publish_as(Some(&admin), "news", &body, None).await;
    assert_eq!(status, 202, "admin keys always");
    let (status, answer) = c.publish_as(Some(&c.site), "members", &body, None).await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (403, "not_a_publisher"),
        "no publisher rule: admin keys only"
    );
    let (status, answer) = c.publish_as(Some(&c.site), "nowhere", &body, None).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (404, Some("channel"))
    );

    // The same idempotency key is stored once; another caller's same key is its own.
    let (s1, first) = c
        .publish_as(Some(&c.site), "news", &body, Some("k-1"))
        .await;
    let (s2, again) = c
        .publish_as(Some(&c.site), "news", &body, Some("k-1"))
        .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["seq"], again["seq"]);
    assert_eq!(
        (first["duplicate"].as_bool(), again["duplicate"].as_bool()),
        (Some(false), Some(true))
    );
    let (_, other) = c.publish_as(Some(&admin), "news", &body, Some("k-1")).await;
    assert_eq!(other["duplicate"], false);

    // Bad bodies change nothing.
    let url = c.ingest.url("/v1/channels/news/messages");
    let raw = |bytes: &'static str, content_type: &'static str| {
        c.http
            .post(&url)
            .bearer_auth(&c.site)
            .header("content-type", content_type)
            .body(bytes)
            .send()
    };
    let response = raw("{not json", "application/json").await.unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(code(&answer), "malformed_json");
    assert_eq!(raw("{}", "text/plain").await.unwrap().status(), 415);
    let big = json!({"pad": "x".repeat(2000)});
    let (status, answer) = c.publish_as(Some(&c.site), "news", &big, None).await;
    assert_eq!((status, code(&answer).as_str()), (413, "payload_too_large"));
    let mut all = c.follow("news", Some(0)).await;
    // The press token's, the admin's, the site's keyed one (once) and the admin's same key.
    assert_eq!(
        seqs(&all.take(4).await),
        [1, 2, 3, 4],
        "four messages stored"
    );
    assert!(all.next_within(Duration::from_millis(300)).await.is_none());
    drop(all);

    // A stream removed behind Tally's back is declared again by the next publish.
    let news: tally_schema::ids::ChannelId = "news".try_into().unwrap();
    env.js
        .delete_stream(env.nats.spec().channel_stream(&news))
        .await
        .unwrap();
    let (status, answer) = c.publish_as(Some(&c.site), "news", &body, None).await;
    assert_eq!((status, answer["seq"].as_u64()), (202, Some(1)), "{answer}");

    // Following a token channel needs a token (header or query).
    let stream = c.ingest.url("/v1/channels/members/stream");
    let response = c.http.get(&stream).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = c
        .http
        .get(format!("{stream}?access_token={}", token("fans")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, answer) = post(
        &c.http,
        &c.ingest.url("/v1/channels/members/stream"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 405, "{answer}");

    // A last event id that is not a sequence, and a WebSocket route asked without a handshake.
    let response = c
        .http
        .get(c.ingest.url("/v1/channels/news/stream"))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["field"], "Last-Event-ID");
    let response = c
        .http
        .get(c.ingest.url("/v1/channels/news/ws"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["field"], "Upgrade");

    // Retention: a follower resumes within what the channel keeps.
    for n in 0..30 {
        c.publish("short", json!({"n": n})).await;
    }
    let mut kept = c.follow("short", Some(0)).await;
    assert_eq!(seqs(&kept.take(10).await), (21..=30).collect::<Vec<_>>());

    // A closed channel takes nothing; its followers may still read.
    let (status, _) = c
        .admin
        .send(
            reqwest::Method::POST,
            "/admin/v1/channels/short/close",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, answer) = c.publish_as(Some(&c.site), "short", &body, None).await;
    assert_eq!((status, code(&answer).as_str()), (409, "channel_closed"));
    let mut after_close = c.follow("short", None).await;
    assert_eq!(seqs(&after_close.take(1).await), [30]);

    // A bad definition names its field.
    let (status, answer) = c
        .admin
        .send(
            reqwest::Method::POST,
            "/admin/v1/channels",
            Some(&json!({"id": "bad", "retention": {"messages": 0, "max_age_secs": 60}})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("retention.messages"))
    );
    c.ingest.stop().await;
}
