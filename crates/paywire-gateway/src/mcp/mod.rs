//! `paywire mcp serve` (feature `mcp`): the gateway's priced routes as paid
//! MCP tools, over streamable HTTP or stdio.
//!
//! The same TOML configuration as the HTTP gateway, the same
//! [`paywire_server::PaymentGate`] construction (routes, prices, scheme
//! servers, reservations, facilitators) and the same forwarding code
//! (header hygiene, upstream timeout, usage header of `upto` routes, limit
//! of paid answers). Each `[[routes]]` entry is one tool:
//!
//! - name: the route's `tool`, or derived from method and path
//!   (`GET /weather/:city` → `get_weather_city`); 1-128 characters of
//!   `A-Z a-z 0-9 _ . -`, unique;
//! - arguments: each `:param` (and `segment_N` for a `*` in the middle,
//!   `path` for a trailing `*`) fills its path segment, percent-encoded;
//!   `body` is the request body of `POST`, `PUT` and `PATCH`; every other
//!   argument is a query parameter;
//! - result: a 2xx answer's body as text (a JSON object also as
//!   `structuredContent`), a 3xx's `Location`; a 4xx/5xx answer is a tool
//!   error, never charged. The receipt is in `_meta["x402/payment-response"]`.
//!
//! Paths that no route prices are not exposed: the MCP side sells the
//! routes and nothing else.

mod backend;
mod tools;

use std::future::Future;
use std::sync::Arc;

use paywire_core::{Facilitator, PluginRegistry};
use paywire_mcp::server::McpPaymentServer;
use paywire_server::ReservationStore;
use rmcp::model::Tool;
use rmcp::transport::StreamableHttpServerConfig;
use tokio_util::sync::CancellationToken;

pub use backend::GatewayTools;
pub(crate) use tools::RouteTool;

use crate::{GatewayConfig, GatewayError, Parts, RouteEntry, facilitators, reservations};

/// Where `paywire mcp serve` answers streamable HTTP by default.
pub const DEFAULT_MCP_PATH: &str = "/mcp";

/// How the MCP server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum McpTransport {
    /// Streamable HTTP at `path` on `listen` (the configuration's `listen`
    /// when `None`).
    Http {
        /// Listen address (`host:port`).
        listen: Option<String>,
        /// The endpoint path (`/mcp`).
        path: String,
    },
    /// This process's stdin and stdout, until stdin closes.
    Stdio,
}

/// A configured MCP server of the gateway's routes.
#[derive(Debug, Clone)]
pub struct McpGateway {
    server: McpPaymentServer<GatewayTools>,
    listen: String,
    allowed_hosts: Vec<String>,
}

impl McpGateway {
    /// Builds the server, with the facilitators of the configuration and
    /// the scheme servers of `plugins` (as [`crate::Gateway::from_config`]:
    /// SQLite or in-memory reservations only).
    pub fn from_config(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
    ) -> Result<Self, GatewayError> {
        let store = reservations::open_sync(config.reservations.as_deref())?;
        Self::build(config, plugins, facilitators(config)?, store)
    }

    /// Builds the server like [`McpGateway::from_config`], opening any
    /// reservation store, PostgreSQL included (connected now).
    pub async fn connect(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
    ) -> Result<Self, GatewayError> {
        let facilitator = facilitators(config)?;
        let store = reservations::open(config.reservations.as_deref()).await?;
        Self::build(config, plugins, facilitator, store)
    }

    /// Builds the server with an explicit facilitator (in-process, tests);
    /// the configuration's `facilitators` are ignored.
    pub fn with_facilitator(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
        facilitator: Arc<dyn Facilitator>,
    ) -> Result<Self, GatewayError> {
        let store = reservations::open_sync(config.reservations.as_deref())?;
        Self::build(config, plugins, facilitator, store)
    }

