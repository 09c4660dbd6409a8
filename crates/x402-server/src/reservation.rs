//! Single use of a payment across concurrent requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use x402_core::{BoxFuture, PaymentPayload};

/// Identifies one payment: SHA-256 of the canonical JSON (keys sorted
/// recursively) of the payment's signed `payload`, its network and asset.
///
/// For EIP-3009 payloads (`payload.authorization.{from, nonce}`), only the
/// lower-cased payer and nonce are hashed: they are what the chain makes
/// single-use, so a re-encoded signature (high-s, other hex case) of the same
/// authorization maps to the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationKey(pub [u8; 32]);

impl ReservationKey {
    /// The key of `payment`.
    pub fn of(payment: &PaymentPayload) -> Self {
        let payload = Value::Object(payment.payload.clone());
        let identity = match (
            payload
                .pointer("/authorization/from")
                .and_then(Value::as_str),
            payload
                .pointer("/authorization/nonce")
                .and_then(Value::as_str),
        ) {
            (Some(from), Some(nonce)) => serde_json::json!({
                "authorization": {"from": from.to_ascii_lowercase(), "nonce": nonce.to_ascii_lowercase()}
            }),
            _ => payload,
        };
        let mut canonical = String::new();
        write_canonical(&identity, &mut canonical);
        let mut hasher = Sha256::new();
        hasher.update(canonical.as_bytes());
        hasher.update(b"\n");
        hasher.update(payment.accepted.network.as_str().as_bytes());
        hasher.update(b"\n");
        hasher.update(asset_key(&payment.accepted.asset).as_bytes());
        Self(hasher.finalize().into())
    }

    /// Hex form, for logs.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn asset_key(asset: &str) -> String {
    if asset.starts_with("0x") {
        asset.to_ascii_lowercase()
    } else {
        asset.to_owned()
    }
}

