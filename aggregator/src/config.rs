//! Aggregator configuration: flags or `TALLY_*` environment variables, each with a default.

use crate::leaderboard::EloConfig;
use std::net::SocketAddr;
use std::time::Duration;
use tally_kit::consumer::{BatchSpec, ConsumerSpec};
use tally_kit::nats::NatsConfig;
use tally_kit::redis::RedisConfig;

#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "tally-aggregator",
    about = "Tally's aggregator: live Redis tallies, standings and Elo rankings."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: AggregatorConfig,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Run the sinks until SIGTERM (the default).
    Run,
    /// Recompute a derived store from Postgres: every Redis structure, or every ClickHouse
    /// table. Stop the aggregator first; the Postgres writer must have caught up (checked
    /// unless --force).
    Rebuild {
        #[arg(long)]
        force: bool,
        /// Which store.
        #[arg(long, value_enum, default_value_t = Store::Redis)]
        store: Store,
    },
}

/// A store the aggregator derives from the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    Redis,
    Clickhouse,
}

/// Every aggregator setting (a `Parser` too, so tests can take the defaults).
#[derive(Clone, Debug, clap::Parser)]
pub struct AggregatorConfig {
    #[command(flatten)]
    pub nats: NatsConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    /// Durable consumer of the Redis sink.
    #[arg(long, env = "TALLY_REDIS_CONSUMER", default_value = tally_schema::consumers::REDIS_SINK)]
    pub redis_consumer: String,
    /// Most events per Redis script call.
    #[arg(long, env = "TALLY_REDIS_BATCH_MAX", default_value_t = 2000)]
    pub redis_batch_max: usize,
    /// Longest wait for a batch to fill, in milliseconds (bounds the ingest-to-Redis lag).
    #[arg(long, env = "TALLY_REDIS_BATCH_WAIT_MS", default_value_t = 20)]
    pub redis_batch_wait_ms: u64,
    /// Seconds JetStream waits for an ack before redelivering.
    #[arg(long, env = "TALLY_REDIS_ACK_WAIT_SECS", default_value_t = 30)]
    pub redis_ack_wait_secs: u64,
    /// Seconds the aggregator lease lasts unrenewed: one instance is active, others stand by
    /// and take over this long after the active one died (at once after a clean stop).
    #[arg(long, env = "TALLY_AGGREGATOR_LEASE_SECS", default_value_t = 10)]
    pub lease_secs: u64,
    /// Elo K-factor of pair votes.
    #[arg(long, env = "TALLY_ELO_K", default_value_t = 32.0)]
    pub elo_k: f64,
    /// Elo rating of an item's first appearance.
    #[arg(long, env = "TALLY_ELO_INITIAL", default_value_t = 1000.0)]
    pub elo_initial: f64,
    /// Seconds a session's personal ranking lives after its last vote.
    #[arg(long, env = "TALLY_SESSION_TTL_SECS", default_value_t = 86_400)]
    pub session_ttl_secs: u64,
    /// Least time between two live-update notifications of one poll or tournament, in ms.
    #[arg(long, env = "TALLY_LIVE_INTERVAL_MS", default_value_t = 250)]
    pub live_interval_ms: u64,
    /// ClickHouse HTTP URL of the analytics sink.
    #[arg(
        long,
        env = "TALLY_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
    /// ClickHouse database (created if missing).
    #[arg(long, env = "TALLY_CLICKHOUSE_DATABASE", default_value = "tally")]
    pub clickhouse_database: String,
    /// Durable consumer of the ClickHouse sink.
    #[arg(
        long,
        env = "TALLY_CLICKHOUSE_CONSUMER",
        default_value = tally_schema::consumers::CLICKHOUSE_SINK
    )]
    pub clickhouse_consumer: String,
    /// Most rows per INSERT (ClickHouse wants 10k–100k).
    #[arg(long, env = "TALLY_CLICKHOUSE_BATCH_MAX", default_value_t = 50_000)]
    pub clickhouse_batch_max: usize,
    /// Longest wait for a batch to fill, in ms (about one INSERT per second per table).
    #[arg(long, env = "TALLY_CLICKHOUSE_BATCH_WAIT_MS", default_value_t = 1000)]
    pub clickhouse_batch_wait_ms: u64,
    /// Kafka brokers (`host:port`, comma-separated) to mirror every event to; none: no mirror.
    #[arg(long, env = "TALLY_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Topic of the Kafka mirror (created when missing).
    #[arg(long, env = "TALLY_KAFKA_TOPIC", default_value = "tally-events")]
    pub kafka_topic: String,
    /// Partitions of the mirror's topic when the mirror creates it.
    #[arg(long, env = "TALLY_KAFKA_PARTITIONS", default_value_t = 6)]
    pub kafka_partitions: i32,
    /// Durable consumer of the Kafka mirror.
    #[arg(long, env = "TALLY_KAFKA_CONSUMER", default_value = tally_schema::consumers::KAFKA_MIRROR)]
    pub kafka_consumer: String,
    /// Postgres URL, read by `rebuild` only.
    #[arg(
        long,
        env = "TALLY_DATABASE_URL",
        default_value = "postgres://tally:tally@127.0.0.1:5432/tally"
    )]
    pub database_url: String,
    /// The Postgres writer's consumer, whose backlog `rebuild` checks.
    #[arg(long, env = "TALLY_PG_CONSUMER", default_value = tally_schema::consumers::POSTGRES_WRITER)]
    pub postgres_consumer: String,
    /// Address of `/healthz` and `/metrics`.
    #[arg(
        long,
        env = "TALLY_AGGREGATOR_METRICS_ADDR",
        default_value = "127.0.0.1:9102"
    )]
    pub metrics_addr: SocketAddr,
}

