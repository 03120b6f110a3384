//! The workers' one way to Postgres, the system of record; every statement is a file under
//! `workers/queries/` (the event inserts are schema's, `tally_schema::rows`).
//!
//! - here: connection, migrations and the idempotent batch insert. A batch is written in one
//!   transaction with one `INSERT … SELECT FROM UNNEST(arrays)` per event kind (never one
//!   statement per event); `ON CONFLICT (event_id) DO NOTHING` makes a redelivered event a
//!   no-op in the same transaction that would have inserted it.
//! - [`channels`]: broadcast channels with an upstream to poll.
//! - [`closings`]: closed polls and finished tournaments, with their final results.
//! - [`email`]: the winners' email outbox: due emails and their attempts.
//! - [`draws`]: the lottery's row: claims, the lock, the frozen list, the audit record.
//! - [`media`]: thumbnail jobs' state per upload.
//! - [`rankings`]: pair-vote counts in and fitted rankings out.
//! - [`webhooks`]: endpoints, due deliveries and their attempts.

pub mod channels;
pub mod closings;
pub mod draws;
pub mod email;
pub mod media;
pub mod rankings;
pub mod webhooks;

use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;
use tally_schema::resources::{Resource, ResourceKind};
use tally_schema::rows::Rows;
use tally_schema::webhooks::Message;
use tally_schema::{Event, StoredEvent};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach Postgres: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("Postgres: {0}")]
    Write(#[from] sqlx::Error),
    #[error("stored {what} is not valid: {reason}")]
    Corrupt { what: String, reason: String },
}

/// `(id, definition JSON)` rows of one kind of resource, decoded; `pick` takes the kind's
/// definition out of its [`Resource`]. A row that does not decode as one is corrupt.
fn definitions<T>(
    kind: ResourceKind,
    rows: Vec<(String, String)>,
    pick: fn(Resource) -> Option<T>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter()
        .map(|(id, json)| {
            let decoded = Resource::decode(kind, json.as_bytes()).map_err(|e| e.to_string());
            decoded
                .and_then(|r| pick(r).ok_or_else(|| format!("not a {}", kind.as_str())))
                .map_err(|reason| StoreError::Corrupt {
                    what: format!("{} {id}", kind.as_str()),
                    reason,
                })
        })
        .collect()
}

/// What one batch write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows that were new.
    pub inserted: u64,
    /// Events already present (redeliveries, retried idempotency keys).
    pub duplicates: u64,
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects (checking the connection at once) and applies the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(StoreError::Connect)?;
        tally_schema::MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// A store over a pool whose schema is migrated already.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes a batch in one transaction. Safe to repeat: already stored events are skipped.
    #[tracing::instrument(name = "pg_write", skip_all, fields(events = events.len()))]
    pub async fn write(&self, events: &[StoredEvent]) -> Result<Written, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for (kind, rows, insert) in Rows::new(events).inserts() {
            inserted += insert.execute(&mut *tx).await?.rows_affected();
            metrics::counter!("tally_workers_rows_written_total", "kind" => kind.as_str())
                .increment(rows as u64);
        }
        // The webhooks a status change makes commit with it (or, redelivered, exist already).
        // A promotion of someone who withdrew just before (in stream order) promotes nobody:
        // its change tells no promotion.
        let gone = promotions_of_the_withdrawn(&mut tx, events).await?;
        let messages: Vec<Message> = events
            .iter()
            .filter_map(|stored| match &stored.envelope.event {
                Event::RegistrationStatus(change) => {
                    let mut change = change.clone();
                    if gone.contains(&stored.stream_seq) {
                        change.promoted = None;
                    }
                    Some(Message::from_status(
                        &change,
                        stored.envelope.id,
                        stored.envelope.received_at,
                    ))
                }
                _ => None,
            })
            .flatten()
            .collect();
        let deliveries = tally_schema::webhooks::record(&messages, &mut tx).await?;
        metrics::counter!("tally_workers_webhook_deliveries_made_total").increment(deliveries);
        tx.commit().await?;
        Ok(Written {
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }
}

/// The stream sequences of the batch's releases and hand-ons whose promoted user had
/// withdrawn earlier in the stream (this batch's rows are in `tx` already).
async fn promotions_of_the_withdrawn(
    tx: &mut sqlx::PgConnection,
    events: &[StoredEvent],
) -> Result<std::collections::HashSet<u64>, StoreError> {
    let mut tournaments = Vec::new();
    let mut users = Vec::new();
    let mut seqs = Vec::new();
    for stored in events {
        if let Event::RegistrationStatus(change) = &stored.envelope.event
            && let Some(promoted) = &change.promoted
        {
            tournaments.push(change.tournament.as_str());
            users.push(promoted.as_str());
            seqs.push(stored.stream_seq as i64);
        }
    }
    if seqs.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(String, String, i64)> = sqlx::query_as(include_str!(
        "../../queries/promotions_of_the_withdrawn.sql"
    ))
    .bind(&tournaments)
    .bind(&users)
    .bind(&seqs)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(|(_, _, seq)| seq as u64).collect())
}
