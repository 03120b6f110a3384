//! The application: shared state, the router with its layers, and `serve`.

use crate::auth::{KeyRing, Principal};
use crate::catalog::Catalog;
use crate::config::IngestConfig;
use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::live::Live;
use crate::rate_limit::RateLimiter;
use crate::routes;
use crate::views::Views;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Json, Router};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tally_kit::publisher::{PublishError, Publisher, Stored};
use tally_schema::ids::IdempotencyKey;
use tally_schema::resources::Resource;
use tally_schema::{Envelope, Event};
use tower::ServiceBuilder;

/// Everything a handler needs, built once.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: IngestConfig,
    pub publisher: Publisher,
    pub views: Views,
    pub live: Live,
    /// Followers of broadcast channels on this instance.
    pub channels: crate::channels::Channels,
    /// Places for live streams, capped per address and per instance.
    pub streams: Arc<crate::live::StreamSlots>,
    /// Admin reads and writes only; events are checked against `catalog`, in memory.
    pub pool: sqlx::PgPool,
    pub catalog: Catalog,
    /// Reads from Postgres while Redis cannot answer.
    pub fallback: crate::fallback::Fallback,
    pub limiter: Arc<RateLimiter>,
    /// Uploaded originals (and, later, their variants).
    pub media: async_nats::jetstream::object_store::ObjectStore,
    /// Each tournament's media bytes against its quota.
    pub media_quota: crate::media::Quota,
    /// Keys of signed server-to-server writes (checked by the write routes' middleware).
    pub signing: Arc<crate::signature::Signing>,
    /// The active API keys, in memory.
    pub keys: Arc<KeyRing>,
    /// Verifies user tokens.
    pub verifier: Arc<crate::identity::Verifier>,
    nats: async_nats::Client,
}

