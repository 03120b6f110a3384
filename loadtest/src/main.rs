//! `tally-loadtest`: the scenarios from the field, open loop, with the references measured
//! in the same run, every outcome checked; a table, a JSON file and a PNG plot at the end.

use anyhow::bail;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tally_loadtest::open_loop::Plan;
use tally_loadtest::outcome::{StoreArgs, Stores};
use tally_loadtest::report::{self, Row};
use tally_loadtest::{crowd, overload, plot, references, scenarios};

#[derive(Parser)]
#[command(about = "Open-loop load scenarios against Tally, with references and outcome checks.")]
struct Args {
    #[arg(
        long,
        env = "TALLY_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    ingest: String,
    /// Admin API key, to define each run's poll, arena or tournament (`tally keys create`).
    #[arg(long, env = "TALLY_API_KEY", hide_env_values = true)]
    api_key: String,
    #[command(flatten)]
    stores: StoreArgs,
    /// Loopback source addresses to spread connections over (127.0.0.1–127.0.0.N).
    #[arg(long, default_value_t = 8)]
    addresses: u8,
    /// Connections (requests in flight) at most.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Multiplies every scenario's request count (the rate stays), for quick runs.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Where the JSON, the table and the plot go.
    #[arg(long, default_value = "loadtest/out")]
    out: PathBuf,
    /// More ingest instances (base URLs, comma-separated) that arena-crowd spreads its voters
    /// over beside `--ingest`: one process holds at most 20,000 connections here. The suite
    /// runs arena-crowd only when there are some.
    #[arg(long, value_delimiter = ',')]
    ingest_also: Vec<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// 50,000 single votes offered within one second on one poll.
    FlashPoll,
    /// 20,000 pair voters, each voting and reading their personal ranking.
    Arena,
    /// A burst of scores while clients read standings and hold live streams.
    Tournament,
    /// 10,000 registrants for 700 places.
    RegistrationRush,
    /// The batch endpoint, 1,000 events per request.
    Batch,
    /// Many pair voters at once, each on a connection of its own held for the whole run,
    /// over several generator processes and ingest instances.
    ArenaCrowd(CrowdArgs),
    /// One generator process's share of arena-crowd (started by arena-crowd itself).
    #[command(hide = true)]
    CrowdPart(crowd::PartArgs),
    /// Every scenario, with the three references, in one run.
    Suite(References),
    /// A sustainable rate, three times it, then the sustainable rate again; ingest's memory
    /// sampled throughout.
    Overload(OverloadArgs),
}

impl Scenario {
    /// What its output files start with: each run keeps its own table, JSON and plot, so the
    /// overload run after the suite does not overwrite the suite's.
    fn file_prefix(&self) -> &'static str {
        match self {
            Scenario::Suite(_) => "",
            Scenario::FlashPoll => "flash-poll-",
            Scenario::Arena => "arena-",
            Scenario::Tournament => "tournament-",
            Scenario::RegistrationRush => "registration-rush-",
            Scenario::Batch => "batch-",
            Scenario::ArenaCrowd(_) => "arena-crowd-",
            Scenario::CrowdPart(_) => "crowd-part-",
            Scenario::Overload(_) => "overload-",
        }
    }
}

#[derive(clap::Args, Clone)]
struct CrowdArgs {
    /// Voters, each on a connection of their own.
    #[arg(long, default_value_t = 20_000)]
    voters: usize,
    /// Votes (each followed by a personal-ranking read) per voter.
    #[arg(long, default_value_t = 2)]
    votes_each: usize,
    /// Seconds between one voter's votes.
    #[arg(long, default_value_t = 5.0)]
    interval_seconds: f64,
    /// Seconds over which the voters arrive.
    #[arg(long, default_value_t = 5.0)]
    ramp_seconds: f64,
    /// Generator processes (at most 20,000 open files each).
    #[arg(long, default_value_t = 4)]
    processes: usize,
}

#[derive(clap::Args, Clone)]
struct OverloadArgs {
    /// The rate ingest sustains on this machine (requests per second).
    #[arg(long, default_value_t = 4000.0)]
    sustainable_rate: f64,
    /// How many times the sustainable rate the middle phase offers.
    #[arg(long, default_value_t = 3.0)]
    factor: f64,
    /// Length of each of the three phases.
    #[arg(long, default_value_t = 10.0)]
    phase_seconds: f64,
    /// Ingest's process id, to sample its resident memory.
    #[arg(long)]
    ingest_pid: Option<u32>,
}

#[derive(clap::Args, Clone)]
struct References {
    /// The do-nothing handler (`tally-noop`).
    #[arg(long, default_value = "http://127.0.0.1:8099")]
    noop_url: String,
    /// The naive one-INSERT server (`tally-naive`).
    #[arg(long, default_value = "http://127.0.0.1:8098")]
    naive_url: String,
    #[arg(long, env = "TALLY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// arena-crowd's shape, when `--ingest-also` lets the suite run it.
    #[command(flatten)]
    crowd: CrowdArgs,
}

