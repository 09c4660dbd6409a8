//! The gateway's TOML configuration.

use std::path::Path;

use paywire_core::RuntimeConfig;
use serde::Deserialize;

/// A configuration problem (parse, environment substitution, validation).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not match the schema.
    #[error("invalid gateway configuration: {0}")]
    Toml(String),
    /// A `${VAR}` reference names an unset environment variable.
    #[error("environment variable {name} (referenced at {at}) is not set")]
    MissingEnv {
        /// Variable name.
        name: String,
        /// Where in the file.
        at: String,
    },
    /// A `${` without a closing `}` or with an invalid name.
    #[error("malformed ${{…}} reference at {at}: {detail}")]
    BadReference {
        /// Where in the file.
        at: String,
        /// What is wrong.
        detail: String,
    },
    /// A value is syntactically fine but unusable.
    #[error("{at}: {detail}")]
    Invalid {
        /// Where in the file.
        at: String,
        /// What is wrong.
        detail: String,
    },
}

fn default_listen() -> String {
    "127.0.0.1:8402".into()
}

fn default_true() -> bool {
    true
}

fn default_upstream_timeout() -> u64 {
    60
}

fn default_max_paid_response_bytes() -> usize {
    paywire_server::DEFAULT_MAX_PAID_RESPONSE_BYTES
}

fn default_max_paid_response_bytes_in_flight() -> usize {
    paywire_server::DEFAULT_MAX_PAID_RESPONSE_BYTES_IN_FLIGHT
}

fn default_max_timeout() -> u64 {
    60
}

fn default_scheme() -> String {
    "exact".into()
}

/// `paywire gateway --config gateway.toml`: see [`example_config`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Listen address (`host:port`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Public origin of the gateway (`https://api.example.com`): resource URLs
    /// in 402 answers are built from it, never from `Host`.
    pub public_origin: String,
    /// Base URL of the upstream API (`http://127.0.0.1:8080`, optionally with
    /// a path prefix).
    pub upstream: String,
    /// Whole-request timeout towards the upstream, in seconds (default 60).
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_seconds: u64,
    /// Match route paths ignoring case (default false: case-sensitive). Set it
    /// when the upstream serves `/PAID` as `/paid`, or that spelling is free.
    #[serde(default)]
    pub case_insensitive_paths: bool,
    /// A priced route's last literal segment also matches with a format
    /// suffix (`/paid` prices `/paid.json`; default false). Set it when the
    /// upstream strips one before routing (Rails, Spring MVC before 5.3).
    #[serde(default)]
    pub format_suffixes: bool,
    /// Largest upstream answer of a priced route, in bytes (default 8 MiB):
    /// it is held back until the payment settles; a larger one is answered
    /// `500 response_too_large` and nothing is charged.
    #[serde(default = "default_max_paid_response_bytes")]
    pub max_paid_response_bytes: usize,
    /// Largest total of the priced upstream answers held back at once
    /// (default 256 MiB); an answer that would go over it is refused with
    /// `503 server_busy` and nothing is charged.
    #[serde(default = "default_max_paid_response_bytes_in_flight")]
    pub max_paid_response_bytes_in_flight: usize,
    /// Where payment reservations live (they stop one payment from being
    /// served twice): a SQLite file path (shared by gateway instances on one
    /// host, persisted across restarts) or a `postgres://` / `postgresql://`
    /// URL (shared by instances on several hosts); in memory when absent.
    /// `reservations_sqlite` is accepted as the older name of this key.
    #[serde(default, alias = "reservations_sqlite")]
    pub reservations: Option<String>,
    /// Facilitators in preference order.
    pub facilitators: Vec<FacilitatorEntry>,
    /// Whether the registered plugins' well-known networks and assets (EVM:
    /// Base, Ethereum, … with USDC) are known (default true).
    #[serde(default = "default_true")]
    pub well_known_networks: bool,
    /// `[[networks]]`: custom networks, or extra assets on known ones. Each
    /// table names its `network` (a name or CAIP-2 id) and goes to the plugin
    /// of that network's namespace, which reads (and checks) the rest: for
    /// EVM, `name` and `asset = { address, symbol, decimals, eip712_name,
    /// eip712_version, usd_stable }`.
    #[serde(default)]
    pub networks: Vec<serde_json::Value>,
    /// Priced routes; every other path is proxied without payment.
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    /// The upstream response header reporting a request's usage, for
    /// usage-based (`upto`) options (default `X-Paywire-Usage`; a route may
    /// name its own). Always removed from answers before they leave the
    /// gateway.
    #[serde(default = "default_usage_header")]
    pub usage_header: String,
    /// Threads of the async runtime (`[runtime]`).
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

