//! Single use of a payment across concurrent requests.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paywire_core::{AtomicAmount, BoxFuture, PaymentPayload};
use serde_json::Value;
use sha2::{Digest, Sha256};

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
        let mut text = String::with_capacity(2 * self.0.len());
        for byte in self.0 {
            // Writing to a String cannot fail.
            let _ = write!(text, "{byte:02x}");
        }
        text
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

/// Identifies the exact signed payment: SHA-256 of the canonical JSON of the
/// payload's signed `payload` and of its `accepted` requirements.
///
/// Where a [`ReservationKey`] names what the chain makes single-use (payer and
/// nonce), the fingerprint tells two payloads for that authorization apart: only
/// the very payload whose settlement outcome is unknown may resume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadFingerprint(pub [u8; 32]);

impl PayloadFingerprint {
    /// The fingerprint of `payment`.
    pub fn of(payment: &PaymentPayload) -> Self {
        let mut canonical = String::new();
        write_canonical(&Value::Object(payment.payload.clone()), &mut canonical);
        canonical.push('\n');
        // Requirements always serialise; `Null` only guards the impossible.
        let accepted = serde_json::to_value(&payment.accepted).unwrap_or(Value::Null);
        write_canonical(&accepted, &mut canonical);
        Self(Sha256::digest(canonical.as_bytes()).into())
    }
}

/// Result of [`ReservationStore::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// This request now holds the payment.
    Reserved,
    /// An earlier attempt with this very payload ended with an unknown
    /// settlement outcome; this request now holds it to ask the facilitator
    /// again.
    Resumed,
    /// Another request holds it right now.
    InUse,
    /// It was already settled, or another payload for the same authorization
    /// is recorded.
    Consumed,
}

/// A reservation store failed (e.g. a remote store is down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reservation store failed: {0}")]
pub struct ReservationError(pub String);

/// Atomic single-use records of payments.
///
/// A key is free, held (reserved by a request), settled (consumed), or kept
/// with an unknown settlement outcome. A retry with the same payload (same
/// [`PayloadFingerprint`]) may take an unknown key over ([`ReserveOutcome::Resumed`])
/// to ask the facilitator again; at most one request holds a key at a time.
pub trait ReservationStore: Send + Sync {
    /// Atomically reserves `key` for the payload `fingerprint`: a free key is
    /// reserved, a key with an unknown outcome recorded for this same payload
    /// and not held is resumed; anything else is refused.
    fn reserve<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<ReserveOutcome, ReservationError>>;

    /// Frees a held key (the handler failed, or settlement definitely failed
    /// without charging anything); settled keys and unknown keys nobody holds
    /// stay as they are.
    fn release<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>>;

    /// Marks `key` as used for good (settled, or served while pending).
    fn consume<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>>;

    /// Records that settling `key` with the payload `fingerprint` ended with an
    /// unknown outcome (facilitator timeout, 5xx, `pending`): the key stays
    /// used, and only a retry with the same payload can resume it. A settled
    /// key stays settled.
    fn mark_unknown<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<(), ReservationError>>;

    /// Whether `key` is recorded with an unknown outcome for the payload
    /// `fingerprint` (read only: a retry that failed verification because its
    /// first settlement landed uses it to decide to resume).
    fn is_unknown<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<bool, ReservationError>>;

    /// [`ReservationStore::mark_unknown`], also recording `charge`: the
    /// amount of a usage-based payment the unknown settlement asked for, so
    /// that a retry served by another instance, or after a restart, asks for
    /// the same amount (a different one would be refused as a second charge).
    /// `None` keeps the charge already recorded for this payload, if any.
    ///
    /// The default forgets the charge (stores written before it existed):
    /// a retry then settles the route's default for a missing usage report.
    fn mark_unknown_with_charge<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
        charge: Option<AtomicAmount>,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        let _ = charge;
        self.mark_unknown(key, fingerprint)
    }

    /// The charge recorded by [`ReservationStore::mark_unknown_with_charge`]
    /// for `key` while its outcome is unknown for the payload `fingerprint`;
    /// `None` when there is none (the default: not recorded).
    fn unknown_charge<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<Option<AtomicAmount>, ReservationError>> {
        let _ = (key, fingerprint);
        Box::pin(async { Ok(None) })
    }
}

