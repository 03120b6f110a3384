//! Dead letters: messages no consumer could decode. After a bounded number of deliveries the
//! Postgres writer moves such a message to the dead-letter stream with the reason, so it never
//! blocks the events behind it; an operator lists them (`tally dead-letters list`) and, once
//! the consumers run a version that decodes them, puts them back on the event stream
//! (`tally dead-letters replay`).

use async_nats::jetstream::{self, AckKind, stream::LastRawMessageErrorKind};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tally_schema::StreamSpec;
use tally_schema::stream::dead_letter_header as header;

/// The consumer's side: retry a message a few times, then move it aside.
#[derive(Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    subject: String,
    max_deliveries: i64,
}

impl DeadLetters {
    pub fn new(
        js: jetstream::Context,
        spec: &StreamSpec,
        consumer: &str,
        max_deliveries: i64,
    ) -> Self {
        Self {
            js,
            subject: spec.dead_letter_subject(consumer),
            max_deliveries,
        }
    }

    /// Naks the message for a later retry, or, after `max_deliveries`, stores it in the
    /// dead-letter stream (keeping payload, original subject, sequence and reason) and acks it.
    pub async fn handle(
        &self,
        message: &jetstream::Message,
        reason: &str,
    ) -> Result<(), async_nats::Error> {
        let info = message.info()?;
        let (delivered, seq) = (info.delivered, info.stream_sequence);
        if delivered < self.max_deliveries {
            tracing::warn!(seq, delivered, reason, "Undecodable message; will retry.");
            message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await?;
            return Ok(());
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(header::REASON, one_line(reason).as_str());
        headers.insert(header::ORIGINAL_SUBJECT, message.subject.as_str());
        headers.insert(header::ORIGINAL_SEQUENCE, seq.to_string().as_str());
        // The message id makes a repeated dead-lettering of the same message a no-op.
        headers.insert("Nats-Msg-Id", format!("{}-{seq}", self.subject).as_str());
        self.js
            .publish_with_headers(self.subject.clone(), headers, message.payload.clone())
            .await?
            .await?;
        message.ack().await?;
        metrics::counter!("tally_workers_dead_letters_total").increment(1);
        tracing::error!(seq, reason, subject = %self.subject, "Moved an undecodable message to the dead-letter stream.");
        Ok(())
    }
}

/// Header values must be one line of bounded size.
fn one_line(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect()
}

/// One message of the dead-letter stream, as an operator reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream: what `replay` takes.
    pub seq: u64,
    /// The consumer that gave up on it.
    pub consumer: String,
    pub dead_lettered_at: DateTime<Utc>,
    /// Where it was published, and where a replay puts it back.
    pub original_subject: String,
    pub original_seq: Option<u64>,
    pub reason: String,
    pub payload: Bytes,
}

impl DeadLetter {
    fn read(spec: &StreamSpec, message: jetstream::message::StreamMessage) -> Self {
        let text = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let consumer_prefix = spec.dead_letter_subject("");
        let time = message.time;
        Self {
            seq: message.sequence,
            consumer: message
                .subject
                .as_str()
                .strip_prefix(&consumer_prefix)
                .unwrap_or(message.subject.as_str())
                .to_owned(),
            dead_lettered_at: DateTime::from_timestamp(time.unix_timestamp(), time.nanosecond())
                .unwrap_or_default(),
            original_subject: text(header::ORIGINAL_SUBJECT),
            original_seq: text(header::ORIGINAL_SEQUENCE).parse().ok(),
            reason: text(header::REASON),
            payload: message.payload,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no dead letter at sequence {0}")]
    NotFound(u64),
    #[error(
        "dead letter {seq} names {subject:?} as its subject, which is not an event subject of this stream"
    )]
    NotAnEvent { seq: u64, subject: String },
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::Error),
}

fn nats(e: impl Into<async_nats::Error>) -> DeadLetterError {
    DeadLetterError::Nats(e.into())
}

/// Up to `limit` dead letters from sequence `from` on, oldest first (deleted and replayed ones
/// are gone).
pub async fn list(
    js: &jetstream::Context,
    spec: &StreamSpec,
    from: u64,
    limit: usize,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let stream = js
        .get_stream_no_info(spec.dead_letter_stream())
        .await
        .map_err(nats)?;
    let filter = spec.dead_letter_subject("*");
    let mut letters = Vec::new();
    let mut seq = from.max(1);
    while letters.len() < limit {
        // The next message at or after `seq`: skips the holes replays leave.
        let next = stream
            .raw_message_builder()
            .sequence(seq)
            .next_by_subject(filter.clone())
            .send()
            .await;
        match next {
            Ok(message) => {
                seq = message.sequence + 1;
                letters.push(DeadLetter::read(spec, message));
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => break,
            Err(e) => return Err(nats(e)),
        }
    }
    Ok(letters)
}

/// Where a replayed letter went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Its new sequence in the event stream.
    pub seq: u64,
    /// This letter had been replayed within the duplicate window already: stored once.
    pub duplicate: bool,
}

/// Puts dead letter `seq` back on its original event subject, acknowledged by JetStream, then
/// deletes it from the dead-letter stream. The event keeps its id, so the Postgres writer stores
/// it once whatever happens; a replay repeated after a failure between the two steps is stored
/// once too (its message id names the letter). The ordered sinks skipped it as undecodable the
/// first time and apply it now, at its new sequence.
pub async fn replay(
    js: &jetstream::Context,
    spec: &StreamSpec,
    seq: u64,
) -> Result<Replayed, DeadLetterError> {
    let stream = js
        .get_stream_no_info(spec.dead_letter_stream())
        .await
        .map_err(nats)?;
    let message = match stream.get_raw_message(seq).await {
        Ok(m) if m.subject.starts_with(&spec.dead_letter_subject("")) => m,
        Ok(_) => return Err(DeadLetterError::NotFound(seq)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
            return Err(DeadLetterError::NotFound(seq));
        }
        Err(e) => return Err(nats(e)),
    };
    let letter = DeadLetter::read(spec, message);
    if !spec.is_event_subject(&letter.original_subject) {
        return Err(DeadLetterError::NotAnEvent {
            seq,
            subject: letter.original_subject,
        });
    }
    let mut headers = async_nats::HeaderMap::new();
    let id = format!("replay-{}-{seq}", spec.dead_letter_stream());
    headers.insert("Nats-Msg-Id", id.as_str());
    let ack = js
        .publish_with_headers(letter.original_subject, headers, letter.payload)
        .await
        .map_err(nats)?
        .await
        .map_err(nats)?;
    stream.delete_message(seq).await.map_err(nats)?;
    tracing::info!(
        seq,
        stream_seq = ack.sequence,
        "Put a dead letter back on the event stream."
    );
    Ok(Replayed {
        seq: ack.sequence,
        duplicate: ack.duplicate,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_become_one_bounded_line() {
        assert_eq!(super::one_line("a\nb\tc"), "a b c");
        assert_eq!(super::one_line(&"x".repeat(2000)).len(), 512);
    }
}
