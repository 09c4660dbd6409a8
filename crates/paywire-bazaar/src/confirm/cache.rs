//! A bounded, short-lived memory of origins' 402 answers, so a popular
//! resource is fetched once per time-to-live rather than on every payment,
//! and concurrent payments for one URL share one fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// When an answer was received, and the answer.
pub(crate) type Stamped<T> = (Instant, T);

struct Slot<T> {
    created: Instant,
    cell: Arc<OnceCell<Stamped<T>>>,
}

/// Answers keyed by request, each kept for its own time-to-live.
pub(crate) struct AnswerCache<T> {
    slots: Mutex<HashMap<String, Slot<T>>>,
    capacity: usize,
}

impl<T> AnswerCache<T> {
    /// A cache of at most `capacity` answers (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot<T>>> {
        // A panic elsewhere cannot leave the map half-updated: every
        // operation on it is a single insert or remove.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The fresh answer for `key`, if there is one; `ttl` says how long an
    /// answer stays fresh.
    pub(crate) fn fresh(
        &self,
        key: &str,
        ttl: impl Fn(&T) -> Duration,
    ) -> Option<Arc<OnceCell<Stamped<T>>>> {
        let slots = self.lock();
        let slot = slots.get(key)?;
        let (at, answer) = slot.cell.get()?;
        (at.elapsed() < ttl(answer)).then(|| Arc::clone(&slot.cell))
    }

    /// The cell holding (or about to hold) the answer for `key`: the
    /// current one while it is fresh or still being fetched, else a new one.
    pub(crate) fn cell(
        &self,
        key: &str,
        ttl: impl Fn(&T) -> Duration,
    ) -> Arc<OnceCell<Stamped<T>>> {
        let stale = |slot: &Slot<T>| {
            slot.cell
                .get()
                .is_some_and(|(at, answer)| at.elapsed() >= ttl(answer))
        };
        let mut slots = self.lock();
        if let Some(slot) = slots.get(key).filter(|slot| !stale(slot)) {
            return Arc::clone(&slot.cell);
        }
        slots.remove(key);
        if slots.len() >= self.capacity {
            slots.retain(|_, slot| !stale(slot));
        }
        if slots.len() >= self.capacity
            && let Some(oldest) = slots
                .iter()
                .min_by_key(|(_, slot)| slot.created)
                .map(|(key, _)| key.clone())
        {
            slots.remove(&oldest);
        }
        let cell = Arc::new(OnceCell::new());
        slots.insert(
            key.to_owned(),
            Slot {
                created: Instant::now(),
                cell: Arc::clone(&cell),
            },
        );
        cell
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn answers_are_shared_until_they_expire_and_the_cache_stays_bounded() {
        let cache: AnswerCache<u32> = AnswerCache::new(2);
        assert!(cache.fresh("a", |_| TTL).is_none());
        let cell = cache.cell("a", |_| TTL);
        cell.get_or_init(|| async { (Instant::now(), 1) }).await;
        assert_eq!(
            cache.fresh("a", |_| TTL).and_then(|c| c.get().map(|v| v.1)),
            Some(1)
        );
        assert!(Arc::ptr_eq(&cell, &cache.cell("a", |_| TTL)));
        // Expired: a new cell replaces it.
        assert!(cache.fresh("a", |_| Duration::ZERO).is_none());
        assert!(!Arc::ptr_eq(&cell, &cache.cell("a", |_| Duration::ZERO)));
        for key in ["b", "c", "d", "e"] {
            cache.cell(key, |_| TTL);
        }
        assert_eq!(cache.len(), 2);
    }
}
