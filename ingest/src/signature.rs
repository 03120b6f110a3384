//! Optional HMAC-signed server-to-server ingest. A partner's backend sends
//! `Tally-Key-Id: <id>`, `Tally-Timestamp: <unix seconds>` and
//! `Tally-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`. The timestamp
//! must be within five minutes of ours (a captured request cannot be replayed later), the MAC
//! is compared in constant time, and with `TALLY_REQUIRE_SIGNATURE` unsigned writes are
//! refused. Signing keys come from `TALLY_SIGNING_KEYS` (`id:secret,…`).

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest allowed difference between the sender's clock and ours.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Clone, Debug, Default)]
pub struct Signing {
    keys: HashMap<String, Vec<u8>>,
    required: bool,
}

impl Signing {
    /// From `id:secret` entries; entries without a colon or with an empty part are refused.
    pub fn new(entries: &[String], required: bool) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for entry in entries {
            match entry.split_once(':') {
                Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                    keys.insert(id.to_owned(), secret.as_bytes().to_vec());
                }
                _ => return Err("signing keys are written id:secret".into()),
            }
        }
        if required && keys.is_empty() {
            return Err("TALLY_REQUIRE_SIGNATURE needs TALLY_SIGNING_KEYS".into());
        }
        Ok(Self { keys, required })
    }

    pub fn is_active(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks one request's headers and raw body against the keys at time `now`.
    pub fn verify(
        &self,
        headers: &axum::http::HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let refuse = |code: &'static str, message: &str| ApiError::Forbidden {
            code,
            message: message.to_owned(),
        };
        let (Some(id), Some(timestamp), Some(signature)) = (
            header("tally-key-id"),
            header("tally-timestamp"),
            header("tally-signature"),
        ) else {
            if self.required {
                return Err(ApiError::Unauthorized {
                    message: "sign the request: Tally-Key-Id, Tally-Timestamp, Tally-Signature"
                        .into(),
                });
            }
            return Ok(());
        };
        let secret = self
            .keys
            .get(id)
            .ok_or_else(|| refuse("invalid_signature", "unknown signing key"))?;
        let sent: i64 = timestamp
            .parse()
            .map_err(|_| refuse("invalid_signature", "Tally-Timestamp is unix seconds"))?;
        // `(now - sent).abs()` would overflow for timestamps near i64::MIN or i64::MAX.
        if now.abs_diff(sent) > TOLERANCE_SECS.unsigned_abs() {
            return Err(refuse(
                "stale_signature",
                "Tally-Timestamp is more than five minutes from now",
            ));
        }
        let mac_bytes = signature
            .strip_prefix("v1=")
            .and_then(unhex)
            .ok_or_else(|| refuse("invalid_signature", "Tally-Signature is v1=<hex>"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&mac_bytes)
            .map_err(|_| refuse("invalid_signature", "the signature does not match"))
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signature a sender computes (for clients and tests).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "v1={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Middleware for the write routes: buffers the body (within the route's limit), verifies,
/// and hands the same bytes on.
pub async fn check(signing: Arc<Signing>, request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::GET {
        return next.run(request).await;
    }
    let limit = request
        .extensions()
        .get::<crate::extract::BodyLimit>()
        .map_or(usize::MAX, |l| l.0);
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::PayloadTooLarge { limit }.into_response(),
    };
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = signing.verify(&parts.headers, &bytes, now) {
        return e.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn signed(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("tally-key-id", HeaderValue::from_str(id).unwrap());
        h.insert(
            "tally-timestamp",
            HeaderValue::from_str(&ts.to_string()).unwrap(),
        );
        h.insert("tally-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn signatures_are_checked_for_key_time_and_body() {
        let s = Signing::new(&["p1:s3cret".into()], true).unwrap();
        let body = br#"{"voter":"v","options":["a"]}"#;
        let now = 1_800_000_000;
        let good = sign(b"s3cret", now, body);
        assert!(s.verify(&signed("p1", now, &good), body, now + 10).is_ok());
        let code = |r: Result<(), ApiError>| r.unwrap_err().body().code;
        assert_eq!(
            code(s.verify(&signed("p1", now, &good), b"{}", now)),
            "invalid_signature"
        );
        assert_eq!(
            code(s.verify(&signed("p2", now, &good), body, now)),
            "invalid_signature"
        );
        assert_eq!(
            code(s.verify(&signed("p1", now, &good), body, now + 301)),
            "stale_signature"
        );
        assert_eq!(code(s.verify(&HeaderMap::new(), body, now)), "unauthorized");
        let optional = Signing::new(&["p1:s3cret".into()], false).unwrap();
        assert!(optional.verify(&HeaderMap::new(), body, now).is_ok());
        assert!(Signing::new(&["nocolon".into()], false).is_err());
        assert!(Signing::new(&[], true).is_err());
    }

    #[test]
    fn timestamps_at_the_ends_of_i64_are_stale_not_a_crash() {
        let s = Signing::new(&["p1:s3cret".into()], true).unwrap();
        let now = 1_800_000_000;
        for sent in [i64::MIN, i64::MIN + now, i64::MAX] {
            let headers = signed("p1", sent, &sign(b"s3cret", sent, b"{}"));
            let e = s.verify(&headers, b"{}", now).unwrap_err();
            assert_eq!(e.body().code, "stale_signature", "{sent}");
        }
    }
}
