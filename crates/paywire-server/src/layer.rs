//! The HTTP adapter of the [`PaymentGate`]: a tower layer and service. It
//! normalizes the path (and hands the inner service exactly that path),
//! reads what the gate needs from the request, runs the inner service as the
//! gate's [`Handler`], and renders the gate's [`Outcome`] as HTTP.
//!
//! On a usage-based option, the inner service reports what a request used
//! by inserting a [`crate::Usage`] into its response's extensions (never
//! sent to the client).

use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use paywire_core::codec::{PAYMENT_SIGNATURE_HEADER, V1_PAYMENT_HEADER};
use paywire_core::{BoxFuture, PaymentRequirements};
use tower::{Layer, Service};

use crate::context::RequestContext;
use crate::error::{ConfigError, PricingError};
use crate::gate::{
    Access, GateRequest, Handler, HeaderSource, Headers, Hold, HoldError, HoldPermit, KeptReply,
    Outcome, PaymentGate, PaymentGateBuilder, PaymentInput, ReplyClass, Served,
};
use crate::path::normalize_request;
use crate::responses::{
    add_receipt, protect, refusal_response, set_headers, status_of, wants_html,
};
use crate::usage::Usage;

pub use crate::path::refused as path_refused;
pub use crate::responses::json_error;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The route a priced request matched, in the request's extensions when the
/// inner service runs (e.g. to find a per-route setting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedRoute(String);

impl PricedRoute {
    /// The route pattern, as configured ([`crate::RoutePattern::as_str`]).
    pub fn pattern(&self) -> &str {
        &self.0
    }
}

/// Configures a [`PaymentLayer`]: the [`PaymentGate`] options, built into
/// the layer.
pub type PaymentLayerBuilder = PaymentGateBuilder<PaymentLayer>;

impl PaymentGateBuilder<PaymentLayer> {
    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<PaymentLayer, ConfigError> {
        self.build_gate().map(PaymentLayer::new)
    }
}

/// Tower layer that puts x402 payments in front of priced routes (the HTTP
/// adapter of a [`PaymentGate`]).
#[derive(Clone)]
pub struct PaymentLayer {
    gate: PaymentGate,
}

impl std::fmt::Debug for PaymentLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentLayer")
            .field("gate", &self.gate)
            .finish()
    }
}

impl PaymentLayer {
    /// Starts a configuration using `facilitator` for verify and settle.
    pub fn builder(
        facilitator: std::sync::Arc<dyn paywire_core::Facilitator>,
    ) -> PaymentLayerBuilder {
        PaymentGateBuilder::new(facilitator)
    }

    /// The layer of an existing gate (shared with other transports).
    pub fn new(gate: PaymentGate) -> Self {
        Self { gate }
    }

    /// The gate behind the layer.
    pub fn gate(&self) -> &PaymentGate {
        &self.gate
    }

    /// The requirements a request would be offered (what the 402 lists and
    /// what a payment is checked against). `None` for an unpriced path and
    /// for a path the layer refuses with 400 ([`crate::normalize_path`]).
    pub async fn requirements_for(
        &self,
        method: &Method,
        path: &str,
        ctx: &RequestContext,
    ) -> Option<Result<Vec<PaymentRequirements>, PricingError>> {
        self.gate.requirements_for(method.as_str(), path, ctx).await
    }
}

impl<S> Layer<S> for PaymentLayer {
    type Service = PaymentService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaymentService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The service produced by [`PaymentLayer`].
#[derive(Clone)]
pub struct PaymentService<S> {
    inner: S,
    gate: PaymentGate,
}

impl<S> std::fmt::Debug for PaymentService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentService").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<Body>> for PaymentService<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The ready service handles this request; keep a fresh clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move { handle(&gate, inner, request).await })
    }
}

/// One request: refused path, unpriced (straight to the inner service), or
/// through the gate.
async fn handle<S, B>(
    gate: &PaymentGate,
    inner: S,
    mut request: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    // Price what runs: the inner service gets the normalized path.
    let path = match normalize_request(&mut request, gate.case_insensitive_paths()) {
        Ok(path) => path,
        Err(error) => return Ok(path_refused(error)),
    };
    let matched = match gate.route(request.method().as_str(), &path) {
        Ok(Some(matched)) => matched,
        Ok(None) => return call_inner(inner, request).await,
        Err(error) => return Ok(path_refused(error)),
    };
    request
        .extensions_mut()
        .insert(PricedRoute(matched.pattern().to_owned()));
    let (parts, body) = request.into_parts();
    let (buffered, body) = match matched.body_limit() {
        Some(limit) => match Limited::new(body, limit).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                (Some(bytes.clone()), Body::from(bytes))
            }
            Err(error) => {
                return Ok(json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    &format!("request body unreadable or over {limit} bytes: {error}"),
                ));
            }
        },
        None => (None, body),
    };
    let html = wants_html(&parts.headers);
    let mut gate_request = GateRequest::new(
        parts.method.as_str(),
        path,
        resource_url(gate.public_origin(), &parts.uri, &parts.headers),
    )
    .headers(Headers::new(parts.headers.clone()))
    .payment(payment_input(&parts.headers));
    gate_request.query = parts.uri.query().map(str::to_owned);
    gate_request.body = buffered;
    let handler = HttpHandler {
        inner,
        request: Request::from_parts(parts, body),
    };
    let outcome = gate.process(matched, gate_request, handler).await?;
    Ok(render(gate, outcome, html))
}

