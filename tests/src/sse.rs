//! A server-sent-events client for tests: reads `id`, `event` and `data` fields as a browser's
//! EventSource does, and can reconnect with `Last-Event-ID`.

use futures::StreamExt;
use futures::stream::BoxStream;
use std::time::Duration;

/// One event.
#[derive(Clone, Debug, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: serde_json::Value,
}

impl SseEvent {
    /// The id as a stream sequence.
    pub fn seq(&self) -> u64 {
        self.id
            .as_deref()
            .and_then(|i| i.parse().ok())
            .expect("a channel event carries its sequence as id")
    }
}

/// An open event stream.
pub struct SseStream {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseStream {
    /// Opens `url` (with `Last-Event-ID` when given) and panics unless it answers 200.
    pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<u64>) -> Self {
        let mut request = http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("the stream request is sent");
        assert_eq!(response.status(), 200, "{url}");
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event within `within`, or None if none came (or the stream ended).
    pub async fn next_within(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Exactly `n` events, each within 15 s of the one before; panics otherwise.
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            let event = self
                .next_within(Duration::from_secs(15))
                .await
                .unwrap_or_else(|| panic!("only {} of {n} events arrived", events.len()));
            events.push(event);
        }
        events
    }
}

/// A block of field lines; comments (keep-alives) and blocks without data are not events.
fn parse(block: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, "message".to_owned(), None::<String>);
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim_start().to_owned());
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim_start().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            let v = v.strip_prefix(' ').unwrap_or(v);
            data = Some(match data {
                Some(d) => format!("{d}\n{v}"),
                None => v.to_owned(),
            });
        }
    }
    let data = serde_json::from_str(&data?).expect("event data is JSON");
    Some(SseEvent { id, event, data })
}
