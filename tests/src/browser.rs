//! A headless Chromium driven over the DevTools protocol: open a page, evaluate JavaScript in
//! it. Enough to watch a live page change without a browser-automation framework.

use futures::{SinkExt, StreamExt};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Browser {
    _child: tokio::process::Child,
    socket: Socket,
    next_id: u64,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Starts Chromium (`TALLY_CHROMIUM` or `chromium` on the PATH) showing `url`.
    pub async fn open(url: &str) -> Self {
        let binary = std::env::var("TALLY_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = std::env::temp_dir().join(format!("tally-chromium-{}", uuid::Uuid::now_v7()));
        let mut child = tokio::process::Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (deploy/test.sh installs chromium): {e}")
            });
        // Chromium prints the DevTools address on stderr.
        let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("Chromium announced its DevTools port");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let targets: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("DevTools answers")
            .json()
            .await
            .expect("target list");
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(page)
            .await
            .expect("DevTools socket");
        Self {
            _child: child,
            socket,
            next_id: 1,
            profile,
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    pub async fn eval(&mut self, expression: &str) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let call = serde_json::json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "returnByValue": true },
        });
        self.socket
            .send(Message::text(call.to_string()))
            .await
            .expect("send to DevTools");
        while let Some(message) = self.socket.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).expect("DevTools JSON");
            if reply["id"] == id {
                return reply["result"]["result"]["value"].clone();
            }
        }
        panic!("DevTools closed the socket");
    }

    /// Evaluates `expression` until it equals `expected`, within `within`.
    pub async fn wait_for(
        &mut self,
        expression: &str,
        expected: serde_json::Value,
        within: Duration,
    ) {
        let what = format!("`{expression}` to show {expected}");
        crate::wait_until(what, within, async || {
            let value = self.eval(expression).await;
            if value == expected {
                Ok(())
            } else {
                Err(format!("the page shows {value}"))
            }
        })
        .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
