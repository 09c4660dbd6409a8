//! Signature verification per chain family, behind [`SiwxVerifier`] and
//! registered in a [`VerifierRegistry`] by CAIP-2 namespace (like schemes).
//! Chain plugins implement it for their family:
//!
//! - `eip155` (type `eip191`): `paywire_evm::siwx::EvmVerifier` (paywire-evm's
//!   feature `siwx`): EIP-191, EIP-1271 and EIP-6492 signatures;
//! - `solana` (type `ed25519`): [`SolanaVerifier`] here, strict ed25519 over
//!   the SIWS text bytes, base58 public key and signature (no chain access
//!   needed).

use std::collections::HashMap;
use std::sync::Arc;

use paywire_core::{BoxFuture, ChainId};

use crate::types::TYPE_ED25519;

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

    /// The registry with `verifier` added (or replacing the one of its
    /// namespace).
    pub fn with(mut self, verifier: Arc<dyn SiwxVerifier>) -> Self {
        self.register(verifier);
        self
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
    fn namespace(&self) -> &'static str {
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
