//! What `poll.closed` and `tournament.final` are made of: closed polls, tournaments whose
//! matches are all final, their final results from the stored events, and which of those
//! messages are recorded already.

use super::{PgStore, StoreError};
use chrono::{DateTime, Utc};
use tally_schema::resources::{Poll, Resource, ResourceKind, ScoreEffect, Tournament};

impl PgStore {
    /// Polls whose window closed before `before`.
    pub async fn closed_polls(&self, before: DateTime<Utc>) -> Result<Vec<Poll>, StoreError> {
        let rows = sqlx::query_as(include_str!("../../queries/closed_polls.sql"))
            .bind(before)
            .fetch_all(self.pool())
            .await?;
        super::definitions(ResourceKind::Poll, rows, |r| match r {
            Resource::Poll(p) => Some(p),
            _ => None,
        })
    }

    /// Tournaments whose listed matches are all final.
    pub async fn final_tournaments(&self) -> Result<Vec<Tournament>, StoreError> {
        let rows = sqlx::query_as(include_str!("../../queries/final_tournaments.sql"))
            .fetch_all(self.pool())
            .await?;
        super::definitions(ResourceKind::Tournament, rows, |r| match r {
            Resource::Tournament(t) => Some(t),
            _ => None,
        })
    }

    /// A poll's votes per option, with 0 for each listed option nobody holds.
    pub async fn poll_votes(&self, poll: &Poll) -> Result<Vec<(String, i64)>, StoreError> {
        let mut votes: Vec<(String, i64)> =
            sqlx::query_as(include_str!("../../queries/closing_poll_votes.sql"))
                .bind(poll.id.as_str())
                .fetch_all(self.pool())
                .await?;
        for option in &poll.options {
            if !votes.iter().any(|(o, _)| o == option.as_str()) {
                votes.push((option.to_string(), 0));
            }
        }
        Ok(votes)
    }

    /// A tournament's scores in stream order, with how each combines.
    pub async fn scores(
        &self,
        tournament: &str,
    ) -> Result<Vec<(String, ScoreEffect, i64)>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as(include_str!("../../queries/closing_scores.sql"))
                .bind(tournament)
                .fetch_all(self.pool())
                .await?;
        rows.into_iter()
            .map(|(team, effect, points)| {
                let effect = ScoreEffect::parse(&effect).ok_or_else(|| StoreError::Corrupt {
                    what: format!("score of {team} in {tournament}"),
                    reason: format!("unknown effect '{effect}'"),
                })?;
                Ok((team, effect, points))
            })
            .collect()
    }

    /// Which of `ids` are recorded messages.
    pub async fn known_messages(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as(include_str!("../../queries/webhook_messages_known.sql"))
                .bind(ids)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
