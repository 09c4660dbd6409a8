//! The composition root's plugin choices: which chain families this binary
//! knows (their network names, and their facilitator side; later their
//! server and wallet sides too).

use std::sync::Arc;

use paywire_core::{NetworkDirectory, PluginRegistry};

/// Every chain plugin this binary registers.
pub(crate) fn registry() -> PluginRegistry {
    PluginRegistry::new()
        .with(Arc::new(paywire_evm::EvmPlugin))
        .with(Arc::new(paywire_svm::SvmPlugin))
}

/// Every network name the registered plugins contribute.
pub(crate) fn networks() -> NetworkDirectory {
    registry().networks().clone()
}
