//! channel-followers: as many SSE followers of one broadcast channel as one ingest holds,
//! opened by several generator processes (one process may hold at most 20,000 open files
//! here), then a few messages published; how long each took from its publish to each
//! follower (the publish time travels in the message; every process reads the same clock).
//!
//! A follower is a raw HTTP/1.1 connection bound to a loopback source address of its own
//! process's share, reading the event stream's `data:` lines: light enough that the
//! generators are not what is measured.

use crate::report::Row;
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The command line of `channel-followers`.
#[derive(clap::Args, Clone, Debug)]
pub struct FollowersArgs {
    /// Followers in all, each on a connection of its own.
    #[arg(long, default_value_t = 19_000)]
    pub followers: usize,
    /// Generator processes they are spread over.
    #[arg(long, default_value_t = 4)]
    pub processes: usize,
    /// Messages published once every follower is connected.
    #[arg(long, default_value_t = 5)]
    pub messages: usize,
    /// Seconds between two messages.
    #[arg(long, default_value_t = 2.0)]
    pub interval_seconds: f64,
}

/// One generator process's followers (started by channel-followers itself).
#[derive(clap::Args, Clone, Debug)]
pub struct FollowersPartArgs {
    /// The ingest, `host:port`.
    #[arg(long)]
    pub target: SocketAddr,
    #[arg(long)]
    pub channel: String,
    #[arg(long)]
    pub followers: usize,
    #[arg(long)]
    pub messages: usize,
    /// This process's loopback source addresses: 127.0.0.<first>… onwards.
    #[arg(long)]
    pub first_address: u8,
    #[arg(long)]
    pub addresses: u8,
    /// Give up this long after the followers connected.
    #[arg(long)]
    pub seconds: u64,
}

/// What a part reports: connections made, and each delivery's latency in microseconds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FollowersResult {
    pub connected: usize,
    pub refused: BTreeMap<u16, usize>,
    pub latencies_us: Vec<u64>,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The hidden `followers-part` subcommand: connect, say so on stderr, collect, print JSON.