fn default_usage_header() -> String {
    DEFAULT_USAGE_HEADER.into()
}

/// The default name of the upstream's usage header.
pub const DEFAULT_USAGE_HEADER: &str = "X-Paywire-Usage";

/// What a usage-based payment is charged when the upstream's usage header
/// is missing or malformed (`missing_usage` of a route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MissingUsageEntry {
    /// The authorized maximum, with a warning (default).
    #[default]
    ChargeMaximum,
    /// Nothing (the authorization is consumed); the answer is served.
    ChargeNothing,
    /// `500 usage_missing`, the answer withheld, nothing charged.
    Refuse,
}

impl From<MissingUsageEntry> for paywire_server::MissingUsage {
    fn from(entry: MissingUsageEntry) -> Self {
        match entry {
            MissingUsageEntry::ChargeMaximum => Self::ChargeMaximum,
            MissingUsageEntry::ChargeNothing => Self::ChargeNothing,
            MissingUsageEntry::Refuse => Self::Refuse,
        }
    }
}

/// One facilitator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilitatorEntry {
    /// Base URL (`{url}/verify`, `{url}/settle`, `{url}/supported`).
    pub url: String,
    /// Bearer token (use `${ENV_VAR}`).
    #[serde(default)]
    pub token: Option<String>,
    /// Whole-request timeout in seconds (default 45). Keep it above the
    /// facilitator's receipt wait (25-30 s): a settle call that times out
    /// leaves the payment's outcome unknown until the payer retries.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// A priced route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// HTTP method (`GET`); any method when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Path pattern: `/weather`, `/users/:id`, `/files/*`.
    pub path: String,
    /// Description shown to clients and on the paywall.
    #[serde(default)]
    pub description: Option<String>,
    /// MIME type of the response.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// `maxTimeoutSeconds` (default 60).
    #[serde(default = "default_max_timeout")]
    pub max_timeout_seconds: u64,
    /// Settle before forwarding (for upstream calls with side effects).
    #[serde(default)]
    pub settle_before_handler: bool,
    /// Accepted payment options (at least one).
    pub accepts: Vec<AcceptEntry>,
    /// Name of the service, for discovery catalogs (printable ASCII, ≤ 32).
    #[serde(default)]
    pub service_name: Option<String>,
    /// Topical tags for discovery catalogs (≤ 5).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Absolute http(s) URL of the service's icon.
    #[serde(default)]
    pub icon_url: Option<String>,
    /// How to call the route, declared in its 402 answers so that
    /// facilitators with a bazaar catalog list it once someone has paid.
    #[serde(default)]
    pub discovery: Option<DiscoveryEntry>,
    /// This route's usage header, instead of the global `usage_header`.
    #[serde(default)]
    pub usage_header: Option<String>,
    /// What a usage-based payment is charged without a usable usage header.
    #[serde(default)]
    pub missing_usage: MissingUsageEntry,
    /// The route's MCP tool name under `paywire mcp serve` (1-128 of
    /// `A-Z a-z 0-9 _ . -`, unique); derived from the method and path when
    /// absent (`GET /weather/:city` is `get_weather_city`).
    #[serde(default)]
    pub tool: Option<String>,
}

/// `[routes.discovery]`: a bazaar declaration of the route (needs `method`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryEntry {
    /// Example query parameters.
    #[serde(default)]
    pub query_params: std::collections::BTreeMap<String, String>,
    /// Example request headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Body encoding for POST/PUT/PATCH: `json` (default), `form-data`, `text`.
    #[serde(default)]
    pub body_type: Option<String>,
    /// Example body for POST/PUT/PATCH (any TOML value; default `{}`).
    #[serde(default)]
    pub body_example: Option<serde_json::Value>,
    /// Response type (default `json`).
    #[serde(default)]
    pub output_type: Option<String>,
    /// Example response (any TOML value).
    #[serde(default)]
    pub output_example: Option<serde_json::Value>,
}

