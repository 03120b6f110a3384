//! `tally-burst`: sends closed-loop bursts to ingest, reports throughput and latency, and checks the
//! outcome in Postgres — every acknowledged event stored exactly once, nothing else.
//!
//! Payloads are built from `tally_schema`'s request types, never hand-written JSON. The
//! closed-loop runner the demo and the limiter benchmark use; the open-loop scenarios with
//! their references are `tally-loadtest`.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tally_schema::api::{BatchItem, PollVoteBody};
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Bursts against Tally's ingest, checked in Postgres.")]
struct Args {
    /// Ingest base URL.
    #[arg(
        long,
        env = "TALLY_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    ingest: String,
    /// Postgres URL to verify the outcome in (skip the check when absent).
    #[arg(long, env = "TALLY_DATABASE_URL")]
    database_url: Option<String>,
    /// Admin API key, to define the fresh poll each run votes in (`tally keys create`).
    #[arg(long, env = "TALLY_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Concurrent requests.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Single-event requests: `count` poll votes on a fresh poll.
    Burst {
        #[arg(long, default_value_t = 20_000)]
        count: usize,
    },
    /// `POST /v1/events` with `size` votes per request.
    Batch {
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long, default_value_t = 500)]
        size: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let poll = format!("load-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    define_poll(&client, &args.ingest, &args.api_key, &poll).await?;
    let started = Instant::now();
    let (acked, latencies, events) = match args.scenario {
        Scenario::Burst { count } => {
            burst(&client, &args.ingest, &poll, count, args.concurrency).await?
        }
        Scenario::Batch { count, size } => {
            batch(&client, &args.ingest, &poll, count, size, args.concurrency).await?
        }
    };
    let elapsed = started.elapsed();
    let rate = events as f64 / elapsed.as_secs_f64();
    println!(
        "poll {poll}: {} of {events} events acknowledged in {:.2} s = {rate:.0} events/s; request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        acked.len(),
        elapsed.as_secs_f64(),
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
        latencies.max() as f64 / 1000.0,
    );
    if let Some(url) = args.database_url {
        verify(&url, &poll, &acked).await?;
    }
    Ok(())
}

/// Creates the run's poll through the admin API, as an operator would before a burst.
async fn define_poll(
    client: &reqwest::Client,
    ingest: &str,
    key: &str,
    poll: &str,
) -> anyhow::Result<()> {
    let definition = serde_json::json!({"id": poll, "options": OPTIONS, "title": "load test"});
    let response = client
        .post(format!("{ingest}/admin/v1/polls"))
        .bearer_auth(key)
        .json(&definition)
        .send()
        .await
        .context("reaching the admin API")?;
    if response.status() != 201 {
        bail!(
            "creating poll {poll}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

const OPTIONS: [&str; 3] = ["red", "green", "blue"];

fn vote(i: usize) -> PollVoteBody {
    PollVoteBody {
        id: None,
        voter: format!("voter-{i}").try_into().expect("valid voter id"),
        options: vec![OPTIONS[i % 3].try_into().expect("valid option")],
    }
}

type Outcome = (HashSet<Uuid>, Histogram<u64>, usize);

async fn burst(
    client: &reqwest::Client,
    ingest: &str,
    poll: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Outcome> {
    let url = format!("{ingest}/v1/polls/{poll}/votes");
    let results: Vec<_> = futures::stream::iter(0..count)
        .map(|i| {
            let request = client.post(&url).json(&vote(i));
            async move {
                let sent = Instant::now();
                let response = request.send().await;
                let took = sent.elapsed();
                let id = match response {
                    Ok(r) if r.status() == 202 => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|b| b["id"].as_str()?.parse::<Uuid>().ok()),
                    _ => None,
                };
                (id, took)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut acked = HashSet::new();
    for (id, took) in results {
        latencies.saturating_record(took.as_micros() as u64);
        acked.extend(id);
    }
    Ok((acked, latencies, count))
}

async fn batch(
    client: &reqwest::Client,
    ingest: &str,
    poll: &str,
    count: usize,
    size: usize,
    concurrency: usize,
) -> anyhow::Result<Outcome> {
    let url = format!("{ingest}/v1/events");
    let poll_id: tally_schema::ids::PollId = poll.try_into()?;
    let requests = count.div_ceil(size);
    let results: Vec<_> = futures::stream::iter(0..requests)
        .map(|r| {
            let items: Vec<BatchItem> = (r * size..((r + 1) * size).min(count))
                .map(|i| BatchItem::PollVote {
                    poll: poll_id.clone(),
                    body: vote(i),
                })
                .collect();
            let request = client
                .post(&url)
                .json(&serde_json::json!({ "events": items }));
            async move {
                let sent = Instant::now();
                let body = match request.send().await {
                    Ok(r) => r.json::<serde_json::Value>().await.ok(),
                    Err(_) => None,
                };
                let ids: Vec<Uuid> = body
                    .iter()
                    .flat_map(|b| b["results"].as_array().cloned().unwrap_or_default())
                    .filter(|item| item["status"] == 202)
                    .filter_map(|item| item["id"].as_str()?.parse().ok())
                    .collect();
                (ids, sent.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut acked = HashSet::new();
    for (ids, took) in results {
        latencies.saturating_record(took.as_micros() as u64);
        acked.extend(ids);
    }
    Ok((acked, latencies, count))
}

/// Waits for the writer to drain, then checks Postgres holds exactly the acknowledged votes.
async fn verify(url: &str, poll: &str, acked: &HashSet<Uuid>) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(url)
        .await
        .context("connect to Postgres")?;
    let started = Instant::now();
    let mut last = (0usize, Instant::now());
    loop {
        let rows: Vec<(Uuid,)> = sqlx::query_as("SELECT event_id FROM poll_votes WHERE poll = $1")
            .bind(poll)
            .fetch_all(&pool)
            .await?;
        let stored: HashSet<Uuid> = rows.iter().map(|(id,)| *id).collect();
        if rows.len() >= acked.len() || last.1.elapsed() > Duration::from_secs(30) {
            let lost = acked.difference(&stored).count();
            let unexpected = stored.difference(acked).count();
            let duplicated = rows.len() - stored.len();
            println!(
                "outcome: {} acknowledged, {} rows in Postgres after {:.1} s: {lost} lost, {duplicated} duplicated, {unexpected} unexpected",
                acked.len(),
                rows.len(),
                started.elapsed().as_secs_f64()
            );
            if lost + duplicated + unexpected > 0 {
                bail!("Postgres does not hold exactly the acknowledged events");
            }
            return Ok(());
        }
        if rows.len() > last.0 {
            last = (rows.len(), Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
