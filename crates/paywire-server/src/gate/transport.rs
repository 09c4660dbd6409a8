//! What a transport hands the gate and gets back: the request abstraction,
//! the protected handler, and the gate's outcome. Nothing here is HTTP: an
//! HTTP adapter, an MCP adapter or a test drive the gate with these types.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use paywire_core::{BoxFuture, PaymentRequired, SettleResponse};
use tokio::sync::OwnedSemaphorePermit;

use crate::config::Route;
use crate::path::NormalizedPath;
use crate::proof::{Settled, Verified};
use crate::settlement::HeldBytes;
use crate::usage::Usage;

/// Named request metadata as a transport carries it: the HTTP headers, or
/// what another transport has instead (an MCP call's `_meta` entries).
/// Looked up by name, ignoring ASCII case.
pub trait HeaderSource: Send + Sync {
    /// The first value of `name`, as bytes.
    fn get(&self, name: &str) -> Option<&[u8]>;
}

/// A list of `(name, value)` pairs; the first pair with a matching name wins.
impl HeaderSource for Vec<(String, Vec<u8>)> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

/// The request metadata pricing callbacks and hooks read (see
/// [`HeaderSource`]); cheap to clone.
#[derive(Clone, Default)]
pub struct Headers(Option<Arc<dyn HeaderSource>>);

impl Headers {
    /// Metadata read from `source`.
    pub fn new(source: impl HeaderSource + 'static) -> Self {
        Self(Some(Arc::new(source)))
    }

    /// Metadata from `(name, value)` pairs.
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<String>,
        V: Into<Vec<u8>>,
    {
        let pairs: Vec<(String, Vec<u8>)> = pairs
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .collect();
        Self::new(pairs)
    }

    /// The first value of `name` (ASCII case ignored), as bytes.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.as_ref()?.get(name)
    }

    /// The first value of `name` as text, if it is valid UTF-8.
    pub fn text(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.get(name)?).ok()
    }

    /// Whether `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be credentials (session tokens, payments): never shown.
        f.write_str("Headers(..)")
    }
}

/// The payment a request carries, as its transport received it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PaymentInput {
    /// No payment.
    #[default]
    Absent,
    /// Only an x402 v1 payment (`X-PAYMENT`): answered with a 402 that
    /// explains that this server speaks v2.
    LegacyV1,
    /// A base64 `PaymentPayload`, as in the `PAYMENT-SIGNATURE` header.
    Encoded(Bytes),
    /// A `PaymentPayload` as JSON text, as in MCP's `_meta["x402/payment"]`.
    Json(Bytes),
}

impl PaymentInput {
    /// Whether a v2 payment is present (decodable or not).
    pub fn is_present(&self) -> bool {
        matches!(self, Self::Encoded(_) | Self::Json(_))
    }
}

/// One request to a priced route, as the gate needs it from any transport.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GateRequest {
    /// The operation, upper case: an HTTP method, or a transport's own verb
    /// (matched against the method of route patterns).
    pub method: String,
    /// The normalized path the route was matched on.
    pub path: NormalizedPath,
    /// The raw query (without `?`), if any.
    pub query: Option<String>,
    /// Metadata for pricing callbacks and hooks.
    pub headers: Headers,
    /// The payment the request carries.
    pub payment: PaymentInput,
    /// The URL of the resource as the transport sees it (public origin plus
    /// path and query): a route's own `resource` URL takes precedence.
    pub resource_url: String,
    /// The request body, read for routes that price it
    /// ([`RouteMatch::body_limit`]).
    pub body: Option<Bytes>,
}

impl GateRequest {
    /// A request for `method` on `path`; everything else empty.
    pub fn new(
        method: impl Into<String>,
        path: NormalizedPath,
        resource_url: impl Into<String>,
    ) -> Self {
        Self {
            method: method.into(),
            path,
            query: None,
            headers: Headers::default(),
            payment: PaymentInput::Absent,
            resource_url: resource_url.into(),
            body: None,
        }
    }

    /// With a query string.
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// With metadata for hooks and pricing.
    pub fn headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// With a payment.
    pub fn payment(mut self, payment: PaymentInput) -> Self {
        self.payment = payment;
        self
    }

    /// With a body for pricing.
    pub fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }
}

/// A priced route matched by [`crate::PaymentGate::route`].
#[derive(Debug, Clone)]
pub struct RouteMatch<'g> {
    pub(crate) route: &'g Route,
    pub(crate) params: HashMap<String, String>,
}

impl RouteMatch<'_> {
    /// The route pattern, as configured.
    pub fn pattern(&self) -> &str {
        self.route.pattern.as_str()
    }

    /// Values of the pattern's `:name` segments.
    pub fn params(&self) -> &HashMap<String, String> {
        &self.params
    }

    /// How much of the request body the transport must read into
    /// [`GateRequest::body`] (over it: refuse the request), when the route
    /// prices its body.
    pub fn body_limit(&self) -> Option<usize> {
        self.route.body_limit
    }
}

