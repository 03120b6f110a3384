//! cost: CPU µs per acknowledged event, by process, at steady rates. For each rate the
//! do-nothing handler takes the same votes first (its CPU per request is the HTTP edge's
//! cost), then the pipeline: single votes on a fresh poll, each process's CPU read from
//! `/proc` just before the first request and again once the Postgres writer, the Redis sink
//! and the ClickHouse sink have acknowledged everything (their durable consumers have nothing
//! pending: every effect is committed). Then, outside the window, the flash-poll outcome
//! check. The window includes the processes' idle CPU while the sinks catch up; each
//! process's idle CPU per second, measured before the first run, says how much.
//!
//! Waiting on the consumers rather than on the outcome check keeps the checker's own queries
//! (all of a poll's event ids from Postgres, every 200 ms) out of the figures.

use super::{Harness, OPTIONS, answer_of_request, checked, flash_poll, poll_vote, run_name};
use crate::cost::{self, Group, Meter};
use crate::open_loop::{self, Plan};
use crate::references;
use crate::report::Row;
use anyhow::{Context, bail};
use async_nats::jetstream;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tally_schema::consumers;

/// The cost run's shape on the command line.
#[derive(clap::Args, Clone, Debug)]
pub struct CostArgs {
    /// Steady loads to measure, `RATExCOUNT` (votes per second × votes, the count times
    /// `--scale`), comma-separated, each its own window.
    #[arg(long, value_delimiter = ',', default_values = ["5000x50000", "20000x100000"])]
    pub runs: Vec<Load>,
    /// The do-nothing handler (`tally-noop`), given each load before the pipeline; empty to
    /// leave it out.
    #[arg(long, default_value = "http://127.0.0.1:8099")]
    pub noop_url: String,
    #[arg(long, env = "TALLY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The event stream.
    #[arg(long, default_value = "TALLY")]
    pub stream: String,
    /// The durable consumers whose catching up ends a window (the sinks of a vote).
    #[arg(long, value_delimiter = ',', default_values = [consumers::POSTGRES_WRITER, consumers::REDIS_SINK, consumers::CLICKHOUSE_SINK])]
    pub consumers: Vec<String>,
    /// Seconds with no load before the first run, for each process's idle CPU (0: not
    /// measured).
    #[arg(long, default_value_t = 3.0)]
    pub idle_seconds: f64,
    /// Seconds between runs, so one run's tail stays out of the next window.
    #[arg(long, default_value_t = 2.0)]
    pub pause_seconds: f64,
}

/// One steady load: `requests` votes at `rate` per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    pub rate: f64,
    pub requests: usize,
}

impl FromStr for Load {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let wrong = || format!("{s:?}: expected RATExCOUNT, such as 5000x50000");
        let (rate, requests) = s.split_once(['x', '×']).ok_or_else(wrong)?;
        let rate: f64 = rate.trim().parse().map_err(|_| wrong())?;
        let requests: usize = requests
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| wrong())?;
        if !(rate.is_finite() && rate > 0.0) || requests == 0 {
            return Err(wrong());
        }
        Ok(Self { rate, requests })
    }
}

/// How long the sinks may take to catch up after a run.
const DRAIN: Duration = Duration::from_secs(300);

/// The `cost` subcommand: for each load, the do-nothing handler's row and the pipeline's,
/// each with its [`cost::Cost`].
pub async fn run(h: &Harness<'_>, args: &CostArgs) -> anyhow::Result<Vec<Row>> {
    let sinks = Sinks::connect(args).await?;
    if !args.noop_url.is_empty() {
        h.clients
            .for_request(0)
            .get(&args.noop_url)
            .send()
            .await
            .with_context(|| {
                format!(
                    "the do-nothing handler at {} (start tally-noop, or pass --noop-url '')",
                    args.noop_url
                )
            })?;
    }
    let mut meter = Meter::new();
    if args.idle_seconds > 0.0 {
        // Whatever the sinks still had to do from before is not this run's.
        sinks.caught_up(DRAIN).await?;
        meter
            .measure_idle(Duration::from_secs_f64(args.idle_seconds))
            .await;
        if let Some(idle) = meter.idle_us_per_s() {
            let each: Vec<String> = idle
                .iter()
                .map(|(g, us)| format!("{} {:.0}", g.label(), us))
                .collect();
            println!("idle CPU, µs per second: {}", each.join(", "));
        }
    }
    let pause = Duration::from_secs_f64(args.pause_seconds);
    let mut rows = Vec::new();
    for load in &args.runs {
        let plan = h.settings.plan(load.requests, load.rate);
        let noop = if args.noop_url.is_empty() {
            None
        } else {
            let before = cost::sample();
            let (mut row, _) = references::http(
                "do-nothing handler",
                &format!("HTTP ceiling at {:.0}/s", load.rate),
                &h.clients,
                &args.noop_url,
                plan,
            )
            .await;
            let c = meter.cost(&before, &cost::sample(), row.accepted);
            let per_request = c.group(Group::Noop).us_per_event;
            row.cost = Some(c);
            rows.push(row);
            tokio::time::sleep(pause).await;
            Some(per_request)
        };
        let mut row = pipeline(h, &sinks, &meter, plan).await?;
        if let Some(cost) = &mut row.cost {
            cost.do_nothing_us_per_request = noop;
        }
        rows.push(row);
        tokio::time::sleep(pause).await;
    }
    Ok(rows)
}

