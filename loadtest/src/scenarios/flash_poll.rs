//! flash-poll: 50,000 single votes from distinct voters offered within one second on one
//! poll; Postgres, the Redis tally and ClickHouse checked after it drains.

use super::{Clients, Harness, OPTIONS, answer_of_request, checked, poll_vote, run_name, with_lag};
use crate::cli::Settings;
use crate::open_loop::{self, Plan};
use crate::outcome::Stores;
use crate::report::Row;

/// The flash-poll load, which the references are measured under too.
pub fn plan(settings: &Settings) -> Plan {
    settings.plan(50_000, 50_000.0)
}

/// The `flash-poll` subcommand.
pub async fn run(h: &Harness<'_>) -> anyhow::Result<Vec<Row>> {
    Ok(vec![
        flash_poll(&h.clients, &h.stores, plan(h.settings)).await?,
    ])
}

/// `plan.requests` single votes from distinct voters on one poll.
pub async fn flash_poll(clients: &Clients, stores: &Stores, plan: Plan) -> anyhow::Result<Row> {
    let poll = run_name("flash");
    clients
        .define(
            "polls",
            serde_json::json!({"id": poll, "options": OPTIONS, "title": "flash poll"}),
        )
        .await?;
    let url = format!("{}/v1/polls/{poll}/votes", clients.ingest);
    let (run, lag) = with_lag(
        stores,
        open_loop::run("flash-poll", plan, |i| {
            answer_of_request(clients.for_request(i).post(&url).json(&poll_vote("v", i)))
        }),
    )
    .await;
    let mut row = Row::new("flash-poll", "single votes, one poll", &run, 1);
    row.lag_p99_ms = lag;
    let outcome = outcome(stores, &poll, &run.acknowledged).await;
    checked(&mut row, outcome).await;
    Ok(row)
}

/// Votes on `poll`: Postgres holds exactly `acknowledged`, the Redis tally equals what
/// Postgres implies, ClickHouse holds as many (each waited for until it drains).
pub async fn outcome(
    stores: &Stores,
    poll: &str,
    acknowledged: &[uuid::Uuid],
) -> anyhow::Result<String> {
    let n = stores
        .postgres_exactly("poll_votes", "poll", poll, acknowledged)
        .await?;
    let tally_key = stores.keys.poll_tally(poll);
    let tally = stores
        .redis_matches(
            "poll tally",
            async |redis| {
                let mut counts: std::collections::BTreeMap<String, i64> =
                    redis::AsyncCommands::hgetall(redis, &tally_key).await?;
                counts.retain(|_, n| *n != 0);
                Ok(counts)
            },
            async |pg| {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT o, count(*) FROM poll_choices, unnest(options) o WHERE poll = $1 GROUP BY o",
                )
                .bind(poll)
                .fetch_all(pg)
                .await?;
                Ok(rows.into_iter().collect())
            },
        )
        .await?;
    stores.clickhouse_count("poll_vote", poll, n).await?;
    Ok(format!(
        "{n} rows in Postgres, Redis tally {tally:?} = Postgres, ClickHouse {n}"
    ))
}
