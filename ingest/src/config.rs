//! Ingest configuration: flags or `TALLY_*` environment variables, each with a default.

use std::net::SocketAddr;
use std::time::Duration;
use tally_kit::nats::NatsConfig;
use tally_kit::redis::RedisConfig;

#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "tally-ingest",
    about = "Tally's HTTP edge: validate, publish to JetStream, answer 202 after the ack."
)]
pub struct IngestConfig {
    /// Address to listen on.
    #[arg(long, env = "TALLY_INGEST_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub nats: NatsConfig,
    /// How long a request may wait for JetStream's acknowledgement before answering 503.
    #[arg(long, env = "TALLY_PUBLISH_TIMEOUT_MS", default_value_t = 2000)]
    pub publish_timeout_ms: u64,
    /// Publishes awaiting their acknowledgement, across all requests. JetStream reaches its
    /// throughput with ~1,000 in flight; more only adds waiting.
    #[arg(long, env = "TALLY_MAX_PUBLISHES_IN_FLIGHT", default_value_t = 2048)]
    pub max_publishes_in_flight: usize,
    /// How long a publish may wait for one of those slots, in milliseconds; then its request
    /// is answered 503 (shed, not queued).
    #[arg(long, env = "TALLY_PUBLISH_SLOT_WAIT_MS", default_value_t = 100)]
    pub publish_slot_wait_ms: u64,
    /// How long a publish waits for others to go with it to NATS, in microseconds, while
    /// earlier publishes await their acks (0: each goes alone). Gathered publishes cost NATS
    /// and ingest one write, one read and one wakeup instead of one each; a request waits at
    /// most this much longer, and a lone request not at all.
    #[arg(long, env = "TALLY_PUBLISH_LINGER_US", default_value_t = 5000)]
    pub publish_linger_us: u64,
    /// Publishes gathered into one write at most.
    #[arg(long, env = "TALLY_PUBLISH_GROUP_MAX", default_value_t = 256)]
    pub publish_group_max: usize,
    /// Requests handled at once; past it, requests are shed with 503 at once.
    #[arg(long, env = "TALLY_MAX_CONCURRENT_REQUESTS", default_value_t = 16384)]
    pub max_concurrent_requests: usize,
    /// Body limit of single-event routes, in bytes.
    #[arg(long, env = "TALLY_BODY_LIMIT_BYTES", default_value_t = 16 * 1024)]
    pub body_limit_bytes: usize,
    /// Body limit of `POST /v1/events`, in bytes.
    #[arg(long, env = "TALLY_BATCH_BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub batch_body_limit_bytes: usize,
    /// Whole-request deadline (a client trickling its body is cut off), in milliseconds.
    #[arg(long, env = "TALLY_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// How long a client may take to send a request's headers, in milliseconds; a
    /// connection that sends none within it (a slowloris, an idle keep-alive) is closed.
    #[arg(long, env = "TALLY_HEADER_TIMEOUT_MS", default_value_t = 30_000)]
    pub header_timeout_ms: u64,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub fallback: crate::fallback::FallbackConfig,
    /// Postgres with the resource definitions and API keys (never on the event hot path).
    #[arg(
        long,
        env = "TALLY_DATABASE_URL",
        default_value = "postgres://tally:tally@127.0.0.1:5432/tally"
    )]
    pub database_url: String,
    /// Postgres connections ingest holds: the admin API, key and catalog reloads (never the
    /// event path).
    #[arg(long, env = "TALLY_INGEST_PG_MAX_CONNECTIONS", default_value_t = 4)]
    pub pg_max_connections: u32,
    /// Reload every definition this often even without a change announcement, in seconds.
    #[arg(long, env = "TALLY_CATALOG_REFRESH_SECS", default_value_t = 30)]
    pub catalog_refresh_secs: u64,
    /// Rate limits per event kind, `kind:by=limit/per[,burst=n]` (by: actor, ip, scope; per:
    /// second, minute, hour), separated by ';'. Resources may set their own, which replace
    /// these. E.g. `registration:actor=5/minute;registration:ip=10/minute`.
    #[arg(long = "rate-limit", env = "TALLY_RATE_LIMITS", value_delimiter = ';')]
    pub rate_limits: Vec<tally_schema::resources::RouteLimit>,
    /// Where limiter state lives: `memory` (per instance) or `redis` (shared by instances).
    #[arg(
        long,
        env = "TALLY_RATE_LIMIT_STORE",
        value_enum,
        default_value = "memory"
    )]
    pub rate_limit_store: crate::rate_limit::LimitStore,
    /// Take the client IP from this header (set by a trusted proxy, e.g. `x-forwarded-for`)
    /// instead of the peer address, when the peer is a trusted proxy.
    #[arg(long, env = "TALLY_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// The proxies whose client-IP header is believed, as networks (comma-separated).
    #[arg(
        long = "trusted-proxy",
        env = "TALLY_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins allowed to call the API from a browser, comma-separated
    /// (e.g. `https://vote.example.org`); none: no cross-origin access.
    #[arg(
        long = "cors-origin",
        env = "TALLY_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// HMAC keys of server-to-server senders, `id:secret` comma-separated (see `signature`).
    #[arg(
        long = "signing-key",
        env = "TALLY_SIGNING_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub signing_keys: Vec<String>,
    /// Live streams (SSE) one client address (an IPv6 client: its /64) may hold open; past
    /// it, 429.
    #[arg(long, env = "TALLY_MAX_STREAMS_PER_ADDRESS", default_value_t = 256)]
    pub max_streams_per_address: usize,
    /// Live streams (SSE and WebSocket) this instance holds open; past it, 503 (another
    /// instance may take it). 0: as many as the process's open-file limit allows, less
    /// [`FILES_KEPT_FREE`] for everything else.
    #[arg(long, env = "TALLY_MAX_STREAMS", default_value_t = 0)]
    pub max_streams: usize,
    #[command(flatten)]
    pub channels: crate::channels::ChannelConfig,
    /// User tokens (JWT) of the organiser's site.
    #[command(flatten)]
    pub tokens: crate::identity::TokenConfig,
    /// How often the active API keys are read again (a revocation takes effect within it),
    /// in seconds. An unknown key also reads them, at most once a second.
    #[arg(long, env = "TALLY_KEY_REFRESH_SECS", default_value_t = 5)]
    pub key_refresh_secs: u64,
    /// An unknown key reads the keys again at most this often, in milliseconds (so a flood of
    /// junk keys costs Postgres one query per interval, not one per request).
    #[arg(long, env = "TALLY_KEY_MISS_RELOAD_MS", default_value_t = 1000)]
    pub key_miss_reload_ms: u64,
    /// Refuse unsigned writes (401) when signing keys are set.
    #[arg(long, env = "TALLY_REQUIRE_SIGNATURE", default_value_t = false)]
    pub require_signature: bool,
    /// Largest uploaded image, in bytes.
    #[arg(long, env = "TALLY_MEDIA_BODY_LIMIT_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub media_body_limit_bytes: usize,
    /// Bytes of media one tournament may store unless its definition says otherwise.
    #[arg(long, env = "TALLY_MEDIA_QUOTA_BYTES", default_value_t = 10 * 1024 * 1024 * 1024)]
    pub media_quota_bytes: u64,
    /// Most uploads one page of a tournament's gallery (`GET /v1/tournaments/{t}/media`) holds;
    /// `?limit=` asks for fewer.
    #[arg(long, env = "TALLY_MEDIA_PAGE_MAX", default_value_t = 100)]
    pub media_page_max: u32,
    /// Webhook endpoints that may be registered at once.
    #[arg(long, env = "TALLY_WEBHOOK_MAX_ENDPOINTS", default_value_t = 100)]
    pub webhook_max_endpoints: usize,
    /// Messages one replay-since call looks at, at most (it says where to go on).
    #[arg(long, env = "TALLY_WEBHOOK_REPLAY_MAX", default_value_t = 100_000)]
    pub webhook_replay_max: u32,
    /// Body limit of the admin routes, in bytes.
    #[arg(long, env = "TALLY_ADMIN_BODY_LIMIT_BYTES", default_value_t = 256 * 1024)]
    pub admin_body_limit_bytes: usize,
    /// `Retry-After` seconds sent with 503 answers.
    #[arg(long, env = "TALLY_RETRY_AFTER_SECS", default_value_t = 1)]
    pub retry_after_secs: u64,
}

