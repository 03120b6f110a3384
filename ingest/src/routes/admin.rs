//! The admin API: create, list, read, change, open and close polls, arenas, tournaments and
//! channels.
//! Every route needs a key (`Authorization: Bearer`); writes need the admin role. A write is
//! stored in Postgres, made visible to this instance at once and announced on NATS so every
//! other ingest reloads its catalog.

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::extract::{JsonBytes, Path};
use crate::server::AppState;
use crate::store::{self, Stored};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use tally_schema::api::FieldError;
use tally_schema::resources::{Resource, ResourceKind};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(polls::router())
        .merge(arenas::router())
        .merge(tournaments::router())
        .merge(channels::router())
        .merge(members::router())
        .routes(routes!(jobs))
}

/// Query parameters, taken as text so a bad value gets our field-level error.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this state.
    #[param(inline, value_type = JobStatus, required = false)]
    status: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// The states of an apalis job.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only describes the parameter
enum JobStatus {
    Pending,
    Queued,
    Running,
    Done,
    Failed,
    Killed,
}

const JOB_STATUSES: [&str; 6] = ["Pending", "Queued", "Running", "Done", "Failed", "Killed"];

/// The workers' apalis jobs (draws, and later media): a count per type and state, and the
/// newest jobs with their attempts and last result — the operators' job view.
#[utoipa::path(get, path = "/admin/v1/jobs", tag = "admin", security(("admin_key" = [])),
    params(JobQuery), responses(
        (status = 200, description = "Counts per type and state, and the newest jobs", body = serde_json::Value),
        (status = 400, description = "A malformed query string", body = crate::api_doc::ErrorResponse),
        (status = 401, description = "No key", body = crate::api_doc::ErrorResponse),
        (status = 403, description = "Wrong key", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "A bad query parameter, named", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "Postgres unreachable", body = crate::api_doc::ErrorResponse),
    ))]
async fn jobs(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<JobQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let axum::extract::Query(query) = query.map_err(crate::extract::malformed_query)?;
    let limit = match query.limit.as_deref().map(str::parse::<i64>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return Err(FieldError::invalid(
                "invalid_value",
                "limit",
                "must be a whole number from 1 to 1000",
            )
            .into());
        }
    };
    if let Some(status) = query.status.as_deref()
        && !JOB_STATUSES.contains(&status)
    {
        return Err(FieldError::invalid(
            "invalid_value",
            "status",
            format!("must be one of {}", JOB_STATUSES.join(", ")),
        )
        .into());
    }
    let view = store::jobs(&state.pool, query.status.as_deref(), limit)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    Ok(Json(view))
}

