//! The in-process duplicate-settlement guard (field lesson 14): one
//! payment transaction, keyed by its message hash, is settled at most once
//! per process while its blockhash can still land, so an identical
//! resubmission never gets a second success. Across processes the
//! facilitator's ledger does the same through `spend_key`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a settled or running transaction is remembered: twice the
/// blockhash lifetime (about 60–90 s), after which it cannot land anyway.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// Transactions being settled or settled recently.
#[derive(Debug, Default, Clone)]
pub struct DedupGuard {
    entries: Arc<Mutex<HashMap<String, Instant>>>,
}

/// A claim on one transaction; [`Claim::release`] gives it up when nothing
/// was sent (so a retry may run). Dropping it keeps the entry.
#[derive(Debug)]
pub struct Claim {
    guard: DedupGuard,
    key: String,
}

impl Claim {
    /// Forgets the claim: nothing was broadcast.
    pub fn release(self) {
        if let Ok(mut entries) = self.guard.entries.lock() {
            entries.remove(&self.key);
        }
    }
}

impl DedupGuard {
    /// A claim on `key`, or `None` when it is already claimed within the window.
    pub fn claim(&self, key: &str) -> Option<Claim> {
        let mut entries = self.entries.lock().ok()?;
        entries.retain(|_, at| at.elapsed() < DEDUP_WINDOW);
        if entries.contains_key(key) {
            return None;
        }
        entries.insert(key.to_owned(), Instant::now());
        Some(Claim {
            guard: self.clone(),
            key: key.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_until_released() {
        let guard = DedupGuard::default();
        let first = guard.claim("tx").unwrap();
        assert!(guard.claim("tx").is_none());
        assert!(guard.claim("other").is_some());
        drop(first);
        assert!(guard.claim("tx").is_none(), "kept after a possible send");
        let guard = DedupGuard::default();
        guard.claim("tx").unwrap().release();
        assert!(guard.claim("tx").is_some());
    }
}
