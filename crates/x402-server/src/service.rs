//! The tower layer and service: 402 answers and the paid pipeline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use tower::{Layer, Service};
use x402_core::codec::{PAYMENT_SIGNATURE_HEADER, V1_PAYMENT_HEADER, decode_payment_signature};
use x402_core::{
    BoxFuture, ChainId, ChainIdPattern, Facilitator, FacilitatorRequest, PaymentRequired,
    PaymentRequirements, RequirementsRequest, ResourceInfo, SchemeRegistry, SchemeServer,
    SupportedResponse, X402_VERSION,
};

use crate::config::{PayTo, PayToResolver, PayToSpec, PendingPolicy, PriceSpec, Route, SettleMode};
use crate::context::RequestContext;
use crate::error::{ConfigError, PricingError};
use crate::hooks::{AccessDecision, HookVerdict, NoHooks, PaymentFailure, PaymentHooks};
use crate::http_facilitator::request_not_sent;
use crate::path::{NormalizedPath, normalize_path, normalize_request, refused as path_refused};
use crate::paywall::AssetInfo;
use crate::proof::{Access, Settled, Verified};
use crate::reservation::{
    InMemoryReservationStore, ReservationKey, ReservationStore, ReserveOutcome,
};
use crate::responses::{add_receipt, json_error, payment_required, protect, wants_html};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    supported_ttl: Duration,
    supported: Mutex<Option<(Instant, Option<Arc<SupportedResponse>>)>>,
    case_insensitive_paths: bool,
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
    supported_ttl: Duration,
    case_insensitive_paths: bool,
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

    /// How long the facilitator's `/supported` answer is cached (default 5 min).
    pub fn supported_ttl(mut self, ttl: Duration) -> Self {
        self.supported_ttl = ttl;
        self
    }

    /// Matches route patterns ignoring case (default: case-sensitive), for
    /// apps or upstreams that serve `/PAID` as `/paid`: otherwise such a
    /// spelling would reach the priced resource unpriced.
    pub fn case_insensitive_paths(mut self, enabled: bool) -> Self {
        self.case_insensitive_paths = enabled;
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
                supported_ttl: self.supported_ttl,
                supported: Mutex::new(None),
                case_insensitive_paths: self.case_insensitive_paths,
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
            supported_ttl: Duration::from_secs(300),
            case_insensitive_paths: false,
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

/// Holds a reservation; releases it if dropped before settlement started
/// (cancelled request), consumes it if dropped while settling.
struct Guard {
    store: Arc<dyn ReservationStore>,
    key: ReservationKey,
    state: GuardState,
}

#[derive(PartialEq, Eq)]
enum GuardState {
    Held,
    Settling,
    Done,
}

impl Guard {
    async fn release(&mut self) {
        self.state = GuardState::Done;
        if let Err(error) = self.store.release(&self.key).await {
            tracing::error!(%error, "releasing a payment reservation failed");
        }
    }

    async fn consume(&mut self) {
        self.state = GuardState::Done;
        if let Err(error) = self.store.consume(&self.key).await {
            tracing::error!(%error, "consuming a payment reservation failed");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let consume = match self.state {
            GuardState::Done => return,
            GuardState::Held => false,
            GuardState::Settling => true,
        };
        let (store, key) = (Arc::clone(&self.store), self.key);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let result = if consume {
                    store.consume(&key).await
                } else {
                    store.release(&key).await
                };
                if let Err(error) = result {
                    tracing::error!(%error, "cleaning up a dropped reservation failed");
                }
            });
        }
    }
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
        receipt: Option<&x402_core::SettleResponse>,
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
        payment_required(&required, self.html, &assets, receipt)
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

    /// Settles; `Ok` only with a [`Settled`] proof. Updates the reservation.
    async fn settle(
        &self,
        guard: &mut Guard,
        request: &FacilitatorRequest,
    ) -> Result<Settled, Response<Body>> {
        let hooks = &self.shared.hooks;
        if let HookVerdict::Abort {
            status,
            reason,
            message,
        } = hooks.before_settle(&self.ctx, request).await
        {
            guard.release().await;
            return Err(self.aborted(status, &reason, &message).await);
        }
        guard.state = GuardState::Settling;
        let answer = match self.shared.facilitator.settle(request).await {
            Ok(answer) => answer,
            Err(error) => {
                if request_not_sent(&error) {
                    guard.release().await;
                } else {
                    // The facilitator may have settled: never reuse.
                    guard.consume().await;
                }
                let response = json_error(
                    StatusCode::BAD_GATEWAY,
                    "facilitator_unavailable",
                    &format!("settlement could not be completed: {error}"),
                );
                return Err(self
                    .fail(PaymentFailure::Facilitator(error.to_string()), response)
                    .await);
            }
        };
        hooks.after_settle(&self.ctx, request, &answer).await;
        let answer = match Settled::check(answer) {
            Ok(settled) => {
                guard.consume().await;
                return Ok(settled);
            }
            Err(answer) => *answer,
        };
        if answer.is_pending() {
            // The transaction may still land: the payment is spent either way.
            guard.consume().await;
            if self.route.pending == PendingPolicy::Serve {
                return Settled::accept_pending(answer).map_err(|_| {
                    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "pending")
                });
            }
            let message = format!(
                "settlement pending: transaction {} was broadcast but is not confirmed yet; \
                 do not pay again, retry later",
                answer.transaction
            );
            let response = self.payment_required(message, Some(&answer)).await;
            return Err(self
                .fail(PaymentFailure::SettleFailed(answer), response)
                .await);
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
        Err(self
            .fail(PaymentFailure::SettleFailed(answer), response)
            .await)
    }
}

