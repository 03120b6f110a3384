//! The admin API: create, list, read, change, open and close polls, arenas and tournaments.
//! Every route needs a key (`Authorization: Bearer`); writes need the admin role. A write is
//! stored in Postgres, made visible to this instance at once and announced on NATS so every
//! other ingest reloads its catalog.

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::extract::JsonBytes;
use crate::resource_store::{self, Stored};
use crate::server::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use tally_schema::api::FieldError;
use tally_schema::resources::{Resource, ResourceKind};

pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for kind in ResourceKind::ALL {
        let base = format!("/admin/v1/{}", kind.plural());
        router = router
            .route(
                &base,
                get(move |s, c| list(kind, s, c)).post(move |s, c, b| create(kind, s, c, b)),
            )
            .route(
                &format!("{base}/{{id}}"),
                get(move |s, c, p| read(kind, s, c, p))
                    .put(move |s, c, p, b| replace(kind, s, c, p, b)),
            )
            .route(
                &format!("{base}/{{id}}/open"),
                post(move |s, c, p| set_open(kind, true, s, c, p)),
            )
            .route(
                &format!("{base}/{{id}}/close"),
                post(move |s, c, p| set_open(kind, false, s, c, p)),
            );
    }
    router
}

fn body(kind: ResourceKind, stored: &Stored) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "kind": kind.as_str(),
        "version": stored.version,
        "definition": stored.definition,
    }))
}

fn not_found(kind: ResourceKind, id: &str) -> ApiError {
    ApiError::NotFound {
        field: "id".into(),
        message: format!("no such {}: '{id}'", kind.as_str()),
    }
}

async fn list(
    kind: ResourceKind,
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let all = resource_store::list(&state.pool, kind)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    let items: Vec<_> = all.iter().map(|s| body(kind, s).0).collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn read(
    kind: ResourceKind,
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let stored = resource_store::get(&state.pool, kind, &id)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    stored
        .map(|s| body(kind, &s))
        .ok_or_else(|| not_found(kind, &id))
}

#[tracing::instrument(name = "admin_create", skip_all, fields(kind = kind.as_str()))]
async fn create(
    kind: ResourceKind,
    State(state): State<AppState>,
    caller: Caller,
    JsonBytes(bytes): JsonBytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Role::Admin)?;
    let resource = Resource::decode(kind, &bytes)?;
    let stored = resource_store::create(&state.pool, &resource)
        .await
        .map_err(|e| state.store_unavailable(e))?
        .ok_or_else(|| ApiError::Conflict {
            code: "already_exists",
            message: format!(
                "{} '{}' exists; change it with PUT",
                kind.as_str(),
                resource.id()
            ),
        })?;
    state.resource_changed(&stored.definition).await;
    Ok((StatusCode::CREATED, body(kind, &stored)))
}

#[tracing::instrument(name = "admin_replace", skip_all, fields(kind = kind.as_str()))]
async fn replace(
    kind: ResourceKind,
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBytes(bytes): JsonBytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Admin)?;
    let next = Resource::decode(kind, &bytes)?;
    if next.id() != id {
        return Err(
            FieldError::invalid("invalid_value", "id", "must equal the id in the path").into(),
        );
    }
    let changed = resource_store::update(&state.pool, kind, &id, |old| {
        next.check_change_from(&old).map(|()| next)
    })
    .await
    .map_err(|e| state.store_unavailable(e))?
    .ok_or_else(|| not_found(kind, &id))??;
    state.resource_changed(&changed.definition).await;
    Ok(body(kind, &changed))
}

#[tracing::instrument(name = "admin_open_close", skip_all, fields(kind = kind.as_str(), open))]
async fn set_open(
    kind: ResourceKind,
    open: bool,
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Admin)?;
    let now = chrono::Utc::now();
    let changed = resource_store::update(&state.pool, kind, &id, |old| {
        Ok::<_, ApiError>(old.with_window_state(open, now))
    })
    .await
    .map_err(|e| state.store_unavailable(e))?
    .ok_or_else(|| not_found(kind, &id))??;
    state.resource_changed(&changed.definition).await;
    Ok(body(kind, &changed))
}
