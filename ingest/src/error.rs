//! The one HTTP error type. Every error answers `{"error": {"code", "message", "field"}}`;
//! internal details are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tally_schema::api::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A body or header that is not valid: 400 (malformed) or 422 (bad value).
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("no such resource")]
    NotFound { field: String, message: String },
    /// A known path asked with a method it does not take (the router adds `Allow`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The resource's rules refuse the event now (closed window, existing id).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// No usable credentials.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// Credentials that are wrong or not enough.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// Over a rate limit: 429 with when to come back.
    #[error("rate limited by {}", .0.policy)]
    RateLimited(crate::rate_limit::Limited),
    /// The whole request took longer than its deadline (a client trickling its body).
    #[error("request timeout")]
    RequestTimeout,
    /// This client address holds as many live streams as it may: 429.
    #[error("too many live streams from this address (at most {limit})")]
    TooManyStreams { limit: usize, retry_after_secs: u64 },
    /// JetStream did not take the event in time: the client should retry.
    #[error("unavailable: {reason}")]
    Unavailable {
        reason: &'static str,
        retry_after_secs: u64,
    },
}

/// The JSON error body, shared by every route and by per-item batch results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Field(e) if e.problem == Problem::Malformed => StatusCode::BAD_REQUEST,
            ApiError::Field(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::Field(e) => ErrorBody {
                code: e.code,
                message: e.message.clone(),
                field: e.field.clone(),
            },
            ApiError::PayloadTooLarge { limit } => ErrorBody {
                code: "payload_too_large",
                message: format!("the body must be at most {limit} bytes"),
                field: String::new(),
            },
            ApiError::UnsupportedMediaType => ErrorBody {
                code: "unsupported_media_type",
                message: "send the body as Content-Type: application/json".into(),
                field: String::new(),
            },
            ApiError::NotFound { field, message } => ErrorBody {
                code: "not_found",
                message: message.clone(),
                field: field.clone(),
            },
            ApiError::RequestTimeout => ErrorBody {
                code: "request_timeout",
                message: "the request took too long".into(),
                field: String::new(),
            },
            ApiError::MethodNotAllowed => ErrorBody {
                code: "method_not_allowed",
                message: "this path does not take that method (see the Allow header)".into(),
                field: String::new(),
            },
            ApiError::Conflict { code, message } | ApiError::Forbidden { code, message } => {
                ErrorBody {
                    code,
                    message: message.clone(),
                    field: String::new(),
                }
            }
            ApiError::RateLimited(l) => ErrorBody {
                code: "rate_limited",
                message: format!(
                    "over the limit of {} per {} s ({}); retry in {} s",
                    l.quota,
                    l.window_secs,
                    l.policy,
                    retry_secs(l)
                ),
                field: String::new(),
            },
            ApiError::Unauthorized { code, message } => ErrorBody {
                code,
                message: message.clone(),
                field: String::new(),
            },
            ApiError::TooManyStreams { .. } => ErrorBody {
                code: "too_many_streams",
                message: self.to_string(),
                field: String::new(),
            },
            ApiError::Unavailable { reason, .. } => ErrorBody {
                code: "unavailable",
                message: format!("the event was not stored ({reason}); retry later"),
                field: String::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = self.body();
        // A 503 is counted by what was unavailable (broker_timeout, overloaded, …): the first
        // thing the on-call runbook asks.
        let reason = match &self {
            ApiError::Unavailable { reason, .. } => reason,
            _ => body.code,
        };
        metrics::counter!("tally_ingest_rejections_total", "reason" => reason).increment(1);
        let mut response = (status, Json(serde_json::json!({ "error": body }))).into_response();
        match self {
            ApiError::Unavailable {
                retry_after_secs, ..
            }
            | ApiError::TooManyStreams {
                retry_after_secs, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::RateLimited(l) => {
                let secs = retry_secs(&l);
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
                // draft-ietf-httpapi-ratelimit-headers: the policy, and what is left of it.
                let policy = format!("\"{}\";q={};w={}", l.policy, l.quota, l.window_secs);
                let state = format!("\"{}\";r=0;t={secs}", l.policy);
                for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        headers.insert(name, value);
                    }
                }
            }
            ApiError::Unauthorized { .. } => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tally-admin\""),
                );
            }
            _ => {}
        }
        response
    }
}

/// Whole seconds until a limited client may retry (at least 1).
fn retry_secs(l: &crate::rate_limit::Limited) -> u64 {
    l.retry_after.as_secs_f64().ceil().max(1.0) as u64
}
