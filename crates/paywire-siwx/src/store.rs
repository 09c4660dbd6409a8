//! Persistence behind two traits: [`NonceStore`] (server-issued, single-use
//! challenge nonces) and [`EntitlementStore`] (who paid for what, and revoked
//! session tokens), each with an in-memory ([`MemoryStore`]) and, with the
//! `sqlite` feature, a SQLite (`SqliteStore`) implementation (PostgreSQL:
//! `crate::postgres`, feature `postgres`). All times are Unix milliseconds.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard};

use paywire_core::BoxFuture;

#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// A store failed (I/O, lock poisoned, corrupt data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sign-in store failed: {0}")]
pub struct StoreError(pub String);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<paywire_store::StoreError> for StoreError {
    fn from(error: paywire_store::StoreError) -> Self {
        // paywire-store's messages never contain a database password.
        Self(error.to_string())
    }
}

#[cfg(feature = "postgres")]
impl From<paywire_store::tokio_postgres::Error> for StoreError {
    fn from(error: paywire_store::tokio_postgres::Error) -> Self {
        paywire_store::StoreError::from(error).into()
    }
}

/// The state of a nonce presented by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Issued by us for this resource, unused and unexpired (after
    /// [`NonceStore::consume_nonce`]: it has now been consumed by this call).
    Valid,
    /// Never issued by us (or purged long after expiry).
    Unknown,
    /// Already consumed.
    Used,
    /// Past its expiry.
    Expired,
    /// Issued for another resource URI.
    WrongResource,
}

/// Server-issued challenge nonces, each bound to a resource URI and an expiry.
pub trait NonceStore: Send + Sync {
    /// Records a nonce issued at `now` for `uri`, valid until `expires_at`.
    /// Fails if the nonce already exists.
    fn issue_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The nonce's state, without changing it (a cheap pre-check before the
    /// signature is verified).
    fn check_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>>;

    /// Atomically consumes the nonce if it is [`NonceState::Valid`]; of two
    /// concurrent calls exactly one sees `Valid`.
    fn consume_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>>;

    /// Forgets nonces that expired before `now`; returns how many.
    fn purge_nonces(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// What a payer holds for a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    /// Payer address (EVM addresses are stored lowercase).
    pub address: String,
    /// CAIP-2 network the payment was made on.
    pub network: String,
    /// Route pattern or resource the entitlement covers.
    pub scope: String,
    /// When it was granted.
    pub granted_at: u64,
    /// When it ends (`None`: never).
    pub expires_at: Option<u64>,
    /// Uses left (`None`: unlimited).
    pub remaining_uses: Option<u32>,
}

/// How a route turns a payment into access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessPolicy {
    /// Pay once, access forever.
    PayOnce,
    /// Access for a duration after payment (an access pass).
    Pass {
        /// Length of the pass in milliseconds.
        duration_ms: u64,
    },
    /// A number of accesses (the paid request itself not included).
    Uses(u32),
}

impl AccessPolicy {
    /// The entitlement a payment by `address` on `network` grants at `now`.
    pub fn entitlement(&self, address: &str, network: &str, scope: &str, now: u64) -> Entitlement {
        let (expires_at, remaining_uses) = match *self {
            Self::PayOnce => (None, None),
            Self::Pass { duration_ms } => (Some(now.saturating_add(duration_ms)), None),
            Self::Uses(n) => (None, Some(n)),
        };
        Entitlement {
            address: normalize_address(network, address),
            network: network.to_owned(),
            scope: scope.to_owned(),
            granted_at: now,
            expires_at,
            remaining_uses,
        }
    }
}

/// The canonical stored form of an address: lowercase for `eip155`
/// (checksums are presentation only), unchanged otherwise (base58 is case
/// sensitive).
pub fn normalize_address(network: &str, address: &str) -> String {
    if network.starts_with("eip155:") {
        address.to_ascii_lowercase()
    } else {
        address.to_owned()
    }
}

