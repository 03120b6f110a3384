//! The winners' email outbox (migration 0020): claiming due emails for jobs, taking them
//! under their lease, and recording each attempt. Rows are made where their webhook message
//! is (`tally_schema::webhooks::record`).

use super::{PgStore, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// An email to send, as a job took it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TakenEmail {
    pub id: String,
    pub tournament: String,
    pub user_id: String,
    pub event_type: String,
    pub deadline: Option<DateTime<Utc>>,
    /// Attempts before this one.
    pub attempts: i32,
    pub email: String,
    pub time_zone: Option<String>,
    /// The tournament's definition (JSON): its email settings and title.
    pub definition: String,
}

/// How one email went: sent, or the error and when to try again (`None`: never).
#[derive(Clone, Debug)]
pub struct EmailOutcome {
    pub id: String,
    pub sent: bool,
    pub retry_after: Option<Duration>,
    pub error: Option<String>,
}

impl PgStore {
    /// Puts emails held past `lease` back to pending, then claims up to `limit` due ones:
    /// `(id, lease)`.
    pub async fn claim_emails(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        sqlx::query(include_str!("../../queries/email_requeue_stale.sql"))
            .bind(lease.as_secs_f64())
            .execute(self.pool())
            .await?;
        Ok(
            sqlx::query_as(include_str!("../../queries/email_claim.sql"))
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Takes the emails a job was handed that are still under that lease (renewing it).
    pub async fn take_emails(
        &self,
        handed: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<TakenEmail>, StoreError> {
        let ids: Vec<&str> = handed.iter().map(|(id, _)| id.as_str()).collect();
        let leases: Vec<DateTime<Utc>> = handed.iter().map(|(_, at)| *at).collect();
        Ok(sqlx::query_as(include_str!("../../queries/email_take.sql"))
            .bind(ids)
            .bind(leases)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn record_emails(&self, outcomes: &[EmailOutcome]) -> Result<(), StoreError> {
        sqlx::query(include_str!("../../queries/email_record.sql"))
            .bind(outcomes.iter().map(|o| o.id.as_str()).collect::<Vec<_>>())
            .bind(outcomes.iter().map(|o| o.sent).collect::<Vec<_>>())
            .bind(
                outcomes
                    .iter()
                    .map(|o| o.retry_after.map(|d| d.as_secs_f64()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                outcomes
                    .iter()
                    .map(|o| o.error.as_deref())
                    .collect::<Vec<_>>(),
            )
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
