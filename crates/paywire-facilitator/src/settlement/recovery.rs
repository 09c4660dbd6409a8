//! Crash safety and recovery: the ledger learns every transaction hash
//! before the transaction is broadcast, bound to the one payload it settles
//! ([`LedgerObserver`]), and settlements
//! left without a final outcome (`received`, `submitted`, `pending`) are
//! reconciled ([`LedgeredFacilitator::reconcile`]) at startup and periodically:
//!
//! 1. the chain is asked first, without sending anything, what became of
//!    the payment (`Facilitator::lookup_settlement`): a transaction that
//!    landed is recorded `confirmed` even when the authorization's time
//!    window has passed since, and one that never can land is `failed`;
//! 2. a settlement whose HTTP caller was told it failed (an error answer)
//!    is never re-run: that caller may have asked the payer for a new
//!    payment. Without a transaction out it is recorded `failed` (an
//!    explicit `/settle` may still retry it); with one, it is looked up
//!    again on the next pass;
//! 3. anything else is re-run from its stored request (safe: the scheme
//!    re-verifies, and finds an authorization executed on chain).
//!
//! The background reconciler also bounds the ledger: settlements that
//! failed before anything was sent are deleted once older than the
//! retention ([`LedgeredFacilitator::purge_unsent_failures`]).

use std::time::Duration;

use paywire_core::{ErrorReason, FacilitatorRequest, SettleResponse};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use super::observer::LedgerObserver;
use super::{LedgeredFacilitator, SettlementError, unix_now};
use crate::ledger::{LedgerError, SettlementRecord, SettlementState};
use crate::store::LockWatch;

/// What one reconciliation pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Unresolved rows seen.
    pub examined: usize,
    /// Rows that reached `confirmed` or `failed`.
    pub resolved: usize,
    /// Rows re-run that are still `pending` or `submitted`.
    pub still_open: usize,
    /// Rows whose re-run failed with an infrastructure error (left for later).
    pub errors: usize,
    /// Rows skipped: too recent, resolved meanwhile, or without a stored request.
    pub skipped: usize,
}

impl LedgeredFacilitator {
    /// Re-runs every settlement in one of `states` whose last change is at
    /// least `min_age` old, from its stored request, and records the
    /// outcome. Each row is handled under its settlement lock, so a
    /// concurrent `/settle` of the same payment waits (and then answers from
    /// the ledger). Per-row failures are logged and counted, not returned.
    pub async fn reconcile(
        &self,
        states: &[SettlementState],
        min_age: Duration,
    ) -> Result<ReconcileReport, LedgerError> {
        self.reconcile_until(states, min_age, None).await
    }