/// Entitlements and revoked session tokens.
pub trait EntitlementStore: Send + Sync {
    /// Records an entitlement (typically after a successful settlement).
    fn grant<'a>(&'a self, entitlement: &'a Entitlement) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Finds a live entitlement of `address` on `network` for `scope` at
    /// `now`, consuming one use if it is use-limited. Unlimited entitlements
    /// are preferred over passes, and passes over counted uses. Returns the
    /// entitlement as it is after this access.
    fn check<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<Entitlement>, StoreError>>;

    /// Removes every entitlement of `address` for `scope`; returns how many.
    fn revoke<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Adds a session token id to the revocation list until `expires_at`.
    fn revoke_session<'a>(
        &'a self,
        token_id: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Whether a session token id was revoked.
    fn is_session_revoked<'a>(
        &'a self,
        token_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

fn live(entitlement: &Entitlement, now: u64) -> bool {
    entitlement.expires_at.is_none_or(|end| now < end)
        && entitlement.remaining_uses.is_none_or(|n| n > 0)
}

/// Preference key: unlimited first, then passes (latest end first), then uses.
fn preference(e: &Entitlement) -> (bool, bool, Reverse<u64>) {
    (
        e.remaining_uses.is_some(),
        e.expires_at.is_some(),
        Reverse(e.expires_at.unwrap_or(u64::MAX)),
    )
}

#[derive(Debug)]
pub(crate) struct IssuedNonce {
    pub(crate) uri: String,
    pub(crate) expires_at: u64,
    pub(crate) used: bool,
}

#[derive(Debug, Default)]
struct MemoryState {
    nonces: HashMap<String, IssuedNonce>,
    /// The nonces by expiry, earliest first, so that purging costs
    /// O(expired · log n) instead of a scan of every live nonce.
    expiries: BinaryHeap<Reverse<(u64, String)>>,
    entitlements: Vec<Entitlement>,
    revoked: HashMap<String, u64>,
}

/// Process-local store (tests, single-instance servers). Issuing a nonce
/// purges expired ones, so memory stays bounded by the issue rate × TTL.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, MemoryState>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError("memory store lock poisoned".into()))
    }
}

impl MemoryState {
    /// Forgets the nonces expired at `now`; returns how many.
    fn purge_nonces(&mut self, now: u64) -> u64 {
        let mut purged = 0;
        while let Some(Reverse((expires_at, _))) = self.expiries.peek() {
            if *expires_at > now {
                break;
            }
            if let Some(Reverse((_, nonce))) = self.expiries.pop()
                && self.nonces.remove(&nonce).is_some()
            {
                purged += 1;
            }
        }
        purged
    }
}

pub(crate) fn nonce_state(entry: Option<&IssuedNonce>, uri: &str, now: u64) -> NonceState {
    match entry {
        None => NonceState::Unknown,
        Some(entry) if entry.uri != uri => NonceState::WrongResource,
        Some(entry) if entry.used => NonceState::Used,
        Some(entry) if now >= entry.expires_at => NonceState::Expired,
        Some(_) => NonceState::Valid,
    }
}

impl NonceStore for MemoryStore {
    fn issue_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            state.purge_nonces(now);
            if state.nonces.contains_key(nonce) {
                return Err(StoreError("nonce already issued".into()));
            }
            state.expiries.push(Reverse((expires_at, nonce.to_owned())));
            state.nonces.insert(
                nonce.to_owned(),
                IssuedNonce {
                    uri: uri.to_owned(),
                    expires_at,
                    used: false,
                },
            );
            Ok(())
        })
    }

    fn check_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>> {
        Box::pin(async move { Ok(nonce_state(self.lock()?.nonces.get(nonce), uri, now)) })
    }

    fn consume_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let entry = state.nonces.get_mut(nonce);
            let result = nonce_state(entry.as_deref(), uri, now);
            if let (NonceState::Valid, Some(entry)) = (result, entry) {
                entry.used = true;
            }
            Ok(result)
        })
    }

    fn purge_nonces(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut state = self.lock()?;
            let purged = state.purge_nonces(now);
            state.revoked.retain(|_, end| *end > now);
            Ok(purged)
        })
    }
}

