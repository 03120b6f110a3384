//! `workers`: Tally's background processing on apalis.
//!
//! - [`config`]: every setting, from flags or `TALLY_*` environment variables.
//! - [`store`]: Postgres — connection, migrations, the idempotent batch insert.
//! - [`batch_insert`]: the apalis job that writes a batch and acks it after commit.
//! - [`lottery`]: the draw job (apalis-postgres) and the scheduler that queues it.
//! - [`thumbnails`]: the thumbnail job (apalis-postgres) and the scheduler that queues it.
//! - [`ranking`]: the scheduled Bradley–Terry job over each arena's pair votes.
//! - [`upstream`]: the scheduled poller that feeds broadcast channels from upstream URLs.
//! - [`webhooks`]: signed webhook deliveries (apalis-postgres jobs) and their scheduler.
//! - [`email`]: winners' email over SMTP (apalis-postgres jobs) and its scheduler.
//!
//! Why apalis sits behind the consumer rather than replacing it: JetStream is the queue (it
//! holds the backlog, orders events and redelivers), apalis is the runtime (retries with
//! backoff, concurrency, panic isolation, tracing, graceful shutdown). A custom apalis backend
//! turns the consumer's batches into tasks; see docs/architecture.md.

pub mod batch_insert;
pub mod closings;
pub mod config;
pub mod email;
pub mod lottery;
pub mod ranking;
pub mod store;
pub mod thumbnails;
pub mod upstream;
pub mod webhooks;

use apalis::layers::WorkerBuilderExt;
use apalis::layers::retry::{
    HasherRng, RetryPolicy, backoff::ExponentialBackoffMaker, backoff::MakeBackoff,
};
use apalis::prelude::*;
use apalis_core::backend::custom::{BackendBuilder, CustomBackend};
use batch_insert::Writer;
use config::WorkersConfig;
use futures::sink::{Drain, SinkMapErr};
use futures::stream::BoxStream;
use futures::{FutureExt, SinkExt, StreamExt};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::PgStore;
use tally_kit::consumer::{self, EventBatch};
use tokio::sync::{Mutex, mpsc};

