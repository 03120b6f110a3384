//! The scheduled Bradley–Terry job: pair votes sent through ingest and stored by the writer
//! are refitted on the workers' cron schedule, stored in Postgres and served beside Elo.

use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::{AdminClient, Ingest, TestEnv, Writer, get, post, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ranking_job_recovers_known_strengths_and_serves_them_beside_elo() {
    let env = TestEnv::new().await;
    let ingest = Ingest::start(env.ingest_config()).await;
    let mut config = env.workers_config();
    config.ranking.ranking_schedule = "* * * * * *".into(); // every second, for the test
    config.ranking.ranking_replicates = 50;
    let writer = Writer::start(config.clone()).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    let items = ["e", "d", "c", "b", "a"]; // strengths 1, 2, 4, 8, 16: a is strongest
    admin
        .create("arenas", json!({"id": "bt", "items": items}))
        .await;

    let http = reqwest::Client::new();
    let url = ingest.url("/v1/arenas/bt/votes");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut acked = std::collections::HashSet::new();
    for n in 0..1500 {
        let i = rng.random_range(0..5);
        let j = (i + rng.random_range(1..5)) % 5;
        let (si, sj) = (2f64.powi(i as i32), 2f64.powi(j as i32));
        let (w, l) = if rng.random_bool(si / (si + sj)) {
            (i, j)
        } else {
            (j, i)
        };
        let body =
            json!({"session": format!("s{}", n % 50), "winner": items[w], "loser": items[l]});
        let (status, answer) = post(&http, &url, &body).await;
        assert_eq!(status, 202, "{answer}");
        acked.insert(tally_tests::accepted_id(&answer));
    }
    env.assert_exactly_stored(&acked, Duration::from_secs(30))
        .await;

    // The cron job picks the arena up within a few ticks.
    let ranking_url = ingest.url("/v1/arenas/bt/ranking");
    let what = "a fit of all votes";
    let ranking = wait_until(what, Duration::from_secs(20), async || {
        let (_, body) = get(&http, &ranking_url).await;
        if body["bradley_terry"]["votes"] == 1500 {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await;
    assert_eq!(
        ranking["rating"], "elo",
        "the live Elo ranking stays beside it"
    );
    let fitted = ranking["bradley_terry"]["items"].as_array().unwrap();
    let order: Vec<&str> = fitted.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["a", "b", "c", "d", "e"]);
    for pair in fitted.windows(2) {
        let (hi, lo) = (
            pair[0]["rating"].as_f64().unwrap(),
            pair[1]["rating"].as_f64().unwrap(),
        );
        let ratio = 10f64.powf((hi - lo) / 400.0);
        assert!(
            (1.4..2.8).contains(&ratio),
            "neighbour ratio {ratio} (truly 2)"
        );
        let (low, high) = (
            pair[0]["ci_low"].as_f64().unwrap(),
            pair[0]["ci_high"].as_f64().unwrap(),
        );
        assert!(low < hi && hi < high, "the interval holds the estimate");
    }

    // Postgres holds the same fit, and a run without new votes refits nothing.
    let stored: Vec<(String, i32)> =
        sqlx::query_as("SELECT item, rank FROM arena_rankings WHERE arena = 'bt' ORDER BY rank")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    let stored: Vec<&str> = stored.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(stored, order);
    writer.stop().await;
    let ranker = tally_workers::ranking::job::Ranker {
        store: tally_workers::store::PgStore::from_pool(env.pool.clone()),
        redis: redis::Client::open(tally_tests::redis_url()).unwrap(),
        keys: tally_schema::redis_keys::Keys::new(env.name.clone()),
        config: config.ranking.clone(),
    };
    assert_eq!(ranker.run_once().await.unwrap(), 0);
    ingest.stop().await;
}
