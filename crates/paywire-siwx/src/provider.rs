//! Client glue (feature `client`): [`SiwxSignIn`] is a paywire-client
//! [`SignInProvider`] that answers a payment request's sign-in-with-x
//! challenge before the client pays, and keeps the session tokens
//! ([`SESSION_HEADER`]) servers issue after a sign-in so that returning
//! requests skip the payment request altogether.
//!
//! Tokens are cached per origin (scheme, host, port) and path prefix (the
//! directory of the signed-in path: a token earned on `/api/report` is sent
//! to `/api/*` of the same origin, never to another origin). A token the
//! server answers with a 402 is dropped and the client signs in again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use paywire_client::{AnswerFields, Credential, SignInProvider};
use paywire_core::codec::SIGN_IN_WITH_X_HEADER;
use paywire_core::{BoxFuture, ChainId, PaymentRequired};
use url::Url;

use crate::client::{SiwxSigner, select_chain, sign_in};
use crate::types::{SESSION_HEADER, SiwxExtension};

/// Signs in with one wallet on the chains it can sign for.
#[derive(Clone)]
pub struct SiwxSignIn {
    signer: Arc<dyn SiwxSigner>,
    /// `None`: any chain of the signer's namespace.
    chains: Option<Vec<ChainId>>,
    sessions: Arc<Mutex<Sessions>>,
}

/// Session tokens by origin, then by path prefix.
type Sessions = HashMap<String, Vec<(String, String)>>;

/// The cache key of `url`: its origin and the directory of its path.
fn session_key(url: &Url) -> (String, String) {
    let path = url.path();
    let prefix = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    (url.origin().ascii_serialization(), prefix.to_owned())
}

impl std::fmt::Debug for SiwxSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiwxSignIn")
            .field("address", &self.signer.address())
            .field("chains", &self.chains)
            .finish_non_exhaustive()
    }
}

impl SiwxSignIn {
    /// Signs with `signer` on any of `chains` the server supports (first
    /// match in the server's `supportedChains` order).
    pub fn new(signer: Arc<dyn SiwxSigner>, chains: Vec<ChainId>) -> Self {
        Self {
            signer,
            chains: Some(chains),
            sessions: Arc::default(),
        }
    }

    /// Signs with `signer` on whichever chain of its namespace (`eip155:*`
    /// for an EVM wallet) the server lists first.
    pub fn any_chain(signer: Arc<dyn SiwxSigner>) -> Self {
        Self {
            signer,
            chains: None,
            sessions: Arc::default(),
        }
    }

    /// The chain to sign in on for `extension`.
    fn chain_for(&self, extension: &SiwxExtension) -> Option<ChainId> {
        match &self.chains {
            Some(chains) => select_chain(extension, chains),
            None => extension.supported_chains.iter().find_map(|entry| {
                ChainId::parse(&entry.chain_id)
                    .ok()
                    .filter(|chain| chain.namespace() == self.signer.namespace())
            }),
        }
    }

    /// How many session tokens are cached.
    pub fn cached_sessions(&self) -> usize {
        self.sessions
            .lock()
            .map_or(0, |s| s.values().map(Vec::len).sum())
    }

