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
        .routes(routes!(withdraw))
        .routes(routes!(match_status))
}

/// Sets a match's status (`scheduled` → `live` → `final`, forward only), with an admin or
/// scorekeeper key; a final match refuses scores (`409 match_final`). Every ingest learns of it
/// as of any definition change.
#[utoipa::path(post, path = "/v1/tournaments/{tournament}/matches/{match}/status",
    tag = "events", security(("admin_key" = [])),
    params(("tournament" = TournamentId, Path), ("match" = tally_schema::ids::MatchId, Path)),
    request_body = tally_schema::api::MatchStatusBody, responses(
        (status = 200, description = "The match as it now stands", body = tally_schema::api::MatchStatusView),
        (status = 400, description = "Malformed JSON", body = crate::api_doc::ErrorResponse),
        (status = 401, description = "No key", body = crate::api_doc::ErrorResponse),
        (status = 403, description = "Not an admin or scorekeeper key", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such tournament, or not one of its listed matches", body = crate::api_doc::ErrorResponse),
        (status = 409, description = "Backwards (match_status_backwards)", body = crate::api_doc::ErrorResponse),
        (status = 413, description = "Body too large", body = crate::api_doc::ErrorResponse),
        (status = 415, description = "Not application/json", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "Not a status", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "Postgres unreachable", body = crate::api_doc::ErrorResponse),
    ))]
#[tracing::instrument(name = "match_status", skip_all)]
async fn match_status(
    State(state): State<AppState>,
    Path((tournament, match_id)): Path<(String, String)>,
    caller: crate::auth::Caller,
    JsonBody(body): JsonBody<tally_schema::api::MatchStatusBody>,
) -> Result<axum::Json<tally_schema::api::MatchStatusView>, ApiError> {
    caller.require(crate::auth::Role::Scorekeeper)?;
    let tournament: TournamentId = scope("tournament", tournament)?;
    let match_id: tally_schema::ids::MatchId = scope("match", match_id)?;
    crate::routes::reads::listed_match(
        state.catalog.snapshot().tournament(tournament.as_str())?,
        &match_id,
    )?;
    let now = chrono::Utc::now();
    let kind = tally_schema::resources::ResourceKind::Tournament;
    let changed = crate::store::update(&state.pool, kind, tournament.as_str(), |old| {
        let mut next = old.clone();
        if let tally_schema::resources::Resource::Tournament(t) = &mut next {
            for m in t.matches.iter_mut().filter(|m| m.id == match_id) {
                m.status = body.status;
            }
        }
        next.check_change_from(&old, now).map(|()| next)
    })
    .await
    .map_err(|e| state.store_unavailable(e))?
    .ok_or_else(|| ApiError::NotFound {
        field: "tournament".into(),
        message: format!("no such tournament: '{tournament}'"),
    })??;
    state.resource_changed(&changed.definition).await;
    // This instance's followers of the match see its new status at once, and the
    // standings' followers whether they are final now.
    for view in [
        tally_schema::LiveView::Match,
        tally_schema::LiveView::Standings,
    ] {
        state.live.refresh_within(view, tournament.as_str()).await;
    }
    Ok(axum::Json(tally_schema::api::MatchStatusView {
        tournament,
        match_id,
        status: body.status,
    }))
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
    own_change(
        &state,
        tournament,
        user,
        StatusChange::Claimed,
        client,
        &principal,
    )
    .await
}

/// Publishes a registrant's own change (a claim, a withdrawal) under the server's id for it:
/// asking again is the same event.
async fn own_change(
    state: &AppState,
    tournament: TournamentId,
    user: UserId,
    status: StatusChange,
    client: ClientIp,
    principal: &Principal,
) -> Result<Accepted, ApiError> {
    let change = RegistrationStatus {
        tournament,
        user,
        status,
        position: None,
        deadline: None,
        promoted: None,
    };
    let id = change.event_id(status.as_str());
    let event = state
        .check(Event::RegistrationStatus(change), client, principal)
        .await?;
    Ok(Accepted(state.publish(event, Some(id)).await?))
}

/// A registrant gives the registration up: before a lottery's draw (not drawn), on a
/// waitlist (leaves it), or holding a place, won, claimed or first-come (the place goes to the
/// next on the waitlist, who is told). Final; withdrawing again answers the same event. Needs
/// the registrant's token or a site key, whatever the tournament's identity mode.
#[utoipa::path(post, path = "/v1/tournaments/{tournament}/registrations/{user}/withdraw",
    tag = "events", params(("tournament" = TournamentId, Path), ("user" = UserId, Path)),
    responses(crate::api_doc::WriteResponses))]
#[tracing::instrument(name = "withdraw", skip_all)]
async fn withdraw(
    State(state): State<AppState>,
    Path((tournament, user)): Path<(String, String)>,
    client: ClientIp,
    principal: Principal,
) -> Result<Accepted, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let user: UserId = scope("user", user)?;
    state.catalog.snapshot().tournament(tournament.as_str())?;
    // Giving a place up cannot be undone: even where registrations take the body's word, only
    // the registrant's token or a site key may, or a stranger could empty a waitlist.
    let strict = tally_schema::resources::Identity::Token;
    crate::access::act_as(&principal, strict, "user", user.as_str())?;
    let (t, u) = (tournament.as_str(), user.as_str());
    let unavailable = |e| state.views_unavailable(e);
    if state
        .views
        .registrant_position(t, u)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        return Err(ApiError::NotFound {
            field: "user".into(),
            message: format!("'{user}' has not registered (or it is not processed yet)"),
        });
    }
    if let Some(RegistrationState::Released) =
        state.views.draw_result(t, u).await.map_err(unavailable)?
    {
        return Err(ApiError::Conflict {
            code: "not_withdrawable",
            message: "the place was released: there is nothing to withdraw".into(),
        });
    }
    own_change(
        &state,
        tournament,
        user,
        StatusChange::Withdrawn,
        client,
        &principal,
    )
    .await
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
    let contact = crate::access::contact(
        &principal,
        &user,
        body.email.clone(),
        body.time_zone.clone(),
    )?;
    let event = state
        .check(body.into_event(tournament.clone()), client, &principal)
        .await?;
    // A tournament that emails its winners keeps the address beside the registration (in
    // Postgres, never on the stream), stored before the 202 so the draw finds it.
    let mails = state
        .catalog
        .snapshot()
        .tournament(tournament.as_str())?
        .email
        .is_some();
    if let Some(contact) = contact.filter(|_| mails) {
        crate::store::save_contact(&state.pool, tournament.as_str(), user.as_str(), &contact)
            .await
            .map_err(|e| state.store_unavailable(e))?;
    }
    let id = crate::server::event_id(&event, key.as_ref(), &principal);
    let stored = state.publish(event, id).await?;
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
