//! The async runtime of a long-running service, built from its `[runtime]`
//! table. Shared by `paywire facilitator`/`paywire gateway` and the dedicated
//! service binaries (which include this file with `#[path]`).

use paywire_core::RuntimeConfig;

/// A multi-threaded runtime with the configured worker and blocking threads.
pub(crate) fn service_runtime(config: &RuntimeConfig) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads())
        .max_blocking_threads(config.max_blocking_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
