//! Test harness for end-to-end tests against the real servers started by `deploy/stack.sh`.
//!
//! - [`TestEnv`]: one isolated world per test — its own stream, subject root and Postgres
//!   database, removed on drop.
//! - [`proxy::TcpProxy`]: a loopback TCP proxy that can cut a service off, to simulate outages
//!   of servers the test must not stop (they are shared).
//! - [`fixtures`]: the resources every env holds, and constructors for a test's own.
//! - [`Pipeline`]: the usual trio, ingest, the writer and the aggregator, in-process; or one
//!   at a time with [`Ingest`], [`Writer`] and [`Aggregator`].
//! - [`wait_until`]: one way to wait for the system to reach a state.
//! - [`get`] and [`read`]: reads that retry a 503 the way a client of Tally does.
//! - [`browser::Browser`]: headless Chromium over the DevTools protocol.
//! - [`sse::SseStream`]: an EventSource-like reader of server-sent events.
//! - [`notices`]: a verifying webhook receiver and a real SMTP server.

pub mod browser;
pub mod checker;
pub mod faults;
pub mod fixtures;
pub mod nats_cluster;
pub mod notices;
pub mod proxy;
pub mod sse;
pub mod wait;

pub use wait::{Wait, wait_until};

use rand::Rng;
use sqlx::PgPool;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;
use tally_kit::nats::NatsConfig;
use tally_schema::resources::Resource;
use tally_workers::config::{WorkersConfig, WriterConfig};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Reads a `TALLY_*` variable, falling back to the files `deploy/stack.sh up` and
/// `deploy/tools.sh` write.
pub fn setting(name: &str, default: &str) -> String {
    if let Ok(v) = std::env::var(name) {
        return v;
    }
    let state = std::env::var("TALLY_STATE_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.local/state/tally",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    // `env`: the servers (deploy/stack.sh); `tools.env`: the tools (deploy/tools.sh).
    ["env", "tools.env"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("{state}/{f}")).unwrap_or_default())
        .flat_map(|file| {
            file.lines()
                .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<Vec<_>>()
        })
        .find(|(k, _)| k == name)
        .map_or_else(|| default.to_owned(), |(_, v)| v)
}

pub fn nats_url() -> String {
    setting("TALLY_NATS_URL", "nats://127.0.0.1:4222")
}

pub fn redis_url() -> String {
    setting("TALLY_REDIS_URL", "redis://127.0.0.1:6379")
}

pub fn clickhouse_url() -> String {
    setting("TALLY_CLICKHOUSE_URL", "http://127.0.0.1:8123")
}

/// Runs a ClickHouse query over HTTP and returns its tab-separated rows.
pub async fn clickhouse(query: &str) -> Vec<Vec<String>> {
    try_clickhouse(query)
        .await
        .unwrap_or_else(|e| panic!("ClickHouse (deploy/stack.sh up): {e}"))
}

/// [`clickhouse`], with the server's refusal as an error (a table not created yet, say).
pub async fn try_clickhouse(query: &str) -> Result<Vec<Vec<String>>, String> {
    let response = reqwest::Client::new()
        .post(clickhouse_url())
        .body(query.to_owned())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(text);
    }
    Ok(text
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect())
}

pub fn database_url() -> String {
    setting(
        "TALLY_DATABASE_URL",
        "postgres://tally:tally@127.0.0.1:5432/tally",
    )
}

/// An isolated stream, subject root and database for one test.
pub struct TestEnv {
    pub name: String,
    pub nats: NatsConfig,
    pub database_url: String,
    pub pool: PgPool,
    pub js: async_nats::jetstream::Context,
    pub redis_url: String,
    admin_url: String,
}

/// The servers a [`TestEnv`] lives on: the shared ones from `deploy/stack.sh`, or ones a
/// fault test started itself so that it may freeze and kill them.
#[derive(Clone, Debug)]
pub struct Servers {
    /// One URL, or comma-separated URLs of a cluster.
    pub nats_url: String,
    /// Copies of each stream.
    pub replicas: usize,
    /// A database the test may create databases from.
    pub database_url: String,
    pub redis_url: String,
}