impl EntitlementStore for MemoryStore {
    fn grant<'a>(&'a self, entitlement: &'a Entitlement) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut stored = entitlement.clone();
            stored.address = normalize_address(&stored.network, &stored.address);
            self.lock()?.entitlements.push(stored);
            Ok(())
        })
    }

    fn check<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<Entitlement>, StoreError>> {
        Box::pin(async move {
            let address = normalize_address(network, address);
            let mut state = self.lock()?;
            let best = state
                .entitlements
                .iter_mut()
                .filter(|e| {
                    e.address == address && e.network == network && e.scope == scope && live(e, now)
                })
                .min_by_key(|e| preference(e));
            Ok(best.map(|e| {
                if let Some(n) = e.remaining_uses.as_mut() {
                    *n -= 1;
                }
                e.clone()
            }))
        })
    }

    fn revoke<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let address = normalize_address(network, address);
            let mut state = self.lock()?;
            let before = state.entitlements.len();
            state
                .entitlements
                .retain(|e| !(e.address == address && e.network == network && e.scope == scope));
            Ok((before - state.entitlements.len()) as u64)
        })
    }

    fn revoke_session<'a>(
        &'a self,
        token_id: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.lock()?.revoked.insert(token_id.to_owned(), expires_at);
            Ok(())
        })
    }

    fn is_session_revoked<'a>(
        &'a self,
        token_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.lock()?.revoked.contains_key(token_id)) })
    }
}