/// A recorded charge, read back; a value this build cannot read is an error
/// (the caller then settles the route's default), never a panic.
pub(crate) fn parse_charge(
    charge: Option<String>,
) -> Result<Option<AtomicAmount>, ReservationError> {
    charge
        .map(|text| {
            text.parse::<AtomicAmount>()
                .map_err(|error| ReservationError(format!("unreadable recorded charge: {error}")))
        })
        .transpose()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reserved,
    Consumed,
    /// Outcome unknown, nobody holds it.
    Unknown,
    /// Outcome unknown, a retry holds it until `held_until`.
    Resuming,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    /// End of the hold (`Reserved`) or of the retention (other states).
    expires: Instant,
    fingerprint: Option<PayloadFingerprint>,
    held_until: Option<Instant>,
    /// The amount an unknown settlement of a usage-based payment asked for.
    charge: Option<AtomicAmount>,
}

/// What `reserve` does with an existing live entry, shared by every store.
pub(crate) enum Transition {
    /// Refuse with this outcome.
    Refuse(ReserveOutcome),
    /// Take the unknown outcome over for this request.
    Resume,
}

/// The reserve rule for a live (unexpired) record. `held` tells whether a
/// resuming record's hold is still running.
#[allow(clippy::match_same_arms)] // one row per case reads as the rule table
pub(crate) fn transition(same_payload: bool, unknown: bool, held: bool) -> Transition {
    match (unknown, same_payload, held) {
        (true, true, false) => Transition::Resume,
        (true, true, true) => Transition::Refuse(ReserveOutcome::InUse),
        (true, false, _) => Transition::Refuse(ReserveOutcome::Consumed),
        (false, _, true) => Transition::Refuse(ReserveOutcome::InUse),
        (false, _, false) => Transition::Refuse(ReserveOutcome::Consumed),
    }
}

const MIN_PURGE_AT: usize = 10_000;

/// Process-local [`ReservationStore`]. Reservations expire after
/// `reservation_ttl` (a request that died mid-way cannot block a payment
/// forever); settled keys and keys with an unknown outcome are kept for
/// `retention`.
#[derive(Debug)]
pub struct InMemoryReservationStore {
    entries: Mutex<HashMap<ReservationKey, Entry>>,
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
        f: impl FnOnce(&mut HashMap<ReservationKey, Entry>) -> T,
    ) -> Result<T, ReservationError> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| ReservationError("lock poisoned".into()))?;
        Ok(f(&mut entries))
    }

    fn purge(&self, entries: &mut HashMap<ReservationKey, Entry>, now: Instant) {
        if let Ok(mut purge_at) = self.purge_at.lock()
            && entries.len() > *purge_at
        {
            entries.retain(|_, entry| entry.expires > now);
            *purge_at = (entries.len() * 2).max(MIN_PURGE_AT);
        }
    }
}

