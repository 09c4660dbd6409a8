//! The client side: pick a supported chain, build the message from the
//! server's challenge, sign it and produce the [`SiwxProof`] for the
//! `SIGN-IN-WITH-X` header.

use ed25519_dalek::Signer as _;
use paywire_core::{BoxFuture, ChainId};

use crate::message::{MessageError, SiwxMessage};
use crate::types::{SiwxExtension, SiwxProof};

/// Why signing in failed on the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The challenge's domain is not the host we are talking to (a server
    /// relaying another site's challenge to phish a sign-in).
    #[error("challenge domain {got:?} is not the requested host {expected:?}")]
    DomainMismatch {
        /// The host of the request URL.
        expected: String,
        /// The challenge's domain.
        got: String,
    },
    /// No `supportedChains` entry matches the wallet.
    #[error("the server supports none of the wallet's chains")]
    NoMatchingChain,
    /// The challenge cannot form a valid message.
    #[error("invalid challenge: {0}")]
    InvalidChallenge(#[from] MessageError),
    /// The wallet failed to sign.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A wallet able to sign sign-in messages for one chain family:
/// [`SolanaSiwxSigner`] here, `paywire_evm::siwx::EvmSiwxSigner` (paywire-evm's
/// feature `siwx`) for EVM wallets.
pub trait SiwxSigner: Send + Sync {
    /// The CAIP-2 namespace of the wallet (`eip155`, `solana`).
    fn namespace(&self) -> &str;

    /// The address written in the message (EIP-55 or base58).
    fn address(&self) -> String;

    /// `signatureScheme` hint for the proof.
    fn signature_scheme(&self) -> Option<&str> {
        None
    }

    /// Signs the exact message text; returns the encoded signature.
    fn sign_message<'a>(&'a self, message: &'a str) -> BoxFuture<'a, Result<String, ClientError>>;
}

/// Solana wallet: ed25519 over the SIWS text bytes.
pub struct SolanaSiwxSigner {
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SolanaSiwxSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolanaSiwxSigner")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl SolanaSiwxSigner {
    /// Wraps an ed25519 signing key.
    pub fn new(key: ed25519_dalek::SigningKey) -> Self {
        Self { key }
    }

    /// From a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::new(ed25519_dalek::SigningKey::from_bytes(seed))
    }
}

impl SiwxSigner for SolanaSiwxSigner {
    fn namespace(&self) -> &'static str {
        "solana"
    }

    fn address(&self) -> String {
        bs58::encode(self.key.verifying_key().as_bytes()).into_string()
    }

    fn sign_message<'a>(&'a self, message: &'a str) -> BoxFuture<'a, Result<String, ClientError>> {
        Box::pin(async move {
            let signature = self.key.sign(message.as_bytes());
            Ok(bs58::encode(signature.to_bytes()).into_string())
        })
    }
}

/// The chain to sign in on: the first `supportedChains` entry that is one
/// of `wallet_chains` (the networks the wallet can sign for).
pub fn select_chain(extension: &SiwxExtension, wallet_chains: &[ChainId]) -> Option<ChainId> {
    extension.supported_chains.iter().find_map(|entry| {
        wallet_chains
            .iter()
            .find(|chain| chain.as_str() == entry.chain_id)
            .cloned()
    })
}

/// Answers the server's challenge on `chain` with `signer`. `request_host`
/// is the authority (`host[:port]`) of the URL being requested; the
/// challenge's domain must equal it.
pub async fn sign_in(
    extension: &SiwxExtension,
    request_host: &str,
    chain: &ChainId,
    signer: &dyn SiwxSigner,
) -> Result<SiwxProof, ClientError> {
    let info = &extension.info;
    if !info.domain.eq_ignore_ascii_case(request_host) {
        return Err(ClientError::DomainMismatch {
            expected: request_host.to_owned(),
            got: info.domain.clone(),
        });
    }
    let entry = extension
        .chain(chain.as_str())
        .filter(|_| chain.namespace() == signer.namespace())
        .ok_or(ClientError::NoMatchingChain)?;
    let mut proof = SiwxProof {
        domain: info.domain.clone(),
        address: signer.address(),
        uri: info.uri.clone(),
        version: info.version.clone(),
        chain_id: chain.to_string(),
        kind: entry.kind.clone(),
        nonce: info.nonce.clone(),
        issued_at: info.issued_at.clone(),
        expiration_time: info.expiration_time.clone(),
        not_before: info.not_before.clone(),
        request_id: info.request_id.clone(),
        statement: info.statement.clone(),
        resources: info.resources.clone(),
        signature_scheme: signer.signature_scheme().map(str::to_owned),
        signature: String::new(),
    };
    let message = SiwxMessage::from_proof(&proof)?.to_text()?;
    proof.signature = signer.sign_message(&message).await?;
    Ok(proof)
}