/// Writes `value` as JSON with object keys sorted at every level.
pub(crate) fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Result of [`ReservationStore::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// This request now holds the payment.
    Reserved,
    /// Another request holds it right now.
    InUse,
    /// It was already settled (or its settlement outcome is unknown).
    Consumed,
}

/// A reservation store failed (e.g. a remote store is down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reservation store failed: {0}")]
pub struct ReservationError(pub String);

/// Atomic single-use records of payments.
pub trait ReservationStore: Send + Sync {
    /// Atomically reserves `key` unless it is reserved or consumed.
    fn reserve<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<ReserveOutcome, ReservationError>>;

    /// Releases a reservation (the handler failed or settlement definitely
    /// failed); consumed keys stay consumed.
    fn release<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>>;

    /// Marks `key` as used for good (settled, pending, or unknown outcome).
    fn consume<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reserved,
    Consumed,
}

const MIN_PURGE_AT: usize = 10_000;

/// Process-local [`ReservationStore`]. Reservations expire after
/// `reservation_ttl` (a request that died mid-way cannot block a payment
/// forever) and consumed keys are kept for `retention`.
#[derive(Debug)]
pub struct InMemoryReservationStore {
    entries: Mutex<HashMap<ReservationKey, (State, Instant)>>,
    /// Size above which expired entries are purged (grows with the live set
    /// so that purging stays amortised O(1)).
    purge_at: Mutex<usize>,
    reservation_ttl: Duration,
    retention: Duration,
}

impl Default for InMemoryReservationStore {
    fn default() -> Self {
        Self::new(Duration::from_secs(600), Duration::from_secs(24 * 3600))
    }
}

impl InMemoryReservationStore {
    /// A store with explicit lifetimes.
    pub fn new(reservation_ttl: Duration, retention: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            purge_at: Mutex::new(MIN_PURGE_AT),
            reservation_ttl,
            retention,
        }
    }

    /// A shareable default store.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<ReservationKey, (State, Instant)>) -> T,
    ) -> Result<T, ReservationError> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| ReservationError("lock poisoned".into()))?;
        Ok(f(&mut entries))
    }
}

impl ReservationStore for InMemoryReservationStore {
    fn reserve<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<ReserveOutcome, ReservationError>> {
        let result = self.with(|entries| {
            let now = Instant::now();
            if let Ok(mut purge_at) = self.purge_at.lock()
                && entries.len() > *purge_at
            {
                entries.retain(|_, (_, expires)| *expires > now);
                *purge_at = (entries.len() * 2).max(MIN_PURGE_AT);
            }
            match entries.get(key) {
                Some((State::Reserved, expires)) if *expires > now => ReserveOutcome::InUse,
                Some((State::Consumed, expires)) if *expires > now => ReserveOutcome::Consumed,
                _ => {
                    entries.insert(*key, (State::Reserved, now + self.reservation_ttl));
                    ReserveOutcome::Reserved
                }
            }
        });
        Box::pin(async move { result })
    }

    fn release<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        let result = self.with(|entries| {
            if matches!(entries.get(key), Some((State::Reserved, _))) {
                entries.remove(key);
            }
        });
        Box::pin(async move { result })
    }

    fn consume<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        let result = self.with(|entries| {
            entries.insert(*key, (State::Consumed, Instant::now() + self.retention));
        });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_recursively() {
        let mut out = String::new();
        write_canonical(
            &json!({"b": {"z": 1, "a": [ {"y": 2, "x": "q"} ]}, "a": null}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":null,"b":{"a":[{"x":"q","y":2}],"z":1}}"#);
    }

    fn payment(payload: Value) -> PaymentPayload {
        serde_json::from_value(json!({
            "x402Version": 2,
            "payload": payload,
            "accepted": {
                "scheme": "exact", "network": "eip155:8453", "amount": "1",
                "asset": "0xAbC0000000000000000000000000000000000001",
                "payTo": "0x2", "maxTimeoutSeconds": 60
            }
        }))
        .unwrap()
    }

    #[test]
    fn key_ignores_encoding_of_one_authorization() {
        let a = payment(
            json!({"signature": "0xaa", "authorization": {"from": "0xAB", "nonce": "0xCD", "value": "1"}}),
        );
        let b = payment(
            json!({"authorization": {"nonce": "0xcd", "value": "1", "from": "0xab"}, "signature": "0xAA"}),
        );
        let c = payment(
            json!({"signature": "0xaa", "authorization": {"from": "0xAB", "nonce": "0xCE", "value": "1"}}),
        );
        assert_eq!(ReservationKey::of(&a), ReservationKey::of(&b));
        assert_ne!(ReservationKey::of(&a), ReservationKey::of(&c));
        // Other payload shapes: canonical JSON, key order irrelevant.
        let d = payment(json!({"transaction": "AQID", "meta": {"x": 1, "y": 2}}));
        let e = payment(json!({"meta": {"y": 2, "x": 1}, "transaction": "AQID"}));
        let f = payment(json!({"meta": {"y": 2, "x": 1}, "transaction": "AQIE"}));
        assert_eq!(ReservationKey::of(&d), ReservationKey::of(&e));
        assert_ne!(ReservationKey::of(&d), ReservationKey::of(&f));
    }

    /// The shared semantics, run against every store.
    async fn semantics(store: &dyn ReservationStore) {
        let key = ReservationKey([7; 32]);
        assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::Reserved);
        assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::InUse);
        store.release(&key).await.unwrap();
        assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::Reserved);
        store.consume(&key).await.unwrap();
        store.release(&key).await.unwrap();
        assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::Consumed);
        // Consuming without a reservation (unknown outcome) also sticks.
        let other = ReservationKey([8; 32]);
        store.consume(&other).await.unwrap();
        assert_eq!(
            store.reserve(&other).await.unwrap(),
            ReserveOutcome::Consumed
        );
    }

    /// Reservations and consumed keys expire.
    async fn expiry(store: &dyn ReservationStore) {
        let key = ReservationKey([9; 32]);
        assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::Reserved);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::Reserved);
        store.consume(&key).await.unwrap();
        assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::Consumed);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::Reserved);
    }

    pub(crate) fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "x402-server-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("reservations.sqlite")
    }

    #[tokio::test]
    async fn reserve_release_consume() {
        semantics(&InMemoryReservationStore::default()).await;
        let path = temp_db("semantics");
        semantics(&crate::SqliteReservationStore::open(&path).unwrap()).await;
    }

    #[tokio::test]
    async fn entries_expire() {
        let (ttl, retention) = (Duration::from_millis(50), Duration::from_millis(200));
        expiry(&InMemoryReservationStore::new(ttl, retention)).await;
        let path = temp_db("expiry");
        expiry(&crate::SqliteReservationStore::open_with(&path, ttl, retention).unwrap()).await;
    }

    #[tokio::test]
    async fn sqlite_survives_restarts() {
        let path = temp_db("restart");
        let key = ReservationKey([1; 32]);
        let held = ReservationKey([2; 32]);
        {
            let store = crate::SqliteReservationStore::open(&path).unwrap();
            assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::Reserved);
            store.consume(&key).await.unwrap();
            assert_eq!(
                store.reserve(&held).await.unwrap(),
                ReserveOutcome::Reserved
            );
        }
        let store = crate::SqliteReservationStore::open(&path).unwrap();
        assert_eq!(store.reserve(&key).await.unwrap(), ReserveOutcome::Consumed);
        assert_eq!(store.reserve(&held).await.unwrap(), ReserveOutcome::InUse);
        // Two connections to one file: exactly one reservation wins.
        let other = crate::SqliteReservationStore::open(&path).unwrap();
        let fresh = ReservationKey([3; 32]);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tasks.push(tokio::spawn(
                async move { store.reserve(&fresh).await.unwrap() },
            ));
        }
        let mut reserved = 0;
        for task in tasks {
            if task.await.unwrap() == ReserveOutcome::Reserved {
                reserved += 1;
            }
        }
        assert_eq!(reserved, 1);
    }
}
