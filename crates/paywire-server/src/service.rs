//! The tower layer and service: 402 answers and the paid pipeline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use paywire_core::codec::{PAYMENT_SIGNATURE_HEADER, V1_PAYMENT_HEADER, decode_payment_signature};
use paywire_core::extensions::PAYMENT_IDENTIFIER;
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, Facilitator, FacilitatorRequest, NetworkDirectory,
    PaymentRequired, PaymentRequirements, RequirementsRequest, ResourceInfo, SchemeRegistry,
    SchemeServer, SettleResponse, SupportedResponse, VerifyResponse, X402_VERSION,
};
use tower::{Layer, Service};

use crate::config::{
    PathMatching, PayTo, PayToResolver, PayToSpec, PendingPolicy, PriceSpec, Route, SettleMode,
};
use crate::context::RequestContext;
use crate::error::{ConfigError, PricingError};
use crate::hooks::{AccessDecision, HookVerdict, NoHooks, PaymentFailure, PaymentHooks};
use crate::path::{NormalizedPath, normalize_path, normalize_request, refused as path_refused};
use crate::paywall::AssetInfo;
use crate::proof::{Access, Settled, Verified};
use crate::reservation::{
    InMemoryReservationStore, PayloadFingerprint, ReservationKey, ReservationStore, ReserveOutcome,
};
use crate::response_cache::{CachedResponse, RequestIdentity, ResponseCache};
use crate::responses::{add_receipt, json_error, payment_required, protect, wants_html};
use crate::settlement::{
    BoxError, BufferError, Guard, GuardState, HeldBytes, Settlement, Unknown, buffer,
    proves_nothing_charged, settle_error_is_definite,
};

/// Default limit of a paid response held back until settlement: 8 MiB.
pub const DEFAULT_MAX_PAID_RESPONSE_BYTES: usize = 8 << 20;

/// Default limit of all paid responses held back at once: 256 MiB (32
/// responses of the default maximum size).
pub const DEFAULT_MAX_PAID_RESPONSE_BYTES_IN_FLIGHT: usize = 256 << 20;

/// Default lifetime of a paid response kept after an unknown settlement
/// outcome: 10 minutes (longer than any authorization should stay valid).
const DEFAULT_UNKNOWN_CACHE_TTL: Duration = Duration::from_secs(600);

/// Default total size of the paid responses kept after unknown outcomes.
const DEFAULT_UNKNOWN_CACHE_BYTES: usize = 64 << 20;

/// How a paywire facilitator's replay refusal begins: "this payment was
/// settled and answered to an earlier request" (its `REPLAY_REFUSAL_PREFIX`).
const ALREADY_SETTLED_PREFIX: &str = "payment already settled:";

/// `Retry-After` (seconds) of a `settlement_unknown` answer.
const RETRY_UNKNOWN_AFTER: &str = "5";

/// The message of the 402 answered to x402 v1 clients.
const V1_MESSAGE: &str = "x402 v1 (X-PAYMENT header) is not supported: this server speaks x402 v2; \
                          send the payment in the PAYMENT-SIGNATURE header";

struct Shared {
    routes: Vec<Route>,
    facilitator: Arc<dyn Facilitator>,
    schemes: SchemeRegistry<dyn SchemeServer>,
    public_origin: Option<String>,
    hooks: Arc<dyn PaymentHooks>,
    reservations: Arc<dyn ReservationStore>,
    resolver: Option<Arc<dyn PayToResolver>>,
    assets: HashMap<(String, String), AssetInfo>,
    networks: NetworkDirectory,
    supported_ttl: Duration,
    supported: Mutex<Option<(Instant, Option<Arc<SupportedResponse>>)>>,
    path_matching: PathMatching,
    max_response_bytes: usize,
    held: HeldBytes,
    responses: ResponseCache,
    advertise_payment_identifier: bool,
}

/// Configures a [`PaymentLayer`].
pub struct PaymentLayerBuilder {
    facilitator: Arc<dyn Facilitator>,
    schemes: SchemeRegistry<dyn SchemeServer>,
    routes: Vec<Route>,
    public_origin: Option<String>,
    hooks: Arc<dyn PaymentHooks>,
    reservations: Arc<dyn ReservationStore>,
    resolver: Option<Arc<dyn PayToResolver>>,
    assets: HashMap<(String, String), AssetInfo>,
    networks: NetworkDirectory,
    supported_ttl: Duration,
    path_matching: PathMatching,
    max_response_bytes: usize,
    max_response_bytes_in_flight: usize,
    unknown_cache_ttl: Duration,
    unknown_cache_bytes: usize,
    advertise_payment_identifier: bool,
}

impl std::fmt::Debug for PaymentLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentLayerBuilder")
            .field("routes", &self.routes)
            .field("public_origin", &self.public_origin)
            .finish_non_exhaustive()
    }
}

fn asset_key(network: &ChainId, asset: &str) -> (String, String) {
    (network.to_string(), asset.to_ascii_lowercase())
}

impl PaymentLayerBuilder {
    /// Registers a scheme server for `networks`.
    pub fn scheme(mut self, networks: ChainIdPattern, server: Arc<dyn SchemeServer>) -> Self {
        let scheme = server.scheme().to_owned();
        self.schemes.register(scheme, networks, server);
        self
    }

    /// Replaces the scheme registry.
    pub fn schemes(mut self, schemes: SchemeRegistry<dyn SchemeServer>) -> Self {
        self.schemes = schemes;
        self
    }

