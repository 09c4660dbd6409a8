//! # paywire-gateway
//!
//! `paywire gateway`: a reverse proxy that sells an existing HTTP API for
//! x402 payments, configured from TOML ([`example_config`]).
//!
//! Priced routes go through [`paywire_server::PaymentLayer`] (upstream
//! answers are buffered there, up to `max_paid_response_bytes`, and settled
//! unless the upstream answered 4xx/5xx, so upstream errors are never
//! charged while a redirect is sold like content); every other path is
//! proxied for free with streaming request and response bodies. Hop-by-hop
//! headers are stripped, `Host` becomes the upstream's, payment headers
//! never reach the upstream. Routes are matched on the normalized path
//! ([`paywire_server::normalize_path`]) and exactly that path, appended to
//! the upstream's base path, is forwarded.
//!
//! The gateway knows no chain: the composition root passes a
//! [`PluginRegistry`], and each plugin builds its scheme servers and assets
//! from the `[[networks]]` entries naming its networks
//! ([`paywire_core::ChainPlugin::server`]).
//!
//! ```rust,ignore
//! let plugins = PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin));
//! let config = GatewayConfig::load("gateway.toml")?;
//! paywire_gateway::run(config, plugins).await?;   // until Ctrl-C / SIGTERM
//! // or: Gateway::from_config(&config, &plugins)?.router()   // to embed
//! ```
//!
//! With feature `mcp`, [`mcp`] sells the same routes as paid MCP tools
//! (`paywire mcp serve`), through the same payment gate construction and
//! the same forwarding code.

#![forbid(unsafe_code)]

mod config;
mod discovery;
#[cfg(feature = "mcp")]
pub mod mcp;
mod proxy;
mod reservations;
mod servers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use paywire_core::{
    AtomicAmount, Facilitator, FacilitatorError, PluginError, PluginRegistry, Price,
    RequirementsRequest, SchemeError,
};
use paywire_server::{
    ConfigError, FacilitatorRouter, HttpFacilitator, PayTo, PaymentGate, PaymentLayer,
    PaymentOption, ReservationStore, Route, money,
};

pub use config::{
    AcceptEntry, DEFAULT_USAGE_HEADER, DiscoveryEntry, FacilitatorEntry, GatewayConfig,
    GatewayConfigError, MissingUsageEntry, RouteEntry, example_config,
};

pub use paywire_core::RuntimeConfig;