impl IngestConfig {
    /// Defaults for everything but where NATS and Postgres are; tests start from this.
    pub fn for_nats(nats: NatsConfig, database_url: String) -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8080).into(),
            nats,
            publish_timeout_ms: 2000,
            max_publishes_in_flight: 2048,
            publish_linger_us: 5000,
            publish_group_max: 256,
            publish_slot_wait_ms: 100,
            max_concurrent_requests: 16384,
            body_limit_bytes: 16 * 1024,
            batch_body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 10_000,
            header_timeout_ms: 30_000,
            retry_after_secs: 1,
            redis: RedisConfig::default(),
            fallback: Default::default(),
            database_url,
            pg_max_connections: 4,
            catalog_refresh_secs: 30,
            admin_body_limit_bytes: 256 * 1024,
            media_body_limit_bytes: 10 * 1024 * 1024,
            media_quota_bytes: 10 * 1024 * 1024 * 1024,
            media_page_max: 100,
            webhook_max_endpoints: 100,
            webhook_replay_max: 100_000,
            cors_origins: Vec::new(),
            signing_keys: Vec::new(),
            require_signature: false,
            rate_limits: Vec::new(),
            rate_limit_store: crate::rate_limit::LimitStore::Memory,
            client_ip_header: None,
            trusted_proxies: vec![
                "127.0.0.0/8".parse().expect("a network"),
                "::1/128".parse().expect("a network"),
            ],
            tokens: crate::identity::TokenConfig {
                jwt_leeway_secs: 30,
                jwks_refresh_secs: 300,
                jwks_miss_refresh_secs: 10,
                jwt_group_claim: "tally_group".into(),
                jwt_team_claim: "tally_team".into(),
                ..Default::default()
            },
            key_refresh_secs: 5,
            key_miss_reload_ms: 1000,
            max_streams_per_address: 256,
            max_streams: 0,
            channels: Default::default(),
        }
    }

    pub fn coalescing(&self) -> tally_kit::publisher::Coalescing {
        tally_kit::publisher::Coalescing {
            linger: Duration::from_micros(self.publish_linger_us),
            max: self.publish_group_max.max(1),
        }
    }

    /// The cap on open live streams: `max_streams`, or what the open-file limit leaves.
    pub fn stream_cap(&self) -> usize {
        match self.max_streams {
            0 => open_file_limit().map_or(16_000, |n| n.saturating_sub(FILES_KEPT_FREE).max(100)),
            n => n,
        }
    }

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

/// Files kept for everything but live streams (connections to NATS, Postgres and Redis,
/// requests, logs) when the stream cap follows the open-file limit.
pub const FILES_KEPT_FREE: usize = 1000;

/// This process's soft limit on open files (Linux: `/proc/self/limits`).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stream_cap_follows_the_open_file_limit_unless_set() {
        let nats = tally_kit::nats::NatsConfig::with_url("nats://127.0.0.1:4222");
        let mut config = super::IngestConfig::for_nats(nats, String::new());
        if let Some(files) = super::open_file_limit() {
            assert_eq!(
                config.stream_cap(),
                files.saturating_sub(super::FILES_KEPT_FREE).max(100)
            );
        }
        config.max_streams = 7;
        assert_eq!(config.stream_cap(), 7);
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::IngestConfig::command().debug_assert();
    }
}
