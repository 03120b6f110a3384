//! arena-crowd: many pair voters at once, each on a connection of its own that stays open
//! for the whole run, voting and reading their personal ranking every few seconds.
//!
//! One process may hold at most 20,000 open files here, so the voters are spread over several
//! generator processes (`tally-loadtest crowd-part`, each a share of the voters, all timed
//! against one wall-clock start) and over several ingest instances, which hit the same limit:
//! Tally's services are stateless and scale by running more of them.

use super::{Clients, Harness, arena_outcome, checked, define_arena, vote_and_read, with_lag};
use crate::open_loop::{Collector, Plan, Run, Share};
use crate::outcome::Stores;
use crate::report::Row;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The crowd: how many voters, how often each votes, over how many processes and ingests.
#[derive(Clone, Debug)]
pub struct Crowd {
    pub voters: usize,
    pub votes_each: usize,
    /// Between one voter's votes.
    pub interval: Duration,
    /// Over which the voters arrive, evenly.
    pub ramp: Duration,
    pub processes: usize,
    /// Ingest base URLs; voter `v` talks to `targets[v % len]`.
    pub targets: Vec<String>,
    /// Loopback source addresses 127.0.0.1–N.
    pub addresses: u8,
}

/// The crowd's shape on the command line (`arena-crowd`, and the suite's when it runs it).
#[derive(clap::Args, Clone, Debug)]
pub struct CrowdArgs {
    /// Voters, each on a connection of their own.
    #[arg(long, default_value_t = 20_000)]
    pub voters: usize,
    /// Votes (each followed by a personal-ranking read) per voter.
    #[arg(long, default_value_t = 2)]
    pub votes_each: usize,
    /// Seconds between one voter's votes.
    #[arg(long, default_value_t = 5.0)]
    pub interval_seconds: f64,
    /// Seconds over which the voters arrive.
    #[arg(long, default_value_t = 5.0)]
    pub ramp_seconds: f64,
    /// Generator processes (at most 20,000 open files each).
    #[arg(long, default_value_t = 4)]
    pub processes: usize,
}

/// The `arena-crowd` subcommand: the crowd over `--ingest` and `--ingest-also`, its parts run
/// by this program's own executable.
pub async fn run(h: &Harness<'_>, args: &CrowdArgs) -> anyhow::Result<Vec<Row>> {
    let s = h.settings;
    let crowd = Crowd {
        voters: s.scaled(args.voters),
        votes_each: args.votes_each.max(1),
        interval: Duration::from_secs_f64(args.interval_seconds),
        ramp: Duration::from_secs_f64(args.ramp_seconds),
        processes: args.processes,
        targets: std::iter::once(s.ingest.clone())
            .chain(s.ingest_also.iter().cloned())
            .collect(),
        addresses: s.addresses,
    };
    let exe = std::env::current_exe()?;
    Ok(vec![
        arena_crowd(&exe, &h.clients, &h.stores, &crowd).await?,
    ])
}

