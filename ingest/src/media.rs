//! Uploaded images: what a body is (from its bytes, never only from its header), and the
//! object names originals and variants are stored under.

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

/// Where the original of `media` lives in the object store.
pub fn original_key(media: &str) -> String {
    format!("originals/{media}")
}

/// What `GET /v1/media/{media}/{variant}` serves: the original or a thumbnail variant (made
/// by the workers' thumbnail job under `variants/<media>/<variant>`).
pub const SERVED: [&str; 4] = ["original", "thumb", "medium", "large"];

/// The object name of a served variant, or None for an unknown variant.
pub fn object_key(media: &str, variant: &str) -> Option<String> {
    match variant {
        "original" => Some(original_key(media)),
        v if SERVED.contains(&v) => Some(format!("variants/{media}/{v}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
