//! Sign-in-with-x for EVM chains (feature `evm`): the `eip155` family.
//!
//! - [`EvmVerifier`] (a [`SiwxVerifier`], type `eip191`): EIP-191
//!   personal-sign hash of the SIWE text; ECDSA recovery first, then, if an
//!   RPC client is configured for the chain, a deployless `eth_call` of
//!   paywire-evm's validator contract, which accepts EIP-1271 (deployed) and
//!   EIP-6492 (counterfactual) smart-wallet signatures.
//! - [`EvmSiwxSigner`] (a [`SiwxSigner`]): EIP-191 signing with an
//!   [`EvmSigner`], as an EOA, an EIP-1271 wallet or an EIP-6492
//!   counterfactual wallet.
//!
//! Register them like any other family:
//! `VerifierRegistry::new().with(Arc::new(EvmVerifier::new()))`,
//! `SiwxSignIn::new(Arc::new(EvmSiwxSigner::new(key)), chains)`.
//!
//! This module uses nothing of the crate but the two traits, so that it can
//! move to `paywire-evm` (as its `siwx` module) once `paywire-server` no
//! longer depends on `paywire-evm`; until then that direction would be a
//! dependency cycle (`paywire-siwx[server]` → `paywire-server` →
//! `paywire-evm` → `paywire-siwx`).

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::{Address, Bytes, eip191_hash_message, hex};
use paywire_core::{BoxFuture, ChainId};
use paywire_evm::eip6492;
use paywire_evm::rpc::{RpcClient, create_call_params};
use paywire_evm::signer::EvmSigner;

use crate::types::{SCHEME_EIP191, SCHEME_EIP1271, SCHEME_EIP6492, TYPE_EIP191};
use crate::{ClientError, SiwxSigner, SiwxVerifier, VerifyError};

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
        "eip155"
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
            if paywire_evm::ecrecover::recover_address(&bytes, &hash) == Some(signer) {
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
        "eip155"
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
