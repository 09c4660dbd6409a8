//! [`EvmPlugin`]: the `eip155` chain family as a paywire plugin.
//!
//! Register it once (`registry.register(Arc::new(EvmPlugin))`) and the
//! gateway, the facilitator and the paying client know EVM networks by name,
//! build `exact` requirements, verify and settle EIP-3009 payments, and sign
//! them, each from its own configuration tables.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use paywire_core::{
    AssetInfo, BoxFuture, ChainId, ChainIdPattern, ChainPlugin, FacilitatorConfig,
    FacilitatorParts, NetworkInfo, PluginError, Registration, SchemeClient, SchemeServer, Secret,
    ServerAsset, ServerConfig, ServerParts, WalletConfig, WalletParts,
};
use serde::Deserialize;

use crate::exact::{ExactEvmClient, ExactEvmServer, ExactEvmSpendProbe};
use crate::networks::{
    Eip155ChainId, EvmAsset, EvmNetwork, EvmNetworks, TransferMethod, network_names,
};
use crate::rpc::RpcClient;
use crate::signer::LocalSigner;
use crate::upto::{UptoEvmClient, UptoEvmServer};

/// The CAIP-2 namespace of EVM chains.
pub const NAMESPACE: &str = "eip155";

/// Timeout of a wallet's node calls (spend probe, Permit2 allowance checks).
const WALLET_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The `eip155` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvmPlugin;

/// A server's `[[networks]]` entry for an EVM chain: a custom chain with its
/// default asset, or an extra asset on a chain that is already known.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkEntry {
    /// Resolved by the registry before the plugin sees it.
    #[allow(dead_code)]
    network: String,
    /// Human name of a new chain (default: its CAIP-2 id).
    #[serde(default)]
    name: Option<String>,
    asset: AssetEntry,
}

/// An ERC-20 token accepted for payments: EIP-3009 (the default) or
/// Permit2 (`transfer_method = "permit2"`), with `eip2612 = true` when the
/// token implements EIP-2612 (its `eip712_name`/`eip712_version` then name
/// that domain). The EIP-712 domain is required whenever a payer signs for
/// it: EIP-3009 tokens and EIP-2612 tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssetEntry {
    address: String,
    symbol: String,
    decimals: u8,
    #[serde(default)]
    eip712_name: Option<String>,
    #[serde(default)]
    eip712_version: Option<String>,
    #[serde(default)]
    usd_stable: bool,
    #[serde(default)]
    transfer_method: TransferMethod,
    #[serde(default)]
    eip2612: bool,
}

impl AssetEntry {
    /// The asset, or an error at `at`.
    pub(crate) fn to_asset(&self, at: &str) -> Result<EvmAsset, PluginError> {
        let address: Address = self.address.parse().map_err(|_| {
            PluginError::config(
                format!("{at}.address"),
                format!("{:?} is not an EVM address", self.address),
            )
        })?;
        let needs_domain = self.eip2612 || self.transfer_method == TransferMethod::Eip3009;
        let why = if self.eip2612 {
            "an EIP-2612 token needs its EIP-712 domain"
        } else {
            "an EIP-3009 token needs its EIP-712 domain"
        };
        let domain_part = |value: &Option<String>, key: &str| match value {
            Some(text) if !text.is_empty() => Ok(text.clone()),
            _ if needs_domain => Err(PluginError::config(format!("{at}.{key}"), why)),
            _ => Ok(String::new()),
        };
        Ok(EvmAsset {
            address,
            symbol: self.symbol.clone(),
            decimals: self.decimals,
            eip712_name: domain_part(&self.eip712_name, "eip712_name")?,
            eip712_version: domain_part(&self.eip712_version, "eip712_version")?,
            usd_stable: self.usd_stable,
            transfer_method: self.transfer_method,
            eip2612: self.eip2612,
        })
    }
}

/// The numeric chain id of an entry's resolved network.
pub(crate) fn chain_id_of(network: &ChainId, at: &str) -> Result<u64, PluginError> {
    network.eip155_id().ok_or_else(|| {
        PluginError::config(
            format!("{at}.network"),
            format!("{network} is not an eip155 chain with a numeric id"),
        )
    })
}

