//! The paying side of the `credit` binding (owner: helper D).

use paywire_core::{PluginError, WalletConfig, WalletParts};

/// A wallet holding a bundle credential.
pub fn wallet_parts(config: &WalletConfig) -> Result<WalletParts, PluginError> {
    let _ = config;
    Err(PluginError::config(
        "credit",
        "the credit wallet is not built yet",
    ))
}
