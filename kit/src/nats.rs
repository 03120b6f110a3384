//! NATS: the connection, the JetStream context and the stream declarations.

use async_nats::jetstream::{self, stream};
use std::time::Duration;
use tally_schema::StreamSpec;

/// Where NATS is and how the event stream is laid out. Shared by every service.
#[derive(Clone, Debug, clap::Args)]
pub struct NatsConfig {
    /// NATS server URL (JetStream 2.10 or newer); a cluster's nodes comma-separated.
    #[arg(
        long = "nats-url",
        env = "TALLY_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    /// Name of the event stream.
    #[arg(long = "stream", env = "TALLY_STREAM", default_value = "TALLY")]
    pub stream: String,
    /// First token of every subject (`<root>.v1.<kind>.<scope>`).
    #[arg(
        long = "subject-root",
        env = "TALLY_SUBJECT_ROOT",
        default_value = "tally"
    )]
    pub subject_root: String,
    /// Duplicate window for idempotency keys, in seconds.
    #[arg(
        long = "duplicate-window-secs",
        env = "TALLY_DUPLICATE_WINDOW_SECS",
        default_value_t = 300
    )]
    pub duplicate_window_secs: u64,
    /// How long events stay on the stream, in hours.
    #[arg(
        long = "stream-max-age-hours",
        env = "TALLY_STREAM_MAX_AGE_HOURS",
        default_value_t = 168
    )]
    pub max_age_hours: u64,
    /// Stream size cap in bytes; when full, ingest answers 503 instead of dropping old events.
    #[arg(long = "stream-max-bytes", env = "TALLY_STREAM_MAX_BYTES", default_value_t = 4 * 1024 * 1024 * 1024)]
    pub max_bytes: i64,
    /// Replicas of the event, dead-letter and media streams (3 on a three-node cluster).
    #[arg(
        long = "stream-replicas",
        env = "TALLY_STREAM_REPLICAS",
        default_value_t = 1
    )]
    pub replicas: usize,
    /// Size cap of the media bucket in bytes (originals and variants); past it, uploads are
    /// refused with 503 `media_store_full`. JetStream reserves it up front, beside the
    /// stream's own cap, within the server's `max_file_store` (20 GB in deploy/stack.sh).
    #[arg(long = "media-max-bytes", env = "TALLY_MEDIA_MAX_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub media_max_bytes: i64,
    /// How long uploaded media is kept, in days (0: until deleted).
    #[arg(
        long = "media-max-age-days",
        env = "TALLY_MEDIA_MAX_AGE_DAYS",
        default_value_t = 365
    )]
    pub media_max_age_days: u64,
    /// Timeout for JetStream API calls and publish acknowledgements, in milliseconds.
    #[arg(
        long = "nats-timeout-ms",
        env = "TALLY_NATS_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub timeout_ms: u64,
}

impl NatsConfig {
    /// A config for `url` with every other field at its default.
    pub fn with_url(url: impl Into<String>) -> Self {
        let spec = StreamSpec::default();
        Self {
            url: url.into(),
            stream: spec.name,
            subject_root: spec.subject_root,
            duplicate_window_secs: spec.duplicate_window.as_secs(),
            max_age_hours: spec.max_age.as_secs() / 3600,
            max_bytes: spec.max_bytes,
            replicas: spec.replicas,
            media_max_bytes: spec.media_max_bytes,
            media_max_age_days: spec.media_max_age.as_secs() / 86_400,
            timeout_ms: 2000,
        }
    }

    pub fn spec(&self) -> StreamSpec {
        StreamSpec {
            name: self.stream.clone(),
            subject_root: self.subject_root.clone(),
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
            max_age: Duration::from_secs(self.max_age_hours * 3600),
            max_bytes: self.max_bytes,
            replicas: self.replicas,
            media_max_bytes: self.media_max_bytes,
            media_max_age: Duration::from_secs(self.media_max_age_days * 86_400),
        }
    }

    /// The servers to connect to: `TALLY_NATS_URL` lists a cluster's nodes comma-separated.
    pub fn servers(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).collect()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("cannot declare stream {stream}: {source}")]
    Stream {
        stream: String,
        source: async_nats::jetstream::context::CreateStreamError,
    },
    #[error("cannot open the media object store {bucket}: {reason}")]
    ObjectStore { bucket: String, reason: String },
    #[error("NATS at {url} runs {version}; Tally needs 2.10 or newer (see deploy/stack.sh)")]
    TooOld { url: String, version: String },
}