impl Args {
    fn plan(&self, requests: usize, rate: f64) -> Plan {
        Plan {
            requests: ((requests as f64 * self.scale).round() as usize).max(1),
            rate,
            connections: self.connections,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Scenario::CrowdPart(part) = &args.scenario {
        // A child of arena-crowd: its share of the voters, the result as JSON on stdout.
        let result = crowd::run_part(part).await?;
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }
    let clients = scenarios::Clients::new(&args.ingest, &args.api_key, args.addresses)?;
    let stores = Stores::connect(&args.stores).await?;
    let flash = args.plan(50_000, 50_000.0);
    let mut rows: Vec<Row> = Vec::new();
    let mut ratios = Vec::new();
    let scenario = args.scenario.clone();
    if let Scenario::Suite(refs) = &scenario {
        let (noop, _) = references::http(
            "do-nothing handler",
            "HTTP ceiling",
            &clients,
            &refs.noop_url,
            flash,
        )
        .await;
        rows.push(noop);
        rows.push(references::jetstream(&refs.nats_url, flash).await?);
        let (mut naive, ids) = references::http(
            "naive INSERT",
            "one INSERT per request",
            &clients,
            &refs.naive_url,
            flash,
        )
        .await;
        references::naive_outcome(&mut naive, &stores.pg, &ids).await;
        rows.push(naive);
        ratios = vec!["do-nothing handler", "raw JetStream", "naive INSERT"];
    }
    let all = matches!(scenario, Scenario::Suite(_));
    if all || matches!(scenario, Scenario::FlashPoll) {
        rows.push(scenarios::flash_poll(&clients, &stores, flash).await?);
    }
    if all || matches!(scenario, Scenario::Arena) {
        rows.push(scenarios::arena(&clients, &stores, args.plan(20_000, 10_000.0)).await?);
    }
    let crowd_args = match &scenario {
        Scenario::ArenaCrowd(c) => Some(c.clone()),
        Scenario::Suite(refs) if !args.ingest_also.is_empty() => Some(refs.crowd.clone()),
        _ => None,
    };
    if let Some(c) = crowd_args {
        let crowd = crowd::Crowd {
            voters: ((c.voters as f64 * args.scale).round() as usize).max(1),
            votes_each: c.votes_each.max(1),
            interval: std::time::Duration::from_secs_f64(c.interval_seconds),
            ramp: std::time::Duration::from_secs_f64(c.ramp_seconds),
            processes: c.processes,
            targets: std::iter::once(args.ingest.clone())
                .chain(args.ingest_also.iter().cloned())
                .collect(),
            addresses: args.addresses,
        };
        let exe = std::env::current_exe()?;
        rows.push(crowd::arena_crowd(&exe, &clients, &stores, &crowd).await?);
    }
    if all || matches!(scenario, Scenario::Tournament) {
        let (scores, reads) = scenarios::tournament(
            &clients,
            &stores,
            args.plan(20_000, 5_000.0),
            args.plan(8_000, 2_000.0),
            200,
        )
        .await?;
        rows.extend([scores, reads]);
    }
    if all || matches!(scenario, Scenario::RegistrationRush) {
        rows.push(
            scenarios::registration_rush(&clients, &stores, args.plan(10_000, 5_000.0), 700)
                .await?,
        );
    }
    if all || matches!(scenario, Scenario::Batch) {
        rows.push(scenarios::batch(&clients, &stores, args.plan(200, 50.0), 1000).await?);
    }
    std::fs::create_dir_all(&args.out)?;
    if let Scenario::Overload(o) = &scenario {
        let shape = overload::Shape {
            sustainable_per_s: o.sustainable_rate,
            seconds: o.phase_seconds * args.scale,
            factor: o.factor,
        };
        let (row, overload) =
            overload::overload(&clients, &stores, shape, args.connections, o.ingest_pid).await?;
        rows.push(row);
        let summary = overload.summary();
        println!("\n{summary}");
        std::fs::write(args.out.join("overload.md"), &summary)?;
        std::fs::write(
            args.out.join("overload.json"),
            serde_json::to_string_pretty(&overload)?,
        )?;
    }

    let table = report::table(&rows, &ratios);
    println!("\n{table}");
    let prefix = scenario.file_prefix();
    let [summary, json, png] =
        ["summary.md", "run.json", "plot.png"].map(|f| format!("{prefix}{f}"));
    std::fs::write(args.out.join(&summary), &table)?;
    report::write_json(&args.out.join(&json), &rows)?;
    match plot::draw(&args.out.join(&png), &rows) {
        Ok(()) => println!("wrote {}/{json}, {summary} and {png}", args.out.display()),
        Err(e) => println!(
            "wrote {}/{json} and {summary}; no plot: {e:#}",
            args.out.display()
        ),
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.outcome.starts_with("MISMATCH"))
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("outcome check failed for {failed:?}");
    }
    Ok(())
}
