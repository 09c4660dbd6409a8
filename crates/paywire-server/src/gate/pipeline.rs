//! The paid pipeline, step by step: access hooks and pricing, then decode →
//! match → verify → reserve → run → settle → receipt (or settle first), and
//! the resumption of a payment whose settlement outcome was unknown.

use std::collections::HashMap;

use paywire_core::{
    FacilitatorRequest, PaymentRequired, PaymentRequirements, SettleResponse, X402_VERSION,
};

use super::transport::{
    Access, CustomRefusal, ErrorRefusal, GateRequest, Handler, Hold, HoldError, Outcome,
    PaymentInput, Refusal, ReplyClass, RouteMatch, Served,
};
use super::{GateCore, PaymentGate};
use crate::config::{Route, SettleMode};
use crate::context::RequestContext;
use crate::hooks::{AccessDecision, PaymentFailure};
use crate::proof::Verified;
use crate::reservation::{PayloadFingerprint, ReservationKey};
use crate::response_cache::RequestIdentity;
use crate::settlement::{Guard, Settlement};

mod answers;
mod decode;
mod settle;
mod usage;

/// The message of the 402 answered to x402 v1 clients.
const V1_MESSAGE: &str = "x402 v1 (X-PAYMENT header) is not supported: this server speaks x402 v2; \
                          send the payment in the PAYMENT-SIGNATURE header";

/// A step's result: go on with `T`, or stop with this refusal.
type Step<T> = Result<T, Refusal>;

impl PaymentGate {
    /// Runs a request to the priced route `matched` through the payment
    /// pipeline; `handler` runs only once access is earned (paid, or granted
    /// by a hook). `Err` is the handler's own error, passed through.
    pub async fn process<H: Handler>(
        &self,
        matched: RouteMatch<'_>,
        request: GateRequest,
        handler: H,
    ) -> Result<Outcome<H::Reply>, H::Error> {
        let core = &*self.core;
        let route = matched.route;
        let identity =
            RequestIdentity::new(&request.method, &request.path, request.query.as_deref());
        let ctx = context(&request, route, matched.params);
        if core.hooks.grant_access(&ctx).await {
            return served(handler, Vec::new()).await;
        }
        let accepts = match core.requirements(route, &ctx).await {
            Ok(accepts) => accepts,
            Err(error) => {
                tracing::error!(%error, route = %route.pattern.as_str(), "pricing failed");
                let refusal = ErrorRefusal::new(500, "pricing_failed", error.to_string());
                return Ok(Outcome::Refuse(Refusal::Error(refusal)));
            }
        };
        let decision = core.hooks.check_access(&ctx, &accepts).await;
        let paid = Paid {
            core,
            route,
            required: PaymentRequired {
                x402_version: X402_VERSION,
                error: None,
                resource: GateCore::resource(route, request.resource_url),
                extensions: core
                    .scheme_extensions(&accepts, core.extensions(route, &ctx.params))
                    .await,
                accepts,
            },
            ctx,
            identity,
        };
        match decision {
            AccessDecision::Pay => paid.pay(request.payment, handler).await,
            AccessDecision::Grant { headers } => served(handler, headers).await,
            AccessDecision::Fail {
                status,
                reason,
                message,
            } => Ok(Outcome::Refuse(
                paid.access_refused(status, &reason, &message).await,
            )),
        }
    }
}

/// What pricing callbacks and hooks see of `request`.
fn context(
    request: &GateRequest,
    route: &Route,
    params: HashMap<String, String>,
) -> RequestContext {
    RequestContext {
        method: request.method.clone(),
        path: request.path.as_str().to_owned(),
        query: request.query.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
        params,
        route: route.pattern.as_str().to_owned(),
        paying: request.payment.is_present(),
    }
}

/// Runs the handler on a hook's grant, without payment.
async fn served<H: Handler>(
    handler: H,
    headers: Vec<(String, String)>,
) -> Result<Outcome<H::Reply>, H::Error> {
    let reply = handler.run(Access::granted()).await?;
    Ok(Outcome::Serve(Served {
        reply,
        receipt: None,
        headers,
    }))
}

