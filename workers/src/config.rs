//! Workers configuration: flags or `TALLY_*` environment variables, each with a default.

use std::net::SocketAddr;
use std::time::Duration;
use tally_kit::consumer::{BatchSpec, ConsumerSpec};
use tally_kit::nats::NatsConfig;

#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "tally-workers",
    about = "Tally's workers: the Postgres batch writer (and jobs)."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: WorkersConfig,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Run the workers until SIGTERM (the default).
    Run,
    /// Apply the Postgres migrations and declare the JetStream streams, then exit.
    Setup,
    /// After restoring Postgres from a backup, with every writer stopped: make the Postgres
    /// writer deliver the whole stream again when it starts (it stores what Postgres lacks
    /// and skips what it has).
    Replay,
}

#[derive(Clone, Debug, clap::Args)]
pub struct WorkersConfig {
    /// Postgres URL of the system of record.
    #[arg(
        long,
        env = "TALLY_DATABASE_URL",
        default_value = "postgres://tally:tally@127.0.0.1:5432/tally"
    )]
    pub database_url: String,
    /// Postgres connections in the pool.
    #[arg(long, env = "TALLY_PG_MAX_CONNECTIONS", default_value_t = 4)]
    pub pg_max_connections: u32,
    #[command(flatten)]
    pub nats: NatsConfig,
    #[command(flatten)]
    pub writer: WriterConfig,
    #[command(flatten)]
    pub ranking: crate::ranking::job::RankingConfig,
    /// Outbound webhooks: timeouts, the retry schedule, bounds.
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookConfig,
    /// Winners' email: the SMTP server and its bounds.
    #[command(flatten)]
    pub email: crate::email::EmailConfig,
    /// How often the scheduler looks for lotteries to draw (cron with seconds).
    #[arg(long, env = "TALLY_LOTTERY_SCHEDULE", default_value = "*/5 * * * * *")]
    pub lottery_schedule: String,
    /// How long before a claim deadline a winner still unclaimed is reminded (webhook
    /// `claim.deadline_approaching`), in seconds; 0: never.
    #[arg(long, env = "TALLY_CLAIM_REMINDER_SECS", default_value_t = 6 * 3600)]
    pub claim_reminder_secs: u64,
    /// The aggregator's Redis-sink consumer: releasing unclaimed places waits until it has
    /// applied what the stream held when the release step first asked.
    #[arg(long, env = "TALLY_REDIS_CONSUMER", default_value = tally_schema::consumers::REDIS_SINK)]
    pub views_consumer: String,
    /// Where the ranking job publishes its results for the read API.
    #[command(flatten)]
    pub redis: tally_kit::redis::RedisConfig,
    /// Address of `/healthz` and `/metrics`.
    #[arg(
        long,
        env = "TALLY_WORKERS_METRICS_ADDR",
        default_value = "127.0.0.1:9101"
    )]
    pub metrics_addr: SocketAddr,
}

/// How the Postgres writer consumes the stream.
#[derive(Clone, Debug, clap::Args)]
pub struct WriterConfig {
    /// Durable consumer name; instances sharing it share the work.
    #[arg(
        long = "pg-consumer",
        env = "TALLY_PG_CONSUMER",
        default_value = tally_schema::consumers::POSTGRES_WRITER
    )]
    pub consumer: String,
    /// Most events in one batch (one transaction).
    #[arg(
        long = "pg-batch-max",
        env = "TALLY_PG_BATCH_MAX",
        default_value_t = 5000
    )]
    pub batch_max: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(
        long = "pg-batch-wait-ms",
        env = "TALLY_PG_BATCH_WAIT_MS",
        default_value_t = 100
    )]
    pub batch_wait_ms: u64,
    /// Batches written at once.
    #[arg(
        long = "pg-concurrency",
        env = "TALLY_PG_CONCURRENCY",
        default_value_t = 2
    )]
    pub concurrency: usize,
    /// Seconds JetStream waits for an ack before redelivering.
    #[arg(
        long = "pg-ack-wait-secs",
        env = "TALLY_PG_ACK_WAIT_SECS",
        default_value_t = 30
    )]
    pub ack_wait_secs: u64,
    /// Unacknowledged events the consumer may hold; bounds memory when Postgres is slow.
    #[arg(
        long = "pg-max-ack-pending",
        env = "TALLY_PG_MAX_ACK_PENDING",
        default_value_t = 20_000
    )]
    pub max_ack_pending: i64,
    /// Retries of a failed batch write (exponential backoff) before JetStream redelivers it.
    #[arg(
        long = "pg-write-retries",
        env = "TALLY_PG_WRITE_RETRIES",
        default_value_t = 6
    )]
    pub write_retries: usize,
    /// Deliveries of an undecodable message before it goes to the dead-letter stream.
    #[arg(
        long = "pg-poison-max-deliveries",
        env = "TALLY_PG_POISON_MAX_DELIVERIES",
        default_value_t = 3
    )]
    pub poison_max_deliveries: i64,
}

impl WriterConfig {
    pub fn consumer_spec(&self) -> ConsumerSpec {
        ConsumerSpec {
            name: self.consumer.clone(),
            description: "Tally: every event into Postgres".into(),
            ack_wait: Duration::from_secs(self.ack_wait_secs),
            max_ack_pending: self.max_ack_pending,
            resume_after: None,
        }
    }

    pub fn batch_spec(&self) -> BatchSpec {
        BatchSpec {
            max: self.batch_max,
            wait: Duration::from_millis(self.batch_wait_ms),
        }
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            consumer: tally_schema::consumers::POSTGRES_WRITER.into(),
            batch_max: 5000,
            batch_wait_ms: 100,
            concurrency: 2,
            ack_wait_secs: 30,
            max_ack_pending: 20_000,
            write_retries: 6,
            poison_max_deliveries: 3,
        }
    }
}
