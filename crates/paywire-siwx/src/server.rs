//! The server side: issue challenges ([`SiwxServer::challenge`]) and validate
//! proofs ([`SiwxServer::verify_header`]) against the **configured** public
//! origin, server-issued single-use nonces and the route's accepted networks.

use std::sync::Arc;

use paywire_core::ChainId;
use paywire_core::codec::DecodeError;

use crate::message::{MessageError, SiwxMessage};
use crate::store::{NonceState, NonceStore, StoreError};
use crate::time::{Clock, TimeError, format_rfc3339, parse_rfc3339, system_clock};
use crate::types::{SIWX_VERSION, SiwxExtension, SiwxInfo, SiwxProof, SupportedChain};
use crate::verify::{SiwxVerifier, VerifierRegistry, VerifyError};

/// Default lifetime of a challenge (and its nonce): 5 minutes.
pub const DEFAULT_CHALLENGE_TTL_MS: u64 = 5 * 60 * 1000;
/// Default maximum age of `issuedAt`: 5 minutes.
pub const DEFAULT_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// Default tolerance for server clocks drifting apart: 5 seconds.
pub const DEFAULT_CLOCK_SKEW_MS: u64 = 5 * 1000;

/// Server configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SiwxServerConfig {
    /// The public origin clients reach, e.g. `https://api.example.com`
    /// (scheme and authority only). Domain and URIs derive from it — never
    /// from a request's `Host` header.
    pub origin: String,
    /// Statement shown to the user.
    pub statement: Option<String>,
    /// Lifetime of a challenge and its nonce.
    pub challenge_ttl_ms: u64,
    /// Maximum age of `issuedAt` at verification.
    pub max_age_ms: u64,
    /// Tolerated clock drift for `issuedAt` / `notBefore` in the future.
    pub clock_skew_ms: u64,
}

impl SiwxServerConfig {
    /// Defaults for `origin`.
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            statement: None,
            challenge_ttl_ms: DEFAULT_CHALLENGE_TTL_MS,
            max_age_ms: DEFAULT_MAX_AGE_MS,
            clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
        }
    }

    /// Sets the statement.
    pub fn statement(mut self, statement: impl Into<String>) -> Self {
        self.statement = Some(statement.into());
        self
    }
}

