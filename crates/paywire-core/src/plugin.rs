//! Chain and rail plugins: how a chain family (EVM, Solana) or a payment
//! rail (bank transfers) joins paywire without an edit to the core, the
//! facilitator, the server or the client.
//!
//! A plugin crate implements [`ChainPlugin`] once; the composition root (the
//! `paywire` binary, or an application) registers it in a
//! [`PluginRegistry`] with one line. The facilitator, the gateway and the
//! paying client then ask the registry for what they need:
//!
//! - friendly network names ([`ChainPlugin::networks`]);
//! - a resource server's scheme servers and assets, built from the plugin's
//!   own configuration tables ([`ChainPlugin::server`]);
//! - a facilitator's scheme facilitators and readiness probes
//!   ([`ChainPlugin::facilitator`]);
//! - a paying wallet from a private key ([`ChainPlugin::wallet`]).
//!
//! Configuration tables are handed over as JSON (whatever the file format),
//! each with the network it names already resolved; the plugin deserializes
//! them into its own types and refuses unknown keys.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::amount::U256;
use crate::asset::AssetInfo;
use crate::chain::{ChainId, ChainIdError, ChainIdPattern};
use crate::endpoint::PluginEndpoint;
use crate::network::{NetworkDirectory, NetworkInfo};
use crate::scheme::{BoxFuture, SchemeClient, SchemeFacilitator, SchemeServer, SpendProbe};

/// Why a plugin could not be built or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// A configuration entry is invalid. The detail never quotes secret
    /// values (keys, URLs with credentials).
    #[error("{at}: {detail}")]
    Config {
        /// Where in the configuration (`chains[1].rpc_urls`).
        at: String,
        /// What is wrong.
        detail: String,
    },
    /// The plugin does not offer this role (e.g. no paying wallet).
    #[error("the {namespace} plugin has no {role} side")]
    Unsupported {
        /// The plugin's namespace.
        namespace: String,
        /// `server`, `facilitator` or `wallet`.
        role: &'static str,
    },
    /// No registered plugin serves a network's namespace.
    #[error("no plugin is registered for {0} (namespace {1})")]
    NoPlugin(ChainId, String),
    /// A network name or id could not be resolved.
    #[error(transparent)]
    Network(#[from] ChainIdError),
}

impl PluginError {
    /// A configuration error at `at`.
    pub fn config(at: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Config {
            at: at.into(),
            detail: detail.into(),
        }
    }
}

/// A secret configuration value (private key, token). Its `Debug` never
/// shows it; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Self(value.into())
    }

    /// The secret itself: never log or echo it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One configuration table for a plugin: it names a network the plugin
/// serves. Its `Debug` shows the table's keys only: tables hold signer keys
/// and RPC URLs with API keys.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConfigEntry {
    /// The network the entry names, resolved.
    pub network: ChainId,
    /// Where the entry sits in its file (`chains[2]`), for error messages.
    pub at: String,
    /// The whole table (its `network` key included).
    pub table: serde_json::Value,
}

impl fmt::Debug for ConfigEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self
            .table
            .as_object()
            .map(|table| table.keys().map(String::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("ConfigEntry")
            .field("network", &self.network)
            .field("at", &self.at)
            .field("keys", &keys)
            .finish()
    }
}

impl ConfigEntry {
    /// An entry for `network`, found at `at`.
    pub fn new(network: ChainId, at: impl Into<String>, table: serde_json::Value) -> Self {
        Self {
            network,
            at: at.into(),
            table,
        }
    }
}

/// Settings shared by every plugin of a facilitator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettlementSettings {
    /// How long a settlement waits for confirmation before answering
    /// `pending` with its transaction id.
    pub receipt_timeout: Duration,
    /// Timeout of one call to a chain node.
    pub rpc_timeout: Duration,
    /// How long an authorization must stay valid after settlement starts.
    pub valid_before_buffer: Duration,
    /// How often an unconfirmed transaction is sent again while waiting.
    pub rebroadcast_interval: Duration,
    /// TEST ONLY: abort the process right after each broadcast (crash
    /// recovery tests).
    pub crash_after_broadcast: bool,
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self {
            receipt_timeout: Duration::from_secs(20),
            rpc_timeout: Duration::from_secs(10),
            valid_before_buffer: Duration::from_secs(6),
            rebroadcast_interval: Duration::from_secs(3),
            crash_after_broadcast: false,
        }
    }
}

