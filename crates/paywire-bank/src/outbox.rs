//! The outbox: a directory where bank files are written once, never overwritten.

use std::path::PathBuf;

use crate::files::FileError;

/// A directory of bank files.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Opens (creating if needed) the outbox directory.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, FileError> {
        Ok(Self { dir: dir.into() })
    }

    /// Writes a new file; an existing name is an error.
    pub fn write(&self, file_name: &str, _contents: &str) -> Result<PathBuf, FileError> {
        Err(FileError::FileExists(file_name.to_owned()))
    }
}
