//! Poll votes.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ClientIp, IdempotencyHeader, JsonBody, Path, scope};
use crate::server::{Accepted, AppState};
use axum::extract::State;
use tally_schema::api::PollVoteBody;
use tally_schema::ids::PollId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(vote))
}

/// A vote: the voter's options (a later vote of the same voter replaces it).
#[utoipa::path(post, path = "/v1/polls/{poll}/votes", tag = "events", operation_id = "vote_in_poll",
    params(("poll" = PollId, Path), ("Idempotency-Key" = Option<tally_schema::ids::IdempotencyKey>, Header)),
    request_body = PollVoteBody, responses(crate::api_doc::WriteResponses))]
async fn vote(
    State(state): State<AppState>,
    Path(poll): Path<String>,
    key: IdempotencyHeader,
    client: ClientIp,
    principal: Principal,
    JsonBody(body): JsonBody<PollVoteBody>,
) -> Result<Accepted, ApiError> {
    let poll: PollId = scope("poll", poll)?;
    let key = key.merge(body.id.clone())?;
    Ok(Accepted(
        state
            .accept(body.into_event(poll), key, client, &principal)
            .await?,
    ))
}
