//! Tally's one contract. Nothing else defines an event, a subject or a table.
//!
//! - [`ids`]: typed, validated identifiers (scopes are safe NATS subject tokens).
//! - [`event`]: the envelope every event travels in and the event kinds.
//! - [`lottery`]: the verifiable draw (`tally-draw-v1`) that workers run and anyone can check.
//! - [`stream`]: the JetStream stream definition and the subject scheme.
//! - [`api`]: the HTTP request bodies and their field-level validation.
//! - [`analytics`] (feature `clickhouse`): events as rows of ClickHouse's `events`.
//! - [`rows`] (feature `postgres`): events as Postgres rows, one mapping each way.
//! - [`resources`]: polls, arenas and tournaments as defined by operators, and their rules.
//! - [`channels`]: broadcast channels: their definition, retention and message kinds.
//! - [`redis_keys`]: the names of the live views in Redis.
//! - [`consumers`]: the durable consumers' names.
//! - [`roles`]: API keys: their roles, how they are made and hashed, the `api_keys` statements.
//! - [`status`]: a registration's state (placed, waitlisted, received, won, claimed, released).
//! - [`email`]: winners' email: a tournament's settings, contacts, the rendered messages.
//! - [`webhooks`]: outbound webhooks: event types, signed messages, the endpoint bodies.
//! - [`MIGRATOR`] (feature `migrations`): the Postgres schema, from `postgres/migrations/`.

#[cfg(feature = "clickhouse")]
pub mod analytics;
pub mod api;
pub mod channels;
pub mod consumers;
pub mod email;
pub mod event;
pub mod ids;
pub mod lottery;
pub mod redis_keys;
pub mod replay;
pub mod resources;
pub mod roles;
#[cfg(feature = "postgres")]
pub mod rows;
pub mod status;
pub mod stream;
pub mod webhooks;

pub use event::{Envelope, Event, Kind, StoredEvent};
pub use stream::{LiveView, StreamSpec};

/// The ClickHouse DDL, in order; every statement is idempotent (`IF NOT EXISTS`) and kept to
/// what both ClickHouse 18.16 and current releases understand.
pub fn clickhouse_ddl() -> Vec<String> {
    // Comments go first: they may contain ';'.
    let files = [
        include_str!("../clickhouse/0001_events.sql"),
        include_str!("../clickhouse/0002_poll_choices.sql"),
    ];
    let sql: String = files
        .join(";\n")
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    sql.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The tables and views the ClickHouse DDL creates, in the order it creates them (a rebuild
/// drops them in reverse, views before the table they read).
pub fn clickhouse_objects() -> Vec<String> {
    clickhouse_ddl()
        .iter()
        .filter_map(|statement| {
            let rest = statement
                .strip_prefix("CREATE TABLE IF NOT EXISTS ")
                .or_else(|| statement.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS "))?;
            rest.split(|c: char| c.is_whitespace() || c == '(')
                .next()
                .map(str::to_owned)
        })
        .collect()
}

/// The Postgres migrations, applied with `MIGRATOR.run(&pool)`. apalis-postgres keeps its own
/// migrations in the same `_sqlx_migrations` table, so each migrator ignores the other's.
#[cfg(feature = "migrations")]
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| {
        let mut migrator = sqlx::migrate!("postgres/migrations");
        migrator.set_ignore_missing(true);
        migrator
    });

#[cfg(test)]
mod tests {
    #[test]
    fn the_clickhouse_ddl_splits_into_its_statements() {
        let ddl = super::clickhouse_ddl();
        assert_eq!(ddl.len(), 6);
        assert!(ddl[0].starts_with("CREATE TABLE IF NOT EXISTS events"));
        assert!(ddl[1].starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS poll_votes_per_minute"));
        let objects = super::clickhouse_objects();
        assert_eq!(objects.len(), ddl.len());
        assert_eq!(objects[0], "events");
        assert_eq!(objects[5], "poll_choices");
    }
}
