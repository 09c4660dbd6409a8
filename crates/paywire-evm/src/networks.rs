//! Well-known EVM networks and their USDC deployments, as data.
//!
//! The table is a starting point, not a limit: [`EvmNetworks`] can be
//! extended at run time with any chain and asset (a local anvil chain with a
//! freshly deployed token, a new L2) without touching code.

use std::collections::HashMap;

use alloy_primitives::{Address, address};
use paywire_core::{ChainId, NetworkClass, NetworkInfo};

/// `eip155` chain ids from and to their numeric EVM chain id.
pub trait Eip155ChainId: Sized {
    /// `eip155:<chain_id>`.
    fn eip155(chain_id: u64) -> Self;
    /// The numeric chain id, when this is an `eip155` chain spelled in its
    /// one canonical form (decimal, no leading zero): `eip155:08453` is not
    /// Base, or a policy that denies `eip155:8453` would not apply to it
    /// while the signature is valid on Base.
    fn eip155_id(&self) -> Option<u64>;
}

impl Eip155ChainId for ChainId {
    fn eip155(chain_id: u64) -> Self {
        // Always a valid CAIP-2 id: a six-letter namespace and 1-20 digits.
        ChainId::new("eip155", &chain_id.to_string())
            .unwrap_or_else(|_| unreachable!("eip155:<u64> is valid CAIP-2"))
    }

    fn eip155_id(&self) -> Option<u64> {
        if self.namespace() != "eip155" {
            return None;
        }
        let reference = self.reference();
        let id: u64 = reference.parse().ok()?;
        (id.to_string() == reference).then_some(id)
    }
}

/// Friendly names of well-known EVM networks (configuration and command
/// line), with their numeric chain ids.
const NAMES: &[(&str, u64, NetworkClass)] = &[
    ("base", 8453, NetworkClass::Mainnet),
    ("base-sepolia", 84532, NetworkClass::Testnet),
    ("ethereum", 1, NetworkClass::Mainnet),
    ("sepolia", 11155111, NetworkClass::Testnet),
    ("polygon", 137, NetworkClass::Mainnet),
    ("polygon-amoy", 80002, NetworkClass::Testnet),
    ("arbitrum", 42161, NetworkClass::Mainnet),
    ("arbitrum-sepolia", 421614, NetworkClass::Testnet),
    ("optimism", 10, NetworkClass::Mainnet),
    ("optimism-sepolia", 11155420, NetworkClass::Testnet),
    ("avalanche", 43114, NetworkClass::Mainnet),
    ("avalanche-fuji", 43113, NetworkClass::Testnet),
    ("anvil", 31337, NetworkClass::Testnet),
];

/// The well-known EVM networks by friendly name (`base`, `base-sepolia`, …),
/// as the plugin contributes them to a [`paywire_core::NetworkDirectory`].
pub fn network_names() -> Vec<NetworkInfo> {
    NAMES
        .iter()
        .map(|(name, chain_id, class)| NetworkInfo::new(ChainId::eip155(*chain_id), *name, *class))
        .collect()
}

/// An ERC-20 asset usable for payments on one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmAsset {
    /// Token contract address.
    pub address: Address,
    /// Ticker, e.g. `USDC`.
    pub symbol: String,
    /// Decimals of the token.
    pub decimals: u8,
    /// EIP-712 domain `name` of the token (EIP-3009 signatures).
    pub eip712_name: String,
    /// EIP-712 domain `version` of the token.
    pub eip712_version: String,
    /// Whether one unit is worth one US dollar (for `"$0.01"` prices and
    /// USD budgets).
    pub usd_stable: bool,
}

/// One EVM chain with its default payment asset and other known assets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmNetwork {
    /// CAIP-2 id (`eip155:<chain id>`).
    pub chain: ChainId,
    /// Numeric chain id.
    pub chain_id: u64,
    /// Human name.
    pub name: String,
    /// The asset used for money prices (USDC on every built-in chain).
    pub default_asset: EvmAsset,
    /// Further assets accepted on this chain.
    pub other_assets: Vec<EvmAsset>,
}

