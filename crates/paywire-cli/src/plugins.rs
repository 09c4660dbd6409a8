//! The composition root's plugin choices: which chain families this binary
//! knows (their network names, and their facilitator side; later their
//! server and wallet sides too).

use std::sync::Arc;

use paywire_client::StaticCatalog;
use paywire_core::{NetworkDirectory, PluginRegistry, ServerConfig};

/// Every chain plugin this binary registers.
pub(crate) fn registry() -> PluginRegistry {
    PluginRegistry::new()
        .with(Arc::new(paywire_evm::EvmPlugin))
        .with(Arc::new(paywire_svm::SvmPlugin))
        .with(Arc::new(paywire_bank::BankPlugin))
}

/// Every network name the registered plugins contribute.
pub(crate) fn networks() -> NetworkDirectory {
    registry().networks().clone()
}

/// Every asset the registered plugins know out of the box (Circle's USDC
/// on Base, on Solana, …), for dollar caps and comparing offers by value.
pub(crate) fn known_assets() -> StaticCatalog {
    let mut well_known = ServerConfig::default();
    well_known.well_known = true;
    let mut catalog = StaticCatalog::default();
    for plugin in registry().iter() {
        // A plugin without a server side contributes no assets.
        let Ok(parts) = plugin.server(&well_known) else {
            continue;
        };
        for asset in parts.assets {
            catalog = catalog.with(asset.network, asset.asset, asset.info);
        }
    }
    catalog
}
