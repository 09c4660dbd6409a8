//! Paid MCP tools: an rmcp [`ServerHandler`] whose priced tool calls go
//! through [`PaymentGate`], the same verify → reserve → run → settle
//! pipeline as HTTP.
//!
//! - A tool call's payment travels in `_meta["x402/payment"]`; the gate
//!   sees the call as a request `CALL /tools/<name>` (or whatever the
//!   [`ToolBackend`] prepares) whose body is the arguments.
//! - Unpaid, or paid with a payment the gate refuses: the spec's
//!   payment-required tool result ([`crate::wire::payment_required_result`]).
//! - Paid: the tool runs only once the payment is verified and reserved, and
//!   its result is given only after settlement succeeded, with the receipt
//!   in `_meta["x402/payment-response"]`.
//! - Tools the gate does not price run as usual.
//!
//! Tools come from a [`ToolBackend`]: the library's own [`PaidTools`], or
//! the gateway's bridge that exposes HTTP routes as tools.

mod backend;
mod call;
mod tools;

use std::sync::Arc;

use paywire_server::PaymentGate;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use tokio::io::{AsyncRead, AsyncWrite};

pub use backend::{PreparedCall, RunTool, ToolBackend, ToolContext, ToolError, ToolOutput};
pub use tools::{
    ConfigError, DEFAULT_MAX_ARGUMENTS_BYTES, PaidTools, PaidToolsBuilder, TOOL_METHOD,
    is_valid_tool_name, tool_path,
};

/// Why serving MCP stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpServeError {
    /// The client did not complete the MCP handshake.
    #[error("MCP initialization failed: {0}")]
    Initialize(#[from] Box<rmcp::service::ServerInitializeError>),
    /// The service task failed.
    #[error("the MCP service task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// An MCP server whose priced tools are sold through a [`PaymentGate`].
/// Cheap to clone (one per MCP session over streamable HTTP).
pub struct McpPaymentServer<B: ToolBackend> {
    gate: PaymentGate,
    backend: Arc<B>,
    info: Implementation,
}

impl<B: ToolBackend> Clone for McpPaymentServer<B> {
    fn clone(&self) -> Self {
        Self {
            gate: self.gate.clone(),
            backend: Arc::clone(&self.backend),
            info: self.info.clone(),
        }
    }
}

impl<B: ToolBackend> std::fmt::Debug for McpPaymentServer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpPaymentServer")
            .field("gate", &self.gate)
            .field("server", &self.info.name)
            .finish_non_exhaustive()
    }
}

impl<B: ToolBackend> McpPaymentServer<B> {
    /// A server of `backend`'s tools, priced by `gate`'s routes.
    pub fn new(gate: PaymentGate, backend: B) -> Self {
        Self {
            gate,
            backend: Arc::new(backend),
            info: Implementation::new("paywire-mcp", env!("CARGO_PKG_VERSION")),
        }
    }

    /// The name and version the server gives in the MCP handshake.
    pub fn server_info(mut self, name: &str, version: &str) -> Self {
        self.info = Implementation::new(name, version);
        self
    }

    /// The payment gate.
    pub fn gate(&self) -> &PaymentGate {
        &self.gate
    }

    /// The tool backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// An axum router serving MCP's streamable HTTP transport at `path`,
    /// with rmcp's default settings (which accept only loopback `Host`
    /// names: use [`Self::streamable_http_router_with`] for a public host).
    pub fn streamable_http_router(self, path: &str) -> axum::Router {
        self.streamable_http_router_with(path, StreamableHttpServerConfig::default())
    }

    /// [`Self::streamable_http_router`] with rmcp's transport settings
    /// (allowed hosts and origins, sessions, body limit).
    pub fn streamable_http_router_with(
        self,
        path: &str,
        config: StreamableHttpServerConfig,
    ) -> axum::Router {
        let service = StreamableHttpService::new(
            move || Ok(self.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let path = path.trim_end_matches('/');
        if path.is_empty() {
            // axum cannot nest at the root.
            return axum::Router::new().fallback_service(service);
        }
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        axum::Router::new().nest_service(&path, service)
    }

    /// Serves MCP over this process's stdin and stdout until stdin closes.
    pub async fn serve_stdio(self) -> Result<(), McpServeError> {
        let (stdin, stdout) = rmcp::transport::stdio();
        Box::pin(self.serve_io(stdin, stdout)).await
    }

    /// Serves MCP (newline-delimited JSON-RPC, the stdio transport) over any
    /// pipe until `read` closes.
    pub async fn serve_io<R, W>(self, read: R, write: W) -> Result<(), McpServeError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let running = self.serve((read, write)).await.map_err(Box::new)?;
        let reason = running.waiting().await?;
        tracing::debug!(?reason, "MCP connection ended");
        Ok(())
    }
}

impl<B: ToolBackend> ServerHandler for McpPaymentServer<B> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(self.info.clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.backend.tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.backend
            .tools()
            .into_iter()
            .find(|tool| tool.name == name)
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        // rmcp moves the wire `params._meta` into the context; a typed
        // `meta` is only set by in-process callers. The context wins.
        let mut meta = request.meta.take().map(|m| m.0.0).unwrap_or_default();
        meta.extend(context.meta.0.0);
        let result = call::call_tool(&self.gate, &*self.backend, request, meta).await?;
        Ok(CallToolResponse::Complete(result))
    }
}