pub use config::{Cli, Command};

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Nats(#[from] tally_kit::nats::NatsError),
    #[error("JetStream consumer: {0}")]
    Consumer(async_nats::Error),
    #[error("apalis: {0}")]
    Runtime(String),
    #[error("ranking schedule '{schedule}': {reason}")]
    Schedule { schedule: String, reason: String },
    #[error("Redis URL: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("metrics listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Applies migrations and declares the streams. Idempotent.
pub async fn setup(config: &WorkersConfig) -> Result<(), WorkersError> {
    let store = PgStore::connect(&config.database_url, 1).await?;
    setup_jobs(store.pool()).await?;
    let (_client, js) = tally_kit::nats::connect(&config.nats, "tally-workers-setup", 16).await?;
    tally_kit::nats::ensure_streams(&js, &config.nats.spec()).await?;
    Ok(())
}

/// After Postgres was restored from a backup (`deploy/backup.sh restore`): deletes the
/// Postgres writer's durable consumer, so that the next writer to start creates it anew and
/// delivers everything the stream still holds; inserts skip the events Postgres has, and
/// store the ones the backup lacked. Run it with every writer stopped (a running one would
/// keep its deliveries). Returns the first and last stream sequence the writer goes through.
pub async fn replay(config: &WorkersConfig) -> Result<(u64, u64), WorkersError> {
    let (_client, js) = tally_kit::nats::connect(&config.nats, "tally-workers-replay", 16).await?;
    let spec = config.nats.spec();
    let consumer = |e: async_nats::Error| WorkersError::Consumer(e);
    let mut stream = js
        .get_stream(&spec.name)
        .await
        .map_err(|e| consumer(e.into()))?;
    tally_kit::consumer::delete_consumer(&stream, &config.writer.consumer)
        .await
        .map_err(consumer)?;
    let state = stream
        .info()
        .await
        .map_err(|e| consumer(e.into()))?
        .state
        .clone();
    tracing::info!(
        consumer = %config.writer.consumer,
        first = state.first_sequence,
        last = state.last_sequence,
        "The Postgres writer will deliver the stream again from its start."
    );
    Ok((state.first_sequence, state.last_sequence))
}

/// Each second: a thumbnail job for every upload not queued yet.
async fn schedule_thumbnails(
    _tick: apalis_cron::Tick,
    thumbnailer: Data<Arc<thumbnails::Thumbnailer>>,
    jobs: Data<apalis_postgres::PostgresStorage<thumbnails::ThumbnailJob>>,
) -> Result<(), BoxDynError> {
    let mut jobs = (*jobs).clone();
    for job in thumbnailer.claim_new().await? {
        jobs.push(job).await?;
    }
    Ok(())
}

/// apalis' job tables (schema `apalis`), beside Tally's own migrations.
async fn setup_jobs(pool: &sqlx::PgPool) -> Result<(), WorkersError> {
    let mut migrator = apalis_postgres::PostgresStorage::migrations();
    migrator.set_ignore_missing(true);
    migrator.run(pool).await.map_err(store::StoreError::from)?;
    Ok(())
}

/// Exponential backoff between `min` and `max`, with jitter, for retried jobs.
fn backoff(
    min: Duration,
    max: Duration,
) -> apalis::layers::retry::backoff::ExponentialBackoff<HasherRng> {
    ExponentialBackoffMaker::new(min, max, 0.5, HasherRng::default())
        .expect("min is below max and the jitter is within 0..=1")
        .make_backoff()
}

/// A Postgres job queue polled every second, rather than backing off to a minute when idle:
/// a draw should follow its close, and thumbnails their upload, within seconds.
fn every_second<Args>(
    jobs: apalis_postgres::PostgresStorage<Args>,
) -> apalis_core::backend::ext::poll_strategy::PollWith<
    apalis_postgres::PostgresStorage<Args>,
    EveryInterval,
> {
    apalis_core::backend::ext::poll_strategy::PollWith::new(
        jobs,
        EveryInterval::new(Duration::from_secs(1)),
    )
}

/// Wakes a job worker every `interval`. Unlike apalis' `IntervalStrategy`, which re-arms its
/// timer without polling it, the new timer is polled in the same call, so a wake-up is always
/// registered: with the other, a worker was seen to sleep until its next heartbeat (up to
/// 30 s) with jobs waiting (a draw's webhooks or emails 23 s late in one run of two).
pub struct EveryInterval {
    interval: Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl EveryInterval {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            timer: None,
        }
    }
}

impl Clone for EveryInterval {
    fn clone(&self) -> Self {
        Self::new(self.interval)
    }
}

