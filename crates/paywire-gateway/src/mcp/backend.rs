//! The bridge's [`ToolBackend`]: each priced route is a tool whose call is
//! forwarded to the upstream by the gateway's own proxy.

use std::sync::Arc;

use axum::body::Body;
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use paywire_core::BoxFuture;
use paywire_mcp::server::{PreparedCall, RunTool, ToolBackend, ToolContext, ToolError, ToolOutput};
use paywire_mcp::wire::tool_resource_url;
use paywire_server::{PaymentGate, Usage, normalize_path};
use rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, ResourceContents, Tool, ToolAnnotations,
};
use serde_json::Value;

use super::tools::{RouteTool, UpstreamCall};
use crate::proxy::{Outgoing, Proxy};

/// The gateway's priced routes as MCP tools (see [`super::McpGateway`]).
#[derive(Clone)]
pub struct GatewayTools {
    tools: Arc<[RouteTool]>,
    listed: Arc<[Tool]>,
    gate: PaymentGate,
    proxy: Arc<Proxy>,
    max_response_bytes: usize,
}

impl std::fmt::Debug for GatewayTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayTools")
            .field(
                "tools",
                &self.tools.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl GatewayTools {
    pub(crate) fn new(
        tools: Vec<RouteTool>,
        gate: PaymentGate,
        proxy: Arc<Proxy>,
        max_response_bytes: usize,
    ) -> Self {
        let listed = tools.iter().map(listed).collect();
        let backend = Self {
            tools: tools.into(),
            listed,
            gate,
            proxy,
            max_response_bytes,
        };
        backend.warn_shadowed();
        backend
    }

    /// Warns about tools an earlier route shadows: their calls are priced
    /// by that route, so they are refused (see `check_route`).
    fn warn_shadowed(&self) {
        for tool in self.tools.iter() {
            let shadowed = tool
                .call(&tool.sample_arguments())
                .is_ok_and(|call| self.check_route(tool, &call).is_err());
            if shadowed {
                tracing::warn!(tool = %tool.name, route = %tool.pattern,
                    "an earlier route matches this route's paths: its tool calls will be refused");
            }
        }
    }
}

/// How `tools/list` shows a route's tool.
fn listed(tool: &RouteTool) -> Tool {
    let read_only = matches!(tool.method.as_str(), "GET" | "HEAD");
    Tool::new(
        tool.name.clone(),
        tool.description.clone(),
        Arc::new(tool.input_schema.clone()),
    )
    .with_annotations(ToolAnnotations::new().read_only(read_only).open_world(true))
}

impl ToolBackend for GatewayTools {
    fn tools(&self) -> Vec<Tool> {
        self.listed.to_vec()
    }

    fn prepare(
        &self,
        name: &str,
        arguments: JsonObject,
    ) -> Result<Option<PreparedCall>, ToolError> {
        let Some(tool) = self.tools.iter().find(|tool| tool.name == name) else {
            return Ok(None);
        };
        let call = tool
            .call(&arguments)
            .map_err(|error| ToolError::new(format!("{name}: {error}")))?;
        self.check_route(tool, &call)?;
        let mut prepared = PreparedCall::new(
            call.method.as_str(),
            call.path.clone(),
            tool_resource_url(&tool.name),
            Box::new(Forward {
                call: call.clone(),
                pattern: tool.pattern.clone(),
                proxy: Arc::clone(&self.proxy),
                max_response_bytes: self.max_response_bytes,
            }),
        );
        if let Some(query) = &call.query {
            prepared = prepared.query(query.clone());
        }
        if let Some((body, _)) = &call.body {
            prepared = prepared.body(body.clone());
        }
        Ok(Some(prepared))
    }
}

impl GatewayTools {
    /// The gate must price the call's path as this tool's own route with
    /// the arguments' segments: otherwise arguments could reach another
    /// route, or a path no route prices (which would run unpaid).
    fn check_route(&self, tool: &RouteTool, call: &UpstreamCall) -> Result<(), ToolError> {
        let refused =
            || ToolError::new(format!("{}: the arguments make another request", tool.name));
        let path = normalize_path(&call.path).map_err(|_| refused())?;
        match self.gate.route(call.method.as_str(), &path) {
            Ok(Some(matched)) if tool.owns(matched.pattern(), matched.params(), call) => Ok(()),
            Ok(Some(matched)) => {
                tracing::warn!(tool = %tool.name, route = matched.pattern(),
                    "a tool call matched another route; refused");
                Err(refused())
            }
            Ok(None) | Err(_) => Err(refused()),
        }
    }
}

/// One call, forwarded once the gate lets it run.
struct Forward {
    call: UpstreamCall,
    pattern: String,
    proxy: Arc<Proxy>,
    max_response_bytes: usize,
}

impl RunTool for Forward {
    fn run(self: Box<Self>, _context: ToolContext) -> BoxFuture<'static, ToolOutput> {
        Box::pin(async move {
            let Ok(uri) = self.call.target().parse::<http::Uri>() else {
                return failed("the arguments make no request target");
            };
            let mut headers = HeaderMap::new();
            let body = match self.call.body {
                Some((body, content_type)) => {
                    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                    reqwest::Body::from(body)
                }
                None => reqwest::Body::from(Vec::new()),
            };
            let outgoing = Outgoing {
                method: self.call.method,
                uri,
                headers,
                body,
                priced: Some(self.pattern),
                peer: None,
            };
            let response = self.proxy.send(outgoing).await;
            output_of(response, self.max_response_bytes).await
        })
    }
}

