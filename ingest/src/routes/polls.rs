//! Poll votes.

use crate::error::ApiError;
use crate::extract::{ClientIp, IdempotencyHeader, JsonBody, scope};
use crate::server::{Accepted, AppState};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use tally_schema::api::PollVoteBody;
use tally_schema::ids::PollId;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/polls/{poll}/votes", post(vote))
}

async fn vote(
    State(state): State<AppState>,
    Path(poll): Path<String>,
    key: IdempotencyHeader,
    client: ClientIp,
    JsonBody(body): JsonBody<PollVoteBody>,
) -> Result<Accepted, ApiError> {
    let poll: PollId = scope("poll", poll)?;
    let key = key.merge(body.id.clone())?;
    Ok(Accepted(
        state.accept(body.into_event(poll), key, client).await?,
    ))
}
