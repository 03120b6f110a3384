//! Polls, arenas and tournaments as managed resources: the admin API and its keys, the rules
//! ingest enforces from memory, every ingest learning of a change at once, and single-choice
//! vote changes agreeing across Postgres, Redis and ClickHouse.

use redis::AsyncCommands;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_schema::redis_keys::Keys;
use tally_tests::{AdminClient, Aggregator, Ingest, Pipeline, TestEnv, Writer, post, wait_until};

fn error(body: &Value) -> (String, String) {
    let e = &body["error"];
    (
        e["code"].as_str().unwrap_or_default().to_owned(),
        e["field"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_missing_wrong_and_insufficient_keys() {
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let poll = json!({"id": "q", "options": ["yes", "no"]});

    let anonymous = AdminClient::new(&ingest, None);
    let (status, body) = anonymous
        .send(Method::POST, "/admin/v1/polls", Some(&poll))
        .await;
    assert_eq!((status, error(&body).0.as_str()), (401, "unauthorized"));
    let raw = reqwest::Client::new()
        .get(ingest.url("/admin/v1/polls"))
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    assert!(raw.headers().contains_key("www-authenticate"));

    let wrong = AdminClient::new(&ingest, Some(tally_ingest::auth::generate_key()));
    let (status, body) = wrong.send(Method::GET, "/admin/v1/polls", None).await;
    assert_eq!((status, error(&body).0.as_str()), (403, "invalid_key"));

    let viewer = AdminClient::new(&ingest, Some(env.api_key(Role::Viewer).await));
    let (status, body) = viewer
        .send(Method::POST, "/admin/v1/polls", Some(&poll))
        .await;
    assert_eq!(
        (status, error(&body).0.as_str()),
        (403, "insufficient_role")
    );
    let (status, _) = viewer
        .send(Method::GET, "/admin/v1/polls/final", None)
        .await;
    assert_eq!(status, 200, "a viewer reads definitions");

    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    let (status, body) = admin
        .send(Method::POST, "/admin/v1/polls", Some(&poll))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1);
    let (status, body) = admin
        .send(Method::POST, "/admin/v1/polls", Some(&poll))
        .await;
    assert_eq!((status, error(&body).0.as_str()), (409, "already_exists"));
    // A revoked key stops working at once (Postgres tells ingest of the change).
    let name: (String,) = sqlx::query_as("SELECT name FROM api_keys WHERE role = 'viewer'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(
        tally_ingest::store::revoke_key(&env.pool, &name.0)
            .await
            .unwrap()
    );
    let what = "the revoked key to stop working";
    wait_until(what, Duration::from_secs(2), async || {
        let (status, body) = viewer.send(Method::GET, "/admin/v1/polls/q", None).await;
        if status == 403 {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;

    // Bad definitions: the field and the reason, nothing stored.
    let cases = [
        (json!({"id": "r", "options": ["a"]}), "options"),
        (
            json!({"id": "r", "options": ["a", "b"], "votes": 100}),
            "votes",
        ),
        (
            json!({"id": "r", "options": ["a", "b"], "max_choices": 2}),
            "max_choices",
        ),
        (
            json!({"id": "r", "options": ["a", "b"], "opens_at": "2030-01-02T00:00:00Z",
                   "closes_at": "2030-01-01T00:00:00Z"}),
            "closes_at",
        ),
        (json!({"id": "bad id!", "options": ["a", "b"]}), "id"),
    ];
    for (definition, field) in cases {
        let (status, body) = admin
            .send(Method::POST, "/admin/v1/polls", Some(&definition))
            .await;
        assert_eq!((status, error(&body).1.as_str()), (422, field), "{body}");
    }
    let (status, body) = admin
        .send(
            Method::PUT,
            "/admin/v1/polls/q",
            Some(&json!({"id": "other", "options": ["a", "b"]})),
        )
        .await;
    assert_eq!((status, error(&body).1.as_str()), (422, "id"));
    let (status, _) = admin.send(Method::GET, "/admin/v1/polls/nope", None).await;
    assert_eq!(status, 404);

    // Score rules are fixed once a tournament exists.
    admin
        .create(
            "tournaments",
            json!({"id": "golf", "score_operator": "best", "sort": "asc"}),
        )
        .await;
    let (status, body) = admin
        .send(
            Method::PUT,
            "/admin/v1/tournaments/golf",
            Some(&json!({"id": "golf", "score_operator": "best", "sort": "desc"})),
        )
        .await;
    assert_eq!((status, error(&body).0.as_str()), (409, "immutable_field"));
    let (status, body) = admin
        .send(
            Method::PUT,
            "/admin/v1/tournaments/golf",
            Some(&json!({"id": "golf", "title": "Club golf", "score_operator": "best", "sort": "asc"})),
        )
        .await;
    assert_eq!((status, body["version"].as_i64()), (200, Some(2)), "{body}");
    let (_, listed) = admin.send(Method::GET, "/admin/v1/tournaments", None).await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["definition"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cup", "golf"]);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_enforces_each_resources_rules_and_publishes_nothing_it_refuses() {
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    admin
        .create(
            "polls",
            json!({"id": "mayor", "options": ["ann", "bob", "cy"]}),
        )
        .await;
    admin
        .create(
            "polls",
            json!({"id": "later", "options": ["a", "b"], "opens_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    admin
        .create("arenas", json!({"id": "dogs", "items": ["rex", "fido"]}))
        .await;
    admin
        .create(
            "tournaments",
            json!({"id": "open", "teams": ["owls", "bats"],
                   "matches": [{"id": "final", "teams": ["owls", "bats"]}],
                   "registration_closes_at": "2001-01-01T00:00:00Z",
                   "groups": [{"id": "members", "weight": 3}]}),
        )
        .await;
    let http = reqwest::Client::new();
    let before = env.stream_messages().await;
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "/v1/polls/nope/votes",
            json!({"voter": "v", "options": ["a"]}),
            404,
            "not_found",
            "poll",
        ),
        (
            "/v1/polls/mayor/votes",
            json!({"voter": "v", "options": ["zed"]}),
            422,
            "unknown_member",
            "options[0]",
        ),
        (
            "/v1/polls/mayor/votes",
            json!({"voter": "v", "options": ["ann", "bob"]}),
            422,
            "too_many_choices",
            "options",
        ),
        (
            "/v1/polls/later/votes",
            json!({"voter": "v", "options": ["a"]}),
            409,
            "poll_closed",
            "",
        ),
        (
            "/v1/arenas/cats/votes",
            json!({"session": "s", "winner": "rex", "loser": "fido"}),
            404,
            "not_found",
            "arena",
        ),
        (
            "/v1/arenas/dogs/votes",
            json!({"session": "s", "winner": "rex", "loser": "tom"}),
            422,
            "unknown_member",
            "loser",
        ),
        (
            "/v1/arenas/dogs/votes",
            json!({"session": "s", "winner": "rex", "loser": "rex"}),
            422,
            "same_as_winner",
            "loser",
        ),
        (
            "/v1/tournaments/open/scores",
            json!({"match": "final", "team": "cats", "points": 1}),
            422,
            "unknown_member",
            "team",
        ),
        (
            "/v1/tournaments/open/scores",
            json!({"match": "semi", "team": "owls", "points": 1}),
            422,
            "unknown_member",
            "match",
        ),
        (
            "/v1/tournaments/open/registrations",
            json!({"user": "u"}),
            409,
            "window_closed",
            "",
        ),
        (
            "/v1/tournaments/nope/registrations",
            json!({"user": "u"}),
            404,
            "not_found",
            "tournament",
        ),
    ];
    for (path, body, status, code, field) in &cases {
        let (got, answer) = post(&http, &ingest.url(path), body).await;
        assert_eq!(
            (got, error(&answer)),
            (*status, (code.to_string(), field.to_string())),
            "{path} {body}"
        );
    }
    // The batch endpoint applies the same rules per item.
    let (status, answer) = post(
        &http,
        &ingest.url("/v1/events"),
        &json!({"events": [
            {"type": "poll_vote", "poll": "mayor", "voter": "v", "options": ["ann"]},
            {"type": "poll_vote", "poll": "later", "voter": "v", "options": ["a"]},
            {"type": "score", "tournament": "open", "match": "final", "team": "cats", "points": 1},
        ]}),
    )
    .await;
    assert_eq!(status, 207, "{answer}");
    let statuses: Vec<u64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 409, 422]);
    assert_eq!(
        env.stream_messages().await,
        before + 1,
        "only the valid batch item reached the stream"
    );

    // Closing and opening take effect on the next request.
    let vote = json!({"voter": "v", "options": ["cy"]});
    let url = ingest.url("/v1/polls/mayor/votes");
    let (status, body) = admin
        .send(Method::POST, "/admin/v1/polls/mayor/close", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&http, &url, &vote).await;
    assert_eq!((status, error(&body).0.as_str()), (409, "poll_closed"));
    admin
        .send(Method::POST, "/admin/v1/polls/mayor/open", None)
        .await;
    assert_eq!(post(&http, &url, &vote).await.0, 202);
    admin
        .send(Method::POST, "/admin/v1/tournaments/open/open", None)
        .await;
    let (status, body) = post(
        &http,
        &ingest.url("/v1/tournaments/open/registrations"),
        &json!({"user": "u", "group": "members"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ingest_learns_of_a_change_at_once() {
    let env = TestEnv::new().await;
    // Periodic refresh far away: only the NATS announcement can explain a quick change.
    let mut config = env.ingest_config();
    config.catalog_refresh_secs = 3600;
    let (a, b) = (
        Ingest::start(config.clone()).await,
        Ingest::start(config).await,
    );
    let admin = AdminClient::new(&a, Some(env.api_key(Role::Admin).await));
    admin
        .create("polls", json!({"id": "fresh", "options": ["x", "y"]}))
        .await;
    let http = reqwest::Client::new();
    let vote = json!({"voter": "v", "options": ["x"]});
    let on_b = b.url("/v1/polls/fresh/votes");
    let within = Duration::from_secs(3);
    wait_until(
        "the second ingest to learn of the poll",
        within,
        async || {
            let (status, body) = post(&http, &on_b, &vote).await;
            match status {
                202 => Ok(()),
                404 => Err(body),
                _ => panic!("{status} {body}"),
            }
        },
    )
    .await;
    admin
        .send(Method::POST, "/admin/v1/polls/fresh/close", None)
        .await;
    wait_until(
        "the second ingest to learn the poll closed",
        within,
        async || {
            let (status, body) = post(&http, &on_b, &vote).await;
            if status == 409 { Ok(()) } else { Err(body) }
        },
    )
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_follow_the_polls_visibility_rule() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env).without_writer().start().await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    for (id, visibility) in [
        ("v1", "after_voting"),
        ("v2", "after_close"),
        ("v3", "never"),
    ] {
        admin
            .create(
                "polls",
                json!({"id": id, "options": ["a", "b"], "visibility": visibility}),
            )
            .await;
    }
    let http = reqwest::Client::new();
    let mut last = 0;
    for poll in ["v1", "v2", "v3"] {
        let (status, body) = post(
            &http,
            &ingest.url(&format!("/v1/polls/{poll}/votes")),
            &json!({"voter": "ann", "options": ["a"]}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        last = body["seq"].as_u64().unwrap();
    }
    env.wait_applied(last).await;
    let read = async |path: &str, key: Option<&str>| {
        let mut request = http.get(ingest.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        tally_tests::read(request).await
    };
    let hidden = |(status, body): (u16, Value)| {
        assert_eq!(
            (status, error(&body).0.as_str()),
            (403, "results_hidden"),
            "{body}"
        )
    };
    hidden(read("/v1/polls/v1/results", None).await);
    hidden(read("/v1/polls/v1/results?voter=bob", None).await);
    let (status, body) = read("/v1/polls/v1/results?voter=ann", None).await;
    assert_eq!((status, body["total_votes"].as_i64()), (200, Some(1)));
    hidden(read("/v1/polls/v2/results", None).await);
    hidden(read("/v1/polls/v2/stream", None).await);
    admin
        .send(Method::POST, "/admin/v1/polls/v2/close", None)
        .await;
    assert_eq!(read("/v1/polls/v2/results", None).await.0, 200);
    hidden(read("/v1/polls/v3/results", None).await);
    let viewer = env.api_key(Role::Viewer).await;
    let (status, body) = read("/v1/polls/v3/results", Some(&viewer)).await;
    assert_eq!((status, body["total_votes"].as_i64()), (200, Some(1)));
    assert_eq!(read("/v1/polls/none/results", None).await.0, 404);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_operators_and_sort_order_shape_the_standings() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env).without_writer().start().await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    admin
        .create(
            "tournaments",
            json!({"id": "golf", "score_operator": "best", "sort": "asc"}),
        )
        .await;
    admin
        .create(
            "tournaments",
            json!({"id": "quiz", "score_operator": "set"}),
        )
        .await;
    admin
        .create(
            "tournaments",
            json!({"id": "darts", "score_operator": "best"}),
        )
        .await;
    let http = reqwest::Client::new();
    let mut last = 0;
    let scores = [
        ("golf", "ann", 72),
        ("golf", "bob", 70),
        ("golf", "ann", 68),
        ("golf", "bob", 75),
        ("quiz", "ann", 10),
        ("quiz", "bob", 30),
        ("quiz", "bob", 5),
        ("darts", "ann", 60),
        ("darts", "ann", 40),
        ("darts", "bob", 50),
    ];
    for (t, team, points) in scores {
        let (status, body) = post(
            &http,
            &ingest.url(&format!("/v1/tournaments/{t}/scores")),
            &json!({"match": "m", "team": team, "points": points}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        last = body["seq"].as_u64().unwrap();
    }
    env.wait_applied(last).await;
    let standings = async |t: &str| {
        let url = ingest.url(&format!("/v1/tournaments/{t}/standings"));
        let (_, body) = tally_tests::get(&http, &url).await;
        body["teams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_owned(),
                    e["score"].as_f64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Golf: best = lowest, lowest first.
    assert_eq!(
        standings("golf").await,
        [("ann".into(), 68.0), ("bob".into(), 70.0)]
    );
    // Quiz: the latest score replaces.
    assert_eq!(
        standings("quiz").await,
        [("ann".into(), 10.0), ("bob".into(), 5.0)]
    );
    // Darts: best = highest, highest first.
    assert_eq!(
        standings("darts").await,
        [("ann".into(), 60.0), ("bob".into(), 50.0)]
    );
    let url = ingest.url("/v1/tournaments/golf/standings?around=bob&radius=0");
    let (_, around) = tally_tests::get(&http, &url).await;
    assert_eq!(around["teams"][0]["rank"], 2);
    pipeline.stop().await;
}

/// The current choice per voter, as each store sees it: option → voters.
type Counts = BTreeMap<String, i64>;

async fn postgres_counts(env: &TestEnv, poll: &str) -> Counts {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT o, count(*) FROM poll_choices, unnest(options) AS o WHERE poll = $1 GROUP BY o",
    )
    .bind(poll)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

async fn redis_counts(env: &TestEnv, poll: &str) -> Counts {
    let mut redis = env.redis().await;
    let tally: HashMap<String, i64> = redis
        .hgetall(Keys::new(env.name.clone()).poll_tally(poll))
        .await
        .unwrap();
    tally.into_iter().filter(|(_, n)| *n != 0).collect()
}

async fn clickhouse_counts(env: &TestEnv, poll: &str) -> Counts {
    let rows = tally_tests::clickhouse(&format!(
        "SELECT option, count() FROM (SELECT voter, argMax(options, seq) AS current \
         FROM tally_{}.poll_choices WHERE poll = '{poll}' GROUP BY voter) \
         ARRAY JOIN current AS option GROUP BY option",
        env.name
    ))
    .await;
    rows.into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_votes_agree_in_postgres_redis_and_clickhouse_under_redelivery() {
    use futures::StreamExt;
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    admin
        .create(
            "polls",
            json!({"id": "mood", "options": ["happy", "meh", "sad"]}),
        )
        .await;
    let options = ["happy", "meh", "sad"];
    let http = reqwest::Client::new();
    let url = ingest.url("/v1/polls/mood/votes");
    // 200 voters, each changing their mind four times; every fifth vote also retried with
    // the same key (a client that never saw its answer).
    let burst = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..1000usize)
                .map(|i| {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        let voter = format!("v{}", i % 200);
                        let option = options[(i * 7 + i / 200) % 3];
                        let body =
                            json!({"voter": voter, "options": [option], "id": format!("k{i}")});
                        let (status, answer) = post(&http, &url, &body).await;
                        assert_eq!(status, 202, "{answer}");
                        if i % 5 == 0 {
                            let (status, again) = post(&http, &url, &body).await;
                            assert_eq!((status, &again["id"]), (202, &answer["id"]));
                        }
                        let id = tally_tests::accepted_id(&answer);
                        (voter, answer["seq"].as_u64().unwrap(), option, id)
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await
        })
    };
    // Both consumers crash mid-burst (their batches are redelivered) and come back.
    for _ in 0..2 {
        let writer = Writer::start(env.workers_config()).await;
        let aggregator = Aggregator::start(env.aggregator_config()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.crash().await;
        aggregator.crash().await;
    }
    let acked = burst.await.unwrap();
    let writer = Writer::start(env.workers_config()).await;
    let aggregator = Aggregator::start(env.aggregator_config()).await;

    // What every store must show: each voter's acknowledged vote with the highest sequence.
    let mut latest: HashMap<String, (u64, &str)> = HashMap::new();
    for (voter, seq, option, _) in &acked {
        let entry = latest.entry(voter.clone()).or_insert((0, ""));
        if *seq > entry.0 {
            *entry = (*seq, option);
        }
    }
    let mut expected = Counts::new();
    for (_, option) in latest.values() {
        *expected.entry(option.to_string()).or_default() += 1;
    }
    assert_eq!(expected.values().sum::<i64>(), 200);
    // Every acknowledged vote is stored once; then the views must have caught up too.
    let ids = acked.iter().map(|a| a.3).collect();
    env.assert_exactly_stored(&ids, Duration::from_secs(60))
        .await;
    let last = acked.iter().map(|a| a.1).max().unwrap();
    env.wait_applied(last).await;

    let what = format!("every store to count {expected:?}");
    wait_until(what, Duration::from_secs(60), async || {
        let (pg, rd, ch) = (
            postgres_counts(&env, "mood").await,
            redis_counts(&env, "mood").await,
            clickhouse_counts(&env, "mood").await,
        );
        if pg == expected && rd == expected && ch == expected {
            Ok(())
        } else {
            Err(format!(
                "stores disagree: postgres {pg:?}, redis {rd:?}, clickhouse {ch:?}"
            ))
        }
    })
    .await;
    // The raw votes stay beside the current choices, in ClickHouse too (its sink writes in
    // stream order, so once the views agree it may still be finishing the last batch).
    let raw_query = format!(
        "SELECT count(), uniqExact(id) FROM tally_{}.events WHERE scope = 'mood'",
        env.name
    );
    let what = "ClickHouse to hold the 1000 raw votes once";
    wait_until(what, Duration::from_secs(30), async || {
        let raw = tally_tests::clickhouse(&raw_query).await;
        if raw[0] == ["1000", "1000"] {
            Ok(())
        } else {
            Err(format!("ClickHouse raw {raw:?}"))
        }
    })
    .await;
    writer.stop().await;
    aggregator.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tally_cli_makes_keys_and_manages_resources_through_the_api() {
    use clap::Parser;
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let keys_before: (i64,) = sqlx::query_as("SELECT count(*) FROM api_keys")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let cli = |args: &[&str]| tally_cli::Cli::parse_from([&["tally"], args].concat());
    tally_cli::run(cli(&[
        "keys",
        "create",
        "--name",
        "ops",
        "--role",
        "viewer",
        "--database-url",
        &env.database_url,
    ]))
    .await
    .unwrap();
    let keys_after: (i64,) = sqlx::query_as("SELECT count(*) FROM api_keys")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(keys_after.0, keys_before.0 + 1);

    let key = env.api_key(Role::Admin).await;
    let base = ingest.base_url();
    let file = std::env::temp_dir().join(format!("{}-poll.json", env.name));
    std::fs::write(&file, r#"{"id": "cli", "options": ["yes", "no"]}"#).unwrap();
    let api = |args: &[&str]| cli(&[&["--api", &base, "--key", &key], args].concat());
    tally_cli::run(api(&["polls", "create", file.to_str().unwrap()]))
        .await
        .unwrap();
    tally_cli::run(api(&["polls", "close", "cli"]))
        .await
        .unwrap();
    // A refused call is an error (exit status 1), with the API's answer printed.
    assert!(
        tally_cli::run(api(&["polls", "create", file.to_str().unwrap()]))
            .await
            .is_err()
    );
    std::fs::remove_file(&file).unwrap();
    let admin = AdminClient::new(&ingest, Some(key));
    let (status, body) = admin.send(Method::GET, "/admin/v1/polls/cli", None).await;
    assert_eq!(status, 200);
    assert!(body["definition"]["closes_at"].is_string(), "{body}");
    let (status, body) = post(
        &reqwest::Client::new(),
        &ingest.url("/v1/polls/cli/votes"),
        &json!({"voter": "v", "options": ["yes"]}),
    )
    .await;
    assert_eq!((status, error(&body).0.as_str()), (409, "poll_closed"));
    ingest.stop().await;
}