/// Why a sign-in was refused (or could not be processed). Every rejection
/// has its own variant; [`SiwxError::reason`] gives a stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiwxError {
    /// The configured origin is not `http(s)://authority`.
    #[error("invalid configured origin {0:?} (expected scheme://host[:port])")]
    InvalidOrigin(String),
    /// The resource path is not an absolute path.
    #[error("invalid resource path {0:?}")]
    InvalidPath(String),
    /// The header is not base64 JSON of a proof.
    #[error("malformed SIGN-IN-WITH-X header: {0}")]
    MalformedHeader(#[from] DecodeError),
    /// `version` is not `"1"`.
    #[error("unsupported sign-in version {0:?}")]
    UnsupportedVersion(String),
    /// `domain` is not our configured domain.
    #[error("domain {got:?} does not match {expected:?}")]
    DomainMismatch {
        /// Ours.
        expected: String,
        /// The proof's.
        got: String,
    },
    /// `uri` is not the URI of the requested resource.
    #[error("uri {got:?} does not match the requested resource {expected:?}")]
    UriMismatch {
        /// The requested resource's URI.
        expected: String,
        /// The proof's.
        got: String,
    },
    /// A timestamp is malformed.
    #[error("invalid {field}: {source}")]
    InvalidTimestamp {
        /// The field.
        field: &'static str,
        /// Why.
        #[source]
        source: TimeError,
    },
    /// `issuedAt` is in the future.
    #[error("issuedAt is in the future")]
    IssuedInFuture,
    /// `issuedAt` is older than the maximum age.
    #[error("issuedAt is older than the allowed {max_age_ms} ms")]
    IssuedTooLongAgo {
        /// The configured maximum age.
        max_age_ms: u64,
    },
    /// `expirationTime` has passed.
    #[error("sign-in message expired")]
    Expired,
    /// `notBefore` is in the future.
    #[error("sign-in message is not valid yet (notBefore)")]
    NotYetValid,
    /// The nonce was not issued by this server.
    #[error("nonce was not issued by this server")]
    UnknownNonce,
    /// The nonce was already used (replay).
    #[error("nonce was already used")]
    NonceReused,
    /// The nonce expired.
    #[error("nonce expired")]
    NonceExpired,
    /// The nonce was issued for another resource.
    #[error("nonce was issued for another resource")]
    NonceForOtherResource,
    /// `chainId` is not among the route's supported chains.
    #[error("chain {0:?} is not supported for this resource")]
    UnsupportedChain(String),
    /// `type` does not match the chain family.
    #[error("signature type {got:?} is not {expected:?} for this chain")]
    TypeMismatch {
        /// The family's type.
        expected: String,
        /// The proof's.
        got: String,
    },
    /// The message cannot be reconstructed (malformed address, nonce, ...).
    #[error("invalid sign-in message: {0}")]
    InvalidMessage(#[from] MessageError),
    /// The signature does not verify.
    #[error("signature rejected: {0}")]
    Signature(#[from] VerifyError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SiwxError {
    /// Stable machine-readable code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidOrigin(_) => "siwx_invalid_origin",
            Self::InvalidPath(_) => "siwx_invalid_path",
            Self::MalformedHeader(_) => "siwx_malformed_header",
            Self::UnsupportedVersion(_) => "siwx_unsupported_version",
            Self::DomainMismatch { .. } => "siwx_domain_mismatch",
            Self::UriMismatch { .. } => "siwx_uri_mismatch",
            Self::InvalidTimestamp { .. } => "siwx_invalid_timestamp",
            Self::IssuedInFuture => "siwx_issued_in_future",
            Self::IssuedTooLongAgo { .. } => "siwx_issued_too_long_ago",
            Self::Expired => "siwx_expired",
            Self::NotYetValid => "siwx_not_yet_valid",
            Self::UnknownNonce => "siwx_unknown_nonce",
            Self::NonceReused => "siwx_nonce_reused",
            Self::NonceExpired => "siwx_nonce_expired",
            Self::NonceForOtherResource => "siwx_nonce_other_resource",
            Self::UnsupportedChain(_) => "siwx_unsupported_chain",
            Self::TypeMismatch { .. } => "siwx_type_mismatch",
            Self::InvalidMessage(_) => "siwx_invalid_message",
            Self::Signature(VerifyError::Rpc(_)) => "siwx_verifier_unavailable",
            Self::Signature(_) => "siwx_invalid_signature",
            Self::Store(_) => "siwx_store_unavailable",
        }
    }

    /// Whether the failure is on our side (store or RPC down) rather than a
    /// bad proof; such requests deserve a 503 rather than a fresh 402.
    pub fn is_server_fault(&self) -> bool {
        matches!(
            self,
            Self::Store(_) | Self::Signature(VerifyError::Rpc(_)) | Self::InvalidOrigin(_)
        )
    }
}

/// A successful sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The proven address, as the proof wrote it.
    pub address: String,
    /// The chain the proof was signed for.
    pub network: ChainId,
    /// The resource URI the proof was for.
    pub uri: String,
    /// The consumed nonce.
    pub nonce: String,
}

/// Issues challenges and validates proofs.
pub struct SiwxServer {
    config: SiwxServerConfig,
    origin: String,
    domain: String,
    verifiers: VerifierRegistry,
    nonces: Arc<dyn NonceStore>,
    clock: Clock,
}

impl std::fmt::Debug for SiwxServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiwxServer")
            .field("config", &self.config)
            .field("verifiers", &self.verifiers)
            .finish_non_exhaustive()
    }
}

/// Splits `scheme://authority` into (normalised origin, domain).
fn parse_origin(origin: &str) -> Option<(String, String)> {
    let origin = origin.strip_suffix('/').unwrap_or(origin);
    let (scheme, authority) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https")
        || authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]".contains(&b))
    {
        return None;
    }
    let domain = authority.to_ascii_lowercase();
    Some((format!("{scheme}://{domain}"), domain))
}

fn parse_time(field: &'static str, value: &str) -> Result<u64, SiwxError> {
    parse_rfc3339(value).map_err(|source| SiwxError::InvalidTimestamp { field, source })
}

