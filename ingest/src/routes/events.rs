//! `POST /v1/events`: many events in one request, a result per item. Items are validated one
//! by one (a bad item fails alone, nothing of it is published) and the good ones are
//! published concurrently. 202 when every item was stored, 207 otherwise.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ClientIp, JsonBody};
use crate::server::{AppState, accepted_body};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use tally_schema::api::{BatchBody, decode_batch_item};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(batch))
}

/// Up to 1000 events of any kinds; each is checked and published on its own.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = BatchBody,
    responses(
        (status = 202, description = "Every item stored: {accepted, rejected, results[]}"),
        (status = 207, description = "Some items refused; each result has its status and error"),
        (status = 400, description = "Malformed JSON", body = crate::api_doc::ErrorResponse),
        (status = 413, description = "Body too large", body = crate::api_doc::ErrorResponse),
        (status = 415, description = "Not application/json", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "Not a list of 1 to 1000 events", body = crate::api_doc::ErrorResponse),
    ))]
async fn batch(
    State(state): State<AppState>,
    client: ClientIp,
    principal: Principal,
    JsonBody(body): JsonBody<BatchBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let principal = &principal;
    let items = body.events.iter().enumerate().map(|(index, raw)| {
        let state = state.clone();
        async move {
            let outcome = match decode_batch_item(raw) {
                Err(e) => Err(ApiError::from(e)),
                Ok((event, key)) => state.accept(event, key, client, principal).await,
            };
            match outcome {
                Ok(stored) => {
                    let mut result = accepted_body(&stored);
                    result["index"] = index.into();
                    result["status"] = 202.into();
                    (true, result)
                }
                Err(e) => {
                    let result = serde_json::json!({
                        "index": index,
                        "status": e.status().as_u16(),
                        "error": e.body(),
                    });
                    (false, result)
                }
            }
        }
    });
    let outcomes = futures::future::join_all(items).await;
    let accepted = outcomes.iter().filter(|(ok, _)| *ok).count();
    let rejected = outcomes.len() - accepted;
    if rejected > 0 {
        metrics::counter!("tally_ingest_rejections_total", "reason" => "batch_item")
            .increment(rejected as u64);
    }
    metrics::histogram!("tally_ingest_batch_size_events").record(outcomes.len() as f64);
    let status = if rejected == 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::MULTI_STATUS
    };
    let results: Vec<_> = outcomes.into_iter().map(|(_, r)| r).collect();
    Ok((
        status,
        Json(serde_json::json!({ "accepted": accepted, "rejected": rejected, "results": results })),
    ))
}
