//! Operational guards: API keys (bearer tokens with per-key endpoints) and
//! in-memory token-bucket rate limits per client IP and per payer.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// One configured key.
#[derive(Clone)]
struct ApiKey {
    id: String,
    secret: String,
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
            secret: key.into(),
            endpoints,
        });
        self
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

    /// The key whose secret is `presented`, comparing against every key (no
    /// early exit on a match).
    fn find(&self, presented: &str) -> Option<&ApiKey> {
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(key.secret.as_bytes(), presented.as_bytes()) {
                found = Some(key);
            }
        }
        found
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
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut id = String::from("key-");
    for byte in &digest[..6] {
        // Writing to a String cannot fail.
        let _ = write!(id, "{byte:02x}");
    }
    id
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Entries kept before idle (full) buckets are pruned.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket per key: `per_minute` requests per minute, bursts up to
/// `per_minute`. Kept in memory (per process).
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests per key and minute.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate_per_second(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    /// Takes one token for `key`; `Err(wait)` when the bucket is empty, with
    /// the time until a token is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let rate = self.rate_per_second();
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < capacity
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if rate > 0.0 {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        } else {
            Err(Duration::from_secs(60))
        }
    }
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
    fn token_bucket_refills() {
        let limiter = RateLimiter::new(2);
        let start = Instant::now();
        assert!(limiter.check_at("a", start).is_ok());
        assert!(limiter.check_at("a", start).is_ok());
        let wait = limiter.check_at("a", start).err();
        assert!(
            wait.is_some_and(|w| w > Duration::from_secs(29)),
            "{wait:?}"
        );
        assert!(limiter.check_at("b", start).is_ok());
        assert!(
            limiter
                .check_at("a", start + Duration::from_secs(31))
                .is_ok()
        );
        assert!(
            limiter
                .check_at("a", start + Duration::from_secs(31))
                .is_err()
        );
    }
}
