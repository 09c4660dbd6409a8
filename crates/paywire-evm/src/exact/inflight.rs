//! What one facilitator process knows about the settlements it has under
//! way on a chain: a lock per authorization and per (token, payer), and the
//! transactions it broadcast for authorizations whose outcome it has not
//! seen yet.
//!
//! Two rules rest on this. A settlement that runs again (the ledger's
//! reconciler, a retried `/settle`, the same authorization re-worded) never
//! signs a second transaction while the first may still land: the token
//! executes one authorization once and the other transaction reverts, at the
//! facilitator's expense. And a payer's balance pays for one transfer at a
//! time: transfers broadcast but not mined count against it, so K
//! authorizations backed by one price are not K broadcasts, whichever
//! method (EIP-3009 or Permit2) each of them uses.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, U256};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::receipts::Registration;

/// (token, payer, nonce): identifies one EIP-3009 authorization; a Permit2
/// one is (Permit2, payer, nonce), its nonce being the owner's across tokens.
pub(super) type AuthorizationKey = (Address, Address, B256);

/// (token, payer): whose balance a transfer spends.
pub(super) type PayerKey = (Address, Address);

/// How long past its authorization's `validBefore` an attempt is kept: the
/// token refuses the authorization from then on, so the transaction can no
/// longer move funds (the margin covers clock skew between us and the chain).
const EXPIRY_MARGIN_SECS: u64 = 60;

/// Async locks keyed by `K`, made on demand and forgotten once unused.
pub(crate) struct KeyedLocks<K> {
    locks: Mutex<HashMap<K, Arc<AsyncMutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    /// Waits for `key`'s lock; it is held until the guard drops.
    pub(crate) async fn lock(&self, key: K) -> KeyedGuard<'_, K> {
        let lock = Arc::clone(lock_map(&self.locks).entry(key.clone()).or_default());
        KeyedGuard {
            locks: self,
            key,
            guard: Some(lock.lock_owned().await),
        }
    }
}

/// A held [`KeyedLocks`] lock.
pub(crate) struct KeyedGuard<'a, K: Eq + Hash> {
    locks: &'a KeyedLocks<K>,
    key: K,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Eq + Hash> Drop for KeyedGuard<'_, K> {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = lock_map(&self.locks.locks);
        // Only the map's own reference left: nobody holds or awaits it.
        if locks
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

fn lock_map<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent at every step: a panic elsewhere while one
    // was held leaves nothing half-done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A signed transaction the node accepted (or may have).
#[derive(Clone)]
pub(super) struct Broadcast {
    /// Its hash.
    pub hash: B256,
    /// The signed bytes, sent again as they are.
    pub raw: Vec<u8>,
    /// The transaction, to replace it at the same nonce with a higher fee.
    pub tx: TxEip1559,
    /// Which of the chain's signers signed it.
    pub slot: usize,
    /// Its registration with the chain's receipt watcher, made before the
    /// broadcast and held while the transaction is known here.
    pub _receipt_watch: Arc<Registration>,
}

/// The settlement transaction of one authorization, not seen mined yet.
#[derive(Clone)]
pub(super) struct Attempt {
    /// The `transferWithAuthorization` call it makes: the authorization
    /// and the signature it executes.
    pub calldata: Vec<u8>,
    /// The token it moves (for Permit2 not in the key).
    pub token: Address,
    /// What it moves from the payer.
    pub value: U256,
    /// The authorization's `validBefore` (Unix seconds).
    pub valid_before: u64,
    /// Its hash (the latest, after a fee replacement).
    pub hash: B256,
    /// Who sent it.
    pub sender: Address,
    /// The sender's nonce it uses.
    pub nonce: u64,
    /// What this process signed; `None` for a transaction learned from the
    /// facilitator's ledger (after a restart, or from another instance),
    /// which is only waited for.
    pub signed: Option<Broadcast>,
    /// Since when the node does not know it (`None`: it did last time).
    pub unknown_since: Option<Instant>,
}

/// The [`Attempt`]s of one chain.
#[derive(Default)]
pub(super) struct Attempts {
    attempts: Mutex<HashMap<AuthorizationKey, Attempt>>,
}

impl Attempts {
    /// The attempt for `key`, if any.
    pub(super) fn get(&self, key: &AuthorizationKey) -> Option<Attempt> {
        lock_map(&self.attempts).get(key).cloned()
    }

    /// Records `attempt` for `key` (replacing any), and forgets attempts
    /// whose authorization expired before `now` (Unix seconds).
    pub(super) fn record(&self, key: AuthorizationKey, attempt: Attempt, now: u64) {
        let mut attempts = lock_map(&self.attempts);
        attempts.retain(|_, a| a.valid_before.saturating_add(EXPIRY_MARGIN_SECS) >= now);
        attempts.insert(key, attempt);
    }

    /// Forgets `key`'s attempt if it is still transaction `hash` (a fee
    /// replacement made meanwhile stays).
    pub(super) fn forget(&self, key: &AuthorizationKey, hash: B256) {
        let mut attempts = lock_map(&self.attempts);
        if attempts.get(key).is_some_and(|a| a.hash == hash) {
            attempts.remove(key);
        }
    }

