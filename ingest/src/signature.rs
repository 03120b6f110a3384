//! Optional HMAC-signed server-to-server writes. A partner's backend sends
//! `Tally-Key-Id: <id>`, `Tally-Timestamp: <unix seconds>` and
//! `Tally-Signature: v2=<hex HMAC-SHA256(secret, canonical request)>`, where the canonical
//! request is, each line ending in `\n`: `v2`, the timestamp, the method, the path, the raw
//! query (empty without one), the `Idempotency-Key` (empty without one), then the raw body.
//! So a captured signature cannot be moved to another route, scope, query or key.
//!
//! The timestamp must be within five minutes of ours, the MAC is compared in constant time,
//! and a signature is accepted once: its use is recorded in Redis for the window, so every
//! ingest instance refuses a replay (a retry signs again, with a new timestamp). With
//! `TALLY_REQUIRE_SIGNATURE` unsigned writes are refused. Signing keys come from
//! `TALLY_SIGNING_KEYS` (`id:secret,…`).

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

#[derive(Clone, Default)]
pub struct Signing {
    keys: HashMap<String, Vec<u8>>,
    required: bool,
    /// Where used signatures are recorded (shared by every instance).
    replays: Option<(
        redis::aio::ConnectionManager,
        tally_schema::redis_keys::Keys,
    )>,
}

/// What a request's signature covers besides the body.
#[derive(Clone, Copy, Debug)]
pub struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub idempotency_key: &'a str,
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
        Ok(Self {
            keys,
            required,
            replays: None,
        })
    }

    /// Records used signatures in this Redis, so a replay is refused by every instance.
    pub fn with_replay_store(
        mut self,
        conn: redis::aio::ConnectionManager,
        keys: tally_schema::redis_keys::Keys,
    ) -> Self {
        self.replays = Some((conn, keys));
        self
    }

    pub fn is_active(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks one request's headers, what it signs and its raw body against the keys at time
    /// `now`. Returns the verified MAC (for the replay check), or `None` for an unsigned
    /// request that is allowed.
    pub fn verify(
        &self,
        headers: &axum::http::HeaderMap,
        signed: Signed<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<Option<Vec<u8>>, ApiError> {
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
                    code: "unauthorized",
                    message: "sign the request: Tally-Key-Id, Tally-Timestamp, Tally-Signature"
                        .into(),
                });
            }
            return Ok(None);
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
            .strip_prefix("v2=")
            .and_then(unhex)
            .ok_or_else(|| {
                refuse(
                    "invalid_signature",
                    "Tally-Signature is v2=<hex> (v1, over the body alone, is no longer taken)",
                )
            })?;
        mac(secret, timestamp, signed, body)
            .verify_slice(&mac_bytes)
            .map_err(|_| refuse("invalid_signature", "the signature does not match"))?;
        Ok(Some(mac_bytes))
    }

    /// Records a verified signature; `false` if it was used before (a replay).
    async fn first_use(&self, mac: &[u8]) -> Result<bool, redis::RedisError> {
        let Some((conn, keys)) = &self.replays else {
            return Ok(true);
        };
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        // Kept past both ends of the timestamp window, so a replay is caught while it could
        // still pass the timestamp check.
        let set: Option<String> = redis::cmd("SET")
            .arg(keys.signature_seen(&hex))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(2 * TOLERANCE_SECS + 60)
            .query_async(&mut conn.clone())
            .await?;
        Ok(set.is_some())
    }
}

