//! The live results page in a real (headless) Chromium: its numbers change as votes and
//! scores arrive, without a reload.

use serde_json::json;
use std::time::Duration;
use tally_tests::browser::Browser;
use tally_tests::{Ingest, Pipeline, TestEnv, post};

/// One vote in the standard poll `final`, answered 202.
async fn vote_in_final(http: &reqwest::Client, ingest: &Ingest, voter: &str, option: &str) {
    let (s, body) = post(
        http,
        &ingest.url("/v1/polls/final/votes"),
        &json!({"voter": voter, "options": [option]}),
    )
    .await;
    assert_eq!(s, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_follows_votes_and_scores_as_they_arrive() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env).without_writer().start().await;
    let ingest = &pipeline.ingest;
    let http = reqwest::Client::new();
    let vote = async |voter: &str, option: &str| vote_in_final(&http, ingest, voter, option).await;
    vote("a", "red").await;
    vote("b", "red").await;
    vote("c", "blue").await;

    let mut page = Browser::open(&ingest.url("/live/polls/final")).await;
    let within = Duration::from_secs(20);
    page.wait_for(
        "document.getElementById('total').textContent",
        json!("3"),
        within,
    )
    .await;
    page.wait_for(
        "document.querySelector('[data-id=red] .num').textContent",
        json!("2"),
        within,
    )
    .await;

    // New votes reach the open page.
    for (i, option) in ["blue", "blue", "blue", "green"].iter().enumerate() {
        vote(&format!("late{i}"), option).await;
    }
    page.wait_for(
        "document.getElementById('total').textContent",
        json!("7"),
        within,
    )
    .await;
    page.wait_for(
        "document.querySelector('.row').dataset.id",
        json!("blue"),
        within,
    )
    .await;
    page.wait_for(
        "document.querySelector('[data-id=green] .num').textContent",
        json!("1"),
        within,
    )
    .await;
    page.wait_for(
        "document.getElementById('status').textContent.startsWith('live')",
        json!(true),
        within,
    )
    .await;

    // Standings, same page, other scope.
    let mut standings = Browser::open(&ingest.url("/live/tournaments/cup")).await;
    let score = async |team: &str, points: i64| {
        let (s, body) = post(
            &http,
            &ingest.url("/v1/tournaments/cup/scores"),
            &json!({"match": "m", "team": team, "points": points}),
        )
        .await;
        assert_eq!(s, 202, "{body}");
    };
    score("owls", 3).await;
    standings
        .wait_for(
            "document.querySelector('.row').dataset.id",
            json!("owls"),
            within,
        )
        .await;
    score("larks", 5).await;
    standings
        .wait_for(
            "document.querySelector('.row').dataset.id",
            json!("larks"),
            within,
        )
        .await;

    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_works_over_websocket_too() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env).without_writer().start().await;
    let ingest = &pipeline.ingest;
    let http = reqwest::Client::new();
    let vote = async |voter: &str, option: &str| vote_in_final(&http, ingest, voter, option).await;
    vote("a", "red").await;
    let mut page = Browser::open(&ingest.url("/live/polls/final?transport=websocket")).await;
    let within = Duration::from_secs(20);
    page.wait_for(
        "document.getElementById('total').textContent",
        json!("1"),
        within,
    )
    .await;
    vote("b", "blue").await;
    vote("c", "blue").await;
    page.wait_for(
        "document.querySelector('.row').dataset.id",
        json!("blue"),
        within,
    )
    .await;
    page.wait_for(
        "document.getElementById('status').textContent.endsWith('websocket')",
        json!(true),
        within,
    )
    .await;
    // The page's socket is counted as a WebSocket stream.
    let (_, health) = tally_tests::get(&http, &ingest.url("/healthz?details=true")).await;
    assert!(
        health["transports"]["websocket"].as_u64() >= Some(1),
        "{health}"
    );
    pipeline.stop().await;
}
