//! The durable consumers' names: each sink's own, and the one others wait for (the draw waits
//! for the Postgres writer, releases for the Redis sink). Settings may rename them; these are
//! the defaults every service and test agrees on.

/// Workers: every event into Postgres.
pub const POSTGRES_WRITER: &str = "postgres-writer";
/// Aggregator: the live views in Redis.
pub const REDIS_SINK: &str = "redis-sink";
/// Aggregator: analytics rows in ClickHouse.
pub const CLICKHOUSE_SINK: &str = "clickhouse-sink";
/// Aggregator: the optional Kafka mirror.
pub const KAFKA_MIRROR: &str = "kafka-mirror";