/// One accepted payment option.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptEntry {
    /// Payment scheme (default `exact`).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Network: a name (`base`, `base-sepolia`) or CAIP-2 (`eip155:8453`),
    /// as the registered plugins know it.
    pub network: String,
    /// Money price (`"$0.01"`, `"0.5 USDC"`); or give `amount` + `asset`.
    #[serde(default)]
    pub price: Option<String>,
    /// Atomic amount (with `asset`).
    #[serde(default)]
    pub amount: Option<String>,
    /// Asset address (with `amount`).
    #[serde(default)]
    pub asset: Option<String>,
    /// Recipient address.
    pub pay_to: String,
    /// Usage-based options: the money a typical request costs (`"$0.002"`),
    /// advertised as `extra.expectedAmount`.
    #[serde(default)]
    pub expected_price: Option<String>,
    /// Usage-based options priced with `amount` + `asset`: the typical
    /// charge in atomic units of that asset.
    #[serde(default)]
    pub expected_amount: Option<String>,
}

impl GatewayConfig {
    /// Reads and parses a file, substituting `${VAR}` from the environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, GatewayConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| GatewayConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses TOML text, substituting `${VAR}` from the process environment.
    pub fn parse(text: &str) -> Result<Self, GatewayConfigError> {
        Self::parse_with_env(text, |name| std::env::var(name).ok())
    }

    /// Parses TOML text, resolving `${VAR}` with `env`.
    pub fn parse_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayConfigError> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| GatewayConfigError::Toml(e.to_string()))?;
        for (key, item) in &mut value {
            paywire_core::envsubst::substitute_toml(item, key, &env).map_err(env_error)?;
        }
        let config: Self = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| GatewayConfigError::Toml(e.to_string()))?;
        config
            .runtime
            .validate()
            .map_err(|e| GatewayConfigError::Invalid {
                at: e.field.into(),
                detail: e.rule.into(),
            })?;
        Ok(config)
    }
}

fn env_error(error: paywire_core::envsubst::EnvSubstError) -> GatewayConfigError {
    match error {
        paywire_core::envsubst::EnvSubstError::Missing { name, at } => {
            GatewayConfigError::MissingEnv { name, at }
        }
        paywire_core::envsubst::EnvSubstError::BadReference { at, detail } => {
            GatewayConfigError::BadReference { at, detail }
        }
        other => GatewayConfigError::Toml(other.to_string()),
    }
}

/// A documented example configuration (`paywire gateway --print-config-example`).
pub fn example_config() -> &'static str {
    EXAMPLE_CONFIG
}

const EXAMPLE_CONFIG: &str = r#"# paywire gateway: sells an existing HTTP API for x402 payments.
#
# Every string may use ${ENV_VAR} substitution (an unset variable is an error
# naming it); write $${ for a literal "${". Unknown keys are errors.

listen = "0.0.0.0:8402"
# Resource URLs in 402 answers are built from this, never from Host.
public_origin = "https://api.example.com"
# The API being sold (plain http; a path prefix is kept).
upstream = "http://127.0.0.1:8080"
upstream_timeout_seconds = 60
# Request paths are normalized (dot segments resolved, %-encoded unreserved
# characters decoded, // collapsed) before routes are matched, and exactly
# that path is forwarded; paths that cannot be normalized safely (%2F, %5C,
# \, NUL, ;, double encoding, climbing above the root, over 8 KiB) get a 400.
# Route matching is case-sensitive; set this if the upstream ignores case,
# otherwise /PAID would reach its /paid for free.
case_insensitive_paths = false
# Set this if the upstream strips a format suffix before routing (Rails,
# Spring MVC before 5.3): /paid then also prices /paid.json, /paid.html.
format_suffixes = false
# Priced answers are held back until the payment settles: larger ones are
# refused (500 response_too_large) and nothing is charged (default 8 MiB).
max_paid_response_bytes = 8388608
# ... and all of them together at most this many bytes (503 server_busy
# above it, nothing charged; default 256 MiB).
max_paid_response_bytes_in_flight = 268435456
# Where reservations live (they stop one payment from being served twice);
# in memory when absent. A SQLite file shares them between instances on one
# host and keeps them across restarts; a PostgreSQL URL shares them between
# instances on several hosts (run several gateways behind a load balancer).
# `reservations_sqlite` is the older name of this key and still works.
# reservations = "/var/lib/paywire/gateway-reservations.sqlite"
# reservations = "postgres://paywire:${PG_PASSWORD}@db.internal:5432/paywire?sslmode=verify-full&sslrootcert=/etc/paywire/db-ca.pem"
# (PostgreSQL: pooled, reconnects by itself after a database restart; TLS
# with sslmode/sslrootcert, pool size with pool_max_size: docs/sellers.md.)