/// The connections and components [`AppState::new`] assembles.
pub struct Parts {
    pub publisher: Publisher,
    pub views: Views,
    pub catalog: Catalog,
    pub limiter: Arc<RateLimiter>,
    pub media: async_nats::jetstream::object_store::ObjectStore,
    pub signing: Arc<crate::signature::Signing>,
    pub keys: Arc<KeyRing>,
    pub verifier: Arc<crate::identity::Verifier>,
    pub nats: async_nats::Client,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: IngestConfig,
        parts: Parts,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let Parts {
            publisher,
            views,
            catalog,
            limiter,
            media,
            signing,
            keys,
            verifier,
            nats,
        } = parts;
        let live = Live::new(views.clone(), catalog.clone(), closing);
        let channels = crate::channels::Channels::new(
            publisher.jetstream().clone(),
            publisher.spec().clone(),
            config.channels.channel_buffer,
        );
        let media_quota = crate::media::Quota::new(views.connection(), views.keys().clone());
        let streams =
            crate::live::StreamSlots::new(config.max_streams_per_address, config.stream_cap());
        let fallback =
            crate::fallback::Fallback::new(catalog.pool().clone(), config.fallback.clone());
        Self(Arc::new(Inner {
            fallback,
            config,
            publisher,
            views,
            live,
            channels,
            streams,
            pool: catalog.pool().clone(),
            catalog,
            limiter,
            media,
            media_quota,
            signing,
            keys,
            verifier,
            nats,
        }))
    }

    /// Checks an event against its resource's rules, who sent it and the rate limits, wraps
    /// it in its envelope, publishes it and waits for JetStream's ack. A client key becomes
    /// the event id (namespaced by kind, scope and caller) and the JetStream message id, so a
    /// retry is stored once.
    pub async fn accept(
        &self,
        event: Event,
        key: Option<IdempotencyKey>,
        client: ClientIp,
        principal: &Principal,
    ) -> Result<Stored, ApiError> {
        let event = self.check(event, client, principal).await?;
        let id = event_id(&event, key.as_ref(), principal);
        self.publish(event, id).await
    }

    /// The resource's rules, who sent it and the rate limits, without publishing (an upload
    /// checks first, then stores the bytes, then publishes).
    pub async fn check(
        &self,
        event: Event,
        client: ClientIp,
        principal: &Principal,
    ) -> Result<Event, ApiError> {
        let (event, limits) = self.catalog.admit(event, principal, chrono::Utc::now())?;
        match self.limiter.check(&event, &limits, client.0).await {
            Ok(Ok(())) => {}
            Ok(Err(limited)) => return Err(ApiError::RateLimited(limited)),
            Err(e) => {
                // Fail open: a limiter outage must not stop votes that JetStream can take.
                tracing::warn!(error = %e, "Rate-limit store failed; admitting the request.");
                metrics::counter!("tally_ingest_rate_limit_errors_total").increment(1);
            }
        }
        Ok(event)
    }

    /// Publishes a checked event under `id` (`None`: a fresh one) and waits for JetStream's
    /// ack.
    pub async fn publish(&self, event: Event, id: Option<uuid::Uuid>) -> Result<Stored, ApiError> {
        let dedup = id.is_some();
        let envelope = match id {
            Some(id) => Envelope::keyed(id, event),
            None => Envelope::new(event),
        };
        self.publisher
            .publish(&envelope, dedup)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// A definition changed on this instance: use it at once, and tell the others.
    pub async fn resource_changed(&self, resource: &Resource) {
        self.catalog.put(resource.clone()).await;
        // A tournament carries more than its definition (a lottery's pseudonym key, a
        // membership list, both in Postgres): read them before answering, so the next
        // registration here already sees them.
        if matches!(resource, Resource::Tournament(_))
            && let Err(e) = self.catalog.reload().await
        {
            tracing::warn!(error = %e, "Could not reload the catalog after a tournament changed.");
        }
        let subject = self.config.nats.spec().resource_changes_subject();
        let what = format!("{} {}", resource.kind().as_str(), resource.id());
        // Best effort: the periodic refresh covers an announcement that did not get out.
        if let Err(e) = self.nats.publish(subject, what.into()).await {
            tracing::warn!(error = %e, "Could not announce a resource change.");
        }
    }

    /// Redis (the live views) could not be read: 503, the client may retry.
    pub fn views_unavailable(&self, e: crate::views::ViewError) -> ApiError {
        tally_kit::warn_once_a_second!(error = %e, "Redis read failed; answering 503.");
        ApiError::Unavailable {
            reason: "views_unavailable",
            retry_after_secs: self.config.retry_after_secs,
        }
    }

    /// A live view from Redis, or, while Redis cannot answer, what `query` makes of Postgres
    /// (through the [`Fallback`](crate::fallback::Fallback): cached under `view` and `scope`,
    /// bounded), saying which.
    pub async fn read_view<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        redis: impl Future<Output = Result<T, crate::views::ViewError>>,
        view: &'static str,
        scope: &[&str],
        query: impl Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Result<(T, crate::fallback::Source), ApiError> {
        self.read_either(redis, self.fallback.read(view, scope, query))
            .await
    }

    /// [`Self::read_view`] for answers cut from a cached fallback answer (a window of the
    /// standings): Redis, else `postgres`.
    pub async fn read_either<T>(
        &self,
        redis: impl Future<Output = Result<T, crate::views::ViewError>>,
        postgres: impl Future<Output = Result<T, Arc<crate::fallback::FallbackError>>>,
    ) -> Result<(T, crate::fallback::Source), ApiError> {
        use crate::fallback::{FallbackError, Source};
        let wait = self.fallback.redis_timeout();
        let redis_error = match tokio::time::timeout(wait, redis).await {
            Ok(Ok(answer)) => return Ok((answer, Source::Redis)),
            Ok(Err(e)) => e,
            Err(_) => crate::views::ViewError::Timeout(wait),
        };
        match postgres.await {
            Ok(answer) => {
                tally_kit::warn_once_a_second!(error = %redis_error, "Redis read failed; answered from Postgres.");
                Ok((answer, Source::Postgres))
            }
            Err(e) => {
                if !matches!(*e, FallbackError::Off) {
                    tally_kit::warn_once_a_second!(error = %e, "The Postgres read failed too.");
                }
                Err(self.views_unavailable(redis_error))
            }
        }
    }

    pub fn store_unavailable(&self, e: crate::store::StoreError) -> ApiError {
        tally_kit::warn_once_a_second!(error = %e, "Postgres failed on an admin route; answering 503.");
        ApiError::Unavailable {
            reason: "store_unavailable",
            retry_after_secs: self.config.retry_after_secs,
        }
    }

    pub fn unavailable(&self, e: PublishError) -> ApiError {
        // Either can hit every request, thousands a second: each is counted (rejections by
        // reason); the log gets one line a second.
        match e {
            // Expected under overload.
            PublishError::Overloaded(_) => tracing::debug!(error = %e, "Shedding a publish."),
            _ => tally_kit::warn_once_a_second!(error = %e, "Publish failed; answering 503."),
        }
        ApiError::Unavailable {
            reason: e.reason(),
            retry_after_secs: self.config.retry_after_secs,
        }
    }
}

