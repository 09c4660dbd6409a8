//! Returned collections: the bank's `pain.002` status report (SEPA) or
//! NACHA return entries (ACH). A returned debit freezes its bundle, takes
//! back what is unspent of its credits and books the rest as the
//! authority's loss; sellers' charges (paid or not) are never touched.

use serde::Serialize;

use crate::funding::OpsError;
use crate::store::AuthorityStore;

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

/// Imports a `pain.002` status report: every rejected transaction is a
/// returned debit.
pub async fn import_pain002(
    store: &dyn AuthorityStore,
    text: &str,
    now: u64,
) -> Result<ReturnsReport, OpsError> {
    let _ = (store, text, now);
    Err(OpsError::Config("not yet".into()))
}

/// Imports NACHA return entries.
pub async fn import_nacha(
    store: &dyn AuthorityStore,
    text: &str,
    now: u64,
) -> Result<ReturnsReport, OpsError> {
    let _ = (store, text, now);
    Err(OpsError::Config("not yet".into()))
}