impl SiwxServer {
    /// A server for `config.origin` with these verifiers and nonce store.
    pub fn new(
        config: SiwxServerConfig,
        verifiers: VerifierRegistry,
        nonces: Arc<dyn NonceStore>,
    ) -> Result<Self, SiwxError> {
        let (origin, domain) = parse_origin(&config.origin)
            .ok_or_else(|| SiwxError::InvalidOrigin(config.origin.clone()))?;
        Ok(Self {
            config,
            origin,
            domain,
            verifiers,
            nonces,
            clock: system_clock(),
        })
    }

    /// Replaces the clock (Unix milliseconds), for tests.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The configured domain (`host[:port]`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The current time according to the server clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The full URI of the resource at `path` (which must start with `/`)
    /// under the configured origin.
    pub fn resource_uri(&self, path: &str) -> Result<String, SiwxError> {
        if !path.starts_with('/')
            || path.starts_with("//")
            || path.len() > 2048
            || !path.bytes().all(|b| b.is_ascii_graphic())
            || path.contains('#')
        {
            return Err(SiwxError::InvalidPath(path.chars().take(80).collect()));
        }
        Ok(format!("{}{path}", self.origin))
    }

    /// `supportedChains` for a route accepting `accepted` networks: those
    /// with a registered verifier, in order, without duplicates.
    pub fn supported_chains(&self, accepted: &[ChainId]) -> Vec<SupportedChain> {
        let mut out: Vec<SupportedChain> = Vec::new();
        for chain in accepted {
            let Some(verifier) = self.verifiers.get(chain) else {
                continue;
            };
            if out.iter().any(|c| c.chain_id == chain.as_str()) {
                continue;
            }
            out.push(SupportedChain {
                chain_id: chain.to_string(),
                kind: verifier.signature_type().to_owned(),
                signature_scheme: verifier.signature_scheme(chain).map(str::to_owned),
            });
        }
        out
    }

    /// Issues a fresh challenge for the resource at `path` on a route that
    /// accepts `accepted`; the nonce is stored until the challenge expires.
    /// Put the result in the 402 with [`SiwxExtension::insert_into`].
    pub async fn challenge(
        &self,
        path: &str,
        accepted: &[ChainId],
    ) -> Result<SiwxExtension, SiwxError> {
        let uri = self.resource_uri(path)?;
        let now = self.now();
        let expires_at = now.saturating_add(self.config.challenge_ttl_ms);
        let nonce = crate::random::random_hex128();
        self.nonces
            .issue_nonce(&nonce, &uri, now, expires_at)
            .await?;
        let info = SiwxInfo {
            domain: self.domain.clone(),
            uri: uri.clone(),
            version: SIWX_VERSION.to_owned(),
            nonce,
            issued_at: format_rfc3339(now),
            expiration_time: Some(format_rfc3339(expires_at)),
            not_before: None,
            statement: self.config.statement.clone(),
            request_id: None,
            resources: Some(vec![uri]),
        };
        Ok(SiwxExtension::new(info, self.supported_chains(accepted)))
    }

    /// Decodes and validates a `SIGN-IN-WITH-X` header for the resource at
    /// `path` on a route accepting `accepted`; consumes the nonce on success.
    pub async fn verify_header(
        &self,
        header: &[u8],
        path: &str,
        accepted: &[ChainId],
    ) -> Result<SignedIn, SiwxError> {
        let proof = SiwxProof::from_header(header)?;
        self.verify_proof(&proof, path, accepted).await
    }

    /// Validates a decoded proof; see [`SiwxServer::verify_header`]. Cheap
    /// checks run first; the nonce is consumed only after the signature
    /// verified, atomically, so a replay or a race loses.
    pub async fn verify_proof(
        &self,
        proof: &SiwxProof,
        path: &str,
        accepted: &[ChainId],
    ) -> Result<SignedIn, SiwxError> {
        let result = self.verify_inner(proof, path, accepted).await;
        if let Err(error) = &result {
            tracing::debug!(reason = error.reason(), %error, "sign-in rejected");
        }
        result
    }