/// Deserializes an entry's table, naming the entry in errors.
pub(crate) fn table<T: serde::de::DeserializeOwned>(
    table: &serde_json::Value,
    at: &str,
) -> Result<T, PluginError> {
    // The error names the key inside the table (`chains[1].gas_limit: ...`).
    serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            at.to_owned()
        } else {
            format!("{at}.{path}")
        };
        PluginError::config(at, e.inner().to_string())
    })
}

impl EvmPlugin {
    /// The network table of a server: the well-known chains (when asked for)
    /// plus the configured ones.
    pub fn server_networks(config: &ServerConfig) -> Result<EvmNetworks, PluginError> {
        let mut networks = if config.well_known {
            EvmNetworks::well_known()
        } else {
            EvmNetworks::empty()
        };
        for entry in &config.entries {
            let parsed: NetworkEntry = table(&entry.table, &entry.at)?;
            let chain_id = chain_id_of(&entry.network, &entry.at)?;
            let asset = parsed.asset.to_asset(&format!("{}.asset", entry.at))?;
            if networks.by_chain_id(chain_id).is_some() {
                networks.add_asset(chain_id, asset);
            } else {
                let name = parsed
                    .name
                    .unwrap_or_else(|| entry.network.as_str().to_owned());
                networks.insert(EvmNetwork::new(chain_id, name, asset));
            }
        }
        Ok(networks)
    }
}

/// The local signer of a wallet's key.
pub(crate) fn wallet_signer(config: &WalletConfig) -> Result<LocalSigner, PluginError> {
    // Never quote the key, nor the parser's view of it.
    LocalSigner::from_hex(config.key.expose().trim())
        .map_err(|_| PluginError::config("key", "not a valid hex private key"))
}

/// A client of the node at `url` for the eip155 chain `network`.
pub(crate) fn node_client(
    network: &ChainId,
    url: &Secret,
    timeout: Duration,
) -> Result<Arc<RpcClient>, PluginError> {
    chain_id_of(network, &format!("rpc[{network}]"))?;
    // The URL may carry a provider key: the error names the network only.
    let rpc = RpcClient::new(vec![url.expose().to_owned()], timeout).map_err(|_| {
        PluginError::config(format!("rpc[{network}]"), "cannot create an RPC client")
    })?;
    Ok(Arc::new(rpc))
}

fn all_evm() -> Result<ChainIdPattern, PluginError> {
    ChainIdPattern::namespace(NAMESPACE).map_err(PluginError::from)
}

impl ChainPlugin for EvmPlugin {
    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn networks(&self) -> Vec<NetworkInfo> {
        network_names()
    }

    fn server(&self, config: &ServerConfig) -> Result<ServerParts, PluginError> {
        let networks = Self::server_networks(config)?;
        let mut parts = ServerParts::default();
        for network in networks.iter() {
            for asset in std::iter::once(&network.default_asset).chain(&network.other_assets) {
                let info = AssetInfo {
                    symbol: asset.symbol.clone(),
                    decimals: asset.decimals,
                    usd_stable: asset.usd_stable,
                };
                parts.assets.push(ServerAsset::new(
                    network.chain.clone(),
                    asset.address.to_string(),
                    info,
                ));
            }
        }
        let exact: Arc<dyn SchemeServer> = Arc::new(ExactEvmServer::new(networks.clone()));
        parts.schemes.push(Registration::new(all_evm()?, exact));
        let upto: Arc<dyn SchemeServer> = Arc::new(UptoEvmServer::new(networks));
        parts.schemes.push(Registration::new(all_evm()?, upto));
        Ok(parts)
    }

