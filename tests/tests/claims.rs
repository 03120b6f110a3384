//! Claims and the waitlist: winners confirm before their deadline; a place left unclaimed is
//! released by the scheduled job to the next user on the waitlist, who gets a deadline of
//! their own. Every change is an event on the stream, seen by the status endpoint and
//! Postgres, and the places held never exceed the capacity.

use serde_json::{Value, json};
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::{AdminClient, Ingest, Pipeline, TestEnv, Wait, get, post, wait_until};

async fn status(http: &reqwest::Client, ingest: &Ingest, user: &str) -> Value {
    let url = ingest.url(&format!("/v1/tournaments/cup2/registrations/{user}"));
    get(http, &url).await.1["registration"].clone()
}

async fn wait_status(http: &reqwest::Client, ingest: &Ingest, user: &str, want: &str) -> Value {
    let what = format!("{user} to be {want}");
    wait_until(what, Duration::from_secs(30), async || {
        let s = status(http, ingest, user).await;
        if s["status"] == want { Ok(s) } else { Err(s) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclaimed_places_go_to_the_waitlist_in_drawn_order() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::start(&env).await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    admin
        .create(
            "tournaments",
            json!({"id": "cup2", "capacity": 2, "mode": "lottery", "claim_window_secs": 2}),
        )
        .await;
    let http = reqwest::Client::new();
    // The public record names pseudonyms; each registrant's receipt says which is theirs.
    let mut user_of = std::collections::HashMap::new();
    for u in 1..=5 {
        let (s, body) = post(
            &http,
            &ingest.url("/v1/tournaments/cup2/registrations"),
            &json!({"user": format!("u{u}")}),
        )
        .await;
        assert_eq!(s, 202, "{body}");
        let receipt = tally_schema::lottery::unhex32(body["receipt"].as_str().unwrap()).unwrap();
        user_of.insert(tally_schema::lottery::pseudonym(&receipt), format!("u{u}"));
    }
    wait_status(&http, ingest, "u5", "received").await;
    admin
        .send(
            reqwest::Method::POST,
            "/admin/v1/tournaments/cup2/close",
            None,
        )
        .await;
    let draw = ingest.url("/v1/tournaments/cup2/draw");
    let drawn = Wait::new("the draw", Duration::from_secs(60))
        .try_until(async || {
            let (_, record) = get(&http, &draw).await;
            if record["status"] == "drawn" {
                Ok(record)
            } else {
                Err(record)
            }
        })
        .await;
    let record = match drawn {
        Ok(record) => record,
        Err(_) => {
            let jobs: Vec<(String, Option<String>, i32)> =
                sqlx::query_as("SELECT status::text, last_result::text, attempts FROM apalis.jobs")
                    .fetch_all(&env.pool)
                    .await
                    .unwrap();
            let draws: Vec<(Option<chrono::DateTime<chrono::Utc>>,)> =
                sqlx::query_as("SELECT draw_requested_at FROM lottery_draws")
                    .fetch_all(&env.pool)
                    .await
                    .unwrap();
            let drawer = env.drawer();
            let direct = drawer.draw("cup2").await;
            panic!("never drawn: jobs {jobs:?}, draws {draws:?}, direct {direct:?}");
        }
    };
    let names = |field: &str| -> Vec<String> {
        record[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| user_of[v.as_str().unwrap()].clone())
            .collect()
    };
    let (winners, waitlist) = (names("winners"), names("waitlist"));
    let (keeper, sleeper) = (&winners[0], &winners[1]);
    let won = wait_status(&http, ingest, keeper, "won").await;
    assert!(won["deadline"].is_string(), "{won}");
    assert_eq!(
        wait_status(&http, ingest, &waitlist[0], "waitlisted").await["position"],
        1
    );

    // The first winner claims (twice: the same event); a waitlisted user cannot.
    let claim =
        |user: &str| ingest.url(&format!("/v1/tournaments/cup2/registrations/{user}/claim"));
    let (s, first) = post(&http, &claim(keeper), &json!(null)).await;
    assert_eq!(s, 202, "{first}");
    let (s, again) = post(&http, &claim(keeper), &json!(null)).await;
    assert_eq!((s, &again["id"]), (202, &first["id"]));
    let (s, refused) = post(&http, &claim(&waitlist[0]), &json!(null)).await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (409, Some("not_claimable"))
    );
    wait_status(&http, ingest, keeper, "claimed").await;

    // The second winner lets the deadline pass: the place goes to the first on the waitlist,
    // who also hears it on their status stream.
    let response = reqwest::get(ingest.url(&format!(
        "/v1/tournaments/cup2/registrations/{}/stream",
        waitlist[0]
    )))
    .await
    .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = response.bytes_stream();
    let heard =
        tally_tests::wait_for_event(&mut events, |v| v["registration"]["status"] == "won").await;
    assert_eq!(heard["registration"]["promoted"], true);
    wait_status(&http, ingest, sleeper, "released").await;
    let promoted = wait_status(&http, ingest, &waitlist[0], "won").await;
    assert_eq!(promoted["promoted"], true);
    let (s, late) = post(&http, &claim(sleeper), &json!(null)).await;
    assert_eq!(
        (s, late["error"]["code"].as_str()),
        (409, Some("not_claimable"))
    );
    let (s, body) = post(&http, &claim(&waitlist[0]), &json!(null)).await;
    assert_eq!(s, 202, "{body}");
    wait_status(&http, ingest, &waitlist[0], "claimed").await;
    // Both places are claimed: nobody else is promoted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut held = 0;
    for user in winners.iter().chain(&waitlist) {
        let s = status(&http, ingest, user).await;
        if s["status"] == "won" || s["status"] == "claimed" {
            held += 1;
        }
    }
    assert_eq!(held, 2, "never more places than the capacity");
    assert_eq!(
        status(&http, ingest, &waitlist[1]).await["status"],
        "waitlisted"
    );
    // The release step's indexes hold what is left to do, nothing more: no won place is
    // unclaimed, and the two users still waitlisted wait in their order.
    let keys = tally_schema::redis_keys::Keys::new(env.name.clone());
    let mut redis = env.redis().await;
    let deadlines: Vec<String> =
        redis::AsyncCommands::zrange(&mut redis, keys.draw_deadlines("cup2"), 0, -1)
            .await
            .unwrap();
    let waiting: Vec<String> =
        redis::AsyncCommands::zrange(&mut redis, keys.draw_waitlist("cup2"), 0, -1)
            .await
            .unwrap();
    assert_eq!(deadlines, Vec::<String>::new());
    assert_eq!(waiting, waitlist[1..].to_vec());

    // Every change reached Postgres as an event.
    let want: Vec<(String, i64)> = vec![
        ("claimed".into(), 2),
        ("released".into(), 1),
        ("waitlisted".into(), 3),
        ("won".into(), 2),
    ];
    let what = format!("Postgres to hold the statuses {want:?}");
    wait_until(what, Duration::from_secs(30), async || {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM registration_statuses GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(&env.pool)
        .await
        .unwrap();
        if rows == want {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    pipeline.stop().await;
}
