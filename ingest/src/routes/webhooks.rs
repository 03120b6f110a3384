//! Webhook endpoints (Standard Webhooks), managed by admins: register (the secret is shown
//! once), list, read, delete, rotate the secret (both sign during the overlap), disable and
//! re-enable, read the attempt log, replay one message or everything since a time. The
//! workers deliver (`workers/src/webhooks.rs`); ingest only writes what an operator asks.

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::server::AppState;
use crate::store;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use tally_schema::api::FieldError;
use tally_schema::webhooks::{
    AttemptView, EndpointBody, EndpointSecret, EndpointView, ReplayBody, ReplayView, RotateBody,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, delete))
        .routes(routes!(rotate))
        .routes(routes!(enable))
        .routes(routes!(disable))
        .routes(routes!(attempts))
        .routes(routes!(replay))
}

/// A new secret: `whsec_` and the base64 of 32 random bytes (the specification asks for 24
/// to 64).
fn new_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// An endpoint named in a path: ids are made by the server (`ep_` and 32 hex digits), so
/// anything else names no endpoint.
fn endpoint_id(id: &str) -> Result<&str, ApiError> {
    let ok =
        id.len() == 35 && id.starts_with("ep_") && id[3..].bytes().all(|b| b.is_ascii_hexdigit());
    match ok {
        true => Ok(id),
        false => Err(not_found(id)),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        field: "endpoint".into(),
        message: format!("no such webhook endpoint: '{id}'"),
    }
}

async fn one(state: &AppState, id: &str) -> Result<EndpointView, ApiError> {
    store::webhook_endpoints(&state.pool, Some(id))
        .await
        .map_err(|e| state.store_unavailable(e))?
        .into_iter()
        .next()
        .ok_or_else(|| not_found(id))
}

/// Every endpoint, with its state and how many deliveries wait or failed.
#[utoipa::path(get, path = "/admin/v1/webhooks", tag = "admin", operation_id = "list_webhooks",
    security(("admin_key" = [])), responses(
        (status = 200, description = "The endpoints, oldest first", body = Vec<EndpointView>),
        crate::api_doc::KeyRefusals,
    ))]
#[tracing::instrument(name = "webhooks_list", skip_all)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    caller.require(Role::Viewer)?;
    let all = store::webhook_endpoints(&state.pool, None)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    Ok(Json(all))
}

/// Registers an endpoint: where to deliver and which event types (none listed: all). The
/// answer holds its secret, shown this once.
#[utoipa::path(post, path = "/admin/v1/webhooks", tag = "admin", operation_id = "create_webhook",
    security(("admin_key" = [])), request_body = EndpointBody, responses(
        (status = 201, description = "Registered; the secret is shown this once", body = EndpointSecret),
        (status = 409, description = "As many endpoints as TALLY_WEBHOOK_MAX_ENDPOINTS allows (too_many_endpoints)", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "A bad URL or event type, named", body = crate::api_doc::ErrorResponse),
        crate::api_doc::KeyRefusals,
        crate::api_doc::BodyRefusals,
    ))]
#[tracing::instrument(name = "webhooks_create", skip_all)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<EndpointBody>,
) -> Result<(StatusCode, Json<EndpointSecret>), ApiError> {
    caller.require(Role::Admin)?;
    let unavailable = |e| state.store_unavailable(e);
    let existing = store::webhook_endpoints(&state.pool, None)
        .await
        .map_err(unavailable)?
        .len();
    let most = state.config.webhook_max_endpoints;
    if existing >= most {
        return Err(ApiError::Conflict {
            code: "too_many_endpoints",
            message: format!("{existing} endpoints exist; at most {most} may (delete one first)"),
        });
    }
    let id = format!("ep_{}", uuid::Uuid::now_v7().simple());
    let secret = new_secret();
    store::create_webhook_endpoint(&state.pool, &id, &body, &secret)
        .await
        .map_err(unavailable)?;
    tracing::info!(endpoint = %id, url = %body.url, "Webhook endpoint registered.");
    let endpoint = one(&state, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointSecret { endpoint, secret }),
    ))
}

/// One endpoint.
#[utoipa::path(get, path = "/admin/v1/webhooks/{endpoint}", tag = "admin", operation_id = "get_webhook",
    security(("admin_key" = [])), params(("endpoint" = String, Path)), responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 404, description = "No such endpoint", body = crate::api_doc::ErrorResponse),
        crate::api_doc::KeyRefusals,
    ))]
async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(one(&state, endpoint_id(&id)?).await?))
}

/// Deletes an endpoint with its deliveries and attempt log.
#[utoipa::path(delete, path = "/admin/v1/webhooks/{endpoint}", tag = "admin", operation_id = "delete_webhook",
    security(("admin_key" = [])), params(("endpoint" = String, Path)), responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint", body = crate::api_doc::ErrorResponse),
        crate::api_doc::KeyRefusals,
    ))]
#[tracing::instrument(name = "webhooks_delete", skip_all)]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(&id)?;
    match store::delete_webhook_endpoint(&state.pool, id)
        .await
        .map_err(|e| state.store_unavailable(e))?
    {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(not_found(id)),
    }
}

/// A new secret, shown this once; the old one signs beside it for `overlap_secs` (default a
/// day), so receivers can switch without missing a delivery.
#[utoipa::path(post, path = "/admin/v1/webhooks/{endpoint}/rotate", tag = "admin", operation_id = "rotate_webhook_secret",
    security(("admin_key" = [])), params(("endpoint" = String, Path)), request_body = RotateBody, responses(
        (status = 200, description = "The new secret, shown this once", body = EndpointSecret),
        (status = 404, description = "No such endpoint", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "An overlap past a week", body = crate::api_doc::ErrorResponse),
        crate::api_doc::KeyRefusals,
        crate::api_doc::BodyRefusals,
    ))]