    async fn reconcile_until(
        &self,
        states: &[SettlementState],
        min_age: Duration,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<ReconcileReport, LedgerError> {
        let rows = self.ledger.unresolved().await?;
        self.metrics
            .set_unresolved(u64::try_from(rows.len()).unwrap_or(u64::MAX));
        let mut report = ReconcileReport::default();
        for row in rows {
            if stop.is_some_and(|stop| *stop.borrow()) {
                break;
            }
            if !states.contains(&row.state) {
                continue;
            }
            report.examined += 1;
            self.reconcile_row(&row, states, min_age, &mut report)
                .await?;
        }
        if report.examined > 0 {
            let left = self.ledger.unresolved().await?.len();
            self.metrics
                .set_unresolved(u64::try_from(left).unwrap_or(u64::MAX));
            tracing::info!(?report, "reconciliation pass done");
        }
        Ok(report)
    }

    /// Reconciles `row` under its settlement lock, when it is still in one
    /// of `states` and old enough once the lock is held, and counts what
    /// became of it in `report`.
    async fn reconcile_row(
        &self,
        row: &SettlementRecord,
        states: &[SettlementState],
        min_age: Duration,
        report: &mut ReconcileReport,
    ) -> Result<(), LedgerError> {
        // Same order as a settle: in-flight guard, then the settlement
        // lock, on the same key (the spend of its stored request).
        let _in_flight = self.in_flight().await;
        let lock_key = match &row.request {
            Some(request) => self.lock_key(request),
            None => row.fingerprint.clone(),
        };
        let guard = self.lock_settlement(&lock_key).await?;
        // Re-read under the lock: a request may have finished it.
        let Some(record) = self.ledger.get(&row.fingerprint).await? else {
            report.skipped += 1;
            return Ok(());
        };
        let age = unix_now().saturating_sub(record.updated_at);
        if !states.contains(&record.state) || age < min_age.as_secs() {
            report.skipped += 1;
            return Ok(());
        }
        let Some(request) = record.request.clone() else {
            tracing::warn!(fingerprint = %record.fingerprint, state = record.state.as_str(),
                "unresolved settlement has no stored request; cannot reconcile");
            report.skipped += 1;
            return Ok(());
        };
        tracing::info!(fingerprint = %record.fingerprint, state = record.state.as_str(),
            transaction = ?record.transaction, "reconciling settlement");
        match self.reconcile_one(&record, &request, &guard.watch()).await {
            Ok(None) => report.still_open += 1,
            Ok(Some(response)) => {
                let state = SettlementState::of(&response);
                self.metrics.recovered(state.as_str());
                if matches!(state, SettlementState::Confirmed | SettlementState::Failed) {
                    report.resolved += 1;
                } else {
                    report.still_open += 1;
                }
            }
            Err(error) => {
                self.metrics.recovered("error");
                tracing::warn!(fingerprint = %record.fingerprint, %error, "reconciliation failed; will retry");
                report.errors += 1;
            }
        }
        Ok(())
    }

    /// Reconciles one unresolved settlement (see the module documentation);
    /// `None` when it is left open for a later pass.
    async fn reconcile_one(
        &self,
        record: &SettlementRecord,
        request: &FacilitatorRequest,
        lock: &LockWatch,
    ) -> Result<Option<SettleResponse>, SettlementError> {
        let key = record.fingerprint.as_str();
        let known = record.transaction.as_deref();
        if let Some(response) = self.outcome_from_chain(key, request, known).await? {
            return Ok(Some(response));
        }
        let told_failed = record
            .delivery
            .as_ref()
            .is_some_and(|delivery| delivery.state == SettlementState::Failed);
        if !told_failed {
            return self
                .run_settlement(key, request, record.payment_id.as_deref(), lock)
                .await
                .map(Some);
        }
        if known.is_some() {
            // A transaction may still land: look again next pass.
            return Ok(None);
        }
        let response = SettleResponse::failed(
            request.payment_requirements.network.clone(),
            ErrorReason::UNEXPECTED_SETTLE_ERROR,
            None,
            "",
        )
        .with_message(format!(
            "settlement failed ({}) and its caller was told so; not re-run",
            record.last_error.as_deref().unwrap_or("error")
        ));
        self.ledger.record_outcome(key, &response).await?;
        Ok(Some(response))
    }

    /// Deletes the settlements that failed before anything was sent and
    /// last changed longer ago than the retention
    /// ([`LedgeredFacilitator::with_unsent_failure_retention`]; see
    /// [`Ledger::purge_unsent_failures`](crate::ledger::Ledger::purge_unsent_failures) for what is never deleted). Returns
    /// how many went (0 when retention is off).
    pub async fn purge_unsent_failures(&self) -> Result<u64, LedgerError> {
        let Some(retention) = self.unsent_failure_retention else {
            return Ok(0);
        };
        let before = unix_now().saturating_sub(retention.as_secs());
        let deleted = self.ledger.purge_unsent_failures(before).await?;
        if deleted > 0 {
            tracing::info!(deleted, "purged settlements that failed before sending");
        }
        Ok(deleted)
    }

    /// The startup pass: every `received`, `submitted` and `pending`
    /// settlement, whatever its age.
    pub async fn reconcile_all(&self) -> Result<ReconcileReport, LedgerError> {
        self.reconcile(
            &[
                SettlementState::Received,
                SettlementState::Submitted,
                SettlementState::Pending,
            ],
            Duration::ZERO,
        )
        .await
    }
}

/// The longest time between two purges of old unsent failures.
const PURGE_EVERY_MAX: Duration = Duration::from_secs(60 * 60);

/// Spawns the background reconciler: every `interval`, `submitted` and
/// `pending` settlements older than `min_age` are re-run, and (at most
/// hourly, or once per retention period when that is shorter) old unsent
/// failures are purged. It stops (after finishing the row in hand) when
/// `stop` turns true.
pub(crate) fn spawn_reconciler(
    state: LedgeredFacilitator,
    interval: Duration,
    min_age: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let purge_every = state
            .unsent_failure_retention()
            .map(|retention| retention.min(PURGE_EVERY_MAX).max(interval));
        let mut last_purge: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                _ = ticker.tick() => {
                    let pass = state
                        .reconcile_until(
                            &[SettlementState::Submitted, SettlementState::Pending],
                            min_age,
                            Some(&stop),
                        )
                        .await;
                    if let Err(error) = pass {
                        tracing::warn!(%error, "reconciliation pass failed");
                    }
                    if let Some(every) = purge_every
                        && last_purge.is_none_or(|at| at.elapsed() >= every)
                    {
                        last_purge = Some(tokio::time::Instant::now());
                        if let Err(error) = state.purge_unsent_failures().await {
                            tracing::warn!(%error, "purging old unsent failures failed");
                        }
                    }
                }
            }
        }
        tracing::debug!("reconciler stopped");
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use paywire_core::{ChainId, SettlementObserver};

    use super::*;
    use crate::ledger::tests::request;
    use crate::ledger::{Ledger, PaymentIdClaim};
    use crate::store::{HeldLock, StoreLock};

    struct Flag(Arc<AtomicBool>);

    impl HeldLock for Flag {
        fn is_held(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn a_broadcast_needs_the_lock_and_its_own_transaction() -> Result<(), LedgerError> {
        let ledger = Ledger::in_memory().await?;
        ledger.mark_received("f", &request(), None).await?;
        let held = Arc::new(AtomicBool::new(true));
        let lock = StoreLock::holding(Flag(Arc::clone(&held)));
        let observer = LedgerObserver::new(ledger.clone(), "f").guarded_by(lock.watch());
        let network = ChainId::parse("eip155:1").unwrap();
        assert!(observer.before_broadcast(&network, "0x1").await.is_ok());
        assert_eq!(
            ledger.claim_transaction("0x1", "g").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "f".into()
            },
            "claimed before the broadcast"
        );
        // A transaction another payload claimed is not sent for this one.
        ledger.claim_transaction("0x2", "g").await?;
        assert!(observer.before_broadcast(&network, "0x2").await.is_err());
        // Nor anything once the lock is lost, or released.
        held.store(false, Ordering::SeqCst);
        assert!(observer.before_broadcast(&network, "0x3").await.is_err());
        held.store(true, Ordering::SeqCst);
        drop(lock);
        assert!(observer.before_broadcast(&network, "0x4").await.is_err());
        let record = ledger
            .get("f")
            .await?
            .ok_or(LedgerError::Task("gone".into()))?;
        assert_eq!(record.transaction.as_deref(), Some("0x1"));
        for unsent in ["0x3", "0x4"] {
            assert_eq!(
                ledger.claim_transaction(unsent, "g").await?,
                PaymentIdClaim::Bound
            );
        }
        Ok(())
    }
}