/// The handler's reply with `receipt`.
fn with_receipt<R>(reply: R, receipt: SettleResponse) -> Outcome<R> {
    Outcome::Serve(Served {
        reply,
        receipt: Some(receipt),
        headers: Vec::new(),
    })
}

/// Per-request state of a priced route.
struct Paid<'a> {
    core: &'a GateCore,
    route: &'a Route,
    ctx: RequestContext,
    /// The 402 of this request (its `error` is set per answer).
    required: PaymentRequired,
    /// The request a kept reply answers.
    identity: RequestIdentity,
}

impl Paid<'_> {
    /// The paid path: decode, verify, reserve, then run and settle as the
    /// route says; a payment whose outcome was unknown resumes.
    async fn pay<H: Handler>(
        &self,
        payment: PaymentInput,
        handler: H,
    ) -> Result<Outcome<H::Reply>, H::Error> {
        let request = match self.payment_of(payment).await {
            Ok(request) => request,
            Err(refusal) => return Ok(Outcome::Refuse(refusal)),
        };
        let mut guard = match self.verify_and_reserve(&request).await {
            Ok(Reserved::Fresh(guard, verified)) => {
                tracing::debug!(payer = ?verified.payer(), key = %guard.key.to_hex(), "payment verified and reserved");
                return match self.route.settle_mode {
                    SettleMode::AfterHandler => {
                        self.settle_after_handler(guard, &verified, handler, &request)
                            .await
                    }
                    SettleMode::BeforeHandler => {
                        self.settle_before_handler(guard, handler, &request).await
                    }
                };
            }
            Ok(Reserved::Resumed(guard)) => guard,
            Err(refusal) => return Ok(Outcome::Refuse(refusal)),
        };
        self.resume(&mut guard, handler, &request).await
    }

    /// Verifies and takes the payment for this request. A payment whose
    /// first settlement landed no longer verifies (its nonce is used): only
    /// a recorded unknown outcome of this very payload lets it through, to
    /// resume.
    async fn verify_and_reserve(&self, request: &FacilitatorRequest) -> Step<Reserved> {
        let key = ReservationKey::of(&request.payment_payload);
        let fingerprint = PayloadFingerprint::of(&request.payment_payload);
        let verdict = self.verify(request).await?;
        if let Err(invalid) = &verdict
            && !self.is_unknown(&key, &fingerprint).await
        {
            return Err(self.invalid(invalid).await);
        }
        let mut guard = self.reserve(key, fingerprint).await?;
        if guard.resumed {
            return Ok(Reserved::Resumed(guard));
        }
        match verdict {
            Ok(verified) => Ok(Reserved::Fresh(guard, verified)),
            Err(invalid) => {
                guard.release().await;
                Err(self.invalid(&invalid).await)
            }
        }
    }

    async fn is_unknown(&self, key: &ReservationKey, fingerprint: &PayloadFingerprint) -> bool {
        self.core
            .reservations
            .is_unknown(key, fingerprint)
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "reservation store failed");
                false
            })
    }

    /// The default mode: handler, reply held back, settlement, then the reply.
    async fn settle_after_handler<H: Handler>(
        &self,
        mut guard: Guard,
        verified: &Verified,
        handler: H,
        request: &FacilitatorRequest,
    ) -> Result<Outcome<H::Reply>, H::Error> {
        let reply = handler.run(Access::verified(verified)).await?;
        match H::class(&reply) {
            ReplyClass::Sellable => {}
            ReplyClass::Failed { status } => {
                // Field lesson 2: errors are never charged.
                guard.release().await;
                return Ok(self.handler_failed(status, reply).await);
            }
            ReplyClass::Upgrade { status } => {
                // Dropping the reply cancels the upgrade: nothing was given.
                guard.release().await;
                return Ok(Outcome::Refuse(self.upgrade_refused(status).await));
            }
        }
        let charge = match self
            .charge(&request.payment_requirements, H::usage(&reply))
            .await
        {
            Ok(charge) => charge,
            Err(refusal) => {
                guard.release().await;
                return Ok(Outcome::Refuse(refusal));
            }
        };
        let limit = self.core.max_response_bytes;
        let held = match H::hold(reply, Hold::new(limit, self.core.held.clone())).await {
            Ok(held) => held,
            Err(error) => {
                // Nothing was settled: the payment stays usable.
                guard.release().await;
                return Ok(Outcome::Refuse(self.unbuffered(error, limit).await));
            }
        };
        if let Some(amount) = charge {
            // Before settling: a retry after any unknown outcome (also a
            // hang-up mid-settlement) must ask for the same amount. The
            // guard records it with the unknown outcome for other instances
            // and restarts.
            self.core.responses.remember_charge(guard.key, amount);
            guard.charge = Some(amount);
        }
        let request = usage::settle_request(request, charge);
        Ok(match self.settle(&mut guard, &request).await {
            Settlement::Settled(settled) => with_receipt(H::release(held), settled.into_receipt()),
            Settlement::Unknown(unknown) => {
                // The response cache bounds what it keeps by itself.
                let kept = H::keep(held);
                self.core
                    .responses
                    .put(guard.key, guard.fingerprint, self.identity.clone(), kept);
                guard.keep_unknown().await;
                Outcome::Refuse(self.unknown_outcome(unknown).await)
            }
            Settlement::Refused(refusal) => Outcome::Refuse(refusal),
        })
    }

    /// For handlers with side effects: settle, then run.
    async fn settle_before_handler<H: Handler>(
        &self,
        mut guard: Guard,
        handler: H,
        request: &FacilitatorRequest,
    ) -> Result<Outcome<H::Reply>, H::Error> {
        let settled = match self.settle(&mut guard, request).await {
            Settlement::Settled(settled) => settled,
            Settlement::Unknown(unknown) => {
                guard.keep_unknown().await;
                return Ok(Outcome::Refuse(self.unknown_outcome(unknown).await));
            }
            Settlement::Refused(refusal) => return Ok(Outcome::Refuse(refusal)),
        };
        let reply = handler.run(Access::settled(&settled)).await?;
        Ok(with_receipt(reply, settled.into_receipt()))
    }

    /// A retry of a payment whose settlement outcome was unknown: ask the
    /// facilitator again; once settled, serve the kept reply (or run the
    /// handler when it is gone).
    async fn resume<H: Handler>(
        &self,
        guard: &mut Guard,
        handler: H,
        request: &FacilitatorRequest,
    ) -> Result<Outcome<H::Reply>, H::Error> {
        tracing::info!(key = %guard.key.to_hex(), "resuming a payment whose settlement outcome was unknown");
        let charge = self
            .resumed_charge(guard, &request.payment_requirements)
            .await;
        if let Some(amount) = charge {
            self.core.responses.remember_charge(guard.key, amount);
            guard.charge = Some(amount);
        }
        let request = usage::settle_request(request, charge);
        let settled = match self.settle(guard, &request).await {
            Settlement::Settled(settled) => settled,
            Settlement::Unknown(unknown) => {
                guard.keep_unknown().await;
                return Ok(Outcome::Refuse(self.unknown_outcome(unknown).await));
            }
            Settlement::Refused(refusal) => return Ok(Outcome::Refuse(refusal)),
        };
        let kept = self
            .core
            .responses
            .take(&guard.key, &guard.fingerprint, &self.identity);
        let reply = match kept {
            Some(kept) => H::restore(kept),
            None => handler.run(Access::settled(&settled)).await?,
        };
        Ok(with_receipt(reply, settled.into_receipt()))
    }

    /// A failed handler's reply, passed on uncharged unless a hook replaces it.
    async fn handler_failed<R>(&self, status: u16, reply: R) -> Outcome<R> {
        match self
            .replacement(&PaymentFailure::HandlerFailed(status))
            .await
        {
            Some(custom) => Outcome::Refuse(Refusal::Custom(custom)),
            None => Outcome::Serve(Served {
                reply,
                receipt: None,
                headers: Vec::new(),
            }),
        }
    }

    /// Logs a refused paid request and asks the hooks for a replacement.
    async fn replacement(&self, failure: &PaymentFailure) -> Option<CustomRefusal> {
        tracing::info!(route = %self.route.pattern.as_str(), ?failure, "paid request refused");
        self.core.hooks.on_failure(&self.ctx, failure).await
    }

    /// `refusal`, or the hooks' replacement for it.
    async fn fail(&self, failure: PaymentFailure, refusal: Refusal) -> Refusal {
        match self.replacement(&failure).await {
            Some(custom) => Refusal::Custom(custom),
            None => refusal,
        }
    }

    /// A 402 of this request saying `error`, with an optional receipt.
    async fn payment_required(&self, error: String, receipt: Option<&SettleResponse>) -> Refusal {
        let mut required = self.required.clone();
        required.error = Some(error);
        let added = self
            .core
            .hooks
            .payment_required_extensions(&self.ctx, &required.accepts)
            .await;
        if !added.is_empty() {
            let mut merged = required.extensions.take().unwrap_or_default();
            merged.0.extend(added.0);
            required.extensions = Some(merged);
        }
        Refusal::PaymentRequired {
            required: Box::new(required),
            receipt: receipt.cloned().map(Box::new),
        }
    }

    /// The requirement of this request that the client's `accepted` copy
    /// equals, field by field.
    fn requirement_matching(&self, accepted: &PaymentRequirements) -> Option<PaymentRequirements> {
        self.required
            .accepts
            .iter()
            .find(|ours| same_requirement(ours, accepted))
            .cloned()
    }
}