pub async fn part(p: &FollowersPartArgs) -> anyhow::Result<()> {
    let result = run_part(p).await?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// One follower: the status it was answered, then one latency per message it received.
async fn follow(
    source: Ipv4Addr,
    target: SocketAddr,
    channel: &str,
    latencies: tokio::sync::mpsc::UnboundedSender<u64>,
    connected: tokio::sync::mpsc::UnboundedSender<u16>,
    messages: usize,
) -> anyhow::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(target).await?;
    let (read, mut write) = stream.into_split();
    let request = format!(
        "GET /v1/channels/{channel}/stream HTTP/1.1\r\nHost: {target}\r\nAccept: text/event-stream\r\n\r\n"
    );
    write.write_all(request.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let status_line = lines.next_line().await?.unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let _ = connected.send(status);
    if status != 200 {
        return Ok(());
    }
    let mut received = 0;
    while let Some(line) = lines.next_line().await? {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let at = unix_us();
        if let Ok(message) = serde_json::from_str::<serde_json::Value>(data)
            && let Some(sent) = message["sent_us"].as_u64()
        {
            let _ = latencies.send(at.saturating_sub(sent));
            received += 1;
            if received == messages {
                break;
            }
        }
    }
    drop(write);
    Ok(())
}

async fn run_part(p: &FollowersPartArgs) -> anyhow::Result<FollowersResult> {
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..p.followers {
        let address = p.first_address as usize + i % p.addresses.max(1) as usize;
        let source = Ipv4Addr::new(127, 0, (address / 250) as u8, (1 + address % 250) as u8);
        let (lat_tx, conn_tx, channel) = (lat_tx.clone(), conn_tx.clone(), p.channel.clone());
        let (target, messages) = (p.target, p.messages);
        tokio::spawn(async move {
            if follow(source, target, &channel, lat_tx, conn_tx.clone(), messages)
                .await
                .is_err()
            {
                let _ = conn_tx.send(0);
            }
        });
        // Spread the handshakes a little: a listen backlog is finite.
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop((lat_tx, conn_tx));
    let mut result = FollowersResult::default();
    for _ in 0..p.followers {
        match conn_rx.recv().await {
            Some(200) => result.connected += 1,
            Some(status) => *result.refused.entry(status).or_default() += 1,
            None => break,
        }
    }
    // The parent waits for this line on stderr before it publishes.
    eprintln!("connected {}", result.connected);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(p.seconds);
    let expected = result.connected * p.messages;
    while result.latencies_us.len() < expected {
        match tokio::time::timeout_at(deadline, lat_rx.recv()).await {
            Ok(Some(us)) => result.latencies_us.push(us),
            _ => break,
        }
    }
    Ok(result)
}

/// `channel-followers`: a channel, the followers over processes, the messages, one row.
pub async fn run(h: &super::Harness<'_>, args: &FollowersArgs) -> anyhow::Result<Vec<Row>> {
    let s = h.settings;
    let followers = s.scaled(args.followers);
    let channel = super::run_name("fans");
    h.clients
        .define(
            "channels",
            serde_json::json!({"id": channel, "delivery": "latest"}),
        )
        .await?;
    let target: SocketAddr = s
        .ingest
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .context("--ingest must be http://<ip>:<port> for channel-followers")?;
    let processes = args.processes.max(1);
    let per = followers.div_ceil(processes);
    // Followers per source address stay under ingest's per-address cap (256 by default).
    let addresses_each = (per.div_ceil(200)).clamp(1, 250) as u8;
    let exe = std::env::current_exe()?;
    let seconds = (args.messages as f64 * args.interval_seconds) as u64 + 60;
    println!(
        "{:>18} {followers} followers over {processes} processes, {} messages",
        "channel-followers", args.messages
    );
    let mut children = Vec::new();
    for i in 0..processes {
        let n = per.min(followers - (i * per).min(followers));
        if n == 0 {
            continue;
        }
        let mut child = tokio::process::Command::new(&exe)
            .arg("followers-part")
            .args(["--target", &target.to_string(), "--channel", &channel])
            .args(["--followers", &n.to_string()])
            .args(["--messages", &args.messages.to_string()])
            .args([
                "--first-address",
                &(i * addresses_each as usize).to_string(),
            ])
            .args(["--addresses", &addresses_each.to_string()])
            .args(["--seconds", &seconds.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stderr = child.stderr.take().context("the part's stderr")?;
        children.push((child, BufReader::new(stderr).lines()));
    }
    // Every part has made its connections (or been refused) before the first message.
    let mut parts = Vec::new();
    for (child, mut stderr) in children {
        loop {
            let line = stderr.next_line().await?.unwrap_or_default();
            if line.starts_with("connected") || line.is_empty() {
                break;
            }
        }
        parts.push(child);
    }
    let publish = h.clients.for_request(0).clone();
    let url = format!("{}/v1/channels/{channel}/messages", h.clients.ingest);
    let started = std::time::Instant::now();
    for n in 0..args.messages {
        let body = serde_json::json!({"n": n, "sent_us": unix_us()});
        let response = publish
            .post(&url)
            .bearer_auth(&s.api_key)
            .json(&body)
            .send()
            .await?;
        if response.status() != 202 {
            bail!(
                "publishing: {} {}",
                response.status(),
                response.text().await?
            );
        }
        tokio::time::sleep(Duration::from_secs_f64(args.interval_seconds)).await;
    }
    let results = futures::future::try_join_all(parts.into_iter().map(|child| async move {
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            bail!("a followers part failed: {}", output.status);
        }
        serde_json::from_slice::<FollowersResult>(&output.stdout)
            .context("reading a followers part's result")
    }))
    .await?;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (mut connected, mut refused) = (0, BTreeMap::new());
    for r in &results {
        connected += r.connected;
        for (status, n) in &r.refused {
            *refused.entry(*status).or_insert(0) += n;
        }
        for us in &r.latencies_us {
            latency.record((*us).max(1))?;
        }
    }
    let delivered = latency.len() as usize;
    let expected = connected * args.messages;
    let mut statuses = refused.clone();
    statuses.insert(200, connected);
    let q = |x: f64| latency.value_at_quantile(x) as f64 / 1000.0;
    let row = Row {
        name: "channel-followers".into(),
        what: format!(
            "{followers} SSE followers of one channel, a message every {}s",
            args.interval_seconds
        ),
        // Deliveries per second: each message to every follower.
        offered_per_second: followers as f64 / args.interval_seconds.max(1e-3),
        requests: followers * args.messages,
        accepted: delivered,
        statuses,
        accepted_per_second: delivered as f64 / started.elapsed().as_secs_f64().max(1e-3),
        events_per_request: 1,
        events_acknowledged: None,
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: latency.max() as f64 / 1000.0,
        lag_p99_ms: None,
        outcome: match (delivered == expected, connected == followers) {
            (true, true) => format!(
                "ok: {connected} followers connected, each received all {} messages (publish to follower)",
                args.messages
            ),
            _ => format!(
                "MISMATCH: {connected} of {followers} connected (refused: {refused:?}), {delivered} of {expected} deliveries"
            ),
        },
        timeline: Vec::new(),
        cost: None,
    };
    Ok(vec![row])
}
