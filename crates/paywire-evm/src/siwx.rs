//! Sign-in-with-x (CAIP-122) for the `eip155` family (feature `siwx`):
//! paywire-siwx's two per-namespace traits implemented over this crate.
//!
//! - [`EvmVerifier`] (a [`SiwxVerifier`], type `eip191`): EIP-191
//!   personal-sign hash of the SIWE text; ECDSA recovery first, then, if an
//!   RPC client is configured for the chain, a deployless `eth_call` of the
//!   [validator contract](crate::eip6492), which accepts EIP-1271 (deployed)
//!   and EIP-6492 (counterfactual) smart-wallet signatures.
//! - [`EvmSiwxSigner`] (a [`SiwxSigner`]): EIP-191 signing with an
//!   [`EvmSigner`], as an EOA, an EIP-1271 wallet or an EIP-6492
//!   counterfactual wallet.
//!
//! Register them like any other family:
//! `VerifierRegistry::new().with(Arc::new(EvmVerifier::new()))`,
//! `SiwxSignIn::new(Arc::new(EvmSiwxSigner::new(key)), chains)`; or from
//! the plugin's own configuration, [`EvmPlugin::siwx_verifier`] and
//! [`EvmPlugin::siwx_signer`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, Bytes, eip191_hash_message, hex};
use paywire_core::{BoxFuture, ChainId, PluginError, Secret, WalletConfig};
use paywire_siwx::types::{SCHEME_EIP191, SCHEME_EIP1271, SCHEME_EIP6492, TYPE_EIP191};
use paywire_siwx::{ClientError, SiwxSigner, SiwxVerifier, VerifyError};

use crate::eip6492;
use crate::plugin::{EvmPlugin, NAMESPACE, node_client, wallet_signer};
use crate::rpc::{RpcClient, create_call_params};
use crate::signer::{EvmSigner, LocalSigner};

/// Timeout of the smart-wallet check's `eth_call`.
const SIWX_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// EVM sign-in verification (EIP-191, EIP-1271, EIP-6492).
#[derive(Debug, Default, Clone)]
pub struct EvmVerifier {
    rpc: HashMap<String, Arc<RpcClient>>,
}

impl EvmVerifier {
    /// EOA signatures only (no RPC).
    pub fn new() -> Self {
        Self::default()
    }

    /// Enables smart-wallet checks on `chain` through `rpc`.
    pub fn with_rpc(mut self, chain: &ChainId, rpc: Arc<RpcClient>) -> Self {
        self.rpc.insert(chain.to_string(), rpc);
        self
    }
}

impl SiwxVerifier for EvmVerifier {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn signature_type(&self) -> &str {
        TYPE_EIP191
    }

    fn verify<'a>(
        &'a self,
        chain: &'a ChainId,
        address: &'a str,
        message: &'a str,
        signature: &'a str,
    ) -> BoxFuture<'a, Result<(), VerifyError>> {
        Box::pin(async move {
            let signer: Address = address
                .parse()
                .map_err(|_| VerifyError::MalformedAddress(address.chars().take(64).collect()))?;
            let bytes = signature
                .strip_prefix("0x")
                .and_then(|h| hex::decode(h).ok())
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    VerifyError::MalformedSignature("expected 0x-prefixed hex".into())
                })?;
            let hash = eip191_hash_message(message.as_bytes());
            if crate::ecrecover::recover_address(&bytes, &hash) == Some(signer) {
                return Ok(());
            }
            let Some(rpc) = self.rpc.get(chain.as_str()) else {
                tracing::debug!(%chain, "EOA recovery failed and no RPC for smart-wallet check");
                return Err(VerifyError::InvalidSignature);
            };
            let data = eip6492::validation_calldata(signer, hash, &bytes);
            let answer: Bytes = rpc
                .request("eth_call", create_call_params(&data))
                .await
                .map_err(|e| {
                    if e.is_revert() {
                        VerifyError::InvalidSignature
                    } else {
                        VerifyError::Rpc(e.to_string())
                    }
                })?;
            if answer.as_ref() == [1u8] {
                Ok(())
            } else {
                Err(VerifyError::InvalidSignature)
            }
        })
    }
}

/// EVM wallet: EIP-191 personal-sign with an [`EvmSigner`]. For an
/// EIP-1271 smart wallet, use [`EvmSiwxSigner::for_wallet`] with the owner's
/// key as signer; for a wallet not deployed yet, [`EvmSiwxSigner::counterfactual`].
#[derive(Debug, Clone)]
pub struct EvmSiwxSigner<S> {
    signer: S,
    wallet: Option<Address>,
    deployment: Option<(Address, Bytes)>,
}

impl<S: EvmSigner> EvmSiwxSigner<S> {
    /// Signs in as the signer's own (EOA) address.
    pub fn new(signer: S) -> Self {
        Self {
            signer,
            wallet: None,
            deployment: None,
        }
    }

    /// Signs in as smart wallet `wallet`, whose EIP-1271 check accepts
    /// signatures by `signer` over the EIP-191 hash.
    pub fn for_wallet(signer: S, wallet: Address) -> Self {
        Self {
            signer,
            wallet: Some(wallet),
            deployment: None,
        }
    }

    /// Signs in as smart wallet `wallet` that `factory` deploys with
    /// `factory_calldata` (EIP-6492): the owner's signature is wrapped with
    /// the deployment call so the server can validate it before deployment.
    pub fn counterfactual(
        signer: S,
        wallet: Address,
        factory: Address,
        factory_calldata: Bytes,
    ) -> Self {
        Self {
            signer,
            wallet: Some(wallet),
            deployment: Some((factory, factory_calldata)),
        }
    }
}