    /// Adds a priced route; the first matching route wins.
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// The public origin (`https://api.example.com`) used for resource URLs.
    /// Without it, the request's `Host` header is used.
    pub fn public_origin(mut self, origin: impl Into<String>) -> Self {
        self.public_origin = Some(origin.into());
        self
    }

    /// Hooks (default: none).
    pub fn hooks(mut self, hooks: Arc<dyn PaymentHooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Reservation store (default: a fresh [`InMemoryReservationStore`]).
    pub fn reservations(mut self, store: Arc<dyn ReservationStore>) -> Self {
        self.reservations = store;
        self
    }

    /// Resolver for pay-to roles.
    pub fn pay_to_resolver(mut self, resolver: impl PayToResolver + 'static) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Display data of an asset, for the HTML paywall.
    pub fn asset(
        mut self,
        network: &ChainId,
        asset: &str,
        symbol: impl Into<String>,
        decimals: u8,
    ) -> Self {
        self.assets.insert(
            asset_key(network, asset),
            AssetInfo {
                symbol: Some(symbol.into()),
                decimals,
            },
        );
        self
    }

    /// Network names for the paywall page (`Base (eip155:8453)`), as the
    /// chain plugins contribute them (`PluginRegistry::networks`).
    pub fn networks(mut self, networks: NetworkDirectory) -> Self {
        self.networks = networks;
        self
    }

    /// How long the facilitator's `/supported` answer is cached (default 5 min).
    pub fn supported_ttl(mut self, ttl: Duration) -> Self {
        self.supported_ttl = ttl;
        self
    }

    /// Matches route patterns ignoring case (default: case-sensitive), for
    /// apps or upstreams that serve `/PAID` as `/paid`: otherwise such a
    /// spelling would reach the priced resource unpriced.
    pub fn case_insensitive_paths(mut self, enabled: bool) -> Self {
        self.path_matching.case_insensitive = enabled;
        self
    }

    /// Prices a route's final literal segment also with a format suffix
    /// (`/paid` also matches `/paid.json`, `/paid.html`; default off), for
    /// apps or upstreams that strip one before routing (Rails routes, Spring
    /// MVC before 5.3): otherwise `/paid.json` would be their `/paid`, free.
    pub fn format_suffixes(mut self, enabled: bool) -> Self {
        self.path_matching.format_suffixes = enabled;
        self
    }

    /// Largest handler response held back until settlement (default
    /// [`DEFAULT_MAX_PAID_RESPONSE_BYTES`], 8 MiB). A larger response is
    /// answered `500 response_too_large` and nothing is settled; sell large
    /// downloads with `.settle_before_handler()` (streamed) instead.
    pub fn max_paid_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Largest total of the handler responses held back until settlement by
    /// all requests at once (default
    /// [`DEFAULT_MAX_PAID_RESPONSE_BYTES_IN_FLIGHT`], 256 MiB). A request
    /// whose response would go over it is answered `503 server_busy` with
    /// `Retry-After`, nothing is settled and the payment stays usable: many
    /// verifying authorizations on a large route cannot exhaust memory.
    pub fn max_paid_response_bytes_in_flight(mut self, bytes: usize) -> Self {
        self.max_response_bytes_in_flight = bytes;
        self
    }

    /// How long (default 10 min) and how much (default 64 MiB in total) of
    /// the paid responses whose settlement outcome is unknown are kept in
    /// memory for the payer's retry. Without a kept response (expired,
    /// evicted, or lost in a restart) the retry runs the handler once
    /// settlement is final.
    pub fn unknown_outcome_cache(mut self, ttl: Duration, max_bytes: usize) -> Self {
        self.unknown_cache_ttl = ttl;
        self.unknown_cache_bytes = max_bytes;
        self
    }

    /// Whether every 402 advertises the `payment-identifier` extension with
    /// `required: false` (default: yes), so that buyers' clients give their
    /// payment an id. A facilitator that honours it (ours does) answers a
    /// repeated settle carrying the same id with its recorded outcome: when
    /// the answer to the first settle was lost on the way, the buyer's retry
    /// is then served instead of being refused as a replay. A route's own
    /// `payment-identifier` declaration is left as it is.
    pub fn advertise_payment_identifier(mut self, enabled: bool) -> Self {
        self.advertise_payment_identifier = enabled;
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<PaymentLayer, ConfigError> {
        let public_origin = match self.public_origin {
            Some(origin) => {
                let trimmed = origin.trim_end_matches('/');
                let rest = trimmed
                    .strip_prefix("https://")
                    .or_else(|| trimmed.strip_prefix("http://"));
                match rest {
                    Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
                        Some(trimmed.to_owned())
                    }
                    _ => return Err(ConfigError::Origin(origin)),
                }
            }
            None => None,
        };
        for route in &self.routes {
            if route.options.is_empty() {
                return Err(ConfigError::NoOptions(route.pattern.as_str().to_owned()));
            }
            for option in &route.options {
                if !self.schemes.supports(&option.scheme, &option.network) {
                    return Err(ConfigError::UnknownScheme {
                        scheme: option.scheme.clone(),
                        network: option.network.to_string(),
                    });
                }
                if matches!(option.pay_to, PayToSpec::Fixed(PayTo::Role(_)))
                    && self.resolver.is_none()
                {
                    return Err(ConfigError::NoResolver(route.pattern.as_str().to_owned()));
                }
            }
        }
        Ok(PaymentLayer {
            shared: Arc::new(Shared {
                routes: self.routes,
                facilitator: self.facilitator,
                schemes: self.schemes,
                public_origin,
                hooks: self.hooks,
                reservations: self.reservations,
                resolver: self.resolver,
                assets: self.assets,
                networks: self.networks,
                supported_ttl: self.supported_ttl,
                supported: Mutex::new(None),
                path_matching: self.path_matching,
                max_response_bytes: self.max_response_bytes,
                held: HeldBytes::new(self.max_response_bytes_in_flight),
                responses: ResponseCache::new(self.unknown_cache_ttl, self.unknown_cache_bytes),
                advertise_payment_identifier: self.advertise_payment_identifier,
            }),
        })
    }
}

/// Tower layer that puts x402 payments in front of priced routes.
#[derive(Clone)]
pub struct PaymentLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PaymentLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentLayer")
            .field("routes", &self.shared.routes.len())
            .finish_non_exhaustive()
    }
}

