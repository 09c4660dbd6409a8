//! One lock per settlement key in this process, dropped from the map when
//! unused; the store's lock (other processes) rides on the same guard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::store::{LockWatch, StoreLock};

/// The process-local settlement locks, by key.
#[derive(Default)]
pub(crate) struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Holds one settlement's lock (see
/// [`super::LedgeredFacilitator::lock_settlement`]) until dropped.
pub struct SettlementGuard {
    locks: Arc<KeyedLocks>,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
    store: Option<StoreLock>,
}

impl std::fmt::Debug for SettlementGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettlementGuard")
            .field("key", &self.key)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl SettlementGuard {
    /// Also holds `lock`, the store's lock of the same key.
    pub(crate) fn hold_store_lock(&mut self, lock: StoreLock) {
        self.store = Some(lock);
    }

    /// Tells whether the store lock is still held, for the ledger observer
    /// (a settlement whose lock was lost must not broadcast).
    pub(crate) fn watch(&self) -> LockWatch {
        self.store
            .as_ref()
            .map(StoreLock::watch)
            .unwrap_or_default()
    }
}

impl KeyedLocks {
    /// Waits for the lock of `key` in this process.
    pub(crate) async fn lock(self: &Arc<Self>, key: &str) -> SettlementGuard {
        let mutex = {
            let mut map = match self.locks.lock() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            Arc::clone(map.entry(key.to_owned()).or_default())
        };
        let guard = mutex.lock_owned().await;
        SettlementGuard {
            locks: Arc::clone(self),
            key: key.to_owned(),
            guard: Some(guard),
            store: None,
        }
    }
}

impl Drop for SettlementGuard {
    fn drop(&mut self) {
        // The store lock (other processes) first, then the local one.
        drop(self.store.take());
        drop(self.guard.take());
        let mut map = match self.locks.locks.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map
            .get(&self.key)
            .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
        {
            map.remove(&self.key);
        }
    }
}
