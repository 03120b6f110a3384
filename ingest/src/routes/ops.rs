//! Health, readiness and metrics.

use crate::server::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::time::Duration;

pub fn router() -> Router<AppState> {
    tally_kit::ops::router().route("/readyz", get(ready))
}

/// Ready when NATS is connected and the event stream answers.
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