impl PaymentLayer {
    /// Starts a configuration using `facilitator` for verify and settle.
    pub fn builder(facilitator: Arc<dyn Facilitator>) -> PaymentLayerBuilder {
        PaymentLayerBuilder {
            facilitator,
            schemes: SchemeRegistry::new(),
            routes: Vec::new(),
            public_origin: None,
            hooks: Arc::new(NoHooks),
            reservations: Arc::new(InMemoryReservationStore::default()),
            resolver: None,
            assets: HashMap::new(),
            networks: NetworkDirectory::new(),
            supported_ttl: Duration::from_secs(300),
            path_matching: PathMatching::default(),
            max_response_bytes: DEFAULT_MAX_PAID_RESPONSE_BYTES,
            max_response_bytes_in_flight: DEFAULT_MAX_PAID_RESPONSE_BYTES_IN_FLIGHT,
            unknown_cache_ttl: DEFAULT_UNKNOWN_CACHE_TTL,
            unknown_cache_bytes: DEFAULT_UNKNOWN_CACHE_BYTES,
            advertise_payment_identifier: true,
        }
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
        // Callers may pass a request target with its query.
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        let path = normalize_path(path).ok()?;
        let (index, _) = self.shared.match_route(method, &path)?;
        Some(
            self.shared
                .requirements(&self.shared.routes[index], ctx)
                .await,
        )
    }
}

impl<S> Layer<S> for PaymentLayer {
    type Service = PaymentService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaymentService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service produced by [`PaymentLayer`].
#[derive(Clone)]
pub struct PaymentService<S> {
    inner: S,
    shared: Arc<Shared>,
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
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.handle(inner, request).await })
    }
}

/// Calls the inner service; requires proof that access was earned.
async fn call_inner<S, B>(
    access: Access<'_>,
    mut inner: S,
    request: Request<Body>,
) -> Result<Response<B>, S::Error>
where
    S: Service<Request<Body>, Response = Response<B>>,
{
    if tracing::enabled!(tracing::Level::TRACE) {
        tracing::trace!(access = %access.label(), "calling the inner service");
    }
    std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
    inner.call(request).await
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

/// How a settle-after-handler route treats its handler's answer.
#[derive(Debug, PartialEq, Eq)]
enum HandlerAnswer {
    /// 2xx and 3xx: held back until settlement, then given with the receipt.
    /// A redirect sells what it points to (a presigned download URL), so it
    /// is charged like content.
    Sellable,
    /// 4xx and 5xx: passed through, never charged (field lesson 2).
    Error,
    /// 1xx (`101 Switching Protocols`): the new protocol starts when the
    /// answer is sent, so it cannot be held back until settlement.
    Upgrade,
}

impl HandlerAnswer {
    fn of(status: StatusCode) -> Self {
        if status.is_client_error() || status.is_server_error() {
            Self::Error
        } else if status.is_informational() {
            Self::Upgrade
        } else {
            Self::Sellable
        }
    }
}

/// Per-request state of a priced route.
struct Paid<'a> {
    shared: &'a Shared,
    route: &'a Route,
    ctx: RequestContext,
    required: PaymentRequired,
    html: bool,
}

