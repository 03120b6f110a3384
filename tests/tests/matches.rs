//! Match statuses against the real servers: `scheduled` → `live` → `final`, set with an admin
//! or scorekeeper key, forward only; a final match refuses scores on every ingest instance.

use serde_json::{Value, json};
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::{AdminClient, Ingest, TestEnv, post, wait_until};

async fn set_status(
    http: &reqwest::Client,
    ingest: &Ingest,
    key: Option<&str>,
    status: &Value,
) -> (u16, Value) {
    let mut request = http
        .post(ingest.url("/v1/tournaments/league/matches/final/status"))
        .json(status);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("sent");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_match_refuses_scores_everywhere_and_stays_final() {
    let env = TestEnv::new().await;
    let one = Ingest::start(env.ingest_config()).await;
    let two = Ingest::start(env.ingest_config()).await;
    let admin_key = env.api_key(Role::Admin).await;
    let admin = AdminClient::new(&one, Some(admin_key.clone()));
    admin
        .create(
            "tournaments",
            json!({"id": "league", "teams": ["owls", "bats"],
                   "matches": [{"id": "final", "teams": ["owls", "bats"]}]}),
        )
        .await;
    let http = reqwest::Client::new();
    // The second instance learns of the new tournament from the change announcement (or its
    // periodic reload, should it have subscribed after the announcement went out).
    let standings = two.url("/v1/tournaments/league/standings");
    wait_until(
        "the second ingest to know the tournament",
        Duration::from_secs(40),
        async || match tally_tests::get(&http, &standings).await {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        },
    )
    .await;
    let scorekeeper = env.api_key(Role::Scorekeeper).await;
    let viewer = env.api_key(Role::Viewer).await;
    let score = async |ingest: &Ingest| {
        post(
            &http,
            &ingest.url("/v1/tournaments/league/scores"),
            &json!({"match": "final", "team": "owls", "points": 1}),
        )
        .await
    };
    let code = |answer: &Value| answer["error"]["code"].as_str().unwrap_or("").to_owned();

    assert_eq!(score(&one).await.0, 202, "a scheduled match takes scores");
    let (status, _) = set_status(&http, &one, None, &json!({"status": "live"})).await;
    assert_eq!(status, 401);
    let (status, answer) = set_status(&http, &one, Some(&viewer), &json!({"status": "live"})).await;
    assert_eq!((status, code(&answer).as_str()), (403, "insufficient_role"));
    let (status, answer) =
        set_status(&http, &one, Some(&scorekeeper), &json!({"status": "over"})).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("status"))
    );
    let (status, answer) =
        set_status(&http, &one, Some(&scorekeeper), &json!({"status": "live"})).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("live")),
        "{answer}"
    );
    assert_eq!(score(&two).await.0, 202, "a live match takes scores");

    let (status, _) =
        set_status(&http, &one, Some(&scorekeeper), &json!({"status": "final"})).await;
    assert_eq!(status, 200);
    let (status, answer) = score(&one).await;
    assert_eq!((status, code(&answer).as_str()), (409, "match_final"));
    // The other instance learns of it from the change announcement.
    wait_until(
        "the second ingest to refuse the final match",
        Duration::from_secs(10),
        async || match score(&two).await {
            (409, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        },
    )
    .await;

    // Final stays final: not through this route, not through a PUT of the definition.
    let (status, answer) =
        set_status(&http, &one, Some(&admin_key), &json!({"status": "live"})).await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (409, "match_status_backwards")
    );
    let (status, answer) = admin
        .send(
            reqwest::Method::PUT,
            "/admin/v1/tournaments/league",
            Some(&json!({"id": "league", "teams": ["owls", "bats"],
                         "matches": [{"id": "final", "teams": ["owls", "bats"]}]})),
        )
        .await;
    assert_eq!(
        (status, code(&answer).as_str()),
        (409, "match_status_backwards")
    );
    let (status, answer) = admin
        .send(reqwest::Method::GET, "/admin/v1/tournaments/league", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["definition"]["matches"][0]["status"], "final");
    // A match that is not listed has no status.
    let response = http
        .post(one.url("/v1/tournaments/league/matches/semi/status"))
        .bearer_auth(&scorekeeper)
        .json(&json!({"status": "live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_reads_and_streams_its_own_scores_and_status() {
    let env = TestEnv::new().await;
    let pipeline = tally_tests::Pipeline::build(&env)
        .without_writer()
        .start()
        .await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    admin
        .create(
            "tournaments",
            json!({"id": "league", "teams": ["owls", "bats", "cats"],
                   "matches": [{"id": "semi", "teams": ["owls", "bats"]},
                               {"id": "final", "teams": ["owls", "cats"]}]}),
        )
        .await;
    let http = reqwest::Client::new();
    let read = |m: &str| ingest.url(&format!("/v1/tournaments/league/matches/{m}"));
    let (s, empty) = tally_tests::get(&http, &read("semi")).await;
    assert_eq!(s, 200);
    assert_eq!(
        empty,
        json!({"tournament": "league", "match": "semi", "status": "scheduled", "teams": []})
    );
    let mut stream = tally_tests::sse::SseStream::open(
        &http,
        &ingest.url("/v1/tournaments/league/matches/semi/stream"),
        None,
    )
    .await;
    let score = async |m: &str, team: &str, points: i64| {
        let url = ingest.url("/v1/tournaments/league/scores");
        let (s, body) = post(
            &http,
            &url,
            &json!({"match": m, "team": team, "points": points}),
        )
        .await;
        assert_eq!(s, 202, "{body}");
    };
    score("semi", "owls", 3).await;
    score("semi", "bats", 1).await;
    score("semi", "owls", 2).await;
    score("final", "cats", 7).await;
    let semi = json!({"tournament": "league", "match": "semi", "status": "scheduled",
                      "teams": [{"rank": 1, "id": "owls", "score": 5.0},
                                {"rank": 2, "id": "bats", "score": 1.0}]});
    wait_until("the semi's scores", Duration::from_secs(30), async || {
        let (_, view) = tally_tests::get(&http, &read("semi")).await;
        if view == semi { Ok(()) } else { Err(view) }
    })
    .await;
    // The final's points are the final's; the standings hold both.
    let (_, last) = tally_tests::get(&http, &read("final")).await;
    assert_eq!(
        last["teams"],
        json!([{"rank": 1, "id": "cats", "score": 7.0}])
    );
    let (_, standings) =
        tally_tests::get(&http, &ingest.url("/v1/tournaments/league/standings")).await;
    assert_eq!(
        standings["teams"][0],
        json!({"rank": 1, "id": "cats", "score": 7.0})
    );
    // The stream caught up with the scores, then tells the status change.
    let seen = wait_until(
        "the stream to show the semi's scores",
        Duration::from_secs(30),
        async || match stream.next_within(Duration::from_secs(5)).await {
            Some(e) if e.data == semi => Ok(e),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(seen.event, "match");
    let key = env.api_key(Role::Scorekeeper).await;
    let (s, _) = tally_tests::read(
        http.post(ingest.url("/v1/tournaments/league/matches/semi/status"))
            .bearer_auth(&key)
            .json(&json!({"status": "live"})),
    )
    .await;
    assert_eq!(s, 200);
    wait_until(
        "the stream to show the semi live",
        Duration::from_secs(30),
        async || match stream.next_within(Duration::from_secs(5)).await {
            Some(e) if e.data["status"] == "live" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    for (path, field) in [
        ("/v1/tournaments/league/matches/nope", "match"),
        ("/v1/tournaments/league/matches/nope/stream", "match"),
        ("/v1/tournaments/nope/matches/semi", "tournament"),
    ] {
        let (s, body) = tally_tests::get(&http, &ingest.url(path)).await;
        assert_eq!(
            (s, body["error"]["field"].as_str()),
            (404, Some(field)),
            "{path}: {body}"
        );
    }
    pipeline.stop().await;
}
