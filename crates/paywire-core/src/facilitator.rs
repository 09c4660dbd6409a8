//! The facilitator abstraction the resource server talks to, and an
//! in-process implementation that dispatches to registered scheme plugins.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::chain::ChainIdPattern;
use crate::reason::ErrorReason;
use crate::scheme::{
    BoxFuture, NoObserver, SchemeError, SchemeFacilitator, SchemeRegistry, SettlementLookup,
    SettlementObserver,
};
use crate::types::{
    FacilitatorRequest, SettleResponse, SupportedKind, SupportedResponse, VerifyResponse,
    X402_VERSION,
};

/// Why a facilitator call failed outright (as opposed to answering
/// "invalid" or "not settled", which are normal responses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FacilitatorError {
    /// The facilitator could not be reached.
    #[error("facilitator unreachable: {0}")]
    Transport(String),
    /// The facilitator answered with an unexpected HTTP status.
    #[error("facilitator answered HTTP {status}: {body}")]
    Http {
        /// Status code.
        status: u16,
        /// Body (truncated).
        body: String,
    },
    /// The facilitator's answer could not be decoded.
    #[error("facilitator answer undecodable: {0}")]
    Decode(String),
    /// The request was refused before reaching a scheme (bad version, …).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A scheme plugin failed (chain unreachable, signer unavailable, …).
    #[error("scheme failure: {0}")]
    Scheme(#[from] SchemeError),
}

/// Verify, settle and list capabilities. Implemented by the HTTP client for a
/// remote facilitator, by [`LocalFacilitator`], and by routing/failover sets.
pub trait Facilitator: Send + Sync {
    /// `POST /verify`.
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>>;

    /// `POST /settle`.
    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>>;

    /// `GET /supported`.
    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>>;

    /// [`Facilitator::settle`], reporting each broadcast to `observer` before
    /// it happens. Remote facilitators cannot observe and use the default.
    fn settle_observed<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        observer: &'a dyn SettlementObserver,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        let _ = observer;
        self.settle(request)
    }

    /// The payer of `request` when a cheap local check proves that the payer
    /// signed it (per-payer rate limits key on this, so that a payload
    /// merely claiming someone's address cannot spend their allowance);
    /// `None` when it cannot be proven without the chain.
    fn authenticated_payer(&self, request: &FacilitatorRequest) -> Option<String> {
        let _ = request;
        None
    }

    /// What `request` spends, independent of its spelling
    /// ([`crate::SchemeFacilitator::spend_key`]).
    fn spend_key(&self, request: &FacilitatorRequest) -> Option<String> {
        let _ = request;
        None
    }

    /// The reason a replay of `request` (a payment already settled and
    /// answered) is refused with: its scheme's "already used" code.
    fn replay_reason(&self, request: &FacilitatorRequest) -> ErrorReason {
        let _ = request;
        ErrorReason::DUPLICATE_SETTLEMENT
    }

    /// What the chain says about `request`'s payment, read without sending
    /// anything (see [`SchemeFacilitator::lookup_settlement`]); `Ok(None)`
    /// when it cannot tell (the default: remote facilitators).
    fn lookup_settlement<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        known_transaction: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SettlementLookup>, FacilitatorError>> {
        let _ = (request, known_transaction);
        Box::pin(async { Ok(None) })
    }

    /// Whether `caller` (the id of the API key the HTTP caller presented,
    /// never the key) may verify or settle `request`
    /// ([`SchemeFacilitator::admit_caller`]). The default admits everyone.
    fn admit_caller(
        &self,
        caller: Option<&str>,
        request: &FacilitatorRequest,
    ) -> Result<(), ErrorReason> {
        let _ = (caller, request);
        Ok(())
    }

    /// Whether an identical repeat of a settled `request` must get the
    /// recorded answer again ([`SchemeFacilitator::idempotent_settle`]).
    fn idempotent_settle(&self, request: &FacilitatorRequest) -> bool {
        let _ = request;
        false
    }
}

impl<T: Facilitator + ?Sized> Facilitator for Arc<T> {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        (**self).verify(request)
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        (**self).settle(request)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        (**self).supported()
    }

    fn settle_observed<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        observer: &'a dyn SettlementObserver,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        (**self).settle_observed(request, observer)
    }

    fn authenticated_payer(&self, request: &FacilitatorRequest) -> Option<String> {
        (**self).authenticated_payer(request)
    }

    fn replay_reason(&self, request: &FacilitatorRequest) -> ErrorReason {
        (**self).replay_reason(request)
    }

    fn spend_key(&self, request: &FacilitatorRequest) -> Option<String> {
        (**self).spend_key(request)
    }

    fn lookup_settlement<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        known_transaction: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SettlementLookup>, FacilitatorError>> {
        (**self).lookup_settlement(request, known_transaction)
    }

    fn admit_caller(
        &self,
        caller: Option<&str>,
        request: &FacilitatorRequest,
    ) -> Result<(), ErrorReason> {
        (**self).admit_caller(caller, request)
    }

    fn idempotent_settle(&self, request: &FacilitatorRequest) -> bool {
        (**self).idempotent_settle(request)
    }
}

/// A facilitator running in this process: routes each request to the scheme
/// plugin registered for its (scheme, network).
#[derive(Clone, Default)]
pub struct LocalFacilitator {
    schemes: SchemeRegistry<dyn SchemeFacilitator>,
    extensions: Vec<String>,
}

/// Outcome of the checks every request goes through before a plugin sees it.
enum Routed<'a> {
    Plugin(&'a Arc<dyn SchemeFacilitator>),
    Rejected(ErrorReason, String),
}