impl Default for Servers {
    fn default() -> Self {
        Self {
            nats_url: nats_url(),
            replicas: 1,
            database_url: database_url(),
            redis_url: redis_url(),
        }
    }
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::on(Servers::default()).await
    }

    /// An env whose streams live on the NATS server(s) at `url` (comma-separated for a
    /// cluster), each with `replicas` copies.
    pub async fn on_nats(url: &str, replicas: usize) -> Self {
        Self::on(Servers {
            nats_url: url.to_owned(),
            replicas,
            ..Servers::default()
        })
        .await
    }

    /// An env on `servers`.
    pub async fn on(servers: Servers) -> Self {
        let (url, replicas) = (servers.nats_url.as_str(), servers.replicas);
        let name = format!("t{:08x}", rand::rng().random::<u32>());
        let mut nats = NatsConfig::with_url(url);
        nats.replicas = replicas;
        nats.stream = name.to_uppercase();
        nats.subject_root = name.clone();
        // JetStream reserves max_bytes per stream up front; keep test streams small.
        nats.max_bytes = 256 * 1024 * 1024;
        nats.media_max_bytes = 64 * 1024 * 1024;
        let admin_url = servers.database_url.clone();
        let admin = PgPool::connect(&admin_url)
            .await
            .expect("Postgres is up (deploy/stack.sh up)");
        // The name is generated hex, never user input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE tally_{name}")))
            .execute(&admin)
            .await
            .expect("create the test database");
        admin.close().await;
        let database_url = with_database(&admin_url, &format!("tally_{name}"));
        let pool = PgPool::connect(&database_url)
            .await
            .expect("connect to the test database");
        tally_schema::MIGRATOR
            .run(&pool)
            .await
            .expect("migrations apply");
        let (_, js) = tally_kit::nats::connect(&nats, "tally-tests", 1024)
            .await
            .expect("NATS 2.10+ is up (deploy/stack.sh up)");
        // Built before the streams are declared, so that a failure below still cleans up.
        let env = Self {
            name,
            nats,
            database_url,
            pool,
            js,
            redis_url: servers.redis_url.clone(),
            admin_url,
        };
        tally_kit::nats::ensure_streams(&env.js, &env.nats.spec())
            .await
            .expect("streams");
        env.define(fixtures::standard()).await;
        env
    }

    /// Stores resource definitions (see [`fixtures`]), as an operator would before ingest
    /// starts: an ingest already running learns of definitions made through the admin API
    /// ([`AdminClient::create`]), not of these.
    pub async fn define(&self, resources: impl IntoIterator<Item = Resource>) {
        for resource in resources {
            tally_ingest::store::create(&self.pool, &resource)
                .await
                .expect("store a definition");
        }
    }

    /// Waits until the aggregator's Redis sink has applied everything up to `seq`.
    pub async fn wait_applied(&self, seq: u64) {
        use redis::AsyncCommands;
        let mut redis = self.redis().await;
        let key = tally_schema::redis_keys::Keys::new(self.name.clone())
            .applied_seq(tally_schema::consumers::REDIS_SINK);
        let what = format!("the Redis sink to apply sequence {seq}");
        wait_until(what, Duration::from_secs(30), async || {
            let applied: Option<u64> = redis.get(&key).await.expect("Redis answers");
            match applied.unwrap_or(0) {
                done if done >= seq => Ok(()),
                stuck => Err(format!("applied up to {stuck}")),
            }
        })
        .await;
    }

    /// Runs `tally <command> <args>` against this env's NATS and streams (the commands that
    /// talk to NATS directly: `dead-letters`, `jetstream`), as an operator would.
    pub async fn nats_cli(&self, command: &str, args: &[&str]) -> anyhow::Result<()> {
        use clap::Parser;
        let nats = [
            "--nats-url",
            &self.nats.url,
            "--stream",
            &self.nats.stream,
            "--subject-root",
            &self.nats.subject_root,
        ];
        let argv = ["tally", command]
            .into_iter()
            .chain(nats)
            .chain(args.iter().copied());
        tally_cli::run(tally_cli::Cli::parse_from(argv)).await
    }

    /// The workers' lottery drawer for this env, to trigger a draw by hand.
    pub fn drawer(&self) -> tally_workers::lottery::Drawer {
        tally_workers::lottery::Drawer::new(tally_workers::lottery::DrawerParts {
            store: tally_workers::store::PgStore::from_pool(self.pool.clone()),
            redis: redis::Client::open(self.redis_url.as_str()).expect("redis url"),
            keys: tally_schema::redis_keys::Keys::new(self.name.clone()),
            js: self.js.clone(),
            spec: self.nats.spec(),
            writer_consumer: tally_schema::consumers::POSTGRES_WRITER.into(),
            views_consumer: tally_schema::consumers::REDIS_SINK.into(),
            claim_reminder: chrono::Duration::zero(),
        })
    }

    /// A new API key with `role`, stored in this env's database.
    pub async fn api_key(&self, role: tally_ingest::auth::Role) -> String {
        let key = tally_ingest::auth::generate_key();
        let name = format!("{}-{}", role.as_str(), Uuid::now_v7());
        tally_ingest::store::create_key(
            &self.pool,
            &name,
            role.as_str(),
            &tally_ingest::auth::hash_key(&key),
        )
        .await
        .expect("store a key");
        key
    }

    /// Workers settings for this env, with short timers so redeliveries happen within a test.
    pub fn workers_config(&self) -> WorkersConfig {
        WorkersConfig {
            database_url: self.database_url.clone(),
            pg_max_connections: 4,
            nats: self.nats.clone(),
            writer: WriterConfig {
                ack_wait_secs: 2,
                batch_wait_ms: 50,
                write_retries: 3,
                ..WriterConfig::default()
            },
            metrics_addr: ([127, 0, 0, 1], 0).into(),
            ranking: Default::default(),
            webhooks: Default::default(),
            email: Default::default(),
            lottery_schedule: "* * * * * *".into(),
            claim_reminder_secs: 0,
            views_consumer: tally_schema::consumers::REDIS_SINK.into(),
            redis: tally_kit::redis::RedisConfig {
                url: self.redis_url.clone(),
                prefix: self.name.clone(),
            },
        }
    }

    /// The environment variables that configure a workers process for this env.
    pub fn workers_env(&self, config: &WorkersConfig) -> Vec<(&'static str, String)> {
        let w = &config.writer;
        let mut env = nats_env(&config.nats);
        env.extend([
            ("TALLY_DATABASE_URL", config.database_url.clone()),
            ("TALLY_PG_ACK_WAIT_SECS", w.ack_wait_secs.to_string()),
            ("TALLY_PG_BATCH_WAIT_MS", w.batch_wait_ms.to_string()),
            ("TALLY_PG_BATCH_MAX", w.batch_max.to_string()),
            ("TALLY_WORKERS_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("TALLY_REDIS_URL", config.redis.url.clone()),
            ("TALLY_REDIS_PREFIX", config.redis.prefix.clone()),
            (
                "TALLY_WEBHOOK_RETRY_SCHEDULE",
                config
                    .webhooks
                    .webhook_retry_schedule
                    .iter()
                    .map(f64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "TALLY_WEBHOOK_TIMEOUT_MS",
                config.webhooks.webhook_timeout_ms.to_string(),
            ),
        ]);
        env
    }

    /// The environment variables that configure an ingest process listening on `config.addr`.
    pub fn ingest_env(&self, config: &tally_ingest::IngestConfig) -> Vec<(&'static str, String)> {
        let mut env = nats_env(&config.nats);
        env.extend([
            ("TALLY_INGEST_ADDR", config.addr.to_string()),
            ("TALLY_DATABASE_URL", config.database_url.clone()),
            (
                "TALLY_PUBLISH_TIMEOUT_MS",
                config.publish_timeout_ms.to_string(),
            ),
            ("TALLY_REDIS_URL", config.redis.url.clone()),
            ("TALLY_REDIS_PREFIX", config.redis.prefix.clone()),
            (
                "TALLY_KEY_MISS_RELOAD_MS",
                config.key_miss_reload_ms.to_string(),
            ),
        ]);
        env
    }

    /// The environment variables that configure an aggregator process.
    pub fn aggregator_env(
        &self,
        config: &tally_aggregator::config::AggregatorConfig,
    ) -> Vec<(&'static str, String)> {
        let mut env = nats_env(&config.nats);
        env.extend([
            ("TALLY_REDIS_URL", config.redis.url.clone()),
            ("TALLY_REDIS_PREFIX", config.redis.prefix.clone()),
            (
                "TALLY_REDIS_ACK_WAIT_SECS",
                config.redis_ack_wait_secs.to_string(),
            ),
            ("TALLY_CLICKHOUSE_URL", config.clickhouse_url.clone()),
            (
                "TALLY_CLICKHOUSE_DATABASE",
                config.clickhouse_database.clone(),
            ),
            (
                "TALLY_CLICKHOUSE_BATCH_WAIT_MS",
                config.clickhouse_batch_wait_ms.to_string(),
            ),
            ("TALLY_AGGREGATOR_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("TALLY_AGGREGATOR_LEASE_SECS", config.lease_secs.to_string()),
        ]);
        env
    }

    /// Ingest settings for this env: its stream, and its Redis prefix for the read API.
    pub fn ingest_config(&self) -> tally_ingest::IngestConfig {
        let mut config =
            tally_ingest::IngestConfig::for_nats(self.nats.clone(), self.database_url.clone());
        config.redis.url = self.redis_url.clone();
        config.redis.prefix = self.name.clone();
        // Tests create keys and use them at once, several a second: every unknown key reads
        // the keys again (production reads at most once a second; tests/tests/identity.rs
        // checks that bound).
        config.key_miss_reload_ms = 0;
        config
    }

    /// Aggregator settings for this env: its own Redis key prefix, no metrics listener.
    pub fn aggregator_config(&self) -> tally_aggregator::config::AggregatorConfig {
        use clap::Parser;
        let mut config =
            tally_aggregator::config::AggregatorConfig::parse_from(["tally-aggregator"]);
        config.nats = self.nats.clone();
        config.redis.url = self.redis_url.clone();
        config.redis.prefix = self.name.clone();
        config.redis_ack_wait_secs = 2;
        config.clickhouse_url = clickhouse_url();
        config.clickhouse_database = format!("tally_{}", self.name);
        config.clickhouse_batch_wait_ms = 200;
        // A crashed aggregator's successor waits for its lease to lapse: keep that short.
        config.lease_secs = 2;
        config
    }

    /// A Redis connection for assertions.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis_url.as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis is up (deploy/stack.sh up)")
    }

    /// Messages stored in this env's event stream.
    pub async fn stream_messages(&self) -> u64 {
        let mut stream = self
            .js
            .get_stream(&self.nats.stream)
            .await
            .expect("stream exists");
        stream.info().await.expect("stream info").state.messages
    }

    /// Every event id in Postgres, across all kinds, with how often it occurs.
    pub async fn stored_ids(&self) -> Vec<Uuid> {
        let mut ids = Vec::new();
        for table in [
            "poll_votes",
            "pair_votes",
            "scores",
            "registrations",
            "media_uploads",
        ] {
            let rows: Vec<(Uuid,)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT event_id FROM {table}")))
                    .fetch_all(&self.pool)
                    .await
                    .expect("select ids");
            ids.extend(rows.into_iter().map(|(id,)| id));
        }
        ids
    }

    /// The id of every event the stream holds, read through an ordered consumer: what
    /// JetStream itself kept, to tell a broker's loss from a sink's.
    pub async fn stream_ids(&self) -> Result<Vec<Uuid>, async_nats::Error> {
        use async_nats::jetstream::consumer::pull::OrderedConfig;
        use futures::StreamExt;
        let mut stream = self.js.get_stream(&self.nats.stream).await?;
        let last = stream.info().await?.state.last_sequence;
        let mut ids = Vec::new();
        if last == 0 {
            return Ok(ids);
        }
        let consumer = stream.create_consumer(OrderedConfig::default()).await?;
        let mut messages = consumer.messages().await?;
        // Bounded: a last message removed meanwhile must not keep the check waiting.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, messages.next()).await {
            let message = message?;
            let info = message.info()?;
            let event = tally_schema::StoredEvent::decode(info.stream_sequence, &message.payload)?;
            ids.push(event.envelope.id);
            if info.stream_sequence >= last {
                break;
            }
        }
        Ok(ids)
    }

    /// Stream sequences that Postgres holds for two or more different events: a broker that
    /// handed one sequence number out twice (the ordered sinks would skip the second).
    pub async fn reused_sequences(&self) -> i64 {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM (SELECT stream_seq FROM poll_votes \
             GROUP BY stream_seq HAVING count(DISTINCT event_id) > 1) AS reused",
        )
        .fetch_one(&self.pool)
        .await
        .expect("count reused sequences");
        n
    }

    /// Waits until Postgres holds exactly `expected` (as a set, each once), or panics with
    /// the lost and unexpected ids.
    pub async fn assert_exactly_stored(&self, expected: &HashSet<Uuid>, within: Duration) {
        let what = "Postgres to hold exactly the acknowledged events";
        wait_until(what, within, async || {
            let stored = self.stored_ids().await;
            let set: HashSet<Uuid> = stored.iter().copied().collect();
            if set == *expected && stored.len() == expected.len() {
                return Ok(());
            }
            let lost = expected.difference(&set).count();
            let unexpected = set.difference(expected).count();
            let duplicated = stored.len() - set.len();
            Err(format!(
                "{lost} lost, {unexpected} unexpected, {duplicated} duplicated (expected {}, \
                 stored {})",
                expected.len(),
                stored.len()
            ))
        })
        .await;
    }
}

