//! End-user identity: a JWT the organiser's site issued, verified with `jsonwebtoken`.
//!
//! Keys: an HS256 shared secret, and public keys (RS256/384/512, PS*, ES256/384, EdDSA) from a
//! JWKS document — a file, or an HTTP(S) URL fetched at start, every `jwks_refresh_secs`, and
//! (at most every `jwks_miss_refresh_secs`) when a token names a `kid` not yet known, so a key
//! the site rotates in is accepted within the refresh period.
//!
//! The algorithm is the key's, never the token's choice: a token's `alg` must be one its
//! key allows, `none` is refused, and an HS256 token is only ever checked against the shared
//! secret (so a public key cannot be used as an HMAC secret). `exp` and `sub` are required,
//! `nbf` is honoured, `iss` and `aud` are required and checked when configured.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tally_schema::ids::{GroupId, TeamId, UserId};

/// Where user tokens are verified against; every field from a flag or `TALLY_JWT_*`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TokenConfig {
    /// Shared secret of HS256 user tokens (at least 32 bytes).
    #[arg(long, env = "TALLY_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,
    /// JWKS with the public keys of user tokens: a file path or an http(s):// URL.
    #[arg(long, env = "TALLY_JWKS")]
    pub jwks: Option<String>,
    /// Required `iss` of user tokens.
    #[arg(long, env = "TALLY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of user tokens.
    #[arg(long, env = "TALLY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, env = "TALLY_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// How often the JWKS is read again, in seconds.
    #[arg(long, env = "TALLY_JWKS_REFRESH_SECS", default_value_t = 300)]
    pub jwks_refresh_secs: u64,
    /// A token with an unknown `kid` reads the JWKS again at most this often, in seconds.
    #[arg(long, env = "TALLY_JWKS_MISS_REFRESH_SECS", default_value_t = 10)]
    pub jwks_miss_refresh_secs: u64,
    /// The claim that names the user's priority group in a lottery.
    #[arg(long, env = "TALLY_JWT_GROUP_CLAIM", default_value = "tally_group")]
    pub jwt_group_claim: String,
    /// The claim that names the team whose scores the user may post.
    #[arg(long, env = "TALLY_JWT_TEAM_CLAIM", default_value = "tally_team")]
    pub jwt_team_claim: String,
}

impl TokenConfig {
    pub fn is_configured(&self) -> bool {
        self.jwt_hs256_secret.is_some() || self.jwks.is_some()
    }
}

/// What a verified token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub group: Option<GroupId>,
    pub team: Option<TeamId>,
    /// The `email` claim, when it is an address and `email_verified` is not false: where a
    /// tournament that emails its winners writes to.
    pub email: Option<String>,
    /// The `zoneinfo` claim (OpenID Connect), when it names an IANA time zone.
    pub time_zone: Option<String>,
}

/// Why a token was refused; each is its own `401` code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("user tokens are not configured on this server")]
    NotConfigured,
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the token's algorithm is not accepted: {0}")]
    AlgorithmRefused(String),
    #[error("the token names no key this server knows")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token lacks the '{0}' claim")]
    MissingClaim(String),
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "tokens_not_configured",
            Self::Malformed(_) => "token_malformed",
            Self::AlgorithmRefused(_) => "token_algorithm_refused",
            Self::UnknownKey => "token_unknown_key",
            Self::BadSignature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "token_wrong_audience",
            Self::WrongIssuer => "token_wrong_issuer",
            Self::MissingClaim(_) => "token_missing_claim",
        }
    }
}

