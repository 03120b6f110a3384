//! Winners' email against a real SMTP server (PyPI's aiosmtpd, started by the test, writing a
//! maildir): the winners and the registrant promoted to a released place get their claim
//! link and deadline in their own time zone; a server that is down at first gets every email
//! once it is up; only a site key (or the registrant's own token) gives an address, and the
//! address never reaches a public record.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::notices::{SmtpServer, free_port};
use tally_tests::{AdminClient, Pipeline, TestEnv, get, wait_until};

/// The message sent to `address`, if any.
fn to<'a>(messages: &'a [String], address: &str) -> Vec<&'a String> {
    messages
        .iter()
        .filter(|m| {
            m.lines()
                .any(|l| l.starts_with("To: ") && l.contains(address))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn winners_and_the_promoted_get_their_claim_link_and_deadline_in_their_own_time_zone() {
    let env = TestEnv::new().await;
    let port = free_port();
    let pipeline = Pipeline::build(&env)
        .writer(|c| {
            c.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
            c.email.email_retry_schedule = vec![0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5];
            c.email.email_timeout_ms = 2000;
        })
        .start()
        .await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    let site = env.api_key(Role::Site).await;
    admin
        .create(
            "tournaments",
            json!({"id": "mail", "title": "The Cup", "capacity": 2, "mode": "lottery",
                   "claim_window_secs": 8,
                   "email": {"from": "The Cup <noreply@example.org>",
                             "claim_url": "https://example.org/claim/{tournament}/{user}"}}),
        )
        .await;
    let http = reqwest::Client::new();
    let register = |body: Value, key: Option<&str>| {
        let mut request = http
            .post(ingest.url("/v1/tournaments/mail/registrations"))
            .json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        tally_tests::read(request)
    };
    let zones = [
        ("u1", Some("Europe/Paris")),
        ("u2", Some("America/New_York")),
        ("u3", None),
        ("u4", Some("Asia/Tokyo")),
    ];
    for (user, zone) in zones {
        let mut body = json!({"user": user, "email": format!("{user}@example.org")});
        if let Some(zone) = zone {
            body["time_zone"] = zone.into();
        }
        let (s, answer) = register(body, Some(&site)).await;
        assert_eq!(s, 202, "{answer}");
    }
    // u5 gives no address: drawn or not, no email.
    assert_eq!(register(json!({"user": "u5"}), Some(&site)).await.0, 202);
    // Nobody but a site key names an address; a refused registration stores nothing.
    let (s, refused) = register(json!({"user": "u6", "email": "u6@example.org"}), None).await;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (403, Some("address_not_vouched"))
    );
    let batch = json!({"events": [{"type": "registration", "tournament": "mail", "user": "u7",
                                   "email": "u7@example.org"}]});
    let (s, answer) = tally_tests::read(
        http.post(ingest.url("/v1/events"))
            .bearer_auth(&site)
            .json(&batch),
    )
    .await;
    assert_eq!(s, 207, "{answer}");
    assert_eq!(answer["results"][0]["error"]["field"], "email", "{answer}");
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM registrant_contacts")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 4);

    wait_until("u5 to be received", Duration::from_secs(30), async || {
        let url = ingest.url("/v1/tournaments/mail/registrations/u5");
        get(&http, &url).await.1["registration"]["status"] == "received"
    })
    .await;
    // The SMTP server is down when the draw is made: the emails wait and retry.
    let (s, _) = admin
        .send(
            reqwest::Method::POST,
            "/admin/v1/tournaments/mail/close",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let status = |user: &str| {
        let url = ingest.url(&format!("/v1/tournaments/mail/registrations/{user}"));
        let http = &http;
        async move { get(http, &url).await.1["registration"].clone() }
    };
    let winners = wait_until("the draw", Duration::from_secs(60), async || {
        let mut won = Vec::new();
        for (user, _) in zones.iter().chain([("u5", None)].iter()) {
            let s = status(user).await;
            if s["status"] == "won" {
                won.push((user.to_string(), s["deadline"].as_str().unwrap().to_owned()));
            }
        }
        if won.len() == 2 {
            Ok(won)
        } else {
            Err(won.len())
        }
    })
    .await;
    let failing = "SELECT count(*) FROM email_outbox WHERE attempts > 0 AND status = 'pending'";
    let mailed: Vec<&(String, String)> = winners.iter().filter(|(u, _)| u != "u5").collect();
    if !mailed.is_empty() {
        wait_until(
            "failed attempts while the server is down",
            Duration::from_secs(30),
            async || {
                let (n,): (i64,) = sqlx::query_as(failing).fetch_one(&env.pool).await.unwrap();
                n > 0
            },
        )
        .await;
    }
    let dir = tempfile_dir();
    let server = SmtpServer::start(port, &dir.join("maildir"));
    let messages = server.wait_for("the winners' email", mailed.len()).await;
    for (user, deadline) in &mailed {
        let mine = to(&messages, &format!("{user}@example.org"));
        assert_eq!(mine.len(), 1, "{user}: {messages:?}");
        let mail = mine[0];
        let zone = zones.iter().find(|(u, _)| u == user).unwrap().1;
        let when = tally_schema::email::local_time(deadline.parse().unwrap(), zone);
        assert!(mail.contains(&when), "{user} should read {when}: {mail}");
        assert!(mail.contains(&format!("https://example.org/claim/mail/{user}")));
        assert!(mail.contains("Subject: Your place in The Cup: claim it"));
        let from = mail
            .lines()
            .find(|l| l.starts_with("From: "))
            .unwrap_or_default();
        assert!(
            from.contains("The Cup") && from.contains("<noreply@example.org>"),
            "{from}"
        );
        assert!(mail.contains("text/html"));
        assert!(
            mail.contains("@tally>"),
            "a Message-ID from the outbox: {mail}"
        );
    }

    // One winner claims; the other lets the deadline pass: the next on the waitlist is
    // promoted and mailed a new deadline.
    let (keeper, sleeper) = (&winners[0].0, &winners[1].0);
    let claim = ingest.url(&format!(
        "/v1/tournaments/mail/registrations/{keeper}/claim"
    ));
    let (s, body) = tally_tests::post(&http, &claim, &json!(null)).await;
    assert_eq!(s, 202, "{body}");
    let promoted = wait_until("a promotion", Duration::from_secs(60), async || {
        for (user, _) in zones.iter().chain([("u5", None)].iter()) {
            let s = status(user).await;
            if s["status"] == "won" && s["promoted"] == true {
                return Ok((user.to_string(), s["deadline"].as_str().unwrap().to_owned()));
            }
        }
        Err(status(sleeper).await)
    })
    .await;
    let (user, deadline) = &promoted;
    if user != "u5" {
        let address = format!("{user}@example.org");
        let mail = wait_until(
            "the promoted's email",
            Duration::from_secs(60),
            async || {
                let messages = server.messages();
                let mine: Vec<String> = to(&messages, &address).into_iter().cloned().collect();
                mine.into_iter()
                    .find(|m| m.contains("came free"))
                    .ok_or(messages.len())
            },
        )
        .await;
        let zone = zones.iter().find(|(u, _)| u == user).unwrap().1;
        let when = tally_schema::email::local_time(deadline.parse().unwrap(), zone);
        assert!(mail.contains(&when), "{user} should read {when}: {mail}");
    }

    // The addresses stay private: not in the public draw record, not in a status read.
    let (_, record) = get(&http, &ingest.url("/v1/tournaments/mail/draw")).await;
    assert!(!record.to_string().contains("example.org"), "{record}");
    assert!(!status("u1").await.to_string().contains("example.org"));
    let (sent, failed): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed') FROM email_outbox",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(failed, 0);
    assert!(sent >= mailed.len() as i64);
    drop(server);
    pipeline.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-smtp-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// p50, p99 and the largest of `values` (seconds), as a line.
fn spread(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:.1} s, p99 {:.1} s, max {:.1} s (n = {})",
        at(0.5),
        at(0.99),
        at(1.0),
        values.len()
    )
}

/// Everyone in a draw of 10,000 registrants for 1,000 places is told once: every webhook
/// (won and waitlisted) arrives once and verifies, and every winner, and only a winner, gets
/// one email. It also prints how long after the draw they arrived (p50/p99/max), the figures
/// in docs/benchmarks.md (`cargo test -p tally-tests --test email -- --nocapture`); the
/// times are reported, not checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_in_a_10000_registrant_draw_is_told_once() {
    use futures::StreamExt;
    let env = TestEnv::new().await;
    let port = free_port();
    let dir = tempfile_dir();
    let server = SmtpServer::start(port, &dir.join("maildir"));
    let pipeline = Pipeline::build(&env)
        .ingest(|c| c.rate_limits = vec!["registration:ip=1000000/minute".parse().unwrap()])
        .writer(|c| c.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}")))
        .start()
        .await;
    let ingest = &pipeline.ingest;
    let admin = AdminClient::new(ingest, Some(env.api_key(Role::Admin).await));
    let site = env.api_key(Role::Site).await;
    let receiver = tally_tests::notices::Receiver::start().await;
    let body = json!({"url": receiver.url, "event_types": ["registration.won", "registration.waitlisted"]});
    let (_, created) = admin
        .send(reqwest::Method::POST, "/admin/v1/webhooks", Some(&body))
        .await;
    receiver.with(|i| i.secrets = vec![created["secret"].as_str().unwrap().to_owned()]);
    admin
        .create(
            "tournaments",
            json!({"id": "big", "capacity": 1000, "mode": "lottery",
                   "email": {"from": "noreply@example.org",
                             "claim_url": "https://example.org/claim/{tournament}/{user}"}}),
        )
        .await;
    let http = reqwest::Client::new();
    let registered = std::time::Instant::now();
    futures::stream::iter(0..10_000)
        .map(|i| {
            let request = http
                .post(ingest.url("/v1/tournaments/big/registrations"))
                .bearer_auth(&site)
                .json(
                    &json!({"user": format!("r{i}"), "email": format!("r{i}@example.org"),
                              "time_zone": "Europe/Paris"}),
                );
            async move { assert_eq!(tally_tests::read(request).await.0, 202) }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let registering = registered.elapsed();
    admin
        .send(
            reqwest::Method::POST,
            "/admin/v1/tournaments/big/close",
            None,
        )
        .await;
    let draw = ingest.url("/v1/tournaments/big/draw");
    let record = wait_until("the draw", Duration::from_secs(300), async || {
        let (_, record) = get(&http, &draw).await;
        if record["status"] == "drawn" {
            Ok(record)
        } else {
            Err(record["status"].clone())
        }
    })
    .await;
    let drawn_at: chrono::DateTime<chrono::Utc> =
        record["drawn_at"].as_str().unwrap().parse().unwrap();
    receiver
        .wait_for("10,000 webhooks", 10_000, Duration::from_secs(600))
        .await;
    let mails = server.wait_for("1,000 emails", 1000).await;
    // Once each: no repeat has come in the meantime, every delivery verified.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let winners_told: std::collections::HashSet<String> = receiver.with(|i| {
        assert_eq!(i.unverified, 0);
        assert_eq!(i.delivered.len(), 10_000);
        assert!(
            i.delivered.values().all(|(_, n)| *n == 1),
            "a webhook came twice"
        );
        i.delivered
            .values()
            .filter(|(body, _)| body["type"] == "registration.won")
            .map(|(body, _)| format!("{}@example.org", body["data"]["user"].as_str().unwrap()))
            .collect()
    });
    assert_eq!(winners_told.len(), 1000);
    let mails = server.messages().len().max(mails.len());
    assert_eq!(mails, 1000, "one email per winner");
    let mailed: std::collections::HashSet<String> = server
        .messages()
        .iter()
        .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("To: ")))
        .map(|to| to.trim_matches(|c| c == '<' || c == '>').to_owned())
        .collect();
    assert_eq!(mailed, winners_told, "every winner and only winners mailed");
    let since = |at: chrono::DateTime<chrono::Utc>| (at - drawn_at).as_seconds_f64();
    let (mut winners, mut all) = receiver.with(|i| {
        let mut winners = Vec::new();
        let mut all = Vec::new();
        for (id, at) in &i.arrived {
            all.push(since(*at));
            if i.delivered[id].0["type"] == "registration.won" {
                winners.push(since(*at));
            }
        }
        (winners, all)
    });
    let mut emails: Vec<f64> = ["new", "cur"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(dir.join("maildir").join(sub))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|e| {
            let modified = e.metadata().unwrap().modified().unwrap();
            since(chrono::DateTime::<chrono::Utc>::from(modified))
        })
        .collect();
    println!(
        "10,000 registrations through the single route (site key, address stored): {registering:.1?}"
    );
    println!(
        "after the draw, winners' webhooks:  {}",
        spread(&mut winners)
    );
    println!("after the draw, all 10,000 webhooks: {}", spread(&mut all));
    println!(
        "after the draw, winners' emails:    {}",
        spread(&mut emails)
    );
    drop(server);
    pipeline.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Workers killed twice while 1,500 winners' emails go out lose none: each registrant gets
