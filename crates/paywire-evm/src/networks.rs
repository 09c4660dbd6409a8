//! Well-known EVM networks and their USDC deployments, as data.
//!
//! The table is a starting point, not a limit: [`EvmNetworks`] can be
//! extended at run time with any chain and asset (a local anvil chain with a
//! freshly deployed token, a new L2) without touching code.

use std::collections::HashMap;

use alloy_primitives::{Address, address};
use paywire_core::{
    AtomicAmount, ChainId, JsonObject, Money, MoneyUnit, NetworkClass, NetworkInfo,
    PaymentRequirements, Price, RequirementsRequest, SchemeError,
};
use serde::{Deserialize, Serialize};

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

/// How the payer's signature moves an asset: the wire value of
/// `extra.assetTransferMethod` and of the `transfer_method` configuration key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMethod {
    /// EIP-3009 `transferWithAuthorization` on the token itself (USDC).
    #[default]
    Eip3009,
    /// A Permit2 `permitWitnessTransferFrom` through an x402 proxy: works
    /// with any ERC-20 once the payer has approved the Permit2 contract.
    Permit2,
}

impl TransferMethod {
    /// The wire spelling (`"eip3009"`, `"permit2"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eip3009 => "eip3009",
            Self::Permit2 => "permit2",
        }
    }

    /// The wire spelling read back; `None` for an unknown method.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "eip3009" => Some(Self::Eip3009),
            "permit2" => Some(Self::Permit2),
            _ => None,
        }
    }

    /// The method `requirements` ask for: `extra.assetTransferMethod`, EIP-3009
    /// when absent; `Err` with the unknown spelling (or a non-string value).
    pub fn of(requirements: &PaymentRequirements) -> Result<Self, String> {
        let extra = requirements.extra.as_ref();
        match extra.and_then(|extra| extra.get("assetTransferMethod")) {
            None => Ok(Self::Eip3009),
            Some(serde_json::Value::String(text)) => Self::parse(text).ok_or_else(|| text.clone()),
            Some(other) => Err(other.to_string()),
        }
    }
}

impl std::fmt::Display for TransferMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// EIP-712 domain `name` of the token (EIP-3009 and EIP-2612
    /// signatures); empty for a Permit2 token without EIP-2612.
    pub eip712_name: String,
    /// EIP-712 domain `version` of the token (empty like `eip712_name`).
    pub eip712_version: String,
    /// Whether one unit is worth one US dollar (for `"$0.01"` prices and
    /// USD budgets).
    pub usd_stable: bool,
    /// How `exact` payments in this asset move funds (EIP-3009 by default;
    /// `upto` always uses Permit2).
    pub transfer_method: TransferMethod,
    /// Whether the token implements EIP-2612 `permit` (its domain being
    /// `eip712_name`/`eip712_version`): a payer without a Permit2 allowance
    /// can then sign one for a facilitator that sponsors the approval.
    pub eip2612: bool,
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
    /// EIP-712 domain name is `eip712_name` ("USD Coin" or "USDC"). It pays
    /// with EIP-3009 and also implements EIP-2612 (FiatToken v2), so Permit2
    /// payments in it (`upto`, or `exact` when a seller asks for Permit2) can
    /// use a sponsored approval.
    pub fn usdc(address: Address, eip712_name: &str) -> Self {
        Self {
            address,
            symbol: "USDC".into(),
            decimals: 6,
            eip712_name: eip712_name.into(),
            eip712_version: "2".into(),
            usd_stable: true,
            transfer_method: TransferMethod::Eip3009,
            eip2612: true,
        }
    }

    /// The same asset paid with `method` (e.g. USDC through Permit2).
    pub fn with_transfer_method(mut self, method: TransferMethod) -> Self {
        self.transfer_method = method;
        self
    }

    /// The token's EIP-2612 domain (name, version), when it implements
    /// EIP-2612 and its domain is known.
    pub fn eip2612_domain(&self) -> Option<(&str, &str)> {
        (self.eip2612 && !self.eip712_name.is_empty() && !self.eip712_version.is_empty())
            .then_some((self.eip712_name.as_str(), self.eip712_version.as_str()))
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

    /// Adds an asset to a known network, replacing the entry with the same
    /// address (the default asset included: that is how a configuration
    /// switches the built-in USDC to Permit2); returns false if the network
    /// is unknown.
    pub fn add_asset(&mut self, chain_id: u64, asset: EvmAsset) -> bool {
        match self.by_chain_id.get_mut(&chain_id) {
            Some(network) if network.default_asset.address == asset.address => {
                network.default_asset = asset;
                true
            }
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

/// A price resolved to an amount of one token.
pub(crate) struct Priced<'a> {
    /// Amount in atomic units (never zero).
    pub(crate) amount: AtomicAmount,
    /// The token.
    pub(crate) asset: Address,
    /// The token's entry in the network table, when known.
    pub(crate) known: Option<&'a EvmAsset>,
    /// The `extra` an atomic price carried.
    pub(crate) seller_extra: Option<JsonObject>,
}

/// Resolves `request.price` on `networks` for `scheme` (named in errors).
pub(crate) fn price<'a>(
    networks: &'a EvmNetworks,
    request: &RequirementsRequest<'_>,
    scheme: &str,
) -> Result<Priced<'a>, SchemeError> {
    let network = networks.get(request.network);
    let priced = match request.price {
        Price::Money(money) => {
            let asset = money_asset(network, request.network, money)?;
            let amount = money
                .to_atomic(asset.decimals)
                .map_err(|e| invalid(e.to_string()))?;
            Priced {
                amount,
                asset: asset.address,
                known: Some(asset),
                seller_extra: None,
            }
        }
        Price::Atomic {
            amount,
            asset,
            extra,
        } => {
            let address: Address = asset
                .parse()
                .map_err(|_| invalid(format!("asset {asset:?} is not an EVM address")))?;
            Priced {
                amount: *amount,
                asset: address,
                known: network.and_then(|n| n.asset(address)),
                seller_extra: extra.clone(),
            }
        }
        other => {
            return Err(SchemeError::Unsupported(format!(
                "{scheme} on EVM cannot price {other:?}"
            )));
        }
    };
    if priced.amount.is_zero() {
        return Err(invalid("price must be greater than zero".into()));
    }
    Ok(priced)
}

