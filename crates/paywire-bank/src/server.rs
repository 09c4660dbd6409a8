//! The resource server's side of the `credit` binding: requirements for
//! routes priced in euro or US dollar cents on `<label>:credit` networks.
//!
//! A server configuration names each credit network it accepts with a table
//!
//! ```toml
//! [[chains]]
//! network = "acme:credit"
//! authority = "https://credits.acme.example"
//! purchase_url = "https://credits.acme.example/purchase"
//! currency = "EUR"
//! tiers = [{ credits = 1000, price = 1000 }, { credits = 10000, price = 9000 }]
//! ```
//!
//! The offer's `asset` is the ISO 4217 code, `payTo` is always `merchant`
//! (the authority settles) and `extra` carries the authority origin, the
//! purchase URL and the tiers ([`crate::wire::CreditExtra`]).
//!
//! Credit is charged by usage ([`SchemeServer::usage_based`]): the price is
//! the most one request may cost, the handler reports what it used, and the
//! gate settles that. A handler that reports nothing is charged the whole
//! price (the gate's default missing-usage policy).

use std::sync::Arc;

use paywire_core::{
    AssetInfo, AtomicAmount, ChainId, ChainIdPattern, ErrorReason, MoneyUnit, PaymentRequirements,
    PluginError, Price, Registration, RequirementsRequest, SchemeError, SchemeServer, ServerAsset,
    ServerConfig, ServerParts,
};
use serde::Deserialize;

use crate::money::{Currency, MAX_MINOR};
use crate::wire::{self, BINDING_VERSION, CreditExtra, PAY_TO_MERCHANT, SCHEME, Tier};

/// Why a URL is not an acceptable origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// Not `http(s)://host[:port]`.
    #[error("not an http(s) URL with a host")]
    NotAnUrl,
    /// It carries a user name or password.
    #[error("a URL with credentials is not an origin")]
    Credentials,
    /// It has a path, query or fragment.
    #[error("an origin has no path, query or fragment")]
    NotBare,
}

/// The origin (`scheme://host[:port]`, scheme and host lower-cased, no
/// default port) of an `http` or `https` URL. With `bare`, the URL must be
/// an origin itself (at most a trailing `/`).
pub fn origin_of(url: &str, bare: bool) -> Result<String, OriginError> {
    let (scheme, rest) = url.split_once("://").ok_or(OriginError::NotAnUrl)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err(OriginError::NotAnUrl),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if bare && !(tail.is_empty() || tail == "/") {
        return Err(OriginError::NotBare);
    }
    if authority.contains('@') {
        return Err(OriginError::Credentials);
    }
    let (host, port) = split_port(authority)?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    if !host_ok {
        return Err(OriginError::NotAnUrl);
    }
    let host = host.to_ascii_lowercase();
    Ok(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Splits `host[:port]` (IPv6 hosts in brackets), checking the port.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), OriginError> {
    let split = match authority.rfind(':') {
        Some(at) if !authority[at..].contains(']') => {
            Some((&authority[..at], &authority[at + 1..]))
        }
        _ => None,
    };
    match split {
        Some((host, port)) => {
            let valid = !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p != 0);
            if !valid {
                return Err(OriginError::NotAnUrl);
            }
            Ok((host, Some(port)))
        }
        None => Ok((authority, None)),
    }
}

/// One purchase tier in a server table, in minor units of the currency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierEntry {
    credits: u64,
    price: u64,
}

/// A server's table for one credit network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditEntry {
    #[allow(
        dead_code,
        reason = "resolved by the registry (`ConfigEntry::network`)"
    )]
    network: String,
    authority: String,
    #[serde(default)]
    purchase_url: Option<String>,
    currency: String,
    #[serde(default)]
    tiers: Vec<TierEntry>,
}

/// One credit network a server accepts: its authority and currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditNetwork {
    /// The `<label>:credit` network.
    pub network: ChainId,
    /// The authority origin (`extra.authority`).
    pub authority: String,
    /// Where a principal buys a bundle (`extra.purchaseUrl`).
    pub purchase_url: Option<String>,
    /// The bundles' currency (the offers' `asset`).
    pub currency: Currency,
    /// Purchase tiers (`extra.tiers`), in minor units.
    pub tiers: Vec<Tier>,
}