impl AggregatorConfig {
    pub fn elo(&self) -> EloConfig {
        EloConfig {
            k: self.elo_k,
            initial: self.elo_initial,
            session_ttl_secs: self.session_ttl_secs,
        }
    }

    /// The Redis sink's consumer, resumed right after what Redis says it applied.
    pub fn redis_consumer_spec(&self, applied_seq: u64) -> ConsumerSpec {
        ConsumerSpec {
            name: self.redis_consumer.clone(),
            description: "Tally: tallies, standings and rankings in Redis".into(),
            ack_wait: Duration::from_secs(self.redis_ack_wait_secs),
            max_ack_pending: 20_000,
            resume_after: Some(applied_seq),
        }
    }

    /// The ClickHouse sink's consumer, resumed right after what ClickHouse holds.
    pub fn clickhouse_consumer_spec(&self, high_water: u64) -> ConsumerSpec {
        ConsumerSpec {
            name: self.clickhouse_consumer.clone(),
            description: "Tally: every event into ClickHouse".into(),
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 200_000,
            resume_after: Some(high_water),
        }
    }

    /// The Kafka mirror's target, when brokers are configured.
    pub fn kafka_target(&self) -> Option<crate::kafka_mirror::KafkaTarget> {
        self.kafka_brokers
            .as_ref()
            .map(|brokers| crate::kafka_mirror::KafkaTarget {
                brokers: brokers.clone(),
                topic: self.kafka_topic.clone(),
                partitions: self.kafka_partitions,
            })
    }

    /// Restarts at `ack_floor`, in order: the batch a crashed mirror had not acknowledged is
    /// sent again before anything newer.
    pub fn kafka_consumer_spec(&self, ack_floor: u64) -> ConsumerSpec {
        ConsumerSpec {
            name: self.kafka_consumer.clone(),
            description: "Tally: every event mirrored to Kafka".into(),
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 100_000,
            resume_after: Some(ack_floor),
        }
    }

    pub fn kafka_batch_spec(&self) -> BatchSpec {
        BatchSpec {
            max: 5_000,
            wait: Duration::from_millis(50),
        }
    }

    pub fn clickhouse_batch_spec(&self) -> BatchSpec {
        BatchSpec {
            max: self.clickhouse_batch_max,
            wait: Duration::from_millis(self.clickhouse_batch_wait_ms),
        }
    }

    pub fn redis_batch_spec(&self) -> BatchSpec {
        BatchSpec {
            max: self.redis_batch_max,
            wait: Duration::from_millis(self.redis_batch_wait_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
