//! [`SvmPlugin`]: the `solana` chain family as a paywire plugin, built from
//! the configuration tables the registry routes to it.
//!
//! Errors name the entry (`chains[1].rpc_urls`) and never quote a key or an
//! RPC URL (providers put API keys in them).

use std::sync::Arc;
use std::time::Duration;

use paywire_core::{
    AssetInfo, BoxFuture, ChainId, ChainIdPattern, ChainPlugin, ConfigEntry, FacilitatorConfig,
    FacilitatorParts, NetworkInfo, PluginError, Registration, SchemeClient, SchemeFacilitator,
    SchemeServer, ServerAsset, ServerConfig, ServerParts, WalletConfig, WalletParts,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny};

use crate::exact::verify::Policy;
use crate::exact::{ExactSvmClient, ExactSvmFacilitator, ExactSvmServer, SvmChain};
use crate::keys::SvmKeypair;
use crate::mint::is_known_extension;
use crate::networks::{NAMESPACE, SvmAsset, SvmNetworks, network_names};
use crate::probe::SvmChainProbe;
use crate::rpc::{Commitment, SvmRpc};
use crate::tx;

/// Timeout of a wallet's node calls.
const WALLET_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The `solana` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct SvmPlugin;

/// A mint in configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssetEntry {
    mint: String,
    symbol: String,
    decimals: u8,
    #[serde(default)]
    usd_stable: bool,
    #[serde(default)]
    token_program: Option<String>,
}

impl AssetEntry {
    fn to_asset(&self, at: &str) -> Result<SvmAsset, PluginError> {
        let mint = tx::parse_address(&self.mint)
            .ok_or_else(|| PluginError::config(format!("{at}.mint"), "not a Solana address"))?;
        let mut asset = SvmAsset::new(mint, self.symbol.clone(), self.decimals, self.usd_stable);
        if let Some(program) = &self.token_program {
            let program = tx::parse_address(program)
                .filter(tx::is_token_program)
                .ok_or_else(|| {
                    PluginError::config(format!("{at}.token_program"), "not Token or Token-2022")
                })?;
            asset.token_program = Some(program);
        }
        Ok(asset)
    }
}

/// A server's `[[networks]]` entry for a Solana cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkEntry {
    #[serde(rename = "network")]
    _network: IgnoredAny,
    #[serde(default)]
    name: Option<String>,
    /// The merchant's own fee payer, for facilitators that publish none.
    #[serde(default)]
    fee_payer: Option<String>,
    #[serde(default)]
    assets: Vec<AssetEntry>,
}

fn default_max_compute_units() -> u32 {
    Policy::default().max_compute_units
}
fn default_max_price() -> u64 {
    Policy::default().max_compute_unit_price
}
fn default_max_priority_fee() -> u64 {
    Policy::default().max_priority_fee_lamports
}

/// A facilitator's `[[chains]]` entry for a Solana cluster.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainEntry {
    #[serde(rename = "network")]
    _network: IgnoredAny,
    #[serde(deserialize_with = "string_list")]
    rpc_urls: Vec<String>,
    #[serde(deserialize_with = "string_list")]
    fee_payer_private_keys: Vec<String>,
    #[serde(default = "default_max_compute_units")]
    max_compute_units: u32,
    #[serde(default = "default_max_price")]
    max_compute_unit_price_micro_lamports: u64,
    #[serde(default = "default_max_priority_fee")]
    max_priority_fee_lamports: u64,
    #[serde(default)]
    create_destination_ata: bool,
    #[serde(default)]
    allowed_mint_extensions: Vec<String>,
    #[serde(default)]
    commitment: Commitment,
    #[serde(default)]
    assets: Vec<AssetEntry>,
}

/// A list of strings, refused without quoting a value of another shape
/// (serde's message would print it, key or URL and all).
fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(text) => Ok(text),
                _ => Err(de::Error::custom("expected a list of strings")),
            })
            .collect(),
        _ => Err(de::Error::custom("expected a list of strings")),
    }
}

