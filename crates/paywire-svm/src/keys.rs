//! Solana signing keys: parsed from the two usual exports, never shown.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use solana_address::Address;
use solana_signature::Signature;

/// Why a key could not be read. It never quotes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Neither a base58 64-byte keypair nor a JSON array of 64 bytes.
    #[error("not a Solana keypair (base58 of 64 bytes, or a JSON array of 64 numbers)")]
    Format,
    /// The public half does not belong to the secret half.
    #[error("the keypair's public key does not match its secret key")]
    Mismatch,
}

/// An ed25519 keypair. Its `Debug` shows the address only.
#[derive(Clone)]
pub struct SvmKeypair {
    key: SigningKey,
    address: Address,
}

impl fmt::Debug for SvmKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SvmKeypair({})", self.address)
    }
}

impl SvmKeypair {
    /// Reads a keypair: base58 of the 64 bytes secret ‖ public (Phantom's
    /// and Solflare's export), or the JSON array of those 64 bytes that
    /// `solana-keygen` writes to its key files.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes: Vec<u8> = if text.starts_with('[') {
            serde_json::from_str(text).map_err(|_| KeyError::Format)?
        } else {
            bs58::decode(text)
                .into_vec()
                .map_err(|_| KeyError::Format)?
        };
        let bytes: [u8; 64] = bytes.try_into().map_err(|_| KeyError::Format)?;
        Self::from_keypair_bytes(&bytes)
    }

    /// From the 64 bytes secret ‖ public.
    pub fn from_keypair_bytes(bytes: &[u8; 64]) -> Result<Self, KeyError> {
        let key = SigningKey::from_keypair_bytes(bytes).map_err(|_| KeyError::Mismatch)?;
        Ok(Self::from_signing_key(key))
    }

    /// From a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let address = Address::new_from_array(key.verifying_key().to_bytes());
        Self { key, address }
    }

    /// The public key.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature::from(self.key.sign(message).to_bytes())
    }
}

/// Whether `signature` by `signer` over `message` is valid (strict ed25519:
/// no small-order keys, canonical encodings).
pub fn verify_signature(signer: &Address, message: &[u8], signature: &Signature) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(signer.as_array()) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(signature.as_array());
    // Strict: also refuses small-order keys and non-canonical encodings that
    // plain verification accepts (it checks the same equation otherwise).
    key.verify_strict(message, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_export_formats_read_and_debug_hides_the_secret() {
        let pair = SvmKeypair::from_seed(&[7; 32]);
        let mut bytes = [7u8; 64];
        bytes[32..].copy_from_slice(pair.address().as_ref());
        let base58 = bs58::encode(bytes).into_string();
        let json = serde_json::to_string(&bytes.to_vec()).unwrap();
        for text in [base58.as_str(), json.as_str()] {
            let parsed = SvmKeypair::parse(text).unwrap();
            assert_eq!(parsed.address(), pair.address());
            let debug = format!("{parsed:?}");
            assert!(debug.contains(&pair.address().to_string()));
            assert!(!debug.contains(&base58[..20]));
            assert!(!debug.contains("7, 7"));
        }
        let mut wrong = bytes;
        wrong[40] ^= 1;
        assert_eq!(
            SvmKeypair::parse(&bs58::encode(wrong).into_string()).unwrap_err(),
            KeyError::Mismatch
        );
        let error = SvmKeypair::parse(&base58[..40]).unwrap_err().to_string();
        assert!(!error.contains(&base58[..20]), "{error}");
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_signer() {
        let pair = SvmKeypair::from_seed(&[1; 32]);
        let signature = pair.sign(b"message");
        assert!(verify_signature(&pair.address(), b"message", &signature));
        assert!(!verify_signature(&pair.address(), b"massage", &signature));
        let other = SvmKeypair::from_seed(&[2; 32]).address();
        assert!(!verify_signature(&other, b"message", &signature));
    }
}