/// Proof that the protected handler may run: only the gate makes one, from
/// a verified and reserved payment, a settled payment, or a hook's grant.
#[derive(Debug)]
pub struct Access<'a>(AccessKind<'a>);

#[derive(Debug)]
enum AccessKind<'a> {
    Verified(&'a Verified),
    Settled(&'a Settled),
    Granted,
}

impl<'a> Access<'a> {
    pub(crate) fn verified(verified: &'a Verified) -> Self {
        Self(AccessKind::Verified(verified))
    }

    pub(crate) fn settled(settled: &'a Settled) -> Self {
        Self(AccessKind::Settled(settled))
    }

    pub(crate) fn granted() -> Self {
        Self(AccessKind::Granted)
    }

    /// The payer, when access was paid for.
    pub fn payer(&self) -> Option<&str> {
        match &self.0 {
            AccessKind::Verified(verified) => verified.payer(),
            AccessKind::Settled(settled) => settled.receipt().payer.as_deref(),
            AccessKind::Granted => None,
        }
    }

    /// The settlement, when the payment was settled before the handler.
    pub fn receipt(&self) -> Option<&SettleResponse> {
        match &self.0 {
            AccessKind::Settled(settled) => Some(settled.receipt()),
            AccessKind::Verified(_) | AccessKind::Granted => None,
        }
    }

    /// A short description for logs.
    pub fn label(&self) -> String {
        match &self.0 {
            AccessKind::Verified(verified) => {
                format!("verified payment from {}", verified.payer().unwrap_or("?"))
            }
            AccessKind::Settled(settled) => {
                format!("settled in {}", settled.receipt().transaction)
            }
            AccessKind::Granted => "granted".to_owned(),
        }
    }
}

/// How the gate treats the handler's reply on a route that settles after
/// its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyClass {
    /// Content (HTTP 2xx, and 3xx: a redirect sells what it points to):
    /// held back until settlement, then given with the receipt.
    Sellable,
    /// The handler failed (HTTP 4xx/5xx, an MCP tool error): passed on,
    /// never charged (field lesson 2). `status` is reported to hooks.
    Failed {
        /// The status reported in [`crate::PaymentFailure::HandlerFailed`].
        status: u16,
    },
    /// A protocol switch (HTTP `101`): it starts when the answer is sent, so
    /// it cannot be held back; refused, nothing charged.
    Upgrade {
        /// The status, for logs and the refusal.
        status: u16,
    },
}

impl ReplyClass {
    /// The class of an HTTP status code.
    pub fn of_status(status: u16) -> Self {
        match status {
            400..=599 => Self::Failed { status },
            100..=199 => Self::Upgrade { status },
            _ => Self::Sellable,
        }
    }
}

/// Why a reply could not be held back until settlement (nothing is charged;
/// the payment stays usable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoldError {
    /// Larger than the limit of paid replies held back.
    #[error("the reply is larger than the limit of paid replies held back")]
    TooLarge,
    /// The replies held back by all requests together fill the in-flight
    /// limit.
    #[error("too many paid replies are held back right now")]
    Busy,
    /// The reply failed while it was read.
    #[error("the reply failed: {0}")]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// The room a reply may take while it is held back: at most
/// [`Hold::limit`] bytes, taken from the gate's pool of bytes in flight as
/// they are read. A transport reading a reply calls [`Hold::take`] for each
/// chunk, then keeps [`Hold::finish`]'s permit until the reply is sent.
#[derive(Debug)]
pub struct Hold {
    limit: usize,
    taken: usize,
    pool: HeldBytes,
    permit: Option<OwnedSemaphorePermit>,
}

impl Hold {
    pub(crate) fn new(limit: usize, pool: HeldBytes) -> Self {
        Self {
            limit,
            taken: 0,
            pool,
            permit: None,
        }
    }

    /// The most bytes one reply may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `len` more bytes: [`HoldError::TooLarge`] past the limit,
    /// [`HoldError::Busy`] when the pool is exhausted.
    pub fn take(&mut self, len: usize) -> Result<(), HoldError> {
        let taken = self
            .taken
            .checked_add(len)
            .filter(|&taken| taken <= self.limit)
            .ok_or(HoldError::TooLarge)?;
        self.pool
            .take(&mut self.permit, len)
            .ok_or(HoldError::Busy)?;
        self.taken = taken;
        Ok(())
    }

    /// Stops reading: the bytes stay taken until the permit is dropped.
    pub fn finish(self) -> HoldPermit {
        HoldPermit {
            _permit: self.permit,
        }
    }
}

/// The pool bytes a held reply occupies; given back when dropped.
#[derive(Debug)]
pub struct HoldPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

/// A held reply kept for a retry after an unknown settlement outcome, in a
/// transport-neutral form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptReply {
    /// Status (HTTP status code, or the transport's equivalent).
    pub status: u16,
    /// Metadata (`(name, value)` pairs).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Bytes,
}

