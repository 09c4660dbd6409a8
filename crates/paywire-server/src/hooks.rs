//! Extension points around verification and settlement.

use paywire_core::{
    BoxFuture, Extensions, FacilitatorRequest, PaymentRequirements, SettleResponse, VerifyResponse,
};

use crate::context::RequestContext;
use crate::gate::CustomRefusal;

/// `402 Payment Required`, the status that keeps a refusal payable.
const PAYMENT_REQUIRED: u16 = 402;

/// What [`PaymentHooks::check_access`] decided for a priced request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessDecision {
    /// Continue with the payment pipeline (402 or paid request) as usual.
    Pay,
    /// Serve the request without payment; `headers` are added to the
    /// response (e.g. a session token; MCP: `_meta` entries).
    Grant {
        /// Extra response headers, `(name, value)`.
        headers: Vec<(String, String)>,
    },
    /// Refuse. With `402 Payment Required` the usual 402 is answered with
    /// `reason` in its `error` field (so the client can still pay); with any
    /// other status (e.g. 503 when a store is down) a JSON error
    /// `{error: reason, message}` is answered.
    Fail {
        /// HTTP status code (other transports map it: MCP answers a tool
        /// error).
        status: u16,
        /// Stable machine-readable reason.
        reason: String,
        /// Human-readable detail.
        message: String,
    },
}

impl AccessDecision {
    /// Grant with no extra headers.
    pub fn grant() -> Self {
        Self::Grant {
            headers: Vec::new(),
        }
    }

    /// A 402 whose `error` says `reason: message`.
    pub fn payment_required(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Fail {
            status: PAYMENT_REQUIRED,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What a `before_verify` / `before_settle` hook decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HookVerdict {
    /// Go on.
    #[default]
    Continue,
    /// Stop here: nothing is verified or settled, the reservation (if any)
    /// is released, and the client gets `status` with a JSON body
    /// `{error: reason, message}` (a 402 carries the payment requirements
    /// again, with `reason: message` as its `error`).
    Abort {
        /// HTTP status code of the answer.
        status: u16,
        /// Short machine-readable code.
        reason: String,
        /// Human-readable explanation.
        message: String,
    },
}

/// Why a paid request did not get the resource.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PaymentFailure {
    /// `PAYMENT-SIGNATURE` could not be decoded.
    Malformed(String),
    /// `payload.accepted` matches none of this route's requirements.
    Mismatch,
    /// The facilitator judged the payment invalid.
    Invalid(VerifyResponse),
    /// The payment is already being used or was used.
    Reused,
    /// Settlement failed (or is pending and the route refuses pending: the
    /// payment is then kept for a retry with the same payload).
    SettleFailed(SettleResponse),
    /// The facilitator could not be reached or answered garbage.
    Facilitator(String),
    /// Nobody knows yet whether the payment was charged (facilitator timeout,
    /// 5xx): the payment is kept and a retry with the same payload gets the
    /// response once settlement is final.
    SettlementUnknown(String),
    /// The handler failed (4xx/5xx), or answered a protocol upgrade (1xx)
    /// on a route that settles after its handler; nothing was charged.
    HandlerFailed(u16),
    /// The handler's response exceeded the limit of paid responses held back
    /// until settlement; nothing was charged.
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The paid responses held back until settlement already fill the
    /// in-flight limit; nothing was charged.
    Busy,
    /// A `before_verify` or `before_settle` hook aborted the payment.
    Aborted(String),
    /// A usage-based payment's handler reported no usable usage on a route
    /// that refuses then ([`crate::MissingUsage::Refuse`]); nothing was
    /// charged.
    UsageMissing(String),
    /// The facilitator claimed to have settled more than the gate asked for:
    /// never served (the payment is not reused either).
    OverCharged(SettleResponse),
}

/// Hooks with no-op defaults; implement the ones you need.
pub trait PaymentHooks: Send + Sync {
    /// Lets a request through without payment (e.g. a signed-in session).
    fn grant_access<'a>(&'a self, _ctx: &'a RequestContext) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// Decides, once the route's requirements (`accepts`) are known, whether
    /// the request is served without payment (e.g. a sign-in proof for an
    /// address holding an entitlement), paid for, or refused. Runs after
    /// [`PaymentHooks::grant_access`] and before any payment is looked at.
    fn check_access<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        _accepts: &'a [PaymentRequirements],
    ) -> BoxFuture<'a, AccessDecision> {
        Box::pin(async { AccessDecision::Pay })
    }

    /// Extensions added to every `402 Payment Required` of the route (header
    /// and JSON body), e.g. a sign-in challenge with a fresh nonce. Called
    /// once per 402 actually answered; merged over the route's own
    /// extensions.
    fn payment_required_extensions<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        _accepts: &'a [PaymentRequirements],
    ) -> BoxFuture<'a, Extensions> {
        Box::pin(async { Extensions::new() })
    }

    /// Called before `verify`; [`HookVerdict::Abort`] refuses the payment
    /// without asking the facilitator.
    fn before_verify<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, HookVerdict> {
        Box::pin(async { HookVerdict::Continue })
    }

    /// Called after a `verify` answer (valid or not).
    fn after_verify<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        _request: &'a FacilitatorRequest,
        _response: &'a VerifyResponse,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Called before `settle` (after the handler in the default mode: its
    /// body is then withheld); [`HookVerdict::Abort`] refuses the payment,
    /// nothing is settled and the reservation is released.
    fn before_settle<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, HookVerdict> {
        Box::pin(async { HookVerdict::Continue })
    }

    /// Called after a `settle` answer (successful or not). The payer is
    /// `response.payer`, the network `request.payment_requirements.network`,
    /// and the route (scope) `ctx.route`.
    fn after_settle<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        _request: &'a FacilitatorRequest,
        _response: &'a SettleResponse,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Called when a paid request is refused. Returning an answer replaces
    /// the refusal the gate would give (e.g. a branded error page or a
    /// different status); it is never combined with the protected body, and
    /// the HTTP adapter marks it `Cache-Control: no-store`.
    fn on_failure<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        _failure: &'a PaymentFailure,
    ) -> BoxFuture<'a, Option<CustomRefusal>> {
        Box::pin(async { None })
    }
}

/// Hooks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl PaymentHooks for NoHooks {}