/// Deserializes an entry's table, naming the key inside it in errors.
fn table<T: de::DeserializeOwned>(entry: &ConfigEntry) -> Result<T, PluginError> {
    serde_path_to_error::deserialize(&entry.table).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            entry.at.clone()
        } else {
            format!("{}.{path}", entry.at)
        };
        PluginError::config(at, e.inner().to_string())
    })
}

fn all_solana() -> Result<ChainIdPattern, PluginError> {
    ChainIdPattern::namespace(NAMESPACE).map_err(PluginError::from)
}

impl SvmPlugin {
    /// The clusters of a server: the well-known ones (when asked for) plus
    /// the configured clusters and mints.
    pub fn server_networks(config: &ServerConfig) -> Result<SvmNetworks, PluginError> {
        Ok(Self::server_side(config)?.0)
    }

    fn server_side(config: &ServerConfig) -> Result<(SvmNetworks, ExactSvmServer), PluginError> {
        let mut networks = if config.well_known {
            SvmNetworks::well_known()
        } else {
            SvmNetworks::empty()
        };
        let mut fee_payers = Vec::new();
        for entry in &config.entries {
            let parsed: NetworkEntry = table(entry)?;
            for (index, asset) in parsed.assets.iter().enumerate() {
                let asset = asset.to_asset(&format!("{}.assets[{index}]", entry.at))?;
                networks.add_asset(&entry.network, parsed.name.as_deref(), asset);
            }
            if let Some(fee_payer) = parsed.fee_payer {
                tx::parse_address(&fee_payer).ok_or_else(|| {
                    PluginError::config(format!("{}.fee_payer", entry.at), "not a Solana address")
                })?;
                fee_payers.push((entry.network.clone(), fee_payer));
            }
        }
        let server = fee_payers.into_iter().fold(
            ExactSvmServer::new(networks.clone()),
            |server, (network, payer)| server.with_fee_payer(network, payer),
        );
        Ok((networks, server))
    }

