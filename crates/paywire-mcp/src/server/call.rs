//! One `tools/call`: the backend prepares it, the gate prices it and, when
//! priced, runs it through verify → reserve → run → settle; the outcome is
//! rendered as a tool result.

use std::convert::Infallible;

use bytes::Bytes;
use paywire_core::{BoxFuture, PaymentRequired};
use paywire_server::gate::{
    Access, CustomRefusal, ErrorRefusal, GateRequest, Handler, Headers, Hold, HoldError,
    HoldPermit, KeptReply, Outcome, PaymentInput, Refusal, ReplyClass, Served,
};
use paywire_server::{PaymentGate, Usage, normalize_path};
use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, JsonObject};
use serde_json::Value;

use super::backend::{PreparedCall, RunTool, ToolBackend, ToolContext, ToolOutput};
use crate::wire::{self, ErrorAnswer};

/// The most characters of a hook's refusal body shown as its message.
const MAX_CUSTOM_MESSAGE: usize = 2048;

/// Runs one tool call; `Err` only for an unknown tool (JSON-RPC
/// invalid-params, as MCP says). Every other problem is a tool result.
pub(super) async fn call_tool<B: ToolBackend>(
    gate: &PaymentGate,
    backend: &B,
    request: CallToolRequestParams,
    meta: JsonObject,
) -> Result<CallToolResult, McpError> {
    let name = request.name.as_ref();
    let arguments = request.arguments.unwrap_or_default();
    let prepared = match backend.prepare(name, arguments) {
        Ok(Some(prepared)) => prepared,
        Ok(None) => {
            return Err(McpError::invalid_params(
                format!("unknown tool: {}", truncated(name, 128)),
                None,
            ));
        }
        Err(error) => {
            // Nothing was priced or run: an ordinary tool error.
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                error.to_string(),
            )]));
        }
    };
    Ok(gated(gate, prepared, meta).await)
}

/// The gate's part: unpriced calls run directly, priced ones through the
/// payment pipeline.
async fn gated(gate: &PaymentGate, prepared: PreparedCall, meta: JsonObject) -> CallToolResult {
    let PreparedCall {
        method,
        path,
        query,
        body,
        resource_url,
        run,
        priced_by,
    } = prepared;
    let path = match normalize_path(&path) {
        Ok(path) => path,
        Err(error) => return refused(400, "invalid_path", &error.to_string()),
    };
    let priced_path = path.as_str().to_owned();
    let matched = match gate.route(&method, &path) {
        Ok(Some(matched)) => matched,
        Ok(None) if priced_by.is_none() => return run_unpriced(run, meta, priced_path).await,
        Ok(None) => return not_its_price(),
        Err(error) => return refused(400, "invalid_path", &error.to_string()),
    };
    if priced_by
        .as_deref()
        .is_some_and(|own| own != matched.pattern())
    {
        return not_its_price();
    }
    let body = match (matched.body_limit(), body) {
        (Some(limit), Some(body)) if body.len() > limit => {
            let message = format!("the arguments are over the {limit}-byte limit of this tool");
            return refused(413, "body_too_large", &message);
        }
        (Some(_), body) => body,
        (None, _) => None,
    };
    let mut request = GateRequest::new(method, path, resource_url)
        .headers(headers_of(&meta))
        .payment(payment_of(&meta));
    request.query = query;
    request.body = body;
    let handler = ToolHandler {
        run,
        meta,
        path: priced_path,
    };
    match gate.process(matched, request, handler).await {
        Ok(outcome) => render(outcome),
        Err(never) => match never {},
    }
}

/// A paid tool the gate would price with another route than its own (or
/// not at all): refused, the tool does not run. A configuration error.
fn not_its_price() -> CallToolResult {
    tracing::error!("a paid tool is priced by another route than its own; refusing the call");
    refused(
        500,
        "tool_price_misconfigured",
        "this tool cannot be sold right now; nothing was charged",
    )
}

