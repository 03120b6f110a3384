//! Recomputes every Redis structure from Postgres, the system of record: clears the sink's
//! keys, replays the stored events in stream order through the same batch script, and leaves
//! the applied sequence at the last one, so the live sink resumes right after it.
//!
//! Run it with the Redis sink stopped and the Postgres writer caught up
//! (`tally_kit::consumer::Progress::caught_up`).

use crate::leaderboard::{RedisError, RedisSink};
use sqlx::PgPool;
use tally_schema::rows::{BadRow, StoredRow};

const PAGE: i64 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] RedisError),
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
        events += sink.apply(&page).await?.applied;
    }
    Ok(Rebuilt {
        events,
        last_seq: u64::try_from(after).unwrap_or(0),
    })
}
