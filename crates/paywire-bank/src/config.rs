//! The bundle authority's configuration: one `[[chains]]` table of the
//! facilitator configuration per credit network.
//!
//! ```toml
//! [[chains]]
//! network = "acme:credit"
//! authority = "https://credits.acme.example"
//! currency = "EUR"
//! signing_keys = [{ kid = "2026-06", secret = "${ACME_KEY}", active = true }]
//! servers = [{ origin = "https://api.shop.example", api_key = "shop", seller = "shop" }]
//! ```
//!
//! `${ENV}` references are expanded by the facilitator's configuration
//! loader before the table reaches this module.

use std::fmt;

use paywire_core::{ChainId, ConfigEntry, PluginError};
use serde::Deserialize;

use crate::jws::{KeyMaterial, KeySet};
use crate::money::{Currency, MAX_MINOR};
use crate::wire::CREDIT_REFERENCE;

/// Default presentation window (`exp - iat`), seconds.
pub const DEFAULT_PRESENTATION_TTL: u64 = 300;
/// Longest presentation window accepted, seconds.
pub const MAX_PRESENTATION_TTL: u64 = 900;
/// Default settlement window after `iat` (synchronous settle), seconds.
pub const DEFAULT_HOLD_SECONDS: u64 = 900;
/// Longest settlement window accepted (30 days), seconds.
pub const MAX_HOLD_SECONDS: u64 = 30 * 24 * 3600;
/// Default cap of one `/authorize`, minor units (1000.00).
pub const DEFAULT_MAX_AUTHORIZE: u64 = 100_000;

/// One signing key as configured. Its `Debug` never shows the secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// The key id (JWS `kid`).
    pub kid: String,
    /// The base64url (no padding) 32-byte Ed25519 seed (usually `${ENV}`).
    pub secret: String,
    /// Whether it signs new attestations (exactly one key does); the others
    /// only verify and stay published until their holds lapsed.
    #[serde(default)]
    pub active: bool,
}

impl fmt::Debug for SigningKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyConfig")
            .field("kid", &self.kid)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// A resource server registered with the authority.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisteredServer {
    /// Its origin (`scheme://host[:port]`): the attestations' `aud`.
    pub origin: String,
    /// The id (name) of the facilitator API key it settles with.
    pub api_key: String,
    /// The seller it is paid out as (an entry of `payouts.sellers`).
    pub seller: String,
}

/// One credit network's `[[chains]]` table. Its `Debug` shows neither the
/// key secrets nor the store location (it may carry a password).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConfig {
    /// `<label>:credit`.
    pub network: ChainId,
    /// Our origin: `iss` of every attestation and `extra.authority`.
    pub authority: String,
    /// Allows an `http://127.0.0.1:…`/`http://localhost:…` authority
    /// (tests, devnets).
    #[serde(default)]
    pub allow_insecure_origin: bool,
    /// `EUR` or `USD`.
    pub currency: String,
    /// Attestation keys.
    pub signing_keys: Vec<SigningKeyConfig>,
    /// `exp - iat`, seconds (default 300, at most 900).
    #[serde(default = "default_ttl")]
    pub presentation_ttl_seconds: u64,
    /// `holdExp - iat`, seconds (default 900; at least the presentation
    /// window plus one second).
    #[serde(default = "default_hold")]
    pub hold_seconds: u64,
    /// The largest amount one `/authorize` may hold, minor units.
    #[serde(default = "default_max")]
    pub max_authorize_amount: u64,
    /// Registered resource servers.
    #[serde(default)]
    pub servers: Vec<RegisteredServer>,
    /// The ledger location, overriding the facilitator's (`postgres://…`,
    /// an SQLite path, `:memory:`). May carry a password: never logged.
    #[serde(default)]
    pub store: Option<String>,
    /// How bundles are bought and funded (`[chains.funding]`): tiers,
    /// mandate rail, availability policy, collection files. Without it the
    /// authority serves no purchase page (bundles come from elsewhere).
    #[serde(default)]
    pub funding: Option<crate::funding::FundingConfig>,
    /// How sellers are paid (`[chains.payouts]`): fee, sellers' accounts,
    /// payout files (read by `paywire bank payout`).
    #[serde(default)]
    pub payouts: Option<crate::payout::PayoutConfig>,
}

impl fmt::Debug for BankConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BankConfig")
            .field("network", &self.network)
            .field("authority", &self.authority)
            .field("allow_insecure_origin", &self.allow_insecure_origin)
            .field("currency", &self.currency)
            .field("signing_keys", &self.signing_keys)
            .field("presentation_ttl_seconds", &self.presentation_ttl_seconds)
            .field("hold_seconds", &self.hold_seconds)
            .field("max_authorize_amount", &self.max_authorize_amount)
            .field("servers", &self.servers)
            .field("store", &self.store.as_ref().map(|_| "***"))
            .field("funding", &self.funding)
            .field("payouts", &self.payouts)
            .finish()
    }
}

