//! The ledger's view of each broadcast: every transaction hash is claimed
//! for its settlement's payload and recorded before the transaction can
//! exist, and nothing is sent once the settlement's store lock is lost.

use paywire_core::scheme::BoxFuture;
use paywire_core::{ChainId, SettlementObserver};

use crate::ledger::{Ledger, PaymentIdClaim};
use crate::store::LockWatch;

/// Claims each transaction for its settlement's payload and records
/// `submitted` + the hash, before each broadcast of one settlement. A ledger
/// failure aborts the broadcast (nothing is sent unrecorded).
pub struct LedgerObserver {
    ledger: Ledger,
    fingerprint: String,
    lock: LockWatch,
}

impl LedgerObserver {
    /// An observer for the settlement keyed `fingerprint`.
    pub fn new(ledger: Ledger, fingerprint: impl Into<String>) -> Self {
        Self {
            ledger,
            fingerprint: fingerprint.into(),
            lock: LockWatch::default(),
        }
    }

    /// Refuses every broadcast once the settlement's store lock is lost
    /// (another process may be running the same payment).
    pub(crate) fn guarded_by(mut self, lock: LockWatch) -> Self {
        self.lock = lock;
        self
    }
}

impl SettlementObserver for LedgerObserver {
    /// Claims the transaction for this settlement's payload and records it
    /// `submitted`, in one ledger call. The claim is checked first so that no
    /// answer naming this transaction can ever be given to another payload
    /// (a re-spelled authorization) while the settlement is still `pending`.
    fn before_broadcast<'a>(
        &'a self,
        network: &'a ChainId,
        transaction: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if !self.lock.is_held() {
                return Err("the settlement's ledger lock was lost; nothing sent".to_owned());
            }
            let claim = self
                .ledger
                .claim_and_mark_submitted(transaction, &self.fingerprint)
                .await
                .map_err(|e| e.to_string())?;
            if let PaymentIdClaim::Conflict { fingerprint } = claim {
                return Err(format!(
                    "transaction {transaction} is already claimed by settlement {fingerprint}"
                ));
            }
            tracing::info!(fingerprint = %self.fingerprint, %network, %transaction, "settlement submitted");
            Ok(())
        })
    }
}
