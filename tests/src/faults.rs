//! The fault suite's tools: processes a test can SIGKILL, SIGSTOP and restart (Tally's own
//! services, and nats-server, Postgres and Redis started by the test on ports of their own,
//! so the shared servers are never touched), the profile that sizes a run, and the check of
//! all three stores against what the clients saw acknowledged.

use crate::checker::{Burst, Verdict, check};
use crate::nats_cluster::{free_port, nats_server_binary};
use crate::{TestEnv, Wait, wait_until};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// How hard a run pushes: `TALLY_FAULT_PROFILE=short` (the default, for CI) or `long`.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub name: &'static str,
    /// Faults injected per test.
    pub rounds: usize,
    /// Clients sending at once.
    pub clients: usize,
    /// How long ClickHouse stays unreachable.
    pub clickhouse_outage: Duration,
}

impl Profile {
    pub fn from_env() -> Self {
        match crate::setting("TALLY_FAULT_PROFILE", "short").as_str() {
            "long" => Self {
                name: "long",
                rounds: 12,
                clients: 32,
                clickhouse_outage: Duration::from_secs(60),
            },
            _ => Self {
                name: "short",
                rounds: 3,
                clients: 16,
                clickhouse_outage: Duration::from_secs(8),
            },
        }
    }
}

/// A directory of its own for one test's servers and logs, kept when the test fails.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tally-{name}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs and data kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A process started from a fixed command line, which a test can kill, freeze and start again
/// exactly as before. Its output goes to `<scratch>/<name>.log`.
pub struct Proc {
    pub name: String,
    command: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn start(
        name: &str,
        command: Vec<String>,
        envs: Vec<(&str, String)>,
        scratch: &Path,
    ) -> Self {
        let mut proc = Self {
            name: name.to_owned(),
            command,
            envs: envs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            log: scratch.join(format!("{name}.log")),
            child: None,
        };
        proc.restart();
        proc
    }

    /// Starts the process (again), with the same command and environment.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
    }

    fn tree(&self) -> Vec<u32> {
        self.child
            .as_ref()
            .and_then(Child::id)
            .map_or_else(Vec::new, process_tree)
    }

    /// SIGKILL of the process and every process it started, as a crash or the OOM killer
    /// does it; returns once they are all gone.
    pub async fn kill(&mut self) {
        let tree = self.tree();
        signal(&tree, "KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
        let what = format!("{} to die", self.name);
        wait_until(what, Duration::from_secs(20), async || {
            !tree.iter().any(|&pid| alive(pid))
        })
        .await;
    }

    /// SIGSTOP of the whole tree: the process hangs, its sockets stay open.
    pub fn freeze(&self) {
        signal(&self.tree(), "STOP");
    }

    /// SIGCONT of the whole tree.
    pub fn thaw(&self) {
        signal(&self.tree(), "CONT");
    }

    /// Output so far, for a failure message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Thawed first: a stopped process does not act on SIGKILL until continued.
        let tree = self.tree();
        signal(&tree, "CONT");
        signal(&tree, "KILL");
    }
}

/// `pid` and its descendants, read from /proc.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        {
            parents.push((child, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| c));
        i += 1;
    }
    tree
}

fn signal(pids: &[u32], name: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg("-s")
        .arg(name)
        .args(pids.iter().map(u32::to_string))
        .status();
}

/// Running and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// A server the test started itself, on its own port, so it may freeze and kill it.
pub trait OwnedServer {
    fn proc(&mut self) -> &mut Proc;
    /// Returns once the server answers again (after a restart: its recovery done).
    fn wait_ready(&self) -> impl std::future::Future<Output = ()>;
}

/// Logs of the in-process services on stderr when `RUST_LOG` is set (to see which recovery
/// path a fault took); silent otherwise.
pub fn log_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        tally_kit::telemetry::init_tracing();
    }
}

/// Sleeps a random time in `range_ms`: faults at moments nobody chose.
pub fn pause(range_ms: std::ops::Range<u64>) -> tokio::time::Sleep {
    use rand::Rng;
    tokio::time::sleep(Duration::from_millis(rand::rng().random_range(range_ms)))
}

/// `rounds` times, at random moments: SIGSTOP (connections stay open, nothing answers),
/// SIGCONT, then SIGKILL (the server recovers from its own files) and a restart.
pub async fn freeze_and_kill(server: &mut impl OwnedServer, rounds: usize) {
    for _ in 0..rounds {
        pause(500..1500).await;
        server.proc().freeze();
        pause(1500..3000).await;
        server.proc().thaw();
        pause(500..1500).await;
        server.proc().kill().await;
        pause(300..1500).await;
        server.proc().restart();
        server.wait_ready().await;
    }
}

