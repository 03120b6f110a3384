//! Tally's one contract. Nothing else defines an event, a subject or a table.
//!
//! - [`ids`]: typed, validated identifiers (scopes are safe NATS subject tokens).
//! - [`event`]: the envelope every event travels in and the event kinds.
//! - [`stream`]: the JetStream stream definition and the subject scheme.
//! - [`api`]: the HTTP request bodies and their field-level validation.
//! - [`redis_keys`]: the names of the live views in Redis.
//! - [`MIGRATOR`] (feature `migrations`): the Postgres schema, from `postgres/migrations/`.

pub mod api;
pub mod event;
pub mod ids;
pub mod redis_keys;
pub mod stream;

pub use event::{Envelope, Event, Kind, StoredEvent};
pub use stream::{LiveView, StreamSpec};

/// The Postgres migrations, applied with `MIGRATOR.run(&pool)`.
#[cfg(feature = "migrations")]
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("postgres/migrations");
