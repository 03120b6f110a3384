//! The lottery's row (`lottery_draws`, made by ingest when a lottery is defined): which draws
//! are due and claimed, the lock a draw runs under, the registrant list it freezes and the
//! audit record it stores.

use super::{PgStore, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, Transaction};
use tally_schema::lottery::{DrawResult, Registrant};
use tally_schema::resources::{Resource, ResourceKind, Tournament};

/// The draw's row, as a locked draw reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct DrawRow {
    pub seed: Vec<u8>,
    pub drawn_at: Option<DateTime<Utc>>,
    pub winners: Option<String>,
    pub waitlist: Option<String>,
    pub statuses_published: bool,
    /// v2 lotteries only.
    pub pseudonym_key: Option<Vec<u8>>,
    /// The committed rules (v2).
    pub rules: Option<String>,
}

impl DrawRow {
    /// The stored winners and waitlist of a drawn lottery.
    pub fn drawn_lists(&self) -> (Vec<String>, Vec<String>) {
        let parse = |v: &Option<String>| -> Vec<String> {
            serde_json::from_str(v.as_deref().unwrap_or("[]")).unwrap_or_default()
        };
        (parse(&self.winners), parse(&self.waitlist))
    }
}

/// A draw in progress: the transaction holding the row lock. Dropped without
/// [`DrawLock::record`], it rolls back and the lock goes.
pub struct DrawLock {
    tx: Transaction<'static, Postgres>,
    tournament: String,
    pub row: DrawRow,
}

fn tournaments(rows: Vec<(String, String)>) -> Result<Vec<Tournament>, StoreError> {
    super::definitions(ResourceKind::Tournament, rows, |r| match r {
        Resource::Tournament(t) => Some(t),
        _ => None,
    })
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Plain maps and lists of strings serialize without fail.
    serde_json::to_string(value).expect("plain values serialize")
}

impl PgStore {
    /// Lottery tournaments: those not drawn yet, or (with `drawn`) every one.
    pub async fn lottery_tournaments(&self, drawn: bool) -> Result<Vec<Tournament>, StoreError> {
        let rows = sqlx::query_as(include_str!("../../queries/lottery_tournaments.sql"))
            .bind(drawn)
            .fetch_all(self.pool())
            .await?;
        tournaments(rows)
    }

    /// Lottery tournaments whose drawn statuses are all on the stream.
    pub async fn published_lotteries(&self) -> Result<Vec<Tournament>, StoreError> {
        let rows = sqlx::query_as(include_str!("../../queries/lottery_published.sql"))
            .fetch_all(self.pool())
            .await?;
        tournaments(rows)
    }

    /// Tournaments with withdrawals, each with the stream sequence of its latest.
    pub async fn tournaments_with_withdrawals(&self) -> Result<Vec<(Tournament, i64)>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as(include_str!("../../queries/first_come_withdrawals.sql"))
                .fetch_all(self.pool())
                .await?;
        let latest: Vec<i64> = rows.iter().map(|(_, _, seq)| *seq).collect();
        let found = tournaments(rows.into_iter().map(|(id, d, _)| (id, d)).collect())?;
        // Decoded in the rows' order.
        Ok(found.into_iter().zip(latest).collect())
    }

    /// A first-come tournament's registrants who moved up into one of its `capacity` places
    /// and were not announced yet, with the place each holds.
    pub async fn first_come_promotions(
        &self,
        tournament: &str,
        capacity: u32,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as(include_str!("../../queries/first_come_promotions.sql"))
                .bind(tournament)
                .bind(i64::from(capacity))
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Claims a draw job for `tournament`: false when drawn, or claimed within five minutes.
    pub async fn claim_draw(&self, tournament: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as(include_str!("../../queries/lottery_claim.sql"))
                .bind(tournament)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.is_some())
    }

    /// Locks the draw's row; `None` when the tournament has no committed seed.
    pub async fn lock_draw(&self, tournament: &str) -> Result<Option<DrawLock>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row: Option<DrawRow> = sqlx::query_as(include_str!("../../queries/lottery_lock.sql"))
            .bind(tournament)
            .fetch_optional(&mut *tx)
            .await?;
        Ok(row.map(|row| DrawLock {
            tx,
            tournament: tournament.to_owned(),
            row,
        }))
    }

    /// Every registrant's drawn status is on the stream.
    pub async fn mark_statuses_published(&self, tournament: &str) -> Result<(), StoreError> {
        sqlx::query(include_str!("../../queries/lottery_published_mark.sql"))
            .bind(tournament)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

impl DrawLock {
    /// The registrants to freeze, read under the lock: each user once, with the group of
    /// their first registration.
    pub async fn registrants(&mut self) -> Result<Vec<Registrant>, StoreError> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as(include_str!("../../queries/lottery_registrants.sql"))
                .bind(&self.tournament)
                .fetch_all(&mut *self.tx)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(user, group)| Registrant { user, group })
            .collect())
    }

    /// Stores the audit record and releases the lock.
    pub async fn record(
        mut self,
        result: &DrawResult,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let public = result.public.as_ref();
        sqlx::query(include_str!("../../queries/lottery_record.sql"))
            .bind(&self.tournament)
            .bind(at)
            .bind(result.outcome.digest.as_slice())
            .bind(result.capacity.map(|c| c as i32))
            .bind(to_json(&result.weights))
            .bind(to_json(&result.registrants))
            .bind(to_json(&result.outcome.winners))
            .bind(to_json(&result.outcome.waitlist))
            .bind(public.map(|p| to_json(&p.registrants)))
            .bind(public.map(|p| to_json(&p.winners)))
            .bind(public.map(|p| to_json(&p.waitlist)))
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
