//! Winners' email against a real SMTP server (PyPI's aiosmtpd, started by the test, writing a
//! maildir): the winners and the registrant promoted to a released place get their claim
//! link and deadline in their own time zone; a server that is down at first gets every email
//! once it is up; only a site key (or the registrant's own token) gives an address, and the
//! address never reaches a public record.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tally_ingest::auth::Role;
use tally_tests::{AdminClient, Pipeline, TestEnv, get, setting, wait_until};

/// aiosmtpd on loopback, storing what it receives in a maildir; stopped when dropped.
struct SmtpServer {
    child: std::process::Child,
    maildir: PathBuf,
}

impl SmtpServer {
    fn start(port: u16, maildir: &Path) -> Self {
        let python = setting("TALLY_PYTHON", "python3");
        let child = std::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("aiosmtpd (deploy/tools.sh installs it; TALLY_PYTHON names its Python)");
        Self {
            child,
            maildir: maildir.to_owned(),
        }
    }

    /// Every message received, raw.
    fn messages(&self) -> Vec<String> {
        let mut all = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                all.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        all
    }

    async fn wait_for(&self, what: &str, count: usize) -> Vec<String> {
        wait_until(what, Duration::from_secs(90), async || {
            let got = self.messages();
            if got.len() >= count {
                Ok(got)
            } else {
                Err(got.len())
            }
        })
        .await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
        let from = mail.lines().find(|l| l.starts_with("From: ")).unwrap_or_default();
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