impl ReservationStore for InMemoryReservationStore {
    fn reserve<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<ReserveOutcome, ReservationError>> {
        let result = self.with(|entries| {
            let now = Instant::now();
            self.purge(entries, now);
            let live = entries.get_mut(key).filter(|entry| entry.expires > now);
            let Some(entry) = live else {
                entries.insert(
                    *key,
                    Entry {
                        state: State::Reserved,
                        expires: now + self.reservation_ttl,
                        fingerprint: Some(*fingerprint),
                        held_until: None,
                        charge: None,
                    },
                );
                return ReserveOutcome::Reserved;
            };
            let unknown = matches!(entry.state, State::Unknown | State::Resuming);
            let held = match entry.state {
                State::Reserved => true,
                State::Resuming => entry.held_until.is_some_and(|until| until > now),
                State::Consumed | State::Unknown => false,
            };
            match transition(entry.fingerprint == Some(*fingerprint), unknown, held) {
                Transition::Refuse(outcome) => outcome,
                Transition::Resume => {
                    entry.state = State::Resuming;
                    entry.held_until = Some(now + self.reservation_ttl);
                    ReserveOutcome::Resumed
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
            if entries
                .get(key)
                .is_some_and(|entry| matches!(entry.state, State::Reserved | State::Resuming))
            {
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
            let fingerprint = entries.get(key).and_then(|entry| entry.fingerprint);
            entries.insert(
                *key,
                Entry {
                    state: State::Consumed,
                    expires: Instant::now() + self.retention,
                    fingerprint,
                    held_until: None,
                    charge: None,
                },
            );
        });
        Box::pin(async move { result })
    }

    fn mark_unknown<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        self.mark_unknown_with_charge(key, fingerprint, None)
    }

    fn mark_unknown_with_charge<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
        charge: Option<AtomicAmount>,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        let result = self.with(|entries| {
            let now = Instant::now();
            let live = entries.get(key).filter(|entry| entry.expires > now);
            if live.is_some_and(|entry| entry.state == State::Consumed) {
                return;
            }
            // A retry that did not get as far as choosing its charge keeps
            // the one of the attempt it resumed.
            let charge = charge.or_else(|| {
                live.filter(|entry| entry.fingerprint == Some(*fingerprint))
                    .and_then(|entry| entry.charge)
            });
            entries.insert(
                *key,
                Entry {
                    state: State::Unknown,
                    expires: now + self.retention,
                    fingerprint: Some(*fingerprint),
                    held_until: None,
                    charge,
                },
            );
        });
        Box::pin(async move { result })
    }

    fn is_unknown<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<bool, ReservationError>> {
        let result = self.with(|entries| {
            entries.get(key).is_some_and(|entry| {
                matches!(entry.state, State::Unknown | State::Resuming)
                    && entry.expires > Instant::now()
                    && entry.fingerprint == Some(*fingerprint)
            })
        });
        Box::pin(async move { result })
    }

    fn unknown_charge<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<Option<AtomicAmount>, ReservationError>> {
        let result = self.with(|entries| {
            entries
                .get(key)
                .filter(|entry| {
                    matches!(entry.state, State::Unknown | State::Resuming)
                        && entry.expires > Instant::now()
                        && entry.fingerprint == Some(*fingerprint)
                })
                .and_then(|entry| entry.charge)
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

    const FP: PayloadFingerprint = PayloadFingerprint([1; 32]);
    const OTHER_FP: PayloadFingerprint = PayloadFingerprint([2; 32]);

    #[test]
    fn fingerprint_tells_payloads_of_one_authorization_apart() {
        let a = payment(
            json!({"signature": "0xaa", "authorization": {"from": "0xAB", "nonce": "0xCD", "value": "1"}}),
        );
        let reordered = payment(
            json!({"authorization": {"value": "1", "nonce": "0xCD", "from": "0xAB"}, "signature": "0xaa"}),
        );
        let resigned = payment(
            json!({"signature": "0xbb", "authorization": {"from": "0xAB", "nonce": "0xCD", "value": "1"}}),
        );
        assert_eq!(ReservationKey::of(&a), ReservationKey::of(&resigned));
        assert_eq!(
            PayloadFingerprint::of(&a),
            PayloadFingerprint::of(&reordered)
        );
        assert_ne!(
            PayloadFingerprint::of(&a),
            PayloadFingerprint::of(&resigned)
        );
        let mut cheaper = a.clone();
        cheaper.accepted.amount = 0u64.into();
        assert_ne!(PayloadFingerprint::of(&a), PayloadFingerprint::of(&cheaper));
    }

    /// The shared semantics, run against every store.
    pub(crate) async fn semantics(store: &dyn ReservationStore) {
        let key = ReservationKey([7; 32]);
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Reserved
        );
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::InUse
        );
        store.release(&key).await.unwrap();
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Reserved
        );
        store.consume(&key).await.unwrap();
        store.release(&key).await.unwrap();
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Consumed
        );
        // Consuming without a reservation also sticks.
        let other = ReservationKey([8; 32]);
        store.consume(&other).await.unwrap();
        assert_eq!(
            store.reserve(&other, &FP).await.unwrap(),
            ReserveOutcome::Consumed
        );
        store.mark_unknown(&other, &FP).await.unwrap();
        assert_eq!(
            store.reserve(&other, &FP).await.unwrap(),
            ReserveOutcome::Consumed,
            "a settled key never becomes unknown"
        );
        unknown_semantics(store).await;
    }

