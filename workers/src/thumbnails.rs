//! Thumbnails as an apalis job on the Postgres backend. Variants: `thumb` 150×150 (cropped to
//! fill), `medium` 800×600 and `large` 1920×1080 (fitted inside, never upscaled), stored in
//! the media object store beside the original. Decoding is bounded (dimensions are read from
//! the header first, and the decoder has an allocation limit), so a decompression bomb or a
//! corrupt file fails with a reason instead of taking the worker down; storage errors retry.

use async_nats::jetstream::object_store::{ObjectMetadata, ObjectStore};
use image::{DynamicImage, ImageFormat, ImageReader, imageops::FilterType};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::HashMap;
use std::io::Cursor;

/// Make the variants of one upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailJob {
    pub media: String,
    pub object_key: String,
}

/// The variants: name, box, and whether it crops to fill the box (else fits inside it).
pub const VARIANTS: [(&str, u32, u32, bool); 3] = [
    ("thumb", 150, 150, true),
    ("medium", 800, 600, false),
    ("large", 1920, 1080, false),
];

/// Largest side accepted, and the decoder's memory budget.
const MAX_SIDE: u32 = 12_000;
const MAX_ALLOC: u64 = 256 * 1024 * 1024;

/// Why an image cannot be processed: permanent, recorded, not retried.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Rejected {
    #[error("not a JPEG, PNG or WebP image")]
    UnknownFormat,
    #[error("{width}×{height} is larger than {MAX_SIDE}×{MAX_SIDE}")]
    TooLarge { width: u32, height: u32 },
    #[error("cannot decode: {0}")]
    Corrupt(String),
}

/// One encoded variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    pub width: u32,
    pub height: u32,
    pub content_type: &'static str,
    pub bytes: usize,
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// Decodes `original` within the limits and renders every variant (pure: no I/O).
pub fn render(original: &[u8]) -> Result<HashMap<&'static str, Variant>, Rejected> {
    let reader = ImageReader::new(Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| Rejected::Corrupt(e.to_string()))?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP) => {}
        _ => return Err(Rejected::UnknownFormat),
    }
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| Rejected::Corrupt(e.to_string()))?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Rejected::TooLarge { width, height });
    }
    let mut reader = ImageReader::new(Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| Rejected::Corrupt(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| Rejected::Corrupt(e.to_string()))?;
    VARIANTS
        .iter()
        .map(|&(name, w, h, crop)| Ok((name, encode(&resize(&image, w, h, crop))?)))
        .collect()
}

fn resize(image: &DynamicImage, w: u32, h: u32, crop: bool) -> DynamicImage {
    if crop {
        return image.resize_to_fill(w, h, FilterType::Lanczos3);
    }
    if image.width() <= w && image.height() <= h {
        return image.clone(); // never upscale
    }
    image.resize(w, h, FilterType::Lanczos3)
}

/// PNG when the image has transparency, JPEG (quality 85) otherwise.
fn encode(image: &DynamicImage) -> Result<Variant, Rejected> {
    let mut data = Vec::new();
    let content_type = if image.color().has_alpha() {
        image
            .write_to(&mut Cursor::new(&mut data), ImageFormat::Png)
            .map_err(|e| Rejected::Corrupt(e.to_string()))?;
        "image/png"
    } else {
        let rgb = image.to_rgb8();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut data, 85);
        encoder
            .encode_image(&rgb)
            .map_err(|e| Rejected::Corrupt(e.to_string()))?;
        "image/jpeg"
    };
    Ok(Variant {
        width: image.width(),
        height: image.height(),
        content_type,
        bytes: data.len(),
        data,
    })
}

/// Where a variant lives in the object store.
pub fn variant_key(media: &str, variant: &str) -> String {
    format!("variants/{media}/{variant}")
}

#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("Postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("object store: {0}")]
    Store(String),
}

pub struct Thumbnailer {
    pub pool: PgPool,
    pub store: ObjectStore,
}

impl Thumbnailer {
    /// Queues a job for each upload nobody has queued yet, and again for any queued more than
    /// ten minutes ago without a result (its job was lost between claim and push, or its
    /// worker died); a job run twice writes the same variants.
    pub async fn claim_new(&self) -> Result<Vec<ThumbnailJob>, ThumbnailError> {
        let mut rows: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO media_status (media_id, status)
             SELECT m.media_id, 'queued' FROM media_uploads m
             LEFT JOIN media_status s ON s.media_id = m.media_id
             WHERE s.media_id IS NULL
             LIMIT 500
             ON CONFLICT (media_id) DO NOTHING
             RETURNING media_id, (SELECT object_key FROM media_uploads u
                                  WHERE u.media_id = media_status.media_id LIMIT 1)",
        )
        .fetch_all(&self.pool)
        .await?;
        let stale: Vec<(String, String)> = sqlx::query_as(
            "UPDATE media_status s SET updated_at = now()
             FROM media_uploads m
             WHERE m.media_id = s.media_id AND s.status = 'queued'
               AND s.updated_at < now() - interval '10 minutes'
             RETURNING s.media_id, m.object_key",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.extend(stale);
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
            .store
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
                sqlx::query(
                    "UPDATE media_status SET status = 'failed', reason = $2, updated_at = now()
                     WHERE media_id = $1",
                )
                .bind(&job.media)
                .bind(reason.to_string())
                .execute(&self.pool)
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
            self.store
                .put(meta, &mut variant.data.as_slice())
                .await
                .map_err(|e| store_err(&e))?;
        }
        sqlx::query(
            "UPDATE media_status SET status = 'done', reason = NULL, variants = $2::jsonb,
                    updated_at = now()
             WHERE media_id = $1",
        )
        .bind(&job.media)
        .bind(serde_json::to_string(&variants).expect("variants serialize"))
        .execute(&self.pool)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
        let image = if alpha {
            DynamicImage::ImageRgba8(image::RgbaImage::new(width, height))
        } else {
            DynamicImage::ImageRgb8(image::RgbImage::new(width, height))
        };
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn variants_crop_fit_and_never_upscale() {
        let v = render(&png(3000, 1000, false)).unwrap();
        assert_eq!((v["thumb"].width, v["thumb"].height), (150, 150));
        assert_eq!((v["medium"].width, v["medium"].height), (800, 267));
        assert_eq!((v["large"].width, v["large"].height), (1920, 640));
        assert_eq!(v["large"].content_type, "image/jpeg");
        let small = render(&png(400, 300, true)).unwrap();
        assert_eq!((small["large"].width, small["large"].height), (400, 300));
        assert_eq!(small["thumb"].content_type, "image/png");
    }

    #[test]
    fn broken_and_hostile_images_are_rejected_with_a_reason() {
        let good = png(64, 64, false);
        assert!(matches!(
            render(&good[..good.len() / 2]),
            Err(Rejected::Corrupt(_))
        ));
        assert_eq!(render(b"GIF89a....."), Err(Rejected::UnknownFormat));
        // A PNG header claiming 100,000 × 100,000 pixels: refused before any decoding.
        let mut bomb = png(1, 1, false);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(matches!(
            render(&bomb),
            Err(Rejected::TooLarge { .. } | Rejected::Corrupt(_))
        ));
    }
}