/// An unpriced request: the inner service's answer, untouched.
async fn call_inner<S, B>(mut inner: S, request: Request<Body>) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
    Ok(inner.call(request).await?.map(Body::new))
}

/// The payment a request carries.
fn payment_input(headers: &HeaderMap) -> PaymentInput {
    match headers.get(PAYMENT_SIGNATURE_HEADER) {
        Some(value) => PaymentInput::Encoded(Bytes::copy_from_slice(value.as_bytes())),
        None if headers.contains_key(V1_PAYMENT_HEADER) => PaymentInput::LegacyV1,
        None => PaymentInput::Absent,
    }
}

/// The resource URL of a request: the public origin plus path and query, or,
/// without one, the `Host` header's.
fn resource_url(origin: Option<&str>, uri: &Uri, headers: &HeaderMap) -> String {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    match origin {
        Some(origin) => format!("{origin}{path_and_query}"),
        None => match headers.get(HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => format!("http://{host}{path_and_query}"),
            None => path_and_query.to_owned(),
        },
    }
}

/// The HTTP answer of the gate's outcome.
fn render(gate: &PaymentGate, outcome: Outcome<Response<Body>>, html: bool) -> Response<Body> {
    match outcome {
        Outcome::Serve(Served {
            mut reply,
            receipt,
            headers,
        }) => {
            if let Some(receipt) = &receipt {
                add_receipt(reply.headers_mut(), receipt);
            }
            set_headers(reply.headers_mut(), headers);
            protect(reply.headers_mut());
            reply
        }
        Outcome::Refuse(refusal) => refusal_response(refusal, |required| {
            html.then(|| gate.paywall_html(required))
        }),
    }
}

impl HeaderSource for HeaderMap {
    fn get(&self, name: &str) -> Option<&[u8]> {
        HeaderMap::get(self, name).map(http::HeaderValue::as_bytes)
    }
}

/// The inner service and the request it runs, as the gate's handler.
struct HttpHandler<S> {
    inner: S,
    request: Request<Body>,
}

/// A response read into memory, with its share of the gate's pool.
struct HeldResponse {
    parts: http::response::Parts,
    body: Bytes,
    permit: HoldPermit,
}

impl<S, B> Handler for HttpHandler<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Reply = Response<Body>;
    type Held = HeldResponse;
    type Error = S::Error;

    fn run(self, access: Access<'_>) -> BoxFuture<'static, Result<Self::Reply, Self::Error>> {
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(access = %access.label(), "calling the inner service");
        }
        Box::pin(call_inner(self.inner, self.request))
    }

    fn class(reply: &Self::Reply) -> ReplyClass {
        ReplyClass::of_status(reply.status().as_u16())
    }

    fn usage(reply: &Self::Reply) -> Option<Usage> {
        reply.extensions().get::<Usage>().cloned()
    }

    fn hold(reply: Self::Reply, hold: Hold) -> BoxFuture<'static, Result<Self::Held, HoldError>> {
        Box::pin(hold_response(reply, hold))
    }

    fn release(held: Self::Held) -> Self::Reply {
        let body = Body::new(HeldBody {
            bytes: Some(held.body).filter(|b| !b.is_empty()),
            _permit: held.permit,
        });
        Response::from_parts(held.parts, body)
    }

    fn keep(held: Self::Held) -> KeptReply {
        let headers = held
            .parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        KeptReply {
            status: held.parts.status.as_u16(),
            headers,
            body: held.body,
        }
    }

    fn restore(kept: KeptReply) -> Self::Reply {
        let mut response = Response::new(Body::from(kept.body));
        *response.status_mut() = status_of(kept.status);
        let headers = response.headers_mut();
        for (name, value) in kept.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_bytes(&value),
            ) {
                headers.append(name, value);
            }
        }
        response
    }
}

/// Reads a response body within `hold`; a declared `Content-Length` over
/// the limit is refused before reading anything.
async fn hold_response(reply: Response<Body>, mut hold: Hold) -> Result<HeldResponse, HoldError> {
    let (parts, body) = reply.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > hold.limit() as u64) {
        return Err(HoldError::TooLarge);
    }
    let mut body = std::pin::pin!(body);
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| HoldError::Failed(error.into()))?;
        if let Ok(data) = frame.into_data() {
            hold.take(data.len())?;
            collected.extend_from_slice(&data);
        }
    }
    Ok(HeldResponse {
        parts,
        body: collected.freeze(),
        permit: hold.finish(),
    })
}

/// A single-chunk body that holds its share of the gate's pool until dropped.
struct HeldBody {
    bytes: Option<Bytes>,
    _permit: HoldPermit,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.bytes.take().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}
