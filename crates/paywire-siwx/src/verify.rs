//! Signature verification per chain family, behind [`SiwxVerifier`] and
//! registered in a [`VerifierRegistry`] by CAIP-2 namespace (like schemes).
//!
//! - [`EvmVerifier`] (`eip155`, type `eip191`): EIP-191 personal-sign hash of
//!   the SIWE text; ECDSA recovery first, then — if an RPC client is
//!   configured for the chain — a deployless `eth_call` of our validator
//!   contract, which accepts EIP-1271 (deployed) and EIP-6492
//!   (counterfactual) smart-wallet signatures.
//! - [`SolanaVerifier`] (`solana`, type `ed25519`): strict ed25519 over the
//!   SIWS text bytes, base58 public key and signature.

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::{Address, Bytes, eip191_hash_message, hex};
use paywire_core::{BoxFuture, ChainId};
use paywire_evm::eip6492;
use paywire_evm::rpc::{RpcClient, create_call_params};

use crate::types::{TYPE_ED25519, TYPE_EIP191};

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The address is not well formed for the chain.
    #[error("malformed address: {0}")]
    MalformedAddress(String),
    /// The signature is not well formed (hex/base58, length).
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    /// The signature does not prove control of the address.
    #[error("signature is not valid for the address")]
    InvalidSignature,
    /// The on-chain check could not be made (RPC failure); retryable.
    #[error("smart-wallet check failed: {0}")]
    Rpc(String),
}

/// Verifies sign-in signatures for one CAIP-2 namespace.
pub trait SiwxVerifier: Send + Sync {
    /// The namespace handled, e.g. `eip155`.
    fn namespace(&self) -> &str;

    /// The `type` value of `supportedChains` entries for this family.
    fn signature_type(&self) -> &str;

    /// Optional `signatureScheme` hint advertised for `chain`.
    fn signature_scheme(&self, _chain: &ChainId) -> Option<&str> {
        None
    }

    /// Checks that `signature` over `message` (the exact text) proves control
    /// of `address` on `chain`.
    fn verify<'a>(
        &'a self,
        chain: &'a ChainId,
        address: &'a str,
        message: &'a str,
        signature: &'a str,
    ) -> BoxFuture<'a, Result<(), VerifyError>>;
}

/// Verifiers by namespace.
#[derive(Clone, Default)]
pub struct VerifierRegistry {
    verifiers: HashMap<String, Arc<dyn SiwxVerifier>>,
}

impl std::fmt::Debug for VerifierRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.verifiers.keys()).finish()
    }
}

impl VerifierRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// EOA-only EVM and Solana verifiers.
    pub fn with_defaults() -> Self {
        let mut registry = Self::new();
        registry.register(Arc::new(EvmVerifier::new()));
        registry.register(Arc::new(SolanaVerifier));
        registry
    }

    /// Adds (or replaces) the verifier of its namespace.
    pub fn register(&mut self, verifier: Arc<dyn SiwxVerifier>) -> &mut Self {
        self.verifiers
            .insert(verifier.namespace().to_owned(), verifier);
        self
    }

    /// The verifier of `chain`'s namespace.
    pub fn get(&self, chain: &ChainId) -> Option<&Arc<dyn SiwxVerifier>> {
        self.verifiers.get(chain.namespace())
    }
}

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
    fn namespace(&self) -> &str {
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

/// Solana sign-in verification (ed25519 over the SIWS text).
#[derive(Debug, Default, Clone, Copy)]
pub struct SolanaVerifier;

/// Decodes a base58 Solana address into its ed25519 public key.
pub fn solana_public_key(address: &str) -> Result<ed25519_dalek::VerifyingKey, VerifyError> {
    let malformed = || VerifyError::MalformedAddress(address.chars().take(64).collect());
    let bytes: [u8; 32] = bs58::decode(address)
        .into_vec()
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(malformed)?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| malformed())
}

impl SiwxVerifier for SolanaVerifier {
    fn namespace(&self) -> &str {
        "solana"
    }

    fn signature_type(&self) -> &str {
        TYPE_ED25519
    }

    fn signature_scheme(&self, _chain: &ChainId) -> Option<&str> {
        None
    }

    fn verify<'a>(
        &'a self,
        _chain: &'a ChainId,
        address: &'a str,
        message: &'a str,
        signature: &'a str,
    ) -> BoxFuture<'a, Result<(), VerifyError>> {
        Box::pin(async move {
            let key = solana_public_key(address)?;
            let bytes: [u8; 64] = bs58::decode(signature)
                .into_vec()
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    VerifyError::MalformedSignature("expected base58 of 64 bytes".into())
                })?;
            let sig = ed25519_dalek::Signature::from_bytes(&bytes);
            key.verify_strict(message.as_bytes(), &sig)
                .map_err(|_| VerifyError::InvalidSignature)
        })
    }
}
