//! Removing what an image says about where and with what it was taken: EXIF (GPS position,
//! camera, serial numbers, times), XMP, IPTC and comments. Done on the container, segment by
//! segment, without decoding the pixels: the image itself is kept byte for byte, and a file
//! whose container does not parse is refused rather than passed on unstripped.
//!
//! - JPEG: APP1 (EXIF, XMP), APP12, APP13 (IPTC / Photoshop) and COM segments are dropped;
//!   everything else (APP0 JFIF, APP2 ICC colour profile, APP14 Adobe, tables, frames) is
//!   kept; from the first scan on, the bytes are copied as they are.
//! - PNG: `eXIf`, `tEXt`, `zTXt`, `iTXt` and `tIME` chunks are dropped.
//! - WebP: `EXIF` and `XMP ` chunks are dropped and their flags cleared in `VP8X`.

/// Why a container could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot remove the image's metadata: {0}")]
pub struct Unstrippable(pub &'static str);

/// The image without its metadata, in the same format.
pub fn strip_metadata(bytes: &[u8]) -> Result<Vec<u8>, Unstrippable> {
    match crate::sniff(bytes) {
        Some("image/jpeg") => strip_jpeg(bytes),
        Some("image/png") => strip_png(bytes),
        Some("image/webp") => strip_webp(bytes),
        _ => Err(Unstrippable("not a JPEG, PNG or WebP image")),
    }
}

fn strip_jpeg(bytes: &[u8]) -> Result<Vec<u8>, Unstrippable> {
    let truncated = Unstrippable("a JPEG segment runs past the end");
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..2]); // SOI
    let mut i = 2;
    loop {
        // Markers may be padded with any number of 0xFF bytes.
        while bytes.get(i) == Some(&0xFF) && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(i), bytes.get(i + 1)) else {
            return Err(Unstrippable("a JPEG marker was expected"));
        };
        match marker {
            // EOI: the end.
            0xD9 => {
                out.extend_from_slice(&bytes[i..i + 2]);
                return Ok(out);
            }
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&bytes[i..i + 2]);
                i += 2;
                continue;
            }
            _ => {}
        }
        let len = match (bytes.get(i + 2), bytes.get(i + 3)) {
            (Some(&hi), Some(&lo)) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(truncated),
        };
        if len < 2 {
            return Err(Unstrippable("a JPEG segment length below 2"));
        }
        let end = i + 2 + len;
        if end > bytes.len() {
            return Err(truncated);
        }
        if marker == 0xDA {
            // Start of scan: entropy-coded data (and any further scans) follow; copied whole.
            out.extend_from_slice(&bytes[i..]);
            return Ok(out);
        }
        let metadata = matches!(marker, 0xE1 | 0xEC | 0xED | 0xFE);
        if !metadata {
            out.extend_from_slice(&bytes[i..end]);
        }
        i = end;
    }
}

fn strip_png(bytes: &[u8]) -> Result<Vec<u8>, Unstrippable> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..8]);
    let mut i = 8;
    while i < bytes.len() {
        let header = bytes
            .get(i..i + 8)
            .ok_or(Unstrippable("a PNG chunk header runs past the end"))?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        // Length, type, data, CRC.
        let end = i
            .checked_add(12)
            .and_then(|n| n.checked_add(len))
            .filter(|&n| n <= bytes.len())
            .ok_or(Unstrippable("a PNG chunk runs past the end"))?;
        if !matches!(kind, b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME") {
            out.extend_from_slice(&bytes[i..end]);
        }
        i = end;
        if kind == b"IEND" {
            return Ok(out);
        }
    }
    Err(Unstrippable("a PNG without IEND"))
}

