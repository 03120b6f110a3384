//! Extractors for strict JSON bodies, the `Idempotency-Key` header and scope path segments.

use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tally_schema::api::{FieldError, Validate, decode};
use tally_schema::ids::IdempotencyKey;

/// A body that must be `application/json`, within the route's size limit, decode strictly
/// and pass its [`Validate`] rules.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        Ok(JsonBody(decode(&bytes)?))
    }
}

/// The raw bytes of an `application/json` body within the route's size limit, for handlers
/// that pick the type to decode at run time.
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or_default();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                FieldError::malformed("unreadable_body", rejection.body_text()).into()
            }
        })?;
        Ok(JsonBytes(bytes))
    }
}

/// The body limit of the current route, so a 413 can say what the limit is.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

fn is_json(value: Option<&header::HeaderValue>) -> bool {
    let Some(Ok(value)) = value.map(|v| v.to_str()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The optional `Idempotency-Key` header.
pub struct IdempotencyHeader(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let invalid = |message: String| {
            ApiError::from(FieldError::invalid(
                "invalid_value",
                "Idempotency-Key",
                message,
            ))
        };
        let text = value
            .to_str()
            .map_err(|_| invalid("must be visible ASCII".into()))?;
        let key = IdempotencyKey::try_from(text.to_owned()).map_err(|e| invalid(e.to_string()))?;
        Ok(Self(Some(key)))
    }
}

impl IdempotencyHeader {
    /// The key for this request: the header's or the body's `id`; both must agree.
    pub fn merge(
        self,
        body_id: Option<IdempotencyKey>,
    ) -> Result<Option<IdempotencyKey>, ApiError> {
        match (self.0, body_id) {
            (Some(h), Some(b)) if h != b => Err(FieldError::invalid(
                "conflicting_idempotency_key",
                "id",
                "differs from the Idempotency-Key header",
            )
            .into()),
            (h, b) => Ok(h.or(b)),
        }
    }
}

/// The client's IP address: the peer's, or, when the peer is one of the configured trusted
/// proxies, the right-most address in the configured header that is not itself a trusted
/// proxy (so a client cannot prepend a made-up address). Without connection info (a test
/// driving the router directly) it is unspecified.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<crate::server::AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &crate::server::AppState,
    ) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
        let config = &state.config;
        Ok(Self(client_ip(
            peer,
            config
                .client_ip_header
                .as_ref()
                .and_then(|name| parts.headers.get(name.as_str()))
                .and_then(|v| v.to_str().ok()),
            &config.trusted_proxies,
        )))
    }
}

/// [`ClientIp`]'s rule, pure.
pub fn client_ip(
    peer: std::net::IpAddr,
    header: Option<&str>,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(header) = header.filter(|_| is_trusted(&peer)) else {
        return peer;
    };
    let chain: Vec<std::net::IpAddr> = header
        .split(',')
        .map_while(|v| v.trim().parse().ok())
        .collect();
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(chain.first())
        .copied()
        .unwrap_or(peer)
}

/// `axum::extract::Path` answering our JSON error: a segment that is not UTF-8 (so no id at
/// all) is a 404 naming the parameter, as [`scope`] answers an id that cannot exist.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => match e.into_kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => Err(ApiError::NotFound {
                    message: format!("no such {key}: the id is not valid UTF-8"),
                    field: key,
                }),
                kind => Err(FieldError::malformed("malformed_path", kind.to_string()).into()),
            },
            Err(other) => Err(FieldError::malformed("malformed_path", other.body_text()).into()),
        }
    }
}

/// A query string that does not parse at all (400).
pub fn malformed_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    FieldError::malformed("malformed_query", e.body_text()).into()
}

/// Parses a scope from the path; an id that cannot exist is a 404 naming the parameter.
pub fn scope<T>(name: &str, raw: String) -> Result<T, ApiError>
where
    T: TryFrom<String, Error = tally_schema::ids::IdError>,
{
    T::try_from(raw).map_err(|e| ApiError::NotFound {
        field: name.to_owned(),
        message: format!("no such {name}: the id {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        let v = |s: &'static str| Some(header::HeaderValue::from_static(s));
        assert!(is_json(v("application/json").as_ref()));
        assert!(is_json(v("Application/JSON; charset=utf-8").as_ref()));
        assert!(!is_json(v("text/plain").as_ref()));
        assert!(!is_json(v("application/jsonx").as_ref()));
        assert!(!is_json(None));
    }

    #[test]
    fn the_ip_header_counts_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let trusted: Vec<ipnet::IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ];
        // From an untrusted peer the header is the client's own claim: ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("198.51.100.1"), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("198.51.100.1"), &trusted),
            ip("198.51.100.1")
        );
        // A client prepending an address does not move the right-most untrusted one.
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                Some("1.2.3.4, 198.51.100.1, 10.1.2.3"),
                &trusted
            ),
            ip("198.51.100.1")
        );
        assert_eq!(client_ip(ip("127.0.0.1"), None, &trusted), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("junk"), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("10.1.0.1"), &trusted),
            ip("10.1.0.1")
        );
    }

    #[test]
    fn header_and_body_keys_must_agree() {
        let k = |s: &str| IdempotencyKey::try_from(s.to_owned()).unwrap();
        assert!(IdempotencyHeader(Some(k("a"))).merge(Some(k("b"))).is_err());
        assert_eq!(
            IdempotencyHeader(Some(k("a"))).merge(Some(k("a"))).unwrap(),
            Some(k("a"))
        );
        assert_eq!(
            IdempotencyHeader(None).merge(Some(k("b"))).unwrap(),
            Some(k("b"))
        );
        assert_eq!(IdempotencyHeader(None).merge(None).unwrap(), None);
    }
}
