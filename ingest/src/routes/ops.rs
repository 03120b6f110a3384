//! Health, readiness and metrics.

use crate::server::AppState;
use axum::Json;
use axum::extract::{Query, State};
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
#[utoipa::path(get, path = "/healthz", tag = "ops", params(HealthQuery),
    responses((status = 200, description = "ok (text), or JSON with `details=true`",
            content((String = "text/plain"), (serde_json::Value = "application/json"))),
        (status = 400, description = "Malformed query", body = crate::api_doc::ErrorResponse)))]
async fn health(
    State(state): State<AppState>,
    query: Result<Query<HealthQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, crate::error::ApiError> {
    let Query(query) = query.map_err(crate::extract::malformed_query)?;
    if !query.details.unwrap_or(false) {
        return Ok(tally_kit::ops::HEALTHY.into_response());
    }
    let mut streams = serde_json::Map::new();
    let mut transports = serde_json::Map::new();
    for ((view, transport), n) in state.streams.open() {
        let count = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_u64()).unwrap_or(0);
        let by_view = count(streams.get(view)) + n as u64;
        streams.insert(view.to_owned(), by_view.into());
        let by_transport = count(transports.get(transport.as_str())) + n as u64;
        transports.insert(transport.as_str().to_owned(), by_transport.into());
    }
    let followers: serde_json::Map<String, serde_json::Value> = state
        .channels
        .followers()
        .await
        .into_iter()
        .map(|(channel, n)| (channel, n.into()))
        .collect();
    Ok(Json(serde_json::json!({
        "status": tally_kit::ops::HEALTHY,
        "live_streams": streams,
        "transports": transports,
        "channel_followers": followers,
    }))
    .into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// Answer JSON with the open live streams by view and transport, and each followed
    /// channel's followers.
    details: Option<bool>,
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
