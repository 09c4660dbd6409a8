//! The library's own tool set: free tools, and priced tools whose routes
//! (`CALL /tools/<name>`) go to the payment gate.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use paywire_bazaar::Declaration;
use paywire_core::BoxFuture;
use paywire_server::{PaymentGateBuilder, Route};
use rmcp::model::{JsonObject, Tool};
use serde_json::Value;

use super::McpPaymentServer;
use super::backend::{PreparedCall, RunTool, ToolBackend, ToolContext, ToolError, ToolOutput};
use crate::wire;

/// The verb of tool routes: `CALL /tools/<name>`.
pub const TOOL_METHOD: &str = "CALL";

/// The largest arguments object (as JSON) a priced tool's dynamic price may
/// read, unless the route says otherwise with `Route::with_body`: 1 MiB.
pub const DEFAULT_MAX_ARGUMENTS_BYTES: usize = 1 << 20;

/// The longest tool name accepted.
const MAX_TOOL_NAME: usize = 128;

/// The gate path of tool `name`.
pub fn tool_path(name: &str) -> String {
    format!("/tools/{name}")
}

/// Why a tool set cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A tool name is not 1 to 128 characters of `[A-Za-z0-9_.-]`, or is
    /// `.` or `..` (it becomes a path segment of the tool's route).
    #[error(
        "invalid tool name {0:?}: 1 to 128 characters of A-Z, a-z, 0-9, '_', '.', '-', and not '.' or '..'"
    )]
    ToolName(String),
    /// Two tools have the same name.
    #[error("tool {0:?} is declared twice")]
    DuplicateTool(String),
    /// The endpoint URL is not an absolute URL.
    #[error("invalid endpoint URL {0:?}")]
    EndpointUrl(String),
    /// The payment gate refused its configuration.
    #[error(transparent)]
    Gate(#[from] paywire_server::ConfigError),
}

/// Whether `name` may name a tool (see [`ConfigError::ToolName`]).
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=MAX_TOOL_NAME).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

type Handler = Arc<dyn Fn(ToolContext, JsonObject) -> BoxFuture<'static, ToolOutput> + Send + Sync>;

fn boxed<F, Fut, O>(handler: F) -> Handler
where
    F: Fn(ToolContext, JsonObject) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = O> + Send + 'static,
    O: Into<ToolOutput>,
{
    Arc::new(move |context, arguments| {
        let future = handler(context, arguments);
        Box::pin(async move { future.await.into() })
    })
}

struct Entry {
    tool: Tool,
    handler: Handler,
    /// The route pattern that must price a call of a paid tool.
    priced_by: Option<String>,
}

/// Free and priced tools with their handlers, served by
/// [`McpPaymentServer`]. Built with [`PaidTools::builder`].
pub struct PaidTools {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    endpoint_url: Option<String>,
}

impl std::fmt::Debug for PaidTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaidTools")
            .field("tools", &self.index.keys().collect::<Vec<_>>())
            .field("endpoint_url", &self.endpoint_url)
            .finish_non_exhaustive()
    }
}

impl PaidTools {
    /// Starts a tool set whose priced tools become routes of `gate`.
    pub fn builder(gate: PaymentGateBuilder) -> PaidToolsBuilder {
        PaidToolsBuilder {
            gate,
            entries: Vec::new(),
            routes: Vec::new(),
            endpoint_url: None,
            error: None,
        }
    }

    fn resource_url(&self, name: &str) -> String {
        self.endpoint_url
            .clone()
            .unwrap_or_else(|| wire::tool_resource_url(name))
    }
}

/// Configures [`PaidTools`]; the first configuration error is reported by
/// [`PaidToolsBuilder::build`].
pub struct PaidToolsBuilder {
    gate: PaymentGateBuilder,
    entries: Vec<Entry>,
    routes: Vec<Route>,
    endpoint_url: Option<String>,
    error: Option<ConfigError>,
}

impl std::fmt::Debug for PaidToolsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaidToolsBuilder")
            .field("tools", &self.entries.len())
            .field("endpoint_url", &self.endpoint_url)
            .finish_non_exhaustive()
    }
}

impl PaidToolsBuilder {
    /// A tool anyone may call without paying.
    pub fn free_tool<F, Fut, O>(mut self, tool: Tool, handler: F) -> Self
    where
        F: Fn(ToolContext, JsonObject) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: Into<ToolOutput>,
    {
        if self.check_name(&tool.name) {
            self.entries.push(Entry {
                tool,
                handler: boxed(handler),
                priced_by: None,
            });
        }
        self
    }