impl CreditNetwork {
    /// A network settled by `authority` (an `http(s)` origin) in `currency`.
    pub fn new(network: ChainId, authority: &str, currency: Currency) -> Result<Self, OriginError> {
        Ok(Self {
            network,
            authority: origin_of(authority, true)?,
            purchase_url: None,
            currency,
            tiers: Vec::new(),
        })
    }

    fn from_entry(entry: &paywire_core::ConfigEntry) -> Result<Self, PluginError> {
        let at = &entry.at;
        let parsed: CreditEntry = serde_json::from_value(entry.table.clone())
            .map_err(|e| PluginError::config(at, e.to_string()))?;
        let currency = Currency::from_code(&parsed.currency)
            .map_err(|e| PluginError::config(format!("{at}.currency"), e.to_string()))?;
        let mut network = Self::new(entry.network.clone(), &parsed.authority, currency)
            .map_err(|e| PluginError::config(format!("{at}.authority"), e.to_string()))?;
        if let Some(url) = &parsed.purchase_url {
            origin_of(url, false)
                .map_err(|e| PluginError::config(format!("{at}.purchase_url"), e.to_string()))?;
        }
        network.purchase_url = parsed.purchase_url;
        for (index, tier) in parsed.tiers.iter().enumerate() {
            if tier.credits == 0 || tier.credits > MAX_MINOR || tier.price > MAX_MINOR {
                return Err(PluginError::config(
                    format!("{at}.tiers[{index}]"),
                    "credits must be above zero; credits and price at most 10^15 minor units",
                ));
            }
            network.tiers.push(Tier {
                credits: tier.credits.to_string(),
                price: tier.price.to_string(),
                asset: currency.code().to_owned(),
            });
        }
        Ok(network)
    }

    /// The offer's `extra`.
    fn extra(&self) -> Result<paywire_core::JsonObject, SchemeError> {
        let extra = CreditExtra {
            version: BINDING_VERSION.to_owned(),
            authority: self.authority.clone(),
            purchase_url: self.purchase_url.clone(),
            tiers: self.tiers.clone(),
        };
        match serde_json::to_value(extra) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(SchemeError::InvalidRequirements(
                "the credit extra does not serialize".into(),
            )),
        }
    }
}

/// The `batch-settlement` scheme server for credit networks.
#[derive(Debug, Clone, Default)]
pub struct CreditServer {
    networks: Vec<CreditNetwork>,
}

impl CreditServer {
    /// A server accepting `networks`.
    pub fn new(networks: Vec<CreditNetwork>) -> Self {
        Self { networks }
    }

    /// The credit networks it accepts.
    pub fn networks(&self) -> &[CreditNetwork] {
        &self.networks
    }

    /// The price in minor units of `currency`: money in the currency's
    /// unit (`$` only for USD; no unit means the network's currency) or an
    /// exact amount of the currency code.
    fn minor_units(price: &Price, currency: Currency) -> Result<AtomicAmount, SchemeError> {
        let wrong_unit = |unit: &str| {
            SchemeError::InvalidRequirements(format!(
                "a price in {unit} on a {} credit network",
                currency.code()
            ))
        };
        let amount = match price {
            Price::Money(money) => {
                match money.unit() {
                    MoneyUnit::Usd if currency != Currency::Usd => return Err(wrong_unit("USD")),
                    MoneyUnit::Symbol(symbol) if symbol != currency.code() => {
                        return Err(wrong_unit(symbol));
                    }
                    _ => {}
                }
                let decimals = u8::try_from(currency.exponent()).unwrap_or(2);
                money
                    .to_atomic(decimals)
                    .map_err(|e| SchemeError::InvalidRequirements(e.to_string()))?
            }
            Price::Atomic { amount, asset, .. } => {
                if asset != currency.code() {
                    return Err(wrong_unit(asset));
                }
                *amount
            }
            _ => return Err(SchemeError::Unsupported("this kind of price".into())),
        };
        let fits = amount
            .to_u128()
            .is_some_and(|a| a > 0 && a <= u128::from(MAX_MINOR));
        if !fits {
            return Err(SchemeError::InvalidRequirements(
                "a credit price must be above zero and at most 10^15 minor units".into(),
            ));
        }
        Ok(amount)
    }
}

