//! Health, readiness and metrics.

use crate::server::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(ready))
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "ok", content_type = "text/plain", body = String)))]
async fn health() -> &'static str {
    tally_kit::ops::HEALTHY
}

/// Prometheus metrics, text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics() -> impl IntoResponse {
    tally_kit::ops::render_metrics().await
}

/// Ready when NATS is connected and the event stream answers.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready"), (status = 503, description = "JetStream unreachable")))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let publisher = &state.publisher;
    let stream_ok = publisher.is_connected()
        && tokio::time::timeout(
            Duration::from_secs(1),
            publisher
                .jetstream()
                .get_stream_no_info(&publisher.spec().name),
        )
        .await
        .is_ok_and(|r| r.is_ok());
    if stream_ok {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"})))
    } else {
        let body = serde_json::json!({"status": "not_ready", "reason": "JetStream unreachable"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}
