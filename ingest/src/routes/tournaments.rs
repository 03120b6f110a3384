//! Tournament scores and registrations.

use crate::error::ApiError;
use crate::extract::{ClientIp, IdempotencyHeader, JsonBody, scope};
use crate::server::{Accepted, AppState};
use axum::extract::{Path, State};
use tally_schema::api::{RegistrationBody, ScoreBody};
use tally_schema::ids::TournamentId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(score))
        .routes(routes!(register))
}

/// Points for a team in a match; combined by the tournament's score operator.
#[utoipa::path(post, path = "/v1/tournaments/{tournament}/scores", tag = "events",
    params(("tournament" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ScoreBody, responses(crate::api_doc::WriteResponses))]
async fn score(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    key: IdempotencyHeader,
    client: ClientIp,
    JsonBody(body): JsonBody<ScoreBody>,
) -> Result<Accepted, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let key = key.merge(body.id.clone())?;
    Ok(Accepted(
        state
            .accept(body.into_event(tournament), key, client)
            .await?,
    ))
}

/// A user asking for a place, inside the registration window.
#[utoipa::path(post, path = "/v1/tournaments/{tournament}/registrations", tag = "events",
    params(("tournament" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = RegistrationBody, responses(crate::api_doc::WriteResponses))]
async fn register(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    key: IdempotencyHeader,
    client: ClientIp,
    JsonBody(body): JsonBody<RegistrationBody>,
) -> Result<Accepted, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let key = key.merge(body.id.clone())?;
    Ok(Accepted(
        state
            .accept(body.into_event(tournament), key, client)
            .await?,
    ))
}
