//! An MCP client that pays for tool calls (feature `client`).
//!
//! [`PayingMcpClient`] keeps one MCP connection (streamable HTTP, a child
//! process over stdio, or any byte stream) and calls tools through
//! [`X402Client::pay_through`], the transport-neutral payment flow: the
//! wallet's selection policy and budget, the `before_sign` hooks, the same
//! signed payment re-sent after transport errors and while the server does
//! not know the settlement outcome yet, and the spend probe all apply as for
//! HTTP. On top of those, an [`Approval`] sees each tool call with its
//! arguments and the option the policy chose, and can refuse it before the
//! budget is reserved and anything is signed.
//!
//! Sign-in-with-X is not supported over MCP (the proof is defined as an HTTP
//! header only, and `mcp://tool/<name>` does not name a server, so a proof
//! would be replayable across servers): a configured sign-in provider is
//! never offered a session here, and nothing it signs is sent.

mod transport;

use std::sync::Arc;
use std::time::Duration;

use paywire_client::{ClientError, PaymentOutcome, X402Client};
use paywire_core::{BoxFuture, PaymentRequirements};
use rmcp::model::{
    CallToolResult, ClientCapabilities, ClientConfig, Implementation, JsonObject, Tool,
};
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{Peer, RoleClient, ServiceExt};
use tokio::io::{AsyncRead, AsyncWrite};

use self::transport::{McpTransport, ToolCall};

/// How long one `tools/call` may take before the client stops waiting (by
/// default). A paid call that times out is not sent again (the server may
/// still run and settle it): it ends in an error and the budget keeps the
/// payment outstanding until it is proven settled or unspent.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why connecting, or a tool call, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpClientError {
    /// The MCP session could not be set up (unreachable server, failed
    /// `initialize` handshake).
    #[error("connecting to the MCP server: {0}")]
    Connect(#[source] Box<ClientInitializeError>),
    /// The server process could not be started.
    #[error("starting the MCP server process: {0}")]
    Spawn(#[source] std::io::Error),
    /// The approval hook (or a `before_sign` hook) refused to pay; nothing
    /// was signed and the budget is untouched.
    #[error("payment refused: {0}")]
    Refused(String),
    /// The payment flow failed: no acceptable option (this includes an
    /// exhausted budget, refused before signing), an unreadable
    /// payment-required result, a transport failure.
    #[error(transparent)]
    Payment(ClientError),
    /// An MCP request other than a tool call failed.
    #[error("MCP request failed: {0}")]
    Service(#[source] rmcp::ServiceError),
    /// Closing the session failed.
    #[error("closing the MCP session: {0}")]
    Close(String),
}

impl From<ClientError> for McpClientError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Vetoed(reason) => Self::Refused(reason),
            other => Self::Payment(other),
        }
    }
}

/// What an [`Approval`] is asked about: a tool call and the payment option
/// the wallet's policy chose for it (the one that would be signed).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ApprovalRequest {
    /// The tool's name.
    pub tool: String,
    /// The call's arguments.
    pub arguments: JsonObject,
    /// The chosen option: amount, asset, network, `payTo`, scheme.
    pub requirements: PaymentRequirements,
}

/// Decides, per tool call, whether to pay the chosen option. It runs after
/// the policy and budget found the option acceptable and before the budget
/// is reserved and the payment signed; a refusal ends the call with
/// [`McpClientError::Refused`].
///
/// Closures `Fn(&ApprovalRequest) -> bool` are approvals.
pub trait Approval: Send + Sync {
    /// `Ok(())` to pay, `Err(reason)` to refuse.
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> BoxFuture<'a, Result<(), String>>;
}

impl<F> Approval for F
where
    F: Fn(&ApprovalRequest) -> bool + Send + Sync,
{
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> BoxFuture<'a, Result<(), String>> {
        let verdict = if self(request) {
            Ok(())
        } else {
            Err(format!(
                "the approval hook refused to pay for tool `{}`",
                request.tool
            ))
        };
        Box::pin(std::future::ready(verdict))
    }
}

/// A tool call's final result and, when a payment was made, how it ended.
#[derive(Debug)]
#[non_exhaustive]
pub struct PaidCall {
    /// The final result: the tool's output, or the server's refusal (a
    /// payment-required result when the payment was not settled, an error
    /// result) as the server sent it.
    pub result: CallToolResult,
    /// The payment's outcome (with the receipt of its settlement); `None`
    /// when nothing was paid (a free tool, an error before any payment).
    pub outcome: Option<PaymentOutcome>,
}