/// The hidden `crowd-part` subcommand: a child of arena-crowd runs its share of the voters and
/// writes the result as JSON on stdout.
pub async fn part(p: &PartArgs) -> anyhow::Result<()> {
    let result = run_part(p).await?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// From the first voter's first vote to the last voter's last.
fn span(ramp: Duration, interval: Duration, votes_each: usize) -> Duration {
    ramp + interval * (votes_each.max(1) as u32 - 1)
}

impl Crowd {
    /// One interaction (vote + ranking read) per voter per interval.
    pub fn plan(&self) -> Plan {
        let span = span(self.ramp, self.interval, self.votes_each);
        Plan {
            requests: self.voters * self.votes_each,
            rate: (self.voters * self.votes_each) as f64 / span.as_secs_f64().max(1e-3),
            connections: self.voters,
        }
    }
}

/// One generator process's voters, `from..to` of the crowd.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
pub struct PartArgs {
    #[arg(long)]
    pub arena: String,
    /// Ingest base URLs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    #[arg(long)]
    pub voters: usize,
    #[arg(long)]
    pub from: usize,
    #[arg(long)]
    pub to: usize,
    #[arg(long)]
    pub votes_each: usize,
    #[arg(long)]
    pub interval_ms: u64,
    #[arg(long)]
    pub ramp_ms: u64,
    /// When the first voter's first vote is due, in milliseconds since the Unix epoch.
    #[arg(long)]
    pub start_unix_ms: u64,
    #[arg(long, default_value_t = 8)]
    pub addresses: u8,
}

/// What a part reports to the process that merges the parts.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartResult {
    pub share: Share,
    /// Voters that got an answer, so had a connection (held until the last vote).
    pub connected: usize,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `Instant` of a wall-clock time, so processes share one start.
fn instant_of_unix_ms(at: u64) -> Instant {
    let now = unix_ms();
    if at >= now {
        Instant::now() + Duration::from_millis(at - now)
    } else {
        Instant::now() - Duration::from_millis(now - at)
    }
}

/// Runs one share of the voters: each builds its own client (one connection), votes at its
/// due times, and keeps the connection until every voter has voted for the last time.
pub async fn run_part(p: &PartArgs) -> anyhow::Result<PartResult> {
    if p.targets.is_empty() {
        bail!("no ingest target");
    }
    let start = instant_of_unix_ms(p.start_unix_ms);
    let (interval, ramp) = (
        Duration::from_millis(p.interval_ms),
        Duration::from_millis(p.ramp_ms),
    );
    let last_due = start + span(ramp, interval, p.votes_each);
    let hold_until = last_due + Duration::from_secs(2);
    let connected = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for v in p.from..p.to {
        let source = Ipv4Addr::new(127, 0, 0, 1 + (v % p.addresses.max(1) as usize) as u8);
        let client = reqwest::Client::builder()
            .local_address(IpAddr::V4(source))
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build()?;
        let base = format!(
            "{}/v1/arenas/{}",
            p.targets[v % p.targets.len()].trim_end_matches('/'),
            p.arena
        );
        let first = start + ramp.mul_f64(v as f64 / p.voters.max(1) as f64);
        let (tx, connected, votes_each) = (tx.clone(), connected.clone(), p.votes_each);
        tokio::spawn(async move {
            let mut answered = false;
            for k in 0..votes_each {
                let due = first + interval * k as u32;
                tokio::time::sleep_until(due.into()).await;
                let answer = vote_and_read(client.clone(), &base, v, v * votes_each + k).await;
                if answer.status != 0 && !answered {
                    answered = true;
                    connected.fetch_add(1, Ordering::Relaxed);
                }
                let _ = tx.send((due, Instant::now(), answer));
            }
            // Every voter stays connected until the last one has voted.
            tokio::time::sleep_until(hold_until.into()).await;
            drop(client);
        });
    }
    drop(tx);
    let mut collector = Collector::new(start);
    while let Some((due, answered, answer)) = rx.recv().await {
        collector.record(due, answered, answer);
    }
    let share = collector
        .finish(Plan {
            requests: (p.to - p.from) * p.votes_each,
            rate: 0.0,
            connections: p.to - p.from,
        })
        .share();
    Ok(PartResult {
        share,
        connected: connected.load(Ordering::Relaxed),
    })
}

/// TCP connections in state ESTABLISHED whose local port is one of `ports`, from the text of
/// `/proc/net/tcp` (or `tcp6`): the server side of the crowd's connections.
pub fn established_on(proc_net_tcp: &str, ports: &[u16]) -> usize {
    proc_net_tcp
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1).unwrap_or("");
            let state = fields.nth(1).unwrap_or("");
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            state == "01" && port.is_some_and(|p| ports.contains(&p))
        })
        .count()
}

fn established_now(ports: &[u16]) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| established_on(&text, ports))
        .sum()
}

fn port_of(url: &str) -> Option<u16> {
    url.trim_end_matches('/').rsplit(':').next()?.parse().ok()
}