/// A failed call: a tool error, never charged.
fn failed(message: impl Into<String>) -> ToolOutput {
    ToolOutput::new(CallToolResult::error(vec![ContentBlock::text(message)]))
}

/// The tool output of the upstream's answer: 2xx and 3xx are content (a
/// 3xx sells what it points to, as over HTTP), 4xx and 5xx tool errors
/// (never charged); the usage report of an `upto` route is kept.
async fn output_of(response: Response<Body>, limit: usize) -> ToolOutput {
    let (parts, body) = response.into_parts();
    let usage = parts.extensions.get::<Usage>().cloned();
    let status = parts.status;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        // Over the limit (or cut off): over HTTP this is `500
        // response_too_large`, nothing charged.
        return failed(format!(
            "the upstream's answer is larger than the {limit}-byte limit of paid answers (or failed); nothing was charged"
        ));
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status.is_client_error() || status.is_server_error() {
        let text = String::from_utf8_lossy(&bytes);
        return failed(format!("the upstream answered HTTP {status}: {text}"));
    }
    let mut result = if status.is_redirection() {
        redirect(status, &parts.headers)
    } else {
        content(&bytes, &content_type)
    };
    result.is_error = Some(false);
    let mut output = ToolOutput::new(result);
    if let Some(usage) = usage {
        output = output.usage(usage);
    }
    output
}

/// A redirect's result: where it points.
fn redirect(status: StatusCode, headers: &HeaderMap) -> CallToolResult {
    let location = headers
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(location)]);
    result.structured_content = Some(serde_json::json!({
        "status": status.as_u16(),
        "location": location,
    }));
    result
}

/// A successful answer's body: UTF-8 as text (and a JSON object also as
/// `structuredContent`), an image as image content, other bytes as an
/// embedded blob.
fn content(bytes: &[u8], content_type: &str) -> CallToolResult {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime.starts_with("image/") {
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        return CallToolResult::success(vec![ContentBlock::image(data, mime)]);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
            result.structured_content = Some(value);
        }
        return result;
    }
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mime = if mime.is_empty() {
        "application/octet-stream".to_owned()
    } else {
        mime
    };
    let blob = ResourceContents::blob(data, "paywire:upstream-answer").with_mime_type(mime);
    CallToolResult::success(vec![ContentBlock::resource(blob)])
}