    /// `exact` verification and settlement on the chains of the
    /// facilitator's `[[chains]]` entries (nodes, signer keys, gas and fee
    /// caps, counterfactual wallets, log search, assets), and one probe per
    /// chain (chain id check, signer balances in wei).
    fn facilitator<'a>(
        &'a self,
        config: &'a FacilitatorConfig,
    ) -> BoxFuture<'a, Result<FacilitatorParts, PluginError>> {
        Box::pin(async move { crate::exact::facilitator_parts(config) })
    }

    /// `exact` and `upto` signing on every EVM chain; where a node is
    /// given, the clients check the Permit2 allowance before signing Permit2
    /// payments and a spend probe reads the chain.
    fn wallet(&self, config: &WalletConfig) -> Result<WalletParts, PluginError> {
        let signer = Arc::new(wallet_signer(config)?);
        let mut parts = WalletParts::default();
        parts.addresses.push(signer.address().to_string());
        let mut exact = ExactEvmClient::new(Arc::clone(&signer));
        let mut upto = UptoEvmClient::new(Arc::clone(&signer));
        let mut probe = ExactEvmSpendProbe::new();
        let mut any = false;
        for (network, url) in &config.rpc_urls {
            if network.namespace() != NAMESPACE {
                continue;
            }
            let rpc = node_client(network, url, WALLET_RPC_TIMEOUT)?;
            exact = exact.with_rpc(network.clone(), Arc::clone(&rpc));
            upto = upto.with_rpc(network.clone(), Arc::clone(&rpc));
            probe = probe.network(network.clone(), rpc);
            any = true;
        }
        let exact: Arc<dyn SchemeClient> = Arc::new(exact);
        parts.schemes.push(Registration::new(all_evm()?, exact));
        let upto: Arc<dyn SchemeClient> = Arc::new(upto);
        parts.schemes.push(Registration::new(all_evm()?, upto));
        if any {
            parts.spend_probe = Some(Arc::new(probe));
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use paywire_core::{ConfigEntry, PluginRegistry};

    use super::*;

    fn registry() -> PluginRegistry {
        PluginRegistry::new().with(Arc::new(EvmPlugin))
    }

    #[test]
    fn names_resolve_through_the_registry() {
        let registry = registry();
        assert_eq!(
            registry.networks().resolve("base").unwrap(),
            ChainId::eip155(8453)
        );
        assert!(registry.plugin_for(&ChainId::eip155(31337)).is_ok());
    }

    #[test]
    fn server_side_takes_custom_chains_and_extra_assets() {
        let anvil = serde_json::json!({
            "network": "anvil",
            "name": "Anvil",
            "asset": {"address": "0x700b6a60ce7eaaea56f065753d8dcb9653dbad35", "symbol": "USDC",
                      "decimals": 6, "eip712_name": "USD Coin", "eip712_version": "2", "usd_stable": true}
        });
        let eurc_on_base = serde_json::json!({
            "network": "base",
            "asset": {"address": "0x60a3E35Cc302bFA44Cb288Bc5a4F316Fdb1adb42", "symbol": "EURC",
                      "decimals": 6, "eip712_name": "EURC", "eip712_version": "2"}
        });
        let routed = registry()
            .route_entries(vec![anvil, eurc_on_base], |i| format!("networks[{i}]"))
            .unwrap();
        let (plugin, entries) = &routed[0];
        let mut config = ServerConfig::default();
        config.entries = entries.clone();
        config.well_known = true;
        let parts = plugin.server(&config).unwrap();
        let symbols = |chain: u64| {
            parts
                .assets
                .iter()
                .filter(|a| a.network == ChainId::eip155(chain))
                .map(|a| a.info.symbol.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(symbols(31337), ["USDC"]);
        assert_eq!(symbols(8453), ["USDC", "EURC"]);
        let schemes: Vec<_> = parts.schemes.iter().map(|s| s.handler.scheme()).collect();
        assert_eq!(schemes, ["exact", "upto"]);
        assert!(parts.schemes[1].handler.usage_based());
    }

    fn server_with(asset: serde_json::Value) -> Result<EvmNetworks, PluginError> {
        let entry = ConfigEntry::new(
            ChainId::eip155(8453),
            "networks[2]",
            serde_json::json!({"network": "base", "asset": asset}),
        );
        let mut config = ServerConfig::default();
        config.entries = vec![entry];
        config.well_known = true;
        EvmPlugin::server_networks(&config)
    }

    #[test]
    fn asset_entries_choose_their_transfer_method_and_eip2612() {
        let plain = Address::repeat_byte(0x44);
        let networks = server_with(serde_json::json!({
            "address": plain.to_string(), "symbol": "PUSD", "decimals": 6,
            "transfer_method": "permit2"}))
        .unwrap();
        let asset = networks.by_chain_id(8453).unwrap().asset(plain).unwrap();
        assert_eq!(asset.transfer_method, TransferMethod::Permit2);
        assert!(!asset.eip2612);
        assert_eq!(asset.eip2612_domain(), None);
        let permit = Address::repeat_byte(0x45);
        let networks = server_with(serde_json::json!({
            "address": permit.to_string(), "symbol": "EUSD", "decimals": 6,
            "transfer_method": "permit2", "eip2612": true,
            "eip712_name": "Permit Dollar", "eip712_version": "1"}))
        .unwrap();
        let asset = networks.by_chain_id(8453).unwrap().asset(permit).unwrap();
        assert_eq!(asset.eip2612_domain(), Some(("Permit Dollar", "1")));
        // The built-in USDC switched to Permit2 by an entry with its address.
        let usdc = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
        let networks = server_with(serde_json::json!({
            "address": usdc, "symbol": "USDC", "decimals": 6, "usd_stable": true,
            "transfer_method": "permit2", "eip2612": true,
            "eip712_name": "USD Coin", "eip712_version": "2"}))
        .unwrap();
        let base = networks.by_chain_id(8453).unwrap();
        assert_eq!(base.default_asset.transfer_method, TransferMethod::Permit2);
        assert!(base.other_assets.is_empty());
        // Default: EIP-3009, as before.
        let networks = server_with(serde_json::json!({
            "address": plain.to_string(), "symbol": "X", "decimals": 6,
            "eip712_name": "X", "eip712_version": "1"}))
        .unwrap();
        let asset = networks.by_chain_id(8453).unwrap().asset(plain).unwrap();
        assert_eq!(asset.transfer_method, TransferMethod::Eip3009);
        assert!(!asset.eip2612);
    }

    #[test]
    fn bad_asset_methods_and_missing_domains_are_named_by_key() {
        let base = |extra: serde_json::Value| {
            let mut asset = serde_json::json!({"address": Address::repeat_byte(0x44).to_string(),
                                               "symbol": "PUSD", "decimals": 6});
            for (key, value) in extra.as_object().unwrap() {
                asset[key] = value.clone();
            }
            server_with(asset).unwrap_err().to_string()
        };
        for bad in ["eip-3009", "Permit2", "permit", ""] {
            let error = base(serde_json::json!({"transfer_method": bad}));
            assert!(
                error.starts_with("networks[2].asset.transfer_method"),
                "{error}"
            );
            assert!(error.contains("permit2"), "{error}");
        }
        let error = base(serde_json::json!({"transfer_method": 2}));
        assert!(
            error.starts_with("networks[2].asset.transfer_method"),
            "{error}"
        );
        let error = base(serde_json::json!({"eip2612": "yes"}));
        assert!(error.starts_with("networks[2].asset.eip2612"), "{error}");
        // EIP-3009 (the default) needs the domain; so does EIP-2612.
        let error = base(serde_json::json!({}));
        assert!(
            error.starts_with("networks[2].asset.eip712_name"),
            "{error}"
        );
        let error = base(serde_json::json!({"eip712_name": "X"}));
        assert!(
            error.starts_with("networks[2].asset.eip712_version"),
            "{error}"
        );
        let error = base(
            serde_json::json!({"transfer_method": "permit2", "eip2612": true,
                                            "eip712_version": "1"}),
        );
        assert!(
            error.starts_with("networks[2].asset.eip712_name"),
            "{error}"
        );
        assert!(error.contains("EIP-2612"), "{error}");
    }

    #[test]
    fn bad_entries_and_keys_are_named_without_their_values() {
        let bad = ConfigEntry::new(
            ChainId::eip155(31337),
            "networks[3]",
            serde_json::json!({"network": "anvil", "asset": {"address": "nope", "symbol": "X",
                "decimals": 6, "eip712_name": "X", "eip712_version": "1"}}),
        );
        let mut config = ServerConfig::default();
        config.entries = vec![bad];
        let error = EvmPlugin.server(&config).unwrap_err().to_string();
        assert!(error.starts_with("networks[3].asset.address"), "{error}");
        let unknown_key = ConfigEntry::new(
            ChainId::eip155(31337),
            "networks[0]",
            serde_json::json!({"network": "anvil", "colour": "red", "asset": {}}),
        );
        config.entries = vec![unknown_key];
        let error = EvmPlugin.server(&config).unwrap_err().to_string();
        assert!(error.contains("colour"), "{error}");
        let secret = "0xnot-a-key-but-secret";
        let error = EvmPlugin
            .wallet(&WalletConfig::new(Secret::new(secret)))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    /// The facilitator side through the registry, as the facilitator
    /// crate drives it: `[[chains]]` tables routed to the plugin, one
    /// `exact` and one `upto` facilitator for all chains and one probe per
    /// chain.
    #[tokio::test]
    async fn facilitator_side_builds_exact_and_upto_and_a_probe_per_chain() {
        let key = format!("0x{}", "11".repeat(32));
        let tables = vec![
            serde_json::json!({"network": "base", "rpc_urls": ["http://127.0.0.1:9/KEY"],
                               "signer_private_keys": [key]}),
            serde_json::json!({"network": "eip155:84532", "rpc_urls": ["http://127.0.0.1:9"],
                               "signer_private_keys": [key], "max_fee_per_gas_gwei": 0.5}),
        ];
        let routed = registry()
            .route_entries(tables, |i| format!("chains[{i}]"))
            .unwrap();
        let (plugin, entries) = &routed[0];
        let mut config = FacilitatorConfig::default();
        config.entries = entries.clone();
        let parts = plugin.facilitator(&config).await.unwrap();
        let schemes: Vec<_> = parts
            .schemes
            .iter()
            .map(|s| s.scheme().to_owned())
            .collect();
        assert_eq!(schemes, ["exact", "upto"]);
        for scheme in &parts.schemes {
            assert_eq!(
                scheme.networks(),
                [ChainId::eip155(8453), ChainId::eip155(84532)]
            );
        }
        let probes: Vec<_> = parts.probes.iter().map(|p| p.network().clone()).collect();
        assert_eq!(probes, [ChainId::eip155(8453), ChainId::eip155(84532)]);
        assert!(parts.probes.iter().all(|p| p.balance_unit() == "wei"));
    }

    #[tokio::test]
    async fn bad_chain_entries_are_named_without_their_secrets() {
        let secret_key = format!("0x{}", "5ec7e7".repeat(10));
        let secret_url = "https://rpc.example/v2/SECRETAPIKEY";
        let mut config = FacilitatorConfig::default();
        for (table, named) in [
            (
                serde_json::json!({"network": "base", "rpc_urls": [secret_url],
                                   "signer_private_keys": [secret_key], "gas_limt": 1}),
                "chains[4]",
            ),
            (
                serde_json::json!({"network": "base", "rpc_urls": secret_url,
                                   "signer_private_keys": [secret_key]}),
                "chains[4].rpc_urls",
            ),
            (
                serde_json::json!({"network": "base", "rpc_urls": [secret_url],
                                   "signer_private_keys": secret_key}),
                "chains[4].signer_private_keys",
            ),
            (
                serde_json::json!({"network": "base", "rpc_urls": [secret_url],
                                   "signer_private_keys": ["0xnothex5ec7e7"]}),
                "chains[4].signer_private_keys[0]",
            ),
        ] {
            config.entries = vec![ConfigEntry::new(ChainId::eip155(8453), "chains[4]", table)];
            let error = EvmPlugin
                .facilitator(&config)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.starts_with(named), "{named}: {error}");
            for secret in ["5ec7e7", "SECRETAPIKEY"] {
                assert!(!error.contains(secret), "{error}");
            }
        }
    }

    #[test]
    fn wallets_sign_on_every_evm_chain_and_probe_where_a_node_is_given() {
        let key = Secret::new(format!("0x{}", "11".repeat(32)));
        let parts = EvmPlugin.wallet(&WalletConfig::new(key.clone())).unwrap();
        let schemes: Vec<_> = parts.schemes.iter().map(|s| s.handler.scheme()).collect();
        assert_eq!(schemes, ["exact", "upto"]);
        assert!(
            parts
                .schemes
                .iter()
                .all(|s| s.networks.matches(&ChainId::eip155(8453)))
        );
        assert!(parts.spend_probe.is_none());
        let mut config = WalletConfig::new(key);
        config.rpc_urls = vec![(
            ChainId::eip155(31337),
            Secret::new("http://127.0.0.1:9/KEY"),
        )];
        assert!(EvmPlugin.wallet(&config).unwrap().spend_probe.is_some());
    }
}
