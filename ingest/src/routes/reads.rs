//! The read API, served from the aggregator's Redis views: poll results, arena rankings
//! (global and per session), tournament standings (top N, or around one team) and
//! registration counts. A poll or tournament nobody has written to reads as empty.

use crate::error::ApiError;
use crate::extract::scope;
use crate::server::AppState;
use crate::views::{ViewError, poll_view, standings_view};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tally_schema::api::FieldError;
use tally_schema::ids::{ArenaId, PollId, SessionId, TeamId, TournamentId};

/// Largest `limit` and `radius` a read accepts.
const MAX_LIMIT: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/polls/{poll}/results", get(poll_results))
        .route("/v1/arenas/{arena}/ranking", get(arena_ranking))
        .route(
            "/v1/arenas/{arena}/sessions/{session}/ranking",
            get(session_ranking),
        )
        .route("/v1/tournaments/{tournament}/standings", get(standings))
        .route(
            "/v1/tournaments/{tournament}/registrations",
            get(registrations),
        )
}

/// Query parameters, taken as text so a bad value gets our field-level error.
#[derive(Debug, Default, Deserialize)]
pub struct ReadParams {
    limit: Option<String>,
    around: Option<String>,
    radius: Option<String>,
}

fn number(name: &str, value: Option<&str>, default: usize) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) || (name == "radius" && n == 0) => Ok(n),
        _ => Err(FieldError::invalid(
            "invalid_value",
            name,
            format!("must be a whole number from 1 to {MAX_LIMIT}"),
        )
        .into()),
    }
}

fn params(
    query: Result<Query<ReadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<ReadParams, ApiError> {
    query.map(|Query(p)| p).map_err(|e| {
        FieldError {
            problem: tally_schema::api::Problem::Malformed,
            code: "malformed_query",
            field: String::new(),
            message: e.body_text(),
        }
        .into()
    })
}

fn unavailable(state: &AppState, e: ViewError) -> ApiError {
    tracing::warn!(error = %e, "Redis read failed; answering 503.");
    ApiError::Unavailable {
        reason: "views_unavailable",
        retry_after_secs: state.config.retry_after_secs,
    }
}

async fn poll_results(
    State(state): State<AppState>,
    Path(poll): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let poll: PollId = scope("poll", poll)?;
    let options = state
        .views
        .poll_results(poll.as_str())
        .await
        .map_err(|e| unavailable(&state, e))?;
    Ok(Json(poll_view(poll.as_str(), options)))
}

async fn arena_ranking(
    State(state): State<AppState>,
    Path(arena): Path<String>,
    query: Result<Query<ReadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let arena: ArenaId = scope("arena", arena)?;
    let limit = number("limit", params(query)?.limit.as_deref(), 10)?;
    let key = state.views.keys().arena_elo(arena.as_str());
    let items = state
        .views
        .top(&key, limit)
        .await
        .map_err(|e| unavailable(&state, e))?;
    Ok(Json(
        json!({ "arena": arena, "rating": "elo", "items": items }),
    ))
}

async fn session_ranking(
    State(state): State<AppState>,
    Path((arena, session)): Path<(String, String)>,
    query: Result<Query<ReadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let arena: ArenaId = scope("arena", arena)?;
    let session: SessionId = scope("session", session)?;
    let limit = number("limit", params(query)?.limit.as_deref(), 10)?;
    let key = state
        .views
        .keys()
        .session_elo(arena.as_str(), session.as_str());
    let items = state
        .views
        .top(&key, limit)
        .await
        .map_err(|e| unavailable(&state, e))?;
    Ok(Json(
        json!({ "arena": arena, "session": session, "rating": "elo", "items": items }),
    ))
}

async fn standings(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    query: Result<Query<ReadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let params = params(query)?;
    let key = state.views.keys().standings(tournament.as_str());
    let teams = match params.around {
        Some(team) => {
            let team = TeamId::try_from(team).map_err(|e| {
                ApiError::from(FieldError::invalid(
                    "invalid_value",
                    "around",
                    e.to_string(),
                ))
            })?;
            let radius = number("radius", params.radius.as_deref(), 2)?;
            state
                .views
                .around(&key, team.as_str(), radius)
                .await
                .map_err(|e| unavailable(&state, e))?
                .ok_or_else(|| ApiError::NotFound {
                    field: "around".into(),
                    message: format!("team '{team}' has no standing in this tournament"),
                })?
        }
        None => {
            let limit = number("limit", params.limit.as_deref(), 10)?;
            state
                .views
                .top(&key, limit)
                .await
                .map_err(|e| unavailable(&state, e))?
        }
    };
    Ok(Json(standings_view(tournament.as_str(), teams)))
}

async fn registrations(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let (total, groups) = state
        .views
        .registrations(tournament.as_str())
        .await
        .map_err(|e| unavailable(&state, e))?;
    let groups: serde_json::Map<String, Value> =
        groups.into_iter().map(|(g, n)| (g, n.into())).collect();
    Ok(Json(
        json!({ "tournament": tournament, "total": total, "groups": groups }),
    ))
}
