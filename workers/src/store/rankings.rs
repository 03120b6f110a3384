//! Rankings: which arenas changed since their last fit, the pair-vote counts a fit reads and
//! the ranking it stores, in one snapshot.

use super::{PgStore, StoreError};
use crate::ranking::job::{ArenaRanking, RankedItem};
use sqlx::{Postgres, Transaction};

/// The votes of one arena as of one snapshot; storing the fit commits it.
pub struct PairCounts {
    tx: Transaction<'static, Postgres>,
    /// (winner, loser, votes).
    pub counts: Vec<(String, String, i64)>,
    /// The last stream sequence the counts cover.
    pub last_seq: i64,
}

impl PgStore {
    /// Arenas with votes newer than their last fit.
    pub async fn stale_arenas(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(include_str!("../../queries/rankings_stale.sql"))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(|(a,)| a).collect())
    }

    /// The arena's pair-vote counts and the sequence they cover, from one REPEATABLE READ
    /// snapshot.
    pub async fn pair_counts(&self, arena: &str) -> Result<PairCounts, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        let counts = sqlx::query_as(include_str!("../../queries/rankings_pair_counts.sql"))
            .bind(arena)
            .fetch_all(&mut *tx)
            .await?;
        let (last_seq,): (Option<i64>,) =
            sqlx::query_as(include_str!("../../queries/rankings_last_seq.sql"))
                .bind(arena)
                .fetch_one(&mut *tx)
                .await?;
        Ok(PairCounts {
            tx,
            counts,
            last_seq: last_seq.unwrap_or(0),
        })
    }
}

impl PairCounts {
    /// Replaces the arena's stored ranking with `r`, in the snapshot's transaction.
    pub async fn store(mut self, r: &ArenaRanking) -> Result<(), StoreError> {
        sqlx::query(include_str!("../../queries/rankings_clear.sql"))
            .bind(&r.arena)
            .execute(&mut *self.tx)
            .await?;
        let col = |f: fn(&RankedItem) -> f64| r.items.iter().map(f).collect::<Vec<f64>>();
        sqlx::query(include_str!("../../queries/rankings_insert.sql"))
            .bind(&r.arena)
            .bind(r.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>())
            .bind(r.items.iter().map(|i| i.rank as i32).collect::<Vec<_>>())
            .bind(col(|i| i.rating))
            .bind(col(|i| i.ci_low))
            .bind(col(|i| i.ci_high))
            .bind(r.items.iter().map(|i| i.wins).collect::<Vec<_>>())
            .bind(r.items.iter().map(|i| i.losses).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(include_str!("../../queries/rankings_run.sql"))
            .bind(&r.arena)
            .bind(r.last_seq)
            .bind(r.votes)
            .bind(r.replicates as i32)
            .bind(r.fitted_at)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