/// The id an accepted event is stored under. A registration's is the server's (one per user
/// and tournament: a repeat is the same event, answered `duplicate: true`); a client key's
/// lives in the client namespace, under the event's kind, scope and caller, where no
/// server-made id is; without either, a fresh UUIDv7.
pub(crate) fn event_id(
    event: &Event,
    key: Option<&IdempotencyKey>,
    principal: &Principal,
) -> Option<uuid::Uuid> {
    match event {
        Event::Registration(r) => Some(r.event_id()),
        _ => key.map(|k| k.event_id(event.kind().as_str(), event.scope(), &principal.key_owner())),
    }
}

/// `202 Accepted` with the event id and stream sequence.
pub struct Accepted(pub Stored);

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        (StatusCode::ACCEPTED, Json(accepted_body(&self.0))).into_response()
    }
}

pub fn accepted_body(stored: &Stored) -> serde_json::Value {
    let body = crate::api_doc::AcceptedBody {
        id: stored.id,
        seq: stored.seq,
        duplicate: stored.duplicate,
        receipt: None,
    };
    serde_json::to_value(body).expect("a plain struct serializes")
}

/// The whole HTTP application; tests drive it with `oneshot` or over a socket.
pub fn app(state: AppState) -> Router {
    let config = &state.config;
    let request_timeout = Duration::from_millis(config.request_timeout_ms);
    let retry_after = config.retry_after_secs;
    let (router, doc) = routes::router(config, state.signing.clone()).split_for_parts();
    let doc = Arc::new(doc);
    let cors = cors(&config.cors_origins);
    let router = router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc) }
            }),
        )
        .fallback(|| async {
            ApiError::NotFound {
                field: String::new(),
                message: "no such route".into(),
            }
        })
        // After every route: a known path with another method is a JSON 405 (axum adds Allow).
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(crate::telemetry::track))
                // Every failure is a 503 with a reason, counted and logged (at most once a
                // second) where it arises; a line per failed request would flood the log.
                .layer(tower_http::trace::TraceLayer::new_for_http().on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ))
                // Overload: shed at once with 503 rather than queue without bound.
                .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                    overloaded(e, retry_after)
                }))
                .load_shed()
                .concurrency_limit(config.max_concurrent_requests)
                .timeout(request_timeout),
        );
    // Outermost, so a browser's preflight is answered before anything else.
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
    .with_state(state)
}