impl Paid<'_> {
    async fn payment_required(
        &self,
        error: String,
        receipt: Option<&paywire_core::SettleResponse>,
    ) -> Response<Body> {
        let mut required = self.required.clone();
        required.error = Some(error);
        let added = self
            .shared
            .hooks
            .payment_required_extensions(&self.ctx, &required.accepts)
            .await;
        if !added.is_empty() {
            let mut merged = required.extensions.take().unwrap_or_default();
            merged.0.extend(added.0);
            required.extensions = Some(merged);
        }
        let assets = |r: &PaymentRequirements| self.shared.asset_info(r);
        payment_required(
            &required,
            self.html,
            &assets,
            &self.shared.networks,
            receipt,
        )
    }

    async fn fail(&self, failure: PaymentFailure, response: Response<Body>) -> Response<Body> {
        tracing::info!(route = %self.route.pattern.as_str(), ?failure, "paid request refused");
        match self.shared.hooks.on_failure(&self.ctx, &failure).await {
            Some(mut replacement) => {
                protect(replacement.headers_mut());
                replacement
            }
            None => response,
        }
    }

    /// The answer to a hook's [`HookVerdict::Abort`].
    async fn aborted(&self, status: StatusCode, reason: &str, message: &str) -> Response<Body> {
        let response = if status == StatusCode::PAYMENT_REQUIRED {
            self.payment_required(format!("{reason}: {message}"), None)
                .await
        } else {
            json_error(status, reason, message)
        };
        self.fail(PaymentFailure::Aborted(reason.to_owned()), response)
            .await
    }

    /// Decodes `PAYMENT-SIGNATURE` and binds it to the matching requirement
    /// of this request (the facilitator sees OUR requirement, never the
    /// client's copy).
    async fn payment_of(&self, headers: &HeaderMap) -> Result<FacilitatorRequest, Response<Body>> {
        let Some(signature) = headers.get(PAYMENT_SIGNATURE_HEADER) else {
            let message = if headers.contains_key(V1_PAYMENT_HEADER) {
                V1_MESSAGE
            } else {
                "PAYMENT-SIGNATURE header is required"
            };
            return Err(self.payment_required(message.to_owned(), None).await);
        };
        let payload = match decode_payment_signature(signature.as_bytes()) {
            Ok(payload) => payload,
            Err(error) => {
                let response =
                    json_error(StatusCode::BAD_REQUEST, error.reason(), &error.to_string());
                return Err(self
                    .fail(PaymentFailure::Malformed(error.to_string()), response)
                    .await);
            }
        };
        let Some(requirement) = self
            .required
            .accepts
            .iter()
            .find(|ours| same_requirement(ours, &payload.accepted))
            .cloned()
        else {
            let response = self
                .payment_required(
                    "the payment does not match this resource: its accepted requirements \
                 (scheme, network, amount, asset, payTo, maxTimeoutSeconds, extra) are not \
                 among the ones offered here"
                        .to_owned(),
                    None,
                )
                .await;
            return Err(self.fail(PaymentFailure::Mismatch, response).await);
        };
        Ok(FacilitatorRequest::new(payload, requirement))
    }

    /// Verifies: `Ok(Ok(_))` valid, `Ok(Err(_))` judged invalid, `Err(_)` the
    /// answer to send (aborted by a hook, facilitator unreachable).
    async fn verify(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<Result<Verified, Box<VerifyResponse>>, Response<Body>> {
        let hooks = &self.shared.hooks;
        if let HookVerdict::Abort {
            status,
            reason,
            message,
        } = hooks.before_verify(&self.ctx, request).await
        {
            return Err(self.aborted(status, &reason, &message).await);
        }
        let answer = match self.shared.facilitator.verify(request).await {
            Ok(answer) => answer,
            Err(error) => {
                let response = json_error(
                    StatusCode::BAD_GATEWAY,
                    "facilitator_unavailable",
                    &format!("payment could not be verified: {error}"),
                );
                return Err(self
                    .fail(PaymentFailure::Facilitator(error.to_string()), response)
                    .await);
            }
        };
        hooks.after_verify(&self.ctx, request, &answer).await;
        Ok(Verified::check(answer))
    }

    /// The 402 for a payment the facilitator judged invalid.
    async fn invalid(&self, answer: &VerifyResponse) -> Response<Body> {
        let reason = answer
            .invalid_reason
            .as_ref()
            .map_or("unknown", |r| r.as_str());
        let detail = answer
            .invalid_message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let response = self
            .payment_required(
                format!("payment verification failed: {reason}{detail}"),
                None,
            )
            .await;
        self.fail(PaymentFailure::Invalid(answer.clone()), response)
            .await
    }

    /// Takes the payment for this request (fresh, or resumed after an
    /// unknown outcome), or the refusal to send.
    async fn reserve(
        &self,
        key: ReservationKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Guard, Response<Body>> {
        let store = &self.shared.reservations;
        let message = match store.reserve(&key, &fingerprint).await {
            Ok(ReserveOutcome::Reserved) => {
                return Ok(Guard::new(Arc::clone(store), key, fingerprint, false));
            }
            Ok(ReserveOutcome::Resumed) => {
                return Ok(Guard::new(Arc::clone(store), key, fingerprint, true));
            }
            Ok(ReserveOutcome::InUse) => "payment already in use by another request",
            Ok(ReserveOutcome::Consumed) => "payment already used",
            Err(error) => {
                tracing::error!(%error, "reservation store failed");
                return Err(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "reservation_failed",
                    "the payment could not be reserved; retry later",
                ));
            }
        };
        let response = self.payment_required(message.to_owned(), None).await;
        Err(self.fail(PaymentFailure::Reused, response).await)
    }

    /// The answer when the handler's response could not be buffered for
    /// settlement (nothing was charged).
    async fn unbuffered(&self, error: BufferError, limit: usize) -> Response<Body> {
        let (failure, response) = match error {
            BufferError::TooLarge => (
                PaymentFailure::ResponseTooLarge { limit },
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "response_too_large",
                    &format!(
                        "the response is larger than the {limit}-byte limit for paid responses, \
                         which are held back until the payment settles; it cannot be sold \
                         buffered and nothing was charged"
                    ),
                ),
            ),
            BufferError::Busy => {
                let mut response = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_busy",
                    "too many paid responses are waiting for settlement right now; retry \
                     shortly with the same PAYMENT-SIGNATURE (nothing was charged)",
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                (PaymentFailure::Busy, response)
            }
            BufferError::Failed(error) => (
                PaymentFailure::HandlerFailed(500),
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "handler_failed",
                    &format!("the response could not be produced (nothing was charged): {error}"),
                ),
            ),
        };
        self.fail(failure, response).await
    }

    /// The answer when a settle-after-handler route's handler switched
    /// protocols (nothing was charged, the upgrade did not happen).
    async fn upgrade_refused(&self, status: StatusCode) -> Response<Body> {
        tracing::error!(route = %self.route.pattern.as_str(), %status,
            "a paid route answered a protocol upgrade after its handler ran; declare it \
             with .settle_before_handler()");
        let response = json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upgrade_needs_settle_before_handler",
            &format!(
                "this paid route answered {status}, a protocol upgrade, which cannot be held \
                 back until the payment settles; the seller must declare the route with \
                 settle-before-handler; nothing was charged"
            ),
        );
        self.fail(PaymentFailure::HandlerFailed(status.as_u16()), response)
            .await
    }

    /// Settles (or, for a resumed payment, asks the facilitator again) and
    /// updates the reservation, except for an unknown outcome: the caller
    /// keeps the response first, then marks it.
    async fn settle(
        &self,
        guard: &mut Guard,
        request: &FacilitatorRequest,
    ) -> Settlement<Response<Body>> {
        let hooks = &self.shared.hooks;
        if let HookVerdict::Abort {
            status,
            reason,
            message,
        } = hooks.before_settle(&self.ctx, request).await
        {
            guard.let_go().await;
            return Settlement::Refused(self.aborted(status, &reason, &message).await);
        }
        guard.state = GuardState::Settling;
        let answer = match self.shared.facilitator.settle(request).await {
            Ok(answer) => answer,
            Err(error) if !guard.resumed && settle_error_is_definite(&error) => {
                guard.release().await;
                let response = json_error(
                    StatusCode::BAD_GATEWAY,
                    "facilitator_unavailable",
                    &format!("settlement could not be completed (nothing was charged): {error}"),
                );
                return Settlement::Refused(
                    self.fail(PaymentFailure::Facilitator(error.to_string()), response)
                        .await,
                );
            }
            Err(error) => {
                return Settlement::Unknown(Unknown {
                    receipt: None,
                    detail: error.to_string(),
                });
            }
        };
        hooks.after_settle(&self.ctx, request, &answer).await;
        self.judge(guard, answer, &request.payment_requirements.scheme)
            .await
    }

    /// Judges a settlement answer (see [`Paid::settle`]).
    async fn judge(
        &self,
        guard: &mut Guard,
        answer: SettleResponse,
        scheme: &str,
    ) -> Settlement<Response<Body>> {
        let answer = match Settled::check(answer) {
            Ok(settled) => {
                guard.consume().await;
                return Settlement::Settled(settled);
            }
            Err(answer) => *answer,
        };
        if answer.is_pending() {
            if self.route.pending == PendingPolicy::Serve
                && let Ok(settled) = Settled::accept_pending(answer.clone())
            {
                // Served: the payment is spent whatever the chain decides.
                guard.consume().await;
                return Settlement::Settled(settled);
            }
            let detail = format!("transaction {} is pending", answer.transaction);
            return Settlement::Unknown(Unknown {
                receipt: Some(answer),
                detail,
            });
        }
        let scheme = self
            .shared
            .schemes
            .find(scheme, &answer.network)
            .map(|found| found.as_ref());
        if guard.resumed && !proves_nothing_charged(&answer, scheme) {
            // An earlier attempt may have been charged: never reusable, and
            // never a 402 (its new challenge would invite paying twice).
            guard.keep_unknown().await;
            return Settlement::Refused(self.disputed(&guard.key, answer, scheme).await);
        }
        guard.release().await;
        let reason = answer
            .error_reason
            .as_ref()
            .map_or("unknown", |r| r.as_str())
            .to_owned();
        let detail = answer
            .error_message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let response = self
            .payment_required(
                format!("settlement failed: {reason}{detail}"),
                Some(&answer),
            )
            .await;
        Settlement::Refused(
            self.fail(PaymentFailure::SettleFailed(answer), response)
                .await,
        )
    }

    /// The answer when a payment resumed after an unknown outcome is now
    /// refused for a reason that does not prove the first attempt was free
    /// (typically: its authorization is already used, because that attempt
    /// settled and its answer was lost). Not a 402: the payer must not pay
    /// again. The payment stays kept.
    async fn disputed(
        &self,
        key: &ReservationKey,
        answer: SettleResponse,
        scheme: Option<&dyn SchemeServer>,
    ) -> Response<Body> {
        let reference = key.to_hex();
        let reason = answer
            .error_reason
            .as_ref()
            .map_or("unknown", |r| r.as_str());
        tracing::warn!(route = %self.route.pattern.as_str(), %reference, %reason, payer = ?answer.payer,
            "a payment resumed after an unknown outcome was refused; an earlier attempt may have \
             been charged (a facilitator API key lets its idempotent retries through)");
        // A paywire facilitator says so in words (its replay refusal); the
        // scheme knows its own "already used" codes (other facilitators').
        let used = answer.error_reason.as_ref().is_some_and(|reason| {
            *reason == paywire_core::ErrorReason::DUPLICATE_SETTLEMENT
                || scheme.is_some_and(|scheme| scheme.refusal_means_spent(reason))
        }) || answer
            .error_message
            .as_deref()
            .is_some_and(|m| m.starts_with(ALREADY_SETTLED_PREFIX));
        let what = if used {
            "this payment's authorization has already been used: it appears to have been \
             settled by an earlier attempt whose answer was lost"
                .to_owned()
        } else {
            format!(
                "settling this payment again failed ({reason}), but an earlier attempt whose \
                 outcome is unknown may have charged it"
            )
        };
        let message = format!(
            "{what}; do not pay again: contact the seller with payment reference {reference}"
        );
        let mut body = serde_json::json!({
            "error": "settlement_disputed",
            "message": message,
            "reference": reference,
            "reason": reason,
        });
        if let Some(payer) = &answer.payer {
            body["payer"] = serde_json::Value::String(payer.clone());
        }
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = StatusCode::CONFLICT;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        protect(response.headers_mut());
        self.fail(PaymentFailure::SettleFailed(answer), response)
            .await
    }

    /// The answer to an unknown settlement outcome: the payer must retry
    /// with the same payment, never pay again.
    async fn unknown_outcome(&self, unknown: Unknown) -> Response<Body> {
        match unknown.receipt {
            Some(receipt) => {
                let message = format!(
                    "settlement pending: transaction {} was broadcast but is not confirmed yet; \
                     do not pay again: retry this request with the same PAYMENT-SIGNATURE to \
                     receive the response once it is confirmed",
                    receipt.transaction
                );
                let response = self.payment_required(message, Some(&receipt)).await;
                self.fail(PaymentFailure::SettleFailed(receipt), response)
                    .await
            }
            None => {
                let mut response = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "settlement_unknown",
                    &format!(
                        "the settlement outcome is unknown ({}); do not pay again: retry this \
                         request with the same PAYMENT-SIGNATURE to receive the response once \
                         settlement is final",
                        unknown.detail
                    ),
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_UNKNOWN_AFTER));
                self.fail(PaymentFailure::SettlementUnknown(unknown.detail), response)
                    .await
            }
        }
    }
}

