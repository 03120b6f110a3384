//! Tally's load scenarios: open-loop bursts, the references they are read against, the
//! outcome checks and the reports.
//!
//! - [`open_loop`]: requests at a fixed arrival rate, latency from the due time, HDR histograms.
//! - [`scenarios`]: flash-poll, arena, tournament, registration-rush, batch.
//! - [`crowd`]: arena-crowd, many voters each on a connection of their own, over processes.
//! - [`references`]: the do-nothing handler, raw JetStream, the naive one-INSERT server.
//! - [`outcome`]: Postgres exactly the acknowledged events, Redis and ClickHouse equal to it.
//! - [`report`] and [`plot`]: the table, the JSON file and the PNG.

pub mod crowd;
pub mod open_loop;
pub mod outcome;
pub mod overload;
pub mod plot;
pub mod references;
pub mod report;
pub mod scenarios;
