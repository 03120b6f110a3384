//! arena: pair voters, each voting in a session of their own and then reading their personal
//! ranking; Postgres, zero-sum Elo in Redis and ClickHouse checked after it drains. The vote
//! and the check are arena-crowd's too.

use super::{Clients, Harness, checked, run_name, with_lag};
use crate::open_loop::{self, Answer, Plan, Run, answer_of};
use crate::outcome::Stores;
use crate::report::Row;
use tally_schema::api::PairVoteBody;

/// The `arena` subcommand: 20,000 voters at 10,000/s.
pub async fn run(h: &Harness<'_>) -> anyhow::Result<Vec<Row>> {
    let plan = h.settings.plan(20_000, 10_000.0);
    Ok(vec![arena(&h.clients, &h.stores, plan).await?])
}

/// Each pair voter votes once in a session of their own, then reads their personal
/// ranking; the interaction is one request of the plan.
pub async fn arena(clients: &Clients, stores: &Stores, plan: Plan) -> anyhow::Result<Row> {
    let arena = define_arena(clients, "arena").await?;
    let base = format!("{}/v1/arenas/{arena}", clients.ingest);
    let (run, lag) = with_lag(
        stores,
        open_loop::run("arena", plan, |i| {
            vote_and_read(clients.for_request(i).clone(), &base, i, i)
        }),
    )
    .await;
    let mut row = Row::new("arena", "pair vote + personal ranking read", &run, 1);
    row.lag_p99_ms = lag;
    let outcome = arena_outcome(stores, &arena, &run);
    checked(&mut row, outcome.await).await;
    Ok(row)
}

/// Defines an arena of 20 items for a run.
pub async fn define_arena(clients: &Clients, kind: &str) -> anyhow::Result<String> {
    let arena = run_name(kind);
    let items: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    clients
        .define("arenas", serde_json::json!({"id": arena, "items": items}))
        .await?;
    Ok(arena)
}

/// Pair vote `i` of session `session` on the arena at `base`, then (when accepted) that
/// session's personal ranking: one interaction, one answer.
pub fn vote_and_read(
    client: reqwest::Client,
    base: &str,
    session: usize,
    i: usize,
) -> impl Future<Output = Answer> + Send + 'static {
    let (winner, loser) = (i % 20, (i * 7 + 3) % 20);
    let loser = if loser == winner {
        (loser + 1) % 20
    } else {
        loser
    };
    let body = PairVoteBody {
        id: None,
        session: format!("s{session}").try_into().expect("session id"),
        winner: format!("m{winner}").try_into().expect("item"),
        loser: format!("m{loser}").try_into().expect("item"),
    };
    let (vote, read) = (
        format!("{base}/votes"),
        format!("{base}/sessions/s{session}/ranking"),
    );
    async move {
        let answer = answer_of(client.post(vote).json(&body).send().await).await;
        if answer.status != 202 {
            return answer;
        }
        match client.get(read).send().await {
            Ok(r) if r.status() == 200 => answer,
            Ok(r) => Answer {
                status: r.status().as_u16(),
                acknowledged: answer.acknowledged,
            },
            Err(_) => Answer {
                status: 0,
                acknowledged: answer.acknowledged,
            },
        }
    }
}

/// Every acknowledged pair vote in Postgres once, Elo in Redis zero-sum over the items
/// Postgres saw, ClickHouse the same count.
pub async fn arena_outcome(stores: &Stores, arena: &str, run: &Run) -> anyhow::Result<String> {
    let n = stores
        .postgres_exactly("pair_votes", "arena", arena, &run.acknowledged)
        .await?;
    // Elo moves points from loser to winner: the ratings' sum stays items × initial.
    let elo_key = stores.keys.arena_elo(arena);
    let (rated, sum) = stores
        .redis_matches(
            "Elo items and rating sum",
            async |redis| {
                let ratings: Vec<(String, f64)> =
                    redis::AsyncCommands::zrange_withscores(redis, &elo_key, 0, -1).await?;
                let sum: f64 = ratings.iter().map(|(_, r)| r).sum();
                Ok((ratings.len() as i64, sum.round() as i64))
            },
            async |pg| {
                let (items,): (i64,) = sqlx::query_as(
                    "SELECT count(DISTINCT i) FROM pair_votes, unnest(ARRAY[winner, loser]) i WHERE arena = $1",
                )
                .bind(arena)
                .fetch_one(pg)
                .await?;
                Ok((items, items * 1000))
            },
        )
        .await?;
    stores.clickhouse_count("pair_vote", arena, n).await?;
    Ok(format!(
        "{n} rows in Postgres, {rated} items rated in Redis summing to {sum} (zero-sum Elo), ClickHouse {n}"
    ))
}
