//! The transport-neutral payment gate: route and price → requirements → 402
//! or decode the payment → match `accepted` field by field → verify →
//! reserve (single use) → run the handler (held back) → settle (or settle
//! first) → receipt; an unknown settlement outcome keeps the payment and the
//! reply for the payer's retry.
//!
//! A transport adapter drives it in three steps:
//!
//! 1. [`PaymentGate::route`] with the request's method and normalized path
//!    (`None`: not priced, run the handler as usual);
//! 2. read the body when [`RouteMatch::body_limit`] asks for it, and build a
//!    [`GateRequest`];
//! 3. [`PaymentGate::process`] with a [`Handler`] that runs the protected
//!    handler, then render the [`Outcome`] in the transport's terms.
//!
//! The tower [`crate::PaymentLayer`] is the HTTP adapter.

mod pipeline;
mod transport;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paywire_core::{
    AtomicAmount, ChainId, ChainIdPattern, EXPECTED_AMOUNT_EXTRA, Facilitator, NetworkDirectory,
    PaymentRequired, PaymentRequirements, Price, RequirementsRequest, ResourceInfo, SchemeError,
    SchemeRegistry, SchemeServer, SupportedKind, SupportedResponse,
};

pub use transport::{
    Access, CustomRefusal, ErrorRefusal, GateRequest, Handler, HeaderSource, Headers, Hold,
    HoldError, HoldPermit, KeptReply, Outcome, PaymentInput, Refusal, ReplyClass, RouteMatch,
    Served,
};

use crate::config::{PathMatching, PayTo, PayToResolver, PayToSpec, PriceSpec, Route};
use crate::context::RequestContext;
use crate::error::{ConfigError, PricingError};
use crate::extensions::offered_extensions;
use crate::hooks::{NoHooks, PaymentHooks};
use crate::path::{NormalizedPath, PathError, check_case_folding, check_method, normalize_path};
use crate::paywall::{AssetInfo, paywall_html};
use crate::reservation::{InMemoryReservationStore, ReservationStore};
use crate::response_cache::ResponseCache;
use crate::settlement::HeldBytes;

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

/// How long a failed `/supported` call is remembered before a new try.
const SUPPORTED_RETRY: Duration = Duration::from_secs(10);

/// The configuration and state every request of a gate shares.
struct GateCore {
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

/// Configures a [`PaymentGate`] (`Target = PaymentGate`) or, as
/// [`crate::PaymentLayerBuilder`], its tower layer.
pub struct PaymentGateBuilder<Target = PaymentGate> {
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
    target: PhantomData<fn() -> Target>,
}

impl<Target> std::fmt::Debug for PaymentGateBuilder<Target> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentGateBuilder")
            .field("routes", &self.routes)
            .field("public_origin", &self.public_origin)
            .finish_non_exhaustive()
    }
}

fn asset_key(network: &ChainId, asset: &str) -> (String, String) {
    (network.to_string(), asset.to_ascii_lowercase())
}

impl<Target> PaymentGateBuilder<Target> {
    /// Starts a configuration using `facilitator` for verify and settle.
    pub(crate) fn new(facilitator: Arc<dyn Facilitator>) -> Self {
        Self {
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
            target: PhantomData,
        }
    }

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
    /// Without it, the HTTP adapter uses the request's `Host` header.
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

    /// Checks the configuration and builds the gate.
    pub(crate) fn build_gate(self) -> Result<PaymentGate, ConfigError> {
        let public_origin = self
            .public_origin
            .as_deref()
            .map(checked_origin)
            .transpose()?;
        self.check_routes()?;
        let core = GateCore {
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
        };
        Ok(PaymentGate {
            core: Arc::new(core),
        })
    }

    /// Every route has options, a scheme server for each, and a resolver when
    /// it names a pay-to role; usage-based options settle after the handler.
    fn check_routes(&self) -> Result<(), ConfigError> {
        for route in &self.routes {
            if route.options.is_empty() {
                return Err(ConfigError::NoOptions(route.pattern.as_str().to_owned()));
            }
            for option in &route.options {
                let Some(server) = self.schemes.find(&option.scheme, &option.network) else {
                    return Err(ConfigError::UnknownScheme {
                        scheme: option.scheme.clone(),
                        network: option.network.to_string(),
                    });
                };
                check_usage(route, option, server.usage_based())?;
                if matches!(option.pay_to, PayToSpec::Fixed(PayTo::Role(_)))
                    && self.resolver.is_none()
                {
                    return Err(ConfigError::NoResolver(route.pattern.as_str().to_owned()));
                }
            }
        }
        Ok(())
    }
}

