//! Uploaded images, as both sides see them: ingest reads the type from the bytes
//! ([`sniff`]), the thumbnail job decodes them within fixed limits and renders the variants
//! ([`render`]); ingest removes location and camera metadata before storing anything
//! ([`strip_metadata`]). Pure (no I/O), so the fuzz targets in `fuzz/` exercise exactly this code.
//!
//! Variants: `thumb` 150×150 (cropped to fill), `medium` 800×600 and `large` 1920×1080
//! (fitted inside, never upscaled). Decoding is bounded (dimensions are read from the header
//! first, and the decoder has an allocation limit), so a decompression bomb or a corrupt file
//! fails with a reason instead of taking the worker down.

mod metadata;
pub use metadata::{Unstrippable, strip_metadata};

use image::{DynamicImage, ImageFormat, ImageReader, imageops::FilterType};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Cursor;

/// Where the original of `media` lives in the media object store.
pub fn original_key(media: &str) -> String {
    format!("originals/{media}")
}

/// Where the workers' thumbnail job stores a variant of `media`, and ingest serves it from.
pub fn variant_key(media: &str, variant: &str) -> String {
    format!("variants/{media}/{variant}")
}

/// The image types Tally takes.
pub const ACCEPTED: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// The content type the bytes themselves show, if they are a JPEG, PNG or WebP file.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The variants: name, box, and whether it crops to fill the box (else fits inside it).
pub const VARIANTS: [(&str, u32, u32, bool); 3] = [
    ("thumb", 150, 150, true),
    ("medium", 800, 600, false),
    ("large", 1920, 1080, false),
];

/// Largest side accepted.
pub const MAX_SIDE: u32 = 12_000;
/// The decoder's memory budget.
pub const MAX_ALLOC: u64 = 256 * 1024 * 1024;

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

/// Decodes `original` within the limits and renders every variant.
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
        // Crop, then scale. `resize_to_fill` scales first: for a 1×12,000 image that is a
        // 150×1,800,000 intermediate (810 MB, 2.2 GB at 16 bits), far past MAX_ALLOC.
        let (x, y, cw, ch) = fill_region(image.width(), image.height(), w, h);
        return image
            .crop_imm(x, y, cw, ch)
            .resize_exact(w, h, FilterType::Lanczos3);
    }
    if image.width() <= w && image.height() <= h {
        return image.clone(); // never upscale
    }
    image.resize(w, h, FilterType::Lanczos3)
}

/// The centred part (x, y, width, height) of a `width`×`height` image that has the aspect
/// ratio of a `w`×`h` box: what a cropped variant shows. Never larger than the image.
fn fill_region(width: u32, height: u32, w: u32, h: u32) -> (u32, u32, u32, u32) {
    let (width64, height64) = (u64::from(width), u64::from(height));
    let (w64, h64) = (u64::from(w.max(1)), u64::from(h.max(1)));
    let (cw, ch) = if width64 * h64 > height64 * w64 {
        // Wider than the box: full height, the middle columns.
        ((height64 * w64 / h64).max(1).min(width64), height64)
    } else {
        (width64, (width64 * h64 / w64).max(1).min(height64))
    };
    // At most the image's own sides, so they fit.
    let (cw, ch) = (
        u32::try_from(cw).unwrap_or(width),
        u32::try_from(ch).unwrap_or(height),
    );
    ((width - cw) / 2, (height - ch) / 2, cw, ch)
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
    fn types_come_from_the_magic_bytes() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b"<svg xmlns="), None);
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVE"), None);
        assert_eq!(sniff(b""), None);
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
    fn thumbnails_crop_to_the_box_before_scaling() {
        assert_eq!(fill_region(3000, 1000, 150, 150), (1000, 0, 1000, 1000));
        assert_eq!(fill_region(1000, 3000, 150, 150), (0, 1000, 1000, 1000));
        assert_eq!(fill_region(800, 600, 150, 150), (100, 0, 600, 600));
        assert_eq!(fill_region(150, 150, 150, 150), (0, 0, 150, 150));
        // Extreme ratios: scaling the whole 1×12,000 strip to fill 150×150 first would make a
        // 150×1,800,000 intermediate (fuzz/image_upload's malloc limit catches it).
        assert_eq!(fill_region(1, 12_000, 150, 150), (0, 5_999, 1, 1));
        assert_eq!(fill_region(12_000, 1, 150, 150), (5_999, 0, 1, 1));
        assert_eq!(fill_region(0, 10, 150, 150), (0, 4, 0, 1));
        assert_eq!(fill_region(10, 10, 0, 0), (0, 0, 10, 10));
        let strip = DynamicImage::ImageRgba16(image::ImageBuffer::new(1, MAX_SIDE));
        let thumb = resize(&strip, 150, 150, true);
        assert_eq!((thumb.width(), thumb.height()), (150, 150));
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
