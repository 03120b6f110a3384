//! registration-rush: distinct users register for a first-come tournament; Postgres, the
//! Redis registrant count, the places in stream order and ClickHouse checked after it drains.

use super::{Clients, Harness, answer_of_request, checked, run_name, with_lag};
use crate::open_loop::{self, Plan};
use crate::outcome::Stores;
use crate::report::Row;
use anyhow::bail;
use tally_schema::api::RegistrationBody;

/// The `registration-rush` subcommand: 10,000 registrants at 5,000/s for 700 places.
pub async fn run(h: &Harness<'_>) -> anyhow::Result<Vec<Row>> {
    let plan = h.settings.plan(10_000, 5_000.0);
    Ok(vec![
        registration_rush(&h.clients, &h.stores, plan, 700).await?,
    ])
}

/// Distinct users register for a first-come tournament with `places`.
pub async fn registration_rush(
    clients: &Clients,
    stores: &Stores,
    plan: Plan,
    places: usize,
) -> anyhow::Result<Row> {
    let tournament = run_name("rush");
    clients
        .define(
            "tournaments",
            serde_json::json!({"id": tournament, "title": "rush", "capacity": places, "mode": "first_come"}),
        )
        .await?;
    let url = format!(
        "{}/v1/tournaments/{tournament}/registrations",
        clients.ingest
    );
    let (run, lag) = with_lag(
        stores,
        open_loop::run("registration-rush", plan, |i| {
            let body = RegistrationBody {
                id: None,
                user: format!("u{i}").try_into().expect("user"),
                group: None,
                email: None,
                time_zone: None,
            };
            answer_of_request(clients.for_request(i).post(&url).json(&body))
        }),
    )
    .await;
    let mut row = Row::new(
        "registration-rush",
        &format!("{places} places, first come"),
        &run,
        1,
    );
    row.lag_p99_ms = lag;
    let outcome = async {
        let n = stores
            .postgres_exactly(
                "registrations",
                "tournament",
                &tournament,
                &run.acknowledged,
            )
            .await?;
        let key = stores.keys.registrations(&tournament);
        stores
            .redis_matches(
                "registrants",
                async |redis| {
                    let total: Option<i64> =
                        redis::AsyncCommands::hget(redis, &key, "_total").await?;
                    Ok(total.unwrap_or(0))
                },
                async |pg| {
                    let (n,): (i64,) = sqlx::query_as(
                        "SELECT count(DISTINCT user_id) FROM registrations WHERE tournament = $1",
                    )
                    .bind(&tournament)
                    .fetch_one(pg)
                    .await?;
                    Ok(n)
                },
            )
            .await?;
        let (placed,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM registration_positions WHERE tournament = $1 AND position <= $2",
        )
        .bind(&tournament)
        .bind(places as i64)
        .fetch_one(&stores.pg)
        .await?;
        if placed as usize != places.min(n) {
            bail!("{placed} placed for {places} places");
        }
        stores
            .clickhouse_count("registration", &tournament, n)
            .await?;
        Ok(format!(
            "{n} registrants in Postgres and Redis, {placed} placed in stream order, ClickHouse {n}"
        ))
    };
    checked(&mut row, outcome.await).await;
    Ok(row)
}