fn default_ttl() -> u64 {
    DEFAULT_PRESENTATION_TTL
}
fn default_hold() -> u64 {
    DEFAULT_HOLD_SECONDS
}
fn default_max() -> u64 {
    DEFAULT_MAX_AUTHORIZE
}

/// A checked configuration, ready to serve.
#[derive(Debug)]
pub struct AuthorityConfig {
    /// The table as written.
    pub raw: BankConfig,
    /// The served network.
    pub network: ChainId,
    /// Our origin (normalized, no trailing slash).
    pub origin: String,
    /// The bundles' currency.
    pub currency: Currency,
    /// The attestation keys.
    pub keys: KeySet,
}

impl BankConfig {
    /// Parses and checks one `[[chains]]` entry. Errors name the entry
    /// (`entry.at`) and never quote secrets.
    ///
    /// # Errors
    /// [`PluginError::Config`] for any invalid setting.
    pub fn from_entry(entry: &ConfigEntry) -> Result<AuthorityConfig, PluginError> {
        let at = entry.at.as_str();
        let raw: BankConfig = serde_json::from_value(entry.table.clone())
            .map_err(|error| PluginError::config(at, scrub_serde_error(&error)))?;
        raw.check(at)
    }

    fn check(self, at: &str) -> Result<AuthorityConfig, PluginError> {
        if self.network.reference() != CREDIT_REFERENCE {
            return Err(PluginError::config(
                format!("{at}.network"),
                "a credit network is `<label>:credit`",
            ));
        }
        let origin = origin_of(&self.authority, self.allow_insecure_origin)
            .map_err(|detail| PluginError::config(format!("{at}.authority"), detail))?;
        if origin != self.authority.trim_end_matches('/') {
            return Err(PluginError::config(
                format!("{at}.authority"),
                "must be an origin (scheme://host[:port], no path)",
            ));
        }
        let currency = Currency::from_code(&self.currency)
            .map_err(|error| PluginError::config(format!("{at}.currency"), error.to_string()))?;
        self.check_windows(at)?;
        self.check_servers(at)?;
        self.check_operations(at)?;
        let keys = self.key_set(at)?;
        Ok(AuthorityConfig {
            network: self.network.clone(),
            origin,
            currency,
            keys,
            raw: self,
        })
    }

    fn check_operations(&self, at: &str) -> Result<(), PluginError> {
        if let Some(funding) = &self.funding {
            funding
                .validate()
                .map_err(|error| PluginError::config(format!("{at}.funding"), error.to_string()))?;
        }
        if let Some(payouts) = &self.payouts {
            payouts
                .validate()
                .map_err(|error| PluginError::config(format!("{at}.payouts"), error.to_string()))?;
        }
        Ok(())
    }

    fn check_windows(&self, at: &str) -> Result<(), PluginError> {
        if self.presentation_ttl_seconds == 0
            || self.presentation_ttl_seconds > MAX_PRESENTATION_TTL
        {
            return Err(PluginError::config(
                format!("{at}.presentation_ttl_seconds"),
                format!("must be 1..={MAX_PRESENTATION_TTL}"),
            ));
        }
        if self.hold_seconds <= self.presentation_ttl_seconds
            || self.hold_seconds > MAX_HOLD_SECONDS
        {
            return Err(PluginError::config(
                format!("{at}.hold_seconds"),
                format!("must be above presentation_ttl_seconds and at most {MAX_HOLD_SECONDS}"),
            ));
        }
        if self.max_authorize_amount == 0 || self.max_authorize_amount > MAX_MINOR {
            return Err(PluginError::config(
                format!("{at}.max_authorize_amount"),
                format!("must be 1..={MAX_MINOR}"),
            ));
        }
        Ok(())
    }

    fn check_servers(&self, at: &str) -> Result<(), PluginError> {
        for (index, server) in self.servers.iter().enumerate() {
            let here = format!("{at}.servers[{index}]");
            let origin = origin_of(&server.origin, self.allow_insecure_origin)
                .map_err(|detail| PluginError::config(format!("{here}.origin"), detail))?;
            if origin != server.origin {
                return Err(PluginError::config(
                    format!("{here}.origin"),
                    "must be an origin (scheme://host[:port], lower case, no path)",
                ));
            }
            if server.api_key.is_empty() || server.seller.is_empty() {
                return Err(PluginError::config(
                    here,
                    "`api_key` and `seller` are required",
                ));
            }
            if self.servers[..index]
                .iter()
                .any(|other| other.origin == server.origin)
            {
                return Err(PluginError::config(
                    format!("{here}.origin"),
                    "registered twice",
                ));
            }
        }
        Ok(())
    }

