//! The Redis sink: tallies, standings, registration counts and Elo rankings follow the
//! events, exactly once, in stream order, across crashes.

use async_nats::jetstream::kv;
use rand::Rng;
use redis::AsyncCommands;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tally_aggregator::effects::elo_update;
use tally_schema::redis_keys::Keys;
use tally_tests::{
    Aggregator, Ingest, Pipeline, TestEnv, fixtures, post, post_votes, wait_for_event, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tallies_standings_counts_and_elo_follow_the_events() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env).without_writer().start().await;
    let ingest = &pipeline.ingest;
    let http = reqwest::Client::new();
    let keys = Keys::new(env.name.clone());
    let mut last = 0;
    let mut send = async |path: &str, body: serde_json::Value| {
        let (status, body) = post(&http, &ingest.url(path), &body).await;
        assert_eq!(status, 202, "{body}");
        last = body["seq"].as_u64().unwrap();
    };
    send(
        "/v1/polls/final/votes",
        json!({"voter": "a", "options": ["red", "blue"]}),
    )
    .await;
    send(
        "/v1/polls/final/votes",
        json!({"voter": "b", "options": ["red"]}),
    )
    .await;
    send(
        "/v1/tournaments/cup/scores",
        json!({"match": "m1", "team": "owls", "points": 3}),
    )
    .await;
    send(
        "/v1/tournaments/cup/scores",
        json!({"match": "m2", "team": "owls", "points": -1}),
    )
    .await;
    send(
        "/v1/tournaments/cup/scores",
        json!({"match": "m2", "team": "larks", "points": 5}),
    )
    .await;
    send(
        "/v1/tournaments/cup/registrations",
        json!({"user": "u1", "group": "vip"}),
    )
    .await;
    send("/v1/tournaments/cup/registrations", json!({"user": "u2"})).await;
    let votes = [("s1", "x", "y"), ("s1", "x", "z"), ("s2", "z", "x")];
    for (session, winner, loser) in votes {
        send(
            "/v1/arenas/models/votes",
            json!({"session": session, "winner": winner, "loser": loser}),
        )
        .await;
    }
    env.wait_applied(last).await;

    let mut redis = env.redis().await;
    let tally: HashMap<String, i64> = redis.hgetall(keys.poll_tally("final")).await.unwrap();
    assert_eq!(
        tally,
        HashMap::from([("red".into(), 2), ("blue".into(), 1)])
    );
    let standings: Vec<(String, f64)> = redis
        .zrevrange_withscores(keys.standings("cup"), 0, -1)
        .await
        .unwrap();
    assert_eq!(standings, vec![("larks".into(), 5.0), ("owls".into(), 2.0)]);
    let counts: HashMap<String, i64> = redis.hgetall(keys.registrations("cup")).await.unwrap();
    assert_eq!(
        counts,
        HashMap::from([("_total".into(), 2), ("vip".into(), 1)])
    );

    // Elo replayed by the reference implementation, in the same order.
    let (k, initial) = (32.0, 1000.0);
    let mut global: HashMap<&str, f64> = HashMap::new();
    let mut s1: HashMap<&str, f64> = HashMap::new();
    for (session, w, l) in votes {
        for ratings in [&mut global]
            .into_iter()
            .chain((session == "s1").then_some(&mut s1))
        {
            let (rw, rl) = elo_update(
                *ratings.get(w).unwrap_or(&initial),
                *ratings.get(l).unwrap_or(&initial),
                k,
            );
            ratings.insert(w, rw);
            ratings.insert(l, rl);
        }
    }
    let stored: Vec<(String, f64)> = redis
        .zrange_withscores(keys.arena_elo("models"), 0, -1)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    for (item, rating) in &stored {
        assert!(
            (rating - global[item.as_str()]).abs() < 1e-6,
            "{item}: {rating} vs {}",
            global[item.as_str()]
        );
    }
    let personal: Vec<(String, f64)> = redis
        .zrange_withscores(keys.session_elo("models", "s1"), 0, -1)
        .await
        .unwrap();
    for (item, rating) in &personal {
        assert!((rating - s1[item.as_str()]).abs() < 1e-6);
    }
    let ttl: i64 = redis.ttl(keys.session_elo("models", "s1")).await.unwrap();
    assert!(ttl > 0 && ttl <= 86_400, "personal rankings expire: {ttl}");

    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_aggregator_resumes_after_its_watermark_without_counting_twice() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("crash")]).await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let keys = Keys::new(env.name.clone());
    let burst = tokio::spawn(post_votes(ingest.base_url(), "crash", 3000, 16));
    for _ in 0..3 {
        let aggregator = Aggregator::start(env.aggregator_config()).await;
        let pause = rand::rng().random_range(200..900);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        aggregator.crash().await; // no ack, no flush: a SIGKILL as far as NATS and Redis see it
    }
    let acked = burst.await.unwrap();
    let aggregator = Aggregator::start(env.aggregator_config()).await;
    env.wait_applied(env.stream_messages().await).await;

    // post_votes sends one vote for option "a" per request.
    let mut redis = env.redis().await;
    let tally: HashMap<String, i64> = redis.hgetall(keys.poll_tally("crash")).await.unwrap();
    assert_eq!(tally.get("a").copied().unwrap_or(0), acked.len() as i64);
    aggregator.stop().await;
    ingest.stop().await;
}

