//! Pair votes ("winner beat loser") in an arena.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ClientIp, IdempotencyHeader, JsonBody, Path, scope};
use crate::server::{Accepted, AppState};
use axum::extract::State;
use tally_schema::api::PairVoteBody;
use tally_schema::ids::ArenaId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(vote))
}

/// "winner beat loser", from one session.
#[utoipa::path(post, path = "/v1/arenas/{arena}/votes", tag = "events", operation_id = "vote_in_arena",
    params(("arena" = ArenaId, Path), ("Idempotency-Key" = Option<tally_schema::ids::IdempotencyKey>, Header)),
    request_body = PairVoteBody, responses(crate::api_doc::WriteResponses))]
async fn vote(
    State(state): State<AppState>,
    Path(arena): Path<String>,
    key: IdempotencyHeader,
    client: ClientIp,
    principal: Principal,
    JsonBody(body): JsonBody<PairVoteBody>,
) -> Result<Accepted, ApiError> {
    let arena: ArenaId = scope("arena", arena)?;
    let key = key.merge(body.id.clone())?;
    Ok(Accepted(
        state
            .accept(body.into_event(arena), key, client, &principal)
            .await?,
    ))
}
