//! The application: shared state, the router with its layers, and `serve`.

use crate::config::IngestConfig;
use crate::error::ApiError;
use crate::live::Live;
use crate::publisher::{PublishError, Publisher, Stored};
use crate::routes;
use crate::views::Views;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Json, Router};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tally_schema::ids::IdempotencyKey;
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
        publisher: Publisher,
        views: Views,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let live = Live::new(views.clone(), closing);
        Self(Arc::new(Inner {
            config,
            publisher,
            views,
            live,
        }))
    }

    /// Wraps an event in its envelope, publishes it and waits for JetStream's ack. A client
    /// key becomes the event id and the JetStream message id, so a retry is stored once.
    pub async fn accept(
        &self,
        event: Event,
        key: Option<IdempotencyKey>,
    ) -> Result<Stored, ApiError> {
        let dedup = key.is_some();
        let envelope = match key {
            Some(key) => Envelope::keyed(key.event_id(), event),
            None => Envelope::new(event),
        };
        self.publisher
            .publish(&envelope, dedup)
            .await
            .map_err(|e| self.unavailable(e))
    }

    pub fn unavailable(&self, e: PublishError) -> ApiError {
        tracing::warn!(error = %e, "Publish failed; answering 503.");
        ApiError::Unavailable {
            reason: e.reason(),
            retry_after_secs: self.config.retry_after_secs,
        }
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
    serde_json::json!({ "id": stored.id, "seq": stored.seq, "duplicate": stored.duplicate })
}

/// The whole HTTP application; tests drive it with `oneshot` or over a socket.
pub fn app(state: AppState) -> Router {
    let config = &state.config;
    let request_timeout = Duration::from_millis(config.request_timeout_ms);
    let retry_after = config.retry_after_secs;
    routes::router(config)
        .fallback(|| async {
            ApiError::NotFound {
                field: String::new(),
                message: "no such route".into(),
            }
        })
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(crate::telemetry::track))
                .layer(tower_http::trace::TraceLayer::new_for_http())
                // Overload: shed at once with 503 rather than queue without bound.
                .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                    overloaded(e, retry_after)
                }))
                .load_shed()
                .concurrency_limit(config.max_concurrent_requests)
                .timeout(request_timeout),
        )
        .with_state(state)
}

fn overloaded(e: BoxError, retry_after_secs: u64) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        let body = serde_json::json!({"error": {"code": "request_timeout", "message": "the request took too long"}});
        return (StatusCode::REQUEST_TIMEOUT, Json(body)).into_response();
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
    #[error("cannot subscribe to live-view notifications: {0}")]
    Subscribe(String),
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
    let publisher = Publisher::new(client.clone(), js, spec, config.publish_timeout());
    let views = Views::connect(&config.redis.url, config.redis.keys()).await?;
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let state = AppState::new(config, publisher, views, closing);
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
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    live.abort();
    let _ = client.flush().await;
    tracing::info!("Ingest stopped.");
    Ok(())
}