impl EvmNetwork {
    /// A network with one default asset.
    pub fn new(chain_id: u64, name: impl Into<String>, default_asset: EvmAsset) -> Self {
        Self {
            chain: ChainId::eip155(chain_id),
            chain_id,
            name: name.into(),
            default_asset,
            other_assets: Vec::new(),
        }
    }

    /// A local anvil chain (31337) with Circle's FiatTokenV2_2 deployed at
    /// `usdc` (domain name "USD Coin"), as the test kit and `paywire devnet` run it.
    pub fn anvil(usdc: Address) -> Self {
        Self::new(31337, "Anvil", EvmAsset::usdc(usdc, "USD Coin"))
    }

    /// The asset at `address`, if known on this chain.
    pub fn asset(&self, address: Address) -> Option<&EvmAsset> {
        std::iter::once(&self.default_asset)
            .chain(&self.other_assets)
            .find(|asset| asset.address == address)
    }
}

impl EvmAsset {
    /// Circle's USDC (6 decimals, EIP-712 version "2") at `address`, whose
    /// EIP-712 domain name is `eip712_name` ("USD Coin" or "USDC").
    pub fn usdc(address: Address, eip712_name: &str) -> Self {
        Self {
            address,
            symbol: "USDC".into(),
            decimals: 6,
            eip712_name: eip712_name.into(),
            eip712_version: "2".into(),
            usd_stable: true,
        }
    }
}

fn usdc(address: Address, eip712_name: &str) -> EvmAsset {
    EvmAsset::usdc(address, eip712_name)
}