/// The stream settings every service process of an env shares, and a quiet log.
fn nats_env(n: &NatsConfig) -> Vec<(&'static str, String)> {
    vec![
        ("TALLY_NATS_URL", n.url.clone()),
        ("TALLY_STREAM", n.stream.clone()),
        ("TALLY_SUBJECT_ROOT", n.subject_root.clone()),
        ("TALLY_STREAM_MAX_BYTES", n.max_bytes.to_string()),
        ("TALLY_MEDIA_MAX_BYTES", n.media_max_bytes.to_string()),
        ("TALLY_STREAM_REPLICAS", n.replicas.to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ]
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{db}")
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Best-effort clean-up on a thread of its own: Drop cannot await.
        let (admin_url, name, nats, redis_url) = (
            self.admin_url.clone(),
            self.name.clone(),
            self.nats.clone(),
            self.redis_url.clone(),
        );
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                // FORCE ends this env's open connections (pools live in the test's runtime).
                if let Ok(admin) = PgPool::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS tally_{name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                }
                let _ = reqwest::Client::new()
                    .post(clickhouse_url())
                    .body(format!("DROP DATABASE IF EXISTS tally_{name}"))
                    .send()
                    .await;
                if let Ok(client) = redis::Client::open(redis_url)
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    // Only this env's keys: the prefix is its random name.
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{name}:*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> =
                            redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                    }
                }
                if let Ok((_, js)) =
                    tally_kit::nats::connect(&nats, "tally-tests-cleanup", 16).await
                {
                    let _ = js.delete_stream(&nats.stream).await;
                    let _ = js.delete_stream(nats.spec().dead_letter_stream()).await;
                    let _ = js.delete_object_store(nats.spec().media_bucket()).await;
                    use futures::StreamExt;
                    let prefix = nats.spec().channel_stream_prefix();
                    let channels: Vec<String> = js
                        .stream_names()
                        .filter_map(|n| async move { n.ok() })
                        .filter(|n| std::future::ready(n.starts_with(&prefix)))
                        .collect()
                        .await;
                    for name in channels {
                        let _ = js.delete_stream(name).await;
                    }
                }
            });
        })
        .join();
    }
}

