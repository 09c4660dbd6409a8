//! Operational guards: API keys (bearer tokens with per-key endpoints) and
//! in-memory rate limits per client address and per payer.

mod rate_limit;

use std::fmt;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

pub(crate) use rate_limit::run_housekeeping;
pub use rate_limit::{ClientKey, DEFAULT_MAX_TRACKED_KEYS, HOUSEKEEPING_INTERVAL, RateLimiter};

/// Default of [`crate::AppState::with_max_concurrent_settlements`]: most
/// settlements run at once before `/settle` answers `503 overloaded`.
pub const DEFAULT_MAX_CONCURRENT_SETTLEMENTS: usize = 64;

/// An endpoint an API key may be allowed to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /verify`.
    Verify,
    /// `POST /settle`.
    Settle,
    /// `GET /supported`.
    Supported,
}

impl Endpoint {
    /// All endpoints that can be protected.
    pub const ALL: [Endpoint; 3] = [Endpoint::Verify, Endpoint::Settle, Endpoint::Supported];

    /// Parses a configuration name (`verify`, `settle`, `supported`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "verify" => Self::Verify,
            "settle" => Self::Settle,
            "supported" => Self::Supported,
            _ => return None,
        })
    }

    /// The endpoint served at `path`, if it is one that can be protected.
    pub fn of_path(path: &str) -> Option<Self> {
        Self::parse(path.strip_prefix('/')?)
    }

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Settle => "settle",
            Self::Supported => "supported",
        }
    }
}

/// One configured key. Only the key's SHA-256 is kept: comparing
/// fixed-length digests leaks neither the key's length nor, through
/// timing, how much of it a guess matched.
#[derive(Clone)]
struct ApiKey {
    id: String,
    digest: [u8; 32],
    endpoints: Vec<Endpoint>,
}

/// The configured API keys. An endpoint that at least one key lists needs a
/// key (`Authorization: Bearer <key>`); endpoints no key lists stay open.
///
/// Each key has an id, which names the caller in the ledger and in logs
/// (never the key itself): the configured name, or else `key-` and the
/// first 12 hex digits of the key's SHA-256.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("count", &self.keys.len())
            .finish()
    }
}

/// Why a request was refused by [`ApiKeys::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No key, a malformed header or an unknown key (401).
    Unauthorized,
    /// A valid key that is not allowed on this endpoint (403).
    Forbidden,
}

impl ApiKeys {
    /// No keys: every endpoint is open.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a key allowed on `endpoints`, identified by a digest of the key.
    pub fn with_key(self, key: impl Into<String>, endpoints: Vec<Endpoint>) -> Self {
        let key = key.into();
        let id = digest_id(&key);
        self.with_named_key(id, key, endpoints)
    }

    /// Adds a key allowed on `endpoints`, identified as `id`.
    pub fn with_named_key(
        mut self,
        id: impl Into<String>,
        key: impl Into<String>,
        endpoints: Vec<Endpoint>,
    ) -> Self {
        self.keys.push(ApiKey {
            id: id.into(),
            digest: Sha256::digest(key.into().as_bytes()).into(),
            endpoints,
        });
        self
    }