fn strip_webp(bytes: &[u8]) -> Result<Vec<u8>, Unstrippable> {
    let declared = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let end = declared
        .checked_add(8)
        .filter(|&n| n <= bytes.len())
        .ok_or(Unstrippable("the RIFF size runs past the end"))?;
    let mut out = Vec::with_capacity(end);
    out.extend_from_slice(&bytes[..12]);
    let mut i = 12;
    while i < end {
        let header = bytes
            .get(i..i + 8)
            .filter(|_| i + 8 <= end)
            .ok_or(Unstrippable("a WebP chunk header runs past the end"))?;
        let kind = [header[0], header[1], header[2], header[3]];
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        // Chunks are padded to an even size.
        let chunk_end = (i + 8)
            .checked_add(len + (len & 1))
            .filter(|&n| n <= end)
            .ok_or(Unstrippable("a WebP chunk runs past the end"))?;
        match &kind {
            b"EXIF" | b"XMP " => {}
            b"VP8X" => {
                let start = out.len();
                out.extend_from_slice(&bytes[i..chunk_end]);
                if let Some(flags) = out.get_mut(start + 8) {
                    // Bit 3: EXIF present; bit 2: XMP present.
                    *flags &= !(0x08 | 0x04);
                }
            }
            _ => out.extend_from_slice(&bytes[i..chunk_end]),
        }
        i = chunk_end;
    }
    let riff_size = u32::try_from(out.len() - 8).map_err(|_| Unstrippable("too large"))?;
    out[4..8].copy_from_slice(&riff_size.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    /// A real JPEG (encoded here) with an EXIF segment carrying a GPS marker string, an XMP
    /// segment and a comment spliced in after SOI.
    fn jpeg_with_exif() -> (Vec<u8>, Vec<u8>) {
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([200, 30, 30]));
        let mut plain = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(
                &mut std::io::Cursor::new(&mut plain),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let mut tagged = plain[..2].to_vec();
        tagged.extend(segment(0xE1, b"Exif\0\0GPSLatitude=52.5200N"));
        tagged.extend(segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>"));
        tagged.extend(segment(0xFE, b"taken by camera serial 1234"));
        tagged.extend_from_slice(&plain[2..]);
        (plain, tagged)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn jpeg_metadata_is_removed_and_the_pixels_kept() {
        let (plain, tagged) = jpeg_with_exif();
        let stripped = strip_metadata(&tagged).unwrap();
        assert!(!contains(&stripped, b"GPSLatitude"));
        assert!(!contains(&stripped, b"xmpmeta"));
        assert!(!contains(&stripped, b"serial"));
        assert_eq!(stripped, plain, "only the added segments went");
        assert!(image::load_from_memory(&stripped).is_ok());
    }

    #[test]
    fn png_text_and_exif_chunks_are_removed() {
        let img = image::RgbaImage::from_pixel(4, 4, image::Rgba([0, 0, 255, 128]));
        let mut plain = Vec::new();
        image::DynamicImage::ImageRgba8(img)
            .write_to(
                &mut std::io::Cursor::new(&mut plain),
                image::ImageFormat::Png,
            )
            .unwrap();
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            c.extend_from_slice(&[0, 0, 0, 0]); // CRC (not checked here)
            c
        };
        // After IHDR (8 + 25 bytes).
        let mut tagged = plain[..33].to_vec();
        tagged.extend(chunk(b"tEXt", b"Location\0Berlin"));
        tagged.extend(chunk(b"eXIf", b"MM\0*GPS"));
        tagged.extend_from_slice(&plain[33..]);
        let stripped = strip_metadata(&tagged).unwrap();
        assert_eq!(stripped, plain);
    }

    #[test]
    fn webp_exif_and_xmp_chunks_are_removed_and_flags_cleared() {
        let chunk = |kind: &[u8; 4], data: &[u8]| {
            let mut c = kind.to_vec();
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(data);
            if data.len() % 2 == 1 {
                c.push(0);
            }
            c
        };
        let mut body = b"WEBP".to_vec();
        body.extend(chunk(b"VP8X", &[0x0C, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        body.extend(chunk(b"VP8L", &[0x2F, 0, 0, 0, 0]));
        body.extend(chunk(b"EXIF", b"GPS here"));
        body.extend(chunk(b"XMP ", b"<xmp/>"));
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend(body);
        let stripped = strip_metadata(&file).unwrap();
        assert!(!contains(&stripped, b"GPS here") && !contains(&stripped, b"<xmp/>"));
        assert_eq!(stripped[20], 0, "VP8X flags cleared");
        let size = u32::from_le_bytes([stripped[4], stripped[5], stripped[6], stripped[7]]);
        assert_eq!(size as usize, stripped.len() - 8);
    }

    #[test]
    fn broken_containers_are_refused_not_passed_on() {
        let (_, tagged) = jpeg_with_exif();
        assert!(strip_metadata(&tagged[..10]).is_err());
        assert!(strip_metadata(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR").is_err());
        assert!(strip_metadata(b"RIFF\xff\xff\xff\x7fWEBP").is_err());
        assert!(strip_metadata(b"GIF89a").is_err());
    }
}
