//! tournament: a burst of scores while readers fetch the standings and clients hold the live
//! standings stream; Postgres, the Redis standings and ClickHouse checked after it drains,
//! and every stream held throughout.

use super::{Clients, Harness, answer_of_request, checked, run_name, with_lag};
use crate::open_loop::{self, Answer, Plan};
use crate::outcome::Stores;
use crate::report::Row;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tally_schema::api::ScoreBody;

/// The `tournament` subcommand: 20,000 scores at 5,000/s, 8,000 reads at 2,000/s, 200 streams.
pub async fn run(h: &Harness<'_>) -> anyhow::Result<Vec<Row>> {
    let (scores, reads) = (
        h.settings.plan(20_000, 5_000.0),
        h.settings.plan(8_000, 2_000.0),
    );
    let (scores, reads) = tournament(&h.clients, &h.stores, scores, reads, 200).await?;
    Ok(vec![scores, reads])
}

/// A burst of scores while readers fetch the top 10 and `streams` clients hold
/// the live standings stream. Returns the scores' row and the reads' row.
pub async fn tournament(
    clients: &Clients,
    stores: &Stores,
    scores: Plan,
    reads: Plan,
    streams: usize,
) -> anyhow::Result<(Row, Row)> {
    let tournament = run_name("cup");
    clients
        .define(
            "tournaments",
            serde_json::json!({"id": tournament, "title": "load cup"}),
        )
        .await?;
    let base = format!("{}/v1/tournaments/{tournament}", clients.ingest);
    // The followers: each counts the updates it received.
    let updates = Arc::new(AtomicUsize::new(0));
    let followers: Vec<_> = (0..streams)
        .map(|i| {
            let (client, url, updates) = (
                clients.for_request(i).clone(),
                format!("{base}/standings/stream"),
                updates.clone(),
            );
            tokio::spawn(async move {
                let Ok(response) = client
                    .get(url)
                    .timeout(Duration::from_secs(3600))
                    .send()
                    .await
                else {
                    return false;
                };
                let mut body = response.bytes_stream();
                let mut seen = 0;
                while let Some(Ok(chunk)) = body.next().await {
                    let events = chunk.windows(5).filter(|w| w == b"data:").count();
                    seen += events;
                    updates.fetch_add(events, Ordering::Relaxed);
                }
                seen > 0
            })
        })
        .collect();
    let teams = 50;
    let score_url = format!("{base}/scores");
    let standings_url = format!("{base}/standings?limit=10");
    let ((score_run, lag), read_run) = tokio::join!(
        with_lag(
            stores,
            open_loop::run("tournament scores", scores, |i| {
                let body = ScoreBody {
                    id: None,
                    match_id: format!("r{}", i / 1000).try_into().expect("match"),
                    team: format!("team{}", i % teams).try_into().expect("team"),
                    points: (i % 3) as i64 + 1,
                };
                answer_of_request(clients.for_request(i).post(&score_url).json(&body))
            }),
        ),
        open_loop::run("standings reads", reads, |i| {
            let request = clients.for_request(i).get(&standings_url);
            async move {
                match request.send().await {
                    Ok(r) => Answer {
                        status: r.status().as_u16(),
                        acknowledged: Vec::new(),
                    },
                    Err(_) => Answer::default(),
                }
            }
        })
    );
    let mut score_row = Row::new(
        "tournament",
        "scores during reads and live streams",
        &score_run,
        1,
    );
    score_row.lag_p99_ms = lag;
    let mut read_row = Row::new("tournament reads", "standings top 10", &read_run, 1);
    let outcome = async {
        let n = stores
            .postgres_exactly("scores", "tournament", &tournament, &score_run.acknowledged)
            .await?;
        let key = stores.keys.standings(&tournament);
        stores
            .redis_matches(
                "standings",
                async |redis| {
                    let points: Vec<(String, f64)> = redis::AsyncCommands::zrange_withscores(redis, &key, 0, -1).await?;
                    Ok(points.into_iter().map(|(t, p)| (t, p as i64)).collect::<std::collections::BTreeMap<_, _>>())
                },
                async |pg| {
                    let rows: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT team, sum(points)::bigint FROM scores WHERE tournament = $1 GROUP BY team",
                    )
                    .bind(&tournament)
                    .fetch_all(pg)
                    .await?;
                    Ok(rows.into_iter().collect())
                },
            )
            .await?;
        stores.clickhouse_count("score", &tournament, n).await?;
        Ok(format!(
            "{n} rows in Postgres, Redis standings = Postgres sums for {teams} teams, ClickHouse {n}"
        ))
    };
    checked(&mut score_row, outcome.await).await;
    // Followers saw the burst live; then they are let go.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut live = 0;
    for follower in &followers {
        if follower.is_finished() {
            continue;
        }
        live += 1;
    }
    let received = updates.load(Ordering::Relaxed);
    for follower in followers {
        follower.abort();
    }
    read_row.outcome = if live == streams && received >= streams {
        format!("ok: {streams} live streams held throughout, {received} updates delivered")
    } else {
        format!("MISMATCH: {live} of {streams} streams alive, {received} updates")
    };
    Ok((score_row, read_row))
}