    fn build(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
        facilitator: Arc<dyn Facilitator>,
        store: Option<Arc<dyn ReservationStore>>,
    ) -> Result<Self, GatewayError> {
        let tools = tools::route_tools(&config.routes)?;
        let declare = |at: &str, index: usize, entry: &RouteEntry| match tools.get(index) {
            Some(tool) => crate::discovery::mcp_declaration(at, tool, entry),
            None => Ok(None),
        };
        let parts = Parts::build(config, plugins, facilitator, store, &declare)?;
        let backend = GatewayTools::new(
            tools,
            parts.gate.clone(),
            parts.proxy,
            config.max_paid_response_bytes,
        );
        let server = McpPaymentServer::new(parts.gate, backend)
            .server_info("paywire-gateway", env!("CARGO_PKG_VERSION"));
        Ok(Self {
            server,
            listen: config.listen.clone(),
            allowed_hosts: allowed_hosts(&config.public_origin),
        })
    }

    /// The tools, as `tools/list` shows them.
    pub fn tools(&self) -> Vec<Tool> {
        use paywire_mcp::server::ToolBackend as _;
        self.server.backend().tools()
    }

    /// The MCP server (an rmcp `ServerHandler`), for embedding.
    pub fn server(&self) -> McpPaymentServer<GatewayTools> {
        self.server.clone()
    }

    /// The configured listen address.
    pub fn listen_address(&self) -> &str {
        &self.listen
    }

    /// An axum router answering streamable HTTP at `path`. Requests must
    /// name a loopback host or the host of `public_origin` in `Host` (rmcp's
    /// protection against DNS rebinding).
    pub fn router(&self, path: &str) -> axum::Router {
        self.router_with(path, CancellationToken::new())
    }

    fn router_with(&self, path: &str, cancel: CancellationToken) -> axum::Router {
        let config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(self.allowed_hosts.clone())
            .with_cancellation_token(cancel);
        self.server
            .clone()
            .streamable_http_router_with(path, config)
    }

    /// Serves streamable HTTP at `path` on `listener` until `shutdown`
    /// completes (open MCP sessions are ended then).
    pub async fn serve_http(
        self,
        listener: tokio::net::TcpListener,
        path: &str,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let cancel = CancellationToken::new();
        let router = self.router_with(path, cancel.clone());
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                cancel.cancel();
            })
            .await?;
        Ok(())
    }

    /// Serves MCP over this process's stdin and stdout until stdin closes.
    pub async fn serve_stdio(self) -> Result<(), GatewayError> {
        // rmcp's service future is large: boxed, not on the caller's stack.
        Box::pin(self.server.serve_stdio())
            .await
            .map_err(|error| GatewayError::Mcp(error.to_string()))
    }
}

/// Loopback names, and the public origin's host with and without its port.
fn allowed_hosts(public_origin: &str) -> Vec<String> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(url) = reqwest::Url::parse(public_origin)
        && let Some(host) = url.host_str()
    {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if let Some(port) = url.port() {
            hosts.push(format!("{host}:{port}"));
        }
        hosts.push(host);
    }
    hosts.dedup();
    hosts
}

/// Runs `paywire mcp serve`: the routes of `config` as paid MCP tools over
/// `transport`, until Ctrl-C or SIGTERM (HTTP) or the end of stdin (stdio).
pub async fn run(
    config: GatewayConfig,
    plugins: PluginRegistry,
    transport: McpTransport,
) -> Result<(), GatewayError> {
    let gateway = McpGateway::connect(&config, &plugins).await?;
    let tools = gateway.tools().len();
    match transport {
        McpTransport::Stdio => {
            tracing::info!(tools, upstream = %config.upstream, "paywire mcp serving on stdio");
            Box::pin(gateway.serve_stdio()).await
        }
        McpTransport::Http { listen, path } => {
            let listen = listen.unwrap_or_else(|| gateway.listen_address().to_owned());
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            tracing::info!(
                listen = %listener.local_addr()?,
                path = %path,
                tools,
                upstream = %config.upstream,
                "paywire mcp listening (streamable HTTP)"
            );
            gateway
                .serve_http(listener, &path, async {
                    crate::shutdown_signal().await;
                    tracing::info!("shutting down");
                })
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_loopback_and_the_public_origin() {
        let hosts = allowed_hosts("https://api.example.com:8443");
        assert!(
            hosts.contains(&"api.example.com:8443".to_owned()),
            "{hosts:?}"
        );
        assert!(hosts.contains(&"api.example.com".to_owned()), "{hosts:?}");
        assert!(hosts.contains(&"127.0.0.1".to_owned()), "{hosts:?}");
        assert_eq!(allowed_hosts("nonsense").len(), 3);
    }
}
