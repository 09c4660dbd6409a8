//! Declarative selection among the payment options a server offers: "prefer
//! Solana, avoid mainnet, only USDC, never more than $0.05", then the
//! cheapest remaining option by value.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

pub use paywire_core::{AssetCatalog, AssetInfo};
use paywire_core::{
    AtomicAmount, ChainId, ChainIdPattern, Money, NetworkClass, NetworkDirectory,
    PaymentRequirements, U256,
};

/// A catalog built from a list, for configuration and tests.
#[derive(Debug, Clone, Default)]
pub struct StaticCatalog {
    entries: Vec<(ChainId, String, AssetInfo)>,
}

impl StaticCatalog {
    /// Adds an asset (addresses compare case-insensitively).
    pub fn with(mut self, network: ChainId, asset: impl Into<String>, info: AssetInfo) -> Self {
        self.entries.push((network, asset.into(), info));
        self
    }
}

impl AssetCatalog for StaticCatalog {
    fn asset_info(&self, network: &ChainId, asset: &str) -> Option<AssetInfo> {
        self.entries
            .iter()
            .find(|(n, a, _)| n == network && a.eq_ignore_ascii_case(asset))
            .map(|(_, _, info)| info.clone())
    }
}

/// Several catalogs consulted in order.
#[derive(Clone, Default)]
pub struct Catalogs(pub Vec<Arc<dyn AssetCatalog>>);

impl AssetCatalog for Catalogs {
    fn asset_info(&self, network: &ChainId, asset: &str) -> Option<AssetInfo> {
        self.0.iter().find_map(|c| c.asset_info(network, asset))
    }
}

/// A per-call ceiling.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PriceCap {
    /// At most this many US dollars, for USD stablecoins. Options in assets
    /// that are not known USD stablecoins are excluded when a USD cap is set.
    Usd(Money),
    /// At most this atomic amount of one asset on one network.
    Atomic {
        /// Network of the asset.
        network: ChainId,
        /// Asset address or code.
        asset: String,
        /// Ceiling in atomic units.
        max: AtomicAmount,
    },
}

/// Default cap on an offer's `maxTimeoutSeconds` (5 minutes).
pub const DEFAULT_MAX_TIMEOUT_SECONDS: u64 = 300;

/// The declarative policy. Empty lists mean "no restriction".
#[derive(Debug, Clone)]
pub struct SelectionPolicy {
    /// Networks in order of preference (breaks ties between equal prices).
    pub prefer_networks: Vec<ChainIdPattern>,
    /// Only these networks.
    pub allow_networks: Vec<ChainIdPattern>,
    /// Never these networks.
    pub deny_networks: Vec<ChainIdPattern>,
    /// Only this class of network (e.g. testnets only). Unknown networks
    /// count as neither class and are excluded when this is set.
    pub network_class: Option<NetworkClass>,
    /// What is known about networks (their class), as the chain plugins
    /// contribute it (`PluginRegistry::networks`).
    pub networks: NetworkDirectory,
    /// Only these schemes.
    pub allow_schemes: Vec<String>,
    /// Only these assets, as (network pattern, asset address or code).
    pub allow_assets: Vec<(ChainIdPattern, String)>,
    /// Only pay these recipients.
    pub allow_pay_to: Vec<String>,
    /// Never pay these recipients.
    pub deny_pay_to: Vec<String>,
    /// Per-call ceilings; each applies to the options it concerns.
    pub max_per_call: Vec<PriceCap>,
    /// Largest acceptable `maxTimeoutSeconds` (default
    /// [`DEFAULT_MAX_TIMEOUT_SECONDS`]): a signed authorization stays valid
    /// that long, and the server holding it may settle it until then.
    pub max_timeout_seconds: u64,
    /// Schemes that charge by usage (default `["upto"]`): the payer
    /// authorizes the requirements' `amount` as a maximum and is charged at
    /// most that. Such an option is compared with others by its
    /// `extra.expectedAmount` when it states one (at most the maximum),
    /// otherwise by its maximum; ceilings and budgets always apply to the
    /// maximum, and the budget commits the receipt's `amount` (when present
    /// and not above the maximum) instead of the maximum.
    pub usage_based_schemes: Vec<String>,
}