/// Single votes on a fresh poll at the plan's rate; the window ends when the sinks caught up.
async fn pipeline(
    h: &Harness<'_>,
    sinks: &Sinks,
    meter: &Meter,
    plan: Plan,
) -> anyhow::Result<Row> {
    let clients = &h.clients;
    let poll = run_name("cost");
    clients
        .define(
            "polls",
            serde_json::json!({"id": poll, "options": OPTIONS, "title": "cost"}),
        )
        .await?;
    let url = format!("{}/v1/polls/{poll}/votes", clients.ingest);
    let before = cost::sample();
    let run = open_loop::run("flash votes", plan, |i| {
        answer_of_request(clients.for_request(i).post(&url).json(&poll_vote("v", i)))
    })
    .await;
    let drained = sinks.caught_up(DRAIN).await;
    let after = cost::sample();
    let what = format!("single votes at {:.0}/s", plan.rate);
    let mut row = Row::new("flash votes", &what, &run, 1);
    row.cost = Some(meter.cost(&before, &after, run.acknowledged.len()));
    match drained {
        Ok(()) => {
            let outcome = flash_poll::outcome(&h.stores, &poll, &run.acknowledged).await;
            checked(&mut row, outcome).await;
        }
        Err(e) => row.outcome = format!("MISMATCH: {e:#}"),
    }
    Ok(row)
}

/// The durable consumers a vote's effects wait on.
struct Sinks {
    stream: jetstream::stream::Stream,
    consumers: Vec<String>,
}

impl Sinks {
    /// Connects and checks every consumer exists.
    async fn connect(args: &CostArgs) -> anyhow::Result<Self> {
        let servers: Vec<&str> = args.nats_url.split(',').collect();
        let client = async_nats::ConnectOptions::new()
            .connect(servers)
            .await
            .with_context(|| format!("connect to NATS at {}", args.nats_url))?;
        let stream = jetstream::new(client)
            .get_stream(&args.stream)
            .await
            .with_context(|| format!("stream {}", args.stream))?;
        for name in &args.consumers {
            stream
                .consumer_info(name)
                .await
                .with_context(|| format!("consumer {name} of {} (see --consumers)", args.stream))?;
        }
        Ok(Self {
            stream,
            consumers: args.consumers.clone(),
        })
    }

    /// Waits until every consumer has nothing pending and nothing awaiting its ack.
    async fn caught_up(&self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let mut behind = Vec::new();
            for name in &self.consumers {
                let info = self.stream.consumer_info(name).await?;
                let pending = info.num_pending + info.num_ack_pending as u64;
                if pending > 0 {
                    behind.push(format!("{name} {pending}"));
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!(
                    "sinks not caught up after {} s: {}",
                    limit.as_secs(),
                    behind.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_is_a_rate_times_a_count() {
        let load = |s: &str| s.parse::<Load>();
        assert_eq!(
            load("5000x50000"),
            Ok(Load {
                rate: 5000.0,
                requests: 50_000
            })
        );
        assert_eq!(
            load("20000×100_000"),
            Ok(Load {
                rate: 20_000.0,
                requests: 100_000
            })
        );
        assert_eq!(load("2.5x10").map(|l| l.rate), Ok(2.5));
        for wrong in ["5000", "x10", "0x10", "10x0", "ax10", "infx10"] {
            assert!(load(wrong).is_err(), "{wrong}");
        }
    }
}
