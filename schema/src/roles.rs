//! API keys as the `api_keys` table holds them: what a key's role may do, how a key is made
//! and hashed (only the hash is stored), and the statements that create, list and revoke keys,
//! shared by ingest and the `tally` CLI.

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a key may do: the `api_keys.role` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read definitions and hidden results.
    Viewer,
    /// Post scores to tournaments that take them from keys, and set match statuses.
    Scorekeeper,
    /// An organiser's backend: acts for any user it names (it vouches for them).
    Site,
    /// Everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Scorekeeper, Role::Site, Role::Admin];

    /// The name stored in `api_keys.role` (and taken by `tally keys create --role`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Scorekeeper => "scorekeeper",
            Role::Site => "site",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// One line on what the role may do, for help texts.
    pub fn describe(self) -> &'static str {
        match self {
            Role::Viewer => "Read definitions and hidden results.",
            Role::Scorekeeper => {
                "Post scores to tournaments that take them from keys; set match statuses."
            }
            Role::Site => "An organiser's backend: acts for any user it names.",
            Role::Admin => "Everything.",
        }
    }

    /// Whether a key of this role may do what `need` may: admin may do everything.
    pub fn allows(self, need: Role) -> bool {
        self == Role::Admin || self == need
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a role (viewer, scorekeeper, site or admin)")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Prefix of every key, so a leaked one is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "tally_";

/// A new key: the prefix and 256 bits from `rng` in hex. Shown once; only its hash is stored.
/// Callers pass a cryptographically secure generator (`rand::rng()`).
pub fn generate_key(rng: &mut (impl RngCore + ?Sized)) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{hex}")
}

/// What `api_keys.key_hash` holds: the SHA-256 of the whole key. Keys are 256 random bits,
/// so a slow password hash would add nothing.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The statements on `api_keys`, from `postgres/queries/api_keys_*.sql`.
pub mod queries {
    /// `$1` id (UUIDv7), `$2` name, `$3` role ([`super::Role::as_str`]), `$4` [`super::hash_key`].
    pub const CREATE_KEY: &str = include_str!("../postgres/queries/api_keys_create.sql");
    /// Rows of `(name, role, created_at, revoked)`, by name; never the hash.
    pub const LIST_KEYS: &str = include_str!("../postgres/queries/api_keys_list.sql");
    /// `$1` name; affects one row, or none when no active key has that name.
    pub const REVOKE_KEY: &str = include_str!("../postgres/queries/api_keys_revoke.sql");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_reads_back_from_its_name_in_every_form() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".to_owned())));
        assert_eq!(Role::parse("Admin"), None);
    }

    #[test]
    fn every_role_is_one_the_table_accepts() {
        let check = include_str!("../postgres/migrations/0009_key_roles.sql")
            .lines()
            .find(|l| l.contains("CHECK (role IN"))
            .expect("the role constraint");
        for role in Role::ALL {
            assert!(check.contains(&format!("'{}'", role.as_str())), "{check}");
        }
        assert_eq!(check.matches('\'').count(), 2 * Role::ALL.len(), "{check}");
    }

    #[test]
    fn admin_may_do_everything_and_others_only_their_own() {
        for role in Role::ALL {
            assert!(Role::Admin.allows(role));
            assert_eq!(role.allows(Role::Admin), role == Role::Admin);
            assert!(role.allows(role));
        }
        assert!(!Role::Site.allows(Role::Scorekeeper));
    }

    #[test]
    fn keys_are_prefixed_hex_and_hashed_whole() {
        use rand_chacha::rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let (a, b) = (generate_key(&mut rng), generate_key(&mut rng));
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64);
        assert!(a[KEY_PREFIX.len()..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(hash_key(&a), hash_key(&a[..a.len() - 1]));
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1): the stored hash is plain SHA-256.
        assert_eq!(hash_key("abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn the_key_statements_are_the_shared_files() {
        assert!(queries::CREATE_KEY.contains("INSERT INTO api_keys (id, name, role, key_hash)"));
        assert!(queries::LIST_KEYS.contains("FROM api_keys ORDER BY name"));
        assert!(!queries::LIST_KEYS.contains("key_hash"));
        assert!(queries::REVOKE_KEY.contains("revoked_at IS NULL"));
    }
}
