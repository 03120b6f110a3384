//! Thumbnails as an apalis job on the Postgres backend: fetch the original from the media
//! object store, render the variants with [`tally_media::render`] (bounded decoding; see that
//! crate for the variants and limits) and store them beside it. A rejected image is recorded
//! as failed with its reason; storage errors retry.

use crate::store::{PgStore, StoreError};
use async_nats::jetstream::object_store::{ObjectMetadata, ObjectStore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
pub use tally_media::{Rejected, VARIANTS, Variant, render, variant_key};

/// Make the variants of one upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailJob {
    pub media: String,
    pub object_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error(transparent)]
    Db(#[from] StoreError),
    #[error("object store: {0}")]
    Store(String),
}

pub struct Thumbnailer {
    pub store: PgStore,
    pub objects: ObjectStore,
}

impl Thumbnailer {
    /// Queues a job for each upload nobody has queued yet, and again for any queued more than
    /// ten minutes ago without a result (its job was lost between claim and push, or its
    /// worker died); a job run twice writes the same variants.
    pub async fn claim_new(&self) -> Result<Vec<ThumbnailJob>, ThumbnailError> {
        let rows = self.store.claim_thumbnail_jobs().await?;
        Ok(rows
            .into_iter()
            .map(|(media, object_key)| ThumbnailJob { media, object_key })
            .collect())
    }

    #[tracing::instrument(name = "thumbnails", skip(self))]
    pub async fn process(&self, job: &ThumbnailJob) -> Result<(), ThumbnailError> {
        use tokio::io::AsyncReadExt;
        let store_err = |e: &dyn std::fmt::Display| ThumbnailError::Store(e.to_string());
        let mut object = self
            .objects
            .get(&job.object_key)
            .await
            .map_err(|e| store_err(&e))?;
        let mut original = Vec::with_capacity(object.info.size);
        object
            .read_to_end(&mut original)
            .await
            .map_err(|e| store_err(&e))?;
        // Decoding is CPU work: off the async threads.
        let rendered = tokio::task::spawn_blocking(move || render(&original))
            .await
            .unwrap_or_else(|e| Err(Rejected::Corrupt(format!("decoder panicked: {e}"))));
        let variants = match rendered {
            Ok(v) => v,
            Err(reason) => {
                tracing::warn!(media = %job.media, %reason, "Image rejected.");
                metrics::counter!("tally_workers_thumbnail_failures_total").increment(1);
                self.store
                    .finish_thumbnails(&job.media, Err(reason.to_string()))
                    .await?;
                return Ok(());
            }
        };
        for (name, variant) in &variants {
            let meta = ObjectMetadata {
                name: variant_key(&job.media, name),
                metadata: HashMap::from([(
                    "content-type".to_owned(),
                    variant.content_type.to_owned(),
                )]),
                ..Default::default()
            };
            self.objects
                .put(meta, &mut variant.data.as_slice())
                .await
                .map_err(|e| store_err(&e))?;
        }
        self.store
            .finish_thumbnails(&job.media, Ok(&variants))
            .await?;
        metrics::counter!("tally_workers_thumbnails_total").increment(1);
        Ok(())
    }
}

/// The apalis handler: storage and database errors are retried; rejected images are recorded
/// as failed with their reason.
pub async fn run_thumbnails(
    job: ThumbnailJob,
    thumbnailer: apalis::prelude::Data<std::sync::Arc<Thumbnailer>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    thumbnailer.process(&job).await?;
    Ok(())
}