impl Default for SelectionPolicy {
    fn default() -> Self {
        Self {
            prefer_networks: Vec::new(),
            allow_networks: Vec::new(),
            deny_networks: Vec::new(),
            network_class: None,
            networks: NetworkDirectory::new(),
            allow_schemes: Vec::new(),
            allow_assets: Vec::new(),
            allow_pay_to: Vec::new(),
            deny_pay_to: Vec::new(),
            max_per_call: Vec::new(),
            max_timeout_seconds: DEFAULT_MAX_TIMEOUT_SECONDS,
            usage_based_schemes: vec!["upto".to_owned()],
        }
    }
}

/// Why an option was excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exclusion {
    /// No registered wallet can pay with this scheme on this network.
    NoWallet,
    /// Scheme not in `allow_schemes`.
    SchemeNotAllowed,
    /// Network not in `allow_networks`.
    NetworkNotAllowed,
    /// Network in `deny_networks`.
    NetworkDenied,
    /// Network of the wrong class (or unknown class).
    NetworkClass {
        /// The class the policy requires.
        required: NetworkClass,
    },
    /// Asset not in `allow_assets`.
    AssetNotAllowed,
    /// Recipient not in `allow_pay_to`.
    PayToNotAllowed,
    /// Recipient in `deny_pay_to`.
    PayToDenied,
    /// Above a per-call ceiling.
    AboveCap(String),
    /// The offer's `maxTimeoutSeconds` exceeds the policy's cap.
    TimeoutTooLong {
        /// The offer's `maxTimeoutSeconds`.
        offered: u64,
        /// The policy's cap.
        cap: u64,
    },
    /// Refused by the budget.
    Budget(String),
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoWallet => write!(f, "no wallet for this scheme and network"),
            Self::SchemeNotAllowed => write!(f, "scheme not allowed"),
            Self::NetworkNotAllowed => write!(f, "network not in the allow list"),
            Self::NetworkDenied => write!(f, "network denied"),
            Self::NetworkClass { required } => write!(f, "not a {required:?} network"),
            Self::AssetNotAllowed => write!(f, "asset not in the allow list"),
            Self::PayToNotAllowed => write!(f, "recipient not in the allow list"),
            Self::PayToDenied => write!(f, "recipient denied"),
            Self::AboveCap(detail) => write!(f, "above the per-call maximum ({detail})"),
            Self::TimeoutTooLong { offered, cap } => write!(
                f,
                "maxTimeoutSeconds {offered} exceeds the cap of {cap} s \
                 (the signed authorization would stay valid that long)"
            ),
            Self::Budget(detail) => write!(f, "budget: {detail}"),
        }
    }
}

/// The verdict on one offered option.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Index in the server's `accepts`.
    pub index: usize,
    /// The option.
    pub requirements: PaymentRequirements,
    /// Why it was excluded, if it was.
    pub excluded: Option<Exclusion>,
}

/// The outcome of selection: the chosen option (if any) and why every other
/// option lost.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Index of the chosen option in `accepts`.
    pub chosen: Option<usize>,
    /// One verdict per offered option.
    pub verdicts: Vec<Verdict>,
}

impl Selection {
    /// The chosen requirements.
    pub fn chosen(&self) -> Option<&PaymentRequirements> {
        self.chosen.map(|i| &self.verdicts[i].requirements)
    }

