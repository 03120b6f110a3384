//! Guarantees under faults: a killed writer, an unreachable Postgres, an unreachable NATS.
//! Shared servers are never stopped; outages are made with an in-test TCP proxy.

use futures::StreamExt;
use rand::Rng;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tally_tests::proxy::{TcpProxy, target_of};
use tally_tests::{Ingest, Pipeline, TestEnv, Wait, fixtures, post, post_votes, wait_until};
use tally_workers::store::PgStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_after_commit_before_ack_or_at_random_loses_nothing_and_counts_nothing_twice()
 {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("kill")]).await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let mut acked = post_votes(ingest.base_url(), "kill", 300, 20).await;
    let config = env.workers_config();

    // A writer that fetched a batch and committed it, then died before acking: done by hand
    // with the writer's own consumer, decoder and store, so the moment is exact.
    let consumer = tally_kit::consumer::durable_consumer(
        &env.js,
        &env.nats.spec(),
        &config.writer.consumer_spec(),
    )
    .await
    .unwrap();
    let fetched: Vec<_> = consumer
        .fetch()
        .max_messages(120)
        .messages()
        .await
        .unwrap()
        .map(|m| m.unwrap())
        .collect()
        .await;
    assert_eq!(fetched.len(), 120);
    let events: Vec<_> = fetched
        .iter()
        .map(|m| tally_kit::consumer::decode(m).unwrap())
        .collect();
    let store = PgStore::connect(&env.database_url, 1).await.unwrap();
    let written = store.write(&events).await.unwrap();
    assert_eq!(written.inserted, 120);
    drop(fetched); // never acked: JetStream redelivers them after ack_wait

    // The real workers process, SIGKILLed at random moments while a burst is going on.
    let bin = env!("CARGO_BIN_EXE_tally-workers-under-test");
    let spawn = || {
        tokio::process::Command::new(bin)
            .envs(env.workers_env(&config))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the workers binary")
    };
    let burst = tokio::spawn(post_votes(ingest.base_url(), "kill", 3000, 16));
    for _ in 0..3 {
        let mut child = spawn();
        let pause = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill().await.unwrap(); // SIGKILL: no shutdown, no acks in flight
    }
    acked.extend(burst.await.unwrap());
    let mut survivor = spawn();
    env.assert_exactly_stored(&acked, Duration::from_secs(60))
        .await;
    survivor.kill().await.unwrap();
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unavailable_for_a_while_keeps_202s_coming_and_loses_nothing() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("outage")]).await;
    let proxy = TcpProxy::start(target_of(&env.database_url)).await;
    let pipeline = Pipeline::build(&env)
        .without_aggregator()
        .writer(|c| {
            c.database_url = proxy.rewrite(&env.database_url);
            c.writer.write_retries = 2;
        })
        .start()
        .await;
    let ingest = &pipeline.ingest;

    let mut acked = post_votes(ingest.base_url(), "outage", 200, 10).await;
    env.assert_exactly_stored(&acked, Duration::from_secs(15))
        .await;

    proxy.cut();
    acked.extend(post_votes(ingest.base_url(), "outage", 800, 10).await);
    tokio::time::sleep(Duration::from_secs(4)).await; // the writer fails, retries, backs off
    assert_eq!(
        env.stored_ids().await.len(),
        200,
        "nothing can be written while Postgres is away"
    );

    proxy.restore();
    env.assert_exactly_stored(&acked, Duration::from_secs(60))
        .await;
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_unreachable_means_a_quick_503_never_a_hang_or_a_false_202() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start(target_of(&env.nats.url)).await;
    let mut nats = env.nats.clone();
    nats.url = proxy.rewrite(&env.nats.url);
    let mut config = env.ingest_config();
    config.nats = nats;
    config.publish_timeout_ms = 1000;
    let ingest = Ingest::start(config).await;
    let http = reqwest::Client::new();
    let url = ingest.url("/v1/tournaments/cup/scores");
    let body = serde_json::json!({"match": "m", "team": "t", "points": 1});
    let mut accepted = 0;
    let (s, _) = post(&http, &url, &body).await;
    assert_eq!(s, 202);
    accepted += 1;

    proxy.cut();
    // Each refused event carries an idempotency key, as a well-behaved client's would.
    let keys: Vec<String> = (0..5).map(|i| format!("outage-{i}")).collect();
    for key in &keys {
        let started = Instant::now();
        let response = http
            .post(&url)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unavailable");
        assert!(took < Duration::from_millis(1800), "503 took {took:?}");
    }
    let ready = http.get(ingest.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // The runbook's first question, answered by the metric: unavailable because of what.
    let metrics = http.get(ingest.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let broker_refusals: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("tally_ingest_rejections_total{reason=\"broker_"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(broker_refusals, keys.len() as u64, "{metrics}");

    proxy.restore();
    // The client retries each refused event with its key until it is accepted. A 503 is not
    // a promise that nothing was stored (a publish that timed out may still land when the
    // connection comes back); the key is what makes the retry safe.
    for key in &keys {
        let what = format!("ingest to accept {key} after NATS came back");
        wait_until(what, Duration::from_secs(30), async || {
            let response = http
                .post(&url)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            match response.status().as_u16() {
                202 => Ok(()),
                503 => Err(response.text().await.unwrap_or_default()),
                other => panic!("{key}: {other}"),
            }
        })
        .await;
    }
    accepted += keys.len() as u64;
    // Every event is on the stream exactly once: no false 202, no duplicate from the retries.
    assert_eq!(env.stream_messages().await, accepted);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_publishes_in_flight_bound_requests_are_shed_soon_not_queued() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("shed")]).await;
    let proxy = TcpProxy::start(target_of(&env.nats.url)).await;
    let mut config = env.ingest_config();
    config.nats.url = proxy.rewrite(&env.nats.url);
    config.publish_timeout_ms = 5000;
    config.max_publishes_in_flight = 4;
    config.publish_slot_wait_ms = 100;
    let ingest = Ingest::start(config).await;
    let http = reqwest::Client::new();
    let url = ingest.url("/v1/polls/shed/votes");
    let vote = |i: usize| serde_json::json!({"voter": format!("v{i}"), "options": ["a"]});

    // A black hole: the connection stays up, no ack comes back, so four publishes hold every
    // permit until their timeout.
    proxy.set(tally_tests::proxy::Mode::Drop);
    let held: Vec<_> = (0..4)
        .map(|i| {
            let (http, url, body) = (http.clone(), url.clone(), vote(i));
            tokio::spawn(async move { post(&http, &url, &body).await.0 })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 4..14 {
        let started = Instant::now();
        let (status, body) = post(&http, &url, &vote(i)).await;
        let took = started.elapsed();
        assert_eq!(status, 503, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("overloaded")),
            "{body}"
        );
        assert!(took < Duration::from_millis(1000), "shed after {took:?}");
    }
    for request in held {
        assert_eq!(request.await.unwrap(), 503, "no ack within the timeout");
    }

    // The permits come back with the answers: ingest takes votes again at once.
    proxy.restore();
    let what = "ingest to take votes again";
    wait_until(what, Duration::from_secs(30), async || {
        let (status, body) = post(&http, &url, &vote(100)).await;
        if status == 202 {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_every_started_request_truthfully() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("drain")]).await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let http = reqwest::Client::new();
    let url = ingest.url("/v1/polls/drain/votes");
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests: Vec<_> = (0..400)
        .map(|i| {
            let request = http
                .post(&url)
                .json(&serde_json::json!({"voter": format!("v{i}"), "options": ["a"]}));
            let answered = answered.clone();
            tokio::spawn(async move {
                let status = request.send().await.map(|r| r.status().as_u16());
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                status
            })
        })
        .collect();
    // Stop once the burst is under way, so that requests are in flight at that moment.
    Wait::new("a request to be answered", Duration::from_secs(10))
        .every(Duration::from_millis(1))
        .until(async || answered.load(std::sync::atomic::Ordering::SeqCst) > 0)
        .await;
    ingest.stop().await;
    let mut accepted = 0;
    for request in requests {
        match request.await.unwrap() {
            Ok(202) => accepted += 1,
            Ok(other) => panic!("unexpected status {other}"),
            Err(_) => {} // sent after the listener closed: never accepted
        }
    }
    assert!(accepted > 0, "some requests were answered 202");
    // Every 202 is stored, and nothing stored lacks its 202.
    assert_eq!(env.stream_messages().await, accepted);
}
