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
    /// Publishes awaiting their acknowledgement, across all requests; past it, publishes wait.
    #[arg(long, env = "TALLY_MAX_PUBLISHES_IN_FLIGHT", default_value_t = 8192)]
    pub max_publishes_in_flight: usize,
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
    #[command(flatten)]
    pub redis: RedisConfig,
    /// `Retry-After` seconds sent with 503 answers.
    #[arg(long, env = "TALLY_RETRY_AFTER_SECS", default_value_t = 1)]
    pub retry_after_secs: u64,
}

impl IngestConfig {
    /// Defaults for everything but where NATS is; tests start from this.
    pub fn for_nats(nats: NatsConfig) -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8080).into(),
            nats,
            publish_timeout_ms: 2000,
            max_publishes_in_flight: 8192,
            max_concurrent_requests: 16384,
            body_limit_bytes: 16 * 1024,
            batch_body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 10_000,
            retry_after_secs: 1,
            redis: RedisConfig::default(),
        }
    }

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::IngestConfig::command().debug_assert();
    }
}