# The upstream response header that reports a request's usage on usage-based
# (upto) routes; a route may name its own. Removed from every answer.
usage_header = "X-Paywire-Usage"

# The registered plugins' built-in networks (EVM: Base, Ethereum, Polygon,
# Arbitrum, OP, Avalanche and their testnets, each with Circle's USDC) are
# known unless this is false.
well_known_networks = true

# Threads of the async runtime: worker_threads defaults to one per core, at
# most 4 (the upstream and the facilitators, not the gateway's CPU, bound
# throughput; each thread costs memory); max_blocking_threads bounds the
# threads for blocking work such as resolving host names (default 16).
[runtime]
worker_threads = 2
max_blocking_threads = 16

# Facilitators, most preferred first. Each (scheme, network) goes to the
# ones listing it in /supported; verify fails over on errors.
[[facilitators]]
url = "https://facilitator.example.com"
token = "${FACILITATOR_TOKEN}"
# Above the facilitator's receipt wait (default 45): a timed-out settlement
# keeps the payment for the buyer's retry with the same payload.
timeout_seconds = 45

[[facilitators]]
url = "https://x402.org/facilitator"

# A custom chain with its default asset (or an extra asset on a known chain):
# `network` (a name or CAIP-2 id) picks the plugin, which reads the rest.
[[networks]]
network = "eip155:31337"
name = "Anvil"
asset = { address = "0x036CbD53842c5426634e7929541eC2318f3dCF7e", symbol = "USDC", decimals = 6, eip712_name = "USD Coin", eip712_version = "2", usd_stable = true }

# Priced routes: method (optional) + path pattern (`:param`, `*`).
# Everything else is proxied for free, streaming.
[[routes]]
method = "GET"
path = "/weather"
description = "Current weather"
mime_type = "application/json"
max_timeout_seconds = 60

# Its tool name under `paywire mcp serve` (which sells these routes as paid
# MCP tools); derived from method and path when absent (get_weather).
tool = "weather"

service_name = "Example Weather"        # optional service metadata for
tags = ["weather", "forecast"]          # discovery catalogs
# icon_url = "https://api.example.com/icon.png"

[[routes.accepts]]
network = "base-sepolia"         # scheme = "exact" by default
price = "$0.01"
pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"

# Optional bazaar declaration: facilitators with a discovery catalog list the
# route (GET /discovery/resources) once a buyer has paid for it.
[routes.discovery]
query_params = { city = "Paris" }
output_example = { city = "Paris", temperature = 21 }

# A usage-based route (scheme "upto"): the buyer authorizes at most `price`,
# the upstream reports what the request used in a response header and only
# that is charged (never more than the maximum; zero is allowed). The header
# holds atomic units of the asset ("1858") or dollars ("$0.0021", which must
# be exact in the asset's decimals); it is always removed before the answer
# leaves the gateway, on every route. On EVM chains "upto" is paid through
# Permit2: the buyer approves the Permit2 contract for the token once.
[[routes]]
method = "POST"
path = "/complete"
description = "Text completion, charged by tokens"
usage_header = "X-Paywire-Usage"   # default: the global `usage_header`
# Without a usable header: "charge_maximum" (default, logged),
# "charge_nothing", or "refuse" (500 usage_missing, nothing charged).
missing_usage = "charge_maximum"

[[routes.accepts]]
scheme = "upto"
network = "base-sepolia"
price = "$0.05"                  # the most one request may cost
expected_price = "$0.01"         # optional: shown as extra.expectedAmount
pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"

[[routes]]
method = "POST"
path = "/reports/:id"
description = "Generate a report (settled before the upstream runs)"
settle_before_handler = true

