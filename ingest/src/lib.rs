//! `ingest`: the thin edge of Tally.
//!
//! - [`config`]: every setting, from flags or `TALLY_*` environment variables.
//! - [`server`]: the shared [`server::AppState`], [`server::app`] and [`server::serve`].
//! - [`routes`]: one module per API area, each exporting `router()`.
//! - [`catalog`]: resource definitions in memory, and the rules every event is checked against.
//! - [`store`]: ingest's one way to Postgres (statements in `ingest/queries/`): definitions,
//!   keys, members, lottery commitments, and the views schema defines over the workers' tables.
//! - [`auth`]: who is calling: API keys (hashed, held in memory), user tokens, nobody.
//! - [`identity`]: user tokens (JWT) verified against an HS256 secret or a JWKS.
//! - [`access`]: who may act for which user, post which score, read whose registration.
//! - [`signature`]: optional HMAC-signed server-to-server writes.
//! - [`rate_limit`]: GCRA limits per actor, IP and scope, in process or shared in Redis.
//! - [`api_doc`]: the OpenAPI document's shared parts (`/openapi.json` is generated from the routes).
//! - [`extract`]: the strict JSON body and `Idempotency-Key` extractors.
//! - [`error`]: the one HTTP error type and its JSON body.
//! - [`telemetry`]: request metrics by route and status.
//! - [`views`]: the live views in Redis that the read API serves.
//! - [`fallback`]: the same reads from Postgres while Redis cannot answer, cached and bounded.
//! - [`media`]: uploaded images — type from the bytes, object names.
//! - [`live`]: fan-out of view changes to SSE and WebSocket clients.
//! - [`channels`]: broadcast channels' followers: one feed per channel, resume by sequence.

pub mod access;
pub mod api_doc;
pub mod auth;
pub mod catalog;
pub mod channels;
pub mod config;
pub mod connections;
pub mod error;
pub mod extract;
pub mod fallback;
pub mod identity;
pub mod live;
pub mod media;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod views;

pub use config::IngestConfig;
pub use server::serve;

/// The `tally-ingest` process: tracing and metrics, listen on `config.addr`, serve until
/// SIGTERM or Ctrl-C. Shared by the binary and the tests' SIGKILL-able copy of it.
pub async fn main_with(config: IngestConfig) -> anyhow::Result<()> {
    tally_kit::telemetry::init_tracing();
    tally_kit::telemetry::metrics();
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    serve(config, listener, tally_kit::shutdown::signal()).await?;
    Ok(())
}
