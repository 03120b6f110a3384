//! `aggregator`: turns the event stream into live views.
//!
//! - [`config`]: every setting, from flags or `TALLY_*` environment variables.
//! - [`effects`]: what an event does to Redis, and the Elo rule.
//! - [`leaderboard`]: the Redis side — one atomic script per batch, with the applied sequence.
//! - [`ordered_sink`]: the consume–apply–ack loop every sink runs, in stream order.
//! - [`analytics`]: the ClickHouse side — one INSERT per batch above a read-back high-water mark.
//! - [`kafka_mirror`]: optional — every event onto a Kafka topic keyed by scope, at least once.
//! - [`live`]: coalesced notifications that a live view changed.
//! - [`rebuild`]: recomputing the Redis views from Postgres.
//!
//! Each sink has its own durable consumer and task: any can be down while the others stay
//! current.

pub mod analytics;
pub mod config;
pub mod effects;
pub mod kafka_mirror;
pub mod leaderboard;
pub mod lease;
pub mod live;
pub mod ordered_sink;
pub mod rebuild;

use config::AggregatorConfig;
use futures::FutureExt;
use leaderboard::RedisSink;
use std::future::Future;
use std::time::Duration;
use tally_kit::consumer;
use tokio_util::task::AbortOnDropHandle;

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    #[error(transparent)]
    Nats(#[from] tally_kit::nats::NatsError),
    #[error(transparent)]
    Redis(#[from] leaderboard::RedisError),
    #[error("JetStream consumer: {0}")]
    Consumer(async_nats::Error),
}

/// The Redis sink this configuration names, connected.
async fn redis_sink(config: &AggregatorConfig) -> Result<RedisSink, leaderboard::RedisError> {
    RedisSink::connect(
        &config.redis.url,
        config.redis.keys(),
        &config.redis_consumer,
        config.elo(),
    )
    .await
}

/// Runs until `shutdown` resolves: waits for the aggregator lease (another instance may be
/// active), runs the sinks while it holds it, and stands by again if it loses it.
pub async fn run(
    config: AggregatorConfig,
    metrics_listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AggregatorError> {
    let (client, js) = tally_kit::nats::connect(&config.nats, "tally-aggregator", 64).await?;
    let spec = config.nats.spec();
    tally_kit::nats::ensure_streams(&js, &spec).await?;
    let shutdown = shutdown.shared();
    if let Some(listener) = metrics_listener {
        tokio::spawn(tally_kit::ops::serve_ops(listener, shutdown.clone()));
    }
    let ttl = Duration::from_secs(config.lease_secs.max(1));
    let lease = lease::Lease::open(&js, &spec, ttl)
        .await
        .map_err(AggregatorError::Consumer)?;
    while let Some((revision, since)) = lease.acquire(shutdown.clone()).await {
        let (lost_tx, lost) = tokio::sync::oneshot::channel::<()>();
        let holder = lease.clone();
        // Renewals end with this instance's sinks, however they end (a crash included).
        let holding = AbortOnDropHandle::new(tokio::spawn(async move {
            holder.hold(revision, since).await;
            let _ = lost_tx.send(());
        }));
        let until = shutdown.clone();
        let stop = async move {
            tokio::select! {
                () = until => {}
                _ = lost => {}
            }
        };
        let stop = stop.shared();
        // Taking over often happens in turbulence (the node that failed may have taken the
        // old holder with it): sinks that cannot start yet are retried while the lease holds.
        let start = || async {
            let ran = run_active(&config, &client, &js, stop.clone()).await;
            if ran.is_err() {
                metrics::counter!("tally_aggregator_start_failures_total").increment(1);
            }
            ran
        };
        consumer::retry_every(
            "Starting the sinks",
            Duration::from_secs(1),
            start,
            stop.clone(),
        )
        .await;
        drop(holding);
        // Whatever ended the sinks, the lease goes (if still this instance's), so whoever runs
        // next need not wait for it to lapse.
        lease.release().await;
        if shutdown.clone().now_or_never().is_some() {
            break;
        }
    }
    let _ = client.flush().await;
    tracing::info!("Aggregator stopped.");
    Ok(())
}

/// The sinks of the active instance, until `stop` resolves.
async fn run_active(
    config: &AggregatorConfig,
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    stop: impl Future<Output = ()> + Clone + Send + 'static,
) -> Result<(), AggregatorError> {
    let spec = config.nats.spec();
    let sink = redis_sink(config).await?;
    let applied = sink.applied_seq().await?;
    let consumer_spec = config.redis_consumer_spec(applied);
    let (pipeline, applied_tx) =
        consumer::Pipeline::ordered(js, &spec, &consumer_spec, config.redis_batch_spec())
            .await
            .map_err(AggregatorError::Consumer)?;
    tracing::info!(resume_after = applied, consumer = %config.redis_consumer, "Redis sink running.");
    let changed = live::Changed::default();
    // The other sinks and the notifier end with the Redis sink, however it ends.
    let _notifier = AbortOnDropHandle::new(tokio::spawn(live::notify(
        client.clone(),
        spec.clone(),
        changed.clone(),
        Duration::from_millis(config.live_interval_ms),
    )));
    let _analytics = AbortOnDropHandle::new(tokio::spawn(run_clickhouse_sink(
        js.clone(),
        config.clone(),
        stop.clone(),
    )));
    let _mirror = config.kafka_target().map(|target| {
        AbortOnDropHandle::new(tokio::spawn(run_kafka_mirror(
            js.clone(),
            config.clone(),
            target,
            stop.clone(),
        )))
    });
    let sink = leaderboard::LiveRedisSink { sink, changed };
    ordered_sink::apply_batches(sink, pipeline.batches, applied_tx, stop).await;
    Ok(())
}

/// The ClickHouse sink: waits (retrying) for ClickHouse, then consumes from right after what
/// ClickHouse holds. Runs beside the Redis sink and never holds it up.
async fn run_clickhouse_sink(
    js: async_nats::jetstream::Context,
    config: AggregatorConfig,
    shutdown: impl Future<Output = ()> + Clone + Send + 'static,
) {
    let sink = analytics::ClickHouseSink::new(&config.clickhouse_url, &config.clickhouse_database);
    let spec = config.nats.spec();
    let ready = || async {
        sink.prepare(&config.clickhouse_database).await?;
        sink.high_water().await
    };
    let what = "Reaching ClickHouse";
    let waiting = Duration::from_secs(5);
    let Some(high) = consumer::retry_every(what, waiting, ready, shutdown.clone()).await else {
        return;
    };
    let consumer = config.clickhouse_consumer_spec(high);
    let batches = config.clickhouse_batch_spec();
    consume_into(js, spec, consumer, batches, sink, shutdown).await;
}

/// The Kafka mirror: waits (retrying) for the brokers and its topic, then mirrors from its
/// consumer's ack floor on, in stream order.
async fn run_kafka_mirror(
    js: async_nats::jetstream::Context,
    config: AggregatorConfig,
    target: kafka_mirror::KafkaTarget,
    shutdown: impl Future<Output = ()> + Clone + Send + 'static,
) {
    let ready = || async {
        target.ensure_topic().await?;
        kafka_mirror::KafkaMirror::new(&target)
    };
    let what = format!("Reaching Kafka at {}", target.brokers);
    let waiting = Duration::from_secs(5);
    let Some(mirror) = consumer::retry_every(&what, waiting, ready, shutdown.clone()).await else {
        return;
    };
    let spec = config.nats.spec();
    // Only a consumer that does not exist yet starts from 0: NATS being away must not send
    // the whole stream again.
    let read = || async {
        consumer::progress(&js, &spec, &config.kafka_consumer)
            .await
            .map(|p| p.ack_floor)
    };
    let what = "Reading the Kafka mirror's ack floor";
    let every = Duration::from_secs(1);
    let Some(floor) = consumer::retry_every(what, every, read, shutdown.clone()).await else {
        return;
    };
    tracing::info!(topic = %target.topic, "Kafka topic ready.");
    let consumer = config.kafka_consumer_spec(floor);
    let batches = config.kafka_batch_spec();
    consume_into(js, spec, consumer, batches, mirror, shutdown).await;
}

/// Creates the consumer `spec` names (retrying while NATS is away: this sink must not stay
/// down after a broker restart), then feeds its batches to `sink`, in order, until
/// `shutdown`; reports its backlog.
async fn consume_into<S: ordered_sink::OrderedSink>(
    js: async_nats::jetstream::Context,
    events: tally_schema::StreamSpec,
    spec: consumer::ConsumerSpec,
    batches: consumer::BatchSpec,
    sink: S,
    shutdown: impl Future<Output = ()> + Clone + Send,
) {
    let create = || consumer::Pipeline::ordered(&js, &events, &spec, batches);
    let what = "Creating the consumer";
    let every = Duration::from_secs(1);
    let Some((pipeline, applied_tx)) =
        consumer::retry_every(what, every, create, shutdown.clone()).await
    else {
        return;
    };
    tracing::info!(sink = S::NAME, resume_after = ?spec.resume_after, "Sink running.");
    ordered_sink::apply_batches(sink, pipeline.batches, applied_tx, shutdown).await;
}

/// Rebuilds the Redis views from Postgres, after checking the writer has caught up.
pub async fn rebuild_from_postgres(
    config: &AggregatorConfig,
    force: bool,
) -> anyhow::Result<rebuild::Rebuilt> {
    let pool = writer_caught_up(config, force).await?;
    let sink = redis_sink(config).await?;
    Ok(rebuild::rebuild(&pool, &sink).await?)
}

/// ClickHouse's tables from Postgres (`tally-aggregator rebuild --store clickhouse`).
pub async fn rebuild_clickhouse_from_postgres(
    config: &AggregatorConfig,
    force: bool,
) -> anyhow::Result<rebuild::Rebuilt> {
    let pool = writer_caught_up(config, force).await?;
    let database = &config.clickhouse_database;
    let sink = analytics::ClickHouseSink::new(&config.clickhouse_url, database);
    Ok(rebuild::rebuild_clickhouse(&pool, &sink, database).await?)
}

/// Postgres, once the writer has stored everything the stream holds (a rebuild would miss the
/// rest); with `force`, at once.
async fn writer_caught_up(config: &AggregatorConfig, force: bool) -> anyhow::Result<sqlx::PgPool> {
    let (_client, js) =
        tally_kit::nats::connect(&config.nats, "tally-aggregator-rebuild", 16).await?;
    if !force {
        let writer = consumer::progress(&js, &config.nats.spec(), &config.postgres_consumer)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !writer.caught_up() {
            anyhow::bail!(
                "the Postgres writer is behind: it has acknowledged up to {} of {}; wait, or pass --force",
                writer.ack_floor,
                writer.last
            );
        }
    }
    Ok(sqlx::PgPool::connect(&config.database_url).await?)
}

/// The binary's entry point.
pub async fn main_with(cli: config::Cli) -> anyhow::Result<()> {
    tally_kit::telemetry::init_tracing();
    tally_kit::telemetry::metrics();
    match cli.command.unwrap_or(config::Command::Run) {
        config::Command::Run => {
            let listener = tokio::net::TcpListener::bind(cli.config.metrics_addr).await?;
            run(cli.config, Some(listener), tally_kit::shutdown::signal()).await?;
        }
        config::Command::Rebuild { force, store } => {
            let rebuilt = match store {
                config::Store::Redis => rebuild_from_postgres(&cli.config, force).await?,
                config::Store::Clickhouse => {
                    rebuild_clickhouse_from_postgres(&cli.config, force).await?
                }
            };
            tracing::info!(
                ?store,
                events = rebuilt.events,
                last_seq = rebuilt.last_seq,
                "Rebuilt from Postgres."
            );
        }
    }
    Ok(())
}
