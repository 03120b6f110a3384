//! Receivers of what Tally tells: a webhook receiver that verifies every delivery with
//! Standard Webhooks' reference library ([`Receiver`]), and a real SMTP server
//! ([`SmtpServer`], PyPI's aiosmtpd writing a maildir).

use crate::{AdminClient, setting, wait_until};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a receiver does and saw.
#[derive(Default)]
pub struct Inbox {
    /// A delivery must verify with each of these.
    pub secrets: Vec<String>,
    /// Answer 500 to this many more verified deliveries.
    pub fail_next: usize,
    /// Never answer.
    pub hang: bool,
    /// Wait this long before answering.
    pub delay: Duration,
    /// By `webhook-id`: the body and how many times it was answered 2xx.
    pub delivered: HashMap<String, (Value, usize)>,
    /// Deliveries answered 2xx, in order of arrival.
    pub order: Vec<String>,
    pub refused: usize,
    pub unverified: usize,
    /// The last `webhook-signature` seen.
    pub signature: String,
    /// When each `webhook-id` was first answered 2xx.
    pub arrived: HashMap<String, chrono::DateTime<chrono::Utc>>,
}

pub struct Receiver {
    pub url: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inbox }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Inbox) -> R) -> R {
        f(&mut self.inbox.lock().unwrap())
    }

    /// The bodies delivered, by id.
    pub fn bodies(&self) -> HashMap<String, Value> {
        self.with(|i| {
            i.delivered
                .iter()
                .map(|(id, (body, _))| (id.clone(), body.clone()))
                .collect()
        })
    }

    pub async fn wait_for(&self, what: &str, count: usize, within: Duration) {
        wait_until(what, within, async || {
            let n = self.with(|i| i.delivered.len());
            if n >= count { Ok(()) } else { Err(n) }
        })
        .await;
    }
}

async fn receive(
    State(inbox): State<Arc<Mutex<Inbox>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let (hang, delay) = {
        let i = inbox.lock().unwrap();
        (i.hang, i.delay)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    tokio::time::sleep(delay).await;
    let mut i = inbox.lock().unwrap();
    let verified = !i.secrets.is_empty()
        && i.secrets.iter().all(|s| {
            let verifier = standardwebhooks::Webhook::new(s).unwrap();
            verifier.verify(&body, &headers).is_ok()
        });
    if !verified {
        i.unverified += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if i.fail_next > 0 {
        i.fail_next -= 1;
        i.refused += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    i.signature = headers["webhook-signature"].to_str().unwrap().to_owned();
    let value: Value = serde_json::from_slice(&body).unwrap();
    i.delivered.entry(id.clone()).or_insert((value, 0)).1 += 1;
    i.arrived.entry(id.clone()).or_insert_with(chrono::Utc::now);
    i.order.push(id);
    StatusCode::OK
}

/// Registers `url` for `types` (none: all); answers the endpoint id and its secret.
pub async fn register(admin: &AdminClient, url: &str, types: &[&str]) -> (String, String) {
    let body = json!({"url": url, "event_types": types, "description": "test receiver"});
    let (status, answer) = admin
        .send(reqwest::Method::POST, "/admin/v1/webhooks", Some(&body))
        .await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["endpoint"]["id"].as_str().unwrap().to_owned();
    (id, answer["secret"].as_str().unwrap().to_owned())
}

/// aiosmtpd on loopback, storing what it receives in a maildir; stopped when dropped.
pub struct SmtpServer {
    child: std::process::Child,
    maildir: PathBuf,
}

impl SmtpServer {
    pub fn start(port: u16, maildir: &Path) -> Self {
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
    pub fn messages(&self) -> Vec<String> {
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

    pub async fn wait_for(&self, what: &str, count: usize) -> Vec<String> {
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

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