impl<S: EvmSigner> SiwxSigner for EvmSiwxSigner<S> {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn address(&self) -> String {
        self.wallet
            .unwrap_or_else(|| self.signer.address())
            .to_checksum(None)
    }

    fn signature_scheme(&self) -> Option<&str> {
        Some(match (self.wallet, &self.deployment) {
            (_, Some(_)) => SCHEME_EIP6492,
            (Some(_), None) => SCHEME_EIP1271,
            (None, None) => SCHEME_EIP191,
        })
    }

    fn sign_message<'a>(&'a self, message: &'a str) -> BoxFuture<'a, Result<String, ClientError>> {
        Box::pin(async move {
            let hash = eip191_hash_message(message.as_bytes());
            let signature = self
                .signer
                .sign_hash(&hash)
                .await
                .map_err(|e| ClientError::Sign(e.to_string()))?;
            let raw = Bytes::copy_from_slice(&signature.as_bytes());
            let encoded = match &self.deployment {
                Some((factory, calldata)) => eip6492::wrap(*factory, calldata.clone(), raw),
                None => raw,
            };
            Ok(format!("0x{}", hex::encode(encoded)))
        })
    }
}

/// Sign-in-with-x from the plugin's own configuration, so that a composition
/// root sets up SIWE with the same inputs as payments.
impl EvmPlugin {
    /// The `eip155` verifier: EOA signatures everywhere, smart wallets
    /// (EIP-1271, EIP-6492) on the EVM chains of `rpc_urls` (entries of
    /// other namespaces are skipped).
    pub fn siwx_verifier(
        &self,
        rpc_urls: &[(ChainId, Secret)],
    ) -> Result<EvmVerifier, PluginError> {
        let mut verifier = EvmVerifier::new();
        for (network, url) in rpc_urls {
            if network.namespace() == NAMESPACE {
                verifier = verifier.with_rpc(network, node_client(network, url, SIWX_RPC_TIMEOUT)?);
            }
        }
        Ok(verifier)
    }

    /// The sign-in signer of the wallet [`ChainPlugin::wallet`](paywire_core::ChainPlugin::wallet)
    /// builds from `config`: the address that pays is the one that signs in.
    pub fn siwx_signer(
        &self,
        config: &WalletConfig,
    ) -> Result<EvmSiwxSigner<LocalSigner>, PluginError> {
        Ok(EvmSiwxSigner::new(wallet_signer(config)?))
    }
}

#[cfg(test)]
mod tests {
    use paywire_core::{ChainPlugin, Secret};

    use crate::networks::Eip155ChainId;

    use super::*;

    const MESSAGE: &str = "api.example.com wants you to sign in with your Ethereum account";

    fn base() -> ChainId {
        ChainId::eip155(8453)
    }

    #[tokio::test]
    async fn an_eoa_signature_verifies_and_nothing_else_does() {
        let wallet = EvmSiwxSigner::new(LocalSigner::random());
        assert_eq!(wallet.signature_scheme(), Some(SCHEME_EIP191));
        let signature = wallet.sign_message(MESSAGE).await.unwrap();
        let verifier = EvmVerifier::new();
        let address = wallet.address();
        verifier
            .verify(&base(), &address, MESSAGE, &signature)
            .await
            .unwrap();
        let tampered = format!("{MESSAGE}!");
        let stranger = LocalSigner::random().address().to_checksum(None);
        for (address, message, signature, expected) in [
            (
                address.as_str(),
                tampered.as_str(),
                signature.as_str(),
                VerifyError::InvalidSignature,
            ),
            (
                &stranger,
                MESSAGE,
                &signature,
                VerifyError::InvalidSignature,
            ),
            (
                &address,
                MESSAGE,
                "0x",
                VerifyError::MalformedSignature("expected 0x-prefixed hex".into()),
            ),
            (
                &address,
                MESSAGE,
                &signature[2..],
                VerifyError::MalformedSignature("expected 0x-prefixed hex".into()),
            ),
            (
                "0xnope",
                MESSAGE,
                &signature,
                VerifyError::MalformedAddress("0xnope".into()),
            ),
        ] {
            let refusal = verifier.verify(&base(), address, message, signature).await;
            assert_eq!(refusal, Err(expected));
        }
    }

    #[tokio::test]
    async fn plugin_signer_signs_in_as_the_paying_wallet() {
        let config = WalletConfig::new(Secret::new(format!("0x{}", "11".repeat(32))));
        let signer = EvmPlugin.siwx_signer(&config).unwrap();
        let paying = EvmPlugin.wallet(&config).unwrap();
        let paying: Address = paying.addresses[0].parse().unwrap();
        assert_eq!(signer.address(), paying.to_checksum(None));
        let signature = signer.sign_message(MESSAGE).await.unwrap();
        EvmPlugin
            .siwx_verifier(&[])
            .unwrap()
            .verify(&base(), &signer.address(), MESSAGE, &signature)
            .await
            .unwrap();

        let secret = "0xnot-a-key-but-secret";
        let error = EvmPlugin
            .siwx_signer(&WalletConfig::new(Secret::new(secret)))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("key"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn plugin_verifier_checks_smart_wallets_on_evm_chains_with_a_node() {
        let solana = ChainId::parse("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp").unwrap();
        let verifier = EvmPlugin
            .siwx_verifier(&[
                (base(), Secret::new("http://127.0.0.1:9/KEY")),
                (solana, Secret::new("http://127.0.0.1:9")),
            ])
            .unwrap();
        assert_eq!(verifier.rpc.keys().collect::<Vec<_>>(), ["eip155:8453"]);

        let error = EvmPlugin
            .siwx_verifier(&[(base(), Secret::new("ftp://rpc.example/SECRETAPIKEY"))])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("rpc[eip155:8453]"), "{error}");
        assert!(!error.contains("SECRETAPIKEY"), "{error}");
    }
}