/// at least one, every outbox row ends `sent`, and an email sent again (a killed worker's,
/// once its lease ran out) is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_during_an_email_burst_lose_no_email() {
    use tally_schema::event::{RegistrationStatus, StatusChange};
    use tally_schema::webhooks::Message;
    const COUNT: usize = 1500;
    let env = TestEnv::new().await;
    let ingest = tally_tests::Ingest::start(env.ingest_config()).await;
    let admin = AdminClient::new(&ingest, Some(env.api_key(Role::Admin).await));
    admin
        .create(
            "tournaments",
            json!({"id": "burst", "mode": "lottery", "capacity": COUNT,
                   "email": {"from": "noreply@example.org",
                             "claim_url": "https://example.org/claim/{tournament}/{user}"}}),
        )
        .await;
    // The addresses ingest would have stored, and the draw's `registration.won` messages as
    // the writer records them (each with its email).
    let users: Vec<String> = (0..COUNT).map(|i| format!("w{i}")).collect();
    sqlx::query(
        "INSERT INTO registrant_contacts (tournament, user_id, email)
         SELECT 'burst', u, u || '@example.org' FROM UNNEST($1::text[]) AS u",
    )
    .bind(&users)
    .execute(&env.pool)
    .await
    .unwrap();
    let deadline = chrono::Utc::now() + chrono::Duration::days(2);
    let messages: Vec<Message> = users
        .iter()
        .flat_map(|u| {
            let won = RegistrationStatus {
                tournament: "burst".try_into().unwrap(),
                user: u.as_str().try_into().unwrap(),
                status: StatusChange::Won,
                position: None,
                deadline: Some(deadline),
                promoted: None,
            };
            Message::from_status(&won, won.event_id("drawn"), chrono::Utc::now())
        })
        .collect();
    for chunk in messages.chunks(500) {
        let mut conn = env.pool.acquire().await.unwrap();
        tally_schema::webhooks::record(chunk, &mut conn)
            .await
            .unwrap();
    }
    let port = free_port();
    let dir = tempfile_dir();
    let server = SmtpServer::start(port, &dir.join("maildir"));
    let mut config = env.workers_config();
    config.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    config.email.email_retry_schedule = vec![0.5; 8];
    config.email.email_lease_secs = 3;
    // Two kills, each while emails are going out.
    for (round, at) in [(1, 150), (2, 600)] {
        let workers = tally_tests::Writer::start(config.clone()).await;
        server.wait_for(&format!("{at} emails"), at).await;
        workers.crash().await;
        assert!(
            server.messages().len() < COUNT,
            "round {round}: the burst was over"
        );
    }
    let workers = tally_tests::Writer::start(config.clone()).await;
    let unsent = "SELECT count(*) FROM email_outbox WHERE status <> 'sent'";
    wait_until("every email sent", Duration::from_secs(180), async || {
        let (n,): (i64,) = sqlx::query_as(unsent).fetch_one(&env.pool).await.unwrap();
        if n == 0 { Ok(()) } else { Err(n) }
    })
    .await;
    let mails = server.messages();
    let mut per_user: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for user in &users {
        per_user.insert(
            user.as_str(),
            to(&mails, &format!("{user}@example.org")).len(),
        );
    }
    let lost: Vec<&&str> = per_user
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(u, _)| u)
        .collect();
    assert!(lost.is_empty(), "no email for {lost:?}");
    let repeats: usize = per_user.values().map(|n| n - 1).sum();
    assert_eq!(mails.len(), COUNT + repeats, "an email to no registrant");
    eprintln!("{repeats} emails sent again after the kills");
    workers.stop().await;
    ingest.stop().await;
}