use servers::ServerSide;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] GatewayConfigError),
    /// A `[[networks]]` entry or a plugin's server side is invalid, or names
    /// a network no registered plugin serves.
    #[error("networks: {0}")]
    Plugin(#[from] PluginError),
    /// The payment layer refused the routes.
    #[error("invalid payment configuration: {0}")]
    Layer(#[from] ConfigError),
    /// A facilitator client could not be built.
    #[error("facilitator client: {0}")]
    Facilitator(#[from] FacilitatorError),
    /// The reservation store could not be opened.
    #[error("reservation store: {0}")]
    Reservations(String),
    /// Binding or serving failed.
    #[error("gateway I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Serving MCP failed (`paywire mcp serve`).
    #[cfg(feature = "mcp")]
    #[error("MCP: {0}")]
    Mcp(String),
}

fn invalid(at: impl Into<String>, detail: impl Into<String>) -> GatewayError {
    GatewayError::Config(GatewayConfigError::Invalid {
        at: at.into(),
        detail: detail.into(),
    })
}

/// A configured gateway: the payment layer in front of the proxy.
#[derive(Debug, Clone)]
pub struct Gateway {
    router: axum::Router,
    listen: String,
}

impl Gateway {
    /// Builds the gateway, with the facilitators of the configuration and
    /// the scheme servers of `plugins`.
    ///
    /// Opens SQLite or in-memory reservations only: a PostgreSQL
    /// `reservations` URL needs [`Gateway::connect`].
    pub fn from_config(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
    ) -> Result<Self, GatewayError> {
        let reservations = reservations::open_sync(config.reservations.as_deref())?;
        Self::build(config, plugins, facilitators(config)?, reservations)
    }

    /// Builds the gateway like [`Gateway::from_config`], opening any
    /// reservation store, PostgreSQL included (connected now).
    pub async fn connect(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
    ) -> Result<Self, GatewayError> {
        let facilitator = facilitators(config)?;
        let reservations = reservations::open(config.reservations.as_deref()).await?;
        Self::build(config, plugins, facilitator, reservations)
    }

    /// Builds the gateway with an explicit facilitator (in-process, tests);
    /// the configuration's `facilitators` are ignored. Opens SQLite or
    /// in-memory reservations only, like [`Gateway::from_config`].
    pub fn with_facilitator(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
        facilitator: Arc<dyn Facilitator>,
    ) -> Result<Self, GatewayError> {
        let reservations = reservations::open_sync(config.reservations.as_deref())?;
        Self::build(config, plugins, facilitator, reservations)
    }

    fn build(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
        facilitator: Arc<dyn Facilitator>,
        reservations: Option<Arc<dyn ReservationStore>>,
    ) -> Result<Self, GatewayError> {
        let parts = Parts::build(
            config,
            plugins,
            facilitator,
            reservations,
            &discovery::http_declaration,
        )?;
        let router = axum::Router::new()
            .fallback(proxy::forward)
            .with_state(parts.proxy)
            .layer(PaymentLayer::new(parts.gate));
        Ok(Self {
            router,
            listen: config.listen.clone(),
        })
    }

    /// The axum app (payment layer + proxy), for embedding or tests.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The configured listen address.
    pub fn listen_address(&self) -> &str {
        &self.listen
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        Ok(())
    }
}

/// What every transport of a configuration shares: the payment gate over
/// its routes, and the proxy that forwards to the upstream.
pub(crate) struct Parts {
    pub(crate) gate: PaymentGate,
    pub(crate) proxy: Arc<proxy::Proxy>,
}

/// The bazaar declaration of route `index` (`at` names it in errors), as
/// one transport describes it; `None`: the route declares none.
pub(crate) type Declare<'a> = dyn Fn(&str, usize, &RouteEntry) -> Result<Option<(String, serde_json::Value)>, GatewayError>
    + 'a;

impl Parts {
    /// The gate of `config`'s routes (with the scheme servers and assets of
    /// `plugins`, each route's discovery declaration from `declare`) and
    /// the proxy to its upstream.
    pub(crate) fn build(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
        facilitator: Arc<dyn Facilitator>,
        reservations: Option<Arc<dyn ReservationStore>>,
        declare: &Declare<'_>,
    ) -> Result<Self, GatewayError> {
        let servers = ServerSide::build(config, plugins)?;
        let mut builder = PaymentGate::builder(facilitator)
            .networks(plugins.networks().clone())
            .schemes(servers.schemes.clone())
            .public_origin(&config.public_origin)
            .case_insensitive_paths(config.case_insensitive_paths)
            .format_suffixes(config.format_suffixes)
            .max_paid_response_bytes(config.max_paid_response_bytes)
            .max_paid_response_bytes_in_flight(config.max_paid_response_bytes_in_flight);
        for asset in &servers.assets {
            builder = builder.asset(
                &asset.network,
                &asset.asset,
                &asset.info.symbol,
                asset.info.decimals,
            );
        }
        for (index, entry) in config.routes.iter().enumerate() {
            let declaration = declare(&format!("routes[{index}]"), index, entry)?;
            builder = builder.route(route(&servers, plugins, index, entry, declaration)?);
        }
        if let Some(store) = reservations {
            builder = builder.reservations(store);
        }
        let gate = builder.build()?;
        let proxy = proxy::Proxy::new(
            &config.upstream,
            &config.public_origin,
            Duration::from_secs(config.upstream_timeout_seconds),
        )
        .map_err(|detail| invalid("upstream", detail))?
        .with_usage_headers(usage_headers(config)?);
        Ok(Self {
            gate,
            proxy: Arc::new(proxy),
        })
    }
}

/// The usage header names: the global one, then each route's own (keyed by
/// the route pattern the payment layer reports).
fn usage_headers(config: &GatewayConfig) -> Result<proxy::UsageHeaders, GatewayError> {
    let parse = |at: String, name: &str| {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(at, format!("{name:?} is not a header name")))
    };
    let mut headers = proxy::UsageHeaders::new(parse("usage_header".into(), &config.usage_header)?);
    for (index, entry) in config.routes.iter().enumerate() {
        if let Some(name) = &entry.usage_header {
            let name = parse(format!("routes[{index}].usage_header"), name)?;
            let pattern = paywire_server::RoutePattern::parse(&route_pattern(entry))?;
            headers.route(pattern.as_str(), name);
        }
    }
    Ok(headers)
}

/// The route pattern of a `[[routes]]` entry.
fn route_pattern(entry: &RouteEntry) -> String {
    format!("{} {}", entry.method.as_deref().unwrap_or("*"), entry.path)
}

/// The configuration's facilitators, in preference order, as one failover set.
fn facilitators(config: &GatewayConfig) -> Result<Arc<dyn Facilitator>, GatewayError> {
    if config.facilitators.is_empty() {
        return Err(invalid(
            "facilitators",
            "at least one facilitator is needed",
        ));
    }
    let mut members: Vec<Arc<dyn Facilitator>> = Vec::new();
    for entry in &config.facilitators {
        let mut builder = HttpFacilitator::builder(&entry.url);
        if let Some(token) = &entry.token {
            builder = builder.bearer_token(token);
        }
        if let Some(seconds) = entry.timeout_seconds {
            builder = builder.timeout(Duration::from_secs(seconds));
        }
        members.push(Arc::new(builder.build()?));
    }
    Ok(Arc::new(FacilitatorRouter::new(members)))
}

/// Runs the gateway of `config` on its `listen` address until Ctrl-C or
/// SIGTERM (in-flight requests finish first).
pub async fn run(config: GatewayConfig, plugins: PluginRegistry) -> Result<(), GatewayError> {
    let gateway = Gateway::connect(&config, &plugins).await?;
    let listener = tokio::net::TcpListener::bind(gateway.listen_address()).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        upstream = %config.upstream,
        routes = config.routes.len(),
        reservations = %reservations::describe(config.reservations.as_deref()),
        "paywire gateway listening"
    );
    gateway
        .serve(listener, async {
            shutdown_signal().await;
            tracing::info!("shutting down");
        })
        .await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The payment layer's route of a `[[routes]]` entry.
fn route(
    servers: &ServerSide,
    plugins: &PluginRegistry,
    index: usize,
    entry: &RouteEntry,
    declaration: Option<(String, serde_json::Value)>,
) -> Result<Route, GatewayError> {
    let at = format!("routes[{index}]");
    let mut route = Route::new(&route_pattern(entry))?
        .max_timeout_seconds(entry.max_timeout_seconds)
        .on_missing_usage(entry.missing_usage.into());
    if let Some(description) = &entry.description {
        route = route.description(description);
    }
    if let Some(mime) = &entry.mime_type {
        route = route.mime_type(mime);
    }
    if entry.settle_before_handler {
        route = route.settle_before_handler();
    }
    if let Some(name) = &entry.service_name {
        route = route.service(name, entry.tags.clone(), entry.icon_url.clone());
    }
    if let Some((key, declaration)) = declaration {
        route = route.extension(key, declaration);
    }
    if entry.accepts.is_empty() {
        return Err(invalid(
            &at,
            "accepts: at least one payment option is needed",
        ));
    }
    for (option_index, accept) in entry.accepts.iter().enumerate() {
        let at = format!("{at}.accepts[{option_index}]");
        route = route.accept(option(servers, plugins, &at, entry, accept)?);
    }
    Ok(route)
}

/// One payment option, evaluated once now: a wrong network, asset or payTo
/// is a startup error, not a 500 on every request.
fn option(
    servers: &ServerSide,
    plugins: &PluginRegistry,
    at: &str,
    entry: &RouteEntry,
    accept: &AcceptEntry,
) -> Result<PaymentOption, GatewayError> {
    let network = plugins
        .networks()
        .resolve(&accept.network)
        .map_err(|e| invalid(format!("{at}.network"), e.to_string()))?;
    plugins
        .plugin_for(&network)
        .map_err(|e| invalid(format!("{at}.network"), e.to_string()))?;
    let price = match (&accept.price, &accept.amount, &accept.asset) {
        (Some(price), None, None) => money(price)?,
        (None, Some(amount), Some(asset)) => Price::Atomic {
            amount: AtomicAmount::parse(amount)
                .map_err(|e| invalid(format!("{at}.amount"), e.to_string()))?,
            asset: asset.clone(),
            extra: None,
        },
        _ => {
            return Err(invalid(
                at,
                "give either `price` (\"$0.01\") or both `amount` and `asset`",
            ));
        }
    };
    let server = servers
        .schemes
        .find(&accept.scheme, &network)
        .ok_or_else(|| {
            invalid(
                format!("{at}.scheme"),
                format!("no plugin serves scheme {:?} on {network}", accept.scheme),
            )
        })?;
    let checked = server.requirements(&RequirementsRequest {
        network: &network,
        price: &price,
        pay_to: &accept.pay_to,
        max_timeout_seconds: entry.max_timeout_seconds,
        facilitator_kind: None,
    });
    match checked {
        // Everything the scheme could check without the facilitator passed;
        // the rest (a Solana fee payer) is read from `/supported` per request.
        Ok(_) | Err(SchemeError::NeedsFacilitatorData(_)) => {}
        Err(error) => return Err(invalid(at, error.to_string())),
    }
    let option = PaymentOption::new(
        accept.scheme.clone(),
        network,
        price,
        PayTo::address(&accept.pay_to),
    );
    Ok(match expected_price(at, accept)? {
        Some(expected) => option.expected_price(expected),
        None => option,
    })
}

/// The `expected_price` / `expected_amount` of a usage-based option.
fn expected_price(at: &str, accept: &AcceptEntry) -> Result<Option<Price>, GatewayError> {
    match (
        &accept.expected_price,
        &accept.expected_amount,
        &accept.asset,
    ) {
        (None, None, _) => Ok(None),
        (Some(price), None, _) => Ok(Some(money(price)?)),
        (None, Some(amount), Some(asset)) => Ok(Some(Price::Atomic {
            amount: AtomicAmount::parse(amount)
                .map_err(|e| invalid(format!("{at}.expected_amount"), e.to_string()))?,
            asset: asset.clone(),
            extra: None,
        })),
        _ => Err(invalid(
            at,
            "give either `expected_price` (\"$0.01\") or `expected_amount` with `amount` + `asset`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugins() -> PluginRegistry {
        PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin))
    }

    fn config(extra: &str) -> GatewayConfig {
        GatewayConfig::parse_with_env(
            &format!(
                "public_origin = \"https://api.example.com\"\nupstream = \"http://127.0.0.1:1\"\n\
                 [[facilitators]]\nurl = \"http://127.0.0.1:2\"\n{extra}"
            ),
            |_| None,
        )
        .unwrap()
    }

    #[test]
    fn example_builds() {
        let config = GatewayConfig::parse_with_env(example_config(), |_| Some("t".into())).unwrap();
        Gateway::from_config(&config, &plugins()).unwrap();
    }

    #[test]
    fn bad_options_fail_at_startup() {
        let cases = [
            // Unknown chain for a money price.
            "[[routes]]\npath = \"/a\"\n[[routes.accepts]]\nnetwork = \"eip155:999\"\nprice = \"$1\"\npay_to = \"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"\n",
            // Bad payTo.
            "[[routes]]\npath = \"/a\"\n[[routes.accepts]]\nnetwork = \"base\"\nprice = \"$1\"\npay_to = \"nope\"\n",
            // Discovery without a method.
            "[[routes]]\npath = \"/a\"\n[[routes.accepts]]\nnetwork = \"base\"\nprice = \"$1\"\npay_to = \"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"\n[routes.discovery]\n",
            // A body example on GET.
            "[[routes]]\nmethod = \"GET\"\npath = \"/a\"\n[[routes.accepts]]\nnetwork = \"base\"\nprice = \"$1\"\npay_to = \"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"\n[routes.discovery]\nbody_example = {}\n",
            // Both price and amount.
            "[[routes]]\npath = \"/a\"\n[[routes.accepts]]\nnetwork = \"base\"\nprice = \"$1\"\namount = \"1\"\nasset = \"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913\"\npay_to = \"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"\n",
            // No options.
            "[[routes]]\npath = \"/a\"\naccepts = []\n",
            // A scheme no plugin serves.
            "[[routes]]\npath = \"/a\"\n[[routes.accepts]]\nscheme = \"nope\"\nnetwork = \"base\"\nprice = \"$1\"\npay_to = \"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"\n",
        ];
        for case in cases {
            assert!(
                Gateway::from_config(&config(case), &plugins()).is_err(),
                "{case}"
            );
        }
        assert!(Gateway::from_config(&config(""), &plugins()).is_ok());
        let mut no_facilitator = config("");
        no_facilitator.facilitators.clear();
        assert!(Gateway::from_config(&no_facilitator, &plugins()).is_err());
    }
}
