//! Tournament scores and registrations.

use crate::error::ApiError;
use crate::extract::{ClientIp, IdempotencyHeader, JsonBody, scope};
use crate::server::{Accepted, AppState};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use tally_schema::api::{RegistrationBody, ScoreBody};
use tally_schema::ids::TournamentId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tournaments/{tournament}/scores", post(score))
        .route("/v1/tournaments/{tournament}/registrations", post(register))
}

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
