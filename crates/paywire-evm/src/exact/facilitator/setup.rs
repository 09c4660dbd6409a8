//! The facilitator side of [`crate::EvmPlugin`]: each `[[chains]]` entry
//! names one EVM chain with its nodes, settlement signers, gas and fee caps,
//! counterfactual-wallet policy, log search bounds and accepted assets. All
//! of them become one [`ExactEvmFacilitator`], and each one a readiness
//! probe. Nothing here contacts a chain.
//!
//! Errors name the entry (`chains[1].rpc_urls`) and never quote a signer key
//! or an RPC URL (providers put API keys in them).

use std::sync::Arc;
use std::time::Duration;

use paywire_core::{
    ConfigEntry, FacilitatorConfig, FacilitatorParts, NetworkDirectory, PluginError, Secret,
    SettlementSettings,
};
use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, de};

use super::probe::EvmChainProbe;
use super::{CounterfactualWallets, EvmChainConfig, ExactEvmFacilitator};
use crate::networks::{EvmNetwork, EvmNetworks, network_names};
use crate::permit2::{EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING};
use crate::plugin::{chain_id_of, table};
use crate::rpc::{RpcClient, RpcUrl};
use crate::signer::{EvmSigner, LocalSigner};

fn default_gas_limit() -> u64 {
    250_000
}
fn default_max_fee_gwei() -> f64 {
    500.0
}
fn default_max_priority_fee_gwei() -> f64 {
    2.0
}
fn default_max_wallet_deployment_gas() -> u64 {
    1_000_000
}
fn default_log_range_blocks() -> u64 {
    2_000
}
fn default_reconcile_lookback() -> u64 {
    24 * 60 * 60
}
fn default_max_sponsored_approval_gas() -> u64 {
    100_000
}
fn default_max_approval_funding_wei() -> u64 {
    1_000_000_000_000_000
}

/// One `[[chains]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainEntry {
    /// Resolved by the plugin registry before the entry gets here.
    #[serde(rename = "network")]
    _network: IgnoredAny,
    #[serde(deserialize_with = "url_list")]
    rpc_urls: Vec<RpcUrl>,
    #[serde(deserialize_with = "secret_list")]
    signer_private_keys: Vec<Secret>,
    #[serde(default = "default_gas_limit")]
    gas_limit: u64,
    #[serde(default = "default_max_fee_gwei")]
    max_fee_per_gas_gwei: f64,
    #[serde(default = "default_max_priority_fee_gwei")]
    max_priority_fee_per_gas_gwei: f64,
    #[serde(default)]
    counterfactual_wallets: CounterfactualWallets,
    #[serde(default = "default_max_wallet_deployment_gas")]
    max_wallet_deployment_gas: u64,
    #[serde(default = "default_log_range_blocks")]
    log_range_blocks: u64,
    #[serde(default = "default_reconcile_lookback")]
    reconcile_lookback_seconds: u64,
    #[serde(default)]
    eip2612_gas_sponsoring: bool,
    #[serde(default)]
    erc20_approval_gas_sponsoring: bool,
    #[serde(default = "default_max_sponsored_approval_gas")]
    max_sponsored_approval_gas: u64,
    #[serde(default = "default_max_approval_funding_wei")]
    max_approval_funding_wei: u64,
    #[serde(default)]
    assets: Vec<crate::plugin::AssetEntry>,
}

/// A list of strings, refused without quoting a value of another shape
/// (serde's own message would print it, API key or private key and all).
fn string_list<'de, D: Deserializer<'de>>(
    deserializer: D,
    shape: &'static str,
) -> Result<Vec<String>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(text) => Ok(text),
                _ => Err(de::Error::custom(shape)),
            })
            .collect(),
        _ => Err(de::Error::custom(shape)),
    }
}

fn url_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<RpcUrl>, D::Error> {
    let urls = string_list(deserializer, "rpc_urls must be a list of URL strings")?;
    Ok(urls.into_iter().map(RpcUrl::new).collect())
}

