//! The command line: the settings every scenario shares, one subcommand per scenario (each
//! scenario's own options live in its module), and where each run's files go.

use crate::open_loop::Plan;
use crate::outcome::StoreArgs;
use crate::scenarios::{burst, cost, crowd, followers, overload, suite};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Open-loop load scenarios against Tally, with references and outcome checks.")]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Where ingest and the stores are, and how much load.
#[derive(clap::Args)]
pub struct Settings {
    #[arg(
        long,
        env = "TALLY_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub ingest: String,
    /// Admin API key, to define each run's poll, arena or tournament (`tally keys create`).
    #[arg(long, env = "TALLY_API_KEY", hide_env_values = true)]
    pub api_key: String,
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Loopback source addresses to spread connections over (127.0.0.1–127.0.0.N); 0: the
    /// system picks the source address (an ingest not on loopback).
    #[arg(long, default_value_t = 8)]
    pub addresses: u8,
    /// Connections (requests in flight) at most.
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
    /// Multiplies every scenario's request count (the rate stays), for quick runs.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Where the JSON, the table and the plot go.
    #[arg(long, default_value = "loadtest/out")]
    pub out: PathBuf,
    /// More ingest instances (base URLs, comma-separated) that arena-crowd spreads its voters
    /// over beside `--ingest`: one process holds at most 20,000 connections here. The suite
    /// runs arena-crowd only when there are some.
    #[arg(long, value_delimiter = ',')]
    pub ingest_also: Vec<String>,
}

impl Settings {
    /// `n` times `--scale`, at least 1.
    pub fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }

    /// `requests` (scaled) offered at `rate` over `--connections`.
    pub fn plan(&self, requests: usize, rate: f64) -> Plan {
        Plan {
            requests: self.scaled(requests),
            rate,
            connections: self.connections,
        }
    }
}

#[derive(Subcommand, Clone)]
pub enum Scenario {
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
    ArenaCrowd(crowd::CrowdArgs),
    /// One generator process's share of arena-crowd (started by arena-crowd itself).
    #[command(hide = true)]
    CrowdPart(crowd::PartArgs),
    /// As many SSE followers of one channel as one ingest holds, over several processes,
    /// then a few messages: the time from each publish to each follower.
    ChannelFollowers(followers::FollowersArgs),
    /// One generator process's share of channel-followers (started by it).
    #[command(hide = true)]
    FollowersPart(followers::FollowersPartArgs),
    /// Every scenario, with the three references, in one run.
    Suite(suite::SuiteArgs),
    /// A sustainable rate, three times it, then the sustainable rate again; ingest's memory
    /// sampled throughout.
    Overload(overload::OverloadArgs),
    /// Poll votes, single or batched, closed loop (`--connections` in flight), checked in
    /// Postgres: how fast a burst drains.
    Burst(burst::BurstArgs),
    /// CPU µs per acknowledged event for each process of the pipeline at steady rates, beside
    /// the do-nothing handler's CPU per request at the same rates.
    Cost(cost::CostArgs),
}

impl Scenario {
    /// What its output files start with: each run keeps its own table, JSON and plot, so the
    /// overload run after the suite does not overwrite the suite's.
    pub fn file_prefix(&self) -> &'static str {
        match self {
            Scenario::Suite(_) => "",
            Scenario::FlashPoll => "flash-poll-",
            Scenario::Arena => "arena-",
            Scenario::Tournament => "tournament-",
            Scenario::RegistrationRush => "registration-rush-",
            Scenario::Batch => "batch-",
            Scenario::ArenaCrowd(_) => "arena-crowd-",
            Scenario::CrowdPart(_) => "crowd-part-",
            Scenario::ChannelFollowers(_) => "channel-followers-",
            Scenario::FollowersPart(_) => "followers-part-",
            Scenario::Overload(_) => "overload-",
            Scenario::Burst(_) => "burst-",
            Scenario::Cost(_) => "cost-",
        }
    }

    /// The rows the table divides each row's events/s by: the suite's references.
    pub fn ratios_to(&self) -> &'static [&'static str] {
        match self {
            Scenario::Suite(_) => &suite::REFERENCES,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        let base = [
            "tally-loadtest",
            "--api-key",
            "k",
            "--database-url",
            "postgres://x",
        ];
        Cli::try_parse_from(base.iter().chain(args)).expect("valid command line")
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn burst_takes_a_count_a_batch_size_and_no_check() {
        let cli = parse(&[
            "--connections",
            "8",
            "burst",
            "--count",
            "300",
            "--batch",
            "100",
        ]);
        let Scenario::Burst(burst) = &cli.scenario else {
            panic!("burst expected");
        };
        assert_eq!(
            (burst.count, burst.batch, burst.no_check),
            (300, Some(100), false)
        );
        assert_eq!(cli.settings.connections, 8);
        assert_eq!(cli.scenario.file_prefix(), "burst-");
        let Scenario::Burst(burst) = parse(&["burst", "--no-check"]).scenario else {
            panic!("burst expected");
        };
        assert_eq!(
            (burst.count, burst.batch, burst.no_check),
            (20_000, None, true)
        );
    }

    #[test]
    fn cost_takes_its_loads_and_defaults_to_the_issues_two() {
        let Scenario::Cost(cost) = parse(&["cost"]).scenario else {
            panic!("cost expected");
        };
        let loads: Vec<(f64, usize)> = cost.runs.iter().map(|l| (l.rate, l.requests)).collect();
        assert_eq!(loads, [(5000.0, 50_000), (20_000.0, 100_000)]);
        assert_eq!(
            cost.consumers,
            ["postgres-writer", "redis-sink", "clickhouse-sink"]
        );
        let cli = parse(&["cost", "--runs", "1000x2000", "--noop-url", ""]);
        assert_eq!(cli.scenario.file_prefix(), "cost-");
        let Scenario::Cost(cost) = cli.scenario else {
            panic!("cost expected");
        };
        assert_eq!((cost.runs.len(), cost.runs[0].requests), (1, 2000));
        assert!(cost.noop_url.is_empty());
        assert!(
            Cli::try_parse_from([
                "t",
                "--api-key",
                "k",
                "--database-url",
                "x",
                "cost",
                "--runs",
                "5000"
            ])
            .is_err()
        );
    }

    #[test]
    fn settings_scale_request_counts_but_never_to_zero() {
        let cli = parse(&["--scale", "0.1", "suite"]);
        assert_eq!(cli.settings.plan(50_000, 50_000.0).requests, 5_000);
        assert_eq!(cli.settings.scaled(3), 1);
        assert_eq!(cli.scenario.ratios_to(), &suite::REFERENCES);
        assert_eq!(cli.scenario.file_prefix(), "");
    }
}