/// arena-crowd: the crowd spread over `crowd.processes` runs of `exe crowd-part`, merged into
/// one run; connections held at once counted on the ingest side; the same outcome check as
/// the arena scenario.
pub async fn arena_crowd(
    exe: &std::path::Path,
    clients: &Clients,
    stores: &Stores,
    crowd: &Crowd,
) -> anyhow::Result<Row> {
    let arena = define_arena(clients, "crowd").await?;
    let plan = crowd.plan();
    // Time for every process to start and build its clients before the first vote is due.
    let start_unix_ms = unix_ms() + 3000;
    let processes = crowd.processes.max(1);
    let per = crowd.voters.div_ceil(processes);
    let ports: Vec<u16> = crowd.targets.iter().filter_map(|t| port_of(t)).collect();
    println!(
        "{:>18} {} voters over {processes} processes and {} ingest instances, {} votes each",
        "arena-crowd",
        crowd.voters,
        crowd.targets.len(),
        crowd.votes_each
    );
    let mut children = Vec::new();
    for i in 0..processes {
        let (from, to) = (
            (i * per).min(crowd.voters),
            ((i + 1) * per).min(crowd.voters),
        );
        if from == to {
            continue; // fewer voters than processes
        }
        let child = tokio::process::Command::new(exe)
            .arg("crowd-part")
            .args(["--arena", &arena])
            .args(["--targets", &crowd.targets.join(",")])
            .args(["--voters", &crowd.voters.to_string()])
            .args(["--from", &from.to_string(), "--to", &to.to_string()])
            .args(["--votes-each", &crowd.votes_each.to_string()])
            .args(["--interval-ms", &crowd.interval.as_millis().to_string()])
            .args(["--ramp-ms", &crowd.ramp.as_millis().to_string()])
            .args(["--start-unix-ms", &start_unix_ms.to_string()])
            .args(["--addresses", &crowd.addresses.to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        children.push(child);
    }
    // The most connections ingest held at once, sampled every 250 ms while voters hold theirs.
    let held = {
        let start = instant_of_unix_ms(start_unix_ms);
        let end = start + span(crowd.ramp, crowd.interval, crowd.votes_each);
        let ports = ports.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut most = 0;
            while Instant::now() < end {
                most = most.max(established_now(&ports));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            most
        })
    };
    // All at once: a part blocked writing its result to a full pipe would otherwise wait.
    let parts = futures::future::try_join_all(children.into_iter().map(|child| async move {
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            bail!("a crowd part failed: {}", output.status);
        }
        serde_json::from_slice::<PartResult>(&output.stdout)
            .context("reading a crowd part's result")
    }));
    let (results, lag) = with_lag(stores, parts).await;
    let results = results?;
    let connected = results.iter().map(|r| r.connected).sum::<usize>();
    let run = Run::merged(plan, results.into_iter().map(|r| r.share).collect());
    let held = held.await.unwrap_or(0);
    let mut row = Row::new(
        "arena-crowd",
        "voters on connections of their own, vote + ranking read",
        &run,
        1,
    );
    row.lag_p99_ms = lag;
    let outcome = arena_outcome(stores, &arena, &run).await.map(|summary| {
        format!(
            "{summary}; {connected} voters connected, at most {held} connections open at ingest at once"
        )
    });
    checked(&mut row, outcome).await;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_connections_are_counted_by_local_port() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue\n\
           0: 0100007F:1F90 0200007F:9C40 01 00000000:00000000\n\
           1: 0100007F:1F90 0300007F:9C41 06 00000000:00000000\n\
           2: 0100007F:1F91 0200007F:9C42 01 00000000:00000000\n\
           3: 0100007F:1F92 0200007F:9C43 01 00000000:00000000\n\
           4: 0200007F:9C44 0100007F:1F90 01 00000000:00000000\n";
        // 0x1F90 = 8080, 0x1F91 = 8081: two established on those ports; the TIME_WAIT one
        // and the client side of a connection (remote 8080) do not count.
        assert_eq!(established_on(text, &[8080, 8081]), 2);
    }

    #[test]
    fn the_plan_spreads_every_voters_votes_over_ramp_and_intervals() {
        let crowd = Crowd {
            voters: 20_000,
            votes_each: 2,
            interval: Duration::from_secs(5),
            ramp: Duration::from_secs(5),
            processes: 4,
            targets: vec!["http://127.0.0.1:8080".into()],
            addresses: 8,
        };
        let plan = crowd.plan();
        assert_eq!(plan.requests, 40_000);
        assert_eq!(plan.connections, 20_000);
        assert!((plan.rate - 4_000.0).abs() < 1e-6);
        assert_eq!(port_of("http://127.0.0.1:8081/"), Some(8081));
    }
}