    /// One settled cluster from its entry.
    fn chain(
        entry: &ConfigEntry,
        settings: &paywire_core::SettlementSettings,
    ) -> Result<SvmChain, PluginError> {
        let parsed: ChainEntry = table(entry)?;
        let at = &entry.at;
        if parsed.commitment == Commitment::Processed {
            // A processed transaction may still be rolled back: never a settlement.
            return Err(PluginError::config(
                format!("{at}.commitment"),
                "settlements need `confirmed` or `finalized`",
            ));
        }
        let rpc = SvmRpc::new(&parsed.rpc_urls, settings.rpc_timeout)
            .map_err(|e| PluginError::config(format!("{at}.rpc_urls"), e.to_string()))?
            .with_commitment(parsed.commitment);
        if parsed.fee_payer_private_keys.is_empty() {
            return Err(PluginError::config(
                format!("{at}.fee_payer_private_keys"),
                "at least one key is required",
            ));
        }
        let fee_payers = parsed
            .fee_payer_private_keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                SvmKeypair::parse(key).map_err(|e| {
                    PluginError::config(
                        format!("{at}.fee_payer_private_keys[{index}]"),
                        e.to_string(),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(unknown) = parsed
            .allowed_mint_extensions
            .iter()
            .find(|n| !is_known_extension(n))
        {
            return Err(PluginError::config(
                format!("{at}.allowed_mint_extensions"),
                format!("unknown extension {unknown:?}"),
            ));
        }
        let mut assets: Vec<_> = SvmNetworks::well_known()
            .get(&entry.network)
            .map(|n| n.assets.iter().map(|a| a.mint).collect())
            .unwrap_or_default();
        for (index, asset) in parsed.assets.iter().enumerate() {
            assets.push(asset.to_asset(&format!("{at}.assets[{index}]"))?.mint);
        }
        let mut chain = SvmChain::new(entry.network.clone(), Arc::new(rpc), fee_payers);
        chain.policy.max_compute_units = parsed.max_compute_units;
        chain.policy.max_compute_unit_price = parsed.max_compute_unit_price_micro_lamports;
        chain.policy.max_priority_fee_lamports = parsed.max_priority_fee_lamports;
        chain.policy.create_destination_ata = parsed.create_destination_ata;
        chain.allowed_mint_extensions = parsed.allowed_mint_extensions;
        chain.assets = assets;
        Ok(chain)
    }

    fn facilitator_parts(config: &FacilitatorConfig) -> Result<FacilitatorParts, PluginError> {
        let mut chains: Vec<SvmChain> = Vec::new();
        let mut parts = FacilitatorParts::default();
        for entry in &config.entries {
            let chain = Self::chain(entry, &config.settings)?;
            if chains.iter().any(|c| c.network == chain.network) {
                return Err(PluginError::config(
                    format!("{}.network", entry.at),
                    format!("{} has another entry already", chain.network),
                ));
            }
            if chain.policy.create_destination_ata && !config.settle_authenticated {
                // Anyone could have the sponsor pay rent for token accounts
                // they then close and reclaim.
                return Err(PluginError::config(
                    format!("{}.create_destination_ata", entry.at),
                    "creating token accounts costs the sponsor rent: only with API keys on /settle",
                ));
            }
            let signers = chain
                .fee_payers
                .iter()
                .map(|k| k.address().to_string())
                .collect();
            parts.probes.push(Arc::new(SvmChainProbe::new(
                chain.network.clone(),
                Arc::clone(&chain.rpc),
                signers,
            )));
            chains.push(chain);
        }
        if !chains.is_empty() {
            let exact: Arc<dyn SchemeFacilitator> = Arc::new(ExactSvmFacilitator::new(
                chains,
                config.settings.receipt_timeout,
            ));
            parts.schemes.push(exact);
        }
        Ok(parts)
    }
}

impl ChainPlugin for SvmPlugin {
    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn networks(&self) -> Vec<NetworkInfo> {
        network_names()
    }

    fn server(&self, config: &ServerConfig) -> Result<ServerParts, PluginError> {
        let (networks, server) = Self::server_side(config)?;
        let mut parts = ServerParts::default();
        for network in networks.iter() {
            for asset in &network.assets {
                let info = AssetInfo {
                    symbol: asset.symbol.clone(),
                    decimals: asset.decimals,
                    usd_stable: asset.usd_stable,
                };
                parts.assets.push(ServerAsset::new(
                    network.id.clone(),
                    asset.mint.to_string(),
                    info,
                ));
            }
        }
        let exact: Arc<dyn SchemeServer> = Arc::new(server);
        parts.schemes.push(Registration::new(all_solana()?, exact));
        Ok(parts)
    }

    /// `exact` verification and settlement on the clusters of the
    /// facilitator's `[[chains]]` entries, and one probe per cluster.
    fn facilitator<'a>(
        &'a self,
        config: &'a FacilitatorConfig,
    ) -> BoxFuture<'a, Result<FacilitatorParts, PluginError>> {
        Box::pin(async move { Self::facilitator_parts(config) })
    }

    /// A paying wallet: a base58 keypair or a `solana-keygen` JSON array;
    /// nodes from the wallet's RPC URLs for `solana:` networks.
    fn wallet(&self, config: &WalletConfig) -> Result<WalletParts, PluginError> {
        let payer = SvmKeypair::parse(config.key.expose())
            .map_err(|e| PluginError::config("key", e.to_string()))?;
        let mut parts = WalletParts::default();
        parts.addresses.push(payer.address().to_string());
        let mut client = ExactSvmClient::new(payer);
        for (network, url) in &config.rpc_urls {
            if network.namespace() != NAMESPACE {
                continue;
            }
            let rpc =
                SvmRpc::new(&[url.expose().to_owned()], WALLET_RPC_TIMEOUT).map_err(|_| {
                    PluginError::config(format!("rpc[{network}]"), "not an http(s) URL")
                })?;
            client = client.network(network.clone(), Arc::new(rpc));
        }
        let client: Arc<dyn SchemeClient> = Arc::new(client);
        parts.schemes.push(Registration::new(all_solana()?, client));
        Ok(parts)
    }
}

/// The CAIP-2 id of a network name or id, for tests and tools.
pub fn resolve(name: &str) -> Option<ChainId> {
    network_names()
        .into_iter()
        .find(|n| n.name.eq_ignore_ascii_case(name))
        .map(|n| n.id)
        .or_else(|| {
            ChainId::parse(name)
                .ok()
                .filter(|id| id.namespace() == NAMESPACE)
        })
}
