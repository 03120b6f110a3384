//! The limits each figure is read against, measured under the same load in the same run:
//! a do-nothing HTTP handler (the HTTP ceiling), raw JetStream publishing with acks in flight
//! (the broker ceiling) and a naive server doing one INSERT per request (what a team would
//! build without Tally).

use crate::open_loop::{self, Answer, Plan, answer_of};
use crate::report::Row;
use crate::scenarios::{Clients, run_name};
use async_nats::jetstream;
use std::time::Duration;
use tally_schema::api::PollVoteBody;

fn vote(i: usize) -> PollVoteBody {
    PollVoteBody {
        id: None,
        voter: format!("v{i}").try_into().expect("voter id"),
        options: vec!["red".try_into().expect("option")],
    }
}

/// The flash-poll load against another server (`tally-noop` or `tally-naive`); the row and
/// the ids it acknowledged.
pub async fn http(
    name: &str,
    what: &str,
    clients: &Clients,
    base: &str,
    plan: Plan,
) -> (Row, Vec<uuid::Uuid>) {
    let url = format!(
        "{}/v1/polls/{}/votes",
        base.trim_end_matches('/'),
        run_name("ref")
    );
    let run = open_loop::run(name, plan, |i| {
        let request = clients.for_request(i).post(&url).json(&vote(i));
        async move { answer_of(request.send().await).await }
    })
    .await;
    let mut row = Row::new(name, what, &run, 1);
    row.outcome = format!("{} answered 2xx", run.accepted());
    (row, run.acknowledged)
}

/// The naive server's outcome: it stored one row per 202.
pub async fn naive_outcome(row: &mut Row, pool: &sqlx::PgPool, acknowledged: &[uuid::Uuid]) {
    let ids: Vec<uuid::Uuid> = acknowledged.to_vec();
    let stored: Result<(i64,), _> =
        sqlx::query_as("SELECT count(*) FROM naive_votes WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(pool)
            .await;
    row.outcome = match stored {
        Ok((n,)) if n as usize == ids.len() => format!("ok: {n} rows, one per 202"),
        Ok((n,)) => format!("MISMATCH: {n} rows for {} acknowledged", ids.len()),
        Err(e) => format!("MISMATCH: {e}"),
    };
}

/// Publishes the same number of vote-sized messages to a stream of its own at the same rate,
/// each awaiting its ack; the stream is deleted afterwards.
pub async fn jetstream(nats_url: &str, plan: Plan) -> anyhow::Result<Row> {
    let servers: Vec<&str> = nats_url.split(',').collect();
    let client = async_nats::ConnectOptions::new().connect(servers).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .max_ack_inflight(plan.connections)
        .backpressure_on_inflight(true)
        .build(client);
    let name = run_name("REFRAW").to_uppercase().replace('-', "_");
    let subject = format!("{}.v", name.to_lowercase());
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        storage: jetstream::stream::StorageType::File,
        max_bytes: 512 * 1024 * 1024,
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(serde_json::to_vec(&vote(0))?);
    let run = open_loop::run("raw JetStream", plan, |_| {
        let (js, subject, payload) = (js.clone(), subject.clone(), payload.clone());
        async move {
            let acked = match js.publish(subject, payload).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            Answer {
                status: if acked { 202 } else { 0 },
                acknowledged: Vec::new(),
            }
        }
    })
    .await;
    let stored = js.get_stream(&name).await?.info().await?.state.messages;
    js.delete_stream(&name).await?;
    let mut row = Row::new(
        "raw JetStream",
        "publish, ack awaited, many in flight",
        &run,
        1,
    );
    row.outcome = if stored as usize >= run.accepted() {
        format!("ok: {stored} messages stored for {} acks", run.accepted())
    } else {
        format!("MISMATCH: {stored} stored for {} acks", run.accepted())
    };
    Ok(row)
}