impl SchemeServer for CreditServer {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let network = self
            .networks
            .iter()
            .find(|n| &n.network == request.network)
            .ok_or_else(|| {
                SchemeError::Unsupported(format!(
                    "{} is not a configured credit network",
                    request.network
                ))
            })?;
        if !request.pay_to.is_empty() && request.pay_to != PAY_TO_MERCHANT {
            return Err(SchemeError::InvalidRequirements(format!(
                "payTo of a credit offer is {PAY_TO_MERCHANT:?}: the authority settles"
            )));
        }
        let amount = Self::minor_units(request.price, network.currency)?;
        Ok(PaymentRequirements {
            scheme: SCHEME.to_owned(),
            network: network.network.clone(),
            amount,
            asset: network.currency.code().to_owned(),
            pay_to: PAY_TO_MERCHANT.to_owned(),
            max_timeout_seconds: request.max_timeout_seconds,
            extra: Some(network.extra()?),
        })
    }

    /// Revoked, expired or invalid attestations, a charge above the
    /// attestation and an amount below the price never become chargeable.
    fn refusal_proves_unchargeable(&self, reason: &ErrorReason) -> bool {
        [
            wire::reason::REVOKED,
            wire::reason::HOLD_EXPIRED,
            wire::reason::ATTESTATION_EXPIRED,
            wire::reason::ATTESTATION_INVALID,
            wire::reason::PRICE_NOT_ACCEPTABLE,
            wire::reason::CHARGE_EXCEEDS_ATTESTATION,
        ]
        .iter()
        .any(|code| reason.as_str() == *code)
    }

    /// An attestation already settled (with other parameters, or at all).
    fn refusal_means_spent(&self, reason: &ErrorReason) -> bool {
        [wire::reason::SETTLE_CONFLICT, wire::reason::ALREADY_SETTLED]
            .iter()
            .any(|code| reason.as_str() == *code)
    }

    fn usage_based(&self) -> bool {
        true
    }
}

/// What a currency is as an asset: ISO code, 2 decimals, and the dollar
/// marked as one US dollar per unit (so dollar budgets and caps apply to
/// USD credits; euro credits are not dollars).
pub fn asset_info(currency: Currency) -> AssetInfo {
    AssetInfo {
        symbol: currency.code().to_owned(),
        decimals: u8::try_from(currency.exponent()).unwrap_or(2),
        usd_stable: currency == Currency::Usd,
    }
}

