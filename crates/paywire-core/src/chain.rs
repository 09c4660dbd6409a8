//! CAIP-2 chain identifiers (`namespace:reference`) and patterns over them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a CAIP-2 chain id or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// Parses and validates a CAIP-2 identifier. Friendly names (`base`) are
    /// resolved by a [`crate::NetworkDirectory`], which chain plugins fill.
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
            // A valid namespace is at most 8 bytes long, so the index fits.
            separator: u8::try_from(separator)
                .map_err(|_| ChainIdError::InvalidNamespace(text.to_owned()))?,
        })
    }

    /// Builds a chain id from its two halves, validating both.
    pub fn new(namespace: &str, reference: &str) -> Result<Self, ChainIdError> {
        Self::parse(&format!("{namespace}:{reference}"))
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

/// A set of chains: a whole namespace (`eip155:*`), one exact chain, or a
/// union of patterns (written comma-separated: `eip155:8453,eip155:84532`).
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChainIdPattern {
    /// Every chain of a namespace, written `namespace:*`.
    Namespace(Box<str>),
    /// Exactly one chain.
    Exact(ChainId),
    /// Any chain matching one of the patterns.
    Set(Vec<ChainIdPattern>),
    /// Every chain with this reference, whatever its namespace, written
    /// `*:reference`: a rail whose networks are named by their operators
    /// (the `credit` binding's `<label>:credit`).
    Reference(Box<str>),
}

impl ChainIdPattern {
    /// Parses `ns:*`, a CAIP-2 id, or a comma-separated set of them (friendly
    /// names: [`crate::NetworkDirectory::pattern`]).
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
        if let Some(reference) = text.strip_prefix("*:") {
            return Self::reference(reference);
        }
        if let Some(namespace) = text.strip_suffix(":*") {
            if valid_namespace(namespace) {
                return Ok(Self::Namespace(namespace.into()));
            }
            return Err(ChainIdError::InvalidPattern(text.to_owned()));
        }
        ChainId::parse(text).map(Self::Exact)
    }

    /// Parses one entry of a set (`ns:*` or a chain id) with `resolve` for
    /// the chain ids (friendly names, for a directory).
    pub(crate) fn parse_with(
        text: &str,
        resolve: impl Fn(&str) -> Result<ChainId, ChainIdError>,
    ) -> Result<Self, ChainIdError> {
        let single = |part: &str| match (part.strip_prefix("*:"), part.strip_suffix(":*")) {
            (Some(reference), _) => Self::reference(reference),
            (None, Some(namespace)) => Self::namespace(namespace),
            (None, None) => resolve(part).map(Self::Exact),
        };
        if text.contains(',') {
            let parts = text
                .split(',')
                .map(|part| single(part.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::Set(parts));
        }
        single(text)
    }

    /// A pattern matching every chain of `namespace`.
    pub fn namespace(namespace: &str) -> Result<Self, ChainIdError> {
        if valid_namespace(namespace) {
            Ok(Self::Namespace(namespace.into()))
        } else {
            Err(ChainIdError::InvalidPattern(format!("{namespace}:*")))
        }
    }

    /// A pattern matching every chain whose reference is `reference`, in
    /// any namespace (`*:credit`).
    pub fn reference(reference: &str) -> Result<Self, ChainIdError> {
        if valid_reference(reference) {
            Ok(Self::Reference(reference.into()))
        } else {
            Err(ChainIdError::InvalidPattern(format!("*:{reference}")))
        }
    }

    /// Whether `chain` belongs to this pattern.
    pub fn matches(&self, chain: &ChainId) -> bool {
        match self {
            Self::Namespace(namespace) => chain.namespace() == &**namespace,
            Self::Reference(reference) => chain.reference() == &**reference,
            Self::Exact(exact) => exact == chain,
            Self::Set(patterns) => patterns.iter().any(|p| p.matches(chain)),
        }
    }

    /// How specific the pattern is; registries prefer the most specific match.
    pub fn specificity(&self) -> u8 {
        match self {
            Self::Namespace(_) | Self::Reference(_) => 0,
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
            Self::Reference(reference) => write!(f, "*:{reference}"),
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
        assert_eq!(id, ChainId::new("eip155", "8453").unwrap());
        let sol = ChainId::parse("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp").unwrap();
        assert_eq!(sol.namespace(), "solana");
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
    fn patterns_match() {
        let evm = |reference: &str| ChainId::new("eip155", reference).unwrap();
        let all_evm = ChainIdPattern::parse("eip155:*").unwrap();
        assert!(all_evm.matches(&evm("1")));
        assert!(!all_evm.matches(&ChainId::parse("solana:abc").unwrap()));
        let exact = ChainIdPattern::parse("eip155:8453").unwrap();
        assert!(exact.matches(&evm("8453")));
        assert!(!exact.matches(&evm("84532")));
        assert!(
            ChainIdPattern::parse("base").is_err(),
            "names need a directory"
        );
        let set = ChainIdPattern::parse("eip155:8453, solana:*").unwrap();
        assert!(set.matches(&evm("8453")));
        assert!(set.matches(&ChainId::parse("solana:xyz").unwrap()));
        assert!(!set.matches(&evm("1")));
        assert_eq!(set.to_string(), "eip155:8453,solana:*");
        assert!(ChainIdPattern::parse("E:*").is_err());
        assert!(exact.specificity() > all_evm.specificity());
    }

    #[test]
    fn reference_patterns_match_any_namespace() {
        let credit = ChainIdPattern::parse("*:credit").unwrap();
        assert!(credit.matches(&ChainId::parse("acme:credit").unwrap()));
        assert!(credit.matches(&ChainId::parse("other:credit").unwrap()));
        assert!(!credit.matches(&ChainId::parse("acme:debit").unwrap()));
        assert_eq!(credit.to_string(), "*:credit");
        let set = ChainIdPattern::parse("*:credit,eip155:*").unwrap();
        assert!(set.matches(&ChainId::parse("eip155:1").unwrap()));
        for bad in ["*:", "*:a/b", "*:*"] {
            assert!(ChainIdPattern::parse(bad).is_err(), "{bad}");
        }
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
