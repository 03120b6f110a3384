//! Events posted to ingest end up in Postgres exactly as sent, once.

use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use tally_tests::{Ingest, Pipeline, TestEnv, Writer, accepted_id, fixtures, post, wait_until};
use uuid::Uuid;

#[tokio::test]
async fn each_kind_posted_lands_as_exactly_those_rows() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env).without_aggregator().start().await;
    let ingest = &pipeline.ingest;
    let http = reqwest::Client::new();

    let (s, vote) = post(
        &http,
        &ingest.url("/v1/polls/final/votes"),
        &json!({"voter": "ada", "options": ["red", "blue"]}),
    )
    .await;
    assert_eq!(s, 202, "{vote}");
    let (s, pair) = post(
        &http,
        &ingest.url("/v1/arenas/models/votes"),
        &json!({"session": "s1", "winner": "m-a", "loser": "m-b"}),
    )
    .await;
    assert_eq!(s, 202, "{pair}");
    let (s, score) = post(
        &http,
        &ingest.url("/v1/tournaments/cup/scores"),
        &json!({"match": "m1", "team": "owls", "points": -3}),
    )
    .await;
    assert_eq!(s, 202, "{score}");
    let (s, reg) = post(
        &http,
        &ingest.url("/v1/tournaments/cup/registrations"),
        &json!({"user": "grace@example.org", "group": "vip"}),
    )
    .await;
    assert_eq!(s, 202, "{reg}");
    let (s, batch) = post(
        &http,
        &ingest.url("/v1/events"),
        &json!({"events": [
            {"type": "poll_vote", "poll": "final", "voter": "bob", "options": ["green"]},
            {"type": "registration", "tournament": "cup", "user": "linus"},
        ]}),
    )
    .await;
    assert_eq!(s, 202, "{batch}");
    assert_eq!(batch["accepted"], 2);
    let seqs: Vec<u64> = [&vote, &pair, &score, &reg]
        .iter()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "stream sequences increase: {seqs:?}"
    );

    let mut expected: HashSet<Uuid> = [&vote, &pair, &score, &reg]
        .iter()
        .map(|b| accepted_id(b))
        .collect();
    for r in batch["results"].as_array().unwrap() {
        expected.insert(accepted_id(r));
    }
    env.assert_exactly_stored(&expected, Duration::from_secs(15))
        .await;

    let (poll, voter, options): (String, String, Vec<String>) =
        sqlx::query_as("SELECT poll, voter, options FROM poll_votes WHERE event_id = $1")
            .bind(accepted_id(&vote))
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        (poll.as_str(), voter.as_str(), options),
        ("final", "ada", vec!["red".to_owned(), "blue".to_owned()])
    );
    let (arena, session, winner, loser): (String, String, String, String) =
        sqlx::query_as("SELECT arena, session, winner, loser FROM pair_votes WHERE event_id = $1")
            .bind(accepted_id(&pair))
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        (
            arena.as_str(),
            session.as_str(),
            winner.as_str(),
            loser.as_str()
        ),
        ("models", "s1", "m-a", "m-b")
    );
    let (tournament, match_id, team, points, seq): (String, String, String, i64, i64) =
        sqlx::query_as(
            "SELECT tournament, match_id, team, points, stream_seq FROM scores WHERE event_id = $1",
        )
        .bind(accepted_id(&score))
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        (
            tournament.as_str(),
            match_id.as_str(),
            team.as_str(),
            points
        ),
        ("cup", "m1", "owls", -3)
    );
    assert_eq!(seq as u64, score["seq"].as_u64().unwrap());
    let groups: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT user_id, grp FROM registrations WHERE tournament = 'cup' ORDER BY stream_seq",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        groups,
        vec![
            ("grace@example.org".to_owned(), Some("vip".to_owned())),
            ("linus".to_owned(), None)
        ]
    );

    pipeline.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_twice_is_stored_once() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env).without_aggregator().start().await;
    let ingest = &pipeline.ingest;
    let http = reqwest::Client::new();
    let url = ingest.url("/v1/polls/final/votes");
    let body = json!({"voter": "ada", "options": ["red"]});

    let send = |key: &'static str| {
        http.post(&url)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first: serde_json::Value = send("vote-ada-1").await.unwrap().json().await.unwrap();
    let second = send("vote-ada-1").await.unwrap();
    assert_eq!(second.status(), 202);
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["seq"], second["seq"]);
    assert_eq!(
        (first["duplicate"].as_bool(), second["duplicate"].as_bool()),
        (Some(false), Some(true))
    );
    // The body's `id` is the same key.
    let (s, third) = post(
        &http,
        &url,
        &json!({"id": "vote-ada-1", "voter": "ada", "options": ["red"]}),
    )
    .await;
    assert_eq!((s, third["id"].clone()), (202, first["id"].clone()));
    // A different key is a different event.
    let other: serde_json::Value = send("vote-ada-2").await.unwrap().json().await.unwrap();

    let expected = HashSet::from([accepted_id(&first), accepted_id(&other)]);
    env.assert_exactly_stored(&expected, Duration::from_secs(15))
        .await;
    assert_eq!(
        env.stream_messages().await,
        2,
        "JetStream stored the keyed event once"
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_retry_after_the_duplicate_window_is_caught_by_the_writer() {
    // Outside JetStream's window the same event is stored on the stream twice; Postgres must
    // still hold it once. Publish the same envelope twice without a message id to get there.
    let env = TestEnv::new().await;
    let spec = env.nats.spec();
    let event = tally_schema::api::RegistrationBody {
        id: None,
        user: "ada".try_into().unwrap(),
        group: None,
        email: None,
        time_zone: None,
    }
    .into_event("cup".try_into().unwrap());
    let envelope = tally_schema::Envelope::keyed(uuid::Uuid::now_v7(), event);
    for _ in 0..2 {
        env.js
            .publish(spec.subject_for(&envelope.event), envelope.to_json().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(env.stream_messages().await, 2);
    let writer = Writer::start(env.workers_config()).await;
    env.assert_exactly_stored(&HashSet::from([envelope.id]), Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.assert_exactly_stored(&HashSet::from([envelope.id]), Duration::from_secs(1))
        .await;
    writer.stop().await;
}

#[tokio::test]
async fn undecodable_messages_are_dead_lettered_without_blocking_the_rest() {
    let env = TestEnv::new().await;
    let spec = env.nats.spec();
    let mut config = env.workers_config();
    config.writer.poison_max_deliveries = 2;
    let garbage = spec.subject(tally_schema::Kind::Score, "cup");
    env.js
        .publish(garbage.clone(), "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let good = tally_schema::Envelope::new(
        tally_schema::api::ScoreBody {
            id: None,
            match_id: "m".try_into().unwrap(),
            team: "t".try_into().unwrap(),
            points: 1,
        }
        .into_event("cup".try_into().unwrap()),
    );
    env.js
        .publish(garbage, good.to_json().into())
        .await
        .unwrap()
        .await
        .unwrap();

    let writer = Writer::start(config).await;
    env.assert_exactly_stored(&HashSet::from([good.id]), Duration::from_secs(10))
        .await;

    let mut dlq = env.js.get_stream(spec.dead_letter_stream()).await.unwrap();
    wait_until("a dead letter", Duration::from_secs(15), async || {
        dlq.info().await.unwrap().state.messages > 0
    })
    .await;
    let letter = dlq
        .get_last_raw_message_by_subject(
            &spec.dead_letter_subject(tally_schema::consumers::POSTGRES_WRITER),
        )
        .await
        .unwrap();
    assert_eq!(&letter.payload[..], b"{not json");
    let headers = letter.headers;
    let reason = headers.get("Tally-Dead-Letter-Reason").unwrap().to_string();
    assert!(reason.contains("undecodable event"), "{reason}");
    assert_eq!(
        headers.get("Tally-Original-Sequence").unwrap().to_string(),
        "1"
    );

    // The operator's view of it: `tally dead-letters list`.
    use tally_kit::dead_letters::{self, DeadLetterError};
    let letters = dead_letters::list(&env.js, &spec, 1, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let garbage_letter = &letters[0];
    assert_eq!(
        garbage_letter.consumer,
        tally_schema::consumers::POSTGRES_WRITER
    );
    assert_eq!(garbage_letter.original_subject, good_subject(&spec));
    assert_eq!(garbage_letter.original_seq, Some(1));
    assert!(garbage_letter.reason.contains("undecodable event"));

    // A letter that an older writer could not decode and this one can (a rolling upgrade
    // that shipped a new event shape to the publishers first), put there as the writer does:
    // the replay puts it back on its subject and Postgres then holds it, once.
    let late = tally_schema::Envelope::new(
        tally_schema::api::ScoreBody {
            id: None,
            match_id: "m2".try_into().unwrap(),
            team: "t".try_into().unwrap(),
            points: 2,
        }
        .into_event("cup".try_into().unwrap()),
    );
    let dlq_subject = spec.dead_letter_subject(tally_schema::consumers::POSTGRES_WRITER);
    let letter_headers = |subject: &str| {
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            "Tally-Dead-Letter-Reason",
            "undecodable event: unknown field",
        );
        h.insert("Tally-Original-Subject", subject);
        h.insert("Tally-Original-Sequence", "2");
        h
    };
    let late_seq = env
        .js
        .publish_with_headers(
            dlq_subject.clone(),
            letter_headers(&good_subject(&spec)),
            late.to_json().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    env.nats_cli("dead-letters", &["replay", &late_seq.to_string()])
        .await
        .expect("the letter replays");
    env.assert_exactly_stored(&HashSet::from([good.id, late.id]), Duration::from_secs(10))
        .await;
    // Gone from the dead letters; a second replay finds nothing to put back.
    let left: Vec<u64> = dead_letters::list(&env.js, &spec, 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|l| l.seq)
        .collect();
    assert_eq!(left, vec![garbage_letter.seq]);
    assert!(matches!(
        dead_letters::replay(&env.js, &spec, late_seq).await,
        Err(DeadLetterError::NotFound(seq)) if seq == late_seq
    ));
    // A letter that names anything but an event subject is never published.
    let admin_subject = spec.resource_changes_subject();
    let odd_seq = env
        .js
        .publish_with_headers(dlq_subject, letter_headers(&admin_subject), "{}".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    assert!(matches!(
        dead_letters::replay(&env.js, &spec, odd_seq).await,
        Err(DeadLetterError::NotAnEvent { .. })
    ));
    writer.stop().await;
}

fn good_subject(spec: &tally_schema::StreamSpec) -> String {
    spec.subject(tally_schema::Kind::Score, "cup")
}

#[tokio::test]
async fn ops_endpoints_answer() {
    let env = TestEnv::new().await;
    env.define([fixtures::poll("p")]).await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(ingest.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(ingest.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    post(
        &http,
        &ingest.url("/v1/polls/p/votes"),
        &json!({"voter": "v", "options": ["a"]}),
    )
    .await;
    let metrics = http
        .get(ingest.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "tally_ingest_requests_total",
        "tally_ingest_request_duration_seconds_bucket",
        "tally_ingest_publish_duration_seconds_bucket",
        "tally_ingest_publish_in_flight_messages",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(
        metrics.contains(r#"route="/v1/polls/{poll}/votes""#),
        "routes are labelled by pattern"
    );
    ingest.stop().await;
}

/// schema's one mapping each way: every kind, with every optional field set and unset,
/// written as rows by the writer's batch insert comes back through `stored_events` as the
/// same event (what the rebuild replays).
#[tokio::test]
async fn every_kind_written_as_rows_reads_back_as_the_same_event() {
    use tally_schema::rows::StoredRow;
    use tally_schema::{Envelope, Event, StoredEvent};
    let env = TestEnv::new().await;
    let deadline = "2030-01-02T03:04:05.123456Z";
    let events: Vec<Event> = [
        json!({"type": "poll_vote", "poll": "final", "voter": "ada", "options": ["red", "blue"]}),
        json!({"type": "pair_vote", "arena": "models", "session": "s1", "winner": "m-a", "loser": "m-b"}),
        json!({"type": "score", "tournament": "cup", "match": "m1", "team": "owls", "points": -3, "effect": "max"}),
        json!({"type": "score", "tournament": "cup", "match": "m2", "team": "owls", "points": 5}),
        json!({"type": "registration", "tournament": "cup", "user": "grace@example.org", "group": "vip"}),
        json!({"type": "registration", "tournament": "cup", "user": "alan"}),
        json!({"type": "media_uploaded", "tournament": "cup", "media": "pic1", "object_key": "cup/pic1",
               "content_type": "image/png", "bytes": 1234, "user": "ada"}),
        json!({"type": "media_uploaded", "tournament": "cup", "media": "pic2", "object_key": "cup/pic2",
               "content_type": "image/jpeg", "bytes": 1}),
        json!({"type": "registration_status", "tournament": "cup", "user": "alan", "status": "released",
               "deadline": deadline, "promoted": "grace@example.org"}),
        json!({"type": "registration_status", "tournament": "cup", "user": "ada", "status": "waitlisted",
               "position": 3}),
    ]
    .into_iter()
    .map(|e| serde_json::from_value(e).unwrap())
    .collect();
    let written: Vec<StoredEvent> = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| StoredEvent {
            stream_seq: i as u64 + 1,
            envelope: Envelope::new(event),
        })
        .collect();
    let store = tally_workers::store::PgStore::connect(&env.database_url, 1)
        .await
        .unwrap();
    assert_eq!(store.write(&written).await.unwrap().inserted, 10);
    // Again: nothing new.
    assert_eq!(store.write(&written).await.unwrap().duplicates, 10);
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT stream_seq, event_id, received_at, event::text AS event
         FROM stored_events ORDER BY stream_seq",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let read: Vec<StoredEvent> = rows
        .into_iter()
        .map(|r| r.into_stored_event().unwrap())
        .collect();
    // Postgres keeps microseconds; ingest's clock gives nanoseconds.
    let micros = |e: &StoredEvent| {
        let mut e = e.clone();
        e.envelope.received_at = e
            .envelope
            .received_at
            .with_nanosecond(e.envelope.received_at.timestamp_subsec_micros() * 1000)
            .unwrap();
        e
    };
    use chrono::Timelike;
    assert_eq!(read, written.iter().map(micros).collect::<Vec<_>>());
}