/// A tool no route prices: run as is, no payment read.
async fn run_unpriced(run: Box<dyn RunTool>, meta: JsonObject, path: String) -> CallToolResult {
    let context = ToolContext {
        path,
        meta,
        ..ToolContext::default()
    };
    run_isolated(run, context).await.result
}

/// Runs a tool in its own task: a panicking tool is a failed call (never
/// charged), not a crashed connection.
async fn run_isolated(run: Box<dyn RunTool>, context: ToolContext) -> ToolOutput {
    match tokio::spawn(run.run(context)).await {
        Ok(output) => output,
        Err(error) => {
            tracing::error!(%error, "a tool failed (panicked or was cancelled)");
            ToolOutput::new(CallToolResult::error(vec![ContentBlock::text(
                "the tool failed; nothing was charged",
            )]))
        }
    }
}

/// The call's `_meta` as request metadata for pricing and hooks: strings as
/// their bytes, other values as JSON text.
fn headers_of(meta: &JsonObject) -> Headers {
    Headers::from_pairs(meta.iter().filter(|(name, _)| !is_reserved_name(name)).map(
        |(name, value)| {
            let bytes = match value {
                Value::String(text) => text.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            (name.clone(), bytes)
        },
    ))
}

/// `_meta` names that would be read as HTTP credentials by hooks (sign-in
/// proofs, session tokens, payments): never handed on as metadata, since
/// sign-in-with-x is not offered over MCP (see `docs/mcp.md`) and the
/// payment is read from `x402/payment` only.
const RESERVED_NAMES: &[&str] = &[
    "sign-in-with-x",
    "authorization",
    "cookie",
    "payment-signature",
    "payment-response",
    "payment-required",
    "x-payment",
    // paywire_siwx::SESSION_HEADER (not a dependency of this crate).
    "sign-in-with-x-session",
];

fn is_reserved_name(name: &str) -> bool {
    RESERVED_NAMES
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
}

/// The payment as the call carries it: whatever `x402/payment` holds goes to
/// the gate, which refuses a malformed one with a reason.
fn payment_of(meta: &JsonObject) -> PaymentInput {
    wire::payment_json_of(meta).map_or(PaymentInput::Absent, |json| {
        PaymentInput::Json(Bytes::from(json))
    })
}

/// The tool as the gate's handler.
struct ToolHandler {
    run: Box<dyn RunTool>,
    meta: JsonObject,
    path: String,
}

/// A tool's output, with the pool bytes it holds once held back.
#[derive(Debug)]
struct Reply {
    output: ToolOutput,
    _permit: Option<HoldPermit>,
}

/// A result held back until settlement, with its serialized form (what it
/// occupies, and what is kept after an unknown outcome).
struct Held {
    result: CallToolResult,
    json: Bytes,
    permit: HoldPermit,
}

impl Handler for ToolHandler {
    type Reply = Reply;
    type Held = Held;
    type Error = Infallible;

    fn run(self, access: Access<'_>) -> BoxFuture<'static, Result<Reply, Infallible>> {
        let context = ToolContext {
            payer: access.payer().map(str::to_owned),
            receipt: access.receipt().cloned(),
            meta: self.meta,
            path: self.path,
        };
        let run = self.run;
        Box::pin(async move {
            Ok(Reply {
                output: run_isolated(run, context).await,
                _permit: None,
            })
        })
    }

    fn class(reply: &Reply) -> ReplyClass {
        // Field lesson 2: a tool error is passed on, never charged.
        if reply.output.result.is_error == Some(true) {
            ReplyClass::Failed { status: 500 }
        } else {
            ReplyClass::Sellable
        }
    }

    fn usage(reply: &Reply) -> Option<Usage> {
        reply.output.usage.clone()
    }

    fn hold(reply: Reply, mut hold: Hold) -> BoxFuture<'static, Result<Held, HoldError>> {
        Box::pin(async move {
            let result = reply.output.result;
            let json = serde_json::to_vec(&result).map_err(|e| HoldError::Failed(Box::new(e)))?;
            hold.take(json.len())?;
            Ok(Held {
                result,
                json: Bytes::from(json),
                permit: hold.finish(),
            })
        })
    }

    fn release(held: Held) -> Reply {
        Reply {
            output: ToolOutput::new(held.result),
            _permit: Some(held.permit),
        }
    }

    fn keep(held: Held) -> KeptReply {
        KeptReply {
            status: 200,
            headers: Vec::new(),
            body: held.json,
        }
    }

    fn restore(kept: KeptReply) -> Reply {
        let result = serde_json::from_slice(&kept.body).unwrap_or_else(|error| {
            // Only our own serialization is kept; this cannot happen short
            // of memory corruption, and must not be answered with nothing.
            tracing::error!(%error, "a kept tool result could not be read back");
            CallToolResult::error(vec![ContentBlock::text(
                "the paid result was lost; contact the seller",
            )])
        });
        Reply {
            output: ToolOutput::new(result),
            _permit: None,
        }
    }
}

/// The tool result of the gate's outcome.
fn render(outcome: Outcome<Reply>) -> CallToolResult {
    match outcome {
        Outcome::Serve(served) => served_result(served),
        Outcome::Refuse(refusal) => refusal_result(refusal),
        other => {
            tracing::error!(?other, "an outcome this adapter does not know");
            refused(500, "refused", "the call was refused; nothing was charged")
        }
    }
}

/// The tool result of one of the gate's refusals.
fn refusal_result(refusal: Refusal) -> CallToolResult {
    match refusal {
        Refusal::PaymentRequired { required, receipt } => {
            let mut result = payment_required(*required);
            if let Some(receipt) = receipt {
                wire::attach_receipt(&mut result, &receipt);
            }
            result
        }
        Refusal::Error(refusal) => error_refusal(refusal),
        Refusal::Custom(custom) => custom_refusal(&custom),
        other => {
            tracing::error!(?other, "a refusal this adapter does not know");
            refused(500, "refused", "the call was refused")
        }
    }
}

/// A served result with the receipt in `_meta`. Metadata a hook added (a
/// sign-in session token over HTTP) is not passed on: no session is
/// offered over MCP.
fn served_result(served: Served<Reply>) -> CallToolResult {
    let Served { reply, receipt, .. } = served;
    let mut result = reply.output.result;
    if let Some(receipt) = &receipt {
        wire::attach_receipt(&mut result, receipt);
    }
    result
}

/// The spec's payment-required result, in MCP's words.
fn payment_required(mut required: PaymentRequired) -> CallToolResult {
    required.error = required.error.as_deref().map(mcp_wording);
    wire::payment_required_result(&required)
}

/// An error refusal: a payment the gate could not read is answered with
/// the requirements and the reason (the spec's "payment invalid"); any other
/// (facilitator down, settlement unknown, disputed, a hook's) is paywire's
/// error answer, which no client mistakes for a request to pay again.
fn error_refusal(refusal: ErrorRefusal) -> CallToolResult {
    if let Some(required) = refusal.required {
        return payment_required(*required);
    }
    let mut answer = ErrorAnswer::new(refusal.status, refusal.error, mcp_wording(&refusal.message))
        .details(refusal.details);
    if let Some(seconds) = refusal.retry_after {
        answer = answer.retry_after(seconds);
    }
    wire::error_result(&answer)
}

/// A hook's replacement answer: its JSON object's `error` and `message`
/// when it has them, else its text.
fn custom_refusal(custom: &CustomRefusal) -> CallToolResult {
    let retry_after = custom
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| value.trim().parse::<u32>().ok());
    let mut answer = if let Ok(Value::Object(mut body)) = serde_json::from_slice(&custom.body) {
        let mut take_text = |key: &str| match body.remove(key) {
            Some(Value::String(text)) => Some(text),
            Some(other) => {
                body.insert(key.to_owned(), other);
                None
            }
            None => None,
        };
        let error = take_text("error").unwrap_or_else(|| "refused".to_owned());
        let message = take_text("message").unwrap_or_default();
        body.remove("status");
        body.remove("retryAfter");
        ErrorAnswer::new(custom.status, error, message).details(body)
    } else {
        let text = String::from_utf8_lossy(&custom.body);
        ErrorAnswer::new(
            custom.status,
            "refused",
            truncated(&text, MAX_CUSTOM_MESSAGE),
        )
    };
    if let Some(seconds) = retry_after {
        answer = answer.retry_after(seconds);
    }
    wire::error_result(&answer)
}

