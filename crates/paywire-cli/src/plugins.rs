//! The composition root's plugin choices: which chain families this binary
//! knows (their network names, and later their server, facilitator and
//! wallet sides).

use std::sync::Arc;

use paywire_core::{NetworkDirectory, PluginRegistry};

/// The chain plugins of this binary.
pub(crate) fn registry() -> PluginRegistry {
    PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin))
}

/// Every network name the registered plugins contribute.
pub(crate) fn networks() -> NetworkDirectory {
    let mut names = NetworkDirectory::new();
    names.extend(paywire_evm::network_names());
    names
}