/// A usage-based option needs settlement after the handler; an expected
/// price needs a usage-based option.
fn check_usage(
    route: &Route,
    option: &crate::config::PaymentOption,
    usage_based: bool,
) -> Result<(), ConfigError> {
    if usage_based && route.settle_mode == crate::config::SettleMode::BeforeHandler {
        return Err(ConfigError::UsageBeforeHandler {
            route: route.pattern.as_str().to_owned(),
            scheme: option.scheme.clone(),
        });
    }
    if !usage_based && option.expected_price.is_some() {
        return Err(ConfigError::ExpectedPriceNotUsageBased {
            route: route.pattern.as_str().to_owned(),
            scheme: option.scheme.clone(),
        });
    }
    Ok(())
}

impl PaymentGateBuilder<PaymentGate> {
    /// Checks the configuration and builds the gate.
    pub fn build(self) -> Result<PaymentGate, ConfigError> {
        self.build_gate()
    }
}

/// `https://host[:port]` without a trailing `/`, or an error.
fn checked_origin(origin: &str) -> Result<String, ConfigError> {
    let trimmed = origin.trim_end_matches('/');
    let host = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match host {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
            Ok(trimmed.to_owned())
        }
        _ => Err(ConfigError::Origin(origin.to_owned())),
    }
}

/// `price` in atomic units of `requirement`'s asset, as `server` converts
/// it for the same network and recipient: `None` when it cannot, or names
/// another asset.
pub(crate) fn amount_in_asset(
    server: &dyn SchemeServer,
    requirement: &PaymentRequirements,
    price: &Price,
    facilitator_kind: Option<&SupportedKind>,
) -> Result<AtomicAmount, String> {
    let converted = server
        .requirements(&RequirementsRequest {
            network: &requirement.network,
            price,
            pay_to: &requirement.pay_to,
            max_timeout_seconds: requirement.max_timeout_seconds,
            facilitator_kind,
        })
        .map_err(|error| error.to_string())?;
    let same_asset = if converted.asset.starts_with("0x") {
        converted.asset.eq_ignore_ascii_case(&requirement.asset)
    } else {
        converted.asset == requirement.asset
    };
    if !same_asset {
        return Err(format!(
            "{price:?} converts to asset {}, not the option's {}",
            converted.asset, requirement.asset
        ));
    }
    Ok(converted.amount)
}

/// `requirement` with `extra.expectedAmount` from the option's expected
/// price, when it has one that converts to at most the maximum.
fn with_expected_amount(
    server: &dyn SchemeServer,
    option: &crate::config::PaymentOption,
    mut requirement: PaymentRequirements,
    kind: Option<&SupportedKind>,
) -> PaymentRequirements {
    let Some(price) = &option.expected_price else {
        return requirement;
    };
    match amount_in_asset(server, &requirement, price, kind) {
        Ok(expected) if expected <= requirement.amount => {
            requirement
                .extra
                .get_or_insert_with(Default::default)
                .insert(
                    EXPECTED_AMOUNT_EXTRA.to_owned(),
                    expected.to_string().into(),
                );
        }
        Ok(expected) => tracing::warn!(%expected, maximum = %requirement.amount,
            "expected price above the maximum: not advertised"),
        Err(detail) => tracing::warn!(%detail, "expected price not advertised"),
    }
    requirement
}

/// The payment pipeline in front of priced routes, for any transport (see
/// the [module](self) documentation). Cheap to clone.
#[derive(Clone)]
pub struct PaymentGate {
    core: Arc<GateCore>,
}

impl std::fmt::Debug for PaymentGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentGate")
            .field("routes", &self.core.routes.len())
            .finish_non_exhaustive()
    }
}

impl PaymentGate {
    /// Starts a configuration using `facilitator` for verify and settle.
    pub fn builder(facilitator: Arc<dyn Facilitator>) -> PaymentGateBuilder {
        PaymentGateBuilder::new(facilitator)
    }

