//! Recomputes a derived store from Postgres, the system of record: Redis (clears the sink's
//! keys, replays the stored events in stream order through the same batch script, and leaves
//! the applied sequence at the last one, so the live sink resumes right after it) or
//! ClickHouse (drops and recreates its tables and views, then inserts the stored events in
//! stream order as the sink does; the sink resumes after the highest sequence stored).
//!
//! Run it with that sink stopped and the Postgres writer caught up
//! (`tally_kit::consumer::Progress::caught_up`).

use crate::analytics::{ClickHouseError, ClickHouseSink};
use crate::leaderboard::{RedisError, RedisSink};
use sqlx::PgPool;
use tally_schema::StoredEvent;
use tally_schema::rows::{BadRow, StoredRow};

const PAGE: i64 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error(transparent)]
    BadRow(#[from] BadRow),
}

/// What a rebuild did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    pub events: u64,
    pub last_seq: u64,
}

pub async fn rebuild(pool: &PgPool, sink: &RedisSink) -> Result<Rebuilt, RebuildError> {
    let cleared = sink.clear().await?;
    tracing::info!(
        keys = cleared,
        prefix = sink.keys().prefix(),
        "Cleared the Redis views."
    );
    replay(pool, async |page| Ok(sink.apply(&page).await?.applied)).await
}

/// ClickHouse's `database` from Postgres.
pub async fn rebuild_clickhouse(
    pool: &PgPool,
    sink: &ClickHouseSink,
    database: &str,
) -> Result<Rebuilt, RebuildError> {
    sink.clear(database).await?;
    tracing::info!(database, "Dropped and recreated the ClickHouse tables.");
    replay(pool, async |page| Ok(sink.insert(&page).await?.applied)).await
}

/// Every stored event, a page at a time in stream order, through `apply`.
async fn replay<F>(pool: &PgPool, mut apply: F) -> Result<Rebuilt, RebuildError>
where
    F: AsyncFnMut(Vec<StoredEvent>) -> Result<u64, RebuildError>,
{
    let mut after = 0i64;
    let mut events = 0u64;
    loop {
        let rows: Vec<StoredRow> = sqlx::query_as(include_str!("../queries/events_after.sql"))
            .bind(after)
            .bind(PAGE)
            .fetch_all(pool)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.stream_seq;
        let page = rows
            .into_iter()
            .map(StoredRow::into_stored_event)
            .collect::<Result<Vec<_>, _>>()?;
        events += apply(page).await?;
    }
    Ok(Rebuilt {
        events,
        last_seq: u64::try_from(after).unwrap_or(0),
    })
}