impl Shared {
    fn match_route(
        &self,
        method: &Method,
        path: &NormalizedPath,
    ) -> Option<(usize, HashMap<String, String>)> {
        self.routes.iter().enumerate().find_map(|(index, route)| {
            let params = route
                .pattern
                .matches_normalized(method, path, self.path_matching)?;
            Some((index, params))
        })
    }

    /// The route's 402 extensions, with `payment-identifier` added unless
    /// the route declares its own or advertising it is off.
    fn offered_extensions(
        &self,
        route: &Route,
        params: &HashMap<String, String>,
    ) -> Option<paywire_core::Extensions> {
        let mut extensions = route_extensions(route, params);
        if self.advertise_payment_identifier {
            extensions
                .get_or_insert_with(paywire_core::Extensions::new)
                .0
                .entry(PAYMENT_IDENTIFIER)
                .or_insert_with(payment_identifier_declaration);
        }
        extensions
    }

    fn asset_info(&self, requirement: &PaymentRequirements) -> Option<AssetInfo> {
        if let Some(info) = self
            .assets
            .get(&asset_key(&requirement.network, &requirement.asset))
        {
            return Some(info.clone());
        }
        let decimals = requirement.extra.as_ref()?.get("decimals")?.as_u64()?;
        Some(AssetInfo {
            symbol: requirement.extra_str("symbol").map(str::to_owned),
            decimals: u8::try_from(decimals).ok()?,
        })
    }