/// Opens the media object store, creating it (file storage) when missing.
pub async fn media_store(
    js: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<jetstream::object_store::ObjectStore, NatsError> {
    let bucket = spec.media_bucket();
    let failed = |reason: String| NatsError::ObjectStore {
        bucket: bucket.clone(),
        reason,
    };
    if let Ok(store) = js.get_object_store(&bucket).await {
        return Ok(store);
    }
    let config = jetstream::object_store::Config {
        bucket: bucket.clone(),
        description: Some("Tally: uploaded media, originals and variants".into()),
        storage: stream::StorageType::File,
        num_replicas: spec.replicas,
        max_bytes: spec.media_max_bytes,
        max_age: spec.media_max_age,
        ..Default::default()
    };
    declared(&bucket, || js.create_object_store(config.clone()))
        .await
        .map_err(|e| failed(e.to_string()))
}

/// Connects and checks the server is new enough, refusing to boot on bad wiring.
/// `max_ack_inflight` bounds publishes awaiting their acknowledgement (backpressure past it).
pub async fn connect(
    config: &NatsConfig,
    name: &str,
    max_ack_inflight: usize,
) -> Result<(async_nats::Client, jetstream::Context), NatsError> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(config.timeout())
        // Keep retrying in the background after the first connection: a NATS restart must
        // not kill the service, only make it answer 503 until NATS is back.
        .retry_on_initial_connect()
        // One line per change of the connection, whatever the request rate meanwhile.
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS connected."),
                async_nats::Event::Closed => tracing::info!("NATS connection closed."),
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS disconnected; reconnecting.")
                }
                // A slow consumer is reported per dropped message.
                other => crate::warn_once_a_second!(event = %other, "NATS connection event."),
            }
        })
        .connect(config.servers())
        .await
        .map_err(|source| NatsError::Connect {
            url: config.url.clone(),
            source,
        })?;
    // retry_on_initial_connect returns at once; wait (bounded) for the first connection.
    let deadline = tokio::time::Instant::now() + config.timeout().max(Duration::from_secs(5));
    while client.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() > deadline {
            return Err(NatsError::Connect {
                url: config.url.clone(),
                source: async_nats::ConnectError::from(async_nats::ConnectErrorKind::TimedOut),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let version = client.server_info().version;
    if !version_at_least(&version, (2, 10)) {
        return Err(NatsError::TooOld {
            url: config.url.clone(),
            version,
        });
    }
    let js = jetstream::ContextBuilder::new()
        .timeout(config.timeout())
        .max_ack_inflight(max_ack_inflight)
        .backpressure_on_inflight(true)
        .build(client.clone());
    Ok((client, js))
}

fn version_at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    v >= (major, minor)
}

/// How long dead letters are kept.
const DEAD_LETTERS_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// Creates or updates the event stream and the dead-letter stream. Idempotent.
pub async fn ensure_streams(js: &jetstream::Context, spec: &StreamSpec) -> Result<(), NatsError> {
    let events = stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects(),
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        duplicate_window: spec.duplicate_window,
        max_age: spec.max_age,
        max_bytes: spec.max_bytes,
        num_replicas: spec.replicas,
        ..Default::default()
    };
    let dead_letters = stream::Config {
        name: spec.dead_letter_stream(),
        subjects: spec.dead_letter_subjects(),
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: DEAD_LETTERS_KEPT,
        // A letter's message id names its original sequence: remembered for as long as the
        // letters are kept, so a message dead-lettered again (after a writer replay) is one letter.
        duplicate_window: DEAD_LETTERS_KEPT,
        num_replicas: spec.replicas,
        ..Default::default()
    };
    for config in [events, dead_letters] {
        let name = config.name.clone();
        let declare = || js.create_or_update_stream(config.clone());
        declared(&name, declare)
            .await
            .map_err(|source| NatsError::Stream {
                stream: name,
                source,
            })?;
    }
    Ok(())
}

/// How long a declaration is retried: a cluster electing leaders, or a peer that just
/// restarted and still counts as offline, refuses placements for a few seconds.
const DECLARE_FOR: Duration = Duration::from_secs(30);

/// `declare` until it succeeds, retried every second for [`DECLARE_FOR`]; then its last error
/// (a service refuses to start on wiring that stays wrong).
pub async fn declared<T, E, Fut>(what: &str, mut declare: impl FnMut() -> Fut) -> Result<T, E>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let until = tokio::time::Instant::now() + DECLARE_FOR;
    loop {
        match declare().await {
            Ok(done) => return Ok(done),
            Err(e) if tokio::time::Instant::now() < until => {
                tracing::warn!(error = %e, what, "JetStream refused a declaration; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_compare_numerically() {
        assert!(super::version_at_least("2.15.1", (2, 10)));
        assert!(super::version_at_least("2.10.0", (2, 10)));
        assert!(!super::version_at_least("2.9.10", (2, 10)));
        assert!(!super::version_at_least("garbage", (2, 10)));
    }
}
