//! Thumbnail jobs' state per upload (`media_status`): queued, then done or failed.

use super::{PgStore, StoreError};
use tally_schema::status::MediaStatus;

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

    /// Records a thumbnail job's result: `Ok(variants JSON)` or `Err(reason)`.
    pub async fn finish_thumbnails(
        &self,
        media: &str,
        result: Result<String, String>,
    ) -> Result<(), StoreError> {
        let (status, reason, variants) = match result {
            Ok(variants) => (MediaStatus::Done, None, Some(variants)),
            Err(reason) => (MediaStatus::Failed, Some(reason), None),
        };
        sqlx::query(include_str!("../../queries/media_finish.sql"))
            .bind(media)
            .bind(status.as_str())
            .bind(reason)
            .bind(variants)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