    async fn supported(&self) -> Option<Arc<SupportedResponse>> {
        if let Ok(guard) = self.supported.lock()
            && let Some((at, cached)) = guard.as_ref()
        {
            let ttl = if cached.is_some() {
                self.supported_ttl
            } else {
                Duration::from_secs(10)
            };
            if at.elapsed() < ttl {
                return cached.clone();
            }
        }
        let fresh = match self.facilitator.supported().await {
            Ok(supported) => Some(Arc::new(supported)),
            Err(error) => {
                tracing::warn!(%error, "facilitator /supported failed; building requirements without it");
                None
            }
        };
        if let Ok(mut guard) = self.supported.lock() {
            *guard = Some((Instant::now(), fresh.clone()));
        }
        fresh
    }

    /// The one evaluation function used by both the 402 and the paid retry.
    async fn requirements(
        &self,
        route: &Route,
        ctx: &RequestContext,
    ) -> Result<Vec<PaymentRequirements>, PricingError> {
        let supported = self.supported().await;
        let mut accepts = Vec::with_capacity(route.options.len());
        for option in &route.options {
            let price = match &option.price {
                PriceSpec::Fixed(price) => price.clone(),
                PriceSpec::Dynamic(f) => f.price(ctx).await?,
            };
            let pay_to = match &option.pay_to {
                PayToSpec::Fixed(pay_to) => pay_to.clone(),
                PayToSpec::Dynamic(f) => f.pay_to(ctx).await?,
            };
            let address = match pay_to {
                PayTo::Address(address) => address,
                PayTo::Role(role) => match &self.resolver {
                    Some(resolver) => resolver.resolve(&role, &option.network, ctx).await?,
                    None => return Err(PricingError::UnknownRole(role)),
                },
            };
            let server = self
                .schemes
                .find(&option.scheme, &option.network)
                .ok_or_else(|| {
                    PricingError::Scheme(format!(
                        "no scheme server for {} on {}",
                        option.scheme, option.network
                    ))
                })?;
            let kind = supported
                .as_deref()
                .and_then(|s| s.kind(&option.scheme, &option.network));
            let requirement = server
                .requirements(&RequirementsRequest {
                    network: &option.network,
                    price: &price,
                    pay_to: &address,
                    max_timeout_seconds: option
                        .max_timeout_seconds
                        .unwrap_or(route.max_timeout_seconds),
                    facilitator_kind: kind,
                })
                .map_err(|e| PricingError::Scheme(e.to_string()))?;
            accepts.push(requirement);
        }
        Ok(accepts)
    }

    fn resource(&self, route: &Route, uri: &http::Uri, headers: &HeaderMap) -> ResourceInfo {
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let url = match (&route.resource, &self.public_origin) {
            (Some(url), _) => url.clone(),
            (None, Some(origin)) => format!("{origin}{path_and_query}"),
            (None, None) => match headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
            {
                Some(host) => format!("http://{host}{path_and_query}"),
                None => path_and_query.to_owned(),
            },
        };
        let mut resource = ResourceInfo::new(url);
        resource.description = route.description.clone();
        resource.mime_type = route.mime_type.clone();
        resource.service_name = route.service_name.clone();
        resource.tags = route.tags.clone();
        resource.icon_url = route.icon_url.clone();
        resource
    }