/// The recipient, or a refusal naming it.
pub(crate) fn parse_pay_to(pay_to: &str) -> Result<Address, SchemeError> {
    pay_to
        .parse()
        .map_err(|_| invalid(format!("payTo {pay_to:?} is not an EVM address")))
}

fn invalid(what: String) -> SchemeError {
    SchemeError::InvalidRequirements(what)
}

/// The asset a money price is paid in: the default asset for dollars or no
/// unit, else the asset with that symbol.
fn money_asset<'a>(
    network: Option<&'a EvmNetwork>,
    chain: &ChainId,
    money: &Money,
) -> Result<&'a EvmAsset, SchemeError> {
    let network = network.ok_or_else(|| {
        SchemeError::Unsupported(format!(
            "no default asset known for {chain}; give an atomic amount and asset"
        ))
    })?;
    let asset = match money.unit() {
        MoneyUnit::Usd | MoneyUnit::Unspecified => &network.default_asset,
        MoneyUnit::Symbol(symbol) => std::iter::once(&network.default_asset)
            .chain(&network.other_assets)
            .find(|a| a.symbol.eq_ignore_ascii_case(symbol))
            .ok_or_else(|| SchemeError::Unsupported(format!("no {symbol} asset on {chain}")))?,
        other => {
            return Err(SchemeError::Unsupported(format!(
                "no asset priced in {other:?} on {chain}"
            )));
        }
    };
    if matches!(money.unit(), MoneyUnit::Usd) && !asset.usd_stable {
        return Err(invalid(format!(
            "{} on {chain} is not a US dollar stablecoin",
            asset.symbol
        )));
    }
    Ok(asset)
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
            transfer_method: TransferMethod::Permit2,
            eip2612: false,
        };
        assert!(table.add_asset(31337, other.clone()));
        assert_eq!(
            table.by_chain_id(31337).unwrap().asset(other.address),
            Some(&other)
        );
        assert!(!table.add_asset(999, other));
    }

    #[test]
    fn usdc_pays_with_eip3009_and_can_switch_to_permit2() {
        let mut table = EvmNetworks::well_known();
        for network in table.iter() {
            assert_eq!(
                network.default_asset.transfer_method,
                TransferMethod::Eip3009
            );
            assert!(network.default_asset.eip2612_domain().is_some());
        }
        let base = table.by_chain_id(8453).unwrap().default_asset.clone();
        let switched = base.clone().with_transfer_method(TransferMethod::Permit2);
        assert!(table.add_asset(8453, switched.clone()));
        let network = table.by_chain_id(8453).unwrap();
        assert_eq!(network.default_asset, switched);
        assert!(network.other_assets.is_empty());
        assert_eq!(network.asset(base.address), Some(&switched));
    }

    #[test]
    fn transfer_methods_read_their_wire_spelling_only() {
        for method in [TransferMethod::Eip3009, TransferMethod::Permit2] {
            assert_eq!(TransferMethod::parse(method.as_str()), Some(method));
            let json = serde_json::to_value(method).unwrap();
            assert_eq!(json, method.as_str());
        }
        for bad in ["", "Permit2", "PERMIT2", "eip-3009", "permit"] {
            assert_eq!(TransferMethod::parse(bad), None, "{bad}");
            assert!(serde_json::from_value::<TransferMethod>(bad.into()).is_err());
        }
        let requirements = |extra: serde_json::Value| PaymentRequirements {
            scheme: "exact".into(),
            network: ChainId::eip155(8453),
            amount: AtomicAmount::from(1u64),
            asset: Address::ZERO.to_string(),
            pay_to: Address::ZERO.to_string(),
            max_timeout_seconds: 60,
            extra: extra.as_object().cloned(),
        };
        let of = |extra| TransferMethod::of(&requirements(extra));
        assert_eq!(of(serde_json::json!({})), Ok(TransferMethod::Eip3009));
        assert_eq!(of(serde_json::Value::Null), Ok(TransferMethod::Eip3009));
        let permit2 = serde_json::json!({"assetTransferMethod": "permit2"});
        assert_eq!(of(permit2), Ok(TransferMethod::Permit2));
        let unknown = serde_json::json!({"assetTransferMethod": "permit3"});
        assert_eq!(of(unknown), Err("permit3".to_owned()));
        assert!(of(serde_json::json!({"assetTransferMethod": 2})).is_err());
    }
}