impl KeptReply {
    /// Bytes it occupies in the response cache.
    pub(crate) fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        self.body.len() + headers
    }
}

/// The protected handler of one request, as its transport runs it. The gate
/// calls [`Handler::run`] at most once, and only with an [`Access`] proof.
pub trait Handler: Send + Sized {
    /// The handler's reply in the transport's own form (an HTTP response
    /// with a streaming body, an MCP tool result).
    type Reply: Send + 'static;
    /// A reply read into memory, held back until settlement.
    type Held: Send + 'static;
    /// Why the handler could not run (a tower service's error): returned
    /// as is by [`crate::PaymentGate::process`].
    type Error: Send + 'static;

    /// Runs the handler.
    fn run(self, access: Access<'_>) -> BoxFuture<'static, Result<Self::Reply, Self::Error>>;

    /// How a reply is treated on a route that settles after its handler.
    fn class(reply: &Self::Reply) -> ReplyClass;

    /// Reads a reply into memory within `hold` (see [`Hold`]).
    fn hold(reply: Self::Reply, hold: Hold) -> BoxFuture<'static, Result<Self::Held, HoldError>>;

    /// A held reply, to be served.
    fn release(held: Self::Held) -> Self::Reply;

    /// A held reply, to be kept for a retry (the hold is given back).
    fn keep(held: Self::Held) -> KeptReply;

    /// A kept reply, to be served.
    fn restore(kept: KeptReply) -> Self::Reply;

    /// What the request used, as the reply reports it, for options that
    /// charge by usage (read once, before [`Handler::hold`]). The default
    /// reports nothing: the route's [`crate::MissingUsage`] policy applies.
    fn usage(reply: &Self::Reply) -> Option<Usage> {
        let _ = reply;
        None
    }
}

/// What the gate decided for one request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome<R> {
    /// Serve the handler's reply.
    Serve(Served<R>),
    /// Answer with the gate's own refusal; nothing of the handler is given.
    Refuse(Refusal),
}

/// A reply to serve. Transports mark it uncacheable (HTTP:
/// `Cache-Control: no-store`), attach the receipt (HTTP: `PAYMENT-RESPONSE`,
/// MCP: `_meta["x402/payment-response"]`) and the extra metadata.
#[derive(Debug)]
#[non_exhaustive]
pub struct Served<R> {
    /// The handler's reply.
    pub reply: R,
    /// The settlement, when the request was paid (success, or pending on a
    /// route that serves pending payments).
    pub receipt: Option<SettleResponse>,
    /// Metadata a hook added (e.g. a session token).
    pub headers: Vec<(String, String)>,
}

/// The gate's own answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Refusal {
    /// Payment required (HTTP 402): the requirements, with `error` saying
    /// why; `receipt` is a pending settlement's (HTTP: `PAYMENT-RESPONSE`
    /// and `Retry-After`).
    PaymentRequired {
        /// What to pay.
        required: Box<PaymentRequired>,
        /// A pending settlement, if any.
        receipt: Option<Box<SettleResponse>>,
    },
    /// An error with a status and a JSON body ([`ErrorRefusal::body`]).
    Error(ErrorRefusal),
    /// A hook's replacement ([`crate::PaymentHooks::on_failure`]).
    Custom(CustomRefusal),
}

/// An error answer: `{"error": code, "message": …, …details}`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ErrorRefusal {
    /// HTTP-style status code (MCP: a tool error).
    pub status: u16,
    /// Stable machine-readable code.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// Further fields of the body.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Seconds after which a retry makes sense (HTTP: `Retry-After`).
    pub retry_after: Option<u32>,
    /// The request's requirements, with `error` saying why, when the refusal
    /// is about the payment itself (a malformed payment given as
    /// [`PaymentInput::Json`]): transports whose spec answers an invalid
    /// payment with the requirements (MCP) render it as payment-required.
    /// `None` for HTTP, which answers the status and body.
    pub required: Option<Box<PaymentRequired>>,
}

impl ErrorRefusal {
    /// An error with `status`, `error` code and `message`.
    pub fn new(status: u16, error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            message: message.into(),
            details: serde_json::Map::new(),
            retry_after: None,
            required: None,
        }
    }

    pub(crate) fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// The JSON body: `error`, `message`, then the details.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::with_capacity(2 + self.details.len());
        body.insert("error".into(), self.error.clone().into());
        body.insert("message".into(), self.message.clone().into());
        body.extend(self.details.clone());
        serde_json::Value::Object(body)
    }
}

/// An answer a hook gives instead of a refusal (a branded error page, another
/// status). Never combined with the protected content.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CustomRefusal {
    /// HTTP-style status code.
    pub status: u16,
    /// Metadata (HTTP headers).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl CustomRefusal {
    /// An answer with `status` and `body`.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}
