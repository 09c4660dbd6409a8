//! CAIP-2 chain identifiers (`namespace:reference`) and patterns over them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a CAIP-2 chain id or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainIdError {
    /// There is no `:` separating namespace and reference.
    #[error("chain id {0:?} is not of the form namespace:reference")]
    MissingSeparator(String),
    /// The namespace is not 3–8 characters of `[-a-z0-9]`.
    #[error("chain id {0:?} has an invalid namespace (expected 3-8 chars of [-a-z0-9])")]
    InvalidNamespace(String),
    /// The reference is not 1–32 characters of `[-_a-zA-Z0-9]`.
    #[error("chain id {0:?} has an invalid reference (expected 1-32 chars of [-_a-zA-Z0-9])")]
    InvalidReference(String),
    /// A pattern could not be parsed.
    #[error(
        "chain id pattern {0:?} is invalid (expected `ns:*`, `ns:ref` or a comma-separated set)"
    )]
    InvalidPattern(String),
}

/// A CAIP-2 chain identifier such as `eip155:8453` or
/// `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp`.
///
/// Construction validates the CAIP-2 grammar, so holding a `ChainId` means the
/// value is well formed. Equality is exact (CAIP-2 is case sensitive).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId {
    text: Box<str>,
    separator: u8,
}

fn valid_namespace(ns: &str) -> bool {
    (3..=8).contains(&ns.len())
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_reference(reference: &str) -> bool {
    (1..=32).contains(&reference.len())
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ChainId {
    /// Parses and validates a CAIP-2 identifier. Does not resolve friendly
    /// names; see [`ChainId::from_name_or_caip2`] for that.
    pub fn parse(text: &str) -> Result<Self, ChainIdError> {
        let Some(separator) = text.find(':') else {
            return Err(ChainIdError::MissingSeparator(text.to_owned()));
        };
        let (namespace, reference) = (&text[..separator], &text[separator + 1..]);
        if !valid_namespace(namespace) {
            return Err(ChainIdError::InvalidNamespace(text.to_owned()));
        }
        if !valid_reference(reference) {
            return Err(ChainIdError::InvalidReference(text.to_owned()));
        }
        Ok(Self {
            text: text.into(),
            // The namespace is at most 8 bytes long, so the index fits.
            separator: separator as u8,
        })
    }

    /// Builds a chain id from its two halves, validating both.
    pub fn new(namespace: &str, reference: &str) -> Result<Self, ChainIdError> {
        Self::parse(&format!("{namespace}:{reference}"))
    }

    /// An `eip155` chain id for a numeric EVM chain id.
    pub fn eip155(chain_id: u64) -> Self {
        let text = format!("eip155:{chain_id}");
        Self {
            text: text.into(),
            separator: 6,
        }
    }

    /// Accepts either a CAIP-2 id or a well-known friendly name such as
    /// `base`, `base-sepolia`, `solana` or `solana-devnet`.
    pub fn from_name_or_caip2(text: &str) -> Result<Self, ChainIdError> {
        match known_network(text) {
            Some(caip2) => Self::parse(caip2),
            None => Self::parse(text),
        }
    }

    /// The namespace, e.g. `eip155` or `solana`.
    pub fn namespace(&self) -> &str {
        &self.text[..self.separator as usize]
    }

    /// The reference, e.g. `8453`.
    pub fn reference(&self) -> &str {
        &self.text[self.separator as usize + 1..]
    }

    /// The full `namespace:reference` text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The numeric chain id when this is an `eip155` chain.
    pub fn eip155_id(&self) -> Option<u64> {
        (self.namespace() == "eip155")
            .then(|| self.reference().parse().ok())
            .flatten()
    }

    /// The friendly name of a well-known network, if this is one.
    pub fn known_name(&self) -> Option<&'static str> {
        KNOWN_NETWORKS
            .iter()
            .find(|(_, caip2, _)| *caip2 == self.as_str())
            .map(|(name, _, _)| *name)
    }

    /// Whether this is a well-known test network (`Some(true)`), a well-known
    /// production network (`Some(false)`), or unknown (`None`).
    pub fn is_testnet(&self) -> Option<bool> {
        KNOWN_NETWORKS
            .iter()
            .find(|(_, caip2, _)| *caip2 == self.as_str())
            .map(|(_, _, class)| *class == NetworkClass::Testnet)
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.text)
    }
}