    /// Forgets `key`'s attempt, whichever transaction it is: the
    /// authorization was executed, or can no longer be.
    pub(super) fn forget_all(&self, key: &AuthorizationKey) {
        lock_map(&self.attempts).remove(key);
    }

    /// Applies `change` to `key`'s attempt if it is still transaction `hash`;
    /// the attempt as it is afterwards.
    pub(super) fn update(
        &self,
        key: &AuthorizationKey,
        hash: B256,
        change: impl FnOnce(&mut Attempt),
    ) -> Option<Attempt> {
        let mut attempts = lock_map(&self.attempts);
        let attempt = attempts.get_mut(key).filter(|a| a.hash == hash)?;
        change(attempt);
        Some(attempt.clone())
    }

    /// Transfers from `payer` on `token` under way for other authorizations
    /// than `except`, by either method, unexpired ones only: (authorization,
    /// transaction, value).
    pub(super) fn in_flight(
        &self,
        (token, payer): PayerKey,
        except: &AuthorizationKey,
        now: u64,
    ) -> Vec<(AuthorizationKey, B256, U256)> {
        lock_map(&self.attempts)
            .iter()
            .filter(|((_, p, _), a)| {
                (a.token, *p) == (token, payer)
                    && a.valid_before.saturating_add(EXPIRY_MARGIN_SECS) >= now
            })
            .filter(|(key, _)| *key != except)
            .map(|(key, a)| (*key, a.hash, a.value))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(hash: u8, value: u64, valid_before: u64) -> Attempt {
        Attempt {
            calldata: Vec::new(),
            token: Address::repeat_byte(1),
            value: U256::from(value),
            valid_before,
            hash: B256::repeat_byte(hash),
            sender: Address::ZERO,
            nonce: 0,
            signed: None,
            unknown_since: None,
        }
    }

    #[test]
    fn in_flight_counts_other_unexpired_transfers_of_the_payer() {
        let (token, payer, other) = (
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
        );
        let key = |payer, nonce| (token, payer, B256::repeat_byte(nonce));
        let attempts = Attempts::default();
        attempts.record(key(payer, 1), attempt(1, 10, 1_000), 0);
        attempts.record(key(payer, 2), attempt(2, 20, 1_000), 0);
        attempts.record(key(other, 3), attempt(3, 30, 1_000), 0);
        let seen = attempts.in_flight((token, payer), &key(payer, 1), 500);
        assert_eq!(
            seen,
            vec![(key(payer, 2), B256::repeat_byte(2), U256::from(20))]
        );
        assert!(
            attempts
                .in_flight((token, payer), &key(payer, 9), 2_000)
                .is_empty(),
            "expired authorizations move nothing"
        );
        // A replacement made meanwhile is not forgotten for its predecessor.
        attempts.update(&key(payer, 2), B256::repeat_byte(2), |a| {
            a.hash = B256::repeat_byte(7);
        });
        attempts.forget(&key(payer, 2), B256::repeat_byte(2));
        assert!(attempts.get(&key(payer, 2)).is_some());
        attempts.forget(&key(payer, 2), B256::repeat_byte(7));
        assert!(attempts.get(&key(payer, 2)).is_none());
        // Recording prunes what expired.
        attempts.record(key(payer, 4), attempt(4, 1, 10_000), 5_000);
        assert!(attempts.get(&key(payer, 1)).is_none());
        attempts.forget_all(&key(payer, 4));
        assert!(attempts.get(&key(payer, 4)).is_none());
    }

    #[test]
    fn in_flight_counts_by_the_token_moved_not_the_key() {
        let (token, payer, permit2) = (
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(9),
        );
        let attempts = Attempts::default();
        let eip3009 = (token, payer, B256::repeat_byte(1));
        let same_token = (permit2, payer, B256::repeat_byte(2));
        let other_token = (permit2, payer, B256::repeat_byte(3));
        attempts.record(eip3009, attempt(1, 10, 1_000), 0);
        attempts.record(same_token, attempt(2, 20, 1_000), 0);
        let mut elsewhere = attempt(3, 30, 1_000);
        elsewhere.token = Address::repeat_byte(4);
        attempts.record(other_token, elsewhere, 0);
        let mut seen = attempts.in_flight((token, payer), &(token, payer, B256::ZERO), 0);
        seen.sort_by_key(|(_, _, value)| *value);
        assert_eq!(
            seen,
            vec![
                (eip3009, B256::repeat_byte(1), U256::from(10)),
                (same_token, B256::repeat_byte(2), U256::from(20)),
            ]
        );
    }

    #[tokio::test]
    async fn keyed_locks_exclude_per_key_and_are_forgotten() {
        let locks = KeyedLocks::<u8>::default();
        let first = locks.lock(1).await;
        let other = locks.lock(2).await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(1));
        assert!(waiting.await.is_err(), "key 1 is held");
        drop((first, other));
        assert!(lock_map(&locks.locks).is_empty());
    }
}
