//! Short-lived session tokens issued after a valid sign-in, so the next
//! requests skip the signature check: `hex(claims JSON) "." hex(HMAC-SHA256)`
//! under a server secret, bound to address, network, scope and expiry, and
//! revocable through [`EntitlementStore::revoke_session`].

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::store::{EntitlementStore, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a session token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The secret is shorter than 32 bytes.
    #[error("session secret must be at least 32 bytes")]
    WeakSecret,
    /// Not a token of ours (shape, size or MAC).
    #[error("invalid session token")]
    Invalid,
    /// Past its expiry.
    #[error("session token expired")]
    Expired,
    /// Issued for another scope.
    #[error("session token is for another scope")]
    WrongScope,
    /// On the revocation list.
    #[error("session token revoked")]
    Revoked,
    /// The revocation list could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Random token id (for revocation).
    pub id: String,
    /// Signed-in address.
    pub address: String,
    /// CAIP-2 network of the sign-in.
    pub network: String,
    /// Scope (route pattern or resource) the token opens.
    pub scope: String,
    /// Expiry, Unix milliseconds.
    pub expires_at: u64,
}

/// Issues and checks session tokens.
pub struct SessionTokens {
    keyed: HmacSha256,
    ttl_ms: u64,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl SessionTokens {
    /// Tokens signed with `secret` (at least 32 bytes), valid `ttl_ms`.
    pub fn new(secret: &[u8], ttl_ms: u64) -> Result<Self, SessionError> {
        if secret.len() < 32 {
            return Err(SessionError::WeakSecret);
        }
        let keyed = HmacSha256::new_from_slice(secret).map_err(|_| SessionError::WeakSecret)?;
        Ok(Self { keyed, ttl_ms })
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(payload);
        mac
    }

    /// A new token for `address` on `network` and `scope`, valid from `now`.
    pub fn issue(
        &self,
        address: &str,
        network: &str,
        scope: &str,
        now: u64,
    ) -> (String, SessionClaims) {
        let claims = SessionClaims {
            id: crate::random::random_hex128(),
            address: address.to_owned(),
            network: network.to_owned(),
            scope: scope.to_owned(),
            expires_at: now.saturating_add(self.ttl_ms),
        };
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let tag = self.mac(&payload).finalize().into_bytes();
        (
            format!("{}.{}", hex::encode(&payload), hex::encode(tag)),
            claims,
        )
    }

    /// Checks MAC, expiry and scope (not revocation; see [`Self::verify_with`]).
    pub fn verify(
        &self,
        token: &str,
        scope: &str,
        now: u64,
    ) -> Result<SessionClaims, SessionError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(SessionError::Invalid);
        }
        let (payload, tag) = token.split_once('.').ok_or(SessionError::Invalid)?;
        let payload = hex::decode(payload).map_err(|_| SessionError::Invalid)?;
        let tag = hex::decode(tag).map_err(|_| SessionError::Invalid)?;
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| SessionError::Invalid)?;
        let claims: SessionClaims =
            serde_json::from_slice(&payload).map_err(|_| SessionError::Invalid)?;
        if now >= claims.expires_at {
            return Err(SessionError::Expired);
        }
        if claims.scope != scope {
            return Err(SessionError::WrongScope);
        }
        Ok(claims)
    }

    /// [`Self::verify`], then the revocation list.
    pub async fn verify_with(
        &self,
        token: &str,
        scope: &str,
        now: u64,
        store: &dyn EntitlementStore,
    ) -> Result<SessionClaims, SessionError> {
        let claims = self.verify(token, scope, now)?;
        if store.is_session_revoked(&claims.id).await? {
            return Err(SessionError::Revoked);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn issue_verify_expire_revoke() {
        let tokens = SessionTokens::new(&[7; 32], 1000).unwrap();
        let store = MemoryStore::new();
        let (token, claims) = tokens.issue("0xabc", "eip155:8453", "/api/*", 100);
        assert_eq!(tokens.verify(&token, "/api/*", 500), Ok(claims.clone()));
        assert_eq!(
            tokens.verify(&token, "/other", 500),
            Err(SessionError::WrongScope)
        );
        assert_eq!(
            tokens.verify(&token, "/api/*", 1100),
            Err(SessionError::Expired)
        );
        let mut forged = token.clone();
        forged.pop();
        forged.push('0');
        if forged == token {
            forged.pop();
            forged.push('1');
        }
        assert_eq!(
            tokens.verify(&forged, "/api/*", 500),
            Err(SessionError::Invalid)
        );
        let other = SessionTokens::new(&[8; 32], 1000).unwrap();
        assert_eq!(
            other.verify(&token, "/api/*", 500),
            Err(SessionError::Invalid)
        );
        assert!(
            tokens
                .verify_with(&token, "/api/*", 500, &store)
                .await
                .is_ok()
        );
        store
            .revoke_session(&claims.id, claims.expires_at)
            .await
            .unwrap();
        assert_eq!(
            tokens.verify_with(&token, "/api/*", 500, &store).await,
            Err(SessionError::Revoked)
        );
        assert_eq!(
            SessionTokens::new(&[1; 16], 1).err(),
            Some(SessionError::WeakSecret)
        );
        assert_eq!(
            tokens.verify("garbage", "/api/*", 0),
            Err(SessionError::Invalid)
        );
    }
}