    /// The id of every configured key.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|key| key.id.clone()).collect()
    }

    /// Whether `endpoint` needs a key.
    pub fn protects(&self, endpoint: Endpoint) -> bool {
        self.keys
            .iter()
            .any(|key| key.endpoints.contains(&endpoint))
    }

    /// The id of the key the `Authorization` header presents, if it is a
    /// configured one (whether or not the endpoint needs a key).
    pub fn identify(&self, authorization: Option<&str>) -> Option<&str> {
        let presented = bearer_token(authorization)?;
        self.find(presented).map(|key| key.id.as_str())
    }

    /// The key whose secret is `presented`. Every key's digest is compared
    /// in constant time and the match is selected without a branch, so the
    /// time taken says neither which key matched nor how closely a wrong
    /// guess came.
    fn find(&self, presented: &str) -> Option<&ApiKey> {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = u64::MAX;
        for (index, key) in (0u64..).zip(&self.keys) {
            found.conditional_assign(&index, key.digest[..].ct_eq(&presented[..]));
        }
        usize::try_from(found)
            .ok()
            .and_then(|index| self.keys.get(index))
    }

    /// Checks the `Authorization` header value for `endpoint`.
    pub fn check(
        &self,
        endpoint: Endpoint,
        authorization: Option<&str>,
    ) -> Result<(), AuthFailure> {
        if !self.protects(endpoint) {
            return Ok(());
        }
        let presented = bearer_token(authorization).ok_or(AuthFailure::Unauthorized)?;
        match self.find(presented) {
            None => Err(AuthFailure::Unauthorized),
            Some(key) if key.endpoints.contains(&endpoint) => Ok(()),
            Some(_) => Err(AuthFailure::Forbidden),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    authorization
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .filter(|token| !token.is_empty())
}

/// `key-` and the first 12 hex digits of the key's SHA-256: stable across
/// restarts and configuration reorderings, and not the key.
fn digest_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = String::from("key-");
    for byte in &digest[..6] {
        // Writing to a String cannot fail.
        let _ = write!(id, "{byte:02x}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_protect_listed_endpoints() {
        let keys = ApiKeys::none()
            .with_key("full", Endpoint::ALL.to_vec())
            .with_key("verify-only", vec![Endpoint::Verify]);
        assert_eq!(keys.check(Endpoint::Settle, Some("Bearer full")), Ok(()));
        assert_eq!(
            keys.check(Endpoint::Verify, Some("bearer verify-only")),
            Ok(())
        );
        assert_eq!(
            keys.check(Endpoint::Settle, Some("Bearer verify-only")),
            Err(AuthFailure::Forbidden)
        );
        assert_eq!(
            keys.check(Endpoint::Settle, Some("Bearer wrong")),
            Err(AuthFailure::Unauthorized)
        );
        assert_eq!(
            keys.check(Endpoint::Settle, Some("Basic full")),
            Err(AuthFailure::Unauthorized)
        );
        assert_eq!(
            keys.check(Endpoint::Settle, None),
            Err(AuthFailure::Unauthorized)
        );
        let open = ApiKeys::none().with_key("k", vec![Endpoint::Settle]);
        assert_eq!(open.check(Endpoint::Supported, None), Ok(()));
        assert_eq!(ApiKeys::none().check(Endpoint::Settle, None), Ok(()));
        assert!(!format!("{keys:?}").contains("full"));
    }

    #[test]
    fn keys_are_identified_by_name_or_digest() {
        let keys = ApiKeys::none()
            .with_key("first-key-0123456789", vec![Endpoint::Verify])
            .with_named_key("shop-a", "second-key-0123456789", vec![Endpoint::Settle]);
        let first = keys.identify(Some("Bearer first-key-0123456789"));
        assert!(
            first.is_some_and(|id| id.starts_with("key-") && id.len() == 16),
            "{first:?}"
        );
        assert!(first.is_some_and(|id| !id.contains("first")));
        assert_eq!(
            first,
            ApiKeys::none()
                .with_key("first-key-0123456789", vec![])
                .identify(Some("bearer first-key-0123456789"))
        );
        // Identified even on an endpoint the key may not call.
        assert_eq!(
            keys.identify(Some("Bearer second-key-0123456789")),
            Some("shop-a")
        );
        assert_eq!(keys.identify(Some("Bearer unknown-key-0123456789")), None);
        assert_eq!(keys.identify(None), None);
    }

    #[test]
    fn only_the_exact_key_is_accepted() {
        let secret = "k3y-0123456789abcdef";
        let keys = ApiKeys::none()
            .with_key("another-key-0000000000", vec![Endpoint::Verify])
            .with_named_key("shop", secret, vec![Endpoint::Settle]);
        let check = |token: &str| keys.check(Endpoint::Settle, Some(&format!("Bearer {token}")));
        assert_eq!(check(secret), Ok(()));
        // Same length, one byte off (first, last).
        assert_eq!(
            check("x3y-0123456789abcdef"),
            Err(AuthFailure::Unauthorized)
        );
        assert_eq!(
            check("k3y-0123456789abcdeg"),
            Err(AuthFailure::Unauthorized)
        );
        // A prefix of the key, and the key with more after it.
        assert_eq!(check("k3y-0123456789abcde"), Err(AuthFailure::Unauthorized));
        assert_eq!(
            check("k3y-0123456789abcdef0"),
            Err(AuthFailure::Unauthorized)
        );
        // Empty (and blank) tokens.
        assert_eq!(
            keys.check(Endpoint::Settle, Some("Bearer ")),
            Err(AuthFailure::Unauthorized)
        );
        assert_eq!(
            keys.check(Endpoint::Settle, Some("Bearer")),
            Err(AuthFailure::Unauthorized)
        );
        assert_eq!(keys.identify(Some("Bearer ")), None);
        // Each key is found wherever it is in the list.
        assert_eq!(
            keys.identify(Some(&format!("Bearer {secret}"))),
            Some("shop")
        );
        assert_eq!(
            keys.check(Endpoint::Verify, Some("Bearer another-key-0000000000")),
            Ok(())
        );
    }

    #[test]
    fn debug_never_shows_a_key() {
        let secret = "very-secret-key-0123456789";
        let keys = ApiKeys::none().with_named_key("shop", secret, vec![Endpoint::Settle]);
        let digest: String = Sha256::digest(secret.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for shown in [format!("{keys:?}"), format!("{keys:#?}")] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(!shown.contains(&digest[..12]), "{shown}");
        }
    }
}
