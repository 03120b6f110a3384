//! Outbound webhooks against a receiver that verifies every delivery with Standard Webhooks'
//! reference library: what a lottery, a claim, a release, an upload and a final match tell;
//! a receiver that fails and recovers gets everything once per `webhook-id`; workers killed
//! mid-burst lose nothing; a dead endpoint is disabled without holding up a healthy one and
//! gets what waited once re-enabled; secrets rotate with an overlap; replays; the admin
//! API's bounds.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_schema::webhooks::{EventType, Message};
use tally_tests::notices::{Receiver, register};
use tally_tests::{AdminClient, Pipeline, TestEnv, Writer, get, post, wait_until};

/// A retry schedule for tests: the same steps as in production, in tenths of seconds.
fn quick(config: &mut tally_workers::config::WorkersConfig) {
    config.webhooks.webhook_retry_schedule = vec![0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0];
    config.webhooks.webhook_timeout_ms = 2000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lottery_its_claims_an_upload_and_a_final_match_reach_a_receiver_that_failed_five_times()
{
    let env = TestEnv::new().await;
    // Reminders 20 s before a deadline: 10 s after the draw, once the first winner claimed.
    let pipeline = Pipeline::build(&env)
        .writer(|c| {
            quick(c);
            c.claim_reminder_secs = 20;
        })
        .start()
        .await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    let receiver = Receiver::start().await;
    let (endpoint, secret) = register(&admin, &receiver.url, &[]).await;
    receiver.with(|i| {
        i.secrets = vec![secret.clone()];
        i.fail_next = 5;
    });
    admin
        .create(
            "tournaments",
            json!({"id": "lotto", "capacity": 3, "mode": "lottery", "claim_window_secs": 30,
                   "matches": [{"id": "final", "teams": []}]}),
        )
        .await;
    let http = reqwest::Client::new();
    for u in 1..=8 {
        let url = ingest.url("/v1/tournaments/lotto/registrations");
        let (s, body) = post(&http, &url, &json!({"user": format!("u{u}")})).await;
        assert_eq!(s, 202, "{body}");
    }
    wait_until("u8 to be received", Duration::from_secs(30), async || {
        let url = ingest.url("/v1/tournaments/lotto/registrations/u8");
        get(&http, &url).await.1["registration"]["status"] == "received"
    })
    .await;
    let (s, _) = admin
        .send(
            reqwest::Method::POST,
            "/admin/v1/tournaments/lotto/close",
            None,
        )
        .await;
    assert_eq!(s, 200);

    // The first winner claims at once (before any webhook arrived: the receiver is failing).
    let status = |user: String| {
        let url = ingest.url(&format!("/v1/tournaments/lotto/registrations/{user}"));
        let http = &http;
        async move { get(http, &url).await.1["registration"]["status"].clone() }
    };
    let winners = wait_until("the draw", Duration::from_secs(60), async || {
        let mut won = Vec::new();
        for u in 1..=8 {
            if status(format!("u{u}")).await == "won" {
                won.push(format!("u{u}"));
            }
        }
        if won.len() == 3 {
            Ok(won)
        } else {
            Err(won.len())
        }
    })
    .await;
    let keeper = winners[0].clone();
    let sleeper_set: HashSet<String> = winners[1..].iter().cloned().collect();
    let claim = ingest.url(&format!(
        "/v1/tournaments/lotto/registrations/{keeper}/claim"
    ));
    let (s, body) = post(&http, &claim, &json!(null)).await;
    assert_eq!(s, 202, "{body}");
    // An upload and a final match tell their own.
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::new(300, 200))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let upload = http
        .post(ingest.url("/v1/tournaments/lotto/media?user=u1"))
        .header("content-type", "image/png")
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 202);
    let media: Value = upload.json().await.unwrap();
    let key = env.api_key(Role::Scorekeeper).await;
    let status = http
        .post(ingest.url("/v1/tournaments/lotto/matches/final/status"))
        .bearer_auth(&key)
        .json(&json!({"status": "final"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    // won 3 + waitlisted 5 + claimed + media + match (its only match: the tournament is
    // final too), 2 reminders to the winners who did not claim, then, past their deadline,
    // 2 released + 2 promoted.
    receiver
        .wait_for("every message", 18, Duration::from_secs(120))
        .await;
    assert_eq!(
        receiver.with(|i| i.refused),
        5,
        "the five failures were real"
    );
    let bodies = receiver.bodies();
    let mut won = of_type(&bodies, "registration.won");
    won.sort_by_key(|d| d["user"].as_str().unwrap().to_owned());
    let waitlisted = of_type(&bodies, "registration.waitlisted");
    assert_eq!((won.len(), waitlisted.len()), (3, 5), "{bodies:?}");
    let mut won_users: Vec<&str> = won.iter().map(|d| d["user"].as_str().unwrap()).collect();
    won_users.sort();
    let mut drawn = winners.clone();
    drawn.sort();
    assert_eq!(won_users, drawn);
    assert!(
        won.iter()
            .all(|d| d["deadline"].is_string() && d["tournament"] == "lotto")
    );
    let mut positions: Vec<u64> = waitlisted
        .iter()
        .map(|d| d["position"].as_u64().unwrap())
        .collect();
    positions.sort();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    let first_waiting = waitlisted.iter().find(|d| d["position"] == 1).unwrap()["user"]
        .as_str()
        .unwrap()
        .to_owned();
    let bodies = receiver.bodies();
    let reminded: HashSet<String> = of_type(&bodies, "claim.deadline_approaching")
        .iter()
        .map(|d| {
            assert!(d["deadline"].is_string(), "{d}");
            d["user"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        reminded, sleeper_set,
        "reminded once each, the keeper not at all"
    );
    let claimed = of_type(&bodies, "registration.claimed");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0]["user"], keeper.as_str());
    let released = of_type(&bodies, "registration.released");
    let released_users: HashSet<String> = released
        .iter()
        .map(|d| d["user"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(released_users, sleeper_set);
    let promoted = of_type(&bodies, "registration.promoted");
    assert_eq!(promoted.len(), 2);
    assert!(promoted.iter().any(|d| d["user"] == first_waiting.as_str()));
    assert!(promoted.iter().all(|d| d["deadline"].is_string()));
    let processed = of_type(&bodies, "media.processed");
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0]["media"], media["media"]);
    let thumb = processed[0]["variants"]["thumb"].as_str().unwrap();
    assert_eq!(get(&http, &ingest.url(thumb)).await.0, 200);
    let finals = of_type(&bodies, "match.final");
    assert_eq!(finals, [json!({"tournament": "lotto", "match": "final"})]);
    let ended = of_type(&bodies, "tournament.final");
    assert_eq!(ended, [json!({"tournament": "lotto", "standings": []})]);
    // The promoted claim theirs before their own deadline; each claim is told once.
    for d in &promoted {
        let user = d["user"].as_str().unwrap();
        let claim = ingest.url(&format!("/v1/tournaments/lotto/registrations/{user}/claim"));
        let (s, body) = post(&http, &claim, &json!(null)).await;
        assert_eq!(s, 202, "{body}");
    }
    receiver
        .wait_for("the promoted's claims", 20, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    receiver.with(|i| {
        assert_eq!(i.unverified, 0);
        assert!(
            i.delivered.values().all(|(_, n)| *n == 1),
            "a message delivered twice: {:?}",
            i.delivered
        );
        assert_eq!(i.delivered.len(), 20);
    });

    // The attempt log shows the failures and the endpoint is healthy again.
    let (s, log) = admin
        .send(
            reqwest::Method::GET,
            &format!("/admin/v1/webhooks/{endpoint}/attempts?limit=1000"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let log = log.as_array().unwrap().clone();
    assert_eq!(log.iter().filter(|a| a["status_code"] == 500).count(), 5);
    assert_eq!(log.iter().filter(|a| a["status_code"] == 200).count(), 20);
    assert!(log.iter().all(|a| a["latency_ms"].is_number()));
    let (_, state) = admin
        .send(
            reqwest::Method::GET,
            &format!("/admin/v1/webhooks/{endpoint}"),
            None,
        )
        .await;
    assert_eq!(
        (&state["state"], &state["pending"], &state["failed"]),
        (&json!("enabled"), &json!(0), &json!(0)),
        "{state}"
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_poll_and_a_finished_tournament_tell_their_final_results_once() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env).writer(quick).start().await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    let receiver = Receiver::start().await;
    let (_, secret) = register(&admin, &receiver.url, &["poll.closed", "tournament.final"]).await;
    receiver.with(|i| i.secrets = vec![secret.clone()]);
    let closes_at = chrono::Utc::now() + chrono::Duration::seconds(4);
    admin
        .create(
            "polls",
            json!({"id": "mvp", "options": ["ann", "bob", "cy"], "closes_at": closes_at}),
        )
        .await;
    admin
        .create(
            "tournaments",
            json!({"id": "league", "teams": ["owls", "bats"],
                   "matches": [{"id": "m1", "teams": []}, {"id": "m2", "teams": []}]}),
        )
        .await;
    let http = reqwest::Client::new();
    // Votes on another poll keep coming all along: the endings must not wait for an idle
    // stream.
    let traffic = tally_tests::steady_votes(&admin, ingest).await;
    // bob's voter changes their mind: single choice, the later vote replaces the earlier.
    for (voter, option) in [("v1", "ann"), ("v2", "bob"), ("v3", "ann"), ("v2", "ann")] {
        let url = ingest.url("/v1/polls/mvp/votes");
        let (s, body) = post(&http, &url, &json!({"voter": voter, "options": [option]})).await;
        assert_eq!(s, 202, "{body}");
    }
    let key = env.api_key(Role::Scorekeeper).await;
    for (m, team, points) in [
        ("m1", "owls", 3),
        ("m1", "bats", 1),
        ("m2", "owls", 1),
        ("m2", "bats", 2),
    ] {
        let url = ingest.url("/v1/tournaments/league/scores");
        let body = json!({"match": m, "team": team, "points": points});
        let (s, answer) = post(&http, &url, &body).await;
        assert_eq!(s, 202, "{answer}");
    }
    // One match final is not the end; both are: the standings say so, and refuse scores.
    let standings = ingest.url("/v1/tournaments/league/standings");
    for (m, ended) in [("m1", false), ("m2", true)] {
        let answer = http
            .post(ingest.url(&format!("/v1/tournaments/league/matches/{m}/status")))
            .bearer_auth(&key)
            .json(&json!({"status": "final"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(get(&http, &standings).await.1["final"], ended);
    }
    let url = ingest.url("/v1/tournaments/league/scores");
    let (s, refused) = post(
        &http,
        &url,
        &json!({"match": "m2", "team": "owls", "points": 9}),
    )
    .await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (409, Some("match_final"))
    );

    receiver
        .wait_for(
            "the poll's and the tournament's ends",
            2,
            Duration::from_secs(60),
        )
        .await;
    let bodies = receiver.bodies();
    let poll = of_type(&bodies, "poll.closed");
    assert_eq!(
        poll,
        [json!({"poll": "mvp", "total_votes": 3, "options": [
            {"option": "ann", "votes": 3}, {"option": "bob", "votes": 0},
            {"option": "cy", "votes": 0}]})]
    );
    let fin = of_type(&bodies, "tournament.final");
    assert_eq!(
        fin,
        [json!({"tournament": "league", "standings": [
            {"rank": 1, "id": "owls", "score": 4.0}, {"rank": 2, "id": "bats", "score": 3.0}]})]
    );
    // Each is told once: later ticks find them recorded.
    tokio::time::sleep(Duration::from_secs(4)).await;
    receiver.with(|i| {
        assert_eq!(i.unverified, 0);
        assert_eq!(i.delivered.len(), 2);
    });
    traffic.abort();
    pipeline.stop().await;
}

fn of_type(bodies: &HashMap<String, Value>, kind: &str) -> Vec<Value> {
    bodies
        .values()
        .filter(|b| b["type"] == kind)
        .map(|b| b["data"].clone())
        .collect()
}

/// `count` match.final messages, recorded as the match route would.
async fn record_burst(env: &TestEnv, prefix: &str, count: usize) -> HashSet<String> {
    let tournament = "cup".try_into().unwrap();
    let messages: Vec<Message> = (0..count)
        .map(|i| {
            let m = format!("{prefix}{i}").try_into().unwrap();
            Message::match_final(&tournament, &m, chrono::Utc::now())
        })
        .collect();
    for chunk in messages.chunks(1000) {
        let mut conn = env.pool.acquire().await.unwrap();
        tally_schema::webhooks::record(chunk, &mut conn)
            .await
            .unwrap();
    }
    messages.into_iter().map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_told_is_deleted_past_the_retention_and_what_still_waits_is_kept() {
    let env = TestEnv::new().await;
    let pipeline = Pipeline::build(&env)
        .writer(|c| {
            quick(c);
            c.webhooks.webhook_retention_secs = 2;
            c.webhooks.webhook_prune_every_secs = 1;
        })
        .start()
        .await;
    let admin = AdminClient::new(&pipeline.ingest, Some(env.api_key(Role::Admin).await));
    let receiver = Receiver::start().await;
    let (_, secret) = register(&admin, &receiver.url, &[]).await;
    receiver.with(|i| i.secrets = vec![secret]);
    // A second endpoint, disabled: its deliveries wait, and keep their messages.
    let (held, _) = register(&admin, "http://127.0.0.1:9/hook", &[]).await;
    let path = format!("/admin/v1/webhooks/{held}/disable");
    let (s, _) = admin.send(reqwest::Method::POST, &path, None).await;
    assert_eq!(s, 200);
    let ids = record_burst(&env, "kept", 20).await;
    receiver
        .wait_for("the burst", 20, Duration::from_secs(60))
        .await;
    // An email sent long ago.
    sqlx::query(
        "INSERT INTO email_outbox (id, tournament, user_id, event_type, status, created_at)
         VALUES ('msg_old', 'cup', 'ann', 'registration.won', 'sent', now() - interval '1 hour')",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    let count = |sql: &'static str| {
        let pool = env.pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            n
        }
    };
    wait_until(
        "the attempts and the old email deleted",
        Duration::from_secs(30),
        async || {
            let left = (
                count("SELECT count(*) FROM webhook_attempts").await,
                count("SELECT count(*) FROM email_outbox").await,
            );
            if left == (0, 0) {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
    // Every message still waits for the disabled endpoint: all kept.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count("SELECT count(*) FROM webhook_messages").await, 20);
    // Deleting that endpoint leaves them finished: they go, with their deliveries.
    let (s, _) = admin
        .send(
            reqwest::Method::DELETE,
            &format!("/admin/v1/webhooks/{held}"),
            None,
        )
        .await;
    assert!(s == 200 || s == 204, "{s}");
    wait_until(
        "the messages deleted",
        Duration::from_secs(30),
        async || {
            let left = (
                count("SELECT count(*) FROM webhook_messages").await,
                count("SELECT count(*) FROM webhook_deliveries").await,
            );
            if left == (0, 0) {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
    assert_eq!(ids.len(), 20);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_during_a_delivery_burst_lose_no_webhook() {
    let env = TestEnv::new().await;
    let ingest = tally_tests::Ingest::start(env.ingest_config()).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    let receiver = Receiver::start().await;
    let (_, secret) = register(&admin, &receiver.url, &[EventType::MatchFinal.as_str()]).await;
    receiver.with(|i| {
        i.secrets = vec![secret];
        i.delay = Duration::from_millis(5);
    });
    let expected = record_burst(&env, "m", 3000).await;
    let mut config = env.workers_config();
    quick(&mut config);
    config.webhooks.webhook_lease_secs = 3;
    // Two kills, each while deliveries are in flight.
    for (round, at) in [(1, 300), (2, 1200)] {
        let workers = Writer::start(config.clone()).await;
        receiver
            .wait_for(&format!("{at} deliveries"), at, Duration::from_secs(60))
            .await;
        workers.crash().await;
        let seen = receiver.with(|i| i.delivered.len());
        assert!(seen < expected.len(), "round {round}: the burst was over");
    }
    let workers = Writer::start(config.clone()).await;
    receiver
        .wait_for("every delivery", expected.len(), Duration::from_secs(120))
        .await;
    // Deliveries sent by a killed worker are sent again once their lease runs out, and then
    // recorded: none stays behind.
    let unsettled = "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'";
    wait_until(
        "every delivery recorded",
        Duration::from_secs(60),
        async || {
            let (n,): (i64,) = sqlx::query_as(unsettled)
                .fetch_one(&env.pool)
                .await
                .unwrap();
            if n == 0 { Ok(()) } else { Err(n) }
        },
    )
    .await;
    let (got, repeats) = receiver.with(|i| {
        let got: HashSet<String> = i.delivered.keys().cloned().collect();
        let repeats: usize = i.delivered.values().map(|(_, n)| n - 1).sum();
        (got, repeats)
    });
    assert_eq!(got, expected, "lost or made up");
    // At least once: what a killed worker had in flight is sent again, with the same id; no
    // more than the two kills' requests in flight.
    assert!(repeats <= 2 * 64 * 10, "{repeats} repeats");
    eprintln!("{repeats} deliveries repeated after the kills");
    workers.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_disabled_without_holding_up_another_and_gets_its_backlog_once_enabled()
{
    let env = TestEnv::new().await;
    let ingest = tally_tests::Ingest::start(env.ingest_config()).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    let (dead, healthy) = (Receiver::start().await, Receiver::start().await);
    let (dead_id, dead_secret) = register(&admin, &dead.url, &[]).await;
    let (healthy_id, healthy_secret) = register(&admin, &healthy.url, &[]).await;
    dead.with(|i| {
        i.secrets = vec![dead_secret];
        i.hang = true;
    });
    healthy.with(|i| i.secrets = vec![healthy_secret.clone()]);
    let mut config = env.workers_config();
    quick(&mut config);
    config.webhooks.webhook_timeout_ms = 1000;
    config.webhooks.webhook_disable_after_secs = 3;
    let workers = Writer::start(config.clone()).await;
    let expected = record_burst(&env, "a", 200).await;

    // The healthy endpoint gets everything while the dead one times out, one probe at a time.
    healthy
        .wait_for("the healthy endpoint's 200", 200, Duration::from_secs(30))
        .await;
    let endpoint = |id: &str| {
        let path = format!("/admin/v1/webhooks/{id}");
        let admin = &admin;
        async move { admin.send(reqwest::Method::GET, &path, None).await.1 }
    };
    let disabled = wait_until(
        "the dead endpoint disabled",
        Duration::from_secs(30),
        async || {
            let e = endpoint(&dead_id).await;
            if e["state"] == "disabled" {
                Ok(e)
            } else {
                Err(e)
            }
        },
    )
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .starts_with("failing since")
    );
    assert_eq!(disabled["pending"], 200, "its deliveries wait: {disabled}");
    let (_, log) = admin
        .send(
            reqwest::Method::GET,
            &format!("/admin/v1/webhooks/{dead_id}/attempts"),
            None,
        )
        .await;
    let log = log.as_array().unwrap();
    // A first contact of at most a job's requests per job (two jobs of 100 here), then one
    // probe at a time: never the backlog.
    assert!(
        !log.is_empty() && log.len() <= 30,
        "probes, not the backlog: {}",
        log.len()
    );
    assert!(
        log.iter()
            .all(|a| a["error"] == "timed out" && a["status_code"].is_null())
    );

    // Fixed and re-enabled: the backlog arrives, each message once.
    dead.with(|i| i.hang = false);
    let (s, e) = admin
        .send(
            reqwest::Method::POST,
            &format!("/admin/v1/webhooks/{dead_id}/enable"),
            None,
        )
        .await;
    assert_eq!((s, &e["state"]), (200, &json!("enabled")), "{e}");
    dead.wait_for("the backlog", 200, Duration::from_secs(60))
        .await;
    let got: HashSet<String> = dead.with(|i| i.delivered.keys().cloned().collect());
    assert_eq!(got, expected);

    // Rotation: during the overlap every delivery verifies with the old and the new secret.
    let (s, rotated) = admin
        .send(
            reqwest::Method::POST,
            &format!("/admin/v1/webhooks/{healthy_id}/rotate"),
            Some(&json!({"overlap_secs": 3600})),
        )
        .await;
    assert_eq!(s, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, healthy_secret);
    assert!(rotated["endpoint"]["previous_secret_until"].is_string());
    healthy.with(|i| i.secrets = vec![healthy_secret.clone(), new_secret.clone()]);
    let after = record_burst(&env, "b", 5).await;
    healthy
        .wait_for(
            "the deliveries after rotating",
            205,
            Duration::from_secs(30),
        )
        .await;
    let signature = healthy.with(|i| i.signature.clone());
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    // Without an overlap only the new one signs.
    admin
        .send(
            reqwest::Method::POST,
            &format!("/admin/v1/webhooks/{healthy_id}/rotate"),
            Some(&json!({"overlap_secs": 0})),
        )
        .await;

    // Replay: one message again, with its id; then everything since a time, delivered too.
    let one = after.iter().next().unwrap().clone();
    let (s, _) = admin
        .send(
            reqwest::Method::POST,
            &format!("/admin/v1/webhooks/{dead_id}/replay"),
            Some(&json!({"message": one})),
        )
        .await;
    assert_eq!(s, 202);
    wait_until(
        "the replayed message",
        Duration::from_secs(30),
        async || dead.with(|i| i.delivered.get(&one).map(|(_, n)| *n)) == Some(2),
    )
    .await;
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let (s, replay) = admin
        .send(
            reqwest::Method::POST,
            &format!("/admin/v1/webhooks/{dead_id}/replay"),
            Some(&json!({"since": since, "include_delivered": true})),
        )
        .await;
    assert_eq!((s, &replay["replayed"]), (202, &json!(205)), "{replay}");
    wait_until("everything replayed", Duration::from_secs(60), async || {
        dead.with(|i| i.order.len()) >= 200 + 1 + 205
    })
    .await;
    workers.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_names_what_is_wrong_and_bounds_the_endpoints() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.webhook_max_endpoints = 2;
    let ingest = tally_tests::Ingest::start(config).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    let viewer = AdminClient::new(&ingest, Some(env.api_key(Role::Viewer).await));
    let stranger = AdminClient::new(&ingest, None);
    let create = |body: Value| {
        let admin = &admin;
        async move {
            admin
                .send(reqwest::Method::POST, "/admin/v1/webhooks", Some(&body))
                .await
        }
    };
    for (body, field) in [
        (json!({"url": "ftp://example.org/"}), "url"),
        (json!({"url": "http://user:pw@example.org/"}), "url"),
        (
            json!({"url": "http://example.org/", "event_types": ["poll.sideways"]}),
            "event_types[0]",
        ),
        (
            json!({"url": "http://example.org/", "secret": "whsec_mine"}),
            "secret",
        ),
        (
            json!({"url": "http://example.org/", "description": "x".repeat(300)}),
            "description",
        ),
    ] {
        let (s, answer) = create(body.clone()).await;
        assert_eq!(
            (s, answer["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}: {answer}"
        );
    }
    let body = json!({"url": "http://127.0.0.1:9/hook"});
    assert_eq!(
        stranger
            .send(reqwest::Method::POST, "/admin/v1/webhooks", Some(&body))
            .await
            .0,
        401
    );
    assert_eq!(
        viewer
            .send(reqwest::Method::POST, "/admin/v1/webhooks", Some(&body))
            .await
            .0,
        403
    );
    let (s, first) = create(body.clone()).await;
    assert_eq!(s, 201);
    let secret = first["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    standardwebhooks::Webhook::new(secret).expect("a secret the reference library takes");
    // Listed for viewers, never with a secret.
    let (s, listed) = viewer
        .send(reqwest::Method::GET, "/admin/v1/webhooks", None)
        .await;
    assert_eq!(s, 200);
    assert!(!listed.to_string().contains("whsec_"), "{listed}");
    assert_eq!(create(body.clone()).await.0, 201);
    let (s, refused) = create(body.clone()).await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (409, Some("too_many_endpoints"))
    );
    let id = first["endpoint"]["id"].as_str().unwrap();
    for (method, path, body, status, field) in [
        (
            reqwest::Method::GET,
            "/admin/v1/webhooks/ep_nope".to_owned(),
            None,
            404,
            "endpoint",
        ),
        (
            reqwest::Method::POST,
            format!("/admin/v1/webhooks/{id}/replay"),
            Some(json!({})),
            422,
            "message",
        ),
        (
            reqwest::Method::POST,
            format!("/admin/v1/webhooks/{id}/replay"),
            Some(json!({"message": format!("msg_{}", "0".repeat(32))})),
            404,
            "message",
        ),
        (
            reqwest::Method::POST,
            format!("/admin/v1/webhooks/{id}/rotate"),
            Some(json!({"overlap_secs": 999_999_999})),
            422,
            "overlap_secs",
        ),
        (
            reqwest::Method::GET,
            format!("/admin/v1/webhooks/{id}/attempts?limit=0"),
            None,
            422,
            "limit",
        ),
    ] {
        let (s, answer) = admin.send(method, &path, body.as_ref()).await;
        assert_eq!(
            (s, answer["error"]["field"].as_str()),
            (status, Some(field)),
            "{path}: {answer}"
        );
    }
    let (s, _) = admin
        .send(
            reqwest::Method::DELETE,
            &format!("/admin/v1/webhooks/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        admin
            .send(
                reqwest::Method::GET,
                &format!("/admin/v1/webhooks/{id}"),
                None
            )
            .await
            .0,
        404
    );
    assert_eq!(create(body).await.0, 201, "room again after a delete");
    ingest.stop().await;
}
