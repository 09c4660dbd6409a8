//! Paid responses kept while their settlement outcome is unknown, so that the
//! payer's retry with the same payload gets the response it paid for without
//! running the handler again.
//!
//! In memory only: a restart loses it, and the retry then runs the handler once
//! settlement is final (still one serve per payment: the reservation allows a
//! single resume to succeed).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use paywire_core::AtomicAmount;

use crate::gate::KeptReply;
use crate::path::NormalizedPath;
use crate::reservation::{PayloadFingerprint, ReservationKey};

/// The request a cached response answered: a retry of another request (other
/// method, path or query) with the same payment runs its own handler instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestIdentity {
    method: String,
    target: String,
}

impl RequestIdentity {
    /// `method` on the normalized `path` with `query`.
    pub(crate) fn new(method: &str, path: &NormalizedPath, query: Option<&str>) -> Self {
        let target = match query {
            Some(query) => format!("{}?{query}", path.as_str()),
            None => path.as_str().to_owned(),
        };
        Self {
            method: method.to_owned(),
            target,
        }
    }
}

struct Entry {
    fingerprint: PayloadFingerprint,
    request: RequestIdentity,
    response: KeptReply,
    stored: Instant,
    size: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<ReservationKey, Entry>,
    /// Insertion order, for expiry and eviction of the oldest first.
    order: VecDeque<(Instant, ReservationKey)>,
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, key: &ReservationKey) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.bytes -= entry.size;
        Some(entry)
    }

    /// Drops the oldest entries while `keep_going` says so (and queue slots
    /// of entries already taken or replaced, whatever it says).
    fn evict_oldest(&mut self, mut keep_going: impl FnMut(&Self, Instant) -> bool) {
        while let Some(&(stored, key)) = self.order.front() {
            let current = self.entries.get(&key).is_some_and(|e| e.stored == stored);
            if current && !keep_going(self, stored) {
                break;
            }
            self.order.pop_front();
            if current {
                self.remove(&key);
            }
        }
    }
}

/// Most settle amounts of usage-based payments remembered at once.
const MAX_CHARGES: usize = 100_000;

/// Size- and age-bounded cache of paid responses whose settlement outcome is
/// unknown, keyed by reservation, and of the amounts usage-based payments
/// were settled for (kept apart from the responses, so that a response too
/// large to keep still leaves the retry the same amount to settle).
pub(crate) struct ResponseCache {
    inner: Mutex<Inner>,
    charges: Mutex<Charges>,
    ttl: Duration,
    capacity: usize,
}