/// What a plugin's facilitator side is built from.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FacilitatorConfig {
    /// The facilitator's chain entries that name this plugin's networks.
    pub entries: Vec<ConfigEntry>,
    /// Shared settlement settings.
    pub settings: SettlementSettings,
    /// Whether callers of `/settle` must present an API key (plugins may
    /// refuse risky settings without one).
    pub settle_authenticated: bool,
    /// Where the facilitator keeps its ledger (a `postgres://` URL or an
    /// SQLite path; `None`: in memory), so that a plugin keeping state (a
    /// rail's balances) can keep it in the same database. May carry a
    /// password: never log it.
    pub ledger: Option<Secret>,
    /// The facilitator's API key ids, so that a plugin can bind its own
    /// callers (a rail's registered resource servers) to them.
    pub api_key_ids: Vec<String>,
}

/// What a plugin's server side is built from.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The server's network entries for this plugin's networks (custom
    /// networks, extra assets).
    pub entries: Vec<ConfigEntry>,
    /// Whether the plugin's well-known networks and assets are included.
    pub well_known: bool,
}

/// What a paying wallet is built from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WalletConfig {
    /// The private key, in the plugin's usual encoding.
    pub key: Secret,
    /// Node URLs per network, for a [`SpendProbe`] (they may carry API keys).
    pub rpc_urls: Vec<(ChainId, Secret)>,
}

impl WalletConfig {
    /// A wallet from `key` without node access.
    pub fn new(key: Secret) -> Self {
        Self {
            key,
            rpc_urls: Vec::new(),
        }
    }
}

/// One registration of a handler for a scheme on a set of networks.
#[non_exhaustive]
pub struct Registration<T: ?Sized> {
    /// The networks it handles.
    pub networks: ChainIdPattern,
    /// The handler.
    pub handler: Arc<T>,
}

impl<T: ?Sized> Registration<T> {
    /// `handler` on `networks`.
    pub fn new(networks: ChainIdPattern, handler: Arc<T>) -> Self {
        Self { networks, handler }
    }
}

impl<T: ?Sized> Clone for Registration<T> {
    fn clone(&self) -> Self {
        Self {
            networks: self.networks.clone(),
            handler: Arc::clone(&self.handler),
        }
    }
}

impl<T: ?Sized> fmt::Debug for Registration<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Registration({})", self.networks)
    }
}

/// An asset a server can price in (money prices, paywall display).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerAsset {
    /// Its network.
    pub network: ChainId,
    /// Its address or code, as it appears in requirements.
    pub asset: String,
    /// Symbol, decimals, dollar status.
    pub info: AssetInfo,
}

impl ServerAsset {
    /// An asset on `network`.
    pub fn new(network: ChainId, asset: impl Into<String>, info: AssetInfo) -> Self {
        Self {
            network,
            asset: asset.into(),
            info,
        }
    }
}

/// A plugin's server side.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServerParts {
    /// Scheme servers (requirements from prices).
    pub schemes: Vec<Registration<dyn SchemeServer>>,
    /// Assets it can price in.
    pub assets: Vec<ServerAsset>,
}

/// A plugin's facilitator side.
#[derive(Default)]
#[non_exhaustive]
pub struct FacilitatorParts {
    /// Scheme facilitators (verify and settle).
    pub schemes: Vec<Arc<dyn SchemeFacilitator>>,
    /// Readiness and signer-balance probes, one per network.
    pub probes: Vec<Arc<dyn ChainProbe>>,
    /// Extension identifiers the facilitator supports because of this
    /// plugin's configuration (e.g. `eip2612GasSponsoring`), listed in
    /// `/supported`.
    pub extensions: Vec<String>,
    /// HTTP endpoints the facilitator serves for this plugin (a rail's
    /// client-facing calls).
    pub endpoints: Vec<Arc<dyn PluginEndpoint>>,
}

impl fmt::Debug for FacilitatorParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FacilitatorParts")
            .field("schemes", &self.schemes.len())
            .field("probes", &self.probes.len())
            .field("extensions", &self.extensions)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// A plugin's paying side.
#[derive(Default)]
#[non_exhaustive]
pub struct WalletParts {
    /// Scheme clients (signing).
    pub schemes: Vec<Registration<dyn SchemeClient>>,
    /// Checks whether a sent authorization was spent, for budgets.
    pub spend_probe: Option<Arc<dyn SpendProbe>>,
    /// The paying addresses, for display.
    pub addresses: Vec<String>,
}

impl fmt::Debug for WalletParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalletParts")
            .field("schemes", &self.schemes)
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

/// The native balance of one settlement signer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignerBalance {
    /// The signer's address.
    pub signer: String,
    /// Its balance in the chain's smallest native unit.
    pub balance: U256,
}