/// An MCP session whose tool calls are paid through an [`X402Client`].
pub struct PayingMcpClient {
    service: RunningService<RoleClient, ClientConfig>,
    x402: Arc<X402Client>,
    approval: Option<Arc<dyn Approval>>,
    call_timeout: Option<Duration>,
}

impl std::fmt::Debug for PayingMcpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayingMcpClient")
            .field("x402", &self.x402)
            .field("approval", &self.approval.is_some())
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

/// How this client introduces itself in `initialize`.
fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("paywire", env!("CARGO_PKG_VERSION")),
    )
}

impl PayingMcpClient {
    /// Connects to the MCP server at `url` over streamable HTTP. The HTTP
    /// client follows only same-origin 307/308 redirects, so a call carrying
    /// a payment never reaches another origin.
    pub async fn connect_http(url: &str, x402: Arc<X402Client>) -> Result<Self, McpClientError> {
        let transport = StreamableHttpClientTransport::from_uri(url);
        Self::start(transport, x402).await
    }

    /// Starts `command` and talks MCP with it over its stdin and stdout.
    pub async fn connect_stdio(
        command: tokio::process::Command,
        x402: Arc<X402Client>,
    ) -> Result<Self, McpClientError> {
        let transport = TokioChildProcess::new(command).map_err(McpClientError::Spawn)?;
        Self::start(transport, x402).await
    }

    /// Talks MCP over a byte stream pair (say, one end of
    /// `tokio::io::duplex` in tests).
    pub async fn connect_io<R, W>(
        read: R,
        write: W,
        x402: Arc<X402Client>,
    ) -> Result<Self, McpClientError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        Self::start((read, write), x402).await
    }

    async fn start<T, E, A>(transport: T, x402: Arc<X402Client>) -> Result<Self, McpClientError>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let service = client_config()
            .serve(transport)
            .await
            .map_err(|error| McpClientError::Connect(Box::new(error)))?;
        Ok(Self {
            service,
            x402,
            approval: None,
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
        })
    }

    /// Asks `hook` before paying for any tool call (see [`Approval`]). A
    /// closure needs its parameter's type spelled out, as in
    /// `.approval(|asked: &ApprovalRequest| asked.requirements.amount <= cap)`.
    #[must_use]
    pub fn approval(mut self, hook: impl Approval + 'static) -> Self {
        self.approval = Some(Arc::new(hook));
        self
    }

    /// How long one `tools/call` may take (default
    /// [`DEFAULT_CALL_TIMEOUT`]; `None`: no limit). A paid call that times
    /// out ends in an error, and is not sent again: the server may still run
    /// and settle it, so the budget keeps the payment outstanding.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The tools the server lists (all pages).
    pub async fn list_tools(&self) -> Result<Vec<Tool>, McpClientError> {
        self.service
            .peer()
            .list_all_tools()
            .await
            .map_err(McpClientError::Service)
    }

    /// Calls tool `name` with `arguments`. A free tool's result comes back
    /// as is; for a payment-required result the flow chooses, approves,
    /// reserves, signs and sends the call again with the payment in
    /// `_meta["x402/payment"]`.
    ///
    /// A paid call whose payment did not settle returns `Ok` with the
    /// server's result (no tool content) and an outcome other than `Paid`;
    /// the budget keeps counting that payment until a receipt or the spend
    /// probe decides it.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: JsonObject,
    ) -> Result<PaidCall, McpClientError> {
        let call = ToolCall::new(name, arguments);
        let transport = McpTransport {
            peer: self.service.peer(),
            approval: self.approval.as_deref(),
            timeout: self.call_timeout,
        };
        let delivered = self.x402.pay_through(&transport, call).await?;
        if let Some(outcome) = &delivered.outcome {
            tracing::info!(tool = name, status = ?outcome.status, "paid MCP tool call finished");
        }
        Ok(PaidCall {
            result: delivered.response,
            outcome: delivered.outcome,
        })
    }

    /// The underlying rmcp peer, for requests other than tool calls.
    /// Tool calls made through it are not paid.
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    /// The paying client.
    pub fn x402(&self) -> &Arc<X402Client> {
        &self.x402
    }

    /// Ends the session (and, over stdio, the server process).
    pub async fn close(self) -> Result<(), McpClientError> {
        let mut service = self.service;
        service
            .close()
            .await
            .map(|_| ())
            .map_err(|error| McpClientError::Close(error.to_string()))
    }
}