fn secret_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    let keys = string_list(
        deserializer,
        "signer_private_keys must be a list of hex private keys",
    )?;
    Ok(keys.into_iter().map(Secret::new).collect())
}

/// A `[[chains]]` entry checked and resolved: the network with its accepted
/// assets, and fee caps in wei. Its `Debug` shows neither keys nor URLs.
#[derive(Debug, Clone)]
pub(crate) struct SettledChain {
    pub(crate) network: EvmNetwork,
    pub(crate) rpc_urls: Vec<RpcUrl>,
    pub(crate) signer_keys: Vec<Secret>,
    pub(crate) gas_limit: u64,
    pub(crate) max_fee_per_gas: u128,
    pub(crate) max_priority_fee_per_gas: u128,
    pub(crate) counterfactual_wallets: CounterfactualWallets,
    pub(crate) max_wallet_deployment_gas: u64,
    pub(crate) log_range_blocks: u64,
    pub(crate) reconcile_lookback: Duration,
    pub(crate) sponsoring: Sponsoring,
}

/// The gas-sponsoring settings of a `[[chains]]` entry (all off by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sponsoring {
    pub(crate) eip2612: bool,
    pub(crate) erc20_approval: bool,
    pub(crate) max_approval_gas: u64,
    pub(crate) max_funding_wei: u64,
}

/// Converts gwei (possibly fractional, e.g. `0.05` on L2s) to wei.
fn gwei_to_wei(gwei: f64) -> Option<u128> {
    if !gwei.is_finite() || !(0.0..=1.0e12).contains(&gwei) {
        return None;
    }
    let wei = (gwei * 1.0e9).round();
    // Bounded above by 1e21 < u128::MAX, non-negative: the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(wei as u128)
}

/// The accepted assets of `entry`: those listed, else the chain's
/// well-known USDC.
fn settled_network(
    entry: &ConfigEntry,
    assets: &[crate::plugin::AssetEntry],
    names: &NetworkDirectory,
) -> Result<EvmNetwork, PluginError> {
    let at = &entry.at;
    let chain_id = chain_id_of(&entry.network, at)?;
    let mut listed = Vec::with_capacity(assets.len());
    for (n, asset) in assets.iter().enumerate() {
        let mut asset = asset.to_asset(&format!("{at}.assets[{n}]"))?;
        asset.usd_stable |= matches!(asset.symbol.as_str(), "USDC" | "USDT" | "PYUSD");
        listed.push(asset);
    }
    let mut listed = listed.into_iter();
    let Some(default_asset) = listed.next() else {
        let network = &entry.network;
        return EvmNetworks::well_known()
            .by_chain_id(chain_id)
            .cloned()
            .ok_or_else(|| {
                let detail = format!(
                    "{network} has no well-known USDC deployment; list its assets in [[chains.assets]]"
                );
                PluginError::config(format!("{at}.assets"), detail)
            });
    };
    let name = names
        .name_of(&entry.network)
        .unwrap_or(entry.network.as_str());
    let mut network = EvmNetwork::new(chain_id, name, default_asset);
    network.other_assets = listed.collect();
    Ok(network)
}