impl FromStr for ChainId {
    type Err = ChainIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for ChainId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl Serialize for ChainId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether a network carries real value or is for testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkClass {
    /// Production network with real value.
    Mainnet,
    /// Test network or local development chain.
    Testnet,
}

/// Friendly names understood in configuration and on the command line, with
/// their CAIP-2 ids. Kept as data so that adding one is a one-line change.
pub const KNOWN_NETWORKS: &[(&str, &str, NetworkClass)] = &[
    ("base", "eip155:8453", NetworkClass::Mainnet),
    ("base-sepolia", "eip155:84532", NetworkClass::Testnet),
    ("ethereum", "eip155:1", NetworkClass::Mainnet),
    ("sepolia", "eip155:11155111", NetworkClass::Testnet),
    ("polygon", "eip155:137", NetworkClass::Mainnet),
    ("polygon-amoy", "eip155:80002", NetworkClass::Testnet),
    ("arbitrum", "eip155:42161", NetworkClass::Mainnet),
    ("arbitrum-sepolia", "eip155:421614", NetworkClass::Testnet),
    ("optimism", "eip155:10", NetworkClass::Mainnet),
    ("optimism-sepolia", "eip155:11155420", NetworkClass::Testnet),
    ("avalanche", "eip155:43114", NetworkClass::Mainnet),
    ("avalanche-fuji", "eip155:43113", NetworkClass::Testnet),
    ("anvil", "eip155:31337", NetworkClass::Testnet),
    (
        "solana",
        "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
        NetworkClass::Mainnet,
    ),
    (
        "solana-devnet",
        "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
        NetworkClass::Testnet,
    ),
];

/// Resolves a friendly network name (case-insensitive) to its CAIP-2 id.
pub fn known_network(name: &str) -> Option<&'static str> {
    KNOWN_NETWORKS
        .iter()
        .find(|(known, _, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, caip2, _)| *caip2)
}

/// A set of chains: a whole namespace (`eip155:*`), one exact chain, or a
/// union of patterns (written comma-separated: `eip155:8453,eip155:84532`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ChainIdPattern {
    /// Every chain of a namespace, written `namespace:*`.
    Namespace(Box<str>),
    /// Exactly one chain.
    Exact(ChainId),
    /// Any chain matching one of the patterns.
    Set(Vec<ChainIdPattern>),
}

impl ChainIdPattern {
    /// Parses `ns:*`, a CAIP-2 id or friendly name, or a comma-separated set.
    pub fn parse(text: &str) -> Result<Self, ChainIdError> {
        if text.contains(',') {
            let parts = text
                .split(',')
                .map(|part| Self::parse_single(part.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::Set(parts));
        }
        Self::parse_single(text)
    }

    fn parse_single(text: &str) -> Result<Self, ChainIdError> {
        if let Some(namespace) = text.strip_suffix(":*") {
            if valid_namespace(namespace) {
                return Ok(Self::Namespace(namespace.into()));
            }
            return Err(ChainIdError::InvalidPattern(text.to_owned()));
        }
        ChainId::from_name_or_caip2(text).map(Self::Exact)
    }

    /// A pattern matching every chain of `namespace`.
    pub fn namespace(namespace: &str) -> Result<Self, ChainIdError> {
        if valid_namespace(namespace) {
            Ok(Self::Namespace(namespace.into()))
        } else {
            Err(ChainIdError::InvalidPattern(format!("{namespace}:*")))
        }
    }

    /// Whether `chain` belongs to this pattern.
    pub fn matches(&self, chain: &ChainId) -> bool {
        match self {
            Self::Namespace(namespace) => chain.namespace() == &**namespace,
            Self::Exact(exact) => exact == chain,
            Self::Set(patterns) => patterns.iter().any(|p| p.matches(chain)),
        }
    }

    /// How specific the pattern is; registries prefer the most specific match.
    pub fn specificity(&self) -> u8 {
        match self {
            Self::Namespace(_) => 0,
            Self::Set(_) => 1,
            Self::Exact(_) => 2,
        }
    }
}

impl From<ChainId> for ChainIdPattern {
    fn from(chain: ChainId) -> Self {
        Self::Exact(chain)
    }
}

impl fmt::Display for ChainIdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Namespace(namespace) => write!(f, "{namespace}:*"),
            Self::Exact(chain) => write!(f, "{chain}"),
            Self::Set(patterns) => {
                for (i, pattern) in patterns.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{pattern}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for ChainIdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainIdPattern({self})")
    }
}