/// The six routes of one kind, each documented with that kind's definition as its body.
macro_rules! admin_routes {
    ($module:ident, $kind:expr, $definition:ty, $id:ty,
     $base:literal, $one:literal, $open:literal, $close:literal) => {
        mod $module {
            use super::*;
            type Reply = Result<Json<serde_json::Value>, ApiError>;

            /// Every definition of this kind.
            #[utoipa::path(get, path = $base, tag = "admin", operation_id = concat!("list_", stringify!($module)), security(("admin_key" = [])),
                responses(crate::api_doc::AdminResponses))]
            pub async fn list(s: State<AppState>, c: Caller) -> Reply {
                super::list($kind, s, c).await
            }

            /// Creates a definition (201; 409 if the id exists).
            #[utoipa::path(post, path = $base, tag = "admin", operation_id = concat!("create_", stringify!($module)), security(("admin_key" = [])),
                request_body = $definition, responses(crate::api_doc::AdminBodyResponses))]
            pub async fn create(
                s: State<AppState>,
                c: Caller,
                b: JsonBytes,
            ) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
                super::create($kind, s, c, b).await
            }

            /// One definition and its version.
            #[utoipa::path(get, path = $one, tag = "admin", operation_id = concat!("read_", stringify!($module)), security(("admin_key" = [])),
                params(("id" = $id, Path)), responses(crate::api_doc::AdminResponses))]
            pub async fn read(s: State<AppState>, c: Caller, p: Path<String>) -> Reply {
                super::read($kind, s, c, p).await
            }

            /// Replaces a definition (the id in the body must match).
            #[utoipa::path(put, path = $one, tag = "admin", operation_id = concat!("replace_", stringify!($module)), security(("admin_key" = [])),
                params(("id" = $id, Path)), request_body = $definition,
                responses(crate::api_doc::AdminBodyResponses))]
            pub async fn replace(
                s: State<AppState>,
                c: Caller,
                p: Path<String>,
                b: JsonBytes,
            ) -> Reply {
                super::replace($kind, s, c, p, b).await
            }

            /// Opens the window now.
            #[utoipa::path(post, path = $open, tag = "admin", operation_id = concat!("open_", stringify!($module)), security(("admin_key" = [])),
                params(("id" = $id, Path)), responses(crate::api_doc::AdminResponses))]
            pub async fn open(s: State<AppState>, c: Caller, p: Path<String>) -> Reply {
                super::set_open($kind, true, s, c, p).await
            }

            /// Closes the window now.
            #[utoipa::path(post, path = $close, tag = "admin", operation_id = concat!("close_", stringify!($module)), security(("admin_key" = [])),
                params(("id" = $id, Path)), responses(crate::api_doc::AdminResponses))]
            pub async fn close(s: State<AppState>, c: Caller, p: Path<String>) -> Reply {
                super::set_open($kind, false, s, c, p).await
            }

            pub fn router() -> OpenApiRouter<AppState> {
                OpenApiRouter::new()
                    .routes(routes!(list, create))
                    .routes(routes!(read, replace))
                    .routes(routes!(open))
                    .routes(routes!(close))
            }
        }
    };
}

admin_routes!(
    polls,
    ResourceKind::Poll,
    tally_schema::resources::Poll,
    tally_schema::ids::PollId,
    "/admin/v1/polls",
    "/admin/v1/polls/{id}",
    "/admin/v1/polls/{id}/open",
    "/admin/v1/polls/{id}/close"
);
admin_routes!(
    arenas,
    ResourceKind::Arena,
    tally_schema::resources::Arena,
    tally_schema::ids::ArenaId,
    "/admin/v1/arenas",
    "/admin/v1/arenas/{id}",
    "/admin/v1/arenas/{id}/open",
    "/admin/v1/arenas/{id}/close"
);
admin_routes!(
    tournaments,
    ResourceKind::Tournament,
    tally_schema::resources::Tournament,
    tally_schema::ids::TournamentId,
    "/admin/v1/tournaments",
    "/admin/v1/tournaments/{id}",
    "/admin/v1/tournaments/{id}/open",
    "/admin/v1/tournaments/{id}/close"
);

admin_routes!(
    channels,
    ResourceKind::Channel,
    tally_schema::channels::Channel,
    tally_schema::ids::ChannelId,
    "/admin/v1/channels",
    "/admin/v1/channels/{id}",
    "/admin/v1/channels/{id}/open",
    "/admin/v1/channels/{id}/close"
);

fn body(kind: ResourceKind, stored: &Stored) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "kind": kind.as_str(),
        "version": stored.version,
        "definition": stored.definition,
    }))
}

/// An id no definition can have (it would not decode) is a 404 naming it, before Postgres
/// is asked (which would refuse some of them, e.g. with a NUL byte, as an error).
fn valid_id(kind: ResourceKind, id: &str) -> Result<(), ApiError> {
    use tally_schema::ids::{ArenaId, ChannelId, PollId, TournamentId};
    let checked = match kind {
        ResourceKind::Poll => PollId::try_from(id).map(drop),
        ResourceKind::Arena => ArenaId::try_from(id).map(drop),
        ResourceKind::Tournament => TournamentId::try_from(id).map(drop),
        ResourceKind::Channel => ChannelId::try_from(id).map(drop),
    };
    checked.map_err(|e| ApiError::NotFound {
        field: "id".into(),
        message: format!("no such {}: the id {e}", kind.as_str()),
    })
}