/// Checks and resolves one `[[chains]]` entry.
pub(crate) fn settled_chain(
    entry: &ConfigEntry,
    names: &NetworkDirectory,
) -> Result<SettledChain, PluginError> {
    let at = |key: &str| format!("{}.{key}", entry.at);
    let parsed: ChainEntry = table(&entry.table, &entry.at)?;
    if parsed.rpc_urls.is_empty() {
        return Err(PluginError::config(
            at("rpc_urls"),
            "at least one RPC URL is required",
        ));
    }
    if parsed.log_range_blocks == 0 {
        return Err(PluginError::config(
            at("log_range_blocks"),
            "must be positive",
        ));
    }
    if parsed.signer_private_keys.is_empty() {
        return Err(PluginError::config(
            at("signer_private_keys"),
            "at least one signer key is required",
        ));
    }
    let fee = |gwei: f64, key: &str| {
        gwei_to_wei(gwei).ok_or_else(|| PluginError::config(at(key), "not a valid gwei amount"))
    };
    Ok(SettledChain {
        network: settled_network(entry, &parsed.assets, names)?,
        max_fee_per_gas: fee(parsed.max_fee_per_gas_gwei, "max_fee_per_gas_gwei")?,
        max_priority_fee_per_gas: fee(
            parsed.max_priority_fee_per_gas_gwei,
            "max_priority_fee_per_gas_gwei",
        )?,
        rpc_urls: parsed.rpc_urls,
        signer_keys: parsed.signer_private_keys,
        gas_limit: parsed.gas_limit,
        counterfactual_wallets: parsed.counterfactual_wallets,
        max_wallet_deployment_gas: parsed.max_wallet_deployment_gas,
        log_range_blocks: parsed.log_range_blocks,
        reconcile_lookback: Duration::from_secs(parsed.reconcile_lookback_seconds),
        sponsoring: Sponsoring {
            eip2612: parsed.eip2612_gas_sponsoring,
            erc20_approval: parsed.erc20_approval_gas_sponsoring,
            max_approval_gas: parsed.max_sponsored_approval_gas,
            max_funding_wei: parsed.max_approval_funding_wei,
        },
    })
}

/// The signers of a chain from their keys; an invalid key is named by its
/// position, never quoted (nor the parser's view of it).
fn signers(chain: &SettledChain, at: &str) -> Result<Vec<Arc<dyn EvmSigner>>, PluginError> {
    let network = &chain.network.chain;
    let mut signers: Vec<Arc<dyn EvmSigner>> = Vec::with_capacity(chain.signer_keys.len());
    for (n, key) in chain.signer_keys.iter().enumerate() {
        let signer = LocalSigner::from_hex(key.expose().trim()).map_err(|_| {
            let at = format!("{at}.signer_private_keys[{n}]");
            PluginError::config(at, "not a valid hex private key")
        })?;
        tracing::info!(%network, signer = %signer.address(), "settlement signer loaded");
        signers.push(Arc::new(signer));
    }
    Ok(signers)
}

/// The settlement configuration and the readiness probe of one chain.
fn connect(
    entry: &ConfigEntry,
    chain: SettledChain,
    settings: &SettlementSettings,
    settle_authenticated: bool,
) -> Result<(EvmChainConfig, EvmChainProbe), PluginError> {
    let urls = chain.rpc_urls.iter().map(|u| u.expose().to_owned());
    // The client's errors name an endpoint by position, never by its text.
    let rpc = RpcClient::new(urls.collect(), settings.rpc_timeout)
        .map_err(|e| PluginError::config(format!("{}.rpc_urls", entry.at), e.to_string()))?;
    let rpc = Arc::new(rpc);
    let signers = signers(&chain, &entry.at)?;
    let addresses = signers.iter().map(EvmSigner::address).collect();
    let probe = EvmChainProbe::new(&chain.network, Arc::clone(&rpc), addresses);
    if chain.counterfactual_wallets == CounterfactualWallets::Deploy && !settle_authenticated {
        tracing::warn!(network = %chain.network.chain,
            "counterfactual wallet deployments are on while /settle needs no API key: anyone can make this facilitator pay for deployments (up to max_wallet_deployment_gas each)");
    }
    let mut evm = EvmChainConfig::new(chain.network, rpc, signers);
    evm.gas_limit = chain.gas_limit;
    evm.max_fee_per_gas = chain.max_fee_per_gas;
    evm.max_priority_fee_per_gas = chain.max_priority_fee_per_gas;
    evm.counterfactual_wallets = chain.counterfactual_wallets;
    evm.max_wallet_deployment_gas = chain.max_wallet_deployment_gas;
    evm.log_range_blocks = chain.log_range_blocks;
    evm.reconcile_lookback = chain.reconcile_lookback;
    evm.eip2612_gas_sponsoring = chain.sponsoring.eip2612;
    evm.erc20_approval_gas_sponsoring = chain.sponsoring.erc20_approval;
    evm.max_sponsored_approval_gas = chain.sponsoring.max_approval_gas;
    evm.max_approval_funding_wei = u128::from(chain.sponsoring.max_funding_wei);
    if chain.sponsoring.erc20_approval && !settle_authenticated {
        tracing::warn!(network = %evm.network.chain,
            "sponsored ERC-20 approvals are on while /settle needs no API key: anyone can make this facilitator fund approvals (up to max_approval_funding_wei each)");
    }
    Ok((evm, probe))
}

