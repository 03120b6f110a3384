//! `tally dead-letters`: the messages the Postgres writer could not decode, straight from
//! NATS (kit's dead-letter reader), and putting them back on the event stream.

use crate::DeadLetterAction;
use crate::output::{self, Block, Format, Reply};
use crate::table::Table;
use anyhow::Context;
use chrono::SecondsFormat;
use serde_json::json;
use tally_kit::dead_letters::{self, DeadLetter};
use tally_kit::nats::NatsConfig;

pub async fn run(
    nats: &NatsConfig,
    action: DeadLetterAction,
    format: Format,
) -> anyhow::Result<()> {
    let (_client, js) = tally_kit::nats::connect(nats, "tally-cli", 64)
        .await
        .context("connecting to NATS")?;
    let spec = nats.spec();
    match action {
        DeadLetterAction::List { from, limit } => {
            let letters = dead_letters::list(&js, &spec, from, limit).await?;
            output::print(format, &listing(&letters))
        }
        DeadLetterAction::Replay { seqs, all } => {
            let seqs = match all {
                true => every_letter(&js, &spec).await?,
                false => seqs,
            };
            let mut items = Vec::new();
            let mut lines = Vec::new();
            for seq in seqs {
                let replayed = dead_letters::replay(&js, &spec, seq)
                    .await
                    .with_context(|| format!("replaying dead letter {seq}"))?;
                lines.push(Block::Line(format!(
                    "dead letter {seq} is back on the event stream at sequence {}{}",
                    replayed.seq,
                    if replayed.duplicate {
                        " (replayed before: stored once)"
                    } else {
                        ""
                    }
                )));
                items.push(json!({"dead_letter": seq, "seq": replayed.seq, "duplicate": replayed.duplicate}));
            }
            if items.is_empty() {
                lines.push(Block::Line("no dead letters".into()));
            }
            output::print(format, &Reply::new(json!({"items": items}), lines))
        }
    }
}

/// The sequences of every dead letter, read a page at a time.
async fn every_letter(
    js: &async_nats::jetstream::Context,
    spec: &tally_schema::StreamSpec,
) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    let mut from = 1;
    loop {
        let page = dead_letters::list(js, spec, from, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(seqs);
        };
        from = last.seq + 1;
        seqs.extend(page.iter().map(|l| l.seq));
    }
}

fn listing(letters: &[DeadLetter]) -> Reply {
    let mut table = Table::new(["seq", "consumer", "at", "subject", "reason", "payload"]);
    let mut items = Vec::new();
    for l in letters {
        let at = l
            .dead_lettered_at
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        // The table cuts long cells; scripts get the payload whole.
        let payload = String::from_utf8_lossy(&l.payload);
        table.row([
            l.seq.to_string().as_str(),
            &l.consumer,
            &at,
            &l.original_subject,
            &l.reason,
            &payload,
        ]);
        items.push(json!({
            "seq": l.seq,
            "consumer": l.consumer,
            "dead_lettered_at": l.dead_lettered_at,
            "original_subject": l.original_subject,
            "original_seq": l.original_seq,
            "reason": l.reason,
            "payload": payload,
        }));
    }
    let mut human = vec![Block::Table(table)];
    if letters.is_empty() {
        human = vec![Block::Line("no dead letters".into())];
    }
    Reply::new(json!({"items": items}), human)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_list_with_their_reason_and_an_excerpt_of_the_payload() {
        let letter = DeadLetter {
            seq: 3,
            consumer: "postgres-writer".into(),
            dead_lettered_at: "2026-12-05T10:00:00Z".parse().unwrap(),
            original_subject: "tally.v1.score.cup".into(),
            original_seq: Some(17),
            reason: "undecodable event: key must be a string".into(),
            payload: bytes::Bytes::from(format!("{{not json{}", "x".repeat(100))),
        };
        let reply = listing(std::slice::from_ref(&letter));
        let text = reply.human_text();
        assert!(text.starts_with("SEQ  CONSUMER"), "{text}");
        assert!(text.contains("postgres-writer  2026-12-05T10:00:00Z  tally.v1.score.cup"));
        assert!(text.contains("{not jsonxxx"), "{text}");
        assert!(text.trim_end().ends_with('…'), "{text}");
        assert_eq!(reply.json["items"][0]["original_seq"], 17);
        assert_eq!(
            reply.json["items"][0]["payload"].as_str().unwrap().len(),
            109
        );
        assert_eq!(listing(&[]).human_text(), "no dead letters\n");
    }
}
