//! Uploaded images: what a body is (from its bytes, never only from its header: [`sniff`],
//! defined in `tally-media` beside the decoder the workers use), and the object names
//! originals and variants are stored under.

pub use tally_media::{ACCEPTED, sniff};

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
