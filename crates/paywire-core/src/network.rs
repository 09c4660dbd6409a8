//! Friendly network names (`base`, `solana-devnet`) and what is known about
//! each network, contributed by the chain plugins registered at start-up.
//!
//! The core knows no chain: a [`NetworkDirectory`] starts empty and each
//! plugin adds the networks it serves ([`crate::ChainPlugin::networks`]).

use std::borrow::Cow;

use crate::chain::{ChainId, ChainIdError, ChainIdPattern};

/// Whether a network carries real value or is for testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetworkClass {
    /// Production network with real value.
    Mainnet,
    /// Test network or local development chain.
    Testnet,
}

/// A network a plugin knows by name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkInfo {
    /// Its CAIP-2 id.
    pub id: ChainId,
    /// Its friendly name, as accepted in configuration and on the command
    /// line (compared ignoring ASCII case).
    pub name: Cow<'static, str>,
    /// Real value or test.
    pub class: NetworkClass,
}

impl NetworkInfo {
    /// A named network.
    pub fn new(id: ChainId, name: impl Into<Cow<'static, str>>, class: NetworkClass) -> Self {
        Self {
            id,
            name: name.into(),
            class,
        }
    }
}

/// The networks every registered plugin knows, by id and by friendly name.
#[derive(Debug, Clone, Default)]
pub struct NetworkDirectory {
    networks: Vec<NetworkInfo>,
}

impl NetworkDirectory {
    /// An empty directory: only CAIP-2 ids resolve.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds networks; a later entry with the same name or id takes
    /// precedence over an earlier one.
    pub fn extend(&mut self, networks: impl IntoIterator<Item = NetworkInfo>) -> &mut Self {
        for network in networks {
            self.networks.retain(|known| {
                known.id != network.id && !known.name.eq_ignore_ascii_case(&network.name)
            });
            self.networks.push(network);
        }
        self
    }

    /// Resolves a friendly name (ignoring ASCII case) or a CAIP-2 id.
    pub fn resolve(&self, text: &str) -> Result<ChainId, ChainIdError> {
        match self
            .networks
            .iter()
            .find(|known| known.name.eq_ignore_ascii_case(text))
        {
            Some(known) => Ok(known.id.clone()),
            None => ChainId::parse(text),
        }
    }

    /// Parses a pattern (`ns:*`, an id or friendly name, or a comma-separated
    /// set of them).
    pub fn pattern(&self, text: &str) -> Result<ChainIdPattern, ChainIdError> {
        ChainIdPattern::parse_with(text, |part| self.resolve(part))
    }

    /// What is known about `id`.
    pub fn get(&self, id: &ChainId) -> Option<&NetworkInfo> {
        self.networks.iter().find(|known| &known.id == id)
    }

    /// The friendly name of `id`, if known.
    pub fn name_of(&self, id: &ChainId) -> Option<&str> {
        self.get(id).map(|known| known.name.as_ref())
    }

    /// Whether `id` is a known test network (`Some(true)`), a known
    /// production network (`Some(false)`), or unknown (`None`).
    pub fn is_testnet(&self, id: &ChainId) -> Option<bool> {
        self.get(id)
            .map(|known| known.class == NetworkClass::Testnet)
    }

    /// Every known network, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &NetworkInfo> {
        self.networks.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> NetworkDirectory {
        let mut directory = NetworkDirectory::new();
        directory.extend([
            NetworkInfo::new(
                ChainId::parse("toy:main").unwrap(),
                "toy",
                NetworkClass::Mainnet,
            ),
            NetworkInfo::new(
                ChainId::parse("toy:test").unwrap(),
                "toy-test",
                NetworkClass::Testnet,
            ),
        ]);
        directory
    }

    #[test]
    fn resolves_names_ignoring_case_and_ids_as_they_are() {
        let directory = directory();
        assert_eq!(directory.resolve("Toy-Test").unwrap().as_str(), "toy:test");
        assert_eq!(directory.resolve("eip155:1").unwrap().as_str(), "eip155:1");
        assert!(directory.resolve("not-a-chain").is_err());
        assert!(NetworkDirectory::new().resolve("toy").is_err());
        let toy = directory.resolve("toy").unwrap();
        assert_eq!(directory.name_of(&toy), Some("toy"));
        assert_eq!(directory.is_testnet(&toy), Some(false));
        assert_eq!(
            directory.is_testnet(&ChainId::parse("toy:test").unwrap()),
            Some(true)
        );
        assert_eq!(
            directory.is_testnet(&ChainId::parse("toy:other").unwrap()),
            None
        );
    }

    #[test]
    fn patterns_take_names() {
        let directory = directory();
        let pattern = directory.pattern("toy, eip155:*").unwrap();
        assert!(pattern.matches(&ChainId::parse("toy:main").unwrap()));
        assert!(pattern.matches(&ChainId::parse("eip155:10").unwrap()));
        assert!(!pattern.matches(&ChainId::parse("toy:test").unwrap()));
        assert!(directory.pattern("toy:*").is_ok());
        assert!(directory.pattern("nope").is_err());
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let mut directory = directory();
        directory.extend([NetworkInfo::new(
            ChainId::parse("toy:v2").unwrap(),
            "TOY",
            NetworkClass::Mainnet,
        )]);
        assert_eq!(directory.resolve("toy").unwrap().as_str(), "toy:v2");
        assert_eq!(directory.iter().count(), 2);
    }
}
