//! The facilitator's TOML configuration.
//!
//! Unknown keys are errors (naming the key), and every string value may use
//! `${ENV_VAR}` substitution so that secrets (RPC URLs with API keys, signer
//! private keys) stay out of the file. `$${` writes a literal `${`.
//!
//! The `[[chains]]` tables belong to the chain plugins: each is handed, as
//! written, to the plugin serving its `network` ([`ChainTable`]), which
//! checks it when the facilitator is built ([`crate::build`]).

use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paywire_core::{RuntimeConfig, SettlementSettings};
use serde::Deserialize;

use crate::ops::{ApiKeys, ClientKey, DEFAULT_MAX_TRACKED_KEYS, Endpoint, RateLimiter};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A `${VAR}` reference names an unset environment variable.
    #[error("config references environment variable {name} (at {at}), which is not set")]
    MissingEnv {
        /// The variable name.
        name: String,
        /// Where in the file (dotted key path).
        at: String,
    },
    /// A `${` without a closing `}` or with an invalid name.
    #[error("malformed ${{…}} reference at {at}: {detail}")]
    BadReference {
        /// Where in the file (dotted key path).
        at: String,
        /// What is wrong.
        detail: String,
    },
    /// A value is syntactically fine but not acceptable.
    #[error("invalid config value for {field}: {message}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A string that is never printed (private keys).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a store lives: a SQLite file path (optionally `sqlite://path`), a
/// `postgres://user:password@host/db` URL, or `memory` (the bazaar). A
/// database URL carries its password, so it prints (`Debug`) without user
/// info, query or fragment ([`redact_store`]).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct StoreUrl(String);

impl StoreUrl {
    /// Wraps a store location.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The whole location, password included: for opening the store only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({})", redact_store(&self.0))
    }
}

impl From<&str> for StoreUrl {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for StoreUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl PartialEq<&str> for StoreUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A store location as it may be shown: a file path as is; a URL as scheme,
/// host, port and path (the database name), without the user info, query
/// and fragment where a password may be.
pub fn redact_store(store: &str) -> String {
    let store = store.trim();
    let Some((scheme, rest)) = store.split_once("://") else {
        return store.to_owned();
    };
    // Up to the query or fragment; the user info ends at the authority's
    // last `@` (a password may itself contain `@`, `/` or `?` only
    // percent-encoded).
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8402))
}
fn default_store() -> StoreUrl {
    StoreUrl::new("paywire-facilitator.sqlite")
}
fn default_body_limit() -> usize {
    64 * 1024
}
fn default_valid_before_buffer() -> u64 {
    6
}
fn default_receipt_timeout() -> u64 {
    20
}
fn default_rebroadcast_interval() -> u64 {
    3
}
fn default_rpc_timeout() -> u64 {
    10
}
fn default_idempotent_retry_window() -> u64 {
    600
}
fn default_max_concurrent_settlements() -> usize {
    crate::ops::DEFAULT_MAX_CONCURRENT_SETTLEMENTS
}
fn default_sqlite_page_cache_kib() -> u32 {
    paywire_store::sqlite::DEFAULT_PAGE_CACHE_KIB
}

