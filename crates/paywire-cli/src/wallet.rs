//! The paying wallets of `paywire pay`: keys read from a file or the
//! environment (never printed, logged or quoted in an error), each chain
//! family's paying side built by its plugin through the registry, and
//! sign-in-with-x with every wallet.

use std::path::Path;
use std::sync::Arc;

use paywire_client::{Credential, SignInProvider};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, ChainPlugin, PaymentRequired, PluginError, Registration,
    SchemeClient, Secret, SpendProbe, WalletConfig, WalletParts,
};
use paywire_siwx::{SiwxSignIn, SolanaSiwxSigner};
use url::Url;

/// Public cluster nodes for Solana networks given no `--rpc`: a Solana
/// wallet reads the latest blockhash and the mint before it signs.
const PUBLIC_SOLANA_NODES: [(&str, &str); 3] = [
    ("solana", "https://api.mainnet-beta.solana.com"),
    ("solana-devnet", "https://api.devnet.solana.com"),
    ("solana-testnet", "https://api.testnet.solana.com"),
];

/// Where one wallet's key comes from: a file when given, else an
/// environment variable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeySource<'a> {
    /// The key file (`--wallet-file`, `--solana-wallet-file`).
    pub(crate) file: Option<&'a Path>,
    /// The environment variable (`--wallet-env`, `--solana-wallet-env`).
    pub(crate) env: &'a str,
    /// Whether the variable was named explicitly, so must be set when no
    /// file is given.
    pub(crate) env_required: bool,
}

impl KeySource<'_> {
    /// The key, `None` when there is no file and the default variable is
    /// unset or empty. A file that cannot be read, or an explicitly named
    /// variable that is unset, is an error (naming the file or variable only).
    pub(crate) fn read(&self) -> Result<Option<Secret>, String> {
        if let Some(path) = self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the wallet file {}: {e}", path.display()))?;
            return Ok(Some(Secret::new(text.trim())));
        }
        let key = std::env::var(self.env)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .map(|value| Secret::new(value.trim()));
        if key.is_none() && self.env_required {
            return Err(format!("{} is not set", self.env));
        }
        Ok(key)
    }
}

/// Every paying side of the run's wallets, ready for the client builder.
#[derive(Default)]
pub(crate) struct Wallets {
    /// Scheme clients by network pattern.
    pub(crate) schemes: Vec<Registration<dyn SchemeClient>>,
    /// The EVM wallet's spend probe (eip155 `--rpc` nodes), for budgets.
    pub(crate) spend_probe: Option<Arc<dyn SpendProbe>>,
    /// Sign-in with each wallet, EVM first unless `solana_first`.
    pub(crate) sign_in: SignIns,
}

/// The plugin of `namespace`.
fn plugin(namespace: &str) -> Result<Arc<dyn ChainPlugin>, String> {
    crate::plugins::registry()
        .iter()
        .find(|plugin| plugin.namespace() == namespace)
        .cloned()
        .ok_or_else(|| format!("this binary has no {namespace} plugin"))
}

/// `namespace`'s paying side for `key`; a key the plugin refuses is "not a
/// valid `what` key", whatever the plugin's parser thought of it.
fn wallet_parts(
    namespace: &str,
    what: &str,
    key: Secret,
    rpc_urls: &[(ChainId, Secret)],
) -> Result<WalletParts, String> {
    let mut config = WalletConfig::new(key);
    config.rpc_urls = rpc_urls.to_vec();
    plugin(namespace)?
        .wallet(&config)
        .map_err(|error| match error {
            PluginError::Config { at, .. } if at == "key" => format!("not a valid {what} key"),
            other => other.to_string(),
        })
}

/// The EVM wallet and its sign-in (SIWE on any eip155 chain the server lists).
fn evm_wallet(key: Secret, rpc_urls: &[(ChainId, Secret)]) -> Result<Wallets, String> {
    let signer = paywire_evm::LocalSigner::from_hex(key.expose())
        .map_err(|_| "not a valid EVM key (hex private key)".to_owned())?;
    let parts = wallet_parts("eip155", "EVM", key, rpc_urls)?;
    let sign_in = SiwxSignIn::any_chain(Arc::new(paywire_evm::siwx::EvmSiwxSigner::new(signer)));
    Ok(Wallets {
        schemes: parts.schemes,
        spend_probe: parts.spend_probe,
        sign_in: SignIns(vec![Arc::new(sign_in)]),
    })
}