impl Shared {
    fn match_route(
        &self,
        method: &Method,
        path: &NormalizedPath,
    ) -> Option<(usize, HashMap<String, String>)> {
        self.routes.iter().enumerate().find_map(|(index, route)| {
            let params =
                route
                    .pattern
                    .matches_normalized(method, path, self.case_insensitive_paths)?;
            Some((index, params))
        })
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
        let path = match normalize_request(&mut request, self.case_insensitive_paths) {
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
                extensions: route_extensions(route, &ctx.params),
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
        let Some(signature) = request.headers().get(PAYMENT_SIGNATURE_HEADER) else {
            let message = if request.headers().contains_key(V1_PAYMENT_HEADER) {
                V1_MESSAGE
            } else {
                "PAYMENT-SIGNATURE header is required"
            };
            return Ok(paid.payment_required(message.to_owned(), None).await);
        };
        let payload = match decode_payment_signature(signature.as_bytes()) {
            Ok(payload) => payload,
            Err(error) => {
                let response =
                    json_error(StatusCode::BAD_REQUEST, error.reason(), &error.to_string());
                return Ok(paid
                    .fail(PaymentFailure::Malformed(error.to_string()), response)
                    .await);
            }
        };
        let Some(requirement) = paid
            .required
            .accepts
            .iter()
            .find(|ours| same_requirement(ours, &payload.accepted))
            .cloned()
        else {
            let response = paid
                .payment_required(
                    "the payment does not match this resource: its accepted requirements \
                 (scheme, network, amount, asset, payTo, maxTimeoutSeconds, extra) are not \
                 among the ones offered here"
                        .to_owned(),
                    None,
                )
                .await;
            return Ok(paid.fail(PaymentFailure::Mismatch, response).await);
        };
        // The facilitator sees OUR requirement, never the client's copy.
        let facilitator_request = FacilitatorRequest::new(payload, requirement);
        if let HookVerdict::Abort {
            status,
            reason,
            message,
        } = self
            .hooks
            .before_verify(&paid.ctx, &facilitator_request)
            .await
        {
            return Ok(paid.aborted(status, &reason, &message).await);
        }
        let answer = match self.facilitator.verify(&facilitator_request).await {
            Ok(answer) => answer,
            Err(error) => {
                let response = json_error(
                    StatusCode::BAD_GATEWAY,
                    "facilitator_unavailable",
                    &format!("payment could not be verified: {error}"),
                );
                return Ok(paid
                    .fail(PaymentFailure::Facilitator(error.to_string()), response)
                    .await);
            }
        };
        self.hooks
            .after_verify(&paid.ctx, &facilitator_request, &answer)
            .await;
        let verified = match Verified::check(answer) {
            Ok(verified) => verified,
            Err(answer) => {
                let reason = answer
                    .invalid_reason
                    .as_ref()
                    .map_or("unknown", |r| r.as_str());
                let detail = answer
                    .invalid_message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                let response = paid
                    .payment_required(
                        format!("payment verification failed: {reason}{detail}"),
                        None,
                    )
                    .await;
                return Ok(paid.fail(PaymentFailure::Invalid(*answer), response).await);
            }
        };
        let key = ReservationKey::of(&facilitator_request.payment_payload);
        let refused = match self.reservations.reserve(&key).await {
            Ok(ReserveOutcome::Reserved) => None,
            Ok(ReserveOutcome::InUse) => Some("payment already in use by another request"),
            Ok(ReserveOutcome::Consumed) => Some("payment already used"),
            Err(error) => {
                tracing::error!(%error, "reservation store failed");
                return Ok(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "reservation_failed",
                    "the payment could not be reserved; retry later",
                ));
            }
        };
        if let Some(message) = refused {
            let response = paid.payment_required(message.to_owned(), None).await;
            return Ok(paid.fail(PaymentFailure::Reused, response).await);
        }
        let mut guard = Guard {
            store: Arc::clone(&self.reservations),
            key,
            state: GuardState::Held,
        };
        tracing::debug!(payer = ?verified.payer(), key = %key.to_hex(), "payment verified and reserved");
        match paid.route.settle_mode {
            SettleMode::AfterHandler => {
                let response = call_inner(Access::Verified(&verified), inner, request).await?;
                let (mut parts, body) = response.into_parts();
                if !parts.status.is_success() {
                    guard.release().await;
                    protect(&mut parts.headers);
                    let failure = PaymentFailure::HandlerFailed(parts.status.as_u16());
                    let response = Response::from_parts(parts, Body::new(body));
                    return Ok(paid.fail(failure, response).await);
                }
                let bytes = match body.collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(error) => {
                        guard.release().await;
                        let error: BoxError = error.into();
                        let response = json_error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "handler_failed",
                            &format!("the response could not be produced: {error}"),
                        );
                        return Ok(paid
                            .fail(PaymentFailure::HandlerFailed(500), response)
                            .await);
                    }
                };
                match paid.settle(&mut guard, &facilitator_request).await {
                    Ok(settled) => {
                        add_receipt(&mut parts.headers, settled.receipt());
                        protect(&mut parts.headers);
                        Ok(Response::from_parts(parts, Body::from(bytes)))
                    }
                    Err(response) => Ok(response),
                }
            }
            SettleMode::BeforeHandler => {
                let settled = match paid.settle(&mut guard, &facilitator_request).await {
                    Ok(settled) => settled,
                    Err(response) => return Ok(response),
                };
                let mut response = call_inner(Access::Settled(&settled), inner, request).await?;
                add_receipt(response.headers_mut(), settled.receipt());
                protect(response.headers_mut());
                Ok(response.map(Body::new))
            }
        }
    }
}

/// The route's own 402 extensions; a `bazaar` declaration on a route with
/// parameters gets `routeTemplate` and this request's `pathParams`.
fn route_extensions(
    route: &Route,
    params: &std::collections::HashMap<String, String>,
) -> Option<x402_core::Extensions> {
    let mut extensions = route.extensions.clone()?;
    if let Some(template) = route.pattern.template()
        && let Some(serde_json::Value::Object(bazaar)) =
            extensions.0.get_mut(x402_core::extensions::BAZAAR)
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
    use x402_core::AtomicAmount;

    fn requirement() -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: ChainId::eip155(1),
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
            |r| r.network = ChainId::eip155(2),
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
