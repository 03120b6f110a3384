//! Postgres, the system of record: connection, migrations and the idempotent batch insert.
//!
//! A batch is written in one transaction with one `INSERT … SELECT FROM UNNEST(arrays)` per
//! event kind (never one statement per event); `ON CONFLICT (event_id) DO NOTHING` makes a
//! redelivered event a no-op in the same transaction that would have inserted it.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;
use tally_schema::{Event, Kind, StoredEvent};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach Postgres: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("batch insert failed: {0}")]
    Write(#[from] sqlx::Error),
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

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes a batch in one transaction. Safe to repeat: already stored events are skipped.
    #[tracing::instrument(name = "pg_write", skip_all, fields(events = events.len()))]
    pub async fn write(&self, events: &[StoredEvent]) -> Result<Written, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for kind in Kind::ALL {
            let of_kind: Vec<&StoredEvent> = events
                .iter()
                .filter(|e| e.envelope.event.kind() == kind)
                .collect();
            if !of_kind.is_empty() {
                inserted += insert_kind(&mut tx, kind, &of_kind).await?;
                metrics::counter!("tally_workers_rows_written_total", "kind" => kind.as_str())
                    .increment(of_kind.len() as u64);
            }
        }
        tx.commit().await?;
        Ok(Written {
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }
}

/// The columns every table starts with.
#[derive(Default)]
struct Common {
    ids: Vec<Uuid>,
    seqs: Vec<i64>,
    received: Vec<DateTime<Utc>>,
}

impl Common {
    fn push(&mut self, e: &StoredEvent) {
        self.ids.push(e.envelope.id);
        self.seqs
            .push(i64::try_from(e.stream_seq).unwrap_or(i64::MAX));
        self.received.push(e.envelope.received_at);
    }

    fn bind(
        self,
        sql: &'static str,
    ) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(sql)
            .bind(self.ids)
            .bind(self.seqs)
            .bind(self.received)
    }
}

async fn insert_kind(
    tx: &mut sqlx::PgConnection,
    kind: Kind,
    events: &[&StoredEvent],
) -> Result<u64, sqlx::Error> {
    let mut common = Common::default();
    let mut cols: [Vec<Option<String>>; 5] = Default::default();
    let mut numbers: Vec<i64> = Vec::with_capacity(events.len());
    for e in events {
        common.push(e);
        let text = |s: &str| Some(s.to_owned());
        let row: [Option<String>; 5] = match &e.envelope.event {
            Event::PollVote(v) => {
                // Option ids cannot contain ',' (see ids.rs), so a joined string round-trips.
                let options: Vec<&str> = v.options.iter().map(|o| o.as_str()).collect();
                [
                    text(v.poll.as_str()),
                    text(v.voter.as_str()),
                    Some(options.join(",")),
                    None,
                    None,
                ]
            }
            Event::PairVote(v) => [
                text(v.arena.as_str()),
                text(v.session.as_str()),
                text(v.winner.as_str()),
                text(v.loser.as_str()),
                None,
            ],
            Event::Score(s) => {
                numbers.push(s.points);
                [
                    text(s.tournament.as_str()),
                    text(s.match_id.as_str()),
                    text(s.team.as_str()),
                    text(s.effect.as_str()),
                    None,
                ]
            }
            Event::Registration(r) => [
                text(r.tournament.as_str()),
                text(r.user.as_str()),
                r.group.as_ref().map(|g| g.to_string()),
                None,
                None,
            ],
            Event::RegistrationStatus(s) => {
                numbers.push(s.position.map_or(0, i64::from));
                [
                    text(s.tournament.as_str()),
                    text(s.user.as_str()),
                    text(s.status.as_str()),
                    s.promoted.as_ref().map(|u| u.to_string()),
                    s.deadline.map(|d| d.to_rfc3339()),
                ]
            }
            Event::MediaUploaded(m) => {
                numbers.push(i64::try_from(m.bytes).unwrap_or(i64::MAX));
                [
                    text(m.tournament.as_str()),
                    text(m.media.as_str()),
                    Some(m.object_key.clone()),
                    Some(m.content_type.clone()),
                    m.user.as_ref().map(|u| u.to_string()),
                ]
            }
        };
        for (col, value) in cols.iter_mut().zip(row) {
            col.push(value);
        }
    }
    let [a, b, c, d, e] = cols;
    let query = match kind {
        Kind::PollVote => common
            .bind(include_str!("../queries/insert_poll_votes.sql"))
            .bind(a)
            .bind(b)
            .bind(c),
        Kind::PairVote => common
            .bind(include_str!("../queries/insert_pair_votes.sql"))
            .bind(a)
            .bind(b)
            .bind(c)
            .bind(d),
        Kind::Score => common
            .bind(include_str!("../queries/insert_scores.sql"))
            .bind(a)
            .bind(b)
            .bind(c)
            .bind(numbers)
            .bind(d),
        Kind::Registration => common
            .bind(include_str!("../queries/insert_registrations.sql"))
            .bind(a)
            .bind(b)
            .bind(c),
        Kind::RegistrationStatus => common
            .bind(include_str!("../queries/insert_registration_statuses.sql"))
            .bind(a)
            .bind(b)
            .bind(c)
            .bind(d)
            .bind(e)
            .bind(numbers),
        Kind::MediaUploaded => common
            .bind(include_str!("../queries/insert_media_uploads.sql"))
            .bind(a)
            .bind(b)
            .bind(c)
            .bind(d)
            .bind(numbers)
            .bind(e),
    };
    Ok(query.execute(&mut *tx).await?.rows_affected())
}
