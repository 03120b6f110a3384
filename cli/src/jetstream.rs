//! `tally jetstream backup|restore`: Tally's streams (events, dead letters, media, each
//! broadcast channel's) saved and
//! restored through the server's snapshot API (kit's snapshots), one directory per stream in
//! the layout `nats stream backup` writes.

use crate::JetStreamAction;
use crate::output::{self, Block, Format, Reply};
use anyhow::Context;
use serde_json::json;
use tally_kit::nats::NatsConfig;
use tally_kit::snapshots::{self, Saved, SnapshotError};

pub async fn run(nats: &NatsConfig, action: JetStreamAction, format: Format) -> anyhow::Result<()> {
    let (client, js) = tally_kit::nats::connect(nats, "tally-cli", 64)
        .await
        .context("connecting to NATS")?;
    let spec = nats.spec();
    let mut saved = Vec::new();
    let mut lines = Vec::new();
    match action {
        JetStreamAction::Backup { dir } => {
            let media = format!("OBJ_{}", spec.media_bucket());
            let channels = channel_streams(&js, &spec.channel_stream_prefix()).await?;
            let streams = [spec.name.clone(), spec.dead_letter_stream(), media];
            for stream in streams.into_iter().chain(channels) {
                match snapshots::snapshot(&client, &stream, &dir.join(&stream)).await {
                    Ok(s) => saved.push(s),
                    // A stream not made yet (no upload, no dead letter) has nothing to keep.
                    Err(SnapshotError::Refused(e)) if e.contains("not found") => {
                        lines.push(Block::Line(format!("{stream}: none (not created yet)")));
                    }
                    Err(e) => return Err(e).with_context(|| format!("backing up {stream}")),
                }
            }
        }
        JetStreamAction::Restore { dir } => {
            let mut saved_dirs: Vec<_> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("backup.json").exists())
                .collect();
            saved_dirs.sort();
            for stream_dir in saved_dirs {
                let restored = snapshots::restore(&client, &stream_dir)
                    .await
                    .with_context(|| format!("restoring {}", stream_dir.display()))?;
                saved.push(restored);
            }
        }
    }
    lines.extend(saved.iter().map(line));
    let items: Vec<_> = saved.iter().map(item).collect();
    output::print(format, &Reply::new(json!({ "items": items }), lines))
}

/// Every broadcast channel's stream.
async fn channel_streams(
    js: &async_nats::jetstream::Context,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    use futures::TryStreamExt;
    let names: Vec<String> = js
        .stream_names()
        .try_collect()
        .await
        .context("listing the streams")?;
    let mut channels: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    channels.sort();
    Ok(channels)
}

fn line(s: &Saved) -> Block {
    Block::Line(format!(
        "{}: {} messages up to sequence {} ({} bytes)",
        s.stream, s.messages, s.last_seq, s.bytes
    ))
}

fn item(s: &Saved) -> serde_json::Value {
    json!({"stream": s.stream, "messages": s.messages, "last_seq": s.last_seq, "bytes": s.bytes})
}