    async fn verify_inner(
        &self,
        proof: &SiwxProof,
        path: &str,
        accepted: &[ChainId],
    ) -> Result<SignedIn, SiwxError> {
        self.check_bound_to_this_resource(proof, path)?;
        let (chain, verifier) = self.verifier_for(proof, accepted)?;
        let now = self.now();
        self.check_time_window(proof, now)?;

        let message = SiwxMessage::from_proof(proof)?.to_text()?;
        nonce_result(
            self.nonces
                .check_nonce(&proof.nonce, &proof.uri, now)
                .await?,
        )?;
        verifier
            .verify(&chain, &proof.address, &message, &proof.signature)
            .await?;
        nonce_result(
            self.nonces
                .consume_nonce(&proof.nonce, &proof.uri, now)
                .await?,
        )?;
        tracing::debug!(address = %proof.address, %chain, "sign-in accepted");
        Ok(SignedIn {
            address: proof.address.clone(),
            network: chain,
            uri: proof.uri.clone(),
            nonce: proof.nonce.clone(),
        })
    }

    /// The proof speaks our message version and names this server's domain
    /// and the resource at `path` under the configured origin.
    fn check_bound_to_this_resource(&self, proof: &SiwxProof, path: &str) -> Result<(), SiwxError> {
        if proof.version != SIWX_VERSION {
            return Err(SiwxError::UnsupportedVersion(
                proof.version.chars().take(16).collect(),
            ));
        }
        if proof.domain != self.domain {
            return Err(SiwxError::DomainMismatch {
                expected: self.domain.clone(),
                got: proof.domain.chars().take(255).collect(),
            });
        }
        let expected_uri = self.resource_uri(path)?;
        if proof.uri != expected_uri {
            return Err(SiwxError::UriMismatch {
                expected: expected_uri,
                got: proof.uri.chars().take(255).collect(),
            });
        }
        Ok(())
    }

    /// The proof's chain, if the route accepts it and a verifier for it is
    /// registered with the signature type the proof claims.
    fn verifier_for(
        &self,
        proof: &SiwxProof,
        accepted: &[ChainId],
    ) -> Result<(ChainId, &Arc<dyn SiwxVerifier>), SiwxError> {
        let unsupported = || SiwxError::UnsupportedChain(proof.chain_id.chars().take(64).collect());
        let chain = ChainId::parse(&proof.chain_id).map_err(|_| unsupported())?;
        if !accepted.contains(&chain) {
            return Err(unsupported());
        }
        let verifier = self.verifiers.get(&chain).ok_or_else(unsupported)?;
        if proof.kind != verifier.signature_type() {
            return Err(SiwxError::TypeMismatch {
                expected: verifier.signature_type().to_owned(),
                got: proof.kind.chars().take(32).collect(),
            });
        }
        Ok((chain, verifier))
    }

    /// `issuedAt` is recent and not in the future, `expirationTime` has not
    /// passed and `notBefore` has (within the tolerated clock skew).
    fn check_time_window(&self, proof: &SiwxProof, now: u64) -> Result<(), SiwxError> {
        let skew = self.config.clock_skew_ms;
        let issued_at = parse_time("issuedAt", &proof.issued_at)?;
        if issued_at > now.saturating_add(skew) {
            return Err(SiwxError::IssuedInFuture);
        }
        if now.saturating_sub(issued_at) > self.config.max_age_ms {
            return Err(SiwxError::IssuedTooLongAgo {
                max_age_ms: self.config.max_age_ms,
            });
        }
        if let Some(value) = &proof.expiration_time
            && parse_time("expirationTime", value)? <= now
        {
            return Err(SiwxError::Expired);
        }
        if let Some(value) = &proof.not_before
            && parse_time("notBefore", value)? > now.saturating_add(skew)
        {
            return Err(SiwxError::NotYetValid);
        }
        Ok(())
    }
}

fn nonce_result(state: NonceState) -> Result<(), SiwxError> {
    match state {
        NonceState::Valid => Ok(()),
        NonceState::Unknown => Err(SiwxError::UnknownNonce),
        NonceState::Used => Err(SiwxError::NonceReused),
        NonceState::Expired => Err(SiwxError::NonceExpired),
        NonceState::WrongResource => Err(SiwxError::NonceForOtherResource),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            parse_origin("https://API.example.com/"),
            Some(("https://api.example.com".into(), "api.example.com".into()))
        );
        assert_eq!(
            parse_origin("http://localhost:8080"),
            Some(("http://localhost:8080".into(), "localhost:8080".into()))
        );
        for bad in [
            "api.example.com",
            "ftp://a.example",
            "https://",
            "https://a.example/path",
            "https://user@a.example",
            "https://a.example?x",
        ] {
            assert!(parse_origin(bad).is_none(), "{bad}");
        }
    }
}
