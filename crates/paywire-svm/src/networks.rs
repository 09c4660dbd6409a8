//! Solana clusters as CAIP-2 ids (`solana:` + the first 32 characters of
//! the cluster's genesis hash), their friendly names (as the TypeScript SDK
//! spells them: `solana`, `solana-devnet`, `solana-testnet`) and their USDC
//! mints, as data that configuration extends.

use paywire_core::{ChainId, NetworkClass, NetworkInfo};
use solana_address::Address;

use crate::tx::{self, TOKEN_PROGRAM};

/// The CAIP-2 namespace of Solana clusters.
pub const NAMESPACE: &str = "solana";
/// Mainnet beta.
pub const MAINNET: &str = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";
/// Devnet.
pub const DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
/// Testnet.
pub const TESTNET: &str = "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z";
/// Circle's USDC on mainnet.
pub const USDC_MAINNET: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
/// Circle's USDC on devnet.
pub const USDC_DEVNET: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";

/// A token mint a server prices in or a facilitator accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SvmAsset {
    /// The mint.
    pub mint: Address,
    /// Ticker.
    pub symbol: String,
    /// The mint's decimals.
    pub decimals: u8,
    /// Whether one unit is worth one US dollar.
    pub usd_stable: bool,
    /// Its token program, when known (Token or Token-2022); the client
    /// reads it from the mint account otherwise.
    pub token_program: Option<Address>,
}

impl SvmAsset {
    /// A mint with its facts.
    pub fn new(mint: Address, symbol: impl Into<String>, decimals: u8, usd_stable: bool) -> Self {
        Self {
            mint,
            symbol: symbol.into(),
            decimals,
            usd_stable,
            token_program: None,
        }
    }

    fn usdc(mint: &str) -> Option<Self> {
        let mut asset = Self::new(tx::parse_address(mint)?, "USDC", 6, true);
        asset.token_program = Some(TOKEN_PROGRAM);
        Some(asset)
    }
}

/// One Solana cluster with its assets; the first is the default (money prices).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SvmNetwork {
    /// Its CAIP-2 id.
    pub id: ChainId,
    /// Its friendly name.
    pub name: String,
    /// Its assets, the default first.
    pub assets: Vec<SvmAsset>,
}

impl SvmNetwork {
    /// A cluster with no asset yet.
    pub fn new(id: ChainId, name: impl Into<String>) -> Self {
        Self {
            id,
            name: name.into(),
            assets: Vec::new(),
        }
    }

    /// The asset with `mint`, if known.
    pub fn asset(&self, mint: &Address) -> Option<&SvmAsset> {
        self.assets.iter().find(|a| a.mint == *mint)
    }

    /// The default asset (money prices).
    pub fn default_asset(&self) -> Option<&SvmAsset> {
        self.assets.first()
    }
}

/// The clusters a server or facilitator knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SvmNetworks(Vec<SvmNetwork>);

impl SvmNetworks {
    /// No cluster.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Mainnet, devnet (both with Circle USDC) and testnet (no USDC).
    pub fn well_known() -> Self {
        let mut networks = Self::empty();
        for (id, name, usdc) in [
            (MAINNET, "solana", Some(USDC_MAINNET)),
            (DEVNET, "solana-devnet", Some(USDC_DEVNET)),
            (TESTNET, "solana-testnet", None),
        ] {
            let Ok(id) = ChainId::parse(id) else { continue };
            let mut network = SvmNetwork::new(id, name);
            network.assets.extend(usdc.and_then(SvmAsset::usdc));
            networks.0.push(network);
        }
        networks
    }

    /// The cluster `id`.
    pub fn get(&self, id: &ChainId) -> Option<&SvmNetwork> {
        self.0.iter().find(|n| n.id == *id)
    }

    /// Adds `asset` to `id` (creating the cluster, named `name`, if new).
    /// A mint already listed is replaced.
    pub fn add_asset(&mut self, id: &ChainId, name: Option<&str>, asset: SvmAsset) {
        let index = if let Some(index) = self.0.iter().position(|n| n.id == *id) {
            index
        } else {
            let name = name.map_or_else(|| id.to_string(), str::to_owned);
            self.0.push(SvmNetwork::new(id.clone(), name));
            self.0.len() - 1
        };
        let network = &mut self.0[index];
        match network.assets.iter_mut().find(|a| a.mint == asset.mint) {
            Some(known) => *known = asset,
            None => network.assets.push(asset),
        }
    }

    /// Every cluster.
    pub fn iter(&self) -> impl Iterator<Item = &SvmNetwork> {
        self.0.iter()
    }
}

/// The friendly names of the well-known clusters.
pub fn network_names() -> Vec<NetworkInfo> {
    SvmNetworks::well_known()
        .iter()
        .map(|n| {
            let class = if n.id.as_str() == MAINNET {
                NetworkClass::Mainnet
            } else {
                NetworkClass::Testnet
            };
            NetworkInfo::new(n.id.clone(), n.name.clone(), class)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_clusters_and_usdc() {
        let networks = SvmNetworks::well_known();
        let mainnet = networks.get(&ChainId::parse(MAINNET).unwrap()).unwrap();
        assert_eq!(mainnet.name, "solana");
        let usdc = mainnet.default_asset().unwrap();
        assert_eq!(usdc.mint.to_string(), USDC_MAINNET);
        assert_eq!(usdc.decimals, 6);
        let devnet = networks.get(&ChainId::parse(DEVNET).unwrap()).unwrap();
        assert_eq!(
            devnet.default_asset().unwrap().mint.to_string(),
            USDC_DEVNET
        );
        let names: Vec<_> = network_names().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["solana", "solana-devnet", "solana-testnet"]);
    }

    #[test]
    fn custom_clusters_and_mints_extend_the_table() {
        let mut networks = SvmNetworks::well_known();
        let local = ChainId::parse("solana:localnet0000000000000000000000").unwrap();
        let mint = Address::new_from_array([9; 32]);
        networks.add_asset(&local, Some("local"), SvmAsset::new(mint, "TST", 2, false));
        let network = networks.get(&local).unwrap();
        assert_eq!(network.name, "local");
        assert_eq!(network.asset(&mint).unwrap().decimals, 2);
    }
}
