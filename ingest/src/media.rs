//! Uploaded images: what a body is (from its bytes, never only from its header: [`sniff`],
//! defined in `tally-media` beside the decoder the workers use), and the object names
//! originals and variants are stored under.

pub use tally_media::{ACCEPTED, original_key, sniff, variant_key};

/// What `GET /v1/media/{media}/{variant}` serves: the original or a thumbnail variant (made
/// by the workers' thumbnail job under `variants/<media>/<variant>`).
pub const SERVED: [&str; 4] = ["original", "thumb", "medium", "large"];

/// The object name of a served variant, or None for an unknown variant.
pub fn object_key(media: &str, variant: &str) -> Option<String> {
    match variant {
        "original" => Some(original_key(media)),
        v if SERVED.contains(&v) => Some(variant_key(media, v)),
        _ => None,
    }
}

/// A tournament's media quota, kept in Redis so every instance counts the same bytes.
pub struct Quota {
    conn: redis::aio::ConnectionManager,
    keys: tally_schema::redis_keys::Keys,
}

/// Adds `ARGV[1]` bytes to the tournament's total unless that passes `ARGV[2]`: atomically,
/// so two uploads racing at the limit cannot both get in. Answers the new total, or -1.
const RESERVE: &str = r"
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if used > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return -1
end
return used";

impl Quota {
    pub fn new(conn: redis::aio::ConnectionManager, keys: tally_schema::redis_keys::Keys) -> Self {
        Self { conn, keys }
    }

    /// Takes `bytes` of `tournament`'s `quota`; false if they do not fit.
    pub async fn reserve(
        &self,
        tournament: &str,
        bytes: u64,
        quota: u64,
    ) -> Result<bool, redis::RedisError> {
        let used: i64 = redis::Script::new(RESERVE)
            .key(self.keys.media_bytes(tournament))
            .arg(bytes)
            .arg(quota)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(used >= 0)
    }

    /// Gives back what [`Quota::reserve`] took for an upload that was not stored.
    pub async fn release(&self, tournament: &str, bytes: u64) -> Result<(), redis::RedisError> {
        redis::cmd("DECRBY")
            .arg(self.keys.media_bytes(tournament))
            .arg(bytes)
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }
}
