//! The ranking job: on a cron schedule (apalis-cron), every arena whose votes changed since
//! its last fit is refitted with Bradley–Terry and stored in Postgres (`arena_rankings`,
//! `arena_ranking_runs`) and in Redis (one JSON value the read API serves beside Elo).
//! Running it twice, or on two workers at once, stores the same result.

use super::bradley_terry::{Cell, FitSettings, Rated, fit_with_intervals};
use crate::store::{PgStore, StoreError};
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::Serialize;
use std::collections::HashMap;
use tally_schema::redis_keys::Keys;

#[derive(Debug, thiserror::Error)]
pub enum RankError {
    #[error(transparent)]
    Db(#[from] StoreError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// How rankings are fitted.
#[derive(Clone, Debug, clap::Args)]
pub struct RankingConfig {
    /// When the job runs (cron with seconds: `sec min hour day month weekday`).
    #[arg(long, env = "TALLY_RANKING_SCHEDULE", default_value = "0 * * * * *")]
    pub ranking_schedule: String,
    /// Bootstrap replicates for the confidence intervals.
    #[arg(long, env = "TALLY_RANKING_REPLICATES", default_value_t = 200)]
    pub ranking_replicates: usize,
    /// Prior pseudo-count that keeps an item without wins finite.
    #[arg(long, env = "TALLY_RANKING_ALPHA", default_value_t = 0.1)]
    pub ranking_alpha: f64,
}

impl Default for RankingConfig {
    fn default() -> Self {
        Self {
            ranking_schedule: "0 * * * * *".into(),
            ranking_replicates: 200,
            ranking_alpha: 0.1,
        }
    }
}

/// One item in a stored ranking.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RankedItem {
    pub rank: usize,
    pub id: String,
    pub rating: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub wins: i64,
    pub losses: i64,
}

/// A fitted arena, as stored and served.
#[derive(Clone, Debug, Serialize)]
pub struct ArenaRanking {
    pub arena: String,
    pub method: &'static str,
    pub fitted_at: DateTime<Utc>,
    pub votes: i64,
    pub last_seq: i64,
    pub confidence: f64,
    pub replicates: usize,
    pub items: Vec<RankedItem>,
}

pub struct Ranker {
    pub store: PgStore,
    /// Connected per run: the writer must not depend on Redis being up.
    pub redis: redis::Client,
    pub keys: Keys,
    pub config: RankingConfig,
}

const CONFIDENCE: f64 = 0.95;

impl Ranker {
    /// Refits every arena with votes newer than its last fit; returns how many it fitted.
    #[tracing::instrument(name = "rank_arenas", skip_all)]
    pub async fn run_once(&self) -> Result<usize, RankError> {
        let stale = self.store.stale_arenas().await?;
        for arena in &stale {
            let ranking = self.fit_arena(arena).await?;
            tracing::info!(
                arena,
                votes = ranking.votes,
                items = ranking.items.len(),
                "Arena ranked."
            );
        }
        metrics::counter!("tally_workers_rankings_fitted_total").increment(stale.len() as u64);
        Ok(stale.len())
    }

    /// Fits one arena from all its votes and stores the result.
    pub async fn fit_arena(&self, arena: &str) -> Result<ArenaRanking, RankError> {
        let snapshot = self.store.pair_counts(arena).await?;
        let ranking = self.rank(arena, &snapshot.counts, snapshot.last_seq);
        snapshot.store(&ranking).await?;
        let mut redis = self.redis.get_multiplexed_async_connection().await?;
        let json = serde_json::to_string(&ranking).expect("rankings serialize");
        let _: () = redis.set(self.keys.bradley_terry(arena), json).await?;
        Ok(ranking)
    }

    fn rank(&self, arena: &str, rows: &[(String, String, i64)], last_seq: i64) -> ArenaRanking {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        for (winner, loser, _) in rows {
            for name in [winner.as_str(), loser.as_str()] {
                index.entry(name).or_insert_with(|| {
                    names.push(name);
                    names.len() - 1
                });
            }
        }
        let (mut wins, mut losses) = (vec![0; names.len()], vec![0; names.len()]);
        let mut cells = Vec::with_capacity(rows.len());
        for (winner, loser, count) in rows {
            let (w, l) = (index[winner.as_str()], index[loser.as_str()]);
            wins[w] += count;
            losses[l] += count;
            cells.push(Cell {
                winner: w,
                loser: l,
                count: *count as f64,
            });
        }
        let settings = FitSettings {
            alpha: self.config.ranking_alpha,
            ..FitSettings::default()
        };
        // Seeded by the arena and the votes covered: the same votes give the same intervals.
        let seed = last_seq as u64 ^ fnv1a(arena);
        let rated = fit_with_intervals(
            names.len(),
            &cells,
            settings,
            self.config.ranking_replicates,
            CONFIDENCE,
            seed,
        )
        .unwrap_or_default();
        let mut items: Vec<RankedItem> = rated
            .into_iter()
            .enumerate()
            .map(
                |(
                    i,
                    Rated {
                        rating,
                        ci_low,
                        ci_high,
                    },
                )| RankedItem {
                    rank: 0,
                    id: names[i].to_owned(),
                    rating,
                    ci_low,
                    ci_high,
                    wins: wins[i],
                    losses: losses[i],
                },
            )
            .collect();
        items.sort_by(|a, b| b.rating.total_cmp(&a.rating).then_with(|| a.id.cmp(&b.id)));
        for (i, item) in items.iter_mut().enumerate() {
            item.rank = i + 1;
        }
        ArenaRanking {
            arena: arena.to_owned(),
            method: "bradley_terry",
            fitted_at: Utc::now(),
            votes: rows.iter().map(|r| r.2).sum(),
            last_seq,
            confidence: CONFIDENCE,
            replicates: self.config.ranking_replicates,
            items,
        }
    }
}

/// A stable (not randomised per process) hash of the arena id, for the bootstrap seed.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The apalis handler of each cron tick.
pub async fn rank_tick(
    _tick: apalis_cron::Tick,
    ranker: apalis::prelude::Data<std::sync::Arc<Ranker>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    ranker.run_once().await?;
    Ok(())
}
