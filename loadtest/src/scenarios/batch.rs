//! batch: `POST /v1/events`, many votes per request; each acknowledged item checked in
//! Postgres and ClickHouse after it drains. Its request body is burst's batched one too.

use super::{Clients, Harness, OPTIONS, answer_of_request, checked, poll_vote, run_name, with_lag};
use crate::open_loop::{self, Plan};
use crate::outcome::Stores;
use crate::report::Row;
use std::ops::Range;
use tally_schema::api::BatchItem;
use tally_schema::ids::PollId;

/// The `batch` subcommand: 200 requests of 1,000 votes at 50 requests per second.
pub async fn run(h: &Harness<'_>) -> anyhow::Result<Vec<Row>> {
    let plan = h.settings.plan(200, 50.0);
    Ok(vec![batch(&h.clients, &h.stores, plan, 1000).await?])
}

/// The body of a `POST /v1/events` holding votes `votes` on `poll`, voters `{voter}{i}`.
pub fn events(poll: &PollId, voter: &str, votes: Range<usize>) -> serde_json::Value {
    let items: Vec<BatchItem> = votes
        .map(|i| BatchItem::PollVote {
            poll: poll.clone(),
            body: poll_vote(voter, i),
        })
        .collect();
    serde_json::json!({"events": items})
}

/// `POST /v1/events` with `size` votes per request.
pub async fn batch(
    clients: &Clients,
    stores: &Stores,
    plan: Plan,
    size: usize,
) -> anyhow::Result<Row> {
    let poll = run_name("batch");
    clients
        .define("polls", serde_json::json!({"id": poll, "options": OPTIONS}))
        .await?;
    let poll_id: PollId = poll
        .clone()
        .try_into()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = format!("{}/v1/events", clients.ingest);
    let (run, lag) = with_lag(
        stores,
        open_loop::run("batch", plan, |r| {
            let body = events(&poll_id, "b", r * size..(r + 1) * size);
            answer_of_request(clients.for_request(r).post(&url).json(&body))
        }),
    )
    .await;
    let mut row = Row::new("batch", &format!("{size} votes per request"), &run, size);
    row.lag_p99_ms = lag;
    let outcome = async {
        // A 207 acknowledges some items and refuses others (each with its own status).
        let offered = run.plan.requests * size;
        let n = stores
            .postgres_exactly("poll_votes", "poll", &poll, &run.acknowledged)
            .await?;
        stores.clickhouse_count("poll_vote", &poll, n).await?;
        Ok(format!(
            "{n} of {offered} events acknowledged, each in Postgres exactly once, ClickHouse {n}"
        ))
    };
    checked(&mut row, outcome.await).await;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_body_holds_the_votes_of_its_range_as_typed_items() {
        let poll: PollId = "p".to_owned().try_into().unwrap();
        let body = events(&poll, "b", 4..6);
        let items = body["events"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["type"], "poll_vote");
        assert_eq!(items[0]["poll"], "p");
        assert_eq!(items[0]["voter"], "b4");
        assert_eq!(items[1]["options"], serde_json::json!([OPTIONS[5 % 3]]));
    }
}