/// Converts a time or count to SQL's signed integers (saturating).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads a time or count from SQL's signed integers (negative as zero).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pair = (Box<dyn NonceStore>, Box<dyn EntitlementStore>);

    /// Fresh memory and SQLite stores, so every test covers both.
    async fn stores() -> Vec<(&'static str, Pair)> {
        vec![
            (
                "memory",
                (Box::new(MemoryStore::new()), Box::new(MemoryStore::new())),
            ),
            (
                "sqlite",
                (
                    Box::new(SqliteStore::in_memory().await.unwrap()),
                    Box::new(SqliteStore::in_memory().await.unwrap()),
                ),
            ),
        ]
    }

    const X: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
    const Y: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    const NET: &str = "eip155:8453";

    #[tokio::test]
    async fn nonce_lifecycle() {
        for (name, (nonces, _)) in stores().await {
            nonces
                .issue_nonce("n1", "https://a/x", 0, 1000)
                .await
                .unwrap();
            assert_eq!(
                nonces.check_nonce("n1", "https://a/x", 10).await.unwrap(),
                NonceState::Valid,
                "{name}"
            );
            assert_eq!(
                nonces.check_nonce("zz", "https://a/x", 10).await.unwrap(),
                NonceState::Unknown,
                "{name}"
            );
            assert_eq!(
                nonces.check_nonce("n1", "https://a/y", 10).await.unwrap(),
                NonceState::WrongResource,
                "{name}"
            );
            assert_eq!(
                nonces.consume_nonce("n1", "https://a/y", 10).await.unwrap(),
                NonceState::WrongResource,
                "{name}"
            );
            assert_eq!(
                nonces.check_nonce("n1", "https://a/x", 1000).await.unwrap(),
                NonceState::Expired,
                "{name}"
            );
            assert_eq!(
                nonces.consume_nonce("n1", "https://a/x", 10).await.unwrap(),
                NonceState::Valid,
                "{name}"
            );
            assert_eq!(
                nonces.consume_nonce("n1", "https://a/x", 11).await.unwrap(),
                NonceState::Used,
                "{name}"
            );
            assert_eq!(nonces.purge_nonces(1000).await.unwrap(), 1, "{name}");
            assert_eq!(
                nonces.check_nonce("n1", "https://a/x", 11).await.unwrap(),
                NonceState::Unknown,
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn entitlement_of_x_is_not_usable_by_y() {
        for (name, (_, store)) in stores().await {
            store
                .grant(&AccessPolicy::PayOnce.entitlement(X, NET, "/premium", 0))
                .await
                .unwrap();
            let lower = X.to_ascii_lowercase();
            assert!(
                store
                    .check(&lower, NET, "/premium", 5)
                    .await
                    .unwrap()
                    .is_some(),
                "{name}"
            );
            assert!(
                store
                    .check(X, NET, "/premium", u64::MAX - 1)
                    .await
                    .unwrap()
                    .is_some(),
                "{name}"
            );
            assert!(
                store.check(Y, NET, "/premium", 5).await.unwrap().is_none(),
                "{name}"
            );
            assert!(
                store.check(X, NET, "/other", 5).await.unwrap().is_none(),
                "{name}"
            );
            assert!(
                store
                    .check(X, "eip155:1", "/premium", 5)
                    .await
                    .unwrap()
                    .is_none(),
                "{name}"
            );
            assert_eq!(store.revoke(X, NET, "/premium").await.unwrap(), 1, "{name}");
            assert!(
                store.check(X, NET, "/premium", 5).await.unwrap().is_none(),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn pass_expires() {
        for (name, (_, store)) in stores().await {
            let pass = AccessPolicy::Pass {
                duration_ms: 3_600_000,
            };
            store
                .grant(&pass.entitlement(X, NET, "/api/*", 1_000))
                .await
                .unwrap();
            assert!(
                store
                    .check(X, NET, "/api/*", 1_000)
                    .await
                    .unwrap()
                    .is_some(),
                "{name}"
            );
            assert!(
                store
                    .check(X, NET, "/api/*", 3_600_999)
                    .await
                    .unwrap()
                    .is_some(),
                "{name}"
            );
            assert!(
                store
                    .check(X, NET, "/api/*", 3_601_000)
                    .await
                    .unwrap()
                    .is_none(),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn uses_are_counted_and_unlimited_preferred() {
        for (name, (_, store)) in stores().await {
            store
                .grant(&AccessPolicy::Uses(2).entitlement(X, NET, "/s", 0))
                .await
                .unwrap();
            let first = store.check(X, NET, "/s", 1).await.unwrap().unwrap();
            assert_eq!(first.remaining_uses, Some(1), "{name}");
            let second = store.check(X, NET, "/s", 2).await.unwrap().unwrap();
            assert_eq!(second.remaining_uses, Some(0), "{name}");
            assert!(
                store.check(X, NET, "/s", 3).await.unwrap().is_none(),
                "{name}"
            );

            store
                .grant(&AccessPolicy::Uses(1).entitlement(X, NET, "/s", 4))
                .await
                .unwrap();
            store
                .grant(&AccessPolicy::Pass { duration_ms: 10 }.entitlement(X, NET, "/s", 4))
                .await
                .unwrap();
            let pass = store.check(X, NET, "/s", 5).await.unwrap().unwrap();
            assert_eq!(
                (pass.expires_at, pass.remaining_uses),
                (Some(14), None),
                "{name}"
            );
            let counted = store.check(X, NET, "/s", 20).await.unwrap().unwrap();
            assert_eq!(counted.remaining_uses, Some(0), "{name}");
            assert!(
                store.check(X, NET, "/s", 21).await.unwrap().is_none(),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn session_revocation_list() {
        for (name, (_, store)) in stores().await {
            assert!(!store.is_session_revoked("t1").await.unwrap(), "{name}");
            store.revoke_session("t1", 100).await.unwrap();
            assert!(store.is_session_revoked("t1").await.unwrap(), "{name}");
        }
    }

    #[tokio::test]
    async fn sqlite_persists_across_reopen() {
        let dir = std::env::temp_dir().join(format!("paywire-siwx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        {
            let store = SqliteStore::open(&path).await.unwrap();
            store
                .grant(&AccessPolicy::PayOnce.entitlement(X, NET, "/p", 0))
                .await
                .unwrap();
            store.issue_nonce("n", "u", 0, 100).await.unwrap();
        }
        let store = SqliteStore::open(&path).await.unwrap();
        assert!(store.check(X, NET, "/p", 1).await.unwrap().is_some());
        assert_eq!(
            store.consume_nonce("n", "u", 1).await.unwrap(),
            NonceState::Valid
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
