//! The registration rush: 10,000 people registering at once for 700 places. First-come
//! places follow JetStream's total order exactly; each user registers once however often they
//! try; the status endpoint, Redis and Postgres agree.

use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::{AdminClient, Pipeline, TestEnv, get, post, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_registrants_for_seven_hundred_first_come_places() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::start(&env).await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    admin
        .create(
            "tournaments",
            json!({"id": "rush", "capacity": 700, "mode": "first_come",
                   "groups": [{"id": "members", "weight": 2}]}),
        )
        .await;
    let http = reqwest::Client::new();
    let url = ingest.url("/v1/tournaments/rush/registrations");
    // Every tenth user hammers: three tries at once. All are answered with the same event.
    let attempts: Vec<usize> = (0..10_000)
        .flat_map(|u| std::iter::repeat_n(u, if u % 10 == 0 { 3 } else { 1 }))
        .collect();
    let answers: Vec<(usize, Value)> = futures::stream::iter(attempts)
        .map(|u| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let mut body = json!({"user": format!("u{u}")});
                if u % 4 == 0 {
                    body["group"] = "members".into();
                }
                let (status, answer) = post(&http, &url, &body).await;
                assert_eq!(status, 202, "{answer}");
                (u, answer)
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let mut ids: HashMap<usize, String> = HashMap::new();
    for (u, answer) in &answers {
        let id = answer["id"].as_str().unwrap().to_owned();
        assert_eq!(
            ids.entry(*u).or_insert_with(|| id.clone()),
            &id,
            "one event per user"
        );
    }
    let acked = ids.values().map(|id| id.parse().unwrap()).collect();
    env.assert_exactly_stored(&acked, Duration::from_secs(60))
        .await;

    // Postgres: positions in stream order.
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, position FROM registration_positions WHERE tournament = 'rush'",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 10_000);
    let expected: HashMap<String, i64> = rows.into_iter().collect();

    // The status endpoint (from Redis) gives every user the same position and exactly 700
    // places. 404 until the aggregator placed the user; a 503 is retried, as a client does.
    let statuses: Vec<(String, Value)> = futures::stream::iter(0..10_000)
        .map(|u| {
            let http = http.clone();
            let url = ingest.url(&format!("/v1/tournaments/rush/registrations/u{u}"));
            async move {
                let what = format!("u{u} to be placed");
                let body = wait_until(what, Duration::from_secs(30), async || {
                    let (status, body) = get(&http, &url).await;
                    match status {
                        200 => Ok(body),
                        404 => Err(body),
                        other => panic!("u{u}: {other} {body}"),
                    }
                })
                .await;
                (format!("u{u}"), body)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut placed = 0;
    for (user, body) in &statuses {
        let r = &body["registration"];
        let position = expected[user];
        match r["status"].as_str().unwrap() {
            "placed" => {
                placed += 1;
                assert_eq!(r["position"].as_i64(), Some(position), "{user}");
                assert!(position <= 700);
            }
            "waitlisted" => {
                assert_eq!(r["position"].as_i64(), Some(position - 700), "{user}");
            }
            other => panic!("{user}: {other}"),
        }
    }
    assert_eq!(placed, 700, "exactly the capacity");
    let (_, counts) = get(&http, &ingest.url("/v1/tournaments/rush/registrations")).await;
    assert_eq!(counts["total"], 10_000);
    assert_eq!(counts["groups"]["members"], 2_500);
    let (unknown, _) = get(
        &http,
        &ingest.url("/v1/tournaments/rush/registrations/nobody"),
    )
    .await;
    assert_eq!(unknown, 404);
    pipeline.stop().await;
}