    async fn handle<S, B>(
        &self,
        inner: S,
        request: Request<Body>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        // Price what runs: the inner service gets the normalized path.
        let mut request = request;
        let path = match normalize_request(&mut request, self.path_matching.case_insensitive) {
            Ok(path) => path,
            Err(error) => return Ok(path_refused(error)),
        };
        let Some((index, params)) = self.match_route(request.method(), &path) else {
            return call_inner(Access::Unpriced, inner, request)
                .await
                .map(|r| r.map(Body::new));
        };
        let route = &self.routes[index];
        let (parts, body) = request.into_parts();
        let (buffered, body) = match route.body_limit {
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
        let ctx = RequestContext {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: buffered,
            params,
            route: route.pattern.as_str().to_owned(),
        };
        let request = Request::from_parts(parts, body);
        if self.hooks.grant_access(&ctx).await {
            let mut response = call_inner(Access::Granted, inner, request).await?;
            protect(response.headers_mut());
            return Ok(response.map(Body::new));
        }
        let accepts = match self.requirements(route, &ctx).await {
            Ok(accepts) => accepts,
            Err(error) => {
                tracing::error!(%error, route = %route.pattern.as_str(), "pricing failed");
                return Ok(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "pricing_failed",
                    &error.to_string(),
                ));
            }
        };
        let decision = self.hooks.check_access(&ctx, &accepts).await;
        let paid = Paid {
            shared: self,
            route,
            html: wants_html(request.headers()),
            required: PaymentRequired {
                x402_version: X402_VERSION,
                error: None,
                resource: self.resource(route, request.uri(), request.headers()),
                accepts,
                extensions: self.offered_extensions(route, &ctx.params),
            },
            ctx,
        };
        match decision {
            AccessDecision::Pay => self.paid(paid, inner, request).await,
            AccessDecision::Grant { headers } => {
                let mut response = call_inner(Access::Granted, inner, request).await?;
                response.headers_mut().extend(headers);
                protect(response.headers_mut());
                Ok(response.map(Body::new))
            }
            AccessDecision::Fail {
                status,
                reason,
                message,
            } => {
                tracing::info!(route = %route.pattern.as_str(), %reason, "access refused by a hook");
                if status == StatusCode::PAYMENT_REQUIRED {
                    Ok(paid
                        .payment_required(format!("{reason}: {message}"), None)
                        .await)
                } else {
                    Ok(json_error(status, &reason, &message))
                }
            }
        }
    }

    async fn paid<S, B>(
        &self,
        paid: Paid<'_>,
        inner: S,
        request: Request<Body>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        let facilitator_request = match paid.payment_of(request.headers()).await {
            Ok(facilitator_request) => facilitator_request,
            Err(response) => return Ok(response),
        };
        let key = ReservationKey::of(&facilitator_request.payment_payload);
        let fingerprint = PayloadFingerprint::of(&facilitator_request.payment_payload);
        let verdict = match paid.verify(&facilitator_request).await {
            Ok(verdict) => verdict,
            Err(response) => return Ok(response),
        };
        // A payment whose first settlement landed no longer verifies (its
        // nonce is used): only a recorded unknown outcome of this very payload
        // lets it through, to resume.
        if let Err(invalid) = &verdict
            && !self.is_unknown(&key, &fingerprint).await
        {
            return Ok(paid.invalid(invalid).await);
        }
        let mut guard = match paid.reserve(key, fingerprint).await {
            Ok(guard) => guard,
            Err(response) => return Ok(response),
        };
        if guard.resumed {
            return self
                .resume(&paid, guard, inner, request, &facilitator_request)
                .await;
        }
        let verified = match verdict {
            Ok(verified) => verified,
            Err(invalid) => {
                guard.release().await;
                return Ok(paid.invalid(&invalid).await);
            }
        };
        tracing::debug!(payer = ?verified.payer(), key = %key.to_hex(), "payment verified and reserved");
        match paid.route.settle_mode {
            SettleMode::AfterHandler => {
                self.settle_after_handler(
                    &paid,
                    guard,
                    &verified,
                    inner,
                    request,
                    &facilitator_request,
                )
                .await
            }
            SettleMode::BeforeHandler => {
                let settled = match paid.settle(&mut guard, &facilitator_request).await {
                    Settlement::Settled(settled) => settled,
                    Settlement::Unknown(unknown) => {
                        guard.keep_unknown().await;
                        return Ok(paid.unknown_outcome(unknown).await);
                    }
                    Settlement::Refused(response) => return Ok(response),
                };
                let mut response = call_inner(Access::Settled(&settled), inner, request).await?;
                add_receipt(response.headers_mut(), settled.receipt());
                protect(response.headers_mut());
                Ok(response.map(Body::new))
            }
        }
    }

