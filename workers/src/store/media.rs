//! Thumbnail jobs' state per upload (`media_status`): queued, then done or failed.

use super::{PgStore, StoreError};
use chrono::Utc;
use std::collections::HashMap;
use tally_media::Variant;
use tally_schema::ids::{MediaId, TournamentId};
use tally_schema::status::MediaStatus;
use tally_schema::webhooks::Message;

impl PgStore {
    /// (media, object key) of each upload to queue a thumbnail job for: those nobody has
    /// queued yet, and those queued more than ten minutes ago without a result (the job was
    /// lost between claim and push, or its worker died).
    pub async fn claim_thumbnail_jobs(&self) -> Result<Vec<(String, String)>, StoreError> {
        let queued = MediaStatus::Queued.as_str();
        let mut rows: Vec<(String, String)> =
            sqlx::query_as(include_str!("../../queries/media_queue_new.sql"))
                .bind(queued)
                .fetch_all(self.pool())
                .await?;
        let stale: Vec<(String, String)> =
            sqlx::query_as(include_str!("../../queries/media_requeue_stale.sql"))
                .bind(queued)
                .fetch_all(self.pool())
                .await?;
        rows.extend(stale);
        Ok(rows)
    }

    /// Records a thumbnail job's result, `Ok(variants)` or `Err(reason)`, and the webhook
    /// that reports it, in one transaction.
    pub async fn finish_thumbnails(
        &self,
        media: &str,
        result: Result<&HashMap<&'static str, Variant>, String>,
    ) -> Result<(), StoreError> {
        let (status, reason, variants) = match &result {
            Ok(variants) => {
                let json = serde_json::to_string(variants).expect("variants serialize");
                (MediaStatus::Done, None, Some(json))
            }
            Err(reason) => (MediaStatus::Failed, Some(reason.clone()), None),
        };
        let mut tx = self.pool().begin().await?;
        let tournament: Option<(Option<String>,)> =
            sqlx::query_as(include_str!("../../queries/media_finish.sql"))
                .bind(media)
                .bind(status.as_str())
                .bind(reason)
                .bind(variants)
                .fetch_optional(&mut *tx)
                .await?;
        let ids = tournament.and_then(|(t,)| t).and_then(|t| {
            let tournament = TournamentId::try_from(t).ok()?;
            Some((tournament, MediaId::try_from(media.to_owned()).ok()?))
        });
        if let Some((tournament, media)) = ids {
            let names = result.map(|v| v.keys().map(|k| k.to_string()).collect());
            let message = Message::media(&tournament, &media, names, Utc::now());
            tally_schema::webhooks::record(&[message], &mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