impl apalis_core::backend::ext::poll_strategy::PollStrategy for EveryInterval {
    fn poll_drive(
        &mut self,
        cx: &mut std::task::Context<'_>,
        _snapshot: &apalis_core::backend::ext::poll_strategy::PollSnapshot,
    ) -> std::task::Poll<Option<()>> {
        use std::future::Future;
        let mut fired = false;
        loop {
            let interval = self.interval;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
            match timer.as_mut().poll(cx) {
                std::task::Poll::Ready(()) => {
                    self.timer = None;
                    fired = true;
                }
                std::task::Poll::Pending if fired => return std::task::Poll::Ready(Some(())),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

fn cron_schedule(text: &str) -> Result<cron::Schedule, WorkersError> {
    <cron::Schedule as std::str::FromStr>::from_str(text).map_err(|e| WorkersError::Schedule {
        schedule: text.to_owned(),
        reason: e.to_string(),
    })
}

/// Runs the Postgres writer until `shutdown` resolves; the batch being written finishes first.
pub async fn run(
    config: WorkersConfig,
    metrics_listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkersError> {
    let store = PgStore::connect(&config.database_url, config.pg_max_connections).await?;
    setup_jobs(store.pool()).await?;
    let (client, js) = tally_kit::nats::connect(&config.nats, "tally-workers", 1024).await?;
    let spec = config.nats.spec();
    tally_kit::nats::ensure_streams(&js, &spec).await?;
    let writer_config = config.writer.clone();
    // The writer deduplicates by event id and instances share its consumer.
    let pipeline = consumer::Pipeline::shared(
        &js,
        &spec,
        &writer_config.consumer_spec(),
        writer_config.batch_spec(),
    )
    .await
    .map_err(WorkersError::Consumer)?;
    let rx = pipeline.batches;
    let pipeline_tasks = pipeline.tasks;
    let shutdown = shutdown.shared();
    if let Some(listener) = metrics_listener {
        tokio::spawn(tally_kit::ops::serve_ops(listener, shutdown.clone()));
    }

    let writer = Arc::new(Writer {
        store,
        dead_letters: tally_kit::dead_letters::DeadLetters::new(
            js.clone(),
            &spec,
            &writer_config.consumer,
            writer_config.poison_max_deliveries,
        ),
    });
    let ranker = Arc::new(ranking::job::Ranker {
        store: writer.store.clone(),
        redis: redis::Client::open(config.redis.url.as_str())?,
        keys: config.redis.keys(),
        config: config.ranking.clone(),
    });
    let schedule = cron_schedule(&config.ranking.ranking_schedule)?;
    let drawer = Arc::new(lottery::Drawer::new(lottery::DrawerParts {
        store: writer.store.clone(),
        redis: redis::Client::open(config.redis.url.as_str())?,
        keys: config.redis.keys(),
        js,
        spec: spec.clone(),
        writer_consumer: writer_config.consumer.clone(),
        views_consumer: config.views_consumer.clone(),
        claim_reminder: chrono::Duration::seconds(
            config.claim_reminder_secs.min(i64::MAX as u64 / 1000) as i64,
        ),
    }));
    let closer = Arc::new(closings::Closer::new(
        writer.store.clone(),
        drawer.jetstream().clone(),
        spec.clone(),
        writer_config.consumer.clone(),
    ));
    let draw_jobs = apalis_postgres::PostgresStorage::<lottery::DrawJob>::new(writer.store.pool());
    let lottery_schedule = cron_schedule(&config.lottery_schedule)?;
    // Polls closed and tournaments finished are looked for as often as draws are due.
    let closings_schedule = lottery_schedule.clone();
    let thumbnailer = Arc::new(thumbnails::Thumbnailer {
        store: writer.store.clone(),
        objects: tally_kit::nats::media_store(drawer.jetstream(), &spec).await?,
    });
    let thumbnail_jobs =
        apalis_postgres::PostgresStorage::<thumbnails::ThumbnailJob>::new(writer.store.pool());
    let poller = Arc::new(upstream::Poller::new(
        writer.store.clone(),
        drawer.jetstream().clone(),
        spec.clone(),
        redis::Client::open(config.redis.url.as_str())?,
        config.redis.keys(),
    ));
    let deliverer = Arc::new(
        webhooks::Deliverer::new(writer.store.clone(), config.webhooks.clone())
            .map_err(|e| WorkersError::Runtime(e.to_string()))?,
    );
    let delivery_jobs =
        apalis_postgres::PostgresStorage::<webhooks::DeliveryJob>::new(writer.store.pool());
    let (delivery_worker, delivery_backend) = (deliverer.clone(), delivery_jobs.clone());
    let delivery_concurrency = config.webhooks.webhook_concurrency.max(1);
    let mailer = Arc::new(
        email::Mailer::new(writer.store.clone(), config.email.clone())
            .map_err(|e| WorkersError::Runtime(e.to_string()))?,
    );
    let email_jobs = apalis_postgres::PostgresStorage::<email::EmailJob>::new(writer.store.pool());
    let (email_worker, email_backend) = (mailer.clone(), email_jobs.clone());
    let (thumb_worker, thumb_backend) = (thumbnailer.clone(), thumbnail_jobs.clone());
    let (draw_drawer, draw_backend) = (drawer.clone(), draw_jobs.clone());
    let batches = Arc::new(Mutex::new(rx));
    tracing::info!(consumer = %writer_config.consumer, stream = %spec.name, "Postgres writer running.");
    let result = Monitor::new()
        .register(move |_restarts| {
            let backoff = backoff(Duration::from_millis(200), Duration::from_secs(5));
            WorkerBuilder::new(writer_config.consumer.clone())
                .backend(batch_backend(batches.clone()))
                .concurrency(writer_config.concurrency)
                .retry(RetryPolicy::retries(writer_config.write_retries).with_backoff(backoff))
                .enable_tracing()
                .catch_panic()
                .data(writer.clone())
                .build(batch_insert::write_batch)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("arena-ranking")
                .backend(apalis_cron::CronScheduler::new(schedule.clone()))
                .enable_tracing()
                .catch_panic()
                .data(ranker.clone())
                .build(ranking::job::rank_tick)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("lottery-scheduler")
                .backend(apalis_cron::CronScheduler::new(lottery_schedule.clone()))
                .enable_tracing()
                .catch_panic()
                .data(drawer.clone())
                .data(draw_jobs.clone())
                .build(lottery::schedule_draws)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("closings")
                .backend(apalis_cron::CronScheduler::new(closings_schedule.clone()))
                .enable_tracing()
                .catch_panic()
                .data(closer.clone())
                .build(closings::closings_tick)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("thumbnail-scheduler")
                .backend(apalis_cron::CronScheduler::new(
                    cron_schedule("* * * * * *").expect("a valid schedule"),
                ))
                .enable_tracing()
                .catch_panic()
                .data(thumbnailer.clone())
                .data(thumbnail_jobs.clone())
                .build(schedule_thumbnails)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("channel-upstreams")
                .backend(apalis_cron::CronScheduler::new(
                    cron_schedule("* * * * * *").expect("a valid schedule"),
                ))
                .enable_tracing()
                .catch_panic()
                .data(poller.clone())
                .build(upstream::poll_tick)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("webhook-scheduler")
                .backend(apalis_cron::CronScheduler::new(
                    cron_schedule("* * * * * *").expect("a valid schedule"),
                ))
                .enable_tracing()
                .catch_panic()
                .data(deliverer.clone())
                .data(delivery_jobs.clone())
                .build(webhooks::schedule_deliveries)
        })
        .register(move |_restarts| {
            let backoff = backoff(Duration::from_millis(500), Duration::from_secs(30));
            WorkerBuilder::new("webhook-deliveries")
                .backend(every_second(delivery_backend.clone()))
                .concurrency(delivery_concurrency)
                // Attempts are recorded by the job; only a storage error retries it.
                .retry(RetryPolicy::retries(5).with_backoff(backoff))
                .enable_tracing()
                .catch_panic()
                .data(delivery_worker.clone())
                .build(webhooks::run_deliveries)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("email-scheduler")
                .backend(apalis_cron::CronScheduler::new(
                    cron_schedule("* * * * * *").expect("a valid schedule"),
                ))
                .enable_tracing()
                .catch_panic()
                .data(mailer.clone())
                .data(email_jobs.clone())
                .build(email::schedule_emails)
        })
        .register(move |_restarts| {
            let backoff = backoff(Duration::from_millis(500), Duration::from_secs(30));
            WorkerBuilder::new("emails")
                .backend(every_second(email_backend.clone()))
                .concurrency(4)
                .retry(RetryPolicy::retries(5).with_backoff(backoff))
                .enable_tracing()
                .catch_panic()
                .data(email_worker.clone())
                .build(email::run_emails)
        })
        .register(move |_restarts| {
            WorkerBuilder::new("thumbnails")
                .backend(every_second(thumb_backend.clone()))
                .concurrency(2)
                .retry(RetryPolicy::retries(5))
                .timeout(Duration::from_secs(60))
                .enable_tracing()
                .catch_panic()
                .data(thumb_worker.clone())
                .build(thumbnails::run_thumbnails)
        })
        .register(move |_restarts| {
            let backoff = backoff(Duration::from_millis(500), Duration::from_secs(30));
            WorkerBuilder::new("lottery-draw")
                .backend(every_second(draw_backend.clone()))
                .retry(RetryPolicy::retries(30).with_backoff(backoff))
                // A draw reads one tournament's registrants; a minute means something hangs.
                .timeout(Duration::from_secs(60))
                .enable_tracing()
                .catch_panic()
                .data(draw_drawer.clone())
                .build(lottery::run_draw)
        })
        .shutdown_timeout(Duration::from_secs(30))
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await;
    drop(pipeline_tasks);
    let _ = client.flush().await;
    result.map_err(|e| WorkersError::Runtime(e.to_string()))?;
    tracing::info!("Postgres writer stopped.");
    Ok(())
}

type Batches = Arc<Mutex<mpsc::Receiver<EventBatch>>>;
type BatchStream = BoxStream<'static, Result<Option<Task<EventBatch>>, BoxDynError>>;
type NoSink = SinkMapErr<Drain<Task<EventBatch>>, fn(Infallible) -> BoxDynError>;
type BatchBackend = CustomBackend<EventBatch, Batches, BatchStream, NoSink>;

/// A task named by the stream sequence of its first message, which makes logs traceable.
fn batch_task(batch: EventBatch) -> Task<EventBatch> {
    let first = batch
        .messages
        .first()
        .and_then(|m| m.info().ok())
        .map_or(0, |i| i.stream_sequence);
    Task::new(batch)
        .into_builder()
        .task_id(TaskId::from(first))
        .build()
}

/// An apalis backend whose tasks are the batches the consumer loop sends.
fn batch_backend(batches: Batches) -> BatchBackend {
    fn never(n: Infallible) -> BoxDynError {
        match n {}
    }
    BackendBuilder::new()
        .database(batches)
        .fetcher(|batches: &mut Batches, _: &(), _: &WorkerContext| {
            futures::stream::unfold(batches.clone(), |batches| async move {
                let next = batches.lock().await.recv().await;
                next.map(|batch| (Ok::<_, BoxDynError>(Some(batch_task(batch))), batches))
            })
            .boxed()
        })
        // Tasks only come from the consumer; nothing pushes into this backend.
        .sink(|_: &mut Batches, _: &()| {
            futures::sink::drain().sink_map_err(never as fn(Infallible) -> BoxDynError)
        })
        .build()
        .expect("database, fetcher and sink are set")
}

/// The binary's entry point, shared with the test harness.
pub async fn main_with(cli: Cli) -> anyhow::Result<()> {
    tally_kit::telemetry::init_tracing();
    tally_kit::telemetry::metrics();
    match cli.command.unwrap_or(Command::Run) {
        Command::Setup => setup(&cli.config).await?,
        Command::Replay => {
            let (first, last) = replay(&cli.config).await?;
            println!(
                "The Postgres writer will go through stream sequences {first} to {last} when it starts."
            );
        }
        Command::Run => {
            let listener = tokio::net::TcpListener::bind(cli.config.metrics_addr).await?;
            run(cli.config, Some(listener), tally_kit::shutdown::signal()).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::EveryInterval;
    use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
    use std::time::Duration;

    /// A worker polls its strategy only when woken: each time the strategy fires, it must
    /// have registered the next wake-up, or a worker with nothing else to wake it sleeps.
    #[tokio::test]
    async fn every_firing_leaves_the_next_wake_up_registered() {
        let mut strategy = EveryInterval::new(Duration::from_millis(10));
        let mut fired = 0;
        let woken_five_times = std::future::poll_fn(|cx| {
            if strategy.poll_drive(cx, &PollSnapshot::default()).is_ready() {
                fired += 1;
            }
            match fired {
                5 => std::task::Poll::Ready(()),
                _ => std::task::Poll::Pending,
            }
        });
        tokio::time::timeout(Duration::from_secs(2), woken_five_times)
            .await
            .expect("the strategy stopped waking its worker");
    }
}