/// The Solana wallet (nodes from `rpc_urls`, public clusters otherwise) and
/// its sign-in (SIWS on any Solana cluster the server lists).
fn solana_wallet(key: Secret, rpc_urls: &[(ChainId, Secret)]) -> Result<Wallets, String> {
    let invalid = || "not a valid Solana key".to_owned();
    let signer = solana_seed(key.expose())
        .map(|seed| SolanaSiwxSigner::from_seed(&seed))
        .ok_or_else(invalid)?;
    let parts = wallet_parts("solana", "Solana", key, &with_public_solana_nodes(rpc_urls))?;
    // The plugin checked the keypair's halves; the sign-in signs with the
    // same address it pays from.
    if parts.addresses.first() != Some(&paywire_siwx::SiwxSigner::address(&signer)) {
        return Err(invalid());
    }
    Ok(Wallets {
        schemes: parts.schemes,
        spend_probe: None,
        sign_in: SignIns(vec![Arc::new(SiwxSignIn::any_chain(Arc::new(signer)))]),
    })
}

/// The 32-byte secret seed of a Solana keypair: base58 of 64 bytes
/// (seed ‖ public key) or `solana-keygen`'s JSON array of them.
fn solana_seed(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes: Vec<u8> = if text.starts_with('[') {
        serde_json::from_str(text).ok()?
    } else {
        bs58::decode(text).into_vec().ok()?
    };
    let bytes: [u8; 64] = bytes.try_into().ok()?;
    bytes[..32].try_into().ok()
}

/// `rpc_urls` plus the public node of each well-known Solana cluster it
/// does not name.
fn with_public_solana_nodes(rpc_urls: &[(ChainId, Secret)]) -> Vec<(ChainId, Secret)> {
    let networks = crate::plugins::networks();
    let mut all = rpc_urls.to_vec();
    for (name, url) in PUBLIC_SOLANA_NODES {
        if let Ok(network) = networks.resolve(name)
            && !all.iter().any(|(known, _)| *known == network)
        {
            all.push((network, Secret::new(url)));
        }
    }
    all
}

/// The wallets of the keys given (at least one), their sign-ins with the
/// Solana one first when `solana_first`.
pub(crate) fn build(
    evm_key: Option<Secret>,
    solana_key: Option<Secret>,
    rpc_urls: &[(ChainId, Secret)],
    solana_first: bool,
) -> Result<Wallets, String> {
    let evm = evm_key.map(|key| evm_wallet(key, rpc_urls)).transpose()?;
    let solana = solana_key
        .map(|key| solana_wallet(key, rpc_urls))
        .transpose()?;
    let mut ordered = [evm, solana];
    if solana_first {
        ordered.reverse();
    }
    let mut wallets = Wallets::default();
    for part in ordered.into_iter().flatten() {
        wallets.schemes.extend(part.schemes);
        wallets.spend_probe = wallets.spend_probe.or(part.spend_probe);
        wallets.sign_in.0.extend(part.sign_in.0);
    }
    Ok(wallets)
}

/// The bank rail's paying side: a bundle credential
/// (`pwb1.<bundle>.<secret>@<authority>`), paying `batch-settlement`
/// offers of its own authority on any `<label>:credit` network. It signs
/// in nowhere and has no spend probe (a credit payment counts at its
/// maximum until settled).
pub(crate) fn credit_wallet(credential: Secret) -> Result<Wallets, String> {
    let parts = wallet_parts(
        paywire_bank::wire::CREDIT_REFERENCE,
        "bundle credential (pwb1.<bundle>.<secret>@<authority>)",
        credential,
        &[],
    )?;
    Ok(Wallets {
        schemes: parts.schemes,
        spend_probe: None,
        sign_in: SignIns::default(),
    })
}

impl Wallets {
    /// Adds `other`'s scheme clients and sign-ins after these (this spend
    /// probe first).
    pub(crate) fn extend(&mut self, other: Wallets) {
        self.schemes.extend(other.schemes);
        self.spend_probe = self.spend_probe.take().or(other.spend_probe);
        self.sign_in.0.extend(other.sign_in.0);
    }
}