    /// The priced route for `method` (upper case) on `path`, or `None` when
    /// the request is not priced. Refuses what routes could read as another
    /// request: a method with lower-case letters, and non-ASCII paths when
    /// routes match ignoring case.
    pub fn route(
        &self,
        method: &str,
        path: &NormalizedPath,
    ) -> Result<Option<RouteMatch<'_>>, PathError> {
        check_method(method)?;
        if self.core.path_matching.case_insensitive {
            check_case_folding(path)?;
        }
        Ok(self.core.match_route(method, path))
    }

    /// The requirements a request would be offered (what the 402 lists and
    /// what a payment is checked against). `None` for an unpriced path and
    /// for a path that cannot be normalized ([`crate::normalize_path`]).
    pub async fn requirements_for(
        &self,
        method: &str,
        path: &str,
        ctx: &RequestContext,
    ) -> Option<Result<Vec<PaymentRequirements>, PricingError>> {
        // Callers may pass a request target with its query.
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        let path = normalize_path(path).ok()?;
        let matched = self.core.match_route(method, &path)?;
        Some(self.core.requirements(matched.route, ctx).await)
    }

    /// The configured public origin (`https://api.example.com`), if any.
    pub fn public_origin(&self) -> Option<&str> {
        self.core.public_origin.as_deref()
    }

    /// Whether routes match ignoring (ASCII) case.
    pub fn case_insensitive_paths(&self) -> bool {
        self.core.path_matching.case_insensitive
    }

    /// The HTML page shown to browsers instead of a JSON 402 body.
    pub fn paywall_html(&self, required: &PaymentRequired) -> String {
        let assets = |r: &PaymentRequirements| self.core.asset_info(r);
        paywall_html(required, &assets, &self.core.networks)
    }
}

impl GateCore {
    fn match_route<'a>(&'a self, method: &str, path: &NormalizedPath) -> Option<RouteMatch<'a>> {
        self.routes.iter().find_map(|route| {
            let params = route
                .pattern
                .matches_normalized(method, path, self.path_matching)?;
            Some(RouteMatch { route, params })
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

    /// The facilitator's `/supported` answer, cached (a failure briefly).
    async fn supported(&self) -> Option<Arc<SupportedResponse>> {
        if let Ok(guard) = self.supported.lock()
            && let Some((at, cached)) = guard.as_ref()
        {
            let ttl = if cached.is_some() {
                self.supported_ttl
            } else {
                SUPPORTED_RETRY
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
        let mut left_out = None;
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
            let requirement = server.requirements(&RequirementsRequest {
                network: &option.network,
                price: &price,
                pay_to: &address,
                max_timeout_seconds: option
                    .max_timeout_seconds
                    .unwrap_or(route.max_timeout_seconds),
                facilitator_kind: kind,
            });
            match requirement {
                Ok(requirement) => {
                    accepts.push(with_expected_amount(&**server, option, requirement, kind));
                }
                // The facilitator does not offer this option (now): the
                // route still sells through its other options.
                Err(SchemeError::NeedsFacilitatorData(detail)) => {
                    tracing::warn!(network = %option.network, scheme = %option.scheme, %detail,
                        "payment option left out: the facilitator does not offer it");
                    left_out = Some(detail);
                }
                Err(error) => return Err(PricingError::Scheme(error.to_string())),
            }
        }
        match left_out {
            Some(detail) if accepts.is_empty() => Err(PricingError::Scheme(format!(
                "the facilitator offers none of the route's payment options: {detail}"
            ))),
            _ => Ok(accepts),
        }
    }

    /// The extensions the offered options' schemes declare for this 402,
    /// given what the facilitator supports (route-declared ones win).
    async fn scheme_extensions(
        &self,
        accepts: &[PaymentRequirements],
        mut extensions: Option<paywire_core::Extensions>,
    ) -> Option<paywire_core::Extensions> {
        let supported = self.supported().await;
        let listed = supported.as_deref().map_or(&[][..], |s| &s.extensions[..]);
        for requirement in accepts {
            let Some(server) = self.schemes.find(&requirement.scheme, &requirement.network) else {
                continue;
            };
            let declared = server.payment_required_extensions(requirement, listed);
            if declared.is_empty() {
                continue;
            }
            let merged = extensions.get_or_insert_with(paywire_core::Extensions::new);
            for (key, value) in declared {
                merged.0.entry(key).or_insert(value);
            }
        }
        extensions
    }

    /// The 402's `resource`: the route's own URL, or the transport's.
    fn resource(route: &Route, url: String) -> ResourceInfo {
        let url = route.resource.clone().unwrap_or(url);
        let mut resource = ResourceInfo::new(url);
        resource.description.clone_from(&route.description);
        resource.mime_type.clone_from(&route.mime_type);
        resource.service_name.clone_from(&route.service_name);
        resource.tags.clone_from(&route.tags);
        resource.icon_url.clone_from(&route.icon_url);
        resource
    }

    /// The route's 402 extensions, with `payment-identifier` unless turned off.
    fn extensions(
        &self,
        route: &Route,
        params: &HashMap<String, String>,
    ) -> Option<paywire_core::Extensions> {
        offered_extensions(route, params, self.advertise_payment_identifier)
    }
}
