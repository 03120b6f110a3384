//! Admin API keys: `Authorization: Bearer <key>`, stored only as SHA-256 hashes and compared
//! in constant time. Missing or malformed credentials → 401; a key that matches nothing, or
//! a viewer key on a write → 403.

use crate::error::ApiError;
use crate::server::AppState;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Role {
    /// Read definitions and hidden results.
    Viewer,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Role::Viewer, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Prefix of every key, so a leaked one is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "tally_";

/// A new key: the prefix and 256 random bits in hex. Shown once; only its hash is stored.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{hex}")
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The role of `key` among the active `(role, hash)` pairs. Every stored hash is compared,
/// each in constant time, so timing says nothing about how close a guess came.
pub fn match_key(key: &str, active: &[(String, Vec<u8>)]) -> Option<Role> {
    let hash = hash_key(key);
    let mut found = None;
    for (role, stored) in active {
        if bool::from(stored.as_slice().ct_eq(&hash)) {
            found = Role::parse(role);
        }
    }
    found
}

/// A request that presented a valid key; handlers check its role with [`Caller::require`].
#[derive(Clone, Copy, Debug)]
pub struct Caller(pub Role);

impl Caller {
    pub fn require(self, role: Role) -> Result<(), ApiError> {
        match self.0 >= role {
            true => Ok(()),
            false => Err(ApiError::Forbidden {
                code: "insufficient_role",
                message: format!("this needs a key with the {} role", role.as_str()),
            }),
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
        message: "send the key as 'Authorization: Bearer <key>'".into(),
    }))
}

/// Checks the key against Postgres (admin calls are rare; a revocation takes effect at once).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let active = crate::resource_store::active_keys(&state.pool)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    match match_key(token, &active) {
        Some(role) => Ok(Caller(role)),
        None => {
            tracing::warn!("Refused an admin request with an unknown key.");
            Err(ApiError::Forbidden {
                code: "invalid_key",
                message: "the key is not valid".into(),
            })
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts) {
            None => Err(ApiError::Unauthorized {
                message: "this needs an API key: 'Authorization: Bearer <key>'".into(),
            }),
            Some(token) => authenticate(state, token?).await,
        }
    }
}

/// For public routes that show more to a key holder: `None` without a header.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts) {
            None => Ok(Self(None)),
            Some(token) => Ok(Self(Some(authenticate(state, token?).await?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_by_hash_only() {
        let (admin, viewer) = (generate_key(), generate_key());
        assert!(admin.starts_with(KEY_PREFIX) && admin.len() == KEY_PREFIX.len() + 64);
        let active = vec![
            ("admin".to_owned(), hash_key(&admin).to_vec()),
            ("viewer".to_owned(), hash_key(&viewer).to_vec()),
        ];
        assert_eq!(match_key(&admin, &active), Some(Role::Admin));
        assert_eq!(match_key(&viewer, &active), Some(Role::Viewer));
        assert_eq!(match_key("tally_guess", &active), None);
        assert_eq!(match_key(&admin[..admin.len() - 1], &active), None);
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Caller(Role::Admin).require(Role::Viewer).is_ok());
        assert!(Caller(Role::Viewer).require(Role::Admin).is_err());
    }
}