/// The range `sqlite_page_cache_kib` accepts: below 64 KiB (sixteen pages)
/// a lookup in a large ledger rereads B-tree pages it has just read; above
/// 4 GiB is a typo, not a cache.
const SQLITE_PAGE_CACHE_KIB: std::ops::RangeInclusive<u32> = 64..=4 * 1024 * 1024;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FacilitatorConfig {
    /// Address the HTTP server listens on (default `127.0.0.1:8402`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Settlement ledger: a SQLite file path (optionally `sqlite://path`),
    /// or a `postgres://` / `postgresql://` URL (several instances may share
    /// one PostgreSQL database).
    #[serde(default = "default_store")]
    pub store: StoreUrl,
    /// Largest accepted request body, in bytes (default 64 KiB).
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Minimum remaining validity of an authorization at settlement (default 6 s).
    #[serde(default = "default_valid_before_buffer")]
    pub valid_before_buffer_seconds: u64,
    /// How long settlement waits for receipts before answering `pending`
    /// (default 20 s): keep it below the time resource servers allow for
    /// `/settle` (30 s by default), so they hear `pending` rather than time out.
    #[serde(default = "default_receipt_timeout")]
    pub receipt_timeout_seconds: u64,
    /// How long a settlement transaction may go without a receipt before its
    /// signed bytes are sent to the node again (default 3 s).
    #[serde(default = "default_rebroadcast_interval")]
    pub rebroadcast_interval_seconds: u64,
    /// Per-request timeout of RPC calls (default 10 s).
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_seconds: u64,
    /// How long after a settlement's answer was delivered its caller may
    /// settle the same payload again and get the recorded answer (default
    /// 600 s): the same API key when the answer went to one, else the same
    /// payment identifier; anyone else, or later, gets a replay refusal.
    #[serde(default = "default_idempotent_retry_window")]
    pub idempotent_retry_window_seconds: u64,
    /// Most settlements run at once (default 64); a `/settle` beyond that
    /// gets `503 overloaded` with `Retry-After`, before anything is written.
    #[serde(default = "default_max_concurrent_settlements")]
    pub max_concurrent_settlements: usize,
    /// The page cache of each SQLite connection (the ledger's and the bazaar
    /// catalog's), in KiB (default 256): resident memory, worth raising only
    /// for a ledger larger than the host's own page cache keeps.
    #[serde(default = "default_sqlite_page_cache_kib")]
    pub sqlite_page_cache_kib: u32,
    /// The chains settled on: one table per network, for its plugin.
    #[serde(default)]
    pub chains: Vec<ChainTable>,
    /// API keys; when none is configured every endpoint is open.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Rate limits (off by default).
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Reconciliation of unfinished settlements.
    #[serde(default)]
    pub recovery: RecoveryConfig,
    /// The bazaar discovery catalog.
    #[serde(default)]
    pub bazaar: BazaarConfig,
    /// Fault injection for tests. Never enable in production.
    #[serde(default)]
    pub fault_injection: FaultInjectionConfig,
    /// Threads of the async runtime.
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

/// `[bazaar]`: the discovery catalog.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BazaarConfig {
    /// Catalog settled payments' `bazaar` declarations and serve
    /// `/discovery/*` (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A SQLite file path, a `postgres://` URL, or `memory`. Default: the
    /// ledger's store (its SQLite file or its PostgreSQL database).
    #[serde(default)]
    pub store: Option<StoreUrl>,
    /// How long a resource's origin has to answer the unpaid request that
    /// confirms a declaration, in seconds (1 to 30, default 5).
    #[serde(default = "default_confirm_timeout")]
    pub confirm_timeout_seconds: u64,
    /// Also confirm resources on private, loopback and other non-public
    /// addresses (default false). For devnets only: on a public facilitator
    /// it lets any payer send the facilitator's requests into its network.
    #[serde(default)]
    pub confirm_private_addresses: bool,
}

impl Default for BazaarConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            store: None,
            confirm_timeout_seconds: default_confirm_timeout(),
            confirm_private_addresses: false,
        }
    }
}

fn default_confirm_timeout() -> u64 {
    paywire_bazaar::DEFAULT_CONFIRM_TIMEOUT.as_secs()
}

impl BazaarConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let store = self.store.as_ref().map(|store| store.expose().trim());
        if let Some((scheme, _)) = store.and_then(|store| store.split_once("://"))
            && !matches!(scheme, "sqlite" | "postgres" | "postgresql")
        {
            return Err(invalid(
                "bazaar.store",
                format!(
                    "unsupported store URL scheme {scheme:?}; use a SQLite file path, a postgres:// URL or \"memory\""
                ),
            ));
        }
        if !(1..=30).contains(&self.confirm_timeout_seconds) {
            return Err(invalid(
                "bazaar.confirm_timeout_seconds",
                "must be between 1 and 30",
            ));
        }
        Ok(())
    }

    /// How declarations are confirmed against their origins.
    pub fn confirm_config(&self) -> paywire_bazaar::ConfirmConfig {
        paywire_bazaar::ConfirmConfig {
            timeout: Duration::from_secs(self.confirm_timeout_seconds),
            allow_private_addresses: self.confirm_private_addresses,
            ..paywire_bazaar::ConfirmConfig::default()
        }
    }
}