/// A nats-server with JetStream that the test owns, configured like `deploy/stack.sh`'s
/// (file store, `sync_interval: 1s`).
pub struct OwnedNats {
    pub proc: Proc,
    pub port: u16,
    http_port: u16,
}

impl OwnedNats {
    pub async fn start(scratch: &Path) -> Self {
        let (port, http_port) = (free_port(), free_port());
        let config = scratch.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http_port}\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: 1s\n}}\n",
                scratch.join("nats").display()
            ),
        )
        .expect("nats config");
        let command = vec![
            nats_server_binary().display().to_string(),
            "-c".to_owned(),
            config.display().to_string(),
        ];
        let nats = Self {
            proc: Proc::start("nats-server", command, vec![], scratch),
            port,
            http_port,
        };
        nats.wait_ready().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl OwnedServer for OwnedNats {
    fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Waits until JetStream answers its health check (after a restart: its store recovered).
    async fn wait_ready(&self) {
        let url = format!(
            "http://127.0.0.1:{}/healthz?js-enabled-only=true",
            self.http_port
        );
        wait_until(
            "nats-server to come up",
            Duration::from_secs(30),
            || async { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) },
        )
        .await;
    }
}

/// A Postgres cluster that the test owns: `initdb` into the scratch directory, run as the
/// `postgres` user when the test runs as root (Postgres refuses root).
pub struct OwnedPostgres {
    pub proc: Proc,
    pub port: u16,
}

impl OwnedPostgres {
    pub async fn start(scratch: &Path) -> Self {
        Self::start_with(scratch, &[]).await
    }