impl LocalFacilitator {
    /// A facilitator with no schemes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a scheme plugin for the networks it reports.
    pub fn register(&mut self, plugin: Arc<dyn SchemeFacilitator>) -> &mut Self {
        let networks = plugin.networks();
        let pattern = match networks.len() {
            1 => ChainIdPattern::Exact(networks[0].clone()),
            _ => ChainIdPattern::Set(networks.into_iter().map(ChainIdPattern::Exact).collect()),
        };
        let scheme = plugin.scheme().to_owned();
        self.schemes.register(scheme, pattern, plugin);
        self
    }

    /// Declares an extension identifier in `/supported`.
    pub fn declare_extension(&mut self, extension: impl Into<String>) -> &mut Self {
        self.extensions.push(extension.into());
        self
    }

    fn route<'a>(&'a self, request: &FacilitatorRequest) -> Routed<'a> {
        let payload = &request.payment_payload;
        let requirements = &request.payment_requirements;
        if request.x402_version != X402_VERSION || payload.x402_version != X402_VERSION {
            return Routed::Rejected(
                ErrorReason::INVALID_X402_VERSION,
                format!(
                    "x402Version {} / payload {} not supported; expected {X402_VERSION}",
                    request.x402_version, payload.x402_version
                ),
            );
        }
        if payload.accepted.scheme != requirements.scheme {
            return Routed::Rejected(
                ErrorReason::INVALID_SCHEME,
                format!(
                    "payload scheme {:?} differs from required {:?}",
                    payload.accepted.scheme, requirements.scheme
                ),
            );
        }
        if payload.accepted.network != requirements.network {
            return Routed::Rejected(
                ErrorReason::INVALID_NETWORK,
                format!(
                    "payload network {} differs from required {}",
                    payload.accepted.network, requirements.network
                ),
            );
        }
        match self
            .schemes
            .find(&requirements.scheme, &requirements.network)
        {
            Some(plugin) => Routed::Plugin(plugin),
            None => Routed::Rejected(
                ErrorReason::UNSUPPORTED_SCHEME,
                format!(
                    "scheme {:?} on {} is not supported here",
                    requirements.scheme, requirements.network
                ),
            ),
        }
    }
}

impl Facilitator for LocalFacilitator {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            match self.route(request) {
                Routed::Rejected(reason, message) => {
                    Ok(VerifyResponse::invalid(reason, None).with_message(message))
                }
                Routed::Plugin(plugin) => plugin
                    .verify(&request.payment_payload, &request.payment_requirements)
                    .await
                    .map_err(FacilitatorError::Scheme),
            }
        })
    }

    fn authenticated_payer(&self, request: &FacilitatorRequest) -> Option<String> {
        match self.route(request) {
            Routed::Plugin(plugin) => {
                plugin.authenticated_payer(&request.payment_payload, &request.payment_requirements)
            }
            Routed::Rejected(..) => None,
        }
    }

    fn spend_key(&self, request: &FacilitatorRequest) -> Option<String> {
        match self.route(request) {
            Routed::Plugin(plugin) => {
                plugin.spend_key(&request.payment_payload, &request.payment_requirements)
            }
            Routed::Rejected(..) => None,
        }
    }

    fn replay_reason(&self, request: &FacilitatorRequest) -> ErrorReason {
        match self.route(request) {
            Routed::Plugin(plugin) => plugin.replay_reason(),
            Routed::Rejected(..) => ErrorReason::DUPLICATE_SETTLEMENT,
        }
    }

    fn admit_caller(
        &self,
        caller: Option<&str>,
        request: &FacilitatorRequest,
    ) -> Result<(), ErrorReason> {
        match self.route(request) {
            Routed::Plugin(plugin) => plugin.admit_caller(
                caller,
                &request.payment_payload,
                &request.payment_requirements,
            ),
            // Refused later with the routing reason.
            Routed::Rejected(..) => Ok(()),
        }
    }

    fn idempotent_settle(&self, request: &FacilitatorRequest) -> bool {
        match self.route(request) {
            Routed::Plugin(plugin) => plugin.idempotent_settle(),
            Routed::Rejected(..) => false,
        }
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.settle_observed(request, &NoObserver)
    }

    fn lookup_settlement<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        known_transaction: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SettlementLookup>, FacilitatorError>> {
        Box::pin(async move {
            match self.route(request) {
                Routed::Rejected(..) => Ok(None),
                Routed::Plugin(plugin) => plugin
                    .lookup_settlement(
                        &request.payment_payload,
                        &request.payment_requirements,
                        known_transaction,
                    )
                    .await
                    .map_err(FacilitatorError::Scheme),
            }
        })
    }

    fn settle_observed<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        observer: &'a dyn SettlementObserver,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            match self.route(request) {
                Routed::Rejected(reason, message) => Ok(SettleResponse::failed(
                    request.payment_requirements.network.clone(),
                    reason,
                    None,
                    "",
                )
                .with_message(message)),
                Routed::Plugin(plugin) => plugin
                    .settle_observed(
                        &request.payment_payload,
                        &request.payment_requirements,
                        observer,
                    )
                    .await
                    .map_err(FacilitatorError::Scheme),
            }
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        let mut kinds = Vec::new();
        let mut signers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (scheme, _, plugin) in self.schemes.iter() {
            for network in plugin.networks() {
                kinds.push(SupportedKind {
                    x402_version: X402_VERSION,
                    scheme: scheme.to_owned(),
                    network: network.to_string(),
                    extra: plugin.kind_extra(&network),
                });
                let entry = signers
                    .entry(format!("{}:*", network.namespace()))
                    .or_default();
                for signer in plugin.signers(&network) {
                    if !entry.contains(&signer) {
                        entry.push(signer);
                    }
                }
            }
        }
        let response = SupportedResponse {
            kinds,
            extensions: self.extensions.clone(),
            signers,
        };
        Box::pin(async move { Ok(response) })
    }
}
