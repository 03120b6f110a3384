//! The load scenarios, small, against the real pipeline in-process: each one's outcome check
//! passes when nothing is wrong, and catches it when something is. Speed is the loadtest's
//! business (deploy/loadtest.sh); this only keeps the scenarios and their checks honest.

use tally_ingest::auth::Role;
use tally_loadtest::crowd;
use tally_loadtest::open_loop::{Plan, Run};
use tally_loadtest::outcome::{StoreArgs, Stores};
use tally_loadtest::scenarios::{self, Clients};
use tally_tests::{Ingest, Pipeline, TestEnv, clickhouse_url, redis_url};

fn plan(requests: usize) -> Plan {
    Plan {
        requests,
        rate: 500.0,
        connections: 32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_scenario_passes_its_outcome_check_against_the_real_pipeline() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::start(&env).await;
    let ingest = &pipeline.ingest;
    let key = env.api_key(Role::Admin).await;
    let clients = Clients::new(&ingest.base_url(), &key, 2).expect("clients");
    let stores = Stores::connect(&StoreArgs {
        database_url: env.database_url.clone(),
        redis_url: redis_url(),
        redis_prefix: env.name.clone(),
        clickhouse_url: clickhouse_url(),
        clickhouse_database: format!("tally_{}", env.name),
        // No metrics listener in-process: the lag column stays empty.
        aggregator_metrics: "http://127.0.0.1:9/metrics".into(),
    })
    .await
    .expect("stores");

    let mut rows = vec![
        scenarios::flash_poll(&clients, &stores, plan(300))
            .await
            .unwrap(),
        scenarios::arena(&clients, &stores, plan(200))
            .await
            .unwrap(),
        scenarios::registration_rush(&clients, &stores, plan(150), 100)
            .await
            .unwrap(),
        scenarios::batch(&clients, &stores, plan(5), 50)
            .await
            .unwrap(),
    ];
    let (scores, reads) = scenarios::tournament(&clients, &stores, plan(300), plan(100), 5)
        .await
        .unwrap();
    rows.extend([scores, reads]);
    for row in &rows {
        println!("{}: {} accepted; {}", row.name, row.accepted, row.outcome);
        assert!(
            row.outcome.starts_with("ok"),
            "{}: {}",
            row.name,
            row.outcome
        );
        assert_eq!(
            row.accepted, row.requests,
            "{}: {:?}",
            row.name, row.statuses
        );
    }
    let table = tally_loadtest::report::table(&rows, &["flash-poll"]);
    assert_eq!(table.lines().count(), rows.len() + 2, "{table}");

    // arena-crowd's parts, as its generator processes run them, against two ingests at once;
    // merged, the shares hold every answer and pass the arena's outcome check.
    let second = Ingest::start(env.ingest_config()).await;
    let arena = scenarios::define_arena(&clients, "crowd").await.unwrap();
    let start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 300;
    let part = |from, to| crowd::PartArgs {
        arena: arena.clone(),
        targets: vec![ingest.base_url(), second.base_url()],
        voters: 120,
        from,
        to,
        votes_each: 2,
        interval_ms: 500,
        ramp_ms: 500,
        start_unix_ms,
        addresses: 2,
    };
    let (first, second_half) = (part(0, 60), part(60, 120));
    let (a, b) = tokio::join!(crowd::run_part(&first), crowd::run_part(&second_half));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.connected + b.connected, 120, "every voter got an answer");
    let run = Run::merged(plan(240), vec![a.share, b.share]);
    assert_eq!(run.accepted(), 240, "{:?}", run.statuses);
    assert_eq!(run.acknowledged.len(), 240);
    let outcome = scenarios::arena_outcome(&stores, &arena, &run).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    second.stop().await;

    // A check that finds a mismatch says so: a vote removed behind the writer's back.
    sqlx::query(
        "DELETE FROM poll_votes WHERE event_id = (SELECT event_id FROM poll_votes LIMIT 1)",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    let poll: (String,) =
        sqlx::query_as("SELECT poll FROM poll_votes WHERE poll LIKE 'flash-%' LIMIT 1")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let (all,): (Vec<uuid::Uuid>,) =
        sqlx::query_as("SELECT array_agg(event_id) FROM poll_votes WHERE poll = $1")
            .bind(&poll.0)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let mut claimed = all.clone();
    claimed.push(uuid::Uuid::new_v4()); // acknowledged, never stored
    let error = stores
        .postgres_exactly("poll_votes", "poll", &poll.0, &claimed)
        .await
        .expect_err("a lost event is reported");
    assert!(error.to_string().contains("1 lost"), "{error}");

    pipeline.stop().await;
}
