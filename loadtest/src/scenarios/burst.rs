//! burst: poll votes from distinct voters on a fresh poll, closed loop (`--connections`
//! requests in flight, the next sent as one is answered), one vote per request or batched
//! through `POST /v1/events`; then Postgres checked to hold exactly the acknowledged votes.
//! How fast a burst drains, rather than latency at an arrival rate: the demo's burst, the
//! rate-limit bench's and the writer bench's backlog (built unchecked while the writer is
//! stopped). The poll (`load-…`) is named in the row, so scripts can find it in the output.

use super::{Harness, OPTIONS, answer_of_request, batch, checked, poll_vote, run_name, with_lag};
use crate::open_loop;
use crate::report::Row;
use tally_schema::ids::PollId;

/// What to send.
#[derive(clap::Args, Clone, Debug)]
pub struct BurstArgs {
    /// Votes (times `--scale`).
    #[arg(long, default_value_t = 20_000)]
    pub count: usize,
    /// Send the votes through `POST /v1/events`, SIZE per request (the last request takes
    /// what is left), rather than one per request to the poll's votes.
    #[arg(long, value_name = "SIZE")]
    pub batch: Option<usize>,
    /// Do not check the outcome (a backlog built while the writer is stopped).
    #[arg(long)]
    pub no_check: bool,
}

/// The `burst` subcommand.
pub async fn run(h: &Harness<'_>, args: &BurstArgs) -> anyhow::Result<Vec<Row>> {
    let (clients, connections) = (&h.clients, h.settings.connections);
    let count = h.settings.scaled(args.count);
    let poll = run_name("load");
    clients
        .define(
            "polls",
            serde_json::json!({"id": poll, "options": OPTIONS, "title": "load test"}),
        )
        .await?;
    let per_request = args.batch.map(|size| size.max(1));
    let (run, lag) = match per_request {
        None => {
            let url = format!("{}/v1/polls/{poll}/votes", clients.ingest);
            let burst = open_loop::closed_loop("burst", count, connections, |i| {
                answer_of_request(clients.for_request(i).post(&url).json(&poll_vote("v", i)))
            });
            with_lag(&h.stores, burst).await
        }
        Some(size) => {
            let poll_id: PollId = poll
                .clone()
                .try_into()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let url = format!("{}/v1/events", clients.ingest);
            let requests = count.div_ceil(size);
            let burst = open_loop::closed_loop("burst", requests, connections, |r| {
                let body = batch::events(&poll_id, "v", r * size..((r + 1) * size).min(count));
                answer_of_request(clients.for_request(r).post(&url).json(&body))
            });
            with_lag(&h.stores, burst).await
        }
    };
    let what = match per_request {
        None => format!("single votes on poll {poll}, {connections} in flight"),
        Some(size) => format!("{size} votes per request on poll {poll}, {connections} in flight"),
    };
    let mut row = Row::new("burst", &what, &run, per_request.unwrap_or(1));
    row.lag_p99_ms = lag;
    let sent = format!(
        "{} of {count} votes acknowledged in {:.2} s",
        run.acknowledged.len(),
        run.elapsed.as_secs_f64()
    );
    if args.no_check {
        row.outcome = format!("not checked: {sent}");
        return Ok(vec![row]);
    }
    let outcome = h
        .stores
        .postgres_exactly("poll_votes", "poll", &poll, &run.acknowledged)
        .await
        .map(|n| format!("{sent}, Postgres holds exactly these {n}"));
    checked(&mut row, outcome).await;
    Ok(vec![row])
}
