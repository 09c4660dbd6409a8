//! The outbox: the directory where bank files are left for the operator
//! (or a transfer job) to upload to the bank.
//!
//! A file is written once and never replaced: it is written and synced
//! under a hidden temporary name, made read-only, then hard-linked to its
//! final name (which fails if the name exists, so the final name only ever
//! appears with complete contents), and the directory is synced.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use crate::files::FileError;

/// Longest file name accepted.
const MAX_NAME: usize = 200;

/// A directory of bank files.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> FileError {
    move |source| FileError::Io { action, source }
}

/// Whether `name` is a plain file name we write: `[A-Za-z0-9._-]`, not
/// starting with a dot (no hidden files, no `.`/`..`), no `..` anywhere.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Outbox {
    /// Opens the outbox directory, creating it (and its parents) if
    /// missing. Errors if it cannot be created or is not a directory.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, FileError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create directory"))?;
        let meta = fs::metadata(&dir).map_err(io("inspect directory"))?;
        if !meta.is_dir() {
            return Err(FileError::Io {
                action: "open directory",
                source: std::io::Error::new(ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `contents` as the new file `file_name` (read-only, synced to
    /// disk with its directory) and returns its path. An existing name is
    /// [`FileError::FileExists`]; a name outside `[A-Za-z0-9._-]`, starting
    /// with a dot or containing `..` is [`FileError::FileName`].
    pub fn write(&self, file_name: &str, contents: &str) -> Result<PathBuf, FileError> {
        if !valid_name(file_name) {
            return Err(FileError::FileName);
        }
        let target = self.dir.join(file_name);
        if fs::symlink_metadata(&target).is_ok() {
            return Err(FileError::FileExists(file_name.to_owned()));
        }
        let temp = self
            .dir
            .join(format!(".tmp-{}-{file_name}", random_suffix()?));
        let result = write_temp(&temp, contents).and_then(|()| {
            fs::hard_link(&temp, &target).map_err(|source| {
                if source.kind() == ErrorKind::AlreadyExists {
                    FileError::FileExists(file_name.to_owned())
                } else {
                    FileError::Io {
                        action: "link file",
                        source,
                    }
                }
            })
        });
        // The temporary name goes in every case; the final name (if linked)
        // keeps the contents.
        let _ = fs::remove_file(&temp);
        result?;
        // Linked: the file exists and must be reported as written (an
        // operator told otherwise might pay by hand what the file pays).
        if let Err(error) = sync_dir(&self.dir) {
            tracing::error!(file = file_name, %error, "outbox file written but its directory not synced");
        }
        tracing::info!(
            file = file_name,
            bytes = contents.len(),
            "outbox file written"
        );
        Ok(target)
    }
}

/// Creates `path` (never an existing file), writes, syncs, makes it read-only.
fn write_temp(path: &Path, contents: &str) -> Result<(), FileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io("create file"))?;
    file.write_all(contents.as_bytes())
        .map_err(io("write file"))?;
    file.sync_all().map_err(io("sync file"))?;
    let mut permissions = file.metadata().map_err(io("inspect file"))?.permissions();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        permissions.set_mode(0o444);
    }
    #[cfg(not(unix))]
    permissions.set_readonly(true);
    file.set_permissions(permissions)
        .map_err(io("make file read-only"))?;
    file.sync_all().map_err(io("sync file"))?;
    Ok(())
}

/// Syncs the directory entry (on Unix; elsewhere a no-op).
fn sync_dir(dir: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory"))?;
    #[cfg(not(unix))]
    let _ = (dir, File::open);
    Ok(())
}

/// 16 hex characters from the OS random source.
fn random_suffix() -> Result<String, FileError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| FileError::Io {
        action: "random temporary name",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_are_plain() {
        for good in ["a.xml", "pain008-2026-01-01_1.xml", "A"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "", ".", "..", ".hidden", "a/b", "a\\b", "a..b", "../x", "a b", "é.xml", "a\0",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(!valid_name(&"x".repeat(201)));
    }
}