/// Cross-origin access for the listed origins only (none: no CORS headers at all, so only
/// same-origin pages such as the live page can call the API from a browser).
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o.trim()) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = %o, "Ignoring an origin that is not a valid header value.");
                None
            }
        })
        .collect();
    if allowed.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST, Method::PUT])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit"),
                HeaderName::from_static("ratelimit-policy"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

fn overloaded(e: BoxError, retry_after_secs: u64) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        return ApiError::RequestTimeout.into_response();
    }
    ApiError::Unavailable {
        reason: "overloaded",
        retry_after_secs,
    }
    .into_response()
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Nats(#[from] tally_kit::nats::NatsError),
    #[error(transparent)]
    Views(#[from] crate::views::ViewError),
    #[error("cannot reach Postgres for the resource catalog: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("cannot apply the Postgres migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot load the resource catalog: {0}")]
    Catalog(#[from] crate::store::StoreError),
    #[error("cannot subscribe to live-view notifications: {0}")]
    Subscribe(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Connects to JetStream (refusing to start without it), declares the streams and serves
/// until `shutdown` resolves; in-flight requests finish their publishes before it returns.
pub async fn serve(
    config: IngestConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (client, js) =
        tally_kit::nats::connect(&config.nats, "tally-ingest", config.max_publishes_in_flight)
            .await?;
    let spec = config.nats.spec();
    let spec_live = spec.clone();
    tally_kit::nats::ensure_streams(&js, &spec).await?;
    let js_media = js.clone();
    let publisher = Publisher::new(
        tally_kit::publisher::Service::Ingest,
        js,
        spec,
        config.publish_timeout(),
        config.max_publishes_in_flight,
        Duration::from_millis(config.publish_slot_wait_ms),
        config.coalescing(),
    );
    let views = Views::connect(&config.redis.url, config.redis.keys()).await?;
    let signing = crate::signature::Signing::new(&config.signing_keys, config.require_signature)
        .map_err(ServeError::Config)?
        .with_replay_store(views.connection(), config.redis.keys());
    // Definitions are read at start and on change; a Postgres outage later leaves the hot
    // path untouched (only the admin API answers 503).
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(config.pg_max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&config.database_url)
        .await?;
    tally_schema::MIGRATOR.run(&pool).await?;
    let changes = client
        .subscribe(spec_live.resource_changes_subject())
        .await
        .map_err(|e| ServeError::Subscribe(e.to_string()))?;
    let keys = Arc::new(
        KeyRing::load(
            pool.clone(),
            Duration::from_millis(config.key_miss_reload_ms),
        )
        .await?,
    );
    let reloading_keys = tokio::spawn(
        keys.clone()
            .reload_forever(Duration::from_secs(config.key_refresh_secs.max(1))),
    );
    let verifier = Arc::new(
        crate::identity::Verifier::new(config.tokens.clone())
            .await
            .map_err(ServeError::Config)?,
    );
    let refreshing_jwks = tokio::spawn(verifier.clone().refresh_forever());
    let catalog = Catalog::load(pool).await?;
    let following = tokio::spawn(
        catalog
            .clone()
            .follow(changes, Duration::from_secs(config.catalog_refresh_secs)),
    );
    let redis = Some((views.connection(), config.redis.keys()));
    let limiter = Arc::new(RateLimiter::new(
        &config.rate_limits,
        config.rate_limit_store,
        redis,
    ));
    let sweeping = tokio::spawn(crate::rate_limit::sweep_forever(
        limiter.clone(),
        Duration::from_secs(10),
    ));
    let media = tally_kit::nats::media_store(&js_media, &spec_live).await?;
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let parts = Parts {
        publisher,
        views,
        catalog,
        limiter,
        media,
        signing: Arc::new(signing),
        keys,
        verifier,
        nats: client.clone(),
    };
    let state = AppState::new(config, parts, closing);
    let notifications = client
        .subscribe(spec_live.live_subjects())
        .await
        .map_err(|e| ServeError::Subscribe(e.to_string()))?;
    let live = tokio::spawn(state.live.clone().run(notifications, spec_live));
    tracing::info!(addr = %listener.local_addr()?, "Ingest listening.");
    // Live streams never end by themselves; tell them to, so in-flight requests can drain.
    let shutdown = async move {
        shutdown.await;
        let _ = closing_tx.send(true);
    };
    let header_timeout = Duration::from_millis(state.config.header_timeout_ms);
    crate::connections::serve(listener, app(state), header_timeout, shutdown).await;
    live.abort();
    following.abort();
    sweeping.abort();
    reloading_keys.abort();
    refreshing_jwks.abort();
    let _ = client.flush().await;
    tracing::info!("Ingest stopped.");
    Ok(())
}