/// Why the JWKS could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS file: {0}")]
    File(#[from] std::io::Error),
    #[error("cannot fetch the JWKS: {0}")]
    Fetch(#[from] reqwest::Error),
    #[error("the JWKS answer is {0}")]
    Status(reqwest::StatusCode),
    #[error("the JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("the JWKS is not a JWK set: {0}")]
    Json(#[from] serde_json::Error),
}

const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// A public key and the algorithms it may verify.
struct PublicKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// Verifies user tokens; cheap to share (`Arc`).
pub struct Verifier {
    config: TokenConfig,
    hs256: Option<DecodingKey>,
    keys: RwLock<Arc<HashMap<String, Arc<PublicKey>>>>,
    /// When the JWKS was last read because of an unknown `kid`.
    last_miss_refresh: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl Verifier {
    /// Builds the verifier and reads the JWKS once. An unreachable JWKS URL is logged and
    /// retried by [`Verifier::refresh_forever`]: anonymous traffic must not wait for it.
    pub async fn new(config: TokenConfig) -> Result<Self, String> {
        let hs256 = match &config.jwt_hs256_secret {
            Some(s) if s.len() < 32 => {
                return Err("TALLY_JWT_HS256_SECRET must be at least 32 bytes".into());
            }
            Some(s) => Some(DecodingKey::from_secret(s.as_bytes()).map_err(|e| e.to_string())?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let verifier = Self {
            config,
            hs256,
            keys: RwLock::default(),
            last_miss_refresh: Mutex::default(),
            http,
        };
        if let Some(source) = &verifier.config.jwks {
            match verifier.refresh().await {
                Ok(n) => tracing::info!(keys = n, %source, "Loaded the user-token JWKS."),
                Err(JwksError::File(e)) => return Err(format!("cannot read {source}: {e}")),
                Err(e) => tracing::warn!(error = %e, %source, "JWKS not loaded yet; retrying."),
            }
        }
        Ok(verifier)
    }

    pub fn is_configured(&self) -> bool {
        self.config.is_configured()
    }

    /// Reads the JWKS again and swaps its keys in; returns how many it holds.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let Some(source) = &self.config.jwks else {
            return Ok(0);
        };
        let bytes = if source.starts_with("http://") || source.starts_with("https://") {
            let mut response = self.http.get(source).send().await?;
            if !response.status().is_success() {
                return Err(JwksError::Status(response.status()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_JWKS_BYTES {
                    return Err(JwksError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            body
        } else {
            tokio::fs::read(source).await?
        };
        let set: JwkSet = serde_json::from_slice(&bytes)?;
        let keys = public_keys(&set);
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        metrics::gauge!("tally_ingest_jwks_keys").set(n as f64);
        Ok(n)
    }

    /// Reads the JWKS every `jwks_refresh_secs`; a failed read keeps the keys it had.
    pub async fn refresh_forever(self: Arc<Self>) {
        if self.config.jwks.is_none() {
            return;
        }
        let every = Duration::from_secs(self.config.jwks_refresh_secs.max(1));
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.refresh().await {
                metrics::counter!("tally_ingest_jwks_refresh_failures_total").increment(1);
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys it had.");
            }
        }
    }

    fn key(&self, kid: &str) -> Option<Arc<PublicKey>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        keys.get(kid).cloned()
    }

    /// An unknown `kid` may be a key rotated in since the last read: read again, at most
    /// once every `jwks_miss_refresh_secs` whatever a flood of made-up kids asks.
    async fn key_after_miss(&self, kid: &str) -> Option<Arc<PublicKey>> {
        let due = {
            let mut last = self
                .last_miss_refresh
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let every = Duration::from_secs(self.config.jwks_miss_refresh_secs);
            let due = last.is_none_or(|t| t.elapsed() >= every);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due && let Err(e) = self.refresh().await {
            metrics::counter!("tally_ingest_jwks_refresh_failures_total").increment(1);
            tracing::warn!(error = %e, "JWKS read after an unknown kid failed.");
        }
        self.key(kid)
    }

    /// Verifies `token` and returns its holder.
    pub async fn verify(&self, token: &str) -> Result<User, TokenError> {
        if !self.is_configured() {
            return Err(TokenError::NotConfigured);
        }
        let (alg, kid) = header_alg_and_kid(token)?;
        let validation = self.validation(alg);
        let key;
        let key: &DecodingKey = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => match (&self.hs256, alg) {
                (Some(secret), Algorithm::HS256) => secret,
                _ => return Err(TokenError::AlgorithmRefused(format!("{alg:?}"))),
            },
            _ => {
                let kid = kid.ok_or(TokenError::UnknownKey)?;
                key = match self.key(&kid) {
                    Some(k) => k,
                    None => self
                        .key_after_miss(&kid)
                        .await
                        .ok_or(TokenError::UnknownKey)?,
                };
                if !key.algorithms.contains(&alg) {
                    return Err(TokenError::AlgorithmRefused(format!(
                        "{alg:?} with a key for {:?}",
                        key.algorithms
                    )));
                }
                &key.key
            }
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &validation,
        )
        .map_err(refusal)?;
        self.user(&data.claims)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.jwt_leeway_secs;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.config.jwt_audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.config.jwt_issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    fn user(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<User, TokenError> {
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
        let id = text("sub")
            .and_then(|s| UserId::try_from(s).ok())
            .ok_or_else(|| TokenError::Malformed("'sub' is not a valid user id".into()))?;
        let group = match text(&self.config.jwt_group_claim) {
            Some(g) => Some(GroupId::try_from(g).map_err(|e| {
                TokenError::Malformed(format!("'{}' {e}", self.config.jwt_group_claim))
            })?),
            None => None,
        };
        let team = match text(&self.config.jwt_team_claim) {
            Some(t) => Some(TeamId::try_from(t).map_err(|e| {
                TokenError::Malformed(format!("'{}' {e}", self.config.jwt_team_claim))
            })?),
            None => None,
        };
        let verified = claims.get("email_verified").and_then(|v| v.as_bool()) != Some(false);
        let email = text("email")
            .filter(|e| verified && tally_schema::email::check_email("email", e).is_ok())
            .map(str::to_owned);
        let time_zone = text("zoneinfo")
            .filter(|z| tally_schema::email::check_time_zone("zoneinfo", z).is_ok())
            .map(str::to_owned);
        Ok(User {
            id,
            group,
            team,
            email,
            time_zone,
        })
    }
}

/// The header's `alg` and `kid`, read before anything is verified: `none`, and names this
/// library does not know, are refused here.
fn header_alg_and_kid(token: &str) -> Result<(Algorithm, Option<String>), TokenError> {
    use base64::Engine;
    let segment = token
        .split('.')
        .next()
        .filter(|_| token.split('.').count() == 3)
        .ok_or_else(|| TokenError::Malformed("a JWT has three dot-separated parts".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("the header is not base64url".into()))?;
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
    }
    let header: Header = serde_json::from_slice(&bytes)
        .map_err(|e| TokenError::Malformed(format!("the header: {e}")))?;
    let alg = header
        .alg
        .parse::<Algorithm>()
        .map_err(|_| TokenError::AlgorithmRefused(header.alg.clone()))?;
    Ok((alg, header.kid))
}

fn refusal(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.into_kind() {
        K::ExpiredSignature => TokenError::Expired,
        K::ImmatureSignature => TokenError::NotYetValid,
        K::InvalidAudience => TokenError::WrongAudience,
        K::InvalidIssuer => TokenError::WrongIssuer,
        K::InvalidSignature => TokenError::BadSignature,
        K::MissingRequiredClaim(c) => TokenError::MissingClaim(c),
        K::InvalidAlgorithm | K::MissingAlgorithm => {
            TokenError::AlgorithmRefused("not the key's algorithm".into())
        }
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

/// The keys of a JWK set that can verify signatures, by `kid`. A key without a `kid`, meant
/// for encryption, or of an unsupported type is left out.
fn public_keys(set: &JwkSet) -> HashMap<String, Arc<PublicKey>> {
    use jsonwebtoken::jwk::PublicKeyUse;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let by_type: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => continue,
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            // Symmetric keys never come from a JWKS here: HS256 uses the configured secret.
            _ => continue,
        };
        // A key that names its algorithm allows only that one.
        let algorithms = match jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok())
        {
            Some(alg) if by_type.contains(&alg) => vec![alg],
            Some(_) => continue,
            None => by_type,
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => drop(keys.insert(kid.clone(), Arc::new(PublicKey { key, algorithms }))),
            Err(e) => tracing::warn!(error = %e, %kid, "Skipping a JWKS key that does not load."),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config() -> TokenConfig {
        TokenConfig {
            jwt_hs256_secret: Some(SECRET.into()),
            jwt_issuer: Some("https://site.example".into()),
            jwt_audience: Some("tally".into()),
            jwt_leeway_secs: 5,
            jwt_group_claim: "tally_group".into(),
            jwt_team_claim: "tally_team".into(),
            ..Default::default()
        }
    }

    fn claims(exp_in: i64) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({"sub": "u1", "iss": "https://site.example", "aud": "tally",
                           "exp": now + exp_in, "tally_group": "vip"})
    }

    fn hs(claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hs256_tokens_are_checked_for_time_issuer_and_audience() {
        let v = Verifier::new(config()).await.unwrap();
        let user = v.verify(&hs(&claims(60))).await.unwrap();
        assert_eq!(user.id.as_str(), "u1");
        assert_eq!(user.group.unwrap().as_str(), "vip");
        let v = &v;
        let err = |t: String| async move { v.verify(&t).await.unwrap_err().code() };
        assert_eq!(err(hs(&claims(-60))).await, "token_expired");
        let mut c = claims(60);
        c["aud"] = "other".into();
        assert_eq!(err(hs(&c)).await, "token_wrong_audience");
        let mut c = claims(60);
        c["iss"] = "https://evil.example".into();
        assert_eq!(err(hs(&c)).await, "token_wrong_issuer");
        let mut c = claims(60);
        c["nbf"] = (chrono::Utc::now().timestamp() + 600).into();
        assert_eq!(err(hs(&c)).await, "token_not_yet_valid");
        let mut c = claims(60);
        c.as_object_mut().unwrap().remove("sub");
        assert_eq!(err(hs(&c)).await, "token_missing_claim");
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims(60),
            &EncodingKey::from_secret(b"another secret of thirty-two bytes!").unwrap(),
        )
        .unwrap();
        assert_eq!(err(forged).await, "token_bad_signature");
        assert_eq!(err("not.a.jwt".into()).await, "token_malformed");
        assert_eq!(err("junk".into()).await, "token_malformed");
    }

    #[tokio::test]
    async fn alg_none_and_unconfigured_algorithms_are_refused() {
        use base64::Engine;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let v = Verifier::new(config()).await.unwrap();
        for alg in ["none", "None", "NONE", "XS256"] {
            let token = format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": alg})),
                b64(&claims(60))
            );
            assert_eq!(
                v.verify(&token).await.unwrap_err().code(),
                "token_algorithm_refused",
                "{alg}"
            );
        }
        // HS384 is not the configured secret's algorithm.
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims(60),
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            v.verify(&hs384).await.unwrap_err().code(),
            "token_algorithm_refused"
        );
        // An asymmetric token without a kid names no key.
        let no_kid = format!(
            "{}.{}.sig",
            b64(&serde_json::json!({"alg": "ES256"})),
            b64(&claims(60))
        );
        assert_eq!(
            v.verify(&no_kid).await.unwrap_err().code(),
            "token_unknown_key"
        );
        let off = Verifier::new(TokenConfig::default()).await.unwrap();
        assert_eq!(
            off.verify(&hs(&claims(60))).await.unwrap_err().code(),
            "tokens_not_configured"
        );
    }

    #[tokio::test]
    async fn short_secrets_are_refused() {
        let mut c = config();
        c.jwt_hs256_secret = Some("short".into());
        assert!(Verifier::new(c).await.is_err());
    }
}
