//! Operational routes every service serves: liveness and Prometheus metrics.

use axum::{Router, http::header, response::IntoResponse, routing::get};

/// `/healthz` (the process answers) and `/metrics` (Prometheus text format).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { HEALTHY }))
        .route("/metrics", get(render_metrics))
}

/// The body of `/healthz`.
pub const HEALTHY: &str = "ok";

/// `/metrics`: the process's Prometheus registry.
pub async fn render_metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics().render(),
    )
}

/// Serves [`router`] alone on `addr`, for services without an HTTP API of their own.
pub async fn serve_ops(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router::<()>())
        .with_graceful_shutdown(shutdown)
        .await
}
