//! The Redis sink's storage side: applies a batch of events atomically with the record of
//! the highest stream sequence applied, through one Lua script (reloaded by the client after
//! a Redis restart answers NOSCRIPT).

use crate::effects;
use crate::live::Changed;
use crate::ordered_sink::{Applied, OrderedSink};
use redis::aio::ConnectionManager;
use tally_schema::StoredEvent;
use tally_schema::redis_keys::Keys;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot reach Redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("Redis: {0}")]
    Command(#[from] redis::RedisError),
}

/// Elo settings of pair votes.
#[derive(Clone, Copy, Debug)]
pub struct EloConfig {
    pub k: f64,
    pub initial: f64,
    /// How long a session's personal ranking lives after its last vote.
    pub session_ttl_secs: u64,
}

/// How long the id of a keyed event is remembered: as long as events stay on the stream.
pub const SEEN_TTL_SECS: u64 = 7 * 24 * 3600;

#[derive(Clone)]
pub struct RedisSink {
    conn: ConnectionManager,
    keys: Keys,
    consumer: String,
    elo: EloConfig,
    script: redis::Script,
}

impl RedisSink {
    /// Connects (checking the connection at once).
    pub async fn connect(
        url: &str,
        keys: Keys,
        consumer: &str,
        elo: EloConfig,
    ) -> Result<Self, RedisError> {
        let connect = |source| RedisError::Connect {
            url: url.to_owned(),
            source,
        };
        let client = redis::Client::open(url).map_err(connect)?;
        let conn = ConnectionManager::new(client).await.map_err(connect)?;
        Ok(Self {
            conn,
            keys,
            consumer: consumer.to_owned(),
            elo,
            script: redis::Script::new(include_str!("../scripts/apply_batch.lua")),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Deletes every key under the prefix (for a rebuild); returns how many.
    pub async fn clear(&self) -> Result<u64, RedisError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", self.keys.prefix());
        let mut cursor = 0u64;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// The highest stream sequence this sink has applied (0 before the first batch).
    pub async fn applied_seq(&self) -> Result<u64, RedisError> {
        let mut conn = self.conn.clone();
        let seq: Option<u64> = redis::cmd("GET")
            .arg(self.keys.applied_seq(&self.consumer))
            .query_async(&mut conn)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// Applies events in the given (stream) order, skipping what was applied before.
    #[tracing::instrument(name = "redis_apply", skip_all, fields(events = events.len()))]
    pub async fn apply(&self, events: &[StoredEvent]) -> Result<Applied, RedisError> {
        let mut invocation = self.script.key(self.keys.applied_seq(&self.consumer));
        invocation
            .arg(self.elo.k)
            .arg(self.elo.initial)
            .arg(self.elo.session_ttl_secs)
            .arg(SEEN_TTL_SECS);
        for event in events {
            invocation.arg(&effects::record(&self.keys, event)[..]);
        }
        let mut conn = self.conn.clone();
        let (applied, skipped, high): (u64, u64, u64) = invocation.invoke_async(&mut conn).await?;
        Ok(Applied {
            applied,
            skipped,
            high,
        })
    }
}

/// The Redis sink as the ordered loop drives it: after each batch, the live views it touched
/// are marked for a notification.
pub struct LiveRedisSink {
    pub sink: RedisSink,
    pub changed: Changed,
}

impl OrderedSink for LiveRedisSink {
    const NAME: &'static str = "redis";
    type Error = RedisError;

    fn apply(
        &self,
        events: &[StoredEvent],
    ) -> impl std::future::Future<Output = Result<Applied, RedisError>> + Send {
        self.sink.apply(events)
    }

    fn applied(&self, events: &[StoredEvent]) {
        self.changed.mark(events);
    }
}
