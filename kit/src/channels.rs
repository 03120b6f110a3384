//! Channel streams, shared by ingest (publishes, followers) and the workers (the upstream
//! poller): each channel's stream declared from its definition, messages published with their
//! kind, and read back in order from a sequence.

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::time::Duration;
use tally_schema::StreamSpec;
use tally_schema::channels::{Channel, MessageKind, header};
use tally_schema::ids::ChannelId;

/// One stored message of a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelMessage {
    /// Its stream sequence: the SSE event id a follower resumes from.
    pub seq: u64,
    pub kind: MessageKind,
    /// Compact JSON.
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cannot declare the stream of channel {channel}: {reason}")]
    Declare { channel: String, reason: String },
    #[error("the stream of channel {channel} does not exist")]
    NoStream { channel: String },
    #[error("JetStream refused the message: {0}")]
    Refused(String),
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("the channel moved on: its last message is no longer {expected}")]
    Moved { expected: u64 },
    #[error("reading the channel's stream: {0}")]
    Read(String),
}

/// The stream refuses anything larger; ingest's own bound (`TALLY_CHANNEL_MESSAGE_MAX_BYTES`)
/// and an upstream's `max_bytes` are at most this.
pub const MAX_MESSAGE_BYTES: u32 = 1024 * 1024;

/// The channel's stream: its retention is the channel's, oldest messages go first.
pub fn stream_config(spec: &StreamSpec, channel: &Channel) -> stream::Config {
    let max_age = Duration::from_secs(channel.retention.max_age_secs);
    stream::Config {
        name: spec.channel_stream(&channel.id),
        subjects: vec![spec.channel_subject(&channel.id)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_messages: i64::from(channel.retention.messages),
        max_age,
        max_message_size: MAX_MESSAGE_BYTES as i32,
        duplicate_window: spec.duplicate_window.min(max_age),
        num_replicas: spec.replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates or updates the channel's stream (a changed retention applies at once).
pub async fn ensure(
    js: &jetstream::Context,
    spec: &StreamSpec,
    channel: &Channel,
) -> Result<(), ChannelError> {
    let config = stream_config(spec, channel);
    crate::nats::declared(&config.name.clone(), || {
        js.create_or_update_stream(config.clone())
    })
    .await
    .map(drop)
    .map_err(|e| ChannelError::Declare {
        channel: channel.id.to_string(),
        reason: e.to_string(),
    })
}

/// What JetStream said about a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    /// The message id was seen inside the duplicate window: stored once, earlier.
    pub duplicate: bool,
}

/// A message to publish: its kind and payload, with an optional message id (deduplicated by
/// the stream) and the sequence the channel must still end at (an optimistic check: two
/// pollers cannot both publish the same change).
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub kind: MessageKind,
    pub payload: Bytes,
    pub message_id: Option<String>,
    pub expected_last: Option<u64>,
}

/// Publishes to `channel` and waits for the acknowledgement, within `timeout`.
pub async fn publish(
    js: &jetstream::Context,
    spec: &StreamSpec,
    channel: &ChannelId,
    out: Outgoing,
    timeout: Duration,
) -> Result<Published, ChannelError> {
    let mut message = PublishMessage::build().payload(out.payload);
    if out.kind != MessageKind::Message {
        message = message.header(header::EVENT, out.kind.as_str());
    }
    if let Some(id) = &out.message_id {
        message = message.message_id(id);
    }
    if let Some(seq) = out.expected_last {
        message = message.expected_last_sequence(seq);
    }
    let subject = spec.channel_subject(channel);
    let send = async {
        let ack = js.send_publish(subject, message).await?;
        ack.await
    };
    match tokio::time::timeout(timeout, send).await {
        Err(_) => Err(ChannelError::Timeout(timeout)),
        Ok(Ok(ack)) => Ok(Published {
            seq: ack.sequence,
            duplicate: ack.duplicate,
        }),
        Ok(Err(e)) => Err(refused(e, channel, out.expected_last)),
    }
}

/// [`publish`], declaring the channel's stream when it is missing (a channel defined before
/// its stream was, a restored or pruned JetStream) and publishing once more.
pub async fn publish_declaring(
    js: &jetstream::Context,
    spec: &StreamSpec,
    channel: &Channel,
    out: Outgoing,
    timeout: Duration,
) -> Result<Published, ChannelError> {
    match publish(js, spec, &channel.id, out.clone(), timeout).await {
        Err(ChannelError::NoStream { .. }) => {
            ensure(js, spec, channel).await?;
            publish(js, spec, &channel.id, out, timeout).await
        }
        other => other,
    }
}

fn refused(
    e: jetstream::context::PublishError,
    channel: &ChannelId,
    expected: Option<u64>,
) -> ChannelError {
    use jetstream::context::PublishErrorKind;
    match e.kind() {
        PublishErrorKind::StreamNotFound => ChannelError::NoStream {
            channel: channel.to_string(),
        },
        PublishErrorKind::WrongLastSequence => ChannelError::Moved {
            expected: expected.unwrap_or_default(),
        },
        PublishErrorKind::TimedOut => ChannelError::Timeout(Duration::ZERO),
        _ => ChannelError::Refused(e.to_string()),
    }
}

/// The first and last sequence the channel's stream holds (0, 0 when it never held one).
pub async fn bounds(
    js: &jetstream::Context,
    spec: &StreamSpec,
    channel: &ChannelId,
) -> Result<(u64, u64), ChannelError> {
    let mut stream = js
        .get_stream(spec.channel_stream(channel))
        .await
        .map_err(|e| match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                ChannelError::NoStream {
                    channel: channel.to_string(),
                }
            }
            _ => ChannelError::Read(e.to_string()),
        })?;
    let info = stream
        .info()
        .await
        .map_err(|e| ChannelError::Read(e.to_string()))?;
    Ok((info.state.first_sequence, info.state.last_sequence))
}

