//! Who is calling: an API key (`Authorization: Bearer tally_…`), a user token (any other
//! bearer: a JWT, see [`crate::identity`]) or nobody.
//!
//! Keys are stored only as SHA-256 hashes; the active ones are held in memory ([`KeyRing`]),
//! read again every `key_refresh_secs` and, at most once a second, when an unknown key
//! arrives, so a flood of junk keys never costs a Postgres query each. Missing or malformed
//! credentials → 401; a key that matches nothing, or one whose role is not enough → 403.

use crate::error::ApiError;
use crate::identity::{TokenError, User};
use crate::server::AppState;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tally_schema::ids::KeyOwner;

pub use tally_schema::roles::{KEY_PREFIX, Role, hash_key};

/// A new key: the prefix and 256 random bits in hex. Shown once; only its hash is stored.
pub fn generate_key() -> String {
    tally_schema::roles::generate_key(&mut rand::rng())
}

/// The active keys, by hash, in memory.
pub struct KeyRing {
    pool: sqlx::PgPool,
    keys: RwLock<Arc<HashMap<[u8; 32], Role>>>,
    /// When the keys were last read for an unknown key; held while reading.
    last_miss_reload: tokio::sync::Mutex<Option<Instant>>,
    miss_reload_every: Duration,
}

impl KeyRing {
    pub async fn load(
        pool: sqlx::PgPool,
        miss_reload_every: Duration,
    ) -> Result<Self, crate::store::StoreError> {
        let ring = Self {
            pool,
            keys: RwLock::default(),
            last_miss_reload: tokio::sync::Mutex::default(),
            miss_reload_every,
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// Reads the active keys again and swaps them in.
    pub async fn reload(&self) -> Result<usize, crate::store::StoreError> {
        let active = crate::store::active_keys(&self.pool).await?;
        let keys: HashMap<[u8; 32], Role> = active
            .into_iter()
            .filter_map(|(role, hash)| Some((hash.try_into().ok()?, Role::parse(&role)?)))
            .collect();
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        metrics::gauge!("tally_ingest_active_keys").set(n as f64);
        Ok(n)
    }

    fn lookup(&self, hash: &[u8; 32]) -> Option<Role> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
            .copied()
    }

    /// The role of `key`. A key created since the last read is found by reading again, at
    /// most once per `miss_reload_every` however many unknown keys arrive: a flood of junk
    /// keys costs one query per interval, not one per request, and waits for nothing.
    pub async fn role(&self, key: &str) -> Option<Role> {
        let hash = hash_key(key);
        if let Some(role) = self.lookup(&hash) {
            return Some(role);
        }
        let arrived = Instant::now();
        let mut last = self.last_miss_reload.lock().await;
        // Someone read the keys after this request arrived: their read answers it.
        let fresh = last.is_some_and(|t| t >= arrived);
        let due = last.is_none_or(|t| t.elapsed() >= self.miss_reload_every);
        if !fresh && due {
            let started = Instant::now();
            if let Err(e) = self.reload().await {
                tally_kit::warn_once_a_second!(error = %e, "Reading the API keys failed; keeping the ones held.");
            }
            metrics::counter!("tally_ingest_key_miss_reloads_total").increment(1);
            *last = Some(started);
        }
        drop(last);
        self.lookup(&hash)
    }

    /// Reads the keys again whenever Postgres announces a change to them (a trigger's
    /// `NOTIFY tally_api_keys`: a revocation takes effect within milliseconds), and every
    /// `every` in case an announcement was missed.
    pub async fn reload_forever(self: Arc<Self>, every: Duration) {
        let mut listener = None;
        loop {
            if listener.is_none() {
                listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                    Ok(mut l) => match l.listen("tally_api_keys").await {
                        Ok(()) => Some(l),
                        Err(e) => {
                            tracing::warn!(error = %e, "Cannot listen for key changes; reading them every few seconds.");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "Cannot listen for key changes; reading them every few seconds.");
                        None
                    }
                };
                // Whatever changed while nobody listened.
                if let Err(e) = self.reload().await {
                    tracing::warn!(error = %e, "Reading the API keys failed; keeping the ones held.");
                }
            }
            let changed = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(drop),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                got = changed => if let Err(e) = got {
                    tracing::warn!(error = %e, "Lost the key-change listener; reconnecting.");
                    listener = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                },
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "Reading the API keys failed; keeping the ones held.");
            }
        }
    }
}

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// A valid API key: its role, and a short id (the start of its hash) for event ids.
    Key { role: Role, id: String },
    /// A verified user token.
    User(User),
}