fn default_true() -> bool {
    true
}

/// One `[[api_keys]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiKeyConfig {
    /// The bearer token (use `${ENV_VAR}`).
    pub key: Secret,
    /// The caller's name in the ledger and logs (default: `key-` and 12 hex
    /// digits of the key's SHA-256). Keep it when rotating a caller's key.
    #[serde(default)]
    pub name: Option<String>,
    /// Endpoints this key may call: `verify`, `settle`, `supported`
    /// (default: all three). An endpoint that some key lists requires a key.
    #[serde(default = "default_endpoints")]
    pub endpoints: Vec<String>,
}

fn default_endpoints() -> Vec<String> {
    Endpoint::ALL
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect()
}

/// `[rate_limit]`: GCRA limits kept in memory, per process (see
/// [`crate::ops::RateLimiter`]).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// `/verify` + `/settle` requests per client and minute (0 or absent:
    /// off). A client is an IPv4 address or an IPv6 /64 prefix.
    #[serde(default)]
    pub per_ip_per_minute: Option<u32>,
    /// `/verify` + `/settle` requests per payer address and minute (0 or absent: off).
    #[serde(default)]
    pub per_payer_per_minute: Option<u32>,
    /// Most clients (and, separately, payers) with a budget of their own
    /// (default 100 000, about 10 MB at most per limit). Beyond it, new
    /// ones share one overflow budget until clients idle long enough to be
    /// at full budget again are forgotten (checked every 5 s).
    #[serde(default = "default_max_tracked_keys")]
    pub max_tracked_keys: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_ip_per_minute: None,
            per_payer_per_minute: None,
            max_tracked_keys: default_max_tracked_keys(),
        }
    }
}

impl RateLimitConfig {
    /// The per-client limiter, if on.
    pub fn per_ip_limiter(&self) -> Option<RateLimiter<ClientKey>> {
        self.limiter(self.per_ip_per_minute)
    }

    /// The per-payer limiter, if on.
    pub fn per_payer_limiter(&self) -> Option<RateLimiter<String>> {
        self.limiter(self.per_payer_per_minute)
    }

    fn limiter<K: Hash + Eq + Clone>(&self, per_minute: Option<u32>) -> Option<RateLimiter<K>> {
        let per_minute = NonZeroU32::new(per_minute?)?;
        Some(RateLimiter::new(per_minute, self.max_tracked_keys))
    }
}

fn default_max_tracked_keys() -> usize {
    DEFAULT_MAX_TRACKED_KEYS
}

fn default_reconcile_interval() -> u64 {
    5
}
fn default_reconcile_min_age() -> u64 {
    5
}
fn default_unsent_failure_retention() -> u64 {
    crate::settlement::DEFAULT_UNSENT_FAILURE_RETENTION.as_secs()
}

/// `[recovery]`: the background reconciler.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RecoveryConfig {
    /// Seconds between passes over `submitted`/`pending` settlements (0: off; default 5).
    #[serde(default = "default_reconcile_interval")]
    pub interval_seconds: u64,
    /// Only settlements unchanged for this long are re-run (default 5).
    #[serde(default = "default_reconcile_min_age")]
    pub min_age_seconds: u64,
    /// Settlements that failed before any transaction was sent are deleted
    /// by the reconciler once unchanged for this long (default 604 800, 7
    /// days; 0: kept for ever). Rows naming a transaction are never deleted.
    #[serde(default = "default_unsent_failure_retention")]
    pub purge_unsent_failures_after_seconds: u64,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            interval_seconds: default_reconcile_interval(),
            min_age_seconds: default_reconcile_min_age(),
            purge_unsent_failures_after_seconds: default_unsent_failure_retention(),
        }
    }
}