    /// An unknown outcome: kept, resumable by the same payload only, one
    /// holder at a time, released only on purpose.
    pub(crate) async fn unknown_semantics(store: &dyn ReservationStore) {
        let key = ReservationKey([10; 32]);
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Reserved
        );
        store.mark_unknown(&key, &FP).await.unwrap();
        assert!(store.is_unknown(&key, &FP).await.unwrap());
        assert!(!store.is_unknown(&key, &OTHER_FP).await.unwrap());
        assert!(
            !store
                .is_unknown(&ReservationKey([11; 32]), &FP)
                .await
                .unwrap()
        );
        store.release(&key).await.unwrap();
        assert_eq!(
            store.reserve(&key, &OTHER_FP).await.unwrap(),
            ReserveOutcome::Consumed,
            "another payload for the authorization is refused; release did not free it"
        );
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Resumed
        );
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::InUse
        );
        assert_eq!(
            store.reserve(&key, &OTHER_FP).await.unwrap(),
            ReserveOutcome::Consumed
        );
        // Still unknown after the resume: back to resumable.
        store.mark_unknown(&key, &FP).await.unwrap();
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Resumed
        );
        store.consume(&key).await.unwrap();
        assert!(!store.is_unknown(&key, &FP).await.unwrap());
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Consumed
        );
        // Resumed, then proven never charged: free again.
        let freed = ReservationKey([12; 32]);
        store.mark_unknown(&freed, &FP).await.unwrap();
        assert_eq!(
            store.reserve(&freed, &FP).await.unwrap(),
            ReserveOutcome::Resumed
        );
        store.release(&freed).await.unwrap();
        assert_eq!(
            store.reserve(&freed, &OTHER_FP).await.unwrap(),
            ReserveOutcome::Reserved
        );
    }

    /// The charge recorded with an unknown outcome: read back for the same
    /// payload only, kept by a resume that records none, gone once settled
    /// or freed.
    pub(crate) async fn charge_semantics(store: &dyn ReservationStore) {
        let key = ReservationKey([20; 32]);
        let charge = AtomicAmount::from(1_234_567u64);
        assert_eq!(store.unknown_charge(&key, &FP).await.unwrap(), None);
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Reserved
        );
        assert_eq!(store.unknown_charge(&key, &FP).await.unwrap(), None);
        store
            .mark_unknown_with_charge(&key, &FP, Some(charge))
            .await
            .unwrap();
        assert_eq!(store.unknown_charge(&key, &FP).await.unwrap(), Some(charge));
        assert_eq!(store.unknown_charge(&key, &OTHER_FP).await.unwrap(), None);
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Resumed
        );
        assert_eq!(
            store.unknown_charge(&key, &FP).await.unwrap(),
            Some(charge),
            "a resume keeps the charge"
        );
        // A retry let go before choosing its charge keeps the recorded one.
        store.mark_unknown(&key, &FP).await.unwrap();
        assert_eq!(store.unknown_charge(&key, &FP).await.unwrap(), Some(charge));
        let max = AtomicAmount::from(u128::MAX);
        store
            .mark_unknown_with_charge(&key, &FP, Some(max))
            .await
            .unwrap();
        assert_eq!(store.unknown_charge(&key, &FP).await.unwrap(), Some(max));
        store.consume(&key).await.unwrap();
        assert_eq!(store.unknown_charge(&key, &FP).await.unwrap(), None);
        // A settled key stays settled, with no charge to resume.
        store
            .mark_unknown_with_charge(&key, &FP, Some(charge))
            .await
            .unwrap();
        assert_eq!(store.unknown_charge(&key, &FP).await.unwrap(), None);
        // Freed, then reserved by another payload: no charge carried over.
        let freed = ReservationKey([21; 32]);
        store
            .mark_unknown_with_charge(&freed, &FP, Some(charge))
            .await
            .unwrap();
        assert_eq!(
            store.reserve(&freed, &FP).await.unwrap(),
            ReserveOutcome::Resumed
        );
        store.release(&freed).await.unwrap();
        assert_eq!(
            store.reserve(&freed, &OTHER_FP).await.unwrap(),
            ReserveOutcome::Reserved
        );
        store.mark_unknown(&freed, &OTHER_FP).await.unwrap();
        assert_eq!(store.unknown_charge(&freed, &OTHER_FP).await.unwrap(), None);
        assert_eq!(store.unknown_charge(&freed, &FP).await.unwrap(), None);
    }

    /// Reservations and consumed keys expire; an abandoned resume can be
    /// taken over once its hold expired.
    async fn expiry(store: &dyn ReservationStore) {
        let key = ReservationKey([9; 32]);
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Reserved
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Reserved
        );
        store.consume(&key).await.unwrap();
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Consumed
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Reserved
        );
        let unknown = ReservationKey([13; 32]);
        store.mark_unknown(&unknown, &FP).await.unwrap();
        assert_eq!(
            store.reserve(&unknown, &FP).await.unwrap(),
            ReserveOutcome::Resumed
        );
        assert_eq!(
            store.reserve(&unknown, &FP).await.unwrap(),
            ReserveOutcome::InUse
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            store.reserve(&unknown, &FP).await.unwrap(),
            ReserveOutcome::Resumed,
            "the abandoned hold expired; the unknown outcome did not"
        );
    }

    pub(crate) fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "paywire-server-{name}-{}-{}",
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
    async fn unknown_charges_round_trip() {
        charge_semantics(&InMemoryReservationStore::default()).await;
        let path = temp_db("charges");
        charge_semantics(&crate::SqliteReservationStore::open(&path).unwrap()).await;
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
        let unknown = ReservationKey([4; 32]);
        {
            let store = crate::SqliteReservationStore::open(&path).unwrap();
            assert_eq!(
                store.reserve(&key, &FP).await.unwrap(),
                ReserveOutcome::Reserved
            );
            store.consume(&key).await.unwrap();
            assert_eq!(
                store.reserve(&held, &FP).await.unwrap(),
                ReserveOutcome::Reserved
            );
            store.mark_unknown(&unknown, &FP).await.unwrap();
        }
        let store = crate::SqliteReservationStore::open(&path).unwrap();
        assert_eq!(
            store.reserve(&key, &FP).await.unwrap(),
            ReserveOutcome::Consumed
        );
        assert_eq!(
            store.reserve(&held, &FP).await.unwrap(),
            ReserveOutcome::InUse
        );
        assert_eq!(
            store.reserve(&unknown, &OTHER_FP).await.unwrap(),
            ReserveOutcome::Consumed
        );
        assert_eq!(
            store.reserve(&unknown, &FP).await.unwrap(),
            ReserveOutcome::Resumed
        );
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
            tasks.push(tokio::spawn(async move {
                store.reserve(&fresh, &FP).await.unwrap()
            }));
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