/// One [`ExactEvmFacilitator`] for every entry of `config`, and a probe per chain.
pub(crate) fn facilitator_parts(
    config: &FacilitatorConfig,
) -> Result<FacilitatorParts, PluginError> {
    let mut names = NetworkDirectory::new();
    names.extend(network_names());
    let settings = &config.settings;
    let mut builder = ExactEvmFacilitator::builder()
        .valid_before_buffer(settings.valid_before_buffer)
        .receipt_timeout(settings.receipt_timeout)
        .rebroadcast_interval(settings.rebroadcast_interval)
        .crash_after_broadcast(settings.crash_after_broadcast);
    let mut parts = FacilitatorParts::default();
    for entry in &config.entries {
        let chain = settled_chain(entry, &names)?;
        for (on, extension) in [
            (chain.sponsoring.eip2612, EIP2612_GAS_SPONSORING),
            (
                chain.sponsoring.erc20_approval,
                ERC20_APPROVAL_GAS_SPONSORING,
            ),
        ] {
            if on && !parts.extensions.iter().any(|known| known == extension) {
                parts.extensions.push(extension.to_owned());
            }
        }
        let (evm, probe) = connect(entry, chain, settings, config.settle_authenticated)?;
        parts.probes.push(Arc::new(probe));
        builder = builder.chain(evm);
    }
    let exact = builder.build().map_err(|e| {
        let at = config.entries.first().map_or("chains", |e| e.at.as_str());
        PluginError::config(at, e.to_string())
    })?;
    // Two front-ends over one engine: `upto` settles from the same signers
    // (and nonce managers) as `exact`, on every chain `exact` serves.
    let exact = Arc::new(exact);
    parts
        .schemes
        .push(Arc::clone(&exact) as Arc<dyn paywire_core::SchemeFacilitator>);
    parts
        .schemes
        .push(Arc::new(crate::permit2::UptoEvmFacilitator::new(exact)));
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use paywire_core::ChainId;

    use super::*;
    use crate::Eip155ChainId;

    const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    fn names() -> NetworkDirectory {
        let mut names = NetworkDirectory::new();
        names.extend(network_names());
        names
    }

    fn entry(chain: u64, table: serde_json::Value) -> ConfigEntry {
        ConfigEntry::new(ChainId::eip155(chain), "chains[0]", table)
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "network": "base",
            "rpc_urls": ["https://rpc.example"],
            "signer_private_keys": [KEY],
        })
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut table = minimal();
        table[key] = value;
        table
    }

    fn error(chain: u64, table: serde_json::Value) -> String {
        settled_chain(&entry(chain, table), &names())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn defaults_and_settings_in_wei() -> Result<(), PluginError> {
        let chain = settled_chain(&entry(8453, minimal()), &names())?;
        assert_eq!(chain.network.chain_id, 8453);
        assert_eq!(chain.network.default_asset.symbol, "USDC");
        assert_eq!(chain.gas_limit, 250_000);
        assert_eq!(chain.max_fee_per_gas, 500_000_000_000);
        assert_eq!(chain.max_priority_fee_per_gas, 2_000_000_000);
        assert_eq!(chain.counterfactual_wallets, CounterfactualWallets::Off);
        assert_eq!(chain.max_wallet_deployment_gas, 1_000_000);
        assert_eq!(chain.log_range_blocks, 2_000);
        assert_eq!(chain.reconcile_lookback.as_secs(), 86_400);
        assert!(!chain.sponsoring.eip2612 && !chain.sponsoring.erc20_approval);
        assert_eq!(chain.sponsoring.max_approval_gas, 100_000);
        assert_eq!(chain.sponsoring.max_funding_wei, 1_000_000_000_000_000);

        let mut table = with("counterfactual_wallets", "deploy".into());
        table["max_wallet_deployment_gas"] = 400_000.into();
        table["log_range_blocks"] = 500.into();
        table["reconcile_lookback_seconds"] = 3_600.into();
        table["max_fee_per_gas_gwei"] = 0.5.into();
        table["eip2612_gas_sponsoring"] = true.into();
        table["erc20_approval_gas_sponsoring"] = true.into();
        table["max_sponsored_approval_gas"] = 80_000.into();
        table["max_approval_funding_wei"] = 5_000.into();
        let on = settled_chain(&entry(8453, table), &names())?;
        assert!(on.sponsoring.eip2612 && on.sponsoring.erc20_approval);
        assert_eq!(on.sponsoring.max_approval_gas, 80_000);
        assert_eq!(on.sponsoring.max_funding_wei, 5_000);
        assert_eq!(on.counterfactual_wallets, CounterfactualWallets::Deploy);
        assert_eq!(on.max_wallet_deployment_gas, 400_000);
        assert_eq!(on.log_range_blocks, 500);
        assert_eq!(on.reconcile_lookback.as_secs(), 3_600);
        assert_eq!(on.max_fee_per_gas, 500_000_000);
        Ok(())
    }

    #[test]
    fn listed_assets_replace_the_well_known_usdc() -> Result<(), PluginError> {
        let asset = serde_json::json!([{
            "address": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "symbol": "USDC",
            "decimals": 6, "eip712_name": "USDC", "eip712_version": "2"
        }]);
        let chain = settled_chain(&entry(84532, with("assets", asset)), &names())?;
        assert_eq!(chain.network.name, "base-sepolia");
        assert_eq!(chain.network.default_asset.eip712_name, "USDC");
        assert!(chain.network.default_asset.usd_stable);
        Ok(())
    }

    #[test]
    fn gwei_conversion() {
        assert_eq!(gwei_to_wei(1.0), Some(1_000_000_000));
        assert_eq!(gwei_to_wei(0.05), Some(50_000_000));
        assert_eq!(gwei_to_wei(-1.0), None);
        assert_eq!(gwei_to_wei(f64::NAN), None);
    }

    /// Every refusal names the entry and the key; none quotes a signer key
    /// or an RPC URL.
    #[test]
    fn bad_entries_are_named_without_their_secrets() {
        let cases = [
            (8453, with("gas_limt", 5.into()), "gas_limt"),
            (8453, with("counterfactual_wallets", "yes".into()), "deploy"),
            (
                8453,
                with("log_range_blocks", 0.into()),
                "chains[0].log_range_blocks",
            ),
            (
                8453,
                with("rpc_urls", serde_json::json!([])),
                "chains[0].rpc_urls",
            ),
            (
                8453,
                with("signer_private_keys", serde_json::json!([])),
                "chains[0].signer_private_keys",
            ),
            (
                8453,
                with("max_fee_per_gas_gwei", (-1.0).into()),
                "chains[0].max_fee_per_gas_gwei",
            ),
            (999_999, minimal(), "chains.assets"),
            (
                8453,
                with(
                    "assets",
                    serde_json::json!([{"address": "0xnope", "symbol": "X", "decimals": 6,
                        "eip712_name": "X", "eip712_version": "1"}]),
                ),
                "chains[0].assets[0].address",
            ),
        ];
        for (chain, table, expected) in cases {
            let error = error(chain, table);
            assert!(error.contains(expected), "{expected}: {error}");
            assert!(error.starts_with("chains[0]"), "{error}");
            assert!(!error.contains(&KEY[2..]), "{error}");
        }
        // Misshapen secrets are refused without being quoted.
        for (key, shape) in [
            ("rpc_urls", serde_json::json!("https://rpc.example/SECRET")),
            (
                "rpc_urls",
                serde_json::json!(["https://a", 1, "https://b/SECRET"]),
            ),
            ("signer_private_keys", serde_json::json!("0xSECRET")),
            ("signer_private_keys", serde_json::json!([["0xSECRET"]])),
        ] {
            let error = error(8453, with(key, shape));
            assert!(error.contains(&format!("{key} must be a list")), "{error}");
            assert!(!error.contains("SECRET"), "{error}");
        }
    }

    #[test]
    fn resolved_chains_print_neither_keys_nor_url_secrets() -> Result<(), PluginError> {
        let url =
            "https://user:pass@rpc.example:8545/v2/SECRETPATH?apikey=SECRETQUERY#SECRETFRAGMENT";
        let table = with("rpc_urls", serde_json::json!([url]));
        let chain = settled_chain(&entry(8453, table), &names())?;
        let printed = format!("{chain:?}");
        assert!(printed.contains("https://rpc.example:8545"), "{printed}");
        for secret in ["SECRET", "user", "pass", &KEY[2..]] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(chain.rpc_urls[0].expose().contains("SECRETPATH"));
        Ok(())
    }

    /// `upto` is served wherever `exact` is, and the sponsoring extensions
    /// are listed only when a chain turns them on.
    #[test]
    fn upto_rides_along_and_extensions_follow_the_config() -> Result<(), PluginError> {
        let mut config = FacilitatorConfig::default();
        config.entries = vec![entry(8453, minimal())];
        let parts = facilitator_parts(&config)?;
        let schemes: Vec<&str> = parts.schemes.iter().map(|s| s.scheme()).collect();
        assert_eq!(schemes, ["exact", "upto"]);
        assert_eq!(parts.schemes[1].networks(), parts.schemes[0].networks());
        assert!(parts.extensions.is_empty());
        let extra = parts.schemes[1].kind_extra(&ChainId::eip155(8453));
        let signer = LocalSigner::from_hex(KEY).map(|s| s.address().to_checksum(None));
        assert_eq!(
            extra.and_then(|e| e.get("facilitatorAddress").cloned()),
            signer.ok().map(Into::into)
        );
        let mut table = with("eip2612_gas_sponsoring", true.into());
        table["erc20_approval_gas_sponsoring"] = true.into();
        config.entries = vec![entry(8453, table)];
        let parts = facilitator_parts(&config)?;
        assert_eq!(
            parts.extensions,
            ["eip2612GasSponsoring", "erc20ApprovalGasSponsoring"]
        );
        Ok(())
    }

    #[test]
    fn invalid_keys_and_urls_are_refused_by_position() {
        let mut config = FacilitatorConfig::default();
        let table = with(
            "signer_private_keys",
            serde_json::json!([KEY, "0xSECRETnothex"]),
        );
        config.entries = vec![entry(8453, table)];
        let error = facilitator_parts(&config).err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.starts_with("chains[0].signer_private_keys[1]"),
            "{error}"
        );
        assert!(!error.contains("SECRET"), "{error}");
        let table = with("rpc_urls", serde_json::json!(["ftp//SECRETPATH"]));
        config.entries = vec![entry(8453, table)];
        let error = facilitator_parts(&config).err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.starts_with("chains[0].rpc_urls"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
    }
}