/// Whether `pattern` names only Solana networks (so a Solana wallet should
/// sign in first).
pub(crate) fn is_solana(pattern: &ChainIdPattern) -> bool {
    pattern
        .to_string()
        .split(',')
        .all(|part| part.starts_with("solana:"))
}

/// Sign-in with several wallets: the first that can answer a challenge
/// does; every one sees the answers (to keep session tokens).
#[derive(Default, Clone)]
pub(crate) struct SignIns(Vec<Arc<dyn SignInProvider>>);

impl std::fmt::Debug for SignIns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignIns({})", self.0.len())
    }
}

impl SignInProvider for SignIns {
    fn sign_in<'a>(
        &'a self,
        resource: &'a Url,
        required: &'a PaymentRequired,
    ) -> BoxFuture<'a, Option<Credential>> {
        Box::pin(async move {
            for provider in &self.0 {
                if let Some(credential) = provider.sign_in(resource, required).await {
                    return Some(credential);
                }
            }
            None
        })
    }

    fn session(&self, resource: &Url) -> Option<Credential> {
        self.0
            .iter()
            .find_map(|provider| provider.session(resource))
    }

    fn remember(&self, resource: &Url, answer: &dyn paywire_client::AnswerFields) {
        for provider in &self.0 {
            provider.remember(resource, answer);
        }
    }

    fn forget(&self, resource: &Url) {
        for provider in &self.0 {
            provider.forget(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair_base58(seed: [u8; 32]) -> String {
        let address = paywire_svm::SvmKeypair::from_seed(&seed).address();
        let mut bytes = seed.to_vec();
        bytes.extend_from_slice(address.as_ref());
        bs58::encode(bytes).into_string()
    }

    #[test]
    fn a_solana_seed_is_read_from_both_exports() {
        let seed = [7u8; 32];
        let base58 = keypair_base58(seed);
        assert_eq!(solana_seed(&base58), Some(seed));
        let bytes = bs58::decode(&base58).into_vec().unwrap();
        assert_eq!(
            solana_seed(&serde_json::to_string(&bytes).unwrap()),
            Some(seed)
        );
        assert_eq!(solana_seed("[1,2,3]"), None);
        assert_eq!(solana_seed("0x1111"), None);
    }

    #[test]
    fn public_nodes_fill_in_only_the_clusters_not_given() {
        let devnet = crate::plugins::networks().resolve("solana-devnet").unwrap();
        let given = vec![(devnet.clone(), Secret::new("http://127.0.0.1:1"))];
        let all = with_public_solana_nodes(&given);
        assert_eq!(all.len(), 3);
        let devnet_urls: Vec<_> = all.iter().filter(|(n, _)| *n == devnet).collect();
        assert_eq!(devnet_urls.len(), 1);
        assert_eq!(devnet_urls[0].1.expose(), "http://127.0.0.1:1");
    }

    #[test]
    fn a_solana_key_with_mismatched_halves_is_refused_without_quoting_it() {
        let mut bytes = bs58::decode(keypair_base58([9; 32])).into_vec().unwrap();
        bytes[40] ^= 1;
        let key = bs58::encode(bytes).into_string();
        let error = build(None, Some(Secret::new(key.clone())), &[], false)
            .err()
            .unwrap();
        assert_eq!(error, "not a valid Solana key");
    }

    #[test]
    fn only_patterns_of_solana_networks_put_the_solana_wallet_first() {
        let networks = crate::plugins::networks();
        let pattern = |text: &str| networks.pattern(text).unwrap();
        assert!(is_solana(&pattern("solana-devnet")));
        assert!(is_solana(&pattern("solana:*")));
        assert!(!is_solana(&pattern("base")));
        assert!(!is_solana(&pattern("solana-devnet,base")));
    }

    #[test]
    fn sign_ins_follow_the_preferred_family() {
        let evm = Some(Secret::new(format!("0x{}", "11".repeat(32))));
        let solana = Some(Secret::new(keypair_base58([5; 32])));
        let first = |solana_first| {
            let wallets = build(evm.clone(), solana.clone(), &[], solana_first).unwrap();
            // EVM: exact and upto; Solana: exact.
            assert_eq!(wallets.schemes.len(), 3);
            wallets.schemes[0].networks.to_string()
        };
        assert_eq!(first(false), "eip155:*");
        assert_eq!(first(true), "solana:*");
    }
}