    /// With these `name=value` settings (each a `-c`), kept across restarts.
    pub async fn start_with(scratch: &Path, settings: &[(&str, &str)]) -> Self {
        let bin = postgres_bin_dir();
        let data = Self::data_dir(scratch);
        let as_postgres = is_root();
        if as_postgres {
            run(&["chown", "postgres:postgres", &scratch.display().to_string()]);
        }
        let mut initdb = run_as(as_postgres);
        initdb.extend([
            bin.join("initdb").display().to_string(),
            "-D".into(),
            data.display().to_string(),
            "-A".into(),
            "trust".into(),
            "-U".into(),
            "postgres".into(),
            "--no-sync".into(),
        ]);
        run(&initdb.iter().map(String::as_str).collect::<Vec<_>>());
        let port = free_port();
        let mut command = run_as(as_postgres);
        command.extend([
            bin.join("postgres").display().to_string(),
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-k".into(),
            scratch.display().to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
        ]);
        for (name, value) in settings {
            command.extend(["-c".into(), format!("{name}={value}")]);
        }
        let pg = Self {
            proc: Proc::start("postgres", command, vec![], scratch),
            port,
        };
        pg.wait_ready().await;
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The data directory under `scratch` (what `start` initialised).
    pub fn data_dir(scratch: &Path) -> PathBuf {
        scratch.join("pgdata")
    }
}

impl OwnedServer for OwnedPostgres {
    fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Waits until it accepts queries (after a restart: crash recovery done).
    async fn wait_ready(&self) {
        let url = self.url();
        wait_until("postgres to come up", Duration::from_secs(60), || async {
            match sqlx::PgPool::connect(&url).await {
                Ok(pool) => {
                    let ok = sqlx::query("SELECT 1").execute(&pool).await.is_ok();
                    pool.close().await;
                    ok
                }
                Err(_) => false,
            }
        })
        .await;
    }
}

fn postgres_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("a PostgreSQL version with bin/postgres")
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command prefix that drops to the `postgres` user; `setpriv` execs, so the pid the test
/// holds is Postgres' own.
fn run_as(as_postgres: bool) -> Vec<String> {
    if as_postgres {
        [
            "setpriv",
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ]
        .map(str::to_owned)
        .to_vec()
    } else {
        Vec::new()
    }
}

fn run(command: &[&str]) {
    let out = std::process::Command::new(command[0])
        .args(&command[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", command[0]));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Redis that the test owns, with the append-only file Tally's deployment uses
/// (`appendfsync everysec`: a killed process loses nothing, an OS crash up to a second).
pub struct OwnedRedis {
    pub proc: Proc,
    pub port: u16,
}

impl OwnedRedis {
    pub async fn start(scratch: &Path) -> Self {
        let port = free_port();
        let command = [
            "redis-server",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            &scratch.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let redis = Self {
            proc: Proc::start("redis-server", command, vec![], scratch),
            port,
        };
        redis.wait_ready().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl OwnedServer for OwnedRedis {
    fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Waits until it answers PING (after a restart: the append-only file loaded).
    async fn wait_ready(&self) {
        let url = self.url();
        wait_until("redis to come up", Duration::from_secs(30), || async {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return false;
            };
            match client.get_multiplexed_async_connection().await {
                Ok(mut c) => redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }
}

/// Waits until ingest at `base_url` answers `/readyz` with 200.
pub async fn wait_ingest_ready(base_url: &str) {
    let url = format!("{base_url}/readyz");
    wait_until("ingest to be ready", Duration::from_secs(30), || async {
        reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// What each store finally holds of one burst of votes on one poll (one voter per vote,
/// each for option `a`), and whether every consumer drained its backlog.
#[derive(Debug)]
pub struct Outcome {
    /// What the stream itself holds: a loss here is the broker's, not a sink's.
    pub jetstream: Verdict,
    /// Stream sequences Postgres holds for two different events (a broker reusing them).
    pub reused_sequences: i64,
    pub postgres: Verdict,
    /// `a` in the Redis tally, against the votes Postgres holds: more is double counting.
    pub redis_counted: i64,
    pub postgres_votes: usize,
    pub clickhouse: Verdict,
    /// Consumers with messages pending or unacknowledged, by name.
    pub backlog: Vec<(String, u64)>,
}

impl Outcome {
    pub fn is_clean(&self) -> bool {
        self.jetstream.lost == 0
            && self.reused_sequences == 0
            && self.postgres.is_clean()
            && self.clickhouse.is_clean()
            && self.redis_counted == self.postgres_votes as i64
            && self.backlog.is_empty()
    }
}

/// Waits up to `within` for the stores to settle on exactly what `burst` implies, then
/// prints and returns the outcome (the caller asserts it is clean).
pub async fn settle(env: &TestEnv, burst: &Burst, poll: &str, within: Duration) -> Outcome {
    // The stream no longer changes once the clients finished: read it once it can be read.
    let mut in_stream: Option<Vec<Uuid>> = None;
    let settled = Wait::new("the stores to settle", within)
        .every(Duration::from_millis(250))
        .try_until(async || {
            if in_stream.is_none() {
                in_stream = env.stream_ids().await.ok();
            }
            let jetstream = check(burst, in_stream.as_deref().unwrap_or_default());
            let outcome = observe(env, burst, poll, jetstream).await;
            if outcome.is_clean() {
                Ok(outcome)
            } else {
                Err(outcome)
            }
        })
        .await;
    settled.unwrap_or_else(|outcome| outcome)
}

async fn observe(env: &TestEnv, burst: &Burst, poll: &str, jetstream: Verdict) -> Outcome {
    use redis::AsyncCommands;
    let stored = env.stored_ids().await;
    let postgres_votes = stored
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let redis_counted: Option<i64> = env
        .redis()
        .await
        .hget(
            tally_schema::redis_keys::Keys::new(env.name.clone()).poll_tally(poll),
            "a",
        )
        .await
        .unwrap_or(None);
    let in_clickhouse: Vec<Uuid> =
        crate::try_clickhouse(&format!("SELECT id FROM tally_{}.events", env.name))
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|row| row.first()?.parse().ok())
            .collect();
    Outcome {
        jetstream,
        reused_sequences: env.reused_sequences().await,
        postgres: check(burst, &stored),
        redis_counted: redis_counted.unwrap_or(0),
        postgres_votes,
        clickhouse: check(burst, &in_clickhouse),
        backlog: backlog(env).await,
    }
}

async fn backlog(env: &TestEnv) -> Vec<(String, u64)> {
    use futures::StreamExt;
    let Ok(stream) = env.js.get_stream(&env.nats.stream).await else {
        return vec![("(stream unreachable)".to_owned(), 0)];
    };
    let mut consumers = stream.consumers();
    let mut behind = Vec::new();
    while let Some(info) = consumers.next().await {
        match info {
            Ok(info) => {
                let pending = info.num_pending + info.num_ack_pending as u64;
                if pending > 0 {
                    behind.push((info.name.clone(), pending));
                }
            }
            Err(_) => behind.push(("(consumer list failed)".to_owned(), 0)),
        }
    }
    behind
}

/// One line for the CI log: the burst, the answers and each store's verdict.
pub fn report(fault: &str, profile: &Profile, burst: &Burst, outcome: &Outcome) -> String {
    format!(
        "fault-suite [{}] {fault}: {} votes sent, {} acknowledged, {} retries, answers {:?}, \
         slowest refusal {:?} | jetstream: {} | sequences reused: {} | postgres: {} | redis: {} counted for {} stored | \
         clickhouse: {} | consumers behind: {:?}",
        profile.name,
        burst.attempted.len(),
        burst.acknowledged.len(),
        burst.retries,
        burst.statuses,
        burst.slowest_refusal,
        outcome.jetstream,
        outcome.reused_sequences,
        outcome.postgres,
        outcome.redis_counted,
        outcome.postgres_votes,
        outcome.clickhouse,
        outcome.backlog,
    )
}
