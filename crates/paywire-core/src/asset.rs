//! What a participant knows about an asset: enough to compare prices across
//! assets and to apply dollar budgets. Chain crates provide catalogs.

use crate::chain::ChainId;

/// Facts about one asset on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetInfo {
    /// Ticker, e.g. `USDC`.
    pub symbol: String,
    /// Decimals of the token.
    pub decimals: u8,
    /// Whether one unit is worth one US dollar.
    pub usd_stable: bool,
}

/// Looks up assets by (network, asset address or code).
pub trait AssetCatalog: Send + Sync {
    /// Information about `asset` on `network`, if known.
    fn asset_info(&self, network: &ChainId, asset: &str) -> Option<AssetInfo>;
}
