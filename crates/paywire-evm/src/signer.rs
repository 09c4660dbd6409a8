//! Signing keys behind a trait, so that a remote, KMS or hardware signer can
//! replace the local private key without touching the schemes.

use std::fmt;
use std::sync::Arc;

use alloy_primitives::{Address, B256, Signature};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use paywire_core::BoxFuture;

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// Anything that can sign 32-byte digests for one EVM address.
pub trait EvmSigner: Send + Sync {
    /// The signing address.
    fn address(&self) -> Address;

    /// Signs a prehashed digest (an EIP-712 signing hash or a transaction
    /// signing hash). Implementations must not hash it again.
    fn sign_hash<'a>(&'a self, hash: &'a B256) -> BoxFuture<'a, Result<Signature, SignError>>;
}

/// A private key held in memory. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct LocalSigner {
    inner: PrivateKeySigner,
}

impl LocalSigner {
    /// Parses a hex private key (with or without `0x`).
    pub fn from_hex(key: &str) -> Result<Self, SignError> {
        let inner: PrivateKeySigner = key
            .trim()
            .parse()
            .map_err(|_| SignError("invalid private key (expected 32 bytes of hex)".into()))?;
        Ok(Self { inner })
    }

    /// Wraps an alloy signer.
    pub fn new(inner: PrivateKeySigner) -> Self {
        Self { inner }
    }

    /// A fresh random key (for tests and throwaway wallets).
    pub fn random() -> Self {
        Self {
            inner: PrivateKeySigner::random(),
        }
    }

    /// The signing address.
    pub fn address(&self) -> Address {
        self.inner.address()
    }

    /// Signs synchronously (local keys never wait).
    pub fn sign_hash_sync(&self, hash: &B256) -> Result<Signature, SignError> {
        self.inner
            .sign_hash_sync(hash)
            .map_err(|e| SignError(e.to_string()))
    }
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalSigner({})", self.inner.address())
    }
}

impl EvmSigner for LocalSigner {
    fn address(&self) -> Address {
        self.inner.address()
    }

    fn sign_hash<'a>(&'a self, hash: &'a B256) -> BoxFuture<'a, Result<Signature, SignError>> {
        let result = self.sign_hash_sync(hash);
        Box::pin(async move { result })
    }
}

impl<T: EvmSigner + ?Sized> EvmSigner for Arc<T> {
    fn address(&self) -> Address {
        (**self).address()
    }

    fn sign_hash<'a>(&'a self, hash: &'a B256) -> BoxFuture<'a, Result<Signature, SignError>> {
        (**self).sign_hash(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_key() {
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let signer = LocalSigner::from_hex(key).unwrap();
        let shown = format!("{signer:?}");
        assert!(!shown.contains("59c6995e"), "{shown}");
        assert_eq!(
            signer.address().to_string(),
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        );
        assert!(LocalSigner::from_hex("0x1234").is_err());
    }
}
