//! JetStream streams backed up and restored through the server's own snapshot API, in the
//! layout the `nats stream backup` CLI writes (`<dir>/backup.json`: the stream's configuration
//! and state; `<dir>/stream.tar.s2`: its store, as the server sends it), so a lost JetStream
//! store comes back without a client reading every message, with its durable consumers' state.
//!
//! Snapshot: the server sends the store in chunks to an inbox; a chunk with a reply subject
//! asks for an (empty) answer, which paces it; an empty chunk ends it. Restore: the server
//! names a subject to which the chunks go as requests, each answered once stored; an empty
//! request ends it and is answered with the restored stream.

use async_nats::Client;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the server sends per chunk, and what a restore sends (below the 1 MB message limit).
const CHUNK_BYTES: usize = 512 * 1024;
/// How long a chunk may take, and how long the server may take to rebuild a restored stream.
const CHUNK_WAIT: Duration = Duration::from_secs(30);
const RESTORE_WAIT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("JetStream refused: {0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Format(String),
}

fn nats(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Nats(e.to_string())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A stream as saved or restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub stream: String,
    pub messages: u64,
    pub last_seq: u64,
    /// Bytes of the saved store (compressed).
    pub bytes: u64,
}

/// A JetStream API answer, or the error it carries.
fn answer(payload: &[u8]) -> Result<Value, SnapshotError> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| SnapshotError::Format(format!("not a JetStream API answer: {e}")))?;
    match value.get("error") {
        Some(error) => Err(SnapshotError::Refused(error.to_string())),
        None => Ok(value),
    }
}

/// A JetStream API request and its answer.
async fn api(client: &Client, subject: String, request: &Value) -> Result<Value, SnapshotError> {
    let reply = client
        .request(subject, request.to_string().into())
        .await
        .map_err(nats)?;
    answer(&reply.payload)
}

fn state_of(stream: &str, value: &Value, bytes: u64) -> Saved {
    let n = |key: &str| value["state"][key].as_u64().unwrap_or(0);
    Saved {
        stream: stream.to_owned(),
        messages: n("messages"),
        last_seq: n("last_seq"),
        bytes,
    }
}

/// Saves `stream` (with its consumers) into `dir`, which it creates.
pub async fn snapshot(client: &Client, stream: &str, dir: &Path) -> Result<Saved, SnapshotError> {
    tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    let data_path = dir.join("stream.tar.s2");
    let mut data = tokio::fs::File::create(&data_path)
        .await
        .map_err(io(&data_path))?;
    // Subscribed before asking: the first chunks may follow the answer at once.
    let inbox = client.new_inbox();
    let mut chunks = client.subscribe(inbox.clone()).await.map_err(nats)?;
    let request = serde_json::json!({"deliver_subject": inbox, "no_consumers": false,
                                     "chunk_size": CHUNK_BYTES});
    let meta = api(
        client,
        format!("$JS.API.STREAM.SNAPSHOT.{stream}"),
        &request,
    )
    .await?;
    let mut bytes = 0u64;
    loop {
        let chunk = tokio::time::timeout(CHUNK_WAIT, chunks.next())
            .await
            .map_err(|_| nats(format!("no snapshot chunk within {CHUNK_WAIT:?}")))?
            .ok_or_else(|| nats("the snapshot subscription ended"))?;
        if chunk.payload.is_empty() {
            // The end: plain, or a status saying the snapshot failed (no flow-control answer
            // in time, an error): then what was written is not a backup.
            match chunk.status {
                Some(status) if !(200..300).contains(&status.as_u16()) => {
                    let why = chunk.description.unwrap_or_default();
                    return Err(SnapshotError::Refused(format!(
                        "snapshot ended with {status} {why}"
                    )));
                }
                _ => break,
            }
        }
        data.write_all(&chunk.payload)
            .await
            .map_err(io(&data_path))?;
        bytes += chunk.payload.len() as u64;
        if let Some(reply) = chunk.reply {
            client.publish(reply, Bytes::new()).await.map_err(nats)?;
        }
    }
    data.sync_all().await.map_err(io(&data_path))?;
    let meta_path = dir.join("backup.json");
    let saved = serde_json::json!({"config": meta["config"], "state": meta["state"]});
    tokio::fs::write(&meta_path, serde_json::to_vec_pretty(&saved).expect("JSON"))
        .await
        .map_err(io(&meta_path))?;
    Ok(state_of(stream, &meta, bytes))
}

/// Restores the stream saved in `dir` under its own name; it must not exist.
pub async fn restore(client: &Client, dir: &Path) -> Result<Saved, SnapshotError> {
    let meta_path = dir.join("backup.json");
    let meta = tokio::fs::read(&meta_path).await.map_err(io(&meta_path))?;
    let meta: Value = serde_json::from_slice(&meta)
        .map_err(|e| SnapshotError::Format(format!("{}: {e}", meta_path.display())))?;
    let stream = meta["config"]["name"]
        .as_str()
        .ok_or_else(|| SnapshotError::Format(format!("{}: no stream name", meta_path.display())))?
        .to_owned();
    let started = api(client, format!("$JS.API.STREAM.RESTORE.{stream}"), &meta).await?;
    let target = started["deliver_subject"]
        .as_str()
        .ok_or_else(|| SnapshotError::Format("the restore answer names no subject".into()))?
        .to_owned();
    let data_path = dir.join("stream.tar.s2");
    let mut data = tokio::fs::File::open(&data_path)
        .await
        .map_err(io(&data_path))?;
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut bytes = 0u64;
    loop {
        let n = read_chunk(&mut data, &mut buffer)
            .await
            .map_err(io(&data_path))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        let chunk = Bytes::copy_from_slice(&buffer[..n]);
        let request = async_nats::Request::new()
            .payload(chunk)
            .timeout(Some(CHUNK_WAIT));
        let stored = client
            .send_request(target.clone(), request)
            .await
            .map_err(nats)?;
        if !stored.payload.is_empty() {
            answer(&stored.payload)?;
        }
    }
    let done = async_nats::Request::new()
        .payload(Bytes::new())
        .timeout(Some(RESTORE_WAIT));
    let restored = client.send_request(target, done).await.map_err(nats)?;
    let restored = answer(&restored.payload)?;
    Ok(state_of(&stream, &restored, bytes))
}

/// Fills `buffer` as far as the file goes: chunks other than the last are whole.
async fn read_chunk(file: &mut tokio::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_errors_are_refusals() {
        let refused = super::answer(br#"{"error":{"code":404,"description":"stream not found"}}"#);
        assert!(
            matches!(refused, Err(super::SnapshotError::Refused(e)) if e.contains("not found"))
        );
        let ok = super::answer(br#"{"config":{"name":"T"},"state":{"messages":3,"last_seq":9}}"#);
        let saved = super::state_of("T", &ok.unwrap(), 10);
        assert_eq!((saved.messages, saved.last_seq, saved.bytes), (3, 9, 10));
        assert!(super::answer(b"not json").is_err());
    }
}
