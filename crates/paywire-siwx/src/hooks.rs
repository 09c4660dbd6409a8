//! Server glue (feature `server`): [`SiwxHooks`] plugs sign-in-with-x into
//! the paywire-server payment layer through its [`PaymentHooks`].
//!
//! - every 402 of a configured route carries a fresh challenge
//!   (`extensions["sign-in-with-x"]`, `supportedChains` from the route's
//!   accepted networks);
//! - a request with a `SIGN-IN-WITH-X` proof (for this path and one of the
//!   route's networks) is served without payment when the route is auth-only
//!   or the address holds a live entitlement for the route's scope;
//!   otherwise it falls through to payment (a 402 naming the reason, or the
//!   payment it also carries);
//! - after a successful settlement the payer gets the route's entitlement;
//! - optionally a signed-in request receives a short-lived session token
//!   ([`SESSION_HEADER`]) that later requests present instead of a proof.

use std::sync::Arc;

use paywire_core::codec::SIGN_IN_WITH_X_HEADER;
use paywire_core::{
    BoxFuture, ChainId, Extensions, FacilitatorRequest, PaymentRequirements, SettleResponse,
};
use paywire_server::{AccessDecision, PaymentHooks, RequestContext};

use crate::server::{SiwxError, SiwxServer};
use crate::session::SessionTokens;
use crate::store::{AccessPolicy, EntitlementStore};
use crate::types::SESSION_HEADER;

/// How one route uses sign-in-with-x.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiwxRoute {
    /// The route pattern as configured in the payment layer (`GET /api/*`).
    pub pattern: String,
    /// What a payment grants; `None`: auth-only (any valid sign-in is let
    /// through).
    pub policy: Option<AccessPolicy>,
    /// The entitlement scope (by default the pattern): routes sharing a
    /// scope share entitlements.
    pub scope: String,
}

/// [`PaymentHooks`] implementing sign-in-with-x for configured routes.
pub struct SiwxHooks {
    server: Arc<SiwxServer>,
    entitlements: Arc<dyn EntitlementStore>,
    sessions: Option<Arc<SessionTokens>>,
    routes: Vec<SiwxRoute>,
}

impl std::fmt::Debug for SiwxHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiwxHooks")
            .field("server", &self.server)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

enum Proven {
    /// Signed in (by proof or token) as this address on this network.
    As {
        address: String,
        network: ChainId,
        fresh_signature: bool,
    },
    Rejected(AccessDecision),
}

impl SiwxHooks {
    /// Hooks validating with `server` and recording entitlements in
    /// `entitlements` (times from the server's clock).
    pub fn new(server: Arc<SiwxServer>, entitlements: Arc<dyn EntitlementStore>) -> Self {
        Self {
            server,
            entitlements,
            sessions: None,
            routes: Vec::new(),
        }
    }

    /// A paid route: `policy` is recorded after each settlement, for the
    /// route's own scope (its pattern).
    pub fn route(self, pattern: impl Into<String>, policy: AccessPolicy) -> Self {
        let pattern = pattern.into();
        let scope = pattern.clone();
        self.scoped_route(pattern, policy, scope)
    }

    /// A paid route whose entitlements cover `scope` (shared with other
    /// routes configured with the same scope).
    pub fn scoped_route(
        mut self,
        pattern: impl Into<String>,
        policy: AccessPolicy,
        scope: impl Into<String>,
    ) -> Self {
        self.routes.push(SiwxRoute {
            pattern: pattern.into(),
            policy: Some(policy),
            scope: scope.into(),
        });
        self
    }

    /// An auth-only route: any valid sign-in is served.
    pub fn auth_only(mut self, pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        self.routes.push(SiwxRoute {
            scope: pattern.clone(),
            pattern,
            policy: None,
        });
        self
    }

    /// Issues a session token ([`SESSION_HEADER`]) after each valid
    /// signature, and accepts it on later requests of the same scope.
    pub fn sessions(mut self, tokens: Arc<SessionTokens>) -> Self {
        self.sessions = Some(tokens);
        self
    }

    fn config(&self, ctx: &RequestContext) -> Option<&SiwxRoute> {
        self.routes.iter().find(|r| r.pattern == ctx.route)
    }

    fn refuse(error: &SiwxError) -> AccessDecision {
        if error.is_server_fault() {
            tracing::error!(reason = error.reason(), %error, "sign-in could not be checked");
            AccessDecision::Fail {
                status: 503,
                reason: error.reason().to_owned(),
                message: "sign-in could not be checked; retry later".to_owned(),
            }
        } else {
            AccessDecision::payment_required(error.reason(), error.to_string())
        }
    }