impl FromStr for ChainIdPattern {
    type Err = ChainIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ChainIdPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChainIdPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_ids() {
        let id = ChainId::parse("eip155:8453").unwrap();
        assert_eq!(id.namespace(), "eip155");
        assert_eq!(id.reference(), "8453");
        assert_eq!(id.eip155_id(), Some(8453));
        assert_eq!(id, ChainId::eip155(8453));
        let sol = ChainId::parse("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp").unwrap();
        assert_eq!(sol.namespace(), "solana");
        assert_eq!(sol.eip155_id(), None);
        assert_eq!(sol.known_name(), Some("solana"));
        assert!(
            ChainId::parse("ach:us").is_ok(),
            "non-chain rails use CAIP-2 too"
        );
        assert!(ChainId::parse("sepa:eu").is_ok());
    }

    #[test]
    fn rejects_invalid_ids() {
        for bad in [
            "",
            "eip155",
            "eip155:",
            ":1",
            "EIP155:1",
            "ab:1",
            "abcdefghi:1",
            "eip155:1:2",
            "eip155:a b",
            "eip155:123456789012345678901234567890123",
            "eip 155:1",
        ] {
            assert!(ChainId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn resolves_friendly_names() {
        assert_eq!(
            ChainId::from_name_or_caip2("base").unwrap().as_str(),
            "eip155:8453"
        );
        assert_eq!(
            ChainId::from_name_or_caip2("Base-Sepolia")
                .unwrap()
                .as_str(),
            "eip155:84532"
        );
        assert_eq!(
            ChainId::from_name_or_caip2("solana-devnet")
                .unwrap()
                .as_str(),
            "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
        );
        assert!(ChainId::from_name_or_caip2("not-a-chain").is_err());
        assert_eq!(
            ChainId::eip155(84532).is_testnet(),
            Some(true),
            "base sepolia is a testnet"
        );
        assert_eq!(ChainId::eip155(8453).is_testnet(), Some(false));
        assert_eq!(ChainId::eip155(999_999).is_testnet(), None);
    }

    #[test]
    fn patterns_match() {
        let all_evm = ChainIdPattern::parse("eip155:*").unwrap();
        assert!(all_evm.matches(&ChainId::eip155(1)));
        assert!(!all_evm.matches(&ChainId::parse("solana:abc").unwrap()));
        let exact = ChainIdPattern::parse("base").unwrap();
        assert!(exact.matches(&ChainId::eip155(8453)));
        assert!(!exact.matches(&ChainId::eip155(84532)));
        let set = ChainIdPattern::parse("eip155:8453, solana:*").unwrap();
        assert!(set.matches(&ChainId::eip155(8453)));
        assert!(set.matches(&ChainId::parse("solana:xyz").unwrap()));
        assert!(!set.matches(&ChainId::eip155(1)));
        assert_eq!(set.to_string(), "eip155:8453,solana:*");
        assert!(ChainIdPattern::parse("E:*").is_err());
        assert!(exact.specificity() > all_evm.specificity());
    }

    #[test]
    fn serde_round_trip_and_rejection() {
        let id: ChainId = serde_json::from_str("\"eip155:84532\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"eip155:84532\"");
        assert!(serde_json::from_str::<ChainId>("\"base\"").is_err());
        let pattern: ChainIdPattern = serde_json::from_str("\"eip155:*\"").unwrap();
        assert_eq!(serde_json::to_string(&pattern).unwrap(), "\"eip155:*\"");
    }
}