fn mac(secret: &[u8], timestamp: &str, signed: Signed<'_>, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    for part in [
        "v2",
        timestamp,
        signed.method,
        signed.path,
        signed.query,
        signed.idempotency_key,
    ] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac.update(body);
    mac
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
pub fn sign(secret: &[u8], timestamp: i64, signed: Signed<'_>, body: &[u8]) -> String {
    let bytes = mac(secret, &timestamp.to_string(), signed, body)
        .finalize()
        .into_bytes();
    format!(
        "v2={}",
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
    let signed = Signed {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        idempotency_key: parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    };
    match signing.verify(&parts.headers, signed, &bytes, now) {
        Err(e) => return e.into_response(),
        Ok(None) => {}
        Ok(Some(mac)) => match signing.first_use(&mac).await {
            Ok(true) => {}
            Ok(false) => {
                metrics::counter!("tally_ingest_signature_replays_total").increment(1);
                return ApiError::Forbidden {
                    code: "replayed_signature",
                    message: "this signature was already used; sign each request anew".into(),
                }
                .into_response();
            }
            // Fail closed: without the record a captured request could be replayed.
            Err(e) => {
                tally_kit::warn_once_a_second!(error = %e, "Replay check failed; answering 503.");
                return ApiError::Unavailable {
                    reason: "replay_check_unavailable",
                    retry_after_secs: 1,
                }
                .into_response();
            }
        },
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

    const VOTE: Signed<'static> = Signed {
        method: "POST",
        path: "/v1/polls/p1/votes",
        query: "",
        idempotency_key: "k1",
    };

    #[test]
    fn signatures_are_checked_for_key_time_and_body() {
        let s = Signing::new(&["p1:s3cret".into()], true).unwrap();
        let body = br#"{"voter":"v","options":["a"]}"#;
        let now = 1_800_000_000;
        let good = sign(b"s3cret", now, VOTE, body);
        assert!(
            s.verify(&signed("p1", now, &good), VOTE, body, now + 10)
                .unwrap()
                .is_some()
        );
        let code = |r: Result<Option<Vec<u8>>, ApiError>| r.unwrap_err().body().code;
        assert_eq!(
            code(s.verify(&signed("p1", now, &good), VOTE, b"{}", now)),
            "invalid_signature"
        );
        assert_eq!(
            code(s.verify(&signed("p2", now, &good), VOTE, body, now)),
            "invalid_signature"
        );
        assert_eq!(
            code(s.verify(&signed("p1", now, &good), VOTE, body, now + 301)),
            "stale_signature"
        );
        assert_eq!(
            code(s.verify(&HeaderMap::new(), VOTE, body, now)),
            "unauthorized"
        );
        let optional = Signing::new(&["p1:s3cret".into()], false).unwrap();
        assert!(
            optional
                .verify(&HeaderMap::new(), VOTE, body, now)
                .unwrap()
                .is_none()
        );
        assert!(Signing::new(&["nocolon".into()], false).is_err());
        assert!(Signing::new(&[], true).is_err());
    }

    #[test]
    fn the_signature_covers_method_path_query_and_idempotency_key() {
        let s = Signing::new(&["p1:s3cret".into()], true).unwrap();
        let body = br#"{"voter":"v","options":["a"]}"#;
        let now = 1_800_000_000;
        let headers = signed("p1", now, &sign(b"s3cret", now, VOTE, body));
        let moved = [
            Signed {
                method: "PUT",
                ..VOTE
            },
            Signed {
                path: "/v1/polls/p2/votes",
                ..VOTE
            },
            Signed {
                query: "user=u2",
                ..VOTE
            },
            Signed {
                idempotency_key: "k2",
                ..VOTE
            },
            Signed {
                idempotency_key: "",
                ..VOTE
            },
        ];
        for other in moved {
            let e = s.verify(&headers, other, body, now).unwrap_err();
            assert_eq!(e.body().code, "invalid_signature", "{other:?}");
        }
        // A v1 signature (body only) is refused outright.
        let v1 = signed("p1", now, "v1=00");
        assert_eq!(
            s.verify(&v1, VOTE, body, now).unwrap_err().body().code,
            "invalid_signature"
        );
    }

    #[test]
    fn timestamps_at_the_ends_of_i64_are_stale_not_a_crash() {
        let s = Signing::new(&["p1:s3cret".into()], true).unwrap();
        let now = 1_800_000_000;
        for sent in [i64::MIN, i64::MIN + now, i64::MAX] {
            let headers = signed("p1", sent, &sign(b"s3cret", sent, VOTE, b"{}"));
            let e = s.verify(&headers, VOTE, b"{}", now).unwrap_err();
            assert_eq!(e.body().code, "stale_signature", "{sent}");
        }
    }
}
