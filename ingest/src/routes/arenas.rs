//! Pair votes ("winner beat loser") in an arena.

use crate::error::ApiError;
use crate::extract::{ClientIp, IdempotencyHeader, JsonBody, scope};
use crate::server::{Accepted, AppState};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use tally_schema::api::PairVoteBody;
use tally_schema::ids::ArenaId;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/arenas/{arena}/votes", post(vote))
}

async fn vote(
    State(state): State<AppState>,
    Path(arena): Path<String>,
    key: IdempotencyHeader,
    client: ClientIp,
    JsonBody(body): JsonBody<PairVoteBody>,
) -> Result<Accepted, ApiError> {
    let arena: ArenaId = scope("arena", arena)?;
    let key = key.merge(body.id.clone())?;
    Ok(Accepted(
        state.accept(body.into_event(arena), key, client).await?,
    ))
}