impl Principal {
    /// The owner an idempotency key is namespaced under.
    pub fn key_owner(&self) -> KeyOwner<'_> {
        match self {
            Principal::Anonymous => KeyOwner::Anonymous,
            Principal::Key { id, .. } => KeyOwner::ApiKey(id),
            Principal::User(u) => KeyOwner::User(u.id.as_str()),
        }
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::Key { role, .. } => Some(*role),
            _ => None,
        }
    }
}

/// The bearer token of a request, if it sent an `Authorization` header at all.
fn bearer(parts: &Parts) -> Option<Result<&str, ApiError>> {
    let value = parts.headers.get(header::AUTHORIZATION)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    Some(token.ok_or(ApiError::Unauthorized {
        code: "unauthorized",
        message: "send credentials as 'Authorization: Bearer <key or token>'".into(),
    }))
}

fn refused(reason: &'static str) {
    metrics::counter!("tally_ingest_auth_refusals_total", "reason" => reason).increment(1);
}

/// An API key's role and short id, from memory; anything else (an unknown key, a credential
/// that is not a key at all) → 403.
async fn key_role(state: &AppState, credential: &str) -> Result<(Role, String), ApiError> {
    let role = match credential.starts_with(KEY_PREFIX) {
        true => state.keys.role(credential).await,
        false => None,
    };
    match role {
        Some(role) => {
            let hash = hash_key(credential);
            let id = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
            Ok((role, id))
        }
        None => {
            refused("invalid_key");
            tally_kit::warn_once_a_second!("Refused a request with an unknown API key.");
            Err(ApiError::Forbidden {
                code: "invalid_key",
                message: "the key is not valid".into(),
            })
        }
    }
}

/// Resolves a bearer credential: an API key from memory, or a user token.
pub async fn authenticate(state: &AppState, credential: &str) -> Result<Principal, ApiError> {
    if credential.starts_with(KEY_PREFIX) {
        let (role, id) = key_role(state, credential).await?;
        return Ok(Principal::Key { role, id });
    }
    state
        .verifier
        .verify(credential)
        .await
        .map(Principal::User)
        .map_err(|e| {
            refused(e.code());
            token_refused(e)
        })
}

pub fn token_refused(e: TokenError) -> ApiError {
    ApiError::Unauthorized {
        code: e.code(),
        message: e.to_string(),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts) {
            None => Ok(Principal::Anonymous),
            Some(credential) => authenticate(state, credential?).await,
        }
    }
}

/// A request that presented a valid API key; handlers check its role with [`Caller::require`].
#[derive(Clone, Copy, Debug)]
pub struct Caller(pub Role);

impl Caller {
    pub fn require(self, role: Role) -> Result<(), ApiError> {
        match self.0.allows(role) {
            true => Ok(()),
            false => Err(ApiError::Forbidden {
                code: "insufficient_role",
                message: format!("this needs a key with the {} role", role.as_str()),
            }),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(credential) = bearer(parts) else {
            return Err(ApiError::Unauthorized {
                code: "unauthorized",
                message: "this needs an API key: 'Authorization: Bearer <key>'".into(),
            });
        };
        // Only a key will do: anything else is not verified as a token at all.
        let (role, _) = key_role(state, credential?).await?;
        Ok(Caller(role))
    }
}

/// For public routes that show more to a key holder: `None` without a key. A bearer that
/// is not a key (a user token) is not verified here: these routes do not need it.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts) {
            Some(Ok(credential)) if credential.starts_with(KEY_PREFIX) => {
                let (role, _) = key_role(state, credential).await?;
                Ok(Self(Some(Caller(role))))
            }
            _ => Ok(Self(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_prefixed() {
        let (a, b) = (generate_key(), generate_key());
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64);
        assert_ne!(a, b);
        assert_ne!(hash_key(&a), hash_key(&a[..a.len() - 1]));
    }

    #[test]
    fn admin_may_do_everything_and_others_only_their_own() {
        for role in Role::ALL {
            assert!(Caller(Role::Admin).require(role).is_ok());
            assert_eq!(
                Caller(role).require(Role::Admin).is_ok(),
                role == Role::Admin
            );
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert!(Caller(Role::Viewer).require(Role::Viewer).is_ok());
        assert!(Caller(Role::Site).require(Role::Scorekeeper).is_err());
        assert!(Caller(Role::Scorekeeper).require(Role::Viewer).is_err());
    }
}