/// Circle's USDC on the built-in networks: (chain id, name, address, EIP-712 name).
/// Mainnet deployments use the domain name "USD Coin"; most testnet
/// deployments use "USDC" (Avalanche Fuji is the exception).
const BUILT_IN: &[(u64, &str, Address, &str)] = &[
    (
        8453,
        "Base",
        address!("833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
        "USD Coin",
    ),
    (
        84532,
        "Base Sepolia",
        address!("036CbD53842c5426634e7929541eC2318f3dCF7e"),
        "USDC",
    ),
    (
        1,
        "Ethereum",
        address!("A0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
        "USD Coin",
    ),
    (
        11155111,
        "Sepolia",
        address!("1c7D4B196Cb0C7B01d743Fbc6116a902379C7238"),
        "USDC",
    ),
    (
        137,
        "Polygon",
        address!("3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),
        "USD Coin",
    ),
    (
        80002,
        "Polygon Amoy",
        address!("41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582"),
        "USDC",
    ),
    (
        42161,
        "Arbitrum One",
        address!("af88d065e77c8cC2239327C5EDb3A432268e5831"),
        "USD Coin",
    ),
    (
        421614,
        "Arbitrum Sepolia",
        address!("75faf114eafb1BDbe2F0316DF893fd58CE46AA4d"),
        "USDC",
    ),
    (
        10,
        "OP Mainnet",
        address!("0b2C639c533813f4Aa9D7837CAf62653d097Ff85"),
        "USD Coin",
    ),
    (
        11155420,
        "OP Sepolia",
        address!("5fd84259d66Cd46123540766Be93DFE6D43130D7"),
        "USDC",
    ),
    (
        43114,
        "Avalanche C-Chain",
        address!("B97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E"),
        "USD Coin",
    ),
    (
        43113,
        "Avalanche Fuji",
        address!("5425890298aed601595a70AB815c96711a31Bc65"),
        "USD Coin",
    ),
];

/// A run-time extendable table of EVM networks keyed by chain id.
#[derive(Debug, Clone, Default)]
pub struct EvmNetworks {
    by_chain_id: HashMap<u64, EvmNetwork>,
}

impl EvmNetworks {
    /// An empty table.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in networks (Base, Ethereum, Polygon, Arbitrum, Optimism,
    /// Avalanche and their testnets) with Circle's USDC.
    pub fn well_known() -> Self {
        let mut table = Self::empty();
        for (chain_id, name, address, eip712_name) in BUILT_IN {
            table.insert(EvmNetwork::new(
                *chain_id,
                *name,
                usdc(*address, eip712_name),
            ));
        }
        table
    }

    /// Adds or replaces a network.
    pub fn insert(&mut self, network: EvmNetwork) -> &mut Self {
        self.by_chain_id.insert(network.chain_id, network);
        self
    }

    /// Adds an asset to a known network; returns false if the network is unknown.
    pub fn add_asset(&mut self, chain_id: u64, asset: EvmAsset) -> bool {
        match self.by_chain_id.get_mut(&chain_id) {
            Some(network) => {
                network.other_assets.retain(|a| a.address != asset.address);
                network.other_assets.push(asset);
                true
            }
            None => false,
        }
    }

    /// The network with this numeric chain id.
    pub fn by_chain_id(&self, chain_id: u64) -> Option<&EvmNetwork> {
        self.by_chain_id.get(&chain_id)
    }

    /// The network with this CAIP-2 id.
    pub fn get(&self, chain: &ChainId) -> Option<&EvmNetwork> {
        self.by_chain_id(chain.eip155_id()?)
    }

    /// All networks.
    pub fn iter(&self) -> impl Iterator<Item = &EvmNetwork> {
        self.by_chain_id.values()
    }
}

impl paywire_core::AssetCatalog for EvmNetworks {
    fn asset_info(&self, network: &ChainId, asset: &str) -> Option<paywire_core::AssetInfo> {
        let address: Address = asset.parse().ok()?;
        let asset = self.get(network)?.asset(address)?;
        Some(paywire_core::AssetInfo {
            symbol: asset.symbol.clone(),
            decimals: asset.decimals,
            usd_stable: asset.usd_stable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_spelling_of_a_chain_id_is_evm() {
        let id = |text: &str| ChainId::parse(text).expect("valid CAIP-2").eip155_id();
        assert_eq!(id("eip155:8453"), Some(8453));
        assert_eq!(id("eip155:0"), Some(0));
        for other in [
            "eip155:08453",
            "eip155:00",
            "eip155:18446744073709551616",
            "solana:8453",
        ] {
            assert_eq!(id(other), None, "{other}");
        }
    }

    #[test]
    fn built_in_table_is_consistent() {
        let table = EvmNetworks::well_known();
        assert_eq!(table.iter().count(), BUILT_IN.len());
        let mut names = paywire_core::NetworkDirectory::new();
        names.extend(network_names());
        let base = table.get(&names.resolve("base").unwrap()).unwrap();
        assert_eq!(base.default_asset.eip712_name, "USD Coin");
        let sepolia = table.get(&names.resolve("base-sepolia").unwrap()).unwrap();
        assert_eq!(sepolia.default_asset.eip712_name, "USDC");
        assert_eq!(
            sepolia.default_asset.address,
            address!("036CbD53842c5426634e7929541eC2318f3dCF7e")
        );
        // Every built-in chain has a friendly name.
        for network in table.iter() {
            assert!(
                names.name_of(&network.chain).is_some(),
                "{} has no name",
                network.chain
            );
        }
        assert_eq!(names.is_testnet(&ChainId::eip155(84532)), Some(true));
        assert_eq!(names.is_testnet(&ChainId::eip155(8453)), Some(false));
        assert_eq!(ChainId::eip155(8453).eip155_id(), Some(8453));
        assert_eq!(ChainId::parse("solana:x").unwrap().eip155_id(), None);
    }

    #[test]
    fn extends_at_run_time() {
        let mut table = EvmNetworks::well_known();
        let token = Address::repeat_byte(0x11);
        table.insert(EvmNetwork::new(31337, "Anvil", usdc(token, "USD Coin")));
        assert_eq!(
            table
                .by_chain_id(31337)
                .unwrap()
                .asset(token)
                .unwrap()
                .decimals,
            6
        );
        let other = EvmAsset {
            address: Address::repeat_byte(0x22),
            symbol: "EURC".into(),
            decimals: 6,
            eip712_name: "EURC".into(),
            eip712_version: "2".into(),
            usd_stable: false,
        };
        assert!(table.add_asset(31337, other.clone()));
        assert_eq!(
            table.by_chain_id(31337).unwrap().asset(other.address),
            Some(&other)
        );
        assert!(!table.add_asset(999, other));
    }
}