/// A payment held by this request.
enum Reserved {
    /// Verified and newly reserved.
    Fresh(Guard, Verified),
    /// Resumed after an unknown settlement outcome.
    Resumed(Guard),
}

/// Field-by-field comparison of our requirement with the client's `accepted`.
fn same_requirement(ours: &PaymentRequirements, theirs: &PaymentRequirements) -> bool {
    fn same_address(a: &str, b: &str) -> bool {
        if a.starts_with("0x") && b.starts_with("0x") {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }
    ours.scheme == theirs.scheme
        && ours.network == theirs.network
        && ours.amount == theirs.amount
        && same_address(&ours.asset, &theirs.asset)
        && same_address(&ours.pay_to, &theirs.pay_to)
        && ours.max_timeout_seconds == theirs.max_timeout_seconds
        && ours.extra == theirs.extra
}

/// Why a reply could not be held: too large, pool full, or it failed.
fn hold_failure(error: HoldError, limit: usize) -> (PaymentFailure, ErrorRefusal) {
    match error {
        HoldError::TooLarge => (
            PaymentFailure::ResponseTooLarge { limit },
            ErrorRefusal::new(
                500,
                "response_too_large",
                format!(
                    "the response is larger than the {limit}-byte limit for paid responses, \
                     which are held back until the payment settles; it cannot be sold \
                     buffered and nothing was charged"
                ),
            ),
        ),
        HoldError::Busy => (
            PaymentFailure::Busy,
            ErrorRefusal::new(
                503,
                "server_busy",
                "too many paid responses are waiting for settlement right now; retry \
                 shortly with the same PAYMENT-SIGNATURE (nothing was charged)",
            )
            .retry_after(1),
        ),
        HoldError::Failed(error) => (
            PaymentFailure::HandlerFailed(500),
            ErrorRefusal::new(
                500,
                "handler_failed",
                format!("the response could not be produced (nothing was charged): {error}"),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_core::{AtomicAmount, ChainId};

    fn requirement() -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: ChainId::parse("eip155:1").unwrap(),
            amount: AtomicAmount::from(10u64),
            asset: "0xAbC".into(),
            pay_to: "0xDeF".into(),
            max_timeout_seconds: 60,
            extra: None,
        }
    }

    #[test]
    fn compares_every_field() {
        let ours = requirement();
        let mut theirs = ours.clone();
        theirs.pay_to = "0xdef".into();
        theirs.asset = "0xABC".into();
        assert!(same_requirement(&ours, &theirs));
        let changes: [fn(&mut PaymentRequirements); 7] = [
            |r| r.scheme = "upto".into(),
            |r| r.network = ChainId::parse("eip155:2").unwrap(),
            |r| r.amount = AtomicAmount::from(9u64),
            |r| r.asset = "0xabd".into(),
            |r| r.pay_to = "0xdee".into(),
            |r| r.max_timeout_seconds = 61,
            |r| r.extra = Some(Default::default()),
        ];
        for change in changes {
            let mut theirs = ours.clone();
            change(&mut theirs);
            assert!(!same_requirement(&ours, &theirs), "{theirs:?}");
        }
    }
}
