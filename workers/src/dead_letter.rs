//! Messages no one can decode: after a bounded number of deliveries they move to the
//! dead-letter stream with the reason, so they never block the events behind them.

use async_nats::jetstream::{self, AckKind};
use std::time::Duration;
use tally_schema::StreamSpec;

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
        headers.insert("Tally-Dead-Letter-Reason", one_line(reason).as_str());
        headers.insert("Tally-Original-Subject", message.subject.as_str());
        headers.insert("Tally-Original-Sequence", seq.to_string().as_str());
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
