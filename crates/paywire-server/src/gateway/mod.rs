//! `paywire gateway`: a reverse proxy that sells an existing HTTP API.
//!
//! Priced routes go through [`PaymentLayer`] (upstream answers are buffered
//! there, up to `max_paid_response_bytes`, and settled unless the upstream
//! answered 4xx/5xx, so upstream errors are never charged while a redirect is
//! sold like content); every other path is proxied for free with
//! streaming request and response bodies. Hop-by-hop headers are stripped,
//! `Host` becomes the upstream's, payment headers never reach the upstream.
//! Routes are matched on the normalized path ([`crate::normalize_path`]) and
//! exactly that path, appended to the upstream's base path, is forwarded.

mod config;
mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use paywire_core::{
    AtomicAmount, ChainIdPattern, Facilitator, FacilitatorError, Price, RequirementsRequest,
    SchemeServer,
};
use paywire_evm::exact::ExactEvmServer;
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks};

pub use config::{
    AcceptEntry, AssetEntry, DiscoveryEntry, FacilitatorEntry, GatewayConfig, GatewayConfigError,
    NetworkEntry, RouteEntry, example_config,
};

use crate::config::{PayTo, PaymentOption, Route, money};
use crate::error::ConfigError;
use crate::http_facilitator::HttpFacilitator;
use crate::reservation::ReservationStore;
use crate::router::FacilitatorRouter;
use crate::service::PaymentLayer;
use crate::sqlite::SqliteReservationStore;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] GatewayConfigError),
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
    /// Builds the gateway, with the facilitators of the configuration.
    pub fn from_config(config: &GatewayConfig) -> Result<Self, GatewayError> {
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
        Self::with_facilitator(config, Arc::new(FacilitatorRouter::new(members)))
    }

    /// Builds the gateway with an explicit facilitator (in-process, tests);
    /// the configuration's `facilitators` are ignored.
    pub fn with_facilitator(
        config: &GatewayConfig,
        facilitator: Arc<dyn Facilitator>,
    ) -> Result<Self, GatewayError> {
        let networks = networks(config)?;
        let exact = ExactEvmServer::new(networks.clone());
        let pattern = ChainIdPattern::parse("eip155:*")
            .map_err(|e| invalid("networks", format!("internal pattern: {e}")))?;
        let mut builder = PaymentLayer::builder(facilitator)
            .networks(evm_names())
            .scheme(pattern, Arc::new(exact.clone()))
            .public_origin(&config.public_origin)
            .case_insensitive_paths(config.case_insensitive_paths)
            .format_suffixes(config.format_suffixes)
            .max_paid_response_bytes(config.max_paid_response_bytes)
            .max_paid_response_bytes_in_flight(config.max_paid_response_bytes_in_flight);
        for network in networks.iter() {
            for asset in std::iter::once(&network.default_asset).chain(&network.other_assets) {
                builder = builder.asset(
                    &network.chain,
                    &asset.address.to_string(),
                    &asset.symbol,
                    asset.decimals,
                );
            }
        }
        for (index, entry) in config.routes.iter().enumerate() {
            builder = builder.route(route(&exact, index, entry)?);
        }
        if let Some(path) = &config.reservations_sqlite {
            let store: Arc<dyn ReservationStore> = Arc::new(
                SqliteReservationStore::open(path)
                    .map_err(|e| GatewayError::Reservations(e.to_string()))?,
            );
            builder = builder.reservations(store);
        }
        let layer = builder.build()?;
        let proxy = proxy::Proxy::new(
            &config.upstream,
            &config.public_origin,
            Duration::from_secs(config.upstream_timeout_seconds),
        )
        .map_err(|detail| invalid("upstream", detail))?;
        let router = axum::Router::new()
            .fallback(proxy::forward)
            .with_state(Arc::new(proxy))
            .layer(layer);
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

/// Runs the gateway of `config` on its `listen` address until Ctrl-C or
/// SIGTERM (in-flight requests finish first).
pub async fn run(config: GatewayConfig) -> Result<(), GatewayError> {
    let gateway = Gateway::from_config(&config)?;
    let listener = tokio::net::TcpListener::bind(gateway.listen_address()).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        upstream = %config.upstream,
        routes = config.routes.len(),
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

fn parse_address(at: &str, text: &str) -> Result<Address, GatewayError> {
    text.parse()
        .map_err(|_| invalid(at, format!("{text:?} is not an EVM address")))
}

fn networks(config: &GatewayConfig) -> Result<EvmNetworks, GatewayError> {
    let mut table = if config.well_known_networks {
        EvmNetworks::well_known()
    } else {
        EvmNetworks::empty()
    };
    for (index, entry) in config.networks.iter().enumerate() {
        let at = format!("networks[{index}]");
        let asset = EvmAsset {
            address: parse_address(&format!("{at}.asset.address"), &entry.asset.address)?,
            symbol: entry.asset.symbol.clone(),
            decimals: entry.asset.decimals,
            eip712_name: entry.asset.eip712_name.clone(),
            eip712_version: entry.asset.eip712_version.clone(),
            usd_stable: entry.asset.usd_stable,
        };
        if table.by_chain_id(entry.chain_id).is_some() {
            table.add_asset(entry.chain_id, asset);
        } else {
            let name = entry
                .name
                .clone()
                .unwrap_or_else(|| format!("eip155:{}", entry.chain_id));
            table.insert(EvmNetwork::new(entry.chain_id, name, asset));
        }
    }
    Ok(table)
}

/// The bazaar declaration of a route's `[routes.discovery]`.
fn declaration(
    at: &str,
    method: Option<&str>,
    entry: &config::DiscoveryEntry,
) -> Result<(String, serde_json::Value), GatewayError> {
    use paywire_bazaar::{BodyType, Declaration};
    let Some(method) = method.map(str::to_ascii_uppercase) else {
        return Err(invalid(at, "discovery needs the route's `method`"));
    };
    let mut declaration = match method.as_str() {
        "GET" | "HEAD" | "DELETE" => {
            if entry.body_type.is_some() || entry.body_example.is_some() {
                return Err(invalid(
                    format!("{at}.discovery"),
                    format!("{method} takes no body_type or body_example"),
                ));
            }
            Declaration::query_method(&method)
        }
        "POST" | "PUT" | "PATCH" => {
            let body_type = match entry.body_type.as_deref() {
                None | Some("json") => BodyType::Json,
                Some("form-data") => BodyType::FormData,
                Some("text") => BodyType::Text,
                Some(other) => {
                    return Err(invalid(
                        format!("{at}.discovery.body_type"),
                        format!("{other:?}: use json, form-data or text"),
                    ));
                }
            };
            let example = entry
                .body_example
                .clone()
                .unwrap_or_else(|| serde_json::json!({}));
            Declaration::body_method(&method, body_type, example)
        }
        other => {
            return Err(invalid(
                at,
                format!("discovery cannot describe method {other}"),
            ));
        }
    };
    for (name, example) in &entry.query_params {
        declaration = declaration.query_param(name, example);
    }
    for (name, example) in &entry.headers {
        declaration = declaration.header(name, example);
    }
    if entry.output_type.is_some() || entry.output_example.is_some() {
        declaration = declaration.output(
            entry.output_type.clone().unwrap_or_else(|| "json".into()),
            entry.output_example.clone(),
        );
    }
    Ok(declaration.into_extension())
}

/// The network names the gateway resolves (until it takes plugins).
fn evm_names() -> paywire_core::NetworkDirectory {
    let mut names = paywire_core::NetworkDirectory::new();
    names.extend(paywire_evm::network_names());
    names
}

fn route(exact: &ExactEvmServer, index: usize, entry: &RouteEntry) -> Result<Route, GatewayError> {
    let at = format!("routes[{index}]");
    let pattern = format!("{} {}", entry.method.as_deref().unwrap_or("*"), entry.path);
    let mut route = Route::new(&pattern)?.max_timeout_seconds(entry.max_timeout_seconds);
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
    if let Some(discovery) = &entry.discovery {
        let (key, declaration) = declaration(&at, entry.method.as_deref(), discovery)?;
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
        let network = evm_names()
            .resolve(&accept.network)
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
                    &at,
                    "give either `price` (\"$0.01\") or both `amount` and `asset`",
                ));
            }
        };
        // Evaluate once now: a wrong network, asset or payTo is a startup
        // error, not a 500 on every request.
        exact
            .requirements(&RequirementsRequest {
                network: &network,
                price: &price,
                pay_to: &accept.pay_to,
                max_timeout_seconds: entry.max_timeout_seconds,
                facilitator_kind: None,
            })
            .map_err(|e| invalid(&at, e.to_string()))?;
        route = route.accept(PaymentOption::exact(
            network,
            price,
            PayTo::address(&accept.pay_to),
        ));
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        Gateway::from_config(&config).unwrap();
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
        ];
        for case in cases {
            assert!(Gateway::from_config(&config(case)).is_err(), "{case}");
        }
        assert!(Gateway::from_config(&config("")).is_ok());
        let mut no_facilitator = config("");
        no_facilitator.facilitators.clear();
        assert!(Gateway::from_config(&no_facilitator).is_err());
    }
}
