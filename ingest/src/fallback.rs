//! Reads while Redis cannot answer: poll results, standings, registration counts and statuses
//! computed from Postgres instead (schema's views, folded by `tally_schema::replay` the way the
//! batch script folds them into Redis), and marked `"source": "postgres"`. Each answer is
//! cached for a moment and shared by everyone asking for it meanwhile, and only a few queries
//! run at once: a Redis outage must not become a Postgres outage. Reads go back to Redis as
//! soon as it answers again (every read tries Redis first, and waits for it at most
//! `TALLY_READ_REDIS_TIMEOUT_MS`).

use crate::store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How reads fall back to Postgres.
#[derive(Clone, Debug, clap::Args)]
pub struct FallbackConfig {
    /// Answer reads from Postgres while Redis cannot (`false`: 503 instead).
    #[arg(long, env = "TALLY_READ_FALLBACK", default_value_t = true, action = clap::ArgAction::Set)]
    pub read_fallback: bool,
    /// How long a read answered from Postgres is reused, in milliseconds.
    #[arg(long, env = "TALLY_READ_FALLBACK_CACHE_MS", default_value_t = 2000)]
    pub read_fallback_cache_ms: u64,
    /// Answers kept at most (one per poll, tournament or registrant asked about).
    #[arg(
        long,
        env = "TALLY_READ_FALLBACK_CACHE_ENTRIES",
        default_value_t = 10_000
    )]
    pub read_fallback_cache_entries: u64,
    /// Postgres queries for fallback reads running at once (within
    /// TALLY_INGEST_PG_MAX_CONNECTIONS); a read that finds none free within
    /// TALLY_READ_FALLBACK_WAIT_MS is answered 503.
    #[arg(long, env = "TALLY_READ_FALLBACK_MAX_QUERIES", default_value_t = 2)]
    pub read_fallback_max_queries: usize,
    /// How long a fallback read waits for a free query, in milliseconds.
    #[arg(long, env = "TALLY_READ_FALLBACK_WAIT_MS", default_value_t = 200)]
    pub read_fallback_wait_ms: u64,
    /// How long a read waits for Redis before it falls back (or, with the fallback off, is
    /// answered 503), in milliseconds: a Redis that is reconnecting holds reads meanwhile.
    #[arg(long, env = "TALLY_READ_REDIS_TIMEOUT_MS", default_value_t = 500)]
    pub read_redis_timeout_ms: u64,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            read_fallback: true,
            read_fallback_cache_ms: 2000,
            read_fallback_cache_entries: 10_000,
            read_fallback_max_queries: 2,
            read_fallback_wait_ms: 200,
            read_redis_timeout_ms: 500,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("reads from Postgres are turned off")]
    Off,
    #[error("{0} Postgres reads already run")]
    Busy(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a cached answer does not decode: {0}")]
    Cached(#[from] serde_json::Error),
}

/// Postgres answers for reads, cached and bounded.
#[derive(Clone)]
pub struct Fallback {
    pool: PgPool,
    config: FallbackConfig,
    cache: moka::future::Cache<String, Arc<serde_json::Value>>,
    queries: Arc<Semaphore>,
}

impl Fallback {
    pub fn new(pool: PgPool, config: FallbackConfig) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(config.read_fallback_cache_entries)
            .time_to_live(Duration::from_millis(config.read_fallback_cache_ms))
            .build();
        let queries = Arc::new(Semaphore::new(config.read_fallback_max_queries));
        Self {
            pool,
            config,
            cache,
            queries,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How long a read waits for Redis before it falls back.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.config.read_redis_timeout_ms)
    }

    /// The answer of `view` for `scope` (a poll, a tournament and user…): cached, or made by
    /// `query` (once per key; everyone asking meanwhile waits for the same answer), within
    /// the bound on queries at once.
    pub async fn read<T, Q>(
        &self,
        view: &'static str,
        scope: &[&str],
        query: Q,
    ) -> Result<T, Arc<FallbackError>>
    where
        T: Serialize + DeserializeOwned,
        Q: Future<Output = Result<T, StoreError>>,
    {
        if !self.config.read_fallback {
            return Err(Arc::new(FallbackError::Off));
        }
        // Joined by a character no id holds.
        let key = std::iter::once(view)
            .chain(scope.iter().copied())
            .collect::<Vec<_>>()
            .join("\n");
        let wait = Duration::from_millis(self.config.read_fallback_wait_ms);
        let made = self.cache.try_get_with(key, async {
            // Never closed; a timeout is a busy Postgres.
            let Ok(Ok(_permit)) = tokio::time::timeout(wait, self.queries.acquire()).await else {
                return Err(FallbackError::Busy(self.config.read_fallback_max_queries));
            };
            metrics::counter!("tally_ingest_fallback_queries_total", "view" => view).increment(1);
            let answer = query.await?;
            Ok(Arc::new(serde_json::to_value(answer)?))
        });
        // An error is shared by everyone who waited for the same answer.
        let value = made.await?;
        metrics::counter!("tally_ingest_fallback_reads_total", "view" => view).increment(1);
        T::deserialize(&*value).map_err(|e| Arc::new(e.into()))
    }
}

/// Where an answer came from; only a fallback answer says so (`"source": "postgres"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Redis,
    Postgres,
}

impl Source {
    /// Marks `answer` (a JSON object) with its source when it is not the usual one.
    pub fn mark(self, mut answer: serde_json::Value) -> serde_json::Value {
        if self == Source::Postgres
            && let Some(fields) = answer.as_object_mut()
        {
            fields.insert("source".into(), "postgres".into());
        }
        answer
    }
}
