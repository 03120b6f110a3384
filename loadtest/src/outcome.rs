//! After a burst drains: every acknowledged event is in Postgres exactly once, Redis equals
//! what Postgres implies, ClickHouse counts equal Postgres. Any mismatch is an error.

use anyhow::{Context, bail};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tally_schema::redis_keys::Keys;
use uuid::Uuid;

/// Where the outcome is read from.
#[derive(Clone, Debug, clap::Args)]
pub struct StoreArgs {
    #[arg(long, env = "TALLY_DATABASE_URL")]
    pub database_url: String,
    #[arg(
        long,
        env = "TALLY_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    #[arg(long, env = "TALLY_REDIS_PREFIX", default_value = "tally")]
    pub redis_prefix: String,
    #[arg(
        long,
        env = "TALLY_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
    #[arg(long, env = "TALLY_CLICKHOUSE_DATABASE", default_value = "tally")]
    pub clickhouse_database: String,
    /// The aggregator's /metrics, for the ingest→Redis lag.
    #[arg(long, default_value = "http://127.0.0.1:9102/metrics")]
    pub aggregator_metrics: String,
}

pub struct Stores {
    pub pg: PgPool,
    redis: redis::aio::MultiplexedConnection,
    pub keys: Keys,
    http: reqwest::Client,
    args: StoreArgs,
}

/// How long a sink may take to catch up after the burst.
const DRAIN: Duration = Duration::from_secs(120);
/// A store that gained nothing for this long is taken as drained.
const STALL: Duration = Duration::from_secs(10);

impl Stores {
    pub async fn connect(args: &StoreArgs) -> anyhow::Result<Self> {
        let pg = PgPool::connect(&args.database_url)
            .await
            .context("connect to Postgres")?;
        let redis = redis::Client::open(args.redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .context("connect to Redis")?;
        Ok(Self {
            pg,
            redis,
            keys: Keys::new(args.redis_prefix.clone()),
            http: reqwest::Client::new(),
            args: args.clone(),
        })
    }

    /// Waits for the writer, then checks `table` holds exactly `acknowledged` for `scope`.
    pub async fn postgres_exactly(
        &self,
        table: &str,
        scope_column: &str,
        scope: &str,
        acknowledged: &[Uuid],
    ) -> anyhow::Result<usize> {
        let expected: HashSet<Uuid> = acknowledged.iter().copied().collect();
        // Table and column names are this program's constants, never input.
        let sql = format!("SELECT event_id FROM {table} WHERE {scope_column} = $1");
        let started = Instant::now();
        let mut progress = (0, Instant::now());
        loop {
            let rows: Vec<(Uuid,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(scope)
                .fetch_all(&self.pg)
                .await?;
            let stored: HashSet<Uuid> = rows.iter().map(|(id,)| *id).collect();
            if rows.len() > progress.0 {
                progress = (rows.len(), Instant::now());
            }
            let drained = progress.1.elapsed() > STALL || started.elapsed() > DRAIN;
            if rows.len() >= expected.len() || drained {
                let lost = expected.difference(&stored).count();
                let unexpected = stored.difference(&expected).count();
                let duplicated = rows.len() - stored.len();
                if lost + unexpected + duplicated > 0 {
                    bail!(
                        "Postgres {table}: {lost} lost, {duplicated} duplicated, {unexpected} unexpected of {} acknowledged",
                        expected.len()
                    );
                }
                return Ok(rows.len());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until ClickHouse holds `expected` events of `kind` in `scope`.
    pub async fn clickhouse_count(
        &self,
        kind: &str,
        scope: &str,
        expected: usize,
    ) -> anyhow::Result<()> {
        let query = format!(
            "SELECT count() FROM {}.events WHERE kind = '{kind}' AND scope = '{scope}'",
            self.args.clickhouse_database
        );
        let started = Instant::now();
        loop {
            let text = self
                .http
                .post(&self.args.clickhouse_url)
                .body(query.clone())
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            let count: usize = text.trim().parse().context("ClickHouse count")?;
            if count == expected {
                return Ok(());
            }
            if count > expected || started.elapsed() > DRAIN {
                bail!("ClickHouse holds {count} {kind} events of {scope}, Postgres {expected}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `read_redis` equals `from_postgres` (both re-read each round).
    pub async fn redis_matches<T, R, P>(
        &self,
        what: &str,
        read_redis: R,
        from_postgres: P,
    ) -> anyhow::Result<T>
    where
        T: PartialEq + std::fmt::Debug,
        R: AsyncFn(&mut redis::aio::MultiplexedConnection) -> anyhow::Result<T>,
        P: AsyncFn(&PgPool) -> anyhow::Result<T>,
    {
        let mut redis = self.redis.clone();
        let started = Instant::now();
        loop {
            let (in_redis, in_postgres) = (
                read_redis(&mut redis).await?,
                from_postgres(&self.pg).await?,
            );
            if in_redis == in_postgres {
                return Ok(in_redis);
            }
            if started.elapsed() > DRAIN {
                bail!("Redis {what} {in_redis:?} differs from Postgres {in_postgres:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Cumulative counts of the Redis sink's lag histogram, by bucket bound (seconds).
    pub async fn lag_buckets(&self) -> BTreeMap<String, f64> {
        let Ok(response) = self.http.get(&self.args.aggregator_metrics).send().await else {
            return BTreeMap::new();
        };
        let text = response.text().await.unwrap_or_default();
        let mut buckets = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("tally_aggregator_lag_seconds_bucket{") else {
                continue;
            };
            if !rest.contains("sink=\"redis\"") {
                continue;
            }
            let le = rest.split("le=\"").nth(1).and_then(|s| s.split('"').next());
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(le), Some(value)) = (le, value) {
                *buckets.entry(le.to_owned()).or_insert(0.0) += value;
            }
        }
        buckets
    }
}

/// The p99 bound (ms) of the lag recorded between two scrapes: the smallest bucket bound
/// holding 99 % of the batches applied in between.
pub fn lag_p99_ms(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Option<f64> {
    let mut bounds: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            (bound, n - before.get(le).copied().unwrap_or(0.0))
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bounds.last()?.1;
    if total <= 0.0 {
        return None;
    }
    bounds
        .iter()
        .find(|(_, n)| *n >= 0.99 * total)
        .map(|(bound, _)| bound * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_p99_is_the_bucket_holding_99_percent_of_the_new_batches() {
        let before = BTreeMap::from([
            ("0.01".into(), 10.0),
            ("0.1".into(), 10.0),
            ("+Inf".into(), 10.0),
        ]);
        let after = BTreeMap::from([
            ("0.01".into(), 20.0),
            ("0.1".into(), 110.0),
            ("+Inf".into(), 110.0),
        ]);
        assert_eq!(lag_p99_ms(&before, &after), Some(100.0));
        assert_eq!(lag_p99_ms(&after, &after), None);
    }
}