impl SignerBalance {
    /// `signer` holds `balance`.
    pub fn new(signer: impl Into<String>, balance: U256) -> Self {
        Self {
            signer: signer.into(),
            balance,
        }
    }
}

/// What kind of failure an RPC endpoint had, for the facilitator's
/// `/metrics` (a closed set: it becomes a label value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RpcErrorKind {
    /// No answer within the request timeout.
    Timeout,
    /// No connection (refused, unreachable, DNS, TLS).
    Connect,
    /// The endpoint answered HTTP 429: the provider rate-limits us.
    RateLimited,
    /// The endpoint answered another HTTP error status (5xx).
    HttpStatus,
    /// The node answered a JSON-RPC error that is not an execution revert.
    Rpc,
    /// The answer was not the JSON expected.
    Decode,
    /// Any other failure.
    Other,
}

impl RpcErrorKind {
    /// The label value (`timeout`, `connect`, `rate_limited`,
    /// `http_status`, `rpc_error`, `decode`, `other`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::RateLimited => "rate_limited",
            Self::HttpStatus => "http_status",
            Self::Rpc => "rpc_error",
            Self::Decode => "decode",
            Self::Other => "other",
        }
    }
}

/// How many failures of one kind one RPC endpoint had since start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcErrorCount {
    /// The endpoint as `scheme://host[:port]`: never its path, query or
    /// user info, where providers put API keys.
    pub host: String,
    /// The kind of failure.
    pub kind: RpcErrorKind,
    /// Failures counted since the plugin was built (monotonic).
    pub count: u64,
}

impl RpcErrorCount {
    /// `count` failures of `kind` at `host` (`scheme://host[:port]`).
    pub fn new(host: impl Into<String>, kind: RpcErrorKind, count: u64) -> Self {
        Self {
            host: host.into(),
            kind,
            count,
        }
    }
}

/// Watches one network a facilitator settles on, for `/ready` and
/// `/metrics`. Error texts must name no secret (an RPC URL is shown as
/// scheme and host at most).
pub trait ChainProbe: Send + Sync {
    /// The network.
    fn network(&self) -> &ChainId;

    /// `Ok` when the network is reachable and is the one configured.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;

    /// Native balances of the settlement signers (those that could be read).
    fn signer_balances(&self) -> BoxFuture<'_, Vec<SignerBalance>>;

    /// The unit of [`SignerBalance::balance`] in metric names (`wei`,
    /// `lamports`).
    fn balance_unit(&self) -> &'static str;

    /// Failures of the network's RPC endpoints so far, per endpoint and
    /// kind; read on every `/metrics` scrape, so it must be cheap and not
    /// contact the chain. The default reports none.
    fn rpc_errors(&self) -> Vec<RpcErrorCount> {
        Vec::new()
    }
}

/// A chain family or payment rail. One crate implements it; roles it does
/// not offer keep their default, which answers [`PluginError::Unsupported`].
pub trait ChainPlugin: Send + Sync {
    /// The CAIP-2 namespace it serves (`eip155`, `solana`).
    fn namespace(&self) -> &str;

    /// Whether it serves `network`. The default: every network of its
    /// namespace. A rail whose networks are named by their operator (the
    /// `credit` binding's `<authority>:credit`) answers by reference.
    fn serves(&self, network: &ChainId) -> bool {
        network.namespace() == self.namespace()
    }

    /// Networks it knows by name.
    fn networks(&self) -> Vec<NetworkInfo> {
        Vec::new()
    }

    /// Its resource-server side: scheme servers and assets.
    fn server(&self, config: &ServerConfig) -> Result<ServerParts, PluginError> {
        let _ = config;
        Err(self.unsupported("server"))
    }

    /// Its facilitator side, built from the facilitator's entries for its
    /// networks. Must not contact the chain (an unreachable node shows in
    /// `/ready`, not as a start-up failure).
    fn facilitator<'a>(
        &'a self,
        config: &'a FacilitatorConfig,
    ) -> BoxFuture<'a, Result<FacilitatorParts, PluginError>> {
        let _ = config;
        Box::pin(async move { Err(self.unsupported("facilitator")) })
    }

    /// A paying wallet.
    fn wallet(&self, config: &WalletConfig) -> Result<WalletParts, PluginError> {
        let _ = config;
        Err(self.unsupported("wallet"))
    }

    /// The error for a role this plugin does not offer.
    fn unsupported(&self, role: &'static str) -> PluginError {
        PluginError::Unsupported {
            namespace: self.namespace().to_owned(),
            role,
        }
    }
}

