//! Returned collections: the bank's `pain.002` status report (SEPA) or
//! NACHA return entries (ACH). A returned debit freezes its bundle, takes
//! back what is unspent of its credits and books the rest as the
//! authority's loss; sellers' charges (paid or not) are never touched.

use serde::Serialize;

use crate::funding::{OpsError, purchase_of_ach_id, purchase_of_sepa_reference};
use crate::store::{AuthorityStore, ReturnOutcome};

/// One return recorded by an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnedDebit {
    /// The purchase (the debit's end-to-end id).
    pub purchase_id: String,
    /// Its bundle, now frozen.
    pub bundle_id: String,
    /// The price not collected, minor units.
    pub returned: u64,
    /// The part already spent: the authority's loss.
    pub loss: u64,
    /// The bank's reason code, if any.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReturnsReport {
    /// Returns recorded now.
    pub returned: Vec<ReturnedDebit>,
    /// Rejected ids matching no collected purchase.
    pub unknown: Vec<String>,
    /// Returns already recorded by an earlier import.
    pub already: usize,
}

/// Imports a `pain.002` status report: every rejected transaction (or
/// every transaction of a rejected group or payment information) is a
/// returned debit, matched by its end-to-end id (the purchase id, `pur-…`
/// in the file for `pur_…` in the ledger).
/// Accepted transactions are ignored. Importing the same report again
/// changes nothing (`already` counts the repeats).
pub async fn import_pain002(
    store: &dyn AuthorityStore,
    text: &str,
    now: u64,
) -> Result<ReturnsReport, OpsError> {
    let items = crate::pain002::parse(text)?;
    let rejected = items.into_iter().filter(|item| item.rejected).map(|item| {
        (
            purchase_of_sepa_reference(&item.end_to_end_id),
            item.reason.unwrap_or_else(|| "RJCT".to_owned()),
        )
    });
    record(store, rejected, now).await
}

/// Imports NACHA return entries, matched by the original entry's
/// individual id (an ACH purchase's 15 hex digits).
pub async fn import_nacha(
    store: &dyn AuthorityStore,
    text: &str,
    now: u64,
) -> Result<ReturnsReport, OpsError> {
    let returns = crate::nacha::parse_returns(text)?;
    let returned = returns
        .into_iter()
        .map(|r| (purchase_of_ach_id(&r.id), r.reason_code));
    record(store, returned, now).await
}

/// Records each `(purchase id, reason)`.
async fn record(
    store: &dyn AuthorityStore,
    items: impl Iterator<Item = (String, String)>,
    now: u64,
) -> Result<ReturnsReport, OpsError> {
    let mut report = ReturnsReport::default();
    for (purchase_id, reason) in items {
        let reason: String = reason
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(16)
            .collect();
        match store.record_return(&purchase_id, &reason, now).await? {
            ReturnOutcome::Recorded {
                bundle_id,
                returned,
                loss,
            } => {
                tracing::warn!(
                    purchase = %purchase_id, bundle = %bundle_id, returned, loss, reason = %reason,
                    "debit returned: bundle frozen"
                );
                report.returned.push(ReturnedDebit {
                    purchase_id,
                    bundle_id,
                    returned,
                    loss,
                    reason,
                });
            }
            ReturnOutcome::AlreadyReturned => report.already += 1,
            ReturnOutcome::Unknown => {
                let shown: String = purchase_id.chars().take(64).collect();
                tracing::warn!(id = %shown, "returned item matches no collected purchase");
                report.unknown.push(shown);
            }
        }
    }
    Ok(report)
}