[[routes.accepts]]
network = "eip155:8453"
amount = "250000"   # atomic units of the asset below
asset = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_table_is_read_and_zero_threads_refused() {
        let base = "public_origin = \"https://a.example\"\nupstream = \"http://127.0.0.1:1\"\nfacilitators = []\n";
        let default = GatewayConfig::parse_with_env(base, |_| None).unwrap();
        assert_eq!(default.runtime, RuntimeConfig::default());
        let set = GatewayConfig::parse_with_env(
            &format!("{base}[runtime]\nworker_threads = 1\nmax_blocking_threads = 3\n"),
            |_| None,
        )
        .unwrap();
        assert_eq!(set.runtime.worker_threads(), 1);
        assert_eq!(set.runtime.max_blocking_threads, 3);
        for zero in ["worker_threads = 0", "max_blocking_threads = 0"] {
            let refused =
                GatewayConfig::parse_with_env(&format!("{base}[runtime]\n{zero}\n"), |_| None);
            assert!(
                matches!(&refused, Err(GatewayConfigError::Invalid { at, .. }) if at.starts_with("runtime.")),
                "{zero}: {refused:?}"
            );
        }
    }

    #[test]
    fn example_parses() {
        let config = GatewayConfig::parse_with_env(example_config(), |name| {
            (name == "FACILITATOR_TOKEN").then(|| "secret".to_owned())
        })
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:8402");
        assert_eq!(config.facilitators.len(), 2);
        assert_eq!(config.facilitators[0].token.as_deref(), Some("secret"));
        assert_eq!(config.facilitators[1].token, None);
        assert_eq!(config.networks[0]["network"], "eip155:31337");
        assert_eq!(config.routes[0].accepts[0].scheme, "exact");
        assert_eq!(config.routes.len(), 3);
        assert_eq!(config.routes[0].tool.as_deref(), Some("weather"));
        assert_eq!(config.routes[1].tool, None);
        assert_eq!(config.routes[0].accepts[0].price.as_deref(), Some("$0.01"));
        // The usage-based route.
        assert_eq!(config.routes[1].accepts[0].scheme, "upto");
        assert_eq!(config.routes[1].accepts[0].price.as_deref(), Some("$0.05"));
        assert_eq!(
            config.routes[2].accepts[0].amount.as_deref(),
            Some("250000")
        );
        assert!(config.routes[2].settle_before_handler);
        assert!(!config.case_insensitive_paths);
        assert_eq!(config.max_paid_response_bytes, 8 << 20);
        assert_eq!(config.max_paid_response_bytes_in_flight, 256 << 20);
        assert_eq!(config.facilitators[0].timeout_seconds, Some(45));
    }

    #[test]
    fn reservations_takes_a_path_or_url_and_keeps_its_old_name() {
        let base = "public_origin = \"https://a.b\"\nupstream = \"http://u\"\nfacilitators = []\n";
        let parse =
            |extra: &str| GatewayConfig::parse_with_env(&format!("{base}{extra}"), |_| None);
        let url = parse("reservations = \"postgres://u@h/db\"\n").unwrap();
        assert_eq!(url.reservations.as_deref(), Some("postgres://u@h/db"));
        let old = parse("reservations_sqlite = \"/tmp/r.sqlite\"\n").unwrap();
        assert_eq!(old.reservations.as_deref(), Some("/tmp/r.sqlite"));
        assert_eq!(parse("").unwrap().reservations, None);
        // Both names at once is ambiguous.
        assert!(parse("reservations = \"a\"\nreservations_sqlite = \"b\"\n").is_err());
    }

    #[test]
    fn env_and_unknown_fields() {
        let missing = GatewayConfig::parse_with_env(example_config(), |_| None).unwrap_err();
        assert!(
            matches!(&missing, GatewayConfigError::MissingEnv { name, at }
                if name == "FACILITATOR_TOKEN" && at == "facilitators[0].token"),
            "{missing}"
        );
        let unknown = GatewayConfig::parse_with_env(
            "public_origin = \"https://a.b\"\nupstream = \"http://u\"\nfacilitators = []\nlistne = \"x\"\n",
            |_| None,
        )
        .unwrap_err();
        assert!(unknown.to_string().contains("listne"), "{unknown}");
        assert_eq!(
            paywire_core::envsubst::substitute("a$${b}$c${X}", "k", &|_| Some("1".into())).unwrap(),
            "a${b}$c1"
        );
    }
}