/// Configuration entries grouped by the plugin that serves them.
pub type RoutedEntries = Vec<(Arc<dyn ChainPlugin>, Vec<ConfigEntry>)>;

/// The plugins of one process, by namespace, with the network names they
/// contribute.
#[derive(Clone, Default)]
pub struct PluginRegistry {
    plugins: Vec<Arc<dyn ChainPlugin>>,
    networks: NetworkDirectory,
}

impl fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.plugins.iter().map(|p| p.namespace().to_owned()))
            .finish()
    }
}

impl PluginRegistry {
    /// No plugins.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `plugin`; a later plugin for the same namespace replaces an
    /// earlier one. Only the plugin's own networks (those of its namespace)
    /// are taken from [`ChainPlugin::networks`], and a friendly name another
    /// family already uses keeps its meaning: a plugin cannot re-point `base`
    /// to a chain of its own.
    pub fn register(&mut self, plugin: Arc<dyn ChainPlugin>) -> &mut Self {
        self.plugins
            .retain(|known| known.namespace() != plugin.namespace());
        let namespace = plugin.namespace().to_owned();
        let taken_elsewhere = |name: &str| {
            self.networks
                .resolve(name)
                .is_ok_and(|id| id.namespace() != namespace && id.to_string() != name)
        };
        let own: Vec<NetworkInfo> = plugin
            .networks()
            .into_iter()
            .filter(|network| {
                network.id.namespace() == namespace && !taken_elsewhere(&network.name)
            })
            .collect();
        self.networks.extend(own);
        self.plugins.push(plugin);
        self
    }

    /// [`PluginRegistry::register`], by value.
    pub fn with(mut self, plugin: Arc<dyn ChainPlugin>) -> Self {
        self.register(plugin);
        self
    }

    /// The network names of every plugin.
    pub fn networks(&self) -> &NetworkDirectory {
        &self.networks
    }

    /// The plugin serving `network`'s namespace.
    pub fn plugin_for(&self, network: &ChainId) -> Result<&Arc<dyn ChainPlugin>, PluginError> {
        self.plugins
            .iter()
            .find(|plugin| plugin.namespace() == network.namespace())
            .or_else(|| self.plugins.iter().find(|plugin| plugin.serves(network)))
            .ok_or_else(|| PluginError::NoPlugin(network.clone(), network.namespace().to_owned()))
    }

