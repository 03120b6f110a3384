//! The service kit every Tally process shares, so no service repeats it:
//!
//! - [`telemetry`]: tracing subscriber and the Prometheus recorder.
//! - [`nats`]: connecting to NATS and declaring the event and dead-letter streams.
//! - [`channels`]: broadcast channels' streams: declared, published to, read from a sequence.
//! - [`consumer`]: a sink's durable consumer and the loop that cuts it into batches.
//! - [`dead_letters`]: where undecodable messages go, and how they come back.
//! - [`publisher`]: the one publisher of events to JetStream, bounded and acknowledged.
//! - [`snapshots`]: JetStream streams saved and restored through the server's snapshot API.
//! - [`shutdown`]: the signal future that `serve` functions take.
//! - [`redis`]: where the live views are (URL and key prefix).
//! - [`ops`]: `/healthz` and `/metrics` routes.

pub mod channels;
pub mod consumer;
pub mod dead_letters;
pub mod nats;
pub mod ops;
pub mod publisher;
pub mod redis;
pub mod shutdown;
pub mod snapshots;
pub mod telemetry;

// For `warn_once_a_second!` in crates that name tracing differently or not at all.
#[doc(hidden)]
pub use tracing;