/// The channel's newest message, if it holds any; [`ChannelError::NoStream`] without a stream.
pub async fn last(
    js: &jetstream::Context,
    spec: &StreamSpec,
    channel: &ChannelId,
) -> Result<Option<ChannelMessage>, ChannelError> {
    let stream = js
        .get_stream_no_info(spec.channel_stream(channel))
        .await
        .map_err(|e| ChannelError::Read(e.to_string()))?;
    match stream
        .direct_get_last_for_subject(spec.channel_subject(channel))
        .await
    {
        Ok(raw) => Ok(Some(ChannelMessage {
            seq: raw.sequence,
            kind: kind_of(raw.headers.get(header::EVENT).map(|v| v.as_str())),
            payload: raw.payload,
        })),
        Err(e) => match e.kind() {
            jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
            // Nobody answers the direct get of a stream that does not exist.
            jetstream::stream::DirectGetErrorKind::ErrorResponse(status, _)
                if status == async_nats::StatusCode::NO_RESPONDERS =>
            {
                Err(ChannelError::NoStream {
                    channel: channel.to_string(),
                })
            }
            _ => Err(ChannelError::Read(e.to_string())),
        },
    }
}

fn kind_of(header: Option<&str>) -> MessageKind {
    header
        .and_then(MessageKind::parse)
        .unwrap_or(MessageKind::Message)
}

/// Every message from `from` on, in order, as they are stored (an ordered consumer: no
/// acknowledgements, no state on the server once dropped). Messages older than the
/// channel's retention start it at the oldest kept.
pub async fn read_from(
    js: &jetstream::Context,
    spec: &StreamSpec,
    channel: &ChannelId,
    from: u64,
) -> Result<impl Stream<Item = Result<ChannelMessage, ChannelError>> + Send + use<>, ChannelError> {
    let stream = js
        .get_stream_no_info(spec.channel_stream(channel))
        .await
        .map_err(|e| ChannelError::Read(e.to_string()))?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| ChannelError::Read(e.to_string()))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| ChannelError::Read(e.to_string()))?;
    Ok(messages.map(|m| {
        let m = m.map_err(|e| ChannelError::Read(e.to_string()))?;
        let seq = m
            .info()
            .map_err(|e| ChannelError::Read(e.to_string()))?
            .stream_sequence;
        let kind = kind_of(
            m.headers
                .as_ref()
                .and_then(|h| h.get(header::EVENT))
                .map(|v| v.as_str()),
        );
        Ok(ChannelMessage {
            seq,
            kind,
            payload: m.message.payload,
        })
    }))
}