    /// A one-line-per-option explanation.
    pub fn explain(&self) -> String {
        self.verdicts
            .iter()
            .map(|v| {
                let what = format!(
                    "#{} {} {} {} of {} to {}",
                    v.index,
                    v.requirements.scheme,
                    v.requirements.network,
                    v.requirements.amount,
                    v.requirements.asset,
                    v.requirements.pay_to
                );
                match (&v.excluded, Some(v.index) == self.chosen) {
                    (_, true) => format!("{what}: chosen"),
                    (Some(reason), _) => format!("{what}: excluded: {reason}"),
                    (None, false) => format!("{what}: eligible but not the cheapest"),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An amount as a fraction `amount / 10^decimals`, comparable exactly.
#[derive(Debug, Clone, Copy)]
struct Value {
    amount: U256,
    decimals: u8,
}

impl Value {
    fn cmp(&self, other: &Value) -> Ordering {
        // a / 10^da  vs  b / 10^db   <=>   a * 10^db  vs  b * 10^da
        let scale = |v: U256, d: u8| v.checked_mul(U256::from(10u8).pow(U256::from(d)));
        match (
            scale(self.amount, other.decimals),
            scale(other.amount, self.decimals),
        ) {
            (Some(left), Some(right)) => left.cmp(&right),
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (None, None) => self.amount.cmp(&other.amount),
        }
    }
}

fn matches_any(patterns: &[ChainIdPattern], network: &ChainId) -> bool {
    patterns.iter().any(|p| p.matches(network))
}

fn same_address(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Why `requirements` is above the per-call maximum `cap`, if it is.
fn cap_exclusion(
    cap: &PriceCap,
    requirements: &PaymentRequirements,
    info: Option<&AssetInfo>,
) -> Option<Exclusion> {
    match cap {
        PriceCap::Usd(max) => {
            let Some(info) = info.filter(|i| i.usd_stable) else {
                return Some(Exclusion::AboveCap(format!(
                    "a {max} cap applies and the asset is not a known USD stablecoin"
                )));
            };
            match max.to_atomic(info.decimals) {
                Ok(limit) if requirements.amount <= limit => None,
                Ok(_) => Some(Exclusion::AboveCap(format!(
                    "{} {} > {max}",
                    requirements.amount.to_decimal_string(info.decimals),
                    info.symbol
                ))),
                // A cap more precise than the asset: compare by truncation.
                Err(_) => Some(Exclusion::AboveCap(format!(
                    "cap {max} is finer than the asset"
                ))),
            }
        }
        PriceCap::Atomic {
            network,
            asset,
            max,
        } => (network == &requirements.network
            && same_address(asset, &requirements.asset)
            && requirements.amount > *max)
            .then(|| Exclusion::AboveCap(format!("{} > {max} atomic units", requirements.amount))),
    }
}

impl SelectionPolicy {
    /// The first rule of the policy `requirements` breaks, if any, checked
    /// in a fixed order so the reason given is stable.
    fn exclusion(
        &self,
        requirements: &PaymentRequirements,
        info: Option<&AssetInfo>,
    ) -> Option<Exclusion> {
        self.scheme_exclusion(requirements)
            .or_else(|| self.network_exclusion(&requirements.network))
            .or_else(|| self.timeout_exclusion(requirements))
            .or_else(|| self.asset_exclusion(requirements))
            .or_else(|| self.recipient_exclusion(requirements))
            .or_else(|| {
                self.max_per_call
                    .iter()
                    .find_map(|cap| cap_exclusion(cap, requirements, info))
            })
    }

    fn scheme_exclusion(&self, requirements: &PaymentRequirements) -> Option<Exclusion> {
        (!self.allow_schemes.is_empty()
            && !self.allow_schemes.iter().any(|s| s == &requirements.scheme))
        .then_some(Exclusion::SchemeNotAllowed)
    }

    fn network_exclusion(&self, network: &ChainId) -> Option<Exclusion> {
        if !self.allow_networks.is_empty() && !matches_any(&self.allow_networks, network) {
            return Some(Exclusion::NetworkNotAllowed);
        }
        if matches_any(&self.deny_networks, network) {
            return Some(Exclusion::NetworkDenied);
        }
        let required = self.network_class?;
        let class = self.networks.is_testnet(network).map(|testnet| {
            if testnet {
                NetworkClass::Testnet
            } else {
                NetworkClass::Mainnet
            }
        });
        (class != Some(required)).then_some(Exclusion::NetworkClass { required })
    }

    fn timeout_exclusion(&self, requirements: &PaymentRequirements) -> Option<Exclusion> {
        (requirements.max_timeout_seconds > self.max_timeout_seconds).then_some(
            Exclusion::TimeoutTooLong {
                offered: requirements.max_timeout_seconds,
                cap: self.max_timeout_seconds,
            },
        )
    }

    fn asset_exclusion(&self, requirements: &PaymentRequirements) -> Option<Exclusion> {
        (!self.allow_assets.is_empty()
            && !self.allow_assets.iter().any(|(pattern, asset)| {
                pattern.matches(&requirements.network) && same_address(asset, &requirements.asset)
            }))
        .then_some(Exclusion::AssetNotAllowed)
    }

    fn recipient_exclusion(&self, requirements: &PaymentRequirements) -> Option<Exclusion> {
        let listed = |list: &[String]| list.iter().any(|p| same_address(p, &requirements.pay_to));
        if !self.allow_pay_to.is_empty() && !listed(&self.allow_pay_to) {
            return Some(Exclusion::PayToNotAllowed);
        }
        listed(&self.deny_pay_to).then_some(Exclusion::PayToDenied)
    }

    /// Whether `scheme` charges by usage ([`Self::usage_based_schemes`]).
    pub fn is_usage_based(&self, scheme: &str) -> bool {
        self.usage_based_schemes.iter().any(|s| s == scheme)
    }

    /// The amount an option is compared by: its `amount`, or for a
    /// usage-based option its expected amount when it states one.
    fn comparable_amount(&self, requirements: &PaymentRequirements) -> AtomicAmount {
        if self.is_usage_based(&requirements.scheme) {
            requirements
                .expected_amount()
                .unwrap_or(requirements.amount)
        } else {
            requirements.amount
        }
    }

    fn preference_rank(&self, network: &ChainId) -> usize {
        self.prefer_networks
            .iter()
            .position(|p| p.matches(network))
            .unwrap_or(self.prefer_networks.len())
    }

    /// Applies the policy to `accepts`. `can_pay` tells whether a wallet is
    /// registered for an option; `extra_check` adds caller rules (budgets).
    pub fn select(
        &self,
        accepts: &[PaymentRequirements],
        catalog: &dyn AssetCatalog,
        can_pay: impl Fn(&PaymentRequirements) -> bool,
        extra_check: impl Fn(&PaymentRequirements, Option<&AssetInfo>) -> Option<Exclusion>,
    ) -> Selection {
        let mut verdicts = Vec::with_capacity(accepts.len());
        let mut eligible: Vec<(usize, Option<Value>, usize)> = Vec::new();
        for (index, requirements) in accepts.iter().enumerate() {
            let info = catalog.asset_info(&requirements.network, &requirements.asset);
            let excluded = if can_pay(requirements) {
                self.exclusion(requirements, info.as_ref())
                    .or_else(|| extra_check(requirements, info.as_ref()))
            } else {
                Some(Exclusion::NoWallet)
            };
            if excluded.is_none() {
                let value = info.as_ref().map(|i| Value {
                    amount: self.comparable_amount(requirements).as_u256(),
                    decimals: i.decimals,
                });
                eligible.push((index, value, self.preference_rank(&requirements.network)));
            }
            verdicts.push(Verdict {
                index,
                requirements: requirements.clone(),
                excluded,
            });
        }
        // Cheapest by value; options of unknown value rank after known ones;
        // ties by network preference, then by the server's order.
        eligible.sort_by(|a, b| {
            let by_value = match (&a.1, &b.1) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            by_value.then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0))
        });
        Selection {
            chosen: eligible.first().map(|e| e.0),
            verdicts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_core::NetworkInfo;

    /// The few networks these tests name (plugins contribute them in real use).
    fn names() -> NetworkDirectory {
        let network = |name: &'static str, id: &str, class| {
            NetworkInfo::new(ChainId::parse(id).unwrap(), name, class)
        };
        let mut names = NetworkDirectory::new();
        names.extend([
            network("base", "eip155:8453", NetworkClass::Mainnet),
            network("base-sepolia", "eip155:84532", NetworkClass::Testnet),
            network("polygon", "eip155:137", NetworkClass::Mainnet),
            network(
                "solana",
                "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
                NetworkClass::Mainnet,
            ),
        ]);
        names
    }

    fn net(name: &str) -> ChainId {
        names().resolve(name).unwrap()
    }

    fn option(network: &str, asset: &str, amount: u64, pay_to: &str) -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: net(network),
            amount: amount.into(),
            asset: asset.into(),
            pay_to: pay_to.into(),
            max_timeout_seconds: 60,
            extra: None,
        }
    }

    fn catalog() -> StaticCatalog {
        let usdc = |d| AssetInfo {
            symbol: "USDC".into(),
            decimals: d,
            usd_stable: true,
        };
        StaticCatalog::default()
            .with(net("base"), "0xusdc-base", usdc(6))
            .with(net("base-sepolia"), "0xusdc-sep", usdc(6))
            .with(net("solana"), "USDC-SOL", usdc(6))
            .with(
                net("polygon"),
                "0xdai",
                AssetInfo {
                    symbol: "DAI".into(),
                    decimals: 18,
                    usd_stable: true,
                },
            )
    }

    fn any(_: &PaymentRequirements) -> bool {
        true
    }

    fn none(_: &PaymentRequirements, _: Option<&AssetInfo>) -> Option<Exclusion> {
        None
    }

    #[test]
    fn picks_the_cheapest_by_value_not_the_first() {
        // Field lesson 19: 90x more expensive first option.
        let accepts = vec![
            option("base", "0xusdc-base", 900_000, "0xa"),
            option("polygon", "0xdai", 10_000_000_000_000_000, "0xa"), // 0.01 DAI
            option("solana", "USDC-SOL", 20_000, "0xa"),
        ];
        let selection = SelectionPolicy::default().select(&accepts, &catalog(), any, none);
        assert_eq!(selection.chosen, Some(1), "{}", selection.explain());
    }

    #[test]
    fn preference_breaks_ties() {
        let accepts = vec![
            option("base", "0xusdc-base", 10_000, "0xa"),
            option("solana", "USDC-SOL", 10_000, "0xa"),
        ];
        let policy = SelectionPolicy {
            prefer_networks: vec![names().pattern("solana:*").unwrap()],
            ..Default::default()
        };
        assert_eq!(
            policy.select(&accepts, &catalog(), any, none).chosen,
            Some(1)
        );
        assert_eq!(
            SelectionPolicy::default()
                .select(&accepts, &catalog(), any, none)
                .chosen,
            Some(0)
        );
    }

    #[test]
    fn rules_exclude_and_explain() {
        let accepts = vec![
            option("base", "0xusdc-base", 10_000, "0xa"),
            option("base-sepolia", "0xusdc-sep", 10_000, "0xevil"),
            option("base-sepolia", "0xusdc-sep", 100_000, "0xa"),
            option("base-sepolia", "0xother", 1, "0xa"),
        ];
        let policy = SelectionPolicy {
            network_class: Some(NetworkClass::Testnet),
            networks: names(),
            deny_pay_to: vec!["0xEVIL".into()],
            allow_assets: vec![(names().pattern("eip155:*").unwrap(), "0xUSDC-SEP".into())],
            max_per_call: vec![PriceCap::Usd(Money::parse("$0.05").unwrap())],
            ..Default::default()
        };
        let selection = policy.select(&accepts, &catalog(), any, none);
        assert_eq!(selection.chosen, None);
        let reasons: Vec<_> = selection
            .verdicts
            .iter()
            .map(|v| v.excluded.clone())
            .collect();
        assert_eq!(
            reasons[0],
            Some(Exclusion::NetworkClass {
                required: NetworkClass::Testnet
            })
        );
        assert_eq!(reasons[1], Some(Exclusion::PayToDenied));
        assert!(
            matches!(reasons[2], Some(Exclusion::AboveCap(_))),
            "{:?}",
            reasons[2]
        );
        assert_eq!(reasons[3], Some(Exclusion::AssetNotAllowed));
        let text = selection.explain();
        assert!(
            text.contains("recipient denied") && text.contains("above the per-call maximum"),
            "{text}"
        );
    }

    #[test]
    fn cap_applies_to_the_selected_option() {
        // Field lesson 20: the cap is checked on every option, so the chosen
        // one is always within it, whatever the server lists first.
        let accepts = vec![
            option("base", "0xusdc-base", 10_000, "0xa"),
            option("base", "0xusdc-base", 60_000, "0xa"),
        ];
        let policy = SelectionPolicy {
            max_per_call: vec![PriceCap::Usd(Money::parse("$0.05").unwrap())],
            ..Default::default()
        };
        let selection = policy.select(&accepts[1..], &catalog(), any, none);
        assert_eq!(selection.chosen, None);
        assert_eq!(
            policy.select(&accepts, &catalog(), any, none).chosen,
            Some(0)
        );

        // The first option is within the cap but cannot be paid (no Solana
        // wallet); the one that would be selected is above it. A cap judged
        // on the first advertised option would let it through.
        let accepts = vec![
            option("solana", "USDC-SOL", 10_000, "0xa"),
            option("base", "0xusdc-base", 60_000, "0xa"),
        ];
        let evm_only = |r: &PaymentRequirements| r.network.namespace() == "eip155";
        let selection = policy.select(&accepts, &catalog(), evm_only, none);
        assert_eq!(selection.chosen, None, "{}", selection.explain());
        assert!(
            matches!(selection.verdicts[1].excluded, Some(Exclusion::AboveCap(_))),
            "{}",
            selection.explain()
        );
        // The first option is above the cap and the second within it: the
        // second is paid, not everything refused.
        let accepts = vec![
            option("base", "0xusdc-base", 60_000, "0xa"),
            option("base", "0xusdc-base", 40_000, "0xa"),
        ];
        let selection = policy.select(&accepts, &catalog(), any, none);
        assert_eq!(selection.chosen, Some(1), "{}", selection.explain());
    }

    #[test]
    fn allow_pay_to_excludes_every_other_recipient() {
        // Field lesson 22: a modified 402 naming another payTo is not paid,
        // even when it is the cheapest option.
        let accepts = vec![
            option("base", "0xusdc-base", 1_000, "0xEvil"),
            option("base", "0xusdc-base", 10_000, "0xA"),
        ];
        let policy = SelectionPolicy {
            allow_pay_to: vec!["0xa".into()],
            ..Default::default()
        };
        let selection = policy.select(&accepts, &catalog(), any, none);
        assert_eq!(selection.chosen, Some(1), "{}", selection.explain());
        assert_eq!(
            selection.verdicts[0].excluded,
            Some(Exclusion::PayToNotAllowed)
        );
        assert!(
            selection
                .explain()
                .contains("recipient not in the allow list"),
            "{}",
            selection.explain()
        );
        // No offered recipient on the list: nothing is paid.
        let strict = SelectionPolicy {
            allow_pay_to: vec!["0xb".into()],
            ..Default::default()
        };
        let selection = strict.select(&accepts, &catalog(), any, none);
        assert_eq!(selection.chosen, None);
        assert!(
            selection
                .verdicts
                .iter()
                .all(|v| v.excluded == Some(Exclusion::PayToNotAllowed))
        );
    }

    #[test]
    fn allow_networks_excludes_every_other_network() {
        // Field lesson 22: an option on a network outside the allow list is
        // not paid, even when it is the cheapest.
        let accepts = vec![
            option("solana", "USDC-SOL", 1_000, "0xa"),
            option("base-sepolia", "0xusdc-sep", 2_000, "0xa"),
            option("base", "0xusdc-base", 10_000, "0xa"),
        ];
        let policy = SelectionPolicy {
            allow_networks: vec![ChainIdPattern::parse("eip155:8453").unwrap()],
            ..Default::default()
        };
        let selection = policy.select(&accepts, &catalog(), any, none);
        assert_eq!(selection.chosen, Some(2), "{}", selection.explain());
        for verdict in &selection.verdicts[..2] {
            assert_eq!(verdict.excluded, Some(Exclusion::NetworkNotAllowed));
        }
        // A wildcard admits its namespace only.
        let evm = SelectionPolicy {
            allow_networks: vec![ChainIdPattern::parse("eip155:*").unwrap()],
            ..Default::default()
        };
        let selection = evm.select(&accepts, &catalog(), any, none);
        assert_eq!(selection.chosen, Some(1), "{}", selection.explain());
        assert_eq!(
            selection.verdicts[0].excluded,
            Some(Exclusion::NetworkNotAllowed)
        );
    }

    #[test]
    fn unknown_assets_rank_last_and_fail_usd_caps() {
        let accepts = vec![
            option("base", "0xmystery", 1, "0xa"),
            option("base", "0xusdc-base", 10_000, "0xa"),
        ];
        assert_eq!(
            SelectionPolicy::default()
                .select(&accepts, &catalog(), any, none)
                .chosen,
            Some(1)
        );
        let capped = SelectionPolicy {
            max_per_call: vec![PriceCap::Usd(Money::parse("$1").unwrap())],
            ..Default::default()
        };
        let selection = capped.select(&accepts[..1], &catalog(), any, none);
        assert_eq!(selection.chosen, None);
    }

    #[test]
    fn caps_max_timeout_seconds_at_300_by_default() {
        let mut long = option("base", "0xusdc-base", 10_000, "0xa");
        long.max_timeout_seconds = 301;
        let mut limit = long.clone();
        limit.max_timeout_seconds = 300;
        let policy = SelectionPolicy::default();
        let selection = policy.select(&[long.clone()], &catalog(), any, none);
        assert_eq!(selection.chosen, None);
        assert_eq!(
            selection.verdicts[0].excluded,
            Some(Exclusion::TimeoutTooLong {
                offered: 301,
                cap: 300
            })
        );
        assert!(
            selection
                .explain()
                .contains("maxTimeoutSeconds 301 exceeds the cap of 300 s"),
            "{}",
            selection.explain()
        );
        assert_eq!(
            policy.select(&[limit], &catalog(), any, none).chosen,
            Some(0)
        );
        let relaxed = SelectionPolicy {
            max_timeout_seconds: 3600,
            ..Default::default()
        };
        assert_eq!(
            relaxed.select(&[long], &catalog(), any, none).chosen,
            Some(0)
        );
    }

    #[test]
    fn wallet_availability_is_a_rule() {
        let accepts = vec![
            option("solana", "USDC-SOL", 1, "0xa"),
            option("base", "0xusdc-base", 10_000, "0xa"),
        ];
        let evm_only = |r: &PaymentRequirements| r.network.namespace() == "eip155";
        let selection = SelectionPolicy::default().select(&accepts, &catalog(), evm_only, none);
        assert_eq!(selection.chosen, Some(1));
        assert_eq!(selection.verdicts[0].excluded, Some(Exclusion::NoWallet));
    }

    #[test]
    fn a_usage_based_option_counts_at_its_expected_amount_or_its_maximum() {
        let upto = |expected: Option<&str>| {
            let mut upto = option("base", "0xusdc-base", 10_000, "0xa");
            upto.scheme = "upto".into();
            upto.extra = expected.map(|e| {
                let mut extra = paywire_core::JsonObject::new();
                extra.insert("expectedAmount".into(), e.into());
                extra
            });
            upto
        };
        let exact = option("solana", "USDC-SOL", 5_000, "0xa");
        let policy = SelectionPolicy::default();
        let pick = |accepts: &[PaymentRequirements]| policy.select(accepts, &catalog(), any, none);
        // Expected to cost 1000: cheaper than the exact 5000.
        assert_eq!(pick(&[exact.clone(), upto(Some("1000"))]).chosen, Some(1));
        // No (or an unusable) expectation: its maximum, 10000, loses.
        for expected in [None, Some("20000"), Some("01000"), Some("-1")] {
            let selection = pick(&[exact.clone(), upto(expected)]);
            assert_eq!(selection.chosen, Some(0), "{expected:?}");
        }
        // An exact option's expectedAmount means nothing.
        let mut bogus = option("base", "0xusdc-base", 10_000, "0xa");
        bogus.extra = upto(Some("1")).extra;
        assert_eq!(pick(&[exact.clone(), bogus]).chosen, Some(0));
        // Unless the client is told the scheme charges by usage.
        let mut told = upto(Some("1000"));
        told.scheme = "metered".into();
        let metered = SelectionPolicy {
            usage_based_schemes: vec!["metered".into()],
            ..SelectionPolicy::default()
        };
        let selection = metered.select(&[exact.clone(), told], &catalog(), any, none);
        assert_eq!(selection.chosen, Some(1));
        // Ceilings apply to the maximum, whatever is expected.
        let capped = SelectionPolicy {
            max_per_call: vec![PriceCap::Usd(Money::parse("$0.005").unwrap())],
            ..SelectionPolicy::default()
        };
        let selection = capped.select(&[upto(Some("1000"))], &catalog(), any, none);
        assert_eq!(selection.chosen, None, "{}", selection.explain());
    }
}