#[tokio::test]
async fn the_same_batch_applied_twice_changes_nothing_the_second_time() {
    let env = TestEnv::new().await;
    let sink = redis_sink(&env).await;
    let events: Vec<tally_schema::StoredEvent> = (1..=5)
        .map(|seq| tally_schema::StoredEvent {
            stream_seq: seq,
            envelope: tally_schema::Envelope::new(
                tally_schema::api::PairVoteBody {
                    id: None,
                    session: "s".try_into().unwrap(),
                    winner: "w".try_into().unwrap(),
                    loser: "l".try_into().unwrap(),
                }
                .into_event("a".try_into().unwrap()),
            ),
        })
        .collect();
    let first = sink.apply(&events).await.unwrap();
    assert_eq!((first.applied, first.skipped, first.high), (5, 0, 5));
    let mut redis = env.redis().await;
    let before: Vec<(String, f64)> = redis
        .zrange_withscores(sink.keys().arena_elo("a"), 0, -1)
        .await
        .unwrap();
    let again = sink.apply(&events).await.unwrap();
    assert_eq!((again.applied, again.skipped, again.high), (0, 5, 5));
    // A batch overlapping the applied range applies only its new part.
    let mut overlap = events[3..].to_vec();
    overlap.push(tally_schema::StoredEvent {
        stream_seq: 6,
        ..events[0].clone()
    });
    let third = sink.apply(&overlap).await.unwrap();
    assert_eq!((third.applied, third.skipped, third.high), (1, 2, 6));
    let after: Vec<(String, f64)> = redis
        .zrange_withscores(sink.keys().arena_elo("a"), 0, -1)
        .await
        .unwrap();
    let (w, l) = elo_update(before[1].1, before[0].1, 32.0);
    assert!(
        (after[1].1 - w).abs() < 1e-6 && (after[0].1 - l).abs() < 1e-6,
        "{before:?} -> {after:?}"
    );

    // The script survives a SCRIPT FLUSH (what a Redis restart does to cached scripts).
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut next = events[0].clone();
    next.stream_seq = 7;
    assert_eq!(sink.apply(&[next]).await.unwrap().applied, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_retry_after_the_duplicate_window_counts_once_in_redis() {
    // Outside JetStream's window a keyed event can be on the stream twice, at two sequences;
    // the sequence watermark cannot see that, the id can.
    let env = TestEnv::new().await;
    let spec = env.nats.spec();
    let vote = tally_schema::api::PollVoteBody {
        id: None,
        voter: "ada".try_into().unwrap(),
        options: vec!["red".try_into().unwrap()],
    }
    .into_event("retry".try_into().unwrap());
    let keyed = tally_schema::Envelope::keyed(uuid::Uuid::now_v7(), vote);
    let plain = tally_schema::Envelope::new(
        tally_schema::api::PollVoteBody {
            id: None,
            voter: "bob".try_into().unwrap(),
            options: vec!["red".try_into().unwrap()],
        }
        .into_event("retry".try_into().unwrap()),
    );
    for envelope in [&keyed, &keyed, &plain] {
        env.js
            .publish(spec.subject_for(&envelope.event), envelope.to_json().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let aggregator = Aggregator::start(env.aggregator_config()).await;
    env.wait_applied(3).await;
    let mut redis = env.redis().await;
    let tally: HashMap<String, i64> = redis
        .hgetall(Keys::new(env.name.clone()).poll_tally("retry"))
        .await
        .unwrap();
    assert_eq!(
        tally,
        HashMap::from([("red".into(), 2)]),
        "the keyed event once, the plain one once"
    );
    aggregator.stop().await;
}

/// The request for the i-th event of a mixed burst.
fn mixed(i: usize) -> (String, serde_json::Value) {
    match i % 4 {
        0 => (
            "/v1/polls/mix/votes".into(),
            json!({"voter": format!("v{i}"), "options": [format!("o{}", i % 3)]}),
        ),
        1 => (
            "/v1/arenas/ar/votes".into(),
            json!({"session": format!("s{}", i % 5), "winner": format!("it{}", i % 4), "loser": format!("it{}", (i / 4 + 1) % 4 + 4)}),
        ),
        2 => (
            "/v1/tournaments/cup/scores".into(),
            json!({"match": format!("m{}", i % 9), "team": format!("tm{}", i % 3), "points": (i % 7) as i64 - 2}),
        ),
        _ => (
            "/v1/tournaments/cup/registrations".into(),
            if i % 8 == 3 {
                json!({"user": format!("u{i}"), "group": "vip"})
            } else {
                json!({"user": format!("u{i}")})
            },
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_postgres_equals_the_live_views_after_crashes() {
    use futures::StreamExt;
    let env = TestEnv::new().await;
    env.define([fixtures::poll("mix"), fixtures::arena("ar")])
        .await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let writer = tally_tests::Writer::start(env.workers_config()).await;
    let http = reqwest::Client::new();
    let base = ingest.base_url();
    let burst = tokio::spawn(async move {
        futures::stream::iter(0..1200)
            .map(|i| {
                let (path, body) = mixed(i);
                let (http, url) = (http.clone(), format!("{base}{path}"));
                async move {
                    let (status, body) = post(&http, &url, &body).await;
                    assert_eq!(status, 202, "{body}");
                    tally_tests::accepted_id(&body)
                }
            })
            .buffer_unordered(16)
            .collect::<std::collections::HashSet<_>>()
            .await
    });
    for _ in 0..2 {
        let aggregator = Aggregator::start(env.aggregator_config()).await;
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(200..700))).await;
        aggregator.crash().await;
    }
    let acked = burst.await.unwrap();
    let aggregator = Aggregator::start(env.aggregator_config()).await;
    let last = env.stream_messages().await;
    env.wait_applied(last).await;
    env.assert_exactly_stored(&acked, Duration::from_secs(30))
        .await;
    // ClickHouse holds every event exactly once too, and its rollup agrees with Postgres.
    let db = format!("tally_{}", env.name);
    let what = format!("ClickHouse to hold {last} events");
    wait_until(what, Duration::from_secs(30), async || {
        let count = tally_tests::clickhouse(&format!("SELECT count() FROM {db}.events")).await;
        match &count[0][0] {
            n if *n == last.to_string() => Ok(()),
            n => Err(format!("{n} events")),
        }
    })
    .await;
    let distinct = tally_tests::clickhouse(&format!(
        "SELECT uniqExact(id), uniqExact(seq) FROM {db}.events"
    ))
    .await;
    assert_eq!(distinct[0], vec!["1200".to_owned(), "1200".to_owned()]);
    for (kind, table) in [
        ("poll_vote", "poll_votes"),
        ("pair_vote", "pair_votes"),
        ("score", "scores"),
        ("registration", "registrations"),
    ] {
        let in_clickhouse = tally_tests::clickhouse(&format!(
            "SELECT count() FROM {db}.events WHERE kind = '{kind}'"
        ))
        .await;
        let (in_postgres,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&env.pool)
                .await
                .unwrap();
        assert_eq!(in_clickhouse[0][0], in_postgres.to_string(), "{kind}");
    }
    let rollup = tally_tests::clickhouse(&format!(
        "SELECT sum(votes) FROM {db}.poll_votes_per_minute WHERE poll = 'mix'"
    ))
    .await;
    assert_eq!(
        rollup[0][0], "300",
        "the per-minute rollup counts every vote once"
    );
    aggregator.stop().await;
    writer.stop().await;

    let mut config = env.aggregator_config();
    config.database_url = env.database_url.clone();
    config.redis.prefix = format!("{}:rebuilt", env.name);
    let rebuilt = tally_aggregator::rebuild_from_postgres(&config, false)
        .await
        .unwrap();
    assert_eq!((rebuilt.events, rebuilt.last_seq), (1200, last));

    let mut redis = env.redis().await;
    let live_keys: Vec<String> = redis.keys(format!("{}:*", env.name)).await.unwrap();
    let views: Vec<&String> = live_keys
        .iter()
        .filter(|k| !k.contains(":rebuilt:") && !k.contains(":sink:") && !k.contains(":seen:"))
        .collect();
    assert!(
        views.len() >= 4 + 5,
        "tallies, standings, counts, arena and session rankings: {views:?}"
    );
    for key in views {
        let twin = key.replacen(&env.name, &config.redis.prefix, 1);
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        match kind.as_str() {
            "hash" => {
                let live: HashMap<String, String> = redis.hgetall(key).await.unwrap();
                let again: HashMap<String, String> = redis.hgetall(&twin).await.unwrap();
                assert_eq!(live, again, "{key}");
            }
            "zset" => {
                let live: Vec<(String, f64)> = redis.zrange_withscores(key, 0, -1).await.unwrap();
                let again: Vec<(String, f64)> =
                    redis.zrange_withscores(&twin, 0, -1).await.unwrap();
                assert_eq!(live.len(), again.len(), "{key}");
                for ((m1, s1), (m2, s2)) in live.iter().zip(&again) {
                    assert_eq!(m1, m2, "{key}");
                    assert!((s1 - s2).abs() < 1e-6, "{key} {m1}: {s1} vs {s2}");
                }
            }
            other => panic!("unexpected {other} at {key}"),
        }
    }
    // ClickHouse from Postgres, into a database of its own: the same rows and rollups as the
    // live sink wrote. Twice: a rebuild starts from empty whatever the database held.
    let twin = format!("{db}_rebuilt");
    config.clickhouse_database = twin.clone();
    for _ in 0..2 {
        let rebuilt = tally_aggregator::rebuild_clickhouse_from_postgres(&config, false)
            .await
            .unwrap();
        assert_eq!((rebuilt.events, rebuilt.last_seq), (1200, last));
    }
    for query in [
        "SELECT * FROM {db}.events ORDER BY seq",
        "SELECT poll, option, minute, sum(votes) FROM {db}.poll_votes_per_minute \
         GROUP BY poll, option, minute ORDER BY poll, option, minute",
        "SELECT arena, item, minute, sum(wins), sum(losses) FROM {db}.pair_results_per_minute \
         GROUP BY arena, item, minute ORDER BY arena, item, minute",
        "SELECT tournament, team, minute, sum(score_events), sum(points) \
         FROM {db}.scores_per_minute GROUP BY tournament, team, minute \
         ORDER BY tournament, team, minute",
        "SELECT tournament, grp, minute, sum(registrations) FROM {db}.registrations_per_minute \
         GROUP BY tournament, grp, minute ORDER BY tournament, grp, minute",
        "SELECT poll, voter, argMax(options, seq) FROM {db}.poll_choices \
         GROUP BY poll, voter ORDER BY poll, voter",
    ] {
        let live = tally_tests::clickhouse(&query.replace("{db}", &db)).await;
        let again = tally_tests::clickhouse(&query.replace("{db}", &twin)).await;
        assert!(!live.is_empty(), "{query}");
        assert_eq!(live, again, "{query}");
    }
    tally_tests::clickhouse(&format!("DROP DATABASE {twin}")).await;
    // Refused while the writer is behind (it is stopped now): the rebuild would miss what
    // Postgres does not have yet.
    let (status, _) = post(
        &reqwest::Client::new(),
        &ingest.url("/v1/polls/mix/votes"),
        &json!({"voter": "late", "options": ["o1"]}),
    )
    .await;
    assert_eq!(status, 202);
    let refused = tally_aggregator::rebuild_from_postgres(&config, false)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("behind"), "{refused}");
    let refused = tally_aggregator::rebuild_clickhouse_from_postgres(&config, false)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("behind"), "{refused}");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_api_serves_the_live_views() {
    let env = TestEnv::new().await;
    env.define([fixtures::arena("ar"), fixtures::poll("nobody-voted")])
        .await;
    let pipeline = Pipeline::build(&env).without_writer().start().await;
    let ingest = &pipeline.ingest;
    let http = reqwest::Client::new();
    let mut last = 0;
    let mut send = async |path: &str, body: serde_json::Value| {
        let (status, body) = post(&http, &ingest.url(path), &body).await;
        assert_eq!(status, 202, "{body}");
        last = body["seq"].as_u64().unwrap();
    };
    for (voter, option) in [("a", "red"), ("b", "red"), ("c", "blue")] {
        send(
            "/v1/polls/final/votes",
            json!({"voter": voter, "options": [option]}),
        )
        .await;
    }
    for (team, points) in [("t1", 9), ("t2", 7), ("t3", 5), ("t4", 3), ("t5", 1)] {
        send(
            "/v1/tournaments/cup/scores",
            json!({"match": "m", "team": team, "points": points}),
        )
        .await;
    }
    send(
        "/v1/tournaments/cup/registrations",
        json!({"user": "u1", "group": "vip"}),
    )
    .await;
    send("/v1/tournaments/cup/registrations", json!({"user": "u2"})).await;
    send(
        "/v1/arenas/ar/votes",
        json!({"session": "s1", "winner": "x", "loser": "y"}),
    )
    .await;
    env.wait_applied(last).await;

    let get = async |path: &str| tally_tests::get(&http, &ingest.url(path)).await;
    let (s, poll) = get("/v1/polls/final/results").await;
    assert_eq!(s, 200);
    assert_eq!(poll["total_votes"], 3);
    assert_eq!(
        poll["options"],
        json!([{"option": "red", "votes": 2}, {"option": "blue", "votes": 1}])
    );

    let (_, top) = get("/v1/tournaments/cup/standings?limit=2").await;
    assert_eq!(
        top["teams"],
        json!([{"rank": 1, "id": "t1", "score": 9.0}, {"rank": 2, "id": "t2", "score": 7.0}])
    );
    let (_, around) = get("/v1/tournaments/cup/standings?around=t4&radius=1").await;
    let ranks: Vec<(u64, &str)> = around["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["rank"].as_u64().unwrap(), t["id"].as_str().unwrap()))
        .collect();
    assert_eq!(ranks, vec![(3, "t3"), (4, "t4"), (5, "t5")]);

    let (_, regs) = get("/v1/tournaments/cup/registrations").await;
    assert_eq!(
        (regs["total"].clone(), regs["groups"].clone()),
        (json!(2), json!({"vip": 1}))
    );
    let (_, ranking) = get("/v1/arenas/ar/ranking").await;
    assert_eq!(ranking["items"][0]["id"], "x");
    assert!((ranking["items"][0]["score"].as_f64().unwrap() - 1016.0).abs() < 1e-9);
    let (_, mine) = get("/v1/arenas/ar/sessions/s1/ranking?limit=1").await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);

    let (s, empty) = get("/v1/polls/nobody-voted/results").await;
    assert_eq!((s, empty["total_votes"].clone()), (200, json!(0)));
    let (s, e) = get("/v1/tournaments/cup/standings?limit=0").await;
    assert_eq!((s, e["error"]["field"].clone()), (422, json!("limit")));
    let (s, e) = get("/v1/tournaments/cup/standings?limit=ten").await;
    assert_eq!((s, e["error"]["field"].clone()), (422, json!("limit")));
    let (s, e) = get("/v1/tournaments/cup/standings?around=t9").await;
    assert_eq!((s, e["error"]["field"].clone()), (404, json!("around")));

    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_followers_see_live_changes_and_a_stalled_one_holds_up_nobody() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("live")]).await;
    let pipeline = Pipeline::build(&env).without_writer().start().await;
    let ingest = &pipeline.ingest;
    let open = |path: &str| {
        let url = ingest.url(path);
        async move {
            let response = reqwest::get(url).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            response.bytes_stream()
        }
    };
    let mut followers = Vec::new();
    for _ in 0..3 {
        followers.push(open("/v1/polls/live/stream").await);
    }
    // Opened and never read: its updates must not queue up or delay the others.
    let _stalled = open("/v1/polls/live/stream").await;
    let mut standings = open("/v1/tournaments/cup/standings/stream").await;

    let http = reqwest::Client::new();
    for i in 0..40 {
        let option = if i % 4 == 0 { "blue" } else { "red" };
        post(
            &http,
            &ingest.url("/v1/polls/live/votes"),
            &json!({"voter": format!("v{i}"), "options": [option]}),
        )
        .await;
    }
    post(
        &http,
        &ingest.url("/v1/tournaments/cup/scores"),
        &json!({"match": "m", "team": "owls", "points": 4}),
    )
    .await;
    for follower in &mut followers {
        let last = wait_for_event(follower, |v| v["total_votes"] == 40).await;
        assert_eq!(
            last["options"],
            json!([{"option": "red", "votes": 30}, {"option": "blue", "votes": 10}])
        );
    }
    let table = wait_for_event(&mut standings, |v| {
        !v["teams"].as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        table["teams"][0],
        json!({"rank": 1, "id": "owls", "score": 4.0})
    );

    let (s, e) = post(
        &http,
        &ingest.url("/v1/polls/live/votes"),
        &json!({"voter": "late", "options": ["red"]}),
    )
    .await;
    assert_eq!(s, 202, "{e}");
    wait_for_event(&mut followers[0], |v| v["total_votes"] == 41).await;
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_away_keeps_redis_live_and_catches_up_exactly_after() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("away")]).await;
    let proxy = tally_tests::proxy::TcpProxy::start(tally_tests::proxy::target_of(
        &tally_tests::clickhouse_url(),
    ))
    .await;
    let pipeline = Pipeline::build(&env)
        .without_writer()
        .aggregator(|c| c.clickhouse_url = proxy.rewrite(&tally_tests::clickhouse_url()))
        .start()
        .await;
    let ingest = &pipeline.ingest;
    let db = format!("tally_{}", env.name);
    let count = async || {
        tally_tests::clickhouse(&format!("SELECT count() FROM {db}.events")).await[0][0]
            .parse::<u64>()
            .unwrap()
    };

    let first = post_votes(ingest.base_url(), "away", 300, 16).await;
    env.wait_applied(300).await;
    let within = Duration::from_secs(30);
    wait_until(
        "ClickHouse to get the first burst",
        within,
        async || match count().await {
            n if n >= 300 => Ok(()),
            n => Err(format!("{n} events")),
        },
    )
    .await;

    proxy.cut(); // ClickHouse unreachable for the aggregator
    let second = post_votes(ingest.base_url(), "away", 700, 16).await;
    env.wait_applied(1000).await; // Redis stays live meanwhile
    let mut redis = env.redis().await;
    let tally: HashMap<String, i64> = redis
        .hgetall(Keys::new(env.name.clone()).poll_tally("away"))
        .await
        .unwrap();
    assert_eq!(tally["a"], (first.len() + second.len()) as i64);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count().await,
        300,
        "nothing reached ClickHouse while it was away"
    );

    proxy.restore();
    let within = Duration::from_secs(60);
    wait_until("ClickHouse to catch up", within, async || {
        match count().await {
            n if n >= 1000 => Ok(()),
            n => Err(format!("{n} events")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exact =
        tally_tests::clickhouse(&format!("SELECT count(), uniqExact(id) FROM {db}.events")).await;
    assert_eq!(exact[0], vec!["1000".to_owned(), "1000".to_owned()]);
    pipeline.stop().await;
}

/// One aggregator is active and another stands by (issue 20): the standby takes over when the
/// active one dies mid-burst (its lease lapses) and at once when it stops cleanly; Redis and
/// ClickHouse count every vote once through both handovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_aggregator_takes_over_and_nothing_is_counted_twice() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("relay")]).await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let url = ingest.base_url();
    let mut config = env.aggregator_config();
    config.lease_secs = 2;
    let first = Aggregator::start(config.clone()).await;
    let mut votes = post_votes(url.clone(), "relay", 500, 20).await.len();
    env.wait_applied(env.stream_messages().await).await;
    let standby = Aggregator::start(config.clone()).await;

    let burst = tokio::spawn(post_votes(url.clone(), "relay", 3000, 16));
    tokio::time::sleep(Duration::from_millis(rand::rng().random_range(200..600))).await;
    first.crash().await;
    votes += burst.await.unwrap().len();
    env.wait_applied(env.stream_messages().await).await;
    assert_counted_once(&env, "relay", votes).await;

    // A clean stop gives the lease up (the key is deleted, not left to lapse), and the next
    // standby takes over.
    let leases = env
        .js
        .get_key_value(env.nats.spec().leases_bucket())
        .await
        .unwrap();
    let held = leases.entry("aggregator").await.unwrap().expect("held");
    let next = Aggregator::start(config).await;
    standby.stop().await;
    let after = leases.entry("aggregator").await.unwrap();
    assert!(
        after.is_none_or(|e| e.value != held.value || e.operation != kv::Operation::Put),
        "the stopped aggregator's lease is still there"
    );
    votes += post_votes(url.clone(), "relay", 200, 20).await.len();
    env.wait_applied(env.stream_messages().await).await;
    assert_counted_once(&env, "relay", votes).await;
    next.stop().await;
    ingest.stop().await;
}

/// Redis's tally and ClickHouse's rows each hold every acknowledged vote once.
async fn assert_counted_once(env: &TestEnv, poll: &str, votes: usize) {
    let mut redis = env.redis().await;
    let tally: HashMap<String, i64> = redis
        .hgetall(Keys::new(env.name.clone()).poll_tally(poll))
        .await
        .unwrap();
    assert_eq!(tally.values().sum::<i64>(), votes as i64, "{tally:?}");
    let db = format!("tally_{}", env.name);
    let what = format!("ClickHouse to hold {votes} votes");
    wait_until(what, Duration::from_secs(30), async || {
        let query =
            format!("SELECT count(), uniqExact(id) FROM {db}.events WHERE scope = '{poll}'");
        let counts = tally_tests::try_clickhouse(&query).await?;
        match counts.first().map(|r| (r[0].as_str(), r[1].as_str())) {
            Some((n, unique)) if n == votes.to_string() && unique == n => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// The batch script and the fold the Postgres fallback uses (`tally_schema::replay`) are two
/// statements of the same registration rules: draws, claims, releases, withdrawals and
/// hand-ons in every order, including the races (a withdrawal before the result it
/// overtakes, a hand-on to a user who just left), leave the same states in both.
#[tokio::test]
async fn registration_changes_in_any_order_leave_redis_and_the_fallback_fold_agreeing() {
    use rand::SeedableRng;
    use tally_schema::event::{RegistrationStatus, StatusChange};
    use tally_schema::status::RegistrationState;
    let env = TestEnv::new().await;
    let sink = redis_sink(&env).await;
    let mut redis = env.redis().await;
    let deadline: chrono::DateTime<chrono::Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
    let mut seq = 0;
    for round in 0..300u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(round);
        let tournament = format!("t{round}");
        // Few users and many changes, so the races happen: a withdrawal overtaking a result,
        // a hand-on naming someone who just left, a place freed twice.
        let users: Vec<String> = (0..4).map(|u| format!("u{u}")).collect();
        let changes: Vec<RegistrationStatus> = (0..40)
            .map(|_| {
                let status = StatusChange::ALL[rng.random_range(0..StatusChange::ALL.len())];
                let promoted = matches!(status, StatusChange::Released | StatusChange::HandedOn)
                    && rng.random_bool(0.8);
                RegistrationStatus {
                    tournament: tournament.as_str().try_into().unwrap(),
                    user: users[rng.random_range(0..users.len())]
                        .as_str()
                        .try_into()
                        .unwrap(),
                    status,
                    position: Some(rng.random_range(1..5)),
                    deadline: Some(deadline),
                    promoted: promoted.then(|| {
                        users[rng.random_range(0..users.len())]
                            .as_str()
                            .try_into()
                            .unwrap()
                    }),
                }
            })
            .collect();
        let events: Vec<tally_schema::StoredEvent> = changes
            .iter()
            .map(|c| {
                seq += 1;
                tally_schema::StoredEvent {
                    stream_seq: seq,
                    envelope: tally_schema::Envelope::new(tally_schema::Event::RegistrationStatus(
                        c.clone(),
                    )),
                }
            })
            .collect();
        // Batches of every size, as the live sink cuts them.
        for batch in events.chunks(rng.random_range(1..8)) {
            sink.apply(batch).await.unwrap();
        }
        let folded = tally_schema::replay::registration_states(changes.clone());
        let stored: HashMap<String, String> = redis
            .hgetall(sink.keys().draw_results(&tournament))
            .await
            .unwrap();
        let stored: HashMap<String, RegistrationState> = stored
            .into_iter()
            .map(|(u, s)| (u, RegistrationState::from_json(&s).unwrap()))
            .collect();
        assert_eq!(stored, folded, "round {round}: {changes:#?}");
    }
}

/// The Redis sink of `env`, to apply batches by hand.
async fn redis_sink(env: &TestEnv) -> tally_aggregator::leaderboard::RedisSink {
    let config = env.aggregator_config();
    tally_aggregator::leaderboard::RedisSink::connect(
        &config.redis.url,
        Keys::new(env.name.clone()),
        tally_schema::consumers::REDIS_SINK,
        config.elo(),
    )
    .await
    .unwrap()
}