    async fn is_unknown(&self, key: &ReservationKey, fingerprint: &PayloadFingerprint) -> bool {
        self.reservations
            .is_unknown(key, fingerprint)
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "reservation store failed");
                false
            })
    }

    /// The default mode: handler, buffered body, settlement, then the body.
    async fn settle_after_handler<S, B>(
        &self,
        paid: &Paid<'_>,
        mut guard: Guard,
        verified: &Verified,
        inner: S,
        request: Request<Body>,
        facilitator_request: &FacilitatorRequest,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        let identity = RequestIdentity::new(request.method(), request.uri());
        let response = call_inner(Access::Verified(verified), inner, request).await?;
        let (mut parts, body) = response.into_parts();
        match HandlerAnswer::of(parts.status) {
            HandlerAnswer::Sellable => {}
            HandlerAnswer::Error => {
                // Field lesson 2: errors are never charged.
                guard.release().await;
                protect(&mut parts.headers);
                let failure = PaymentFailure::HandlerFailed(parts.status.as_u16());
                let response = Response::from_parts(parts, Body::new(body));
                return Ok(paid.fail(failure, response).await);
            }
            HandlerAnswer::Upgrade => {
                // Dropping the 101 cancels the upgrade: nothing was given.
                guard.release().await;
                return Ok(paid.upgrade_refused(parts.status).await);
            }
        }
        let held = match buffer(self.max_response_bytes, &self.held, &parts.headers, body).await {
            Ok(held) => held,
            Err(error) => {
                // Nothing was settled: the payment stays usable.
                guard.release().await;
                return Ok(paid.unbuffered(error, self.max_response_bytes).await);
            }
        };
        match paid.settle(&mut guard, facilitator_request).await {
            Settlement::Settled(settled) => {
                add_receipt(&mut parts.headers, settled.receipt());
                protect(&mut parts.headers);
                Ok(Response::from_parts(parts, held.into_body()))
            }
            Settlement::Unknown(unknown) => {
                // The response cache bounds what it keeps by itself.
                let kept = CachedResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: held.bytes,
                };
                self.responses
                    .put(guard.key, guard.fingerprint, identity, kept);
                guard.keep_unknown().await;
                Ok(paid.unknown_outcome(unknown).await)
            }
            Settlement::Refused(response) => Ok(response),
        }
    }

    /// A retry of a payment whose settlement outcome was unknown: ask the
    /// facilitator again; once settled, serve the kept response (or run the
    /// handler when it is gone).
    async fn resume<S, B>(
        &self,
        paid: &Paid<'_>,
        mut guard: Guard,
        inner: S,
        request: Request<Body>,
        facilitator_request: &FacilitatorRequest,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        tracing::info!(key = %guard.key.to_hex(), "resuming a payment whose settlement outcome was unknown");
        let settled = match paid.settle(&mut guard, facilitator_request).await {
            Settlement::Settled(settled) => settled,
            Settlement::Unknown(unknown) => {
                guard.keep_unknown().await;
                return Ok(paid.unknown_outcome(unknown).await);
            }
            Settlement::Refused(response) => return Ok(response),
        };
        let identity = RequestIdentity::new(request.method(), request.uri());
        let mut response = match self
            .responses
            .take(&guard.key, &guard.fingerprint, &identity)
        {
            Some(kept) => {
                let mut response = Response::new(Body::from(kept.body));
                *response.status_mut() = kept.status;
                *response.headers_mut() = kept.headers;
                response
            }
            None => call_inner(Access::Settled(&settled), inner, request)
                .await?
                .map(Body::new),
        };
        add_receipt(response.headers_mut(), settled.receipt());
        protect(response.headers_mut());
        Ok(response)
    }
}

/// The `payment-identifier` declaration of a 402 (the extension's spec):
/// ids are optional, 16 to 128 characters.
fn payment_identifier_declaration() -> serde_json::Value {
    serde_json::json!({
        "info": {"required": false},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "required": {"type": "boolean"},
                "id": {"type": "string", "minLength": 16, "maxLength": 128}
            },
            "required": ["required"]
        }
    })
}

/// The route's own 402 extensions; a `bazaar` declaration on a route with
/// parameters gets `routeTemplate` and this request's `pathParams`.
fn route_extensions(
    route: &Route,
    params: &std::collections::HashMap<String, String>,
) -> Option<paywire_core::Extensions> {
    let mut extensions = route.extensions.clone()?;
    if let Some(template) = route.pattern.template()
        && let Some(serde_json::Value::Object(bazaar)) =
            extensions.0.get_mut(paywire_core::extensions::BAZAAR)
    {
        let Some(serde_json::Value::Object(input)) = bazaar
            .get_mut("info")
            .and_then(|info| info.get_mut("input"))
        else {
            return Some(extensions);
        };
        // MCP tools are keyed by URL and tool name; only HTTP inputs carry
        // path parameters.
        if input.get("type").and_then(serde_json::Value::as_str) == Some("http") {
            let values: serde_json::Map<String, serde_json::Value> = params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            input.insert("pathParams".into(), serde_json::Value::Object(values));
            bazaar.insert(
                "routeTemplate".into(),
                serde_json::Value::String(template.to_owned()),
            );
        }
    }
    Some(extensions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_http_declarations_get_template_and_path_params_mcp_ones_do_not() {
        let params: std::collections::HashMap<String, String> =
            [("id".to_owned(), "42".to_owned())].into();
        let http =
            serde_json::json!({"info": {"input": {"type": "http", "method": "GET"}}, "schema": {}});
        let route = Route::new("GET /users/:id")
            .unwrap()
            .extension("bazaar", http);
        let extensions = route_extensions(&route, &params).unwrap();
        assert_eq!(extensions.0["bazaar"]["routeTemplate"], "/users/:id");
        assert_eq!(
            extensions.0["bazaar"]["info"]["input"]["pathParams"],
            serde_json::json!({"id": "42"})
        );

        let mcp = serde_json::json!({"info": {"input": {"type": "mcp", "toolName": "t", "inputSchema": {}}}, "schema": {}});
        let route = Route::new("POST /mcp/:tenant")
            .unwrap()
            .extension("bazaar", mcp.clone());
        let extensions = route_extensions(&route, &params).unwrap();
        assert_eq!(extensions.0["bazaar"], mcp, "left as declared");

        let fixed = Route::new("GET /weather").unwrap();
        assert!(route_extensions(&fixed, &params).is_none());
    }
    use paywire_core::AtomicAmount;

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
