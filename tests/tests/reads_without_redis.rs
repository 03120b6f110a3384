//! Reads while Redis is away (issue 20): poll results, standings, registration counts and
//! statuses come from Postgres, equal to what Redis answered, marked `"source": "postgres"`,
//! cached and bounded; with the fallback turned off they are 503; once Redis is back, reads
//! come from it again.

use serde_json::{Value, json};
use std::time::Duration;
use tally_schema::event::{RegistrationStatus, StatusChange};
use tally_schema::{Envelope, Event};
use tally_tests::faults::{OwnedRedis, OwnedServer, Scratch};
use tally_tests::{Ingest, Pipeline, Servers, TestEnv, fixtures, get, post, wait_until};

fn tournament(definition: Value) -> tally_schema::resources::Resource {
    fixtures::resource(
        tally_schema::resources::ResourceKind::Tournament,
        definition,
    )
}

/// The reads compared before and after Redis goes away.
const READS: [&str; 17] = [
    "/v1/polls/fp/results",
    "/v1/tournaments/cup/standings",
    "/v1/tournaments/cup/standings?limit=2",
    "/v1/tournaments/cup/standings?around=bats&radius=1",
    "/v1/tournaments/golf/standings",
    "/v1/tournaments/mixed/standings",
    "/v1/tournaments/race/registrations",
    "/v1/tournaments/race/registrations/ann",
    "/v1/tournaments/race/registrations/cy",
    "/v1/tournaments/lotto/registrations/ann",
    "/v1/tournaments/lotto/registrations/bob",
    "/v1/tournaments/lotto/registrations/cy",
    "/v1/tournaments/lotto/registrations/dee",
    "/v1/tournaments/lotto/registrations/eve",
    "/v1/tournaments/lotto/registrations/gus",
    "/v1/tournaments/race/registrations/nobody",
    "/v1/tournaments/golf/matches/r1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_come_from_postgres_while_redis_is_away_and_equal_what_redis_said() {
    let scratch = Scratch::new("reads-without-redis");
    let mut redis = OwnedRedis::start(&scratch.0).await;
    let env = TestEnv::on(Servers {
        redis_url: redis.url(),
        ..Servers::default()
    })
    .await;
    env.define([
        fixtures::poll("fp"),
        fixtures::tournament("cup"),
        tournament(
            json!({"id": "golf", "score_operator": "best", "sort": "asc",
                          "matches": [{"id": "r1", "teams": []}]}),
        ),
        tournament(json!({"id": "race", "capacity": 2, "groups": [{"id": "vip", "weight": 1.0}]})),
        tournament(json!({"id": "lotto", "mode": "lottery"})),
        fixtures::tournament("mixed"),
    ])
    .await;
    let pipeline = Pipeline::build(&env)
        .ingest(|c| c.fallback.read_fallback_cache_ms = 60_000)
        .start()
        .await;
    // The same service with the fallback off: 503 while Redis is away, as before.
    let mut strict = env.ingest_config();
    strict.fallback.read_fallback = false;
    let strict = Ingest::start(strict).await;
    let http = reqwest::Client::new();
    let url = |path: &str| pipeline.ingest.url(path);

    let mut last_seq = 0;
    let mut send = async |path: &str, body: Value| {
        let (status, answer) = post(&http, &url(path), &body).await;
        assert_eq!(status, 202, "{path} {body}: {answer}");
        last_seq = last_seq.max(answer["seq"].as_u64().unwrap());
    };
    // Votes, some changed (the latest choice counts).
    for (voter, options) in [
        ("v1", json!(["a", "b"])),
        ("v2", json!(["b"])),
        ("v3", json!(["c"])),
        ("v1", json!(["c"])),
        ("v4", json!(["a"])),
        ("v3", json!(["b", "c"])),
    ] {
        send(
            "/v1/polls/fp/votes",
            json!({"voter": voter, "options": options}),
        )
        .await;
    }
    // Points that add up, and the best (lowest) round per team.
    for (team, points) in [
        ("owls", 3),
        ("bats", 5),
        ("owls", -1),
        ("cats", 2),
        ("ants", 2),
    ] {
        let body = json!({"match": "m1", "team": team, "points": points});
        send("/v1/tournaments/cup/scores", body).await;
    }
    for (team, points) in [("owls", 72), ("bats", 70), ("owls", 68), ("bats", 75)] {
        let body = json!({"match": "r1", "team": team, "points": points});
        send("/v1/tournaments/golf/scores", body).await;
    }
    // First come: two places, then the waitlist; a repeat registration changes nothing.
    for (user, group) in [
        ("ann", Some("vip")),
        ("bob", None),
        ("cy", Some("vip")),
        ("ann", None),
    ] {
        let mut body = json!({ "user": user });
        if let Some(g) = group {
            body["group"] = g.into();
        }
        send("/v1/tournaments/race/registrations", body).await;
    }
    // Lottery registrants: each status read needs a registration.
    for user in ["ann", "bob", "cy", "dee", "eve", "gus"] {
        send(
            "/v1/tournaments/lotto/registrations",
            json!({ "user": user }),
        )
        .await;
    }
    // A drawn lottery's status changes, as the draw, claims and releases publish them: ann
    // and dee win, bob and cy wait; dee claims (her late release is refused), ann lets hers
    // lapse and bob is promoted; cy's claim of a place she does not hold changes nothing.
    let spec = env.nats.spec();
    let deadline = "2030-01-01T00:00:00Z".parse().unwrap();
    let change = |user: &str, status, position: Option<u32>, promoted: Option<&str>| {
        Event::RegistrationStatus(RegistrationStatus {
            tournament: "lotto".try_into().unwrap(),
            user: user.try_into().unwrap(),
            status,
            position,
            deadline: matches!(status, StatusChange::Won | StatusChange::Released)
                .then_some(deadline),
            promoted: promoted.map(|p| p.try_into().unwrap()),
        })
    };
    // Scores made under two effects (the tournament's operator changed mid-way): Postgres
    // folds these in stream order rather than per team.
    let score = |team: &str, points: i64, effect| {
        Event::Score(tally_schema::event::Score {
            tournament: "mixed".try_into().unwrap(),
            match_id: "m1".try_into().unwrap(),
            team: team.try_into().unwrap(),
            points,
            effect,
        })
    };
    use tally_schema::resources::ScoreEffect::{Add, Max, Replace};
    for event in [
        score("owls", 5, Add),
        score("bats", 4, Max),
        score("owls", 3, Replace),
        score("bats", 1, Add),
        score("owls", 2, Add),
        change("ann", StatusChange::Won, None, None),
        change("dee", StatusChange::Won, None, None),
        change("bob", StatusChange::Waitlisted, Some(1), None),
        change("cy", StatusChange::Waitlisted, Some(2), None),
        change("dee", StatusChange::Claimed, None, None),
        change("dee", StatusChange::Released, None, Some("cy")),
        change("ann", StatusChange::Released, None, Some("bob")),
        change("cy", StatusChange::Claimed, None, None),
        // A chain: bob, promoted by ann's release, lets his place lapse too, and gus (who
        // waits behind cy) is promoted: whether that applies depends on ann's release.
        change("gus", StatusChange::Waitlisted, Some(3), None),
        change("bob", StatusChange::Released, None, Some("gus")),
    ] {
        let subject = spec.subject_for(&event);
        let ack = env
            .js
            .publish(subject, Envelope::new(event).to_json().into())
            .await
            .unwrap()
            .await
            .unwrap();
        last_seq = last_seq.max(ack.sequence);
    }
    env.wait_applied(last_seq).await;
    wait_until(
        "the writer to catch up",
        Duration::from_secs(30),
        async || {
            let progress = tally_kit::consumer::progress(
                &env.js,
                &spec,
                tally_schema::consumers::POSTGRES_WRITER,
            )
            .await
            .unwrap();
            progress.caught_up()
        },
    )
    .await;

    let mut from_redis = Vec::new();
    for path in READS {
        let (status, answer) = get(&http, &url(path)).await;
        assert!(answer.get("source").is_none(), "{path}: {answer}");
        from_redis.push((status, answer));
    }
    assert_eq!(from_redis[0].1["total_votes"], 5, "{:?}", from_redis[0]);
    assert_eq!(from_redis[15].0, 404);
    let (status, bob) = &from_redis[10];
    assert_eq!(*status, 200);
    assert_eq!(bob["registration"]["status"], "released", "{bob}");
    let mixed = &from_redis[5].1["teams"];
    assert_eq!(
        mixed,
        &json!([{"rank": 1, "id": "owls", "score": 5.0}, {"rank": 2, "id": "bats", "score": 5.0}])
    );
    let (_, gus) = &from_redis[14];
    assert_eq!(gus["registration"]["status"], "won", "{gus}");

    redis.proc.kill().await;
    for (path, (redis_status, redis_answer)) in READS.iter().zip(&from_redis) {
        let (status, mut answer) = get(&http, &url(path)).await;
        assert_eq!(status, *redis_status, "{path}: {answer}");
        if status == 200 {
            let source = answer.as_object_mut().unwrap().remove("source");
            assert_eq!(source, Some(json!("postgres")), "{path}");
        }
        assert_eq!(
            &answer, redis_answer,
            "{path}: Postgres said otherwise than Redis"
        );
    }
    // Shared and cached: many readers of the same answers cost no new Postgres query.
    let queries = || async {
        let text = http.get(url("/metrics")).send().await.unwrap();
        fallback_queries(&text.text().await.unwrap())
    };
    let before = queries().await;
    assert!(before >= READS.len() as u64 - 1, "{before} queries");
    let urls: Vec<String> = (0..50).map(|i| url(READS[i % 5])).collect();
    let reads = urls.iter().map(|u| get(&http, u));
    for (status, _) in futures::future::join_all(reads).await {
        assert_eq!(status, 200);
    }
    assert_eq!(queries().await, before);
    // With the fallback off, a read without Redis is the 503 it always was.
    let refused = http.get(strict.url(READS[0])).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "unavailable", "{answer}");

    // Redis back (its append-only file reloaded): reads come from it again.
    redis.proc.restart();
    redis.wait_ready().await;
    wait_until(
        "reads from Redis again",
        Duration::from_secs(30),
        async || {
            let (status, answer) = get(&http, &url(READS[0])).await;
            status == 200 && answer.get("source").is_none()
        },
    )
    .await;
    strict.stop().await;
    pipeline.stop().await;
}

/// Postgres queries the fallback made, over every view.
fn fallback_queries(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("tally_ingest_fallback_queries_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