    /// A priced tool: its route `CALL /tools/<name>` carries the tool's
    /// description, reads the arguments (as JSON) for dynamic prices, and
    /// declares the tool to the bazaar (`type: mcp`, `toolName`, its input
    /// schema). `configure` adds the payment options and may change any of
    /// that (a `bazaar` extension it sets replaces the default one).
    pub fn paid_tool<F, Fut, O>(
        mut self,
        tool: Tool,
        configure: impl FnOnce(Route) -> Route,
        handler: F,
    ) -> Self
    where
        F: Fn(ToolContext, JsonObject) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: Into<ToolOutput>,
    {
        if !self.check_name(&tool.name) {
            return self;
        }
        let pattern = format!("{TOOL_METHOD} {}", tool_path(&tool.name));
        match Route::new(&pattern) {
            Ok(route) => {
                let route = configure(default_route(route, &tool));
                self.routes.push(route);
                self.entries.push(Entry {
                    tool,
                    handler: boxed(handler),
                    priced_by: Some(pattern),
                });
            }
            Err(error) => {
                self.error.get_or_insert(ConfigError::Gate(error));
            }
        }
        self
    }

    /// The server's public endpoint URL (`https://api.example.com/mcp`),
    /// used as every priced tool's resource URL (tools are told apart by
    /// their bazaar `toolName`). Without it: `mcp://tool/<name>`.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        if url::Url::parse(&url).is_err() {
            self.error.get_or_insert(ConfigError::EndpointUrl(url));
        } else {
            self.endpoint_url = Some(url);
        }
        self
    }

    /// Checks the tools, builds the gate with their routes, and returns the
    /// server.
    pub fn build(self) -> Result<McpPaymentServer<PaidTools>, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut gate = self.gate;
        for route in self.routes {
            gate = gate.route(route);
        }
        let gate = gate.build()?;
        let index = self
            .entries
            .iter()
            .enumerate()
            .map(|(position, entry)| (entry.tool.name.to_string(), position))
            .collect();
        let tools = PaidTools {
            entries: self.entries,
            index,
            endpoint_url: self.endpoint_url,
        };
        Ok(McpPaymentServer::new(gate, tools))
    }

    /// Records an invalid or duplicate name; `true` when the name is usable.
    fn check_name(&mut self, name: &str) -> bool {
        let problem = if !is_valid_tool_name(name) {
            Some(ConfigError::ToolName(
                name.chars().take(MAX_TOOL_NAME + 8).collect(),
            ))
        } else if self.entries.iter().any(|entry| entry.tool.name == name) {
            Some(ConfigError::DuplicateTool(name.to_owned()))
        } else {
            None
        };
        match problem {
            Some(error) => {
                self.error.get_or_insert(error);
                false
            }
            None => true,
        }
    }
}

/// A priced tool's route before `configure`: description, arguments read
/// for pricing, bazaar declaration.
fn default_route(route: Route, tool: &Tool) -> Route {
    let schema = Value::Object((*tool.input_schema).clone());
    let mut declaration = Declaration::mcp_tool(tool.name.to_string(), schema);
    if let Some(description) = &tool.description {
        declaration = declaration.tool_details(description.to_string(), None);
    }
    let (key, value) = declaration.into_extension();
    let mut route = route
        .with_body(DEFAULT_MAX_ARGUMENTS_BYTES)
        .mime_type("application/json")
        .extension(key, value);
    if let Some(description) = &tool.description {
        route = route.description(description.to_string());
    }
    route
}

impl ToolBackend for PaidTools {
    fn tools(&self) -> Vec<Tool> {
        self.entries
            .iter()
            .map(|entry| entry.tool.clone())
            .collect()
    }

    fn prepare(
        &self,
        name: &str,
        arguments: JsonObject,
    ) -> Result<Option<PreparedCall>, ToolError> {
        let Some(entry) = self.index.get(name).and_then(|&i| self.entries.get(i)) else {
            return Ok(None);
        };
        let body = serde_json::to_vec(&arguments)
            .map_err(|error| ToolError::new(format!("the arguments are not JSON: {error}")))?;
        let run = HandlerRun {
            handler: Arc::clone(&entry.handler),
            arguments,
        };
        let mut call = PreparedCall::new(
            TOOL_METHOD,
            tool_path(name),
            self.resource_url(name),
            Box::new(run),
        )
        .body(body);
        if let Some(pattern) = &entry.priced_by {
            call = call.priced_by(pattern.clone());
        }
        Ok(Some(call))
    }
}

/// A registered handler with the arguments of one call.
struct HandlerRun {
    handler: Handler,
    arguments: JsonObject,
}

impl RunTool for HandlerRun {
    fn run(self: Box<Self>, context: ToolContext) -> BoxFuture<'static, ToolOutput> {
        // The seller's closure is called inside the returned future, so a
        // closure that panics before returning its own future panics in the
        // task that isolates the tool, not in the connection's.
        Box::pin(async move { (self.handler)(context, self.arguments).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_are_path_safe() {
        for good in ["weather", "a", "get_quote.v2", "x-y", &"n".repeat(128)] {
            assert!(is_valid_tool_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "é",
            "a%2f",
            "a?b",
            &"n".repeat(129),
        ] {
            assert!(!is_valid_tool_name(bad), "{bad}");
        }
    }
}
