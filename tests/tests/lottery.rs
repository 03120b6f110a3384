//! The lottery: 10,000 registrants for 700 places. The seed's commitment is public before the
//! window closes; at the close the apalis draw job (Postgres backend) draws once, the audit
//! record verifies from its published data alone, and a second trigger changes nothing.

use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::{AdminClient, Pipeline, TestEnv, get, post, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_registrants_seven_hundred_winners_one_verifiable_draw() {
    let env = TestEnv::new().await;
    // The writer's process runs the lottery scheduler (every second here); the aggregator
    // places registrants.
    let pipeline = Pipeline::start(&env).await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    admin
        .create(
            "tournaments",
            json!({"id": "lucky", "capacity": 700, "mode": "lottery",
                   "groups": [{"id": "members", "weight": 2}]}),
        )
        .await;
    let http = reqwest::Client::new();
    let draw_url = ingest.url("/v1/tournaments/lucky/draw");
    let (status, committed) = get(&http, &draw_url).await;
    assert_eq!(status, 200, "{committed}");
    assert_eq!(committed["status"], "committed");
    assert_eq!(committed["commitment"].as_str().unwrap().len(), 64);
    assert!(
        committed.get("seed").is_none(),
        "the seed stays secret until the draw"
    );
    // The rules are committed with the seed and public from the start.
    let rules = committed["rules"].as_str().unwrap().to_owned();
    assert!(rules.contains("capacity\t700\n") && rules.contains("group\tmembers\t2.0\n"));
    // Once registration is open they cannot change (the commitment covers them).
    let (status, body) = admin
        .send(
            reqwest::Method::PUT,
            "/admin/v1/tournaments/lucky",
            Some(&json!({"id": "lucky", "capacity": 900, "mode": "lottery",
                         "groups": [{"id": "members", "weight": 2}]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("rules_frozen"))
    );

    let url = ingest.url("/v1/tournaments/lucky/registrations");
    let acked: Vec<(String, Value)> = futures::stream::iter(0..10_000)
        .map(|u| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let user = format!("u{u:05}");
                let mut body = json!({"user": user});
                if u % 5 == 0 {
                    body["group"] = "members".into();
                }
                let (status, answer) = post(&http, &url, &body).await;
                assert_eq!(status, 202, "{answer}");
                (user, answer)
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    assert_eq!(acked.len(), 10_000);
    // Each registrant keeps a receipt; its hash is their name in the public record.
    let receipt_of: std::collections::HashMap<String, String> = acked
        .iter()
        .map(|(user, answer)| (user.clone(), answer["receipt"].as_str().unwrap().to_owned()))
        .collect();
    let user_of: std::collections::HashMap<String, String> = receipt_of
        .iter()
        .map(|(user, receipt)| {
            let receipt = tally_schema::lottery::unhex32(receipt).unwrap();
            (tally_schema::lottery::pseudonym(&receipt), user.clone())
        })
        .collect();
    let first = ingest.url("/v1/tournaments/lucky/registrations/u00001");
    wait_until(
        "u00001 to be received",
        Duration::from_secs(30),
        async || {
            let (_, status) = get(&http, &first).await;
            if status["registration"]["status"] == "received" {
                Ok(())
            } else {
                Err(status)
            }
        },
    )
    .await;

    // The window closes; the scheduler queues the draw, the job draws once.
    let (status, _) = admin
        .send(
            reqwest::Method::POST,
            "/admin/v1/tournaments/lucky/close",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, late) = post(&http, &url, &json!({"user": "late"})).await;
    assert_eq!(
        (status, late["error"]["code"].as_str()),
        (409, Some("window_closed"))
    );
    let record = wait_until("the draw", Duration::from_secs(60), async || {
        let (_, record) = get(&http, &draw_url).await;
        if record["status"] == "drawn" {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .await;
    let winners: Vec<&str> = record["winners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let waitlist: Vec<&str> = record["waitlist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(winners.len(), 700);
    assert_eq!(waitlist.len(), 9_300);
    let everyone: HashSet<&str> = winners.iter().chain(&waitlist).copied().collect();
    assert_eq!(everyone.len(), 10_000, "each registrant exactly once");
    assert_eq!(record["commitment"], committed["commitment"]);
    // The public record names no one: pseudonyms only, each a receipt's.
    assert!(
        !record.to_string().contains("u00001"),
        "a user id is public"
    );
    assert!(everyone.iter().all(|p| user_of.contains_key(*p)));
    let winners: Vec<&str> = winners.iter().map(|p| user_of[*p].as_str()).collect();
    let waitlist: Vec<&str> = waitlist.iter().map(|p| user_of[*p].as_str()).collect();

    // Verified from the published record alone, by the library and by `tally verify-draw`.
    let audit: tally_schema::lottery::AuditRecord = serde_json::from_value(record.clone()).unwrap();
    assert!(tally_schema::lottery::verify(&audit).is_empty());
    use clap::Parser;
    let cli =
        tally_cli::Cli::parse_from(["tally", "--api", &ingest.base_url(), "verify-draw", "lucky"]);
    tally_cli::run(cli)
        .await
        .expect("tally verify-draw says verified");
    // A registrant checks their own result with their receipt.
    let cli = tally_cli::Cli::parse_from([
        "tally",
        "--api",
        &ingest.base_url(),
        "verify-draw",
        "lucky",
        "--receipt",
        &receipt_of[winners[0]],
    ]);
    tally_cli::run(cli)
        .await
        .expect("a winner's receipt is found");
    let cli = tally_cli::Cli::parse_from([
        "tally",
        "--api",
        &ingest.base_url(),
        "verify-draw",
        "lucky",
        "--receipt",
        &"ab".repeat(32),
    ]);
    assert!(
        tally_cli::run(cli).await.is_err(),
        "a made-up receipt is found nowhere"
    );
    // The read-only role sees the public record, not the seed's bytes, the pseudonym key or
    // the user ids behind the pseudonyms.
    let mut reader = env.pool.acquire().await.unwrap();
    sqlx::query("SET ROLE tally_reader")
        .execute(&mut *reader)
        .await
        .unwrap();
    for secret in ["seed", "pseudonym_key", "winners", "registrants"] {
        let denied = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {secret} FROM lottery_draws"
        )))
        .execute(&mut *reader)
        .await;
        assert!(denied.is_err(), "tally_reader reads {secret}");
    }
    let public: (String,) =
        sqlx::query_as("SELECT public_winners::text FROM lottery_draws WHERE tournament = 'lucky'")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
    assert!(public.0.len() > 700);
    sqlx::query("RESET ROLE")
        .execute(&mut *reader)
        .await
        .unwrap();
    drop(reader);

    // Members (weight 2) win more often than their share of registrants (20 %).
    let members_won = winners
        .iter()
        .filter(|u| u[1..].parse::<u32>().unwrap() % 5 == 0)
        .count();
    assert!(members_won > 200, "members won {members_won} of 700");

    // Each registrant's status: won, or waitlisted at their drawn position.
    for (user, expected) in [
        (winners[0], json!("won")),
        (waitlist[0], json!("waitlisted")),
    ] {
        let (_, body) = get(
            &http,
            &ingest.url(&format!("/v1/tournaments/lucky/registrations/{user}")),
        )
        .await;
        assert_eq!(body["registration"]["status"], expected, "{body}");
    }
    let (_, body) = get(
        &http,
        &ingest.url(&format!(
            "/v1/tournaments/lucky/registrations/{}",
            waitlist[41]
        )),
    )
    .await;
    assert_eq!(body["registration"]["position"], 42);

    // A second trigger draws nothing new.
    let drawer = env.drawer();
    let again = drawer.draw("lucky").await.unwrap();
    assert!(!again.fresh);
    assert_eq!(again.winners, winners);
    let (_, after) = get(&http, &draw_url).await;
    assert_eq!(after, record, "the audit record is unchanged");
    // The operators' job view shows it, behind the admin key.
    let (status, view) = admin
        .send(reqwest::Method::GET, "/admin/v1/jobs", None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert!(
        view["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job_type"]
                .as_str()
                .unwrap_or_default()
                .contains("DrawJob")),
        "{view}"
    );
    let anonymous = AdminClient::new(ingest, None);
    assert_eq!(
        anonymous
            .send(reqwest::Method::GET, "/admin/v1/jobs", None)
            .await
            .0,
        401
    );
    // The draw ran as a job in apalis' Postgres tables, and finished.
    wait_until(
        "the draw job to finish",
        Duration::from_secs(30),
        async || {
            let statuses: Vec<(String,)> = sqlx::query_as("SELECT status::text FROM apalis.jobs")
                .fetch_all(&env.pool)
                .await
                .unwrap();
            if statuses.iter().any(|(s,)| s == "Done") {
                Ok(())
            } else {
                Err(format!("draw jobs: {statuses:?}"))
            }
        },
    )
    .await;
    pipeline.stop().await;
}
