//! What the services write to their logs at info level must not hold secrets (API keys,
//! signing secrets, signatures) or who voted (voter and user ids): logs are read by more
//! people, kept longer and shipped further than the databases.

use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::faults::{Proc, Scratch, wait_ingest_ready};
use tally_tests::nats_cluster::free_port;
use tally_tests::{TestEnv, fixtures, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_hold_no_secrets_and_no_voter_ids() {
    let scratch = Scratch::new("logs");
    let env = TestEnv::new().await;
    env.define([fixtures::poll("logs")]).await;
    let admin_key = env.api_key(Role::Admin).await;
    let signing_secret = "sh-signing-secret-9d2f41";
    let mut config = env.ingest_config();
    config.addr = ([127, 0, 0, 1], free_port()).into();
    let base = format!("http://{}", config.addr);
    let info = ("RUST_LOG", "info".to_owned());
    let with_info = |mut vars: Vec<(&'static str, String)>| {
        vars.push(info.clone());
        vars
    };
    let mut ingest_env = with_info(env.ingest_env(&config));
    ingest_env.push(("TALLY_SIGNING_KEYS", format!("partner:{signing_secret}")));
    let mut services = vec![
        Proc::start(
            "ingest",
            vec![env!("CARGO_BIN_EXE_tally-ingest-under-test").to_owned()],
            ingest_env,
            &scratch.0,
        ),
        Proc::start(
            "workers",
            vec![env!("CARGO_BIN_EXE_tally-workers-under-test").to_owned()],
            with_info(env.workers_env(&env.workers_config())),
            &scratch.0,
        ),
        Proc::start(
            "aggregator",
            vec![env!("CARGO_BIN_EXE_tally-aggregator-under-test").to_owned()],
            with_info(env.aggregator_env(&env.aggregator_config())),
            &scratch.0,
        ),
    ];
    wait_ingest_ready(&base).await;

    let http = reqwest::Client::new();
    let voters: Vec<String> = (0..20)
        .map(|i| format!("voter-private-{i:04}-x7"))
        .collect();
    let vote_url = format!("{base}/v1/polls/logs/votes");
    for voter in &voters {
        let response = http
            .post(&vote_url)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&serde_json::json!({"voter": voter, "options": ["a"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    // A signed write, a duplicate and a refused one: the paths that handle credentials.
    let body = br#"{"voter":"voter-private-signed-x7","options":["b"]}"#.to_vec();
    let signed = tally_ingest::signature::Signed {
        method: "POST",
        path: "/v1/polls/logs/votes",
        query: "",
        idempotency_key: "signed-once",
    };
    // Each retry is signed anew (a signature is accepted once); the key makes it a duplicate.
    let mut signatures = Vec::new();
    for i in 0..2 {
        let now = chrono::Utc::now().timestamp() + i;
        let signature =
            tally_ingest::signature::sign(signing_secret.as_bytes(), now, signed, &body);
        let response = http
            .post(&vote_url)
            .header("content-type", "application/json")
            .header("idempotency-key", "signed-once")
            .header("tally-key-id", "partner")
            .header("tally-timestamp", now.to_string())
            .header("tally-signature", &signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        signatures.push(signature);
    }
    let wrong_key = "tk_wrong-key-that-must-not-be-logged";
    let mut statuses = Vec::new();
    for key in [admin_key.as_str(), wrong_key] {
        let response = http
            .post(format!("{base}/admin/v1/polls"))
            .bearer_auth(key)
            .json(&serde_json::json!({"id": "logs-2", "options": ["a", "b"]}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [201, 403]);
    // Wait until the workers and the aggregator handled the votes, then stop everything.
    wait_until(
        "the votes to be stored",
        Duration::from_secs(60),
        async || match env.stored_ids().await.len() {
            n if n > voters.len() => Ok(()),
            n => Err(format!("{n} stored")),
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for service in &mut services {
        service.kill().await;
    }

    let mut secrets: Vec<&str> = vec![&admin_key, wrong_key, signing_secret];
    secrets.extend(signatures.iter().map(String::as_str));
    secrets.push("voter-private-signed-x7");
    secrets.extend(voters.iter().map(String::as_str));
    let mut lines = 0;
    for service in ["ingest", "workers", "aggregator"] {
        let log = std::fs::read_to_string(scratch.0.join(format!("{service}.log"))).unwrap();
        assert!(!log.trim().is_empty(), "{service} logged nothing at info");
        lines += log.lines().count();
        for secret in &secrets {
            // Ids and keys are distinctive enough that a prefix match would be a leak too.
            let needle = &secret[..secret.len().min(24)];
            assert!(
                !log.contains(needle),
                "{service}'s info log holds {needle:?}:\n{}",
                log.lines()
                    .filter(|l| l.contains(needle))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    println!(
        "{lines} info log lines from ingest, workers and aggregator; none holds any of {} secrets or voter ids",
        secrets.len()
    );
}
