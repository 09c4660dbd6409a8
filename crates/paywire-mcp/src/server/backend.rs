//! Where tools come from and how one call runs: the contract between the
//! paid-tool server and its tool sources ([`super::PaidTools`], the
//! gateway's HTTP bridge).

use bytes::Bytes;
use paywire_core::{BoxFuture, SettleResponse};
use paywire_server::Usage;
use rmcp::model::{CallToolResult, JsonObject, Tool};

/// A source of tools: the library's own [`super::PaidTools`], or a bridge
/// that exposes HTTP routes as tools.
///
/// The server asks the backend only what a call is (its gate request and
/// how to run it); pricing, payment and settlement stay in the
/// [`paywire_server::PaymentGate`].
pub trait ToolBackend: Send + Sync + 'static {
    /// Every tool, free and paid, as `tools/list` shows them.
    fn tools(&self) -> Vec<Tool>;

    /// How to run `name(arguments)`.
    ///
    /// `Ok(None)`: no such tool (answered with a JSON-RPC invalid-params
    /// error, as MCP says). `Err`: the arguments cannot make a request
    /// (answered with a tool error; nothing is charged, nothing runs).
    fn prepare(&self, name: &str, arguments: JsonObject)
    -> Result<Option<PreparedCall>, ToolError>;
}

/// One tool call as the payment gate sees it, and the code that runs it.
#[non_exhaustive]
pub struct PreparedCall {
    /// The upper-case verb routes are matched on (`CALL` for
    /// [`super::PaidTools`], the HTTP method in the gateway bridge).
    pub method: String,
    /// The raw path; the server normalizes it
    /// ([`paywire_server::normalize_path`]) before matching routes.
    pub path: String,
    /// The raw query (without `?`), if any.
    pub query: Option<String>,
    /// What dynamic prices read (`RequestContext::body`), handed to the gate
    /// only when the matched route asks for its body.
    pub body: Option<Bytes>,
    /// The resource URL of the payment-required answer when the route names
    /// no `resource` of its own.
    pub resource_url: String,
    /// Runs the tool; called at most once, and on a priced route only once
    /// the gate has verified and reserved (or settled) the payment.
    pub run: Box<dyn RunTool>,
    /// The route pattern (as configured) that must price this call: when
    /// set, a call the gate prices with another route (an earlier route
    /// shadowing it, a format suffix, case folding), or does not price at
    /// all, is refused and the tool does not run.
    pub priced_by: Option<String>,
}

impl PreparedCall {
    /// A call of `method` on `path`, answered with `resource_url`, run by
    /// `run`; no query, no body.
    pub fn new(
        method: impl Into<String>,
        path: impl Into<String>,
        resource_url: impl Into<String>,
        run: Box<dyn RunTool>,
    ) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            query: None,
            body: None,
            resource_url: resource_url.into(),
            run,
            priced_by: None,
        }
    }

    /// Requires the gate to price the call with the route `pattern` (see
    /// [`PreparedCall::priced_by`]).
    pub fn priced_by(mut self, pattern: impl Into<String>) -> Self {
        self.priced_by = Some(pattern.into());
        self
    }

    /// With a query string (without `?`).
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// With a body for pricing.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }
}

impl std::fmt::Debug for PreparedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCall")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body_len", &self.body.as_ref().map(Bytes::len))
            .field("resource_url", &self.resource_url)
            .field("priced_by", &self.priced_by)
            .finish_non_exhaustive()
    }
}

/// The code of one prepared tool call.
pub trait RunTool: Send + 'static {
    /// Runs the call. A result with `isError: true` is a failed call: it is
    /// passed on and never charged.
    fn run(self: Box<Self>, context: ToolContext) -> BoxFuture<'static, ToolOutput>;
}

/// What a running tool knows of its call.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ToolContext {
    /// The payer, when the call was paid for.
    pub payer: Option<String>,
    /// The settlement, when the route settles before its handler runs.
    pub receipt: Option<SettleResponse>,
    /// The normalized path the gate matched routes on
    /// ([`paywire_server::normalize_path`] of [`PreparedCall::path`]): a
    /// backend that forwards the call (the gateway bridge) forwards this
    /// path, so what runs is what was priced.
    pub path: String,
    /// The call's `_meta` entries (the payment among them, when it carries
    /// one).
    pub meta: JsonObject,
}

/// A tool's answer and, for usage-priced options (`upto`), what the call
/// used.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolOutput {
    /// The tool result.
    pub result: CallToolResult,
    /// What the call used, charged on a usage-based option (at most the
    /// authorized maximum). `None`: the route's missing-usage policy applies.
    pub usage: Option<Usage>,
}

impl ToolOutput {
    /// A result that reports no usage.
    pub fn new(result: CallToolResult) -> Self {
        Self {
            result,
            usage: None,
        }
    }

    /// With what the call used.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }
}

impl From<CallToolResult> for ToolOutput {
    fn from(result: CallToolResult) -> Self {
        Self::new(result)
    }
}

/// Why a tool call cannot be made from its arguments; the message is shown
/// to the caller as a tool error (nothing is charged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl ToolError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