    /// The cached token for `url`: the longest prefix of its path.
    fn token_for(&self, url: &Url) -> Option<(String, String)> {
        let (origin, _) = session_key(url);
        let sessions = self.sessions.lock().ok()?;
        sessions
            .get(&origin)?
            .iter()
            .filter(|(prefix, _)| url.path().starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .cloned()
    }
}

/// `host[:port]` of `url`, as it appears in a challenge's `domain`.
fn authority(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

impl SignInProvider for SiwxSignIn {
    fn session(&self, url: &Url) -> Option<Credential> {
        let (_, token) = self.token_for(url)?;
        Some(Credential::new(SESSION_HEADER, token))
    }

    fn remember(&self, url: &Url, answer: &dyn AnswerFields) {
        let Some(token) = answer.field(SESSION_HEADER) else {
            return;
        };
        let (origin, prefix) = session_key(url);
        if let Ok(mut sessions) = self.sessions.lock() {
            let entries = sessions.entry(origin).or_default();
            entries.retain(|(p, _)| *p != prefix);
            entries.push((prefix, token.to_owned()));
        }
    }

    fn forget(&self, url: &Url) {
        let Some((prefix, token)) = self.token_for(url) else {
            return;
        };
        let (origin, _) = session_key(url);
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(entries) = sessions.get_mut(&origin)
        {
            entries.retain(|(p, t)| !(*p == prefix && *t == token));
            if entries.is_empty() {
                sessions.remove(&origin);
            }
        }
    }

    fn sign_in<'a>(
        &'a self,
        url: &'a Url,
        required: &'a PaymentRequired,
    ) -> BoxFuture<'a, Option<Credential>> {
        Box::pin(async move {
            let extension = match SiwxExtension::from_extensions(required.extensions.as_ref()?)? {
                Ok(extension) => extension,
                Err(error) => {
                    tracing::warn!(%error, "malformed sign-in-with-x challenge; paying instead");
                    return None;
                }
            };
            let chain = self.chain_for(&extension)?;
            let host = authority(url)?;
            match sign_in(&extension, &host, &chain, self.signer.as_ref()).await {
                Ok(proof) => Some(Credential::new(SIGN_IN_WITH_X_HEADER, proof.to_header())),
                Err(error) => {
                    tracing::warn!(%error, "not signing in; paying instead");
                    None
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::SolanaSiwxSigner;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn with_token(token: &str) -> paywire_core::JsonObject {
        let mut fields = paywire_core::JsonObject::new();
        fields.insert(SESSION_HEADER.into(), token.into());
        fields
    }

    fn token(provider: &SiwxSignIn, at: &str) -> Option<String> {
        provider
            .session(&url(at))
            .map(|credential| credential.value)
    }

    #[test]
    fn session_tokens_are_kept_per_origin_and_path_prefix() {
        let provider = SiwxSignIn::any_chain(Arc::new(SolanaSiwxSigner::from_seed(&[1; 32])));
        // Responses without a token are ignored.
        provider.remember(
            &url("https://a.test/api/x"),
            &paywire_core::JsonObject::new(),
        );
        assert_eq!(provider.cached_sessions(), 0);

        provider.remember(&url("https://a.test/api/x"), &with_token("t1"));
        assert_eq!(
            token(&provider, "https://a.test/api/x").as_deref(),
            Some("t1")
        );
        assert_eq!(
            token(&provider, "https://a.test/api/y?q=1").as_deref(),
            Some("t1")
        );
        // Never to another path prefix, scheme, host or port.
        assert_eq!(token(&provider, "https://a.test/other"), None);
        assert_eq!(token(&provider, "http://a.test/api/x"), None);
        assert_eq!(token(&provider, "https://b.test/api/x"), None);
        assert_eq!(token(&provider, "https://a.test:8443/api/x"), None);

        // The longest prefix wins; a new sign-in replaces the token.
        provider.remember(&url("https://a.test/api/v2/x"), &with_token("t2"));
        assert_eq!(
            token(&provider, "https://a.test/api/v2/z").as_deref(),
            Some("t2")
        );
        assert_eq!(
            token(&provider, "https://a.test/api/z").as_deref(),
            Some("t1")
        );
        provider.remember(&url("https://a.test/api/q"), &with_token("t3"));
        assert_eq!(
            token(&provider, "https://a.test/api/z").as_deref(),
            Some("t3")
        );
        assert_eq!(provider.cached_sessions(), 2);

        // A refused token is forgotten, the others stay.
        provider.forget(&url("https://a.test/api/v2/z"));
        assert_eq!(
            token(&provider, "https://a.test/api/v2/z").as_deref(),
            Some("t3")
        );
        provider.forget(&url("https://a.test/api/z"));
        assert_eq!(token(&provider, "https://a.test/api/z"), None);
        assert_eq!(provider.cached_sessions(), 0);
    }
}