/// A channel's stream follows its definition (a changed retention applies at once).
async fn ensure_channel_stream(state: &AppState, resource: &Resource) -> Result<(), ApiError> {
    let Resource::Channel(channel) = resource else {
        return Ok(());
    };
    tally_kit::channels::ensure(state.channels.jetstream(), state.channels.spec(), channel)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "Cannot declare a channel's stream.");
            ApiError::Unavailable {
                reason: "broker_refused",
                retry_after_secs: state.config.retry_after_secs,
            }
        })
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
    let all = store::list(&state.pool, kind)
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
    valid_id(kind, &id)?;
    let stored = store::get(&state.pool, kind, &id)
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
    let stored = store::create(&state.pool, &resource)
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
    store::ensure_lottery_commitment(&state.pool, &stored.definition)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    ensure_channel_stream(&state, &stored.definition).await?;
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
    valid_id(kind, &id)?;
    let next = Resource::decode(kind, &bytes)?;
    if next.id() != id {
        return Err(
            FieldError::invalid("invalid_value", "id", "must equal the id in the path").into(),
        );
    }
    let now = chrono::Utc::now();
    let changed = store::update(&state.pool, kind, &id, |old| {
        next.check_change_from(&old, now).map(|()| next)
    })
    .await
    .map_err(|e| state.store_unavailable(e))?
    .ok_or_else(|| not_found(kind, &id))??;
    store::ensure_lottery_commitment(&state.pool, &changed.definition)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    ensure_channel_stream(&state, &changed.definition).await?;
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
    valid_id(kind, &id)?;
    let now = chrono::Utc::now();
    let changed = store::update(&state.pool, kind, &id, |old| {
        let next = old.clone().with_window_state(open, now);
        next.check_change_from(&old, now).map(|()| next)
    })
    .await
    .map_err(|e| state.store_unavailable(e))?
    .ok_or_else(|| not_found(kind, &id))??;
    store::ensure_lottery_commitment(&state.pool, &changed.definition)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    ensure_channel_stream(&state, &changed.definition).await?;
    state.resource_changed(&changed.definition).await;
    Ok(body(kind, &changed))
}

/// A tournament's priority-group membership list: who is in which group. A registration's
/// group comes from it (or from the user's token, or a site key), never from its body.
pub mod members {
    use super::*;
    use crate::extract::{JsonBody, scope};
    use tally_schema::api::MembersBody;
    use tally_schema::ids::{TournamentId, UserId};