/// `[fault_injection]`: test-only switches.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FaultInjectionConfig {
    /// Abort the process right after a settlement transaction is broadcast
    /// (crash-recovery tests). Never enable in production.
    #[serde(default)]
    pub crash_after_broadcast: bool,
}

/// Where the settlement ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (prints without its password).
    Postgres(StoreUrl),
}

impl FacilitatorConfig {
    /// Reads and parses a file, substituting `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses TOML text, substituting `${VAR}` from the process environment.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, |name| std::env::var(name).ok())
    }

    /// Parses TOML text, resolving `${VAR}` with `env` (tests, embedding).
    pub fn parse_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        for (key, item) in &mut value {
            paywire_core::envsubst::substitute_toml(item, key, &env).map_err(env_error)?;
        }
        let config = Self::deserialize(toml::Value::Table(value))
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.store_location()?;
        if self.body_limit_bytes == 0 {
            return Err(invalid("body_limit_bytes", "must be positive"));
        }
        if self.max_concurrent_settlements == 0 {
            return Err(invalid("max_concurrent_settlements", "must be positive"));
        }
        if !SQLITE_PAGE_CACHE_KIB.contains(&self.sqlite_page_cache_kib) {
            return Err(invalid(
                "sqlite_page_cache_kib",
                format!(
                    "must be between {} and {} (KiB)",
                    SQLITE_PAGE_CACHE_KIB.start(),
                    SQLITE_PAGE_CACHE_KIB.end()
                ),
            ));
        }
        self.api_keys()?;
        self.bazaar.validate()?;
        self.runtime
            .validate()
            .map_err(|e| invalid(e.field, e.rule))?;
        Ok(())
    }

    /// The configured API keys.
    pub fn api_keys(&self) -> Result<ApiKeys, ConfigError> {
        let mut keys = ApiKeys::none();
        let mut names = std::collections::HashSet::new();
        for (n, entry) in self.api_keys.iter().enumerate() {
            if let Some(name) = &entry.name {
                let printable = name.chars().all(|c| c.is_ascii_graphic());
                if name.is_empty() || name.len() > 64 || !printable {
                    return Err(invalid(
                        &format!("api_keys[{n}].name"),
                        "must be 1-64 printable ASCII characters without spaces",
                    ));
                }
                if !names.insert(name.as_str()) {
                    return Err(invalid(
                        &format!("api_keys[{n}].name"),
                        format!("{name:?} names another key too"),
                    ));
                }
            }
            let key = entry.key.expose().trim();
            if key.len() < 16 {
                return Err(invalid(
                    &format!("api_keys[{n}].key"),
                    "must be at least 16 characters",
                ));
            }
            if entry.endpoints.is_empty() {
                return Err(invalid(
                    &format!("api_keys[{n}].endpoints"),
                    "list at least one of verify, settle, supported",
                ));
            }
            let endpoints = entry
                .endpoints
                .iter()
                .map(|name| {
                    Endpoint::parse(name).ok_or_else(|| {
                        invalid(
                            &format!("api_keys[{n}].endpoints"),
                            format!(
                                "unknown endpoint {name:?}; expected verify, settle or supported"
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            keys = match &entry.name {
                Some(name) => keys.with_named_key(name.as_str(), key, endpoints),
                None => keys.with_key(key, endpoints),
            };
        }
        Ok(keys)
    }

    /// The ledger location named by `store`.
    pub fn store_location(&self) -> Result<StoreLocation, ConfigError> {
        let store = self.store.expose().trim();
        if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            // paywire-store's parser takes sslmode, sslrootcert and the pool
            // parameters, and its errors never quote the URL or password.
            if let Err(error) = paywire_store::postgres::PgConfig::from_url(store) {
                return Err(invalid(
                    "store",
                    format!("invalid PostgreSQL URL {}: {error}", redact_store(store)),
                ));
            }
            return Ok(StoreLocation::Postgres(StoreUrl::new(store)));
        }
        let path = store.strip_prefix("sqlite://").unwrap_or(store);
        if path.is_empty() {
            return Err(invalid("store", "empty path"));
        }
        if let Some((scheme, _)) = path.split_once("://") {
            return Err(invalid(
                "store",
                format!(
                    "unsupported store URL scheme {scheme:?}; use a SQLite file path or a postgres:// URL"
                ),
            ));
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(path)))
    }

    /// How the ledger's and the catalog's SQLite connections are opened.
    pub fn sqlite_options(&self) -> paywire_store::sqlite::SqliteOptions {
        paywire_store::sqlite::SqliteOptions::default()
            .with_page_cache_kib(self.sqlite_page_cache_kib)
    }

    /// Receipt timeout as a duration.
    pub fn receipt_timeout(&self) -> Duration {
        Duration::from_secs(self.receipt_timeout_seconds)
    }

    /// The settings every chain plugin settles with.
    pub fn settlement_settings(&self) -> SettlementSettings {
        let mut settings = SettlementSettings::default();
        settings.receipt_timeout = self.receipt_timeout();
        settings.rpc_timeout = Duration::from_secs(self.rpc_timeout_seconds);
        settings.valid_before_buffer = Duration::from_secs(self.valid_before_buffer_seconds);
        // Re-sending more than once a second only loads the nodes.
        settings.rebroadcast_interval =
            Duration::from_secs(self.rebroadcast_interval_seconds.max(1));
        settings.crash_after_broadcast = self.fault_injection.crash_after_broadcast;
        settings
    }
}

/// One `[[chains]]` table, kept as written for the plugin serving its
/// `network` (which checks it and refuses unknown keys). Its `Debug` shows
/// the network and the names of the keys, never their values: RPC URLs and
/// signer keys are secrets.
#[derive(Clone, PartialEq)]
pub struct ChainTable(serde_json::Value);

impl ChainTable {
    /// A table (a JSON object).
    pub fn new(table: serde_json::Value) -> Self {
        Self(table)
    }

    /// The `network` it names, as written.
    pub fn network(&self) -> Option<&str> {
        self.0.get("network").and_then(serde_json::Value::as_str)
    }

    /// The whole table, secrets included: for its plugin only.
    pub fn expose(&self) -> &serde_json::Value {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ChainTable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Never quote the value in the error: it may hold keys.
        let not_a_table = || serde::de::Error::custom("each [[chains]] entry must be a table");
        match toml::Value::deserialize(deserializer)? {
            value @ toml::Value::Table(_) => serde_json::to_value(value)
                .map(Self)
                .map_err(|_| not_a_table()),
            _ => Err(not_a_table()),
        }
    }
}

impl fmt::Debug for ChainTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self
            .0
            .as_object()
            .map(|table| table.keys().map(String::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("ChainTable")
            .field("network", &self.network())
            .field("keys", &keys)
            .finish()
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Replaces every `${NAME}` in `text`; `$${` stays a literal `${`.
pub fn substitute(
    text: &str,
    at: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    paywire_core::envsubst::substitute(text, at, env).map_err(env_error)
}

fn env_error(error: paywire_core::envsubst::EnvSubstError) -> ConfigError {
    match error {
        paywire_core::envsubst::EnvSubstError::Missing { name, at } => {
            ConfigError::MissingEnv { name, at }
        }
        paywire_core::envsubst::EnvSubstError::BadReference { at, detail } => {
            ConfigError::BadReference { at, detail }
        }
        other => ConfigError::Parse(other.to_string()),
    }
}

/// A documented example configuration (`paywire facilitator --print-config-example`).
pub fn example_config() -> &'static str {
    EXAMPLE_CONFIG
}

const EXAMPLE_CONFIG: &str = r#"# paywire facilitator configuration.
#
# Every string may use ${ENV_VAR} substitution (an unset variable is an error
# naming it); write $${ for a literal "${". Unknown keys are errors.

# Address the HTTP API listens on.
listen = "127.0.0.1:8402"

# Settlement ledger (idempotency, audit trail): a SQLite file path, or a
# PostgreSQL URL shared by several facilitator instances, e.g.
# store = "postgres://x402:${PAYWIRE_DB_PASSWORD}@db.internal:5432/x402?sslmode=verify-full&sslrootcert=/etc/paywire/db-ca.pem"
# URL parameters: sslmode (disable, prefer [default], require, verify-ca,
# verify-full; every mode that encrypts verifies the certificate),
# sslrootcert (CA file; default: the system roots), pool_max_size (16),
# pool_acquire_timeout (seconds a query waits for a free connection, 10),
# connect_timeout (10). See docs/facilitator-operators.md, "PostgreSQL".
store = "/var/lib/paywire/facilitator.sqlite"

# Largest accepted request body, in bytes.
body_limit_bytes = 65536

# An authorization must stay valid at least this long after settlement starts.
valid_before_buffer_seconds = 6

# How long /settle waits for a receipt before answering "pending" with the
# transaction hash (never "failed" for a transaction that may still land).
# Keep it below the time resource servers allow /settle (30 s by default).
receipt_timeout_seconds = 20

# While waiting, a transaction with no receipt yet is sent again (same signed
# bytes, so it can never pay twice) this often: nodes drop transactions.
rebroadcast_interval_seconds = 3

# Per-request timeout of RPC calls.
rpc_timeout_seconds = 10

# A repeated /settle of a payment whose outcome was already delivered is
# refused (success: false, nonce already used, errorMessage "payment already
# settled: ...") so that one payment cannot be served twice. Retries within
# this many seconds of the answer get it again: by the same API key when the
# answer went to one, else with the same payment-identifier id.
idempotent_retry_window_seconds = 600

# Most settlements in progress at once; more get 503 "overloaded" with
# Retry-After, before anything is written to the ledger.
max_concurrent_settlements = 64

# Page cache of each SQLite connection (ledger, bazaar catalog), in KiB. It is
# resident memory; the file's pages also stay in the operating system's page
# cache. Raise it only for a ledger larger than the host's memory keeps there.
sqlite_page_cache_kib = 256

# Optional API keys (Authorization: Bearer <key>). An endpoint listed by any
# key requires a key; endpoints no key lists stay open. Unknown key: 401;
# a key not allowed on the endpoint: 403.
[[api_keys]]
key = "${FACILITATOR_API_KEY}"
name = "shop-a"                    # the caller's name in the ledger and logs (optional)
endpoints = ["verify", "settle"]   # of verify, settle, supported (default: all)

# Optional rate limits on /verify and /settle (GCRA, kept in memory per
# process; 0 or absent disables one): bursts of up to the per-minute number,
# then one request every 60/n seconds. Over the limit: 429 with Retry-After.
# A client is its IPv4 address or its IPv6 /64 prefix (one host owns a /64).
# At most max_tracked_keys clients (and payers) have a budget of their own;
# under a flood of new addresses the rest share one overflow budget until
# idle clients are forgotten (never a client that is being limited).
[rate_limit]
per_ip_per_minute = 600
per_payer_per_minute = 60
max_tracked_keys = 100000

# Settlements left received/submitted/pending (crash, RPC outage, receipt
# timeout) are re-run from their stored request at startup; a background task
# re-runs submitted/pending ones unchanged for min_age_seconds, every
# interval_seconds (0 disables it). It also deletes settlements that failed
# before any transaction was sent (refused payments) once unchanged for
# purge_unsent_failures_after_seconds (0 keeps them); rows naming a
# transaction are kept (the replay guard needs them).
[recovery]
interval_seconds = 5
min_age_seconds = 5
purge_unsent_failures_after_seconds = 604800

# Bazaar discovery: settled payments that carry a `bazaar` declaration are
# validated, confirmed against the resource's origin (its unpaid 402 must
# offer the paid payTo, asset and network) and cataloged; GET
# /discovery/resources and /discovery/search serve the catalog. store: a
# SQLite file, a postgres:// URL or "memory" (default: the ledger's store, so
# instances sharing a PostgreSQL ledger share the catalog too). Origins on
# private or loopback addresses are never fetched unless
# confirm_private_addresses is set (devnets only).
[bazaar]
enabled = true
store = "/var/lib/paywire/bazaar.sqlite"
confirm_timeout_seconds = 5
confirm_private_addresses = false

# Threads of the async runtime: worker_threads defaults to one per core, at
# most 4 (the node, not the facilitator's CPU, bounds throughput; each thread
# costs memory); max_blocking_threads bounds the threads for blocking work
# such as resolving host names (default 16).
[runtime]
worker_threads = 2
max_blocking_threads = 16

# TEST ONLY. crash_after_broadcast aborts the process right after a settlement
# transaction is broadcast, to exercise crash recovery. Never enable it.
[fault_injection]
crash_after_broadcast = false

[[chains]]
# CAIP-2 id ("eip155:84532") or a friendly name ("base-sepolia").
network = "base-sepolia"
# Tried in order; the next one is used when one fails.
rpc_urls = ["${BASE_SEPOLIA_RPC_URL}", "https://sepolia.base.org"]
# Settlement signers (hex private keys), used round-robin. Keep them in the
# environment, never in this file.
signer_private_keys = ["${FACILITATOR_PRIVATE_KEY}"]
gas_limit = 250000
# Settlement is refused (nothing sent) while the network asks for more.
max_fee_per_gas_gwei = 5
max_priority_fee_per_gas_gwei = 1
# Counterfactual (EIP-6492) wallets: "off" refuses payments from undeployed
# wallets at /verify; "deploy" deploys them first from a settlement signer,
# calling a factory the payer chooses at your expense (up to the gas cap).
# Enable it only behind API keys or per-IP rate limits.
counterfactual_wallets = "off"
max_wallet_deployment_gas = 1000000
# Finding an authorization someone else already executed (front-run): logs are
# read in chunks of log_range_blocks (halved when the provider refuses a range),
# back to the authorization's validAfter but at most reconcile_lookback_seconds.
log_range_blocks = 2000
reconcile_lookback_seconds = 86400
# Gas sponsoring of the one-time Permit2 approval (off by default; see
# docs/facilitator-operators.md): an EIP-2612 permit submitted with the
# settlement, or the payer's signed approve() sent after funding its gas
# (not atomic: each such payment can cost you up to the funding cap).
eip2612_gas_sponsoring = false
erc20_approval_gas_sponsoring = false
max_sponsored_approval_gas = 100000
max_approval_funding_wei = 1000000000000000
# Accepted assets. When omitted, the chain's well-known USDC is accepted.
# EIP-3009 tokens (the default transfer method) need their EIP-712 domain.
[[chains.assets]]
address = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
symbol = "USDC"
decimals = 6
eip712_name = "USDC"
eip712_version = "2"
# Any other ERC-20 is paid through Permit2 (exact and upto); add eip2612 = true
# with eip712_name/eip712_version for a token with EIP-2612 permit().
# [[chains.assets]]
# address = "0x..."
# symbol = "DAI"
# decimals = 18
# transfer_method = "permit2"

[[chains]]
network = "base"
rpc_urls = ["${BASE_RPC_URL}"]
signer_private_keys = ["${FACILITATOR_PRIVATE_KEY}"]
max_fee_per_gas_gwei = 0.5
# No [[chains.assets]]: Circle's USDC on Base.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "B_2" => Some("${not_expanded}".into()),
            _ => None,
        }
    }

    #[test]
    fn substitution() {
        assert_eq!(
            substitute("x${A}y", "k", &env).ok().as_deref(),
            Some("xalphay")
        );
        assert_eq!(
            substitute("${B_2}", "k", &env).ok().as_deref(),
            Some("${not_expanded}")
        );
        assert_eq!(
            substitute("$${A} $5", "k", &env).ok().as_deref(),
            Some("${A} $5")
        );
        assert!(matches!(
            substitute("${MISSING}", "k", &env),
            Err(ConfigError::MissingEnv { name, .. }) if name == "MISSING"
        ));
        assert!(matches!(
            substitute("${A", "k", &env),
            Err(ConfigError::BadReference { .. })
        ));
        assert!(matches!(
            substitute("${A-B}", "k", &env),
            Err(ConfigError::BadReference { .. })
        ));
    }

    #[test]
    fn chain_tables_print_their_keys_but_no_value() -> Result<(), ConfigError> {
        let config = FacilitatorConfig::parse_with_env(
            "[[chains]]\nnetwork = \"base\"\nrpc_urls = [\"https://rpc.example/v2/SECRETPATH\"]\n\
             signer_private_keys = [\"0xSECRETKEY\"]\n[[chains.assets]]\naddress = \"0xa\"\n",
            |_| None,
        )?;
        let printed = format!("{config:?}");
        assert!(
            printed.contains(r#"ChainTable { network: Some("base"), keys: ["#),
            "{printed}"
        );
        assert!(printed.contains("signer_private_keys"), "{printed}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert_eq!(config.chains[0].network(), Some("base"));
        assert_eq!(config.chains[0].expose()["assets"][0]["address"], "0xa");
        let error = FacilitatorConfig::parse_with_env("chains = [\"0xSECRETKEY\"]", |_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("must be a table"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
        Ok(())
    }

    #[test]
    fn runtime_table_is_read_and_zero_threads_refused() -> Result<(), ConfigError> {
        let default = FacilitatorConfig::parse_with_env("", |_| None)?;
        assert_eq!(default.runtime, RuntimeConfig::default());
        let set = FacilitatorConfig::parse_with_env(
            "[runtime]\nworker_threads = 1\nmax_blocking_threads = 3\n",
            |_| None,
        )?;
        assert_eq!(set.runtime.worker_threads(), 1);
        assert_eq!(set.runtime.max_blocking_threads, 3);
        for zero in ["worker_threads = 0", "max_blocking_threads = 0"] {
            let refused =
                FacilitatorConfig::parse_with_env(&format!("[runtime]\n{zero}\n"), |_| None);
            assert!(
                matches!(&refused, Err(ConfigError::Invalid { field, .. }) if field.starts_with("runtime.")),
                "{zero}: {refused:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn sqlite_page_cache_defaults_to_256_kib_and_refuses_nonsense() -> Result<(), ConfigError> {
        let default = FacilitatorConfig::parse_with_env("", |_| None)?;
        assert_eq!(default.sqlite_page_cache_kib, 256);
        assert_eq!(default.sqlite_options().page_cache_kib, 256);
        let set = FacilitatorConfig::parse_with_env("sqlite_page_cache_kib = 8192\n", |_| None)?;
        assert_eq!(set.sqlite_options().page_cache_kib, 8192);
        for refused in ["0", "63", "4194305"] {
            let result = FacilitatorConfig::parse_with_env(
                &format!("sqlite_page_cache_kib = {refused}\n"),
                |_| None,
            );
            assert!(
                matches!(&result, Err(ConfigError::Invalid { field, .. }) if field == "sqlite_page_cache_kib"),
                "{refused}: {result:?}"
            );
        }
        let negative = FacilitatorConfig::parse_with_env("sqlite_page_cache_kib = -1\n", |_| None);
        assert!(
            matches!(negative, Err(ConfigError::Parse(_))),
            "{negative:?}"
        );
        Ok(())
    }

    #[test]
    fn secrets_are_not_printed() {
        let secret = Secret::new("0xdeadbeef");
        assert!(!format!("{secret:?}").contains("dead"));
    }

    #[test]
    fn store_urls_print_without_their_password() {
        let url = StoreUrl::new("postgres://x402:hunter2hunter2@db.internal:5432/x402?password=q1");
        let shown = format!("{url:?}");
        assert_eq!(shown, "StoreUrl(postgres://db.internal:5432/x402)");
        assert_eq!(
            redact_store("/var/lib/paywire/ledger.sqlite"),
            "/var/lib/paywire/ledger.sqlite"
        );
        assert_eq!(
            redact_store("mysql://root:p@ss@[::1]:3306"),
            "mysql://[::1]:3306"
        );
        let located = format!("{:?}", StoreLocation::Postgres(url));
        assert!(!located.contains("hunter2"), "{located}");
    }
}
