//! suite: the three references under the flash-poll load, then flash-poll, arena, arena-crowd
//! (when there are more ingest instances to spread it over), tournament, registration-rush
//! and batch, in one run; each row's events/s read against the references.

use super::{Harness, arena, batch, crowd, flash_poll, registration_rush, tournament};
use crate::references;
use crate::report::Row;

/// The references' row names: each row's events/s is divided by theirs in the table.
pub const REFERENCES: [&str; 3] = ["do-nothing handler", "raw JetStream", "naive INSERT"];

/// Where the references listen, and arena-crowd's shape.
#[derive(clap::Args, Clone, Debug)]
pub struct SuiteArgs {
    /// The do-nothing handler (`tally-noop`).
    #[arg(long, default_value = "http://127.0.0.1:8099")]
    pub noop_url: String,
    /// The naive one-INSERT server (`tally-naive`).
    #[arg(long, default_value = "http://127.0.0.1:8098")]
    pub naive_url: String,
    #[arg(long, env = "TALLY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// arena-crowd's shape, when `--ingest-also` lets the suite run it.
    #[command(flatten)]
    pub crowd: crowd::CrowdArgs,
}

/// The `suite` subcommand.
pub async fn run(h: &Harness<'_>, args: &SuiteArgs) -> anyhow::Result<Vec<Row>> {
    let flash = flash_poll::plan(h.settings);
    let (noop, _) = references::http(
        "do-nothing handler",
        "HTTP ceiling",
        &h.clients,
        &args.noop_url,
        flash,
    )
    .await;
    let mut rows = vec![noop, references::jetstream(&args.nats_url, flash).await?];
    let (mut naive, ids) = references::http(
        "naive INSERT",
        "one INSERT per request",
        &h.clients,
        &args.naive_url,
        flash,
    )
    .await;
    references::naive_outcome(&mut naive, &h.stores.pg, &ids).await;
    rows.push(naive);
    rows.extend(flash_poll::run(h).await?);
    rows.extend(arena::run(h).await?);
    if !h.settings.ingest_also.is_empty() {
        rows.extend(crowd::run(h, &args.crowd).await?);
    }
    rows.extend(tournament::run(h).await?);
    rows.extend(registration_rush::run(h).await?);
    rows.extend(batch::run(h).await?);
    Ok(rows)
}
