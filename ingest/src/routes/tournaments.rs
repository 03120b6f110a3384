//! Tournament scores and registrations.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ClientIp, IdempotencyHeader, JsonBody, Path, scope};
use crate::server::{Accepted, AppState};
use axum::extract::State;
use tally_schema::Event;
use tally_schema::api::{RegistrationBody, ScoreBody};
use tally_schema::event::{RegistrationStatus, StatusChange};
use tally_schema::ids::{TournamentId, UserId};
use tally_schema::status::RegistrationState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(score))
        .routes(routes!(register))
        .routes(routes!(claim))
}

/// A lottery winner (or a user promoted from the waitlist) confirms the place before the
/// claim deadline. Claiming again answers the same event.
#[utoipa::path(post, path = "/v1/tournaments/{tournament}/registrations/{user}/claim",
    tag = "events", params(("tournament" = TournamentId, Path), ("user" = UserId, Path)),
    responses(crate::api_doc::WriteResponses))]
async fn claim(
    State(state): State<AppState>,
    Path((tournament, user)): Path<(String, String)>,
    client: ClientIp,
    principal: Principal,
) -> Result<Accepted, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let user: UserId = scope("user", user)?;
    // Who may claim comes before what the draw says: a stranger learns nothing of it.
    let identity = state
        .catalog
        .snapshot()
        .tournament(tournament.as_str())?
        .identity;
    crate::access::act_as(&principal, identity, "user", user.as_str())?;
    let refuse = |code, message: String| ApiError::Conflict { code, message };
    let result = state
        .views
        .draw_result(tournament.as_str(), user.as_str())
        .await
        .map_err(|e| state.views_unavailable(e))?
        .ok_or_else(|| refuse("not_claimable", format!("'{user}' has no drawn place")))?;
    match result {
        RegistrationState::Claimed => {}
        RegistrationState::Won { deadline, .. } => {
            if deadline.is_some_and(|d| chrono::Utc::now() > d) {
                return Err(refuse(
                    "claim_expired",
                    "the claim deadline has passed".into(),
                ));
            }
        }
        other => {
            let status = serde_json::to_value(&other).unwrap_or_default();
            return Err(refuse(
                "not_claimable",
                format!(
                    "the registration is {}",
                    status["status"].as_str().unwrap_or("unknown")
                ),
            ));
        }
    }
    let claimed = RegistrationStatus {
        tournament,
        user,
        status: StatusChange::Claimed,
        position: None,
        deadline: None,
        promoted: None,
    };
    // The server's id: claiming again is the same event.
    let id = claimed.event_id("claimed");
    let event = state
        .check(Event::RegistrationStatus(claimed), client, &principal)
        .await?;
    Ok(Accepted(state.publish(event, Some(id)).await?))
}

/// Points for a team in a match; combined by the tournament's score operator.
#[utoipa::path(post, path = "/v1/tournaments/{tournament}/scores", tag = "events",
    params(("tournament" = TournamentId, Path), ("Idempotency-Key" = Option<tally_schema::ids::IdempotencyKey>, Header)),
    request_body = ScoreBody, responses(crate::api_doc::WriteResponses))]
async fn score(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    key: IdempotencyHeader,
    client: ClientIp,
    principal: Principal,
    JsonBody(body): JsonBody<ScoreBody>,
) -> Result<Accepted, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let key = key.merge(body.id.clone())?;
    Ok(Accepted(
        state
            .accept(body.into_event(tournament), key, client, &principal)
            .await?,
    ))
}

/// A user asking for a place, inside the registration window.
#[utoipa::path(post, path = "/v1/tournaments/{tournament}/registrations", tag = "events",
    params(("tournament" = TournamentId, Path), ("Idempotency-Key" = Option<tally_schema::ids::IdempotencyKey>, Header)),
    request_body = RegistrationBody, responses(crate::api_doc::WriteResponses))]
async fn register(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    key: IdempotencyHeader,
    client: ClientIp,
    principal: Principal,
    JsonBody(body): JsonBody<RegistrationBody>,
) -> Result<(axum::http::StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let key = key.merge(body.id.clone())?;
    let user = body.user.clone();
    let stored = state
        .accept(body.into_event(tournament.clone()), key, client, &principal)
        .await?;
    let mut answer = crate::server::accepted_body(&stored);
    // In a lottery: what the registrant keeps to find their own line of the public draw.
    if let Some(receipt) = state
        .catalog
        .snapshot()
        .receipt(tournament.as_str(), user.as_str())
    {
        answer["receipt"] = receipt.into();
    }
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(answer)))
}
