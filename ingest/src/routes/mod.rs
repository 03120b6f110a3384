//! The API, one module per area. Each exports `router()`.

pub mod admin;
pub mod arenas;
pub mod channels;
pub mod events;
pub mod live;
pub mod media;
pub mod ops;
pub mod page;
pub mod polls;
pub mod reads;
pub mod tournaments;
pub mod webhooks;

use crate::config::IngestConfig;
use crate::extract::BodyLimit;
use crate::server::AppState;
use crate::signature::Signing;
use axum::extract::DefaultBodyLimit;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Every route, each registered with its OpenAPI description.
pub fn router(config: &IngestConfig, signing: Arc<Signing>) -> OpenApiRouter<AppState> {
    let single = config.body_limit_bytes;
    // Writes may be signed (and must be, when required): checked inside the body limit.
    let signed = |router: OpenApiRouter<AppState>| match signing.is_active() {
        true => {
            let signing = signing.clone();
            router.layer(axum::middleware::from_fn(move |req, next| {
                crate::signature::check(signing.clone(), req, next)
            }))
        }
        false => router,
    };
    OpenApiRouter::with_openapi(crate::api_doc::ApiDoc::openapi())
        .merge(with_limit(signed(polls::router()), single))
        .merge(with_limit(signed(arenas::router()), single))
        .merge(with_limit(signed(tournaments::router()), single))
        .merge(with_limit(
            signed(events::router()),
            config.batch_body_limit_bytes,
        ))
        .merge(with_limit(
            signed(channels::router()),
            config.channels.channel_message_max_bytes,
        ))
        .merge(with_limit(admin::router(), config.admin_body_limit_bytes))
        .merge(with_limit(
            webhooks::router(),
            config.admin_body_limit_bytes,
        ))
        .merge(with_limit(
            signed(media::router()),
            config.media_body_limit_bytes,
        ))
        .merge(reads::router())
        .merge(live::router())
        .merge(channels::follow_router())
        .merge(page::router())
        .merge(ops::router())
}

fn with_limit(router: OpenApiRouter<AppState>, limit: usize) -> OpenApiRouter<AppState> {
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)))
}