    pub fn router() -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(add, counts))
            .routes(routes!(remove))
    }

    fn tournament(state: &AppState, raw: String) -> Result<TournamentId, ApiError> {
        let id: TournamentId = scope("tournament", raw)?;
        state.catalog.snapshot().tournament(id.as_str())?;
        Ok(id)
    }

    /// Adds members (up to 5,000 a call), or moves them to another group.
    #[utoipa::path(post, path = "/admin/v1/tournaments/{tournament}/members", tag = "admin",
        security(("admin_key" = [])), params(("tournament" = TournamentId, Path)),
        request_body = MembersBody, responses(
            (status = 200, description = "Stored: {stored, groups: {group: members}}", body = serde_json::Value),
            (status = 400, description = "Malformed JSON", body = crate::api_doc::ErrorResponse),
            (status = 401, description = "No key", body = crate::api_doc::ErrorResponse),
            (status = 403, description = "Not an admin key", body = crate::api_doc::ErrorResponse),
            (status = 404, description = "No such tournament", body = crate::api_doc::ErrorResponse),
            (status = 413, description = "Body too large", body = crate::api_doc::ErrorResponse),
            (status = 415, description = "Not application/json", body = crate::api_doc::ErrorResponse),
            (status = 422, description = "A member or group that is not valid, named", body = crate::api_doc::ErrorResponse),
            (status = 503, description = "Postgres unreachable", body = crate::api_doc::ErrorResponse),
        ))]
    async fn add(
        State(state): State<AppState>,
        caller: Caller,
        Path(raw): Path<String>,
        JsonBody(body): JsonBody<MembersBody>,
    ) -> Result<Json<serde_json::Value>, ApiError> {
        caller.require(Role::Admin)?;
        let id = tournament(&state, raw)?;
        let snapshot = state.catalog.snapshot();
        let definition = snapshot.tournament(id.as_str())?;
        if let Some(i) = body
            .members
            .iter()
            .position(|m| !definition.groups.iter().any(|g| g.id == m.group))
        {
            return Err(FieldError::invalid(
                "unknown_member",
                format!("members[{i}].group"),
                format!(
                    "'{}' is not a priority group of this tournament",
                    body.members[i].group
                ),
            )
            .into());
        }
        let stored = store::upsert_members(&state.pool, id.as_str(), &body.members)
            .await
            .map_err(|e| state.store_unavailable(e))?;
        // Every instance reads the list again before its next registration.
        let definition = Resource::Tournament(definition.clone());
        state.resource_changed(&definition).await;
        let groups = group_counts(&state, &id).await?;
        Ok(Json(
            serde_json::json!({"stored": stored, "groups": groups}),
        ))
    }

    async fn group_counts(
        state: &AppState,
        id: &TournamentId,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        Ok(store::member_counts(&state.pool, id.as_str())
            .await
            .map_err(|e| state.store_unavailable(e))?
            .into_iter()
            .map(|(g, n)| (g, n.into()))
            .collect())
    }

    /// How many members each group has.
    #[utoipa::path(get, path = "/admin/v1/tournaments/{tournament}/members", tag = "admin",
        security(("admin_key" = [])), params(("tournament" = TournamentId, Path)), responses(
            (status = 200, description = "{groups: {group: members}}", body = serde_json::Value),
            (status = 401, description = "No key", body = crate::api_doc::ErrorResponse),
            (status = 403, description = "Wrong key", body = crate::api_doc::ErrorResponse),
            (status = 404, description = "No such tournament", body = crate::api_doc::ErrorResponse),
            (status = 503, description = "Postgres unreachable", body = crate::api_doc::ErrorResponse),
        ))]
    async fn counts(
        State(state): State<AppState>,
        caller: Caller,
        Path(raw): Path<String>,
    ) -> Result<Json<serde_json::Value>, ApiError> {
        caller.require(Role::Viewer)?;
        let id = tournament(&state, raw)?;
        let groups = group_counts(&state, &id).await?;
        Ok(Json(
            serde_json::json!({"tournament": id, "groups": groups}),
        ))
    }

    /// Takes a user off the list.
    #[utoipa::path(delete, path = "/admin/v1/tournaments/{tournament}/members/{user}", tag = "admin",
        security(("admin_key" = [])), params(("tournament" = TournamentId, Path), ("user" = UserId, Path)),
        responses(
            (status = 204, description = "Removed"),
            (status = 401, description = "No key", body = crate::api_doc::ErrorResponse),
            (status = 403, description = "Not an admin key", body = crate::api_doc::ErrorResponse),
            (status = 404, description = "No such tournament, or not on its list", body = crate::api_doc::ErrorResponse),
            (status = 503, description = "Postgres unreachable", body = crate::api_doc::ErrorResponse),
        ))]
    async fn remove(
        State(state): State<AppState>,
        caller: Caller,
        Path((raw, user)): Path<(String, String)>,
    ) -> Result<StatusCode, ApiError> {
        caller.require(Role::Admin)?;
        let id = tournament(&state, raw)?;
        let user: UserId = scope("user", user)?;
        let removed = store::delete_member(&state.pool, id.as_str(), user.as_str())
            .await
            .map_err(|e| state.store_unavailable(e))?;
        if !removed {
            return Err(ApiError::NotFound {
                field: "user".into(),
                message: format!("'{user}' is not on the list of '{id}'"),
            });
        }
        let definition = state.catalog.snapshot().tournament(id.as_str())?.clone();
        state
            .resource_changed(&Resource::Tournament(definition))
            .await;
        Ok(StatusCode::NO_CONTENT)
    }
}