    /// Every plugin, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ChainPlugin>> {
        self.plugins.iter()
    }

    /// Resolves each table's `network` key (a friendly name or CAIP-2 id)
    /// and groups the tables by the plugin serving it, in registration
    /// order. `at` names a table by its index (`chains[{index}]`).
    pub fn route_entries(
        &self,
        tables: Vec<serde_json::Value>,
        at: impl Fn(usize) -> String,
    ) -> Result<RoutedEntries, PluginError> {
        let mut grouped: RoutedEntries = self
            .plugins
            .iter()
            .map(|plugin| (Arc::clone(plugin), Vec::new()))
            .collect();
        for (index, table) in tables.into_iter().enumerate() {
            let at = at(index);
            let name = table
                .get("network")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| {
                    PluginError::config(&at, "`network` (a name or CAIP-2 id) is required")
                })?;
            let network = self
                .networks
                .resolve(name)
                .map_err(|e| PluginError::config(format!("{at}.network"), e.to_string()))?;
            let namespace = self.plugin_for(&network)?.namespace().to_owned();
            if let Some((_, entries)) = grouped
                .iter_mut()
                .find(|(plugin, _)| plugin.namespace() == namespace)
            {
                entries.push(ConfigEntry::new(network, at, table));
            }
        }
        Ok(grouped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::NetworkClass;

    struct Named(&'static str);

    impl ChainPlugin for Named {
        fn namespace(&self) -> &str {
            self.0
        }

        fn networks(&self) -> Vec<NetworkInfo> {
            vec![NetworkInfo::new(
                ChainId::new(self.0, "main").unwrap(),
                self.0,
                NetworkClass::Mainnet,
            )]
        }
    }

    /// Serves `<anything>:credit`, as the bank rail does.
    struct ByReference;

    impl ChainPlugin for ByReference {
        fn namespace(&self) -> &'static str {
            "credit"
        }

        fn serves(&self, network: &ChainId) -> bool {
            network.reference() == "credit"
        }
    }

    #[test]
    fn a_plugin_may_serve_networks_named_by_their_operator() {
        let registry = PluginRegistry::new()
            .with(Arc::new(Named("eip155")))
            .with(Arc::new(ByReference));
        let acme: ChainId = "acme:credit".parse().unwrap();
        assert_eq!(registry.plugin_for(&acme).unwrap().namespace(), "credit");
        // A namespace's own plugin comes first.
        let evm: ChainId = "eip155:credit".parse().unwrap();
        assert_eq!(registry.plugin_for(&evm).unwrap().namespace(), "eip155");
        let other: ChainId = "acme:debit".parse().unwrap();
        assert!(registry.plugin_for(&other).is_err());
        let routed = registry
            .route_entries(vec![serde_json::json!({"network": "acme:credit"})], |i| {
                format!("chains[{i}]")
            })
            .unwrap();
        let (plugin, entries) = &routed[1];
        assert_eq!((plugin.namespace(), entries.len()), ("credit", 1));
    }

    #[test]
    fn entries_are_routed_to_the_plugin_of_their_namespace() {
        let registry = PluginRegistry::new()
            .with(Arc::new(Named("toy")))
            .with(Arc::new(Named("bank")));
        let tables = vec![
            serde_json::json!({"network": "bank", "iban": "x"}),
            serde_json::json!({"network": "toy:other"}),
            serde_json::json!({"network": "toy"}),
        ];
        let routed = registry
            .route_entries(tables, |i| format!("chains[{i}]"))
            .unwrap();
        let summary: Vec<(String, Vec<String>)> = routed
            .iter()
            .map(|(plugin, entries)| {
                (
                    plugin.namespace().to_owned(),
                    entries
                        .iter()
                        .map(|e| format!("{} {}", e.at, e.network))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "toy".to_owned(),
                    vec![
                        "chains[1] toy:other".to_owned(),
                        "chains[2] toy:main".to_owned()
                    ]
                ),
                ("bank".to_owned(), vec!["chains[0] bank:main".to_owned()]),
            ]
        );
    }

    /// A plugin that also claims another family's friendly name.
    struct Hijacker;

    impl ChainPlugin for Hijacker {
        fn namespace(&self) -> &'static str {
            "evil"
        }

        fn networks(&self) -> Vec<NetworkInfo> {
            vec![
                NetworkInfo::new(
                    ChainId::new("evil", "1").unwrap(),
                    "evil",
                    NetworkClass::Testnet,
                ),
                NetworkInfo::new(
                    ChainId::new("evil", "2").unwrap(),
                    "toy",
                    NetworkClass::Mainnet,
                ),
                NetworkInfo::new(
                    ChainId::new("toy", "x").unwrap(),
                    "toyx",
                    NetworkClass::Mainnet,
                ),
            ]
        }
    }

    #[test]
    fn a_plugin_names_only_networks_of_its_own_namespace() {
        let registry = PluginRegistry::new()
            .with(Arc::new(Named("toy")))
            .with(Arc::new(Hijacker));
        let networks = registry.networks();
        assert_eq!(networks.resolve("evil").unwrap().to_string(), "evil:1");
        // A name outside its namespace, or a name another family uses, cannot
        // be taken over: `toy` still means the toy plugin's chain.
        assert_eq!(networks.resolve("toy").unwrap().to_string(), "toy:main");
        assert!(networks.resolve("toyx").is_err());
    }

    #[test]
    fn config_entries_print_their_keys_not_their_values() {
        let entry = ConfigEntry::new(
            ChainId::new("toy", "main").unwrap(),
            "chains[0]",
            serde_json::json!({"network": "toy", "signer_private_keys": ["0xsecretkey"],
                               "rpc_urls": ["https://node.example/v2/apikey123"]}),
        );
        let printed = format!("{entry:?}");
        assert!(printed.contains("signer_private_keys"), "{printed}");
        for secret in ["0xsecretkey", "apikey123"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn unknown_namespaces_and_missing_networks_are_named() {
        let registry = PluginRegistry::new().with(Arc::new(Named("toy")));
        let error = registry
            .route_entries(vec![serde_json::json!({"network": "eip155:1"})], |i| {
                format!("chains[{i}]")
            })
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "no plugin is registered for eip155:1 (namespace eip155)"
        );
        let error = registry
            .route_entries(vec![serde_json::json!({"rpc": "x"})], |i| {
                format!("chains[{i}]")
            })
            .err()
            .unwrap();
        assert!(
            error.to_string().starts_with("chains[0]: `network`"),
            "{error}"
        );
        assert!(matches!(
            Named("toy").wallet(&WalletConfig::new(Secret::new("k"))),
            Err(PluginError::Unsupported { role: "wallet", .. })
        ));
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("0xdeadbeef");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "0xdeadbeef");
    }
}