#[tracing::instrument(name = "webhooks_rotate", skip_all)]
async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RotateBody>,
) -> Result<Json<EndpointSecret>, ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(&id)?;
    let secret = new_secret();
    let exists = store::rotate_webhook_secret(&state.pool, id, &secret, body.overlap_secs())
        .await
        .map_err(|e| state.store_unavailable(e))?;
    if !exists {
        return Err(not_found(id));
    }
    tracing::info!(endpoint = %id, overlap_secs = body.overlap_secs(), "Webhook secret rotated.");
    let endpoint = one(&state, id).await?;
    Ok(Json(EndpointSecret { endpoint, secret }))
}

async fn set_enabled(
    state: &AppState,
    caller: &Caller,
    id: &str,
    enabled: bool,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(id)?;
    let exists = store::enable_webhook_endpoint(&state.pool, id, enabled)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    if !exists {
        return Err(not_found(id));
    }
    tracing::info!(endpoint = %id, enabled, "Webhook endpoint switched.");
    Ok(Json(one(state, id).await?))
}

/// Enables an endpoint with a clean slate: what waits for it goes out at once.
#[utoipa::path(post, path = "/admin/v1/webhooks/{endpoint}/enable", tag = "admin", operation_id = "enable_webhook",
    security(("admin_key" = [])), params(("endpoint" = String, Path)), responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 404, description = "No such endpoint", body = crate::api_doc::ErrorResponse),
        crate::api_doc::KeyRefusals,
    ))]
async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    set_enabled(&state, &caller, &id, true).await
}

/// Disables an endpoint: nothing is sent to it, and what it subscribes to waits for it.
#[utoipa::path(post, path = "/admin/v1/webhooks/{endpoint}/disable", tag = "admin", operation_id = "disable_webhook",
    security(("admin_key" = [])), params(("endpoint" = String, Path)), responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 404, description = "No such endpoint", body = crate::api_doc::ErrorResponse),
        crate::api_doc::KeyRefusals,
    ))]
async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    set_enabled(&state, &caller, &id, false).await
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptsQuery {
    /// At most this many, newest first (1 to 1000, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// The endpoint's newest delivery attempts: status, latency, error, the answer's first bytes.
#[utoipa::path(get, path = "/admin/v1/webhooks/{endpoint}/attempts", tag = "admin", operation_id = "webhook_attempts",
    security(("admin_key" = [])), params(("endpoint" = String, Path), AttemptsQuery), responses(
        (status = 200, description = "Attempts, newest first", body = Vec<AttemptView>),
        (status = 400, description = "A malformed query string", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such endpoint", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "A bad limit", body = crate::api_doc::ErrorResponse),
        crate::api_doc::KeyRefusals,
    ))]
async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<AttemptsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AttemptView>>, ApiError> {
    caller.require(Role::Viewer)?;
    let id = endpoint_id(&id)?;
    let Query(query) = query.map_err(crate::extract::malformed_query)?;
    let limit = match query.limit.as_deref().map(str::parse::<i64>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return Err(FieldError::invalid(
                "out_of_range",
                "limit",
                "must be a whole number from 1 to 1000",
            )
            .into());
        }
    };
    one(&state, id).await?;
    let log = store::webhook_attempts(&state.pool, id, limit)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    Ok(Json(log))
}

/// Sends again: one message (`{"message": "msg_…"}`), or every message since a time that
/// this endpoint missed or failed (`{"since": …}`; with `include_delivered`, every one),
/// at most TALLY_WEBHOOK_REPLAY_MAX messages per call (`continue_from` says where to go on).
#[utoipa::path(post, path = "/admin/v1/webhooks/{endpoint}/replay", tag = "admin", operation_id = "replay_webhooks",
    security(("admin_key" = [])), params(("endpoint" = String, Path)), request_body = ReplayBody, responses(
        (status = 202, description = "Queued again", body = ReplayView),
        (status = 404, description = "No such endpoint or message", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "Neither or both of message and since", body = crate::api_doc::ErrorResponse),
        crate::api_doc::KeyRefusals,
        crate::api_doc::BodyRefusals,
    ))]
#[tracing::instrument(name = "webhooks_replay", skip_all)]
async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReplayBody>,
) -> Result<(StatusCode, Json<ReplayView>), ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(&id)?;
    one(&state, id).await?;
    let unavailable = |e| state.store_unavailable(e);
    let view = match (&body.message, body.since) {
        (Some(message), _) => {
            let queued = store::replay_webhook_message(&state.pool, id, message)
                .await
                .map_err(unavailable)?;
            if !queued {
                return Err(ApiError::NotFound {
                    field: "message".into(),
                    message: format!("no message '{message}' (or it is being sent right now)"),
                });
            }
            ReplayView {
                replayed: 1,
                continue_from: None,
            }
        }
        (None, Some(since)) => {
            let max = state.config.webhook_replay_max.max(1) as i64;
            store::replay_webhooks_since(&state.pool, id, since, body.include_delivered, max)
                .await
                .map_err(unavailable)?
        }
        (None, None) => {
            let missing = "name a message or a time to replay from (since)";
            return Err(FieldError::invalid("missing_field", "message", missing).into());
        }
    };
    tracing::info!(endpoint = %id, replayed = view.replayed, "Webhooks replayed.");
    Ok((StatusCode::ACCEPTED, Json(view)))
}