#[derive(Default)]
struct Charges {
    amounts: HashMap<ReservationKey, (Instant, AtomicAmount)>,
    order: VecDeque<(Instant, ReservationKey)>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// Keeps responses for `ttl`, at most `capacity` bytes in total.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            charges: Mutex::new(Charges::default()),
            ttl,
            capacity,
        }
    }

    /// Keeps `response` for the payment `key` / `fingerprint`, evicting the
    /// oldest entries to make room. A response larger than the whole cache is
    /// not kept (the retry then runs the handler).
    pub(crate) fn put(
        &self,
        key: ReservationKey,
        fingerprint: PayloadFingerprint,
        request: RequestIdentity,
        response: KeptReply,
    ) {
        let size = response.size();
        if size > self.capacity {
            tracing::warn!(
                size,
                capacity = self.capacity,
                "paid response too large to cache"
            );
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        inner.remove(&key);
        let (ttl, capacity) = (self.ttl, self.capacity);
        inner.evict_oldest(|inner, stored| {
            now.duration_since(stored) >= ttl || inner.bytes + size > capacity
        });
        inner.bytes += size;
        inner.order.push_back((now, key));
        inner.entries.insert(
            key,
            Entry {
                fingerprint,
                request,
                response,
                stored: now,
                size,
            },
        );
    }

    /// Remembers that the payment `key` was (maybe) settled for `amount`, so
    /// that a retry after an unknown outcome asks for the same amount.
    pub(crate) fn remember_charge(&self, key: ReservationKey, amount: AtomicAmount) {
        let Ok(mut charges) = self.charges.lock() else {
            return;
        };
        let now = Instant::now();
        while let Some(&(stored, oldest)) = charges.order.front() {
            let expired = now.duration_since(stored) >= self.ttl;
            if !expired && charges.amounts.len() < MAX_CHARGES {
                break;
            }
            charges.order.pop_front();
            if charges
                .amounts
                .get(&oldest)
                .is_some_and(|(at, _)| *at == stored)
            {
                charges.amounts.remove(&oldest);
            }
        }
        charges.order.push_back((now, key));
        charges.amounts.insert(key, (now, amount));
    }

    /// The amount remembered for the payment `key`, if still fresh.
    pub(crate) fn charge(&self, key: &ReservationKey) -> Option<AtomicAmount> {
        let charges = self.charges.lock().ok()?;
        let (stored, amount) = charges.amounts.get(key)?;
        (stored.elapsed() < self.ttl).then_some(*amount)
    }

    /// Takes the response kept for this payment and request, if still fresh.
    pub(crate) fn take(
        &self,
        key: &ReservationKey,
        fingerprint: &PayloadFingerprint,
        request: &RequestIdentity,
    ) -> Option<KeptReply> {
        let mut inner = self.inner.lock().ok()?;
        let matches = inner.entries.get(key).is_some_and(|entry| {
            entry.fingerprint == *fingerprint
                && entry.request == *request
                && entry.stored.elapsed() < self.ttl
        });
        // Served once at most: whatever the match, the entry is done with.
        let entry = inner.remove(key)?;
        matches.then_some(entry.response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(len: usize) -> KeptReply {
        KeptReply {
            status: 200,
            headers: Vec::new(),
            body: bytes::Bytes::from(vec![b'x'; len]),
        }
    }

    fn request(target: &str) -> RequestIdentity {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let path = crate::path::normalize_path(path).unwrap();
        RequestIdentity::new("GET", &path, query)
    }

    #[test]
    fn serves_once_the_same_payment_and_request() {
        let cache = ResponseCache::new(Duration::from_secs(60), 1000);
        let (key, fp) = (ReservationKey([1; 32]), PayloadFingerprint([1; 32]));
        cache.put(key, fp, request("/a?x=1"), response(10));
        assert!(
            cache
                .take(&key, &PayloadFingerprint([2; 32]), &request("/a?x=1"))
                .is_none()
        );
        cache.put(key, fp, request("/a?x=1"), response(10));
        assert!(cache.take(&key, &fp, &request("/a?x=2")).is_none());
        cache.put(key, fp, request("/a?x=1"), response(10));
        assert_eq!(
            cache
                .take(&key, &fp, &request("/a?x=1"))
                .unwrap()
                .body
                .len(),
            10
        );
        assert!(cache.take(&key, &fp, &request("/a?x=1")).is_none(), "once");
    }

    #[test]
    fn bounded_by_size_and_age() {
        let cache = ResponseCache::new(Duration::from_secs(60), 100);
        let fp = PayloadFingerprint([0; 32]);
        let keys: Vec<ReservationKey> = (0..4).map(|i| ReservationKey([i; 32])).collect();
        for key in &keys {
            cache.put(*key, fp, request("/"), response(40));
        }
        assert!(cache.inner.lock().unwrap().bytes <= 100);
        assert!(
            cache.take(&keys[0], &fp, &request("/")).is_none(),
            "evicted"
        );
        assert!(
            cache.take(&keys[1], &fp, &request("/")).is_none(),
            "evicted"
        );
        assert!(cache.take(&keys[3], &fp, &request("/")).is_some());
        cache.put(ReservationKey([9; 32]), fp, request("/"), response(101));
        assert!(
            cache
                .take(&ReservationKey([9; 32]), &fp, &request("/"))
                .is_none()
        );

        let short = ResponseCache::new(Duration::from_millis(20), 100);
        short.put(keys[0], fp, request("/"), response(1));
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            short.take(&keys[0], &fp, &request("/")).is_none(),
            "expired"
        );
        assert_eq!(short.inner.lock().unwrap().bytes, 0);
    }

    #[test]
    fn remembers_charges_apart_from_responses() {
        let cache = ResponseCache::new(Duration::from_secs(60), 10);
        let (key, fp) = (ReservationKey([3; 32]), PayloadFingerprint([3; 32]));
        cache.remember_charge(key, AtomicAmount::from(42u64));
        cache.put(key, fp, request("/"), response(11));
        assert!(cache.take(&key, &fp, &request("/")).is_none(), "too large");
        assert_eq!(cache.charge(&key), Some(AtomicAmount::from(42u64)));
        cache.remember_charge(key, AtomicAmount::from(7u64));
        assert_eq!(cache.charge(&key), Some(AtomicAmount::from(7u64)));
        assert_eq!(cache.charge(&ReservationKey([4; 32])), None);
    }
}
