//! Tally's load scenarios: open-loop bursts, the references they are read against, the
//! outcome checks and the reports.
//!
//! - [`cli`]: the command line, the settings every scenario shares, one subcommand each.
//! - [`open_loop`]: requests at a fixed arrival rate, latency from the due time, HDR
//!   histograms; closed-loop bursts on the same engine.
//! - [`scenarios`]: flash-poll, arena, arena-crowd, tournament, registration-rush, batch,
//!   overload, burst, cost and the suite, one module each.
//! - [`references`]: the do-nothing handler, raw JetStream, the naive one-INSERT server.
//! - [`cost`]: each process's CPU from `/proc`, per acknowledged event.
//! - [`outcome`]: Postgres exactly the acknowledged events, Redis and ClickHouse equal to it.
//! - [`report`] and [`plot`]: the table, the JSON file and the PNG.

pub mod cli;
pub mod cost;
pub mod open_loop;
pub mod outcome;
pub mod plot;
pub mod references;
pub mod report;
pub mod scenarios;

/// arena-crowd's generator parts, which the end-to-end tests run as its processes do.
pub use scenarios::crowd;