/// The server parts for the configured credit networks: one
/// `batch-settlement` registration on exactly those networks and their
/// currencies as assets. There are no well-known credit networks.
pub fn server_parts(config: &ServerConfig) -> Result<ServerParts, PluginError> {
    let mut networks: Vec<CreditNetwork> = Vec::new();
    for entry in &config.entries {
        let network = CreditNetwork::from_entry(entry)?;
        if networks.iter().any(|n| n.network == network.network) {
            return Err(PluginError::config(
                format!("{}.network", entry.at),
                format!("{} has another entry already", network.network),
            ));
        }
        networks.push(network);
    }
    let mut parts = ServerParts::default();
    if networks.is_empty() {
        return Ok(parts);
    }
    for network in &networks {
        parts.assets.push(ServerAsset::new(
            network.network.clone(),
            network.currency.code(),
            asset_info(network.currency),
        ));
    }
    let pattern = ChainIdPattern::Set(
        networks
            .iter()
            .map(|n| ChainIdPattern::Exact(n.network.clone()))
            .collect(),
    );
    let server: Arc<dyn SchemeServer> = Arc::new(CreditServer::new(networks));
    parts.schemes.push(Registration::new(pattern, server));
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(currency: Currency) -> CreditServer {
        let mut network = CreditNetwork::new(
            "acme:credit".parse().unwrap(),
            "https://credits.acme.example",
            currency,
        )
        .unwrap();
        network.purchase_url = Some("https://credits.acme.example/purchase".into());
        network.tiers.push(Tier {
            credits: "10000".into(),
            price: "9000".into(),
            asset: currency.code().into(),
        });
        CreditServer::new(vec![network])
    }

    fn offer(
        server: &CreditServer,
        price: &Price,
        pay_to: &str,
    ) -> Result<PaymentRequirements, SchemeError> {
        server.requirements(&RequirementsRequest {
            network: &"acme:credit".parse().unwrap(),
            price,
            pay_to,
            max_timeout_seconds: 60,
            facilitator_kind: None,
        })
    }

    fn money(text: &str) -> Price {
        Price::Money(text.parse().unwrap())
    }

    #[test]
    fn offers_are_minor_units_of_the_currency_paid_to_the_merchant() {
        let eur = server(Currency::Eur);
        let requirements = offer(&eur, &money("0.50"), "merchant").unwrap();
        assert_eq!(requirements.scheme, "batch-settlement");
        assert_eq!(requirements.amount.to_string(), "50");
        assert_eq!(requirements.asset, "EUR");
        assert_eq!(requirements.pay_to, "merchant");
        let extra = serde_json::Value::Object(requirements.extra.unwrap());
        assert_eq!(
            extra,
            serde_json::json!({
                "version": "1.0.0",
                "authority": "https://credits.acme.example",
                "purchaseUrl": "https://credits.acme.example/purchase",
                "tiers": [{"credits": "10000", "price": "9000", "asset": "EUR"}],
            })
        );
        assert_eq!(
            offer(&eur, &money("1.5 EUR"), "")
                .unwrap()
                .amount
                .to_string(),
            "150"
        );
        let usd = server(Currency::Usd);
        assert_eq!(
            offer(&usd, &money("$0.07"), "merchant")
                .unwrap()
                .amount
                .to_string(),
            "7"
        );
        assert!(eur.usage_based());
    }

    #[test]
    fn prices_in_another_unit_or_without_value_are_refused() {
        let eur = server(Currency::Eur);
        for price in ["$0.50", "0.50 USD", "0.001", "0", "0.00"] {
            assert!(offer(&eur, &money(price), "merchant").is_err(), "{price}");
        }
        let usd_atomic = Price::Atomic {
            amount: 50u64.into(),
            asset: "USD".into(),
            extra: None,
        };
        assert!(offer(&eur, &usd_atomic, "merchant").is_err());
        assert!(
            offer(&eur, &money("0.50"), "0xabc").is_err(),
            "payTo is the merchant"
        );
        let other = RequirementsRequest {
            network: &"other:credit".parse().unwrap(),
            price: &money("0.50"),
            pay_to: "merchant",
            max_timeout_seconds: 60,
            facilitator_kind: None,
        };
        assert!(matches!(
            eur.requirements(&other),
            Err(SchemeError::Unsupported(_))
        ));
    }

    #[test]
    fn server_tables_are_checked() {
        let entry = |table: serde_json::Value| {
            paywire_core::ConfigEntry::new("acme:credit".parse().unwrap(), "chains[0]", table)
        };
        let good = serde_json::json!({
            "network": "acme:credit", "authority": "https://credits.acme.example",
            "currency": "USD", "tiers": [{"credits": 1000, "price": 1000}],
        });
        let mut config = ServerConfig::default();
        config.entries = vec![entry(good.clone())];
        let parts = server_parts(&config).unwrap();
        assert_eq!(parts.schemes.len(), 1);
        assert_eq!(parts.assets.len(), 1);
        assert!(parts.assets[0].info.usd_stable);
        for (key, value) in [
            ("currency", serde_json::json!("GBP")),
            (
                "authority",
                serde_json::json!("https://credits.acme.example/x"),
            ),
            ("unknown", serde_json::json!(1)),
            ("tiers", serde_json::json!([{"credits": 0, "price": 1}])),
        ] {
            let mut bad = good.clone();
            bad[key] = value;
            let mut config = ServerConfig::default();
            config.entries = vec![entry(bad)];
            assert!(server_parts(&config).is_err(), "{key}");
        }
        let empty = server_parts(&ServerConfig::default()).unwrap();
        assert!(empty.schemes.is_empty());
    }

    #[test]
    fn origins_are_normalized_and_bare() {
        assert_eq!(
            origin_of("HTTPS://Credits.Acme.example:443/", true).as_deref(),
            Ok("https://credits.acme.example")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080/v1/x?y=1", false).as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin_of("https://a.example/x", true),
            Err(OriginError::NotBare)
        );
        assert_eq!(
            origin_of("https://u:p@a.example", true),
            Err(OriginError::Credentials)
        );
        for bad in [
            "ftp://a",
            "a.example",
            "https://",
            "https://a:0",
            "https://a:x",
        ] {
            assert!(origin_of(bad, false).is_err(), "{bad}");
        }
    }
}