    fn key_set(&self, at: &str) -> Result<KeySet, PluginError> {
        let mut material = Vec::with_capacity(self.signing_keys.len());
        for (index, key) in self.signing_keys.iter().enumerate() {
            material.push(
                KeyMaterial::from_base64(&key.kid, &key.secret, key.active).map_err(|error| {
                    PluginError::config(format!("{at}.signing_keys[{index}]"), error.to_string())
                })?,
            );
        }
        KeySet::new(material)
            .map_err(|error| PluginError::config(format!("{at}.signing_keys"), error.to_string()))
    }
}

/// A serde error's text without the offending value (which could be a
/// secret): missing and unknown field errors as they are (they name
/// fields only), any other error by its category alone.
pub fn scrub_serde_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if text.starts_with("unknown field") || text.starts_with("missing field") {
        // These quote field names, never values.
        return text;
    }
    let kind = match error.classify() {
        serde_json::error::Category::Data => "invalid value or type",
        _ => "malformed table",
    };
    kind.to_owned()
}

/// The origin (`scheme://host[:port]`, lower case, default port left out)
/// of an absolute `https` URL, or of an `http` loopback URL when
/// `allow_insecure` is set.
///
/// # Errors
/// A description of what is wrong (never the URL itself).
pub fn origin_of(url: &str, allow_insecure: bool) -> Result<String, &'static str> {
    let parsed = url::Url::parse(url).map_err(|_| "not an absolute URL")?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials");
    }
    let host = parsed.host_str().ok_or("has no host")?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_insecure && is_loopback(host) => {}
        "http" => return Err("must be https (http only for loopback with allow_insecure_origin)"),
        _ => return Err("must be https"),
    }
    Ok(parsed.origin().ascii_serialization())
}

/// The origin of a resource URL (`http` or `https`, any host), for `aud`.
///
/// # Errors
/// A description of what is wrong.
pub fn resource_origin(url: &str) -> Result<String, &'static str> {
    let parsed = url::Url::parse(url).map_err(|_| "not an absolute URL")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http(s) URL");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials");
    }
    if parsed.host_str().is_none() {
        return Err("has no host");
    }
    Ok(parsed.origin().ascii_serialization())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "127.0.0.1" || host == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(table: serde_json::Value) -> ConfigEntry {
        ConfigEntry::new(ChainId::parse("acme:credit").unwrap(), "chains[0]", table)
    }

    fn table() -> serde_json::Value {
        serde_json::json!({
            "network": "acme:credit",
            "authority": "https://credits.acme.example",
            "currency": "EUR",
            "signing_keys": [{"kid": "k1", "secret": "A".repeat(43), "active": true}],
            "servers": [{"origin": "https://api.shop.example", "api_key": "shop", "seller": "shop"}],
            "store": "postgres://bank:hunter2@db.example/bank",
        })
    }

    #[test]
    fn accepts_a_good_table_and_defaults() {
        let config = BankConfig::from_entry(&entry(table())).unwrap();
        assert_eq!(config.origin, "https://credits.acme.example");
        assert_eq!(config.raw.presentation_ttl_seconds, 300);
        assert_eq!(config.raw.hold_seconds, 900);
        let debug = format!("{config:?}");
        assert!(!debug.contains("AAAAAAAA"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn refuses_bad_tables_without_quoting_secrets() {
        let mut bad = table();
        bad["signing_keys"][0]["secret"] = "not-a-key-SECRETVALUE".into();
        let error = BankConfig::from_entry(&entry(bad)).unwrap_err().to_string();
        assert!(error.contains("chains[0].signing_keys[0]"), "{error}");
        assert!(!error.contains("SECRETVALUE"));

        let mut http = table();
        http["authority"] = "http://credits.acme.example".into();
        assert!(BankConfig::from_entry(&entry(http)).is_err());

        let mut loopback = table();
        loopback["authority"] = "http://127.0.0.1:8080".into();
        assert!(BankConfig::from_entry(&entry(loopback.clone())).is_err());
        loopback["allow_insecure_origin"] = true.into();
        assert!(BankConfig::from_entry(&entry(loopback)).is_ok());

        let mut ttl = table();
        ttl["presentation_ttl_seconds"] = 901.into();
        assert!(BankConfig::from_entry(&entry(ttl)).is_err());

        let mut unknown = table();
        unknown["surprise"] = 1.into();
        assert!(BankConfig::from_entry(&entry(unknown)).is_err());

        let mut currency = table();
        currency["currency"] = "GBP".into();
        assert!(BankConfig::from_entry(&entry(currency)).is_err());
    }
}