    async fn prove(
        &self,
        ctx: &RequestContext,
        route: &SiwxRoute,
        networks: &[ChainId],
    ) -> Option<Proven> {
        if let (Some(tokens), Some(token)) = (&self.sessions, ctx.header(SESSION_HEADER)) {
            let now = self.server.now();
            match tokens
                .verify_with(token, &route.scope, now, self.entitlements.as_ref())
                .await
            {
                Ok(claims) => {
                    if let Ok(network) = ChainId::parse(&claims.network) {
                        return Some(Proven::As {
                            address: claims.address,
                            network,
                            fresh_signature: false,
                        });
                    }
                }
                Err(error) => tracing::debug!(%error, "session token rejected"),
            }
        }
        let header = ctx.headers.get(SIGN_IN_WITH_X_HEADER)?;
        Some(
            match self.server.verify_header(header, &ctx.path, networks).await {
                Ok(signed) => Proven::As {
                    address: signed.address,
                    network: signed.network,
                    fresh_signature: true,
                },
                Err(error) => Proven::Rejected(Self::refuse(&error)),
            },
        )
    }

    fn session_headers(
        &self,
        address: &str,
        network: &ChainId,
        scope: &str,
    ) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some(tokens) = &self.sessions {
            let (token, _) = tokens.issue(address, network.as_str(), scope, self.server.now());
            headers.push((SESSION_HEADER.to_owned(), token));
        }
        headers
    }
}

/// The route's networks, in order, without duplicates.
fn networks(accepts: &[PaymentRequirements]) -> Vec<ChainId> {
    let mut out: Vec<ChainId> = Vec::new();
    for requirement in accepts {
        if !out.contains(&requirement.network) {
            out.push(requirement.network.clone());
        }
    }
    out
}

impl PaymentHooks for SiwxHooks {
    fn payment_required_extensions<'a>(
        &'a self,
        ctx: &'a RequestContext,
        accepts: &'a [PaymentRequirements],
    ) -> BoxFuture<'a, Extensions> {
        Box::pin(async move {
            let mut extensions = Extensions::new();
            if self.config(ctx).is_none() {
                return extensions;
            }
            match self.server.challenge(&ctx.path, &networks(accepts)).await {
                Ok(challenge) => challenge.move_into(&mut extensions),
                Err(error) => {
                    tracing::error!(%error, "no sign-in challenge in this 402");
                }
            }
            extensions
        })
    }

    fn check_access<'a>(
        &'a self,
        ctx: &'a RequestContext,
        accepts: &'a [PaymentRequirements],
    ) -> BoxFuture<'a, AccessDecision> {
        Box::pin(async move {
            let Some(route) = self.config(ctx) else {
                return AccessDecision::Pay;
            };
            let paying = ctx.paying;
            let networks = networks(accepts);
            let (address, network, fresh) = match self.prove(ctx, route, &networks).await {
                None => return AccessDecision::Pay,
                Some(Proven::Rejected(_)) if paying => return AccessDecision::Pay,
                Some(Proven::Rejected(decision)) => return decision,
                Some(Proven::As {
                    address,
                    network,
                    fresh_signature,
                }) => (address, network, fresh_signature),
            };
            let granted = || {
                let headers = if fresh {
                    self.session_headers(&address, &network, &route.scope)
                } else {
                    Vec::new()
                };
                AccessDecision::Grant { headers }
            };
            if route.policy.is_none() {
                return granted();
            }
            let now = self.server.now();
            match self
                .entitlements
                .check(&address, network.as_str(), &route.scope, now)
                .await
            {
                Ok(Some(_)) => {
                    tracing::debug!(%address, %network, scope = %route.scope, "entitled; served without payment");
                    granted()
                }
                Ok(None) if paying => AccessDecision::Pay,
                Ok(None) => AccessDecision::payment_required(
                    "siwx_no_entitlement",
                    format!(
                        "{address} on {network} holds no live entitlement for {}; pay to get one",
                        route.scope
                    ),
                ),
                Err(error) => Self::refuse(&SiwxError::Store(error)),
            }
        })
    }

    fn after_settle<'a>(
        &'a self,
        ctx: &'a RequestContext,
        request: &'a FacilitatorRequest,
        response: &'a SettleResponse,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(route) = self.config(ctx) else {
                return;
            };
            let (Some(policy), true, Some(payer)) =
                (route.policy, response.success, response.payer.as_deref())
            else {
                return;
            };
            let network = request.payment_requirements.network.as_str();
            let entitlement = policy.entitlement(payer, network, &route.scope, self.server.now());
            match self.entitlements.grant(&entitlement).await {
                Ok(()) => {
                    tracing::debug!(%payer, %network, scope = %route.scope, "entitlement recorded");
                }
                Err(error) => tracing::error!(%error, %payer, "recording an entitlement failed"),
            }
        })
    }
}
