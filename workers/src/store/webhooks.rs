//! Webhook deliveries (migration 0019): claiming the due ones for jobs, taking them under
//! their lease, and recording each attempt with the endpoint's health. Messages themselves
//! are recorded where what they report is written (`tally_schema::webhooks::record`).

use super::{PgStore, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One delivery handed to a job: the lease (`queued_at`) is what the job must still hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Claimed {
    pub message_id: String,
    pub endpoint_id: String,
    pub queued_at: DateTime<Utc>,
}

/// A delivery a job took: what to send, where, signed with which secrets.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Taken {
    pub message_id: String,
    pub endpoint_id: String,
    /// Attempts before this one.
    pub attempts: i32,
    /// The lease, as the job renewed it.
    pub queued_at: DateTime<Utc>,
    pub body: String,
    pub url: String,
    pub secret: String,
    /// The secret before the last rotation, while its overlap lasts.
    pub previous_secret: Option<String>,
}

/// How one attempt went.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub message_id: String,
    pub endpoint_id: String,
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    pub excerpt: Option<String>,
    pub delivered: bool,
    /// When not delivered: wait this long before the next attempt, or `None` when the retry
    /// schedule is spent (the delivery fails).
    pub retry_after: Option<Duration>,
}

/// What one pruning call deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub messages: u64,
    pub attempts: u64,
    pub emails: u64,
}

impl PgStore {
    /// Deletes what was told longer than `retention` ago, at most `limit` of each kind: finished
    /// messages with their deliveries (a message still pending for some endpoint stays), logged
    /// attempts, finished emails.
    pub async fn prune_notices(
        &self,
        retention: Duration,
        limit: i64,
    ) -> Result<Pruned, StoreError> {
        let secs = retention.as_secs_f64();
        let mut tx = self.pool().begin().await?;
        let ids: Vec<(String,)> =
            sqlx::query_as(include_str!("../../queries/prune_webhook_messages.sql"))
                .bind(secs)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
        let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
        sqlx::query(include_str!("../../queries/prune_webhook_deliveries.sql"))
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let messages = sqlx::query(include_str!("../../queries/prune_webhook_message_rows.sql"))
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let attempts = sqlx::query(include_str!("../../queries/prune_webhook_attempts.sql"))
            .bind(secs)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let emails = sqlx::query(include_str!("../../queries/prune_emails.sql"))
            .bind(secs)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Pruned {
            messages,
            attempts,
            emails,
        })
    }

    /// Records messages on their own (what they report is not in Postgres: a reminder).
    pub async fn record_messages(
        &self,
        messages: &[tally_schema::webhooks::Message],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        tally_schema::webhooks::record(messages, &mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts deliveries held past `lease` back to pending, then claims up to `limit` due ones,
    /// at most `per_endpoint` in flight for each healthy endpoint (one for a failing one).
    pub async fn claim_webhook_deliveries(
        &self,
        limit: u32,
        per_endpoint: u32,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let requeued = sqlx::query(include_str!("../../queries/webhooks_requeue_stale.sql"))
            .bind(lease.as_secs_f64())
            .execute(self.pool())
            .await?
            .rows_affected();
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "Webhook deliveries outlived their lease; queued again."
            );
            metrics::counter!("tally_workers_webhook_requeued_total").increment(requeued);
        }
        Ok(
            sqlx::query_as(include_str!("../../queries/webhooks_claim.sql"))
                .bind(i64::from(limit))
                .bind(i64::from(per_endpoint))
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Takes the deliveries a job was handed that are still under that lease (renewing it).
    pub async fn take_webhook_deliveries(
        &self,
        handed: &[Claimed],
    ) -> Result<Vec<Taken>, StoreError> {
        let messages: Vec<&str> = handed.iter().map(|c| c.message_id.as_str()).collect();
        let endpoints: Vec<&str> = handed.iter().map(|c| c.endpoint_id.as_str()).collect();
        let leases: Vec<DateTime<Utc>> = handed.iter().map(|c| c.queued_at).collect();
        Ok(
            sqlx::query_as(include_str!("../../queries/webhooks_take.sql"))
                .bind(messages)
                .bind(endpoints)
                .bind(leases)
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Records attempts and the endpoints' health in one transaction, and gives back the
    /// deliveries a job did not attempt (due again, no attempt counted); `schedule` is the retry
    /// schedule (an endpoint failing `n` times in a row backs off by its `n`th step, the last
    /// one thereafter) and `disable_after` how long an endpoint may fail before it is
    /// disabled. Returns the endpoints this disabled.
    pub async fn record_webhook_attempts(
        &self,
        outcomes: &[Outcome],
        unattempted: &[Claimed],
        schedule: &[Duration],
        disable_after: Duration,
    ) -> Result<Vec<String>, StoreError> {
        use std::collections::BTreeMap;
        let mut tx = self.pool().begin().await?;
        sqlx::query(include_str!("../../queries/webhooks_record.sql"))
            .bind(
                outcomes
                    .iter()
                    .map(|o| o.message_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                outcomes
                    .iter()
                    .map(|o| o.endpoint_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                outcomes
                    .iter()
                    .map(|o| o.status_code.map(i32::from))
                    .collect::<Vec<_>>(),
            )
            .bind(
                outcomes
                    .iter()
                    .map(|o| o.latency.as_millis().min(i32::MAX as u128) as i32)
                    .collect::<Vec<_>>(),
            )
            .bind(texts(outcomes, |o| o.error.as_ref()))
            .bind(texts(outcomes, |o| o.excerpt.as_ref()))
            .bind(outcomes.iter().map(|o| o.delivered).collect::<Vec<_>>())
            .bind(
                outcomes
                    .iter()
                    .map(|o| o.retry_after.map(|d| d.as_secs_f64()))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
        if !unattempted.is_empty() {
            let messages: Vec<&str> = unattempted.iter().map(|c| c.message_id.as_str()).collect();
            let endpoints: Vec<&str> = unattempted.iter().map(|c| c.endpoint_id.as_str()).collect();
            let leases: Vec<DateTime<Utc>> = unattempted.iter().map(|c| c.queued_at).collect();
            sqlx::query(include_str!("../../queries/webhooks_release.sql"))
                .bind(messages)
                .bind(endpoints)
                .bind(leases)
                .execute(&mut *tx)
                .await?;
        }
        // Per endpoint: (delivered, failed).
        let mut health: BTreeMap<&str, (i32, i32)> = BTreeMap::new();
        for o in outcomes {
            let entry = health.entry(o.endpoint_id.as_str()).or_default();
            match o.delivered {
                true => entry.0 += 1,
                false => entry.1 += 1,
            }
        }
        let schedule: Vec<f64> = schedule.iter().map(Duration::as_secs_f64).collect();
        let changed: Vec<(String, bool)> =
            sqlx::query_as(include_str!("../../queries/webhooks_health.sql"))
                .bind(health.keys().copied().collect::<Vec<_>>())
                .bind(health.values().map(|h| h.0).collect::<Vec<_>>())
                .bind(health.values().map(|h| h.1).collect::<Vec<_>>())
                .bind(schedule)
                .bind(disable_after.as_secs_f64())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(changed
            .into_iter()
            .filter_map(|(id, disabled)| disabled.then_some(id))
            .collect())
    }
}

/// One optional text column of the outcomes, for an `UNNEST` array.
fn texts(outcomes: &[Outcome], field: fn(&Outcome) -> Option<&String>) -> Vec<Option<&str>> {
    outcomes
        .iter()
        .map(|o| field(o).map(String::as_str))
        .collect()
}