/// A running ingest on an ephemeral port.
pub struct Ingest {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Ingest {
    pub async fn start(config: tally_ingest::IngestConfig) -> Self {
        tally_kit::telemetry::metrics();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let result = tally_ingest::serve(config, listener, shutdown).await;
            let _ = ready_tx.send(());
            result.expect("ingest serves");
        });
        let ingest = Self {
            addr,
            stop: Some(stop),
            task,
        };
        // Ready once /readyz answers 200 (NATS connected, stream declared).
        let client = reqwest::Client::new();
        let mut ready_rx = ready_rx;
        let ready = ingest.url("/readyz");
        wait_until("ingest to be ready", Duration::from_secs(10), async || {
            assert!(
                ready_rx.try_recv().is_err(),
                "ingest stopped during start-up"
            );
            match client.get(&ready).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(format!("/readyz answered {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        ingest
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: in-flight requests finish first.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A service running in-process until stopped (gracefully) or crashed (aborted: nothing
/// acked, nothing flushed, as a SIGKILL looks to NATS and the databases).
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Spawns `run`, handing it the future that resolves when `stop` is called.
    pub fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(futures::future::BoxFuture<'static, ()>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        Self {
            stop: Some(stop),
            task: tokio::spawn(run(shutdown)),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The aggregator, in-process.
pub struct Aggregator;

impl Aggregator {
    pub async fn start(config: tally_aggregator::config::AggregatorConfig) -> Running {
        Running::spawn(|shutdown| async move {
            tally_aggregator::run(config, None, shutdown)
                .await
                .expect("aggregator runs");
        })
    }
}

/// The Postgres writer, in-process.
pub struct Writer;

impl Writer {
    pub async fn start(config: WorkersConfig) -> Running {
        Running::spawn(|shutdown| async move {
            tally_workers::run(config, None, shutdown)
                .await
                .expect("writer runs");
        })
    }
}

/// The usual trio on one env: ingest, the Postgres writer (the workers process) and the
/// aggregator, each with the env's settings unless [`PipelineBuilder`] changed them.
pub struct Pipeline {
    pub ingest: Ingest,
    pub writer: Option<Running>,
    pub aggregator: Option<Running>,
}

impl Pipeline {
    /// All three, with the env's settings.
    pub async fn start(env: &TestEnv) -> Self {
        Self::build(env).start().await
    }

    /// All three unless told otherwise, with settings a test may change.
    pub fn build(env: &TestEnv) -> PipelineBuilder {
        PipelineBuilder {
            ingest: env.ingest_config(),
            writer: Some(env.workers_config()),
            aggregator: Some(env.aggregator_config()),
        }
    }

    /// Stops the aggregator, the writer and ingest, in that order, each gracefully.
    pub async fn stop(self) {
        if let Some(aggregator) = self.aggregator {
            aggregator.stop().await;
        }
        if let Some(writer) = self.writer {
            writer.stop().await;
        }
        self.ingest.stop().await;
    }
}

/// The parts of a [`Pipeline`] and their settings, before it starts.
pub struct PipelineBuilder {
    ingest: tally_ingest::IngestConfig,
    writer: Option<WorkersConfig>,
    aggregator: Option<tally_aggregator::config::AggregatorConfig>,
}

impl PipelineBuilder {
    /// Changes ingest's settings.
    pub fn ingest(mut self, change: impl FnOnce(&mut tally_ingest::IngestConfig)) -> Self {
        change(&mut self.ingest);
        self
    }

    /// Changes the writer's settings.
    pub fn writer(mut self, change: impl FnOnce(&mut WorkersConfig)) -> Self {
        if let Some(config) = &mut self.writer {
            change(config);
        }
        self
    }

    /// Changes the aggregator's settings.
    pub fn aggregator(
        mut self,
        change: impl FnOnce(&mut tally_aggregator::config::AggregatorConfig),
    ) -> Self {
        if let Some(config) = &mut self.aggregator {
            change(config);
        }
        self
    }

    /// No writer: nothing reaches Postgres.
    pub fn without_writer(mut self) -> Self {
        self.writer = None;
        self
    }

    /// No aggregator: no views in Redis, nothing in ClickHouse.
    pub fn without_aggregator(mut self) -> Self {
        self.aggregator = None;
        self
    }

    /// Starts ingest (returning once it is ready), then the writer and the aggregator.
    pub async fn start(self) -> Pipeline {
        let ingest = Ingest::start(self.ingest).await;
        let writer = match self.writer {
            Some(config) => Some(Writer::start(config).await),
            None => None,
        };
        let aggregator = match self.aggregator {
            Some(config) => Some(Aggregator::start(config).await),
            None => None,
        };
        Pipeline {
            ingest,
            writer,
            aggregator,
        }
    }
}

/// Posts `count` poll votes, `concurrency` at a time, and returns the ids answered 202.
/// Each vote is from a voter of its own (a later vote of a voter would replace the earlier).
/// Any other answer fails the test: these bursts run while ingest and NATS are healthy.
pub async fn post_votes(
    ingest_url: String,
    poll: &str,
    count: usize,
    concurrency: usize,
) -> HashSet<Uuid> {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    let url = format!("{ingest_url}/v1/polls/{poll}/votes");
    let burst = rand::rng().random::<u32>();
    futures::stream::iter(0..count)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let voter = format!("voter-{burst:08x}-{i}");
                let body = serde_json::json!({"voter": voter, "options": ["a"]});
                let (status, body) = post(&client, &url, &body).await;
                assert_eq!(status, 202, "{body}");
                accepted_id(&body)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Posts JSON and returns status and body.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// How often [`read`] sends a request that was answered 503 or not answered at all.
const READ_TRIES: u32 = 10;

/// GETs `url` as a client of Tally reads: see [`read`].
pub async fn get(http: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    read(http.get(url)).await
}

/// Sends a read as a client of Tally does: a 503 (ingest shedding load, or a store it reads
/// from briefly away) is tried again after its `Retry-After` (at most 5 s), a request that got
/// no answer after a short pause, up to ten tries; then returns the status and the JSON body
/// (`Null` when there is none). Panics if the last try got no answer either.
pub async fn read(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let mut pause = Duration::from_millis(100);
    for _ in 1..READ_TRIES {
        let again = request.try_clone().expect("a read has no streamed body");
        match again.send().await {
            Ok(response) if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .map_or(pause, Duration::from_secs);
                tokio::time::sleep(retry_after.min(Duration::from_secs(5))).await;
            }
            Ok(response) => return answer(response).await,
            Err(_) => tokio::time::sleep(pause).await,
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    match request.send().await {
        Ok(response) => answer(response).await,
        Err(e) => panic!("no answer after {READ_TRIES} tries: {e}"),
    }
}

async fn answer(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// The event id of a 202 answer.
pub fn accepted_id(body: &serde_json::Value) -> Uuid {
    body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("202 body has an id")
}

/// The admin API of a running ingest, called with one key.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl AdminClient {
    pub fn new(ingest: &Ingest, key: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: ingest.base_url(),
            key,
        }
    }

    /// Sends a request to `path` (e.g. `/admin/v1/polls`) and returns status and body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("admin request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Creates a resource and panics unless the API answered 201.
    pub async fn create(&self, plural: &str, definition: serde_json::Value) {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                &format!("/admin/v1/{plural}"),
                Some(&definition),
            )
            .await;
        assert_eq!(status, 201, "create {plural}: {body}");
    }
}

/// Reads server-sent events until one's data satisfies `done`, within 15 s.
pub async fn wait_for_event(
    events: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    use futures::StreamExt;
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let chunk = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("no matching event within 15 s")
            .expect("the stream stayed open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let value: serde_json::Value = serde_json::from_str(data).unwrap();
                if done(&value) {
                    return value;
                }
            }
        }
    }
}

/// A poll `noise` and votes for it posted one after another (a new voter each, a few ms apart)
/// until the handle is aborted: a stream that never goes idle, for steps that must not wait
/// for one.
pub async fn steady_votes(admin: &AdminClient, ingest: &Ingest) -> tokio::task::JoinHandle<()> {
    admin
        .create(
            "polls",
            serde_json::json!({"id": "noise", "options": ["a", "b"]}),
        )
        .await;
    let url = ingest.url("/v1/polls/noise/votes");
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        for i in 0u64.. {
            let body = serde_json::json!({"voter": format!("n{i}"), "options": ["a"]});
            let _ = post(&http, &url, &body).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    })
}
