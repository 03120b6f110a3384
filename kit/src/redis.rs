//! Where the live views are: shared by the aggregator, which writes them, and ingest, which
//! reads them.

use tally_schema::redis_keys::Keys;

#[derive(Clone, Debug, clap::Args)]
pub struct RedisConfig {
    /// Redis URL of the live views.
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "TALLY_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub url: String,
    /// Prefix of every Redis key.
    #[arg(
        id = "redis_prefix",
        long = "redis-prefix",
        env = "TALLY_REDIS_PREFIX",
        default_value = "tally"
    )]
    pub prefix: String,
}

impl RedisConfig {
    pub fn keys(&self) -> Keys {
        Keys::new(self.prefix.clone())
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "tally".into(),
        }
    }
}