/// A refusal of the adapter's own (before the gate decided anything).
fn refused(status: u16, error: &str, message: &str) -> CallToolResult {
    wire::error_result(&ErrorAnswer::new(status, error, message))
}

/// The gate's messages name HTTP's payment header; over MCP the payment is
/// the call's `_meta["x402/payment"]`.
fn mcp_wording(message: &str) -> String {
    if message == "PAYMENT-SIGNATURE header is required" {
        return "payment required: send a PaymentPayload in the call's _meta[\"x402/payment\"]"
            .to_owned();
    }
    message
        .replace("PAYMENT-SIGNATURE header", "_meta[\"x402/payment\"]")
        .replace("same PAYMENT-SIGNATURE", "same _meta[\"x402/payment\"]")
}

/// At most `max` characters of `text`.
fn truncated(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_messages_speak_of_meta_not_headers() {
        assert!(!mcp_wording("PAYMENT-SIGNATURE header is required").contains("PAYMENT-SIGNATURE"));
        let pending = mcp_wording(
            "do not pay again: retry this request with the same PAYMENT-SIGNATURE to receive",
        );
        assert!(
            pending.contains("same _meta[\"x402/payment\"]"),
            "{pending}"
        );
        assert_eq!(mcp_wording("other"), "other");
    }

    #[test]
    fn custom_refusals_keep_their_code_and_message() {
        let custom = CustomRefusal::new(403, r#"{"error":"blocked","message":"no","extra":1}"#)
            .header("Retry-After", "7");
        let answer = wire::error_answer_of(&custom_refusal(&custom)).expect("an error answer");
        assert_eq!(
            (
                answer.status,
                answer.error.as_str(),
                answer.message.as_str()
            ),
            (403, "blocked", "no")
        );
        assert_eq!(answer.retry_after, Some(7));
        assert_eq!(answer.details.get("extra"), Some(&Value::from(1)));
        let html = CustomRefusal::new(451, "<h1>nope</h1>");
        let answer = wire::error_answer_of(&custom_refusal(&html)).expect("an error answer");
        assert_eq!(
            (answer.status, answer.message.as_str()),
            (451, "<h1>nope</h1>")
        );
    }

    #[test]
    fn credentials_in_meta_never_reach_hooks() {
        let mut meta = JsonObject::new();
        for name in [
            "SIGN-IN-WITH-X",
            "sign-in-with-x-session",
            "Authorization",
            "payment-signature",
            "X-PAYMENT",
        ] {
            meta.insert(name.into(), Value::from("credential"));
        }
        meta.insert("trace".into(), Value::from("abc"));
        let headers = headers_of(&meta);
        for name in [
            "sign-in-with-x",
            "sign-in-with-x-session",
            "authorization",
            "payment-signature",
            "x-payment",
        ] {
            assert!(!headers.contains_key(name), "{name} reached the hooks");
        }
        assert_eq!(headers.text("trace"), Some("abc"));
    }

    #[test]
    fn metadata_values_are_text_or_json() {
        let mut meta = JsonObject::new();
        meta.insert("trace".into(), Value::from("abc"));
        meta.insert("n".into(), Value::from(5));
        let headers = headers_of(&meta);
        assert_eq!(headers.text("TRACE"), Some("abc"));
        assert_eq!(headers.text("n"), Some("5"));
        assert_eq!(payment_of(&meta), PaymentInput::Absent);
        meta.insert(wire::PAYMENT_META_KEY.into(), Value::Null);
        assert_eq!(
            payment_of(&meta),
            PaymentInput::Json(Bytes::from_static(b"null"))
        );
    }
}
