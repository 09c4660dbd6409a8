//! The x402 objects as they travel in MCP messages, for both sides.
//!
//! - A tool call carries its payment as a JSON object (a `PaymentPayload`) in
//!   `params._meta["x402/payment"]`.
//! - A paid result carries the settlement (a `SettleResponse`) in its own
//!   `_meta["x402/payment-response"]`.
//! - "Payment required" (and "payment invalid", "settlement failed") is a
//!   tool result with `isError: true`, the `PaymentRequired` object in
//!   `structuredContent`, and the same object as JSON text in `content[0]`.
//!   The spec defines no JSON-RPC error code for it, so none is used.

use paywire_core::{PaymentPayload, PaymentRequired, SettleResponse};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, MetaObject};
use serde_json::Value;

/// The `_meta` key of a tool call's payment.
pub const PAYMENT_META_KEY: &str = "x402/payment";

/// The `_meta` key of a tool result's settlement receipt.
pub const PAYMENT_RESPONSE_META_KEY: &str = "x402/payment-response";

/// The resource URL of tool `tool` when the server names no other:
/// `mcp://tool/<tool>`, as in the transport spec's examples.
pub fn tool_resource_url(tool: &str) -> String {
    format!("mcp://tool/{tool}")
}

/// Why an x402 object in an MCP message could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The object is not valid JSON of the expected shape.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
}

/// The payment-required tool result for `required`: `isError: true`, the
/// object in `structuredContent`, and its JSON text in `content[0]`.
pub fn payment_required_result(required: &PaymentRequired) -> CallToolResult {
    // Serialising our own wire type cannot fail (string keys, no maps with
    // non-string keys); `Null` would still be a well-formed result.
    let structured = serde_json::to_value(required).unwrap_or(Value::Null);
    let text = structured.to_string();
    let mut result = CallToolResult::default();
    result.is_error = Some(true);
    result.content = vec![ContentBlock::text(text)];
    result.structured_content = Some(structured);
    result
}

/// The `PaymentRequired` a tool result signals, if it is a payment-required
/// result: `isError: true` and an object with `x402Version` and `accepts`
/// in `structuredContent`, else in `content[0]`'s JSON text.
///
/// `None` for any other result (a successful result is never read as a
/// payment request); `Some(Err)` when the object is there but malformed.
pub fn payment_required_of(result: &CallToolResult) -> Option<Result<PaymentRequired, WireError>> {
    if result.is_error != Some(true) {
        return None;
    }
    let from_structured = result
        .structured_content
        .as_ref()
        .filter(|value| looks_like_payment_required(value))
        .cloned();
    let candidate = from_structured.or_else(|| {
        let text = &result.content.first()?.as_text()?.text;
        let value: Value = serde_json::from_str(text).ok()?;
        looks_like_payment_required(&value).then_some(value)
    })?;
    Some(
        serde_json::from_value(candidate).map_err(|source| WireError::Malformed {
            what: "PaymentRequired",
            source,
        }),
    )
}

fn looks_like_payment_required(value: &Value) -> bool {
    value.get("x402Version").is_some() && value.get("accepts").is_some()
}

/// The settlement receipt in a result's `_meta["x402/payment-response"]`.
pub fn receipt_of(result: &CallToolResult) -> Option<Result<SettleResponse, WireError>> {
    let value = result.meta.as_ref()?.0.get(PAYMENT_RESPONSE_META_KEY)?;
    Some(
        serde_json::from_value(value.clone()).map_err(|source| WireError::Malformed {
            what: "payment response",
            source,
        }),
    )
}

/// Puts `receipt` in the result's `_meta["x402/payment-response"]`, keeping
/// the other `_meta` entries the tool set.
pub fn attach_receipt(result: &mut CallToolResult, receipt: &SettleResponse) {
    let value = serde_json::to_value(receipt).unwrap_or(Value::Null);
    result
        .meta
        .get_or_insert_with(MetaObject::new)
        .0
        .insert(PAYMENT_RESPONSE_META_KEY.to_owned(), value);
}

/// Puts `payment` in a tool call's `_meta["x402/payment"]` (`meta` is the
/// call's `_meta` object), replacing an earlier payment.
pub fn attach_payment(meta: &mut JsonObject, payment: &PaymentPayload) {
    let value = serde_json::to_value(payment).unwrap_or(Value::Null);
    meta.insert(PAYMENT_META_KEY.to_owned(), value);
}

/// The raw payment of a tool call's `_meta`, as JSON text for the gate to
/// decode and check: `None` when the call carries no `x402/payment` entry.
/// Whatever the entry holds (an object, a string, `null`) is handed on, so
/// a malformed payment is refused with a reason, never mistaken for none.
pub fn payment_json_of(meta: &JsonObject) -> Option<Vec<u8>> {
    let value = meta.get(PAYMENT_META_KEY)?;
    Some(value.to_string().into_bytes())
}

/// A refusal that is not a payment request (the settlement outcome is not
/// known yet, the facilitator is unreachable, a hook refused), as a tool
/// result: `isError: true`, and in `structuredContent` (and as JSON text in
/// `content[0]`) `{"error": code, "message": text, "status": n,
/// "retryAfter": seconds, ...details}`.
///
/// This shape is paywire's: the transport spec only defines the
/// payment-required result. It carries no `accepts`, so no client mistakes
/// it for a payment request; `status` is the HTTP status the same refusal
/// has over HTTP, and `retryAfter` (when present) asks the client to send
/// the same payment again after that many seconds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ErrorAnswer {
    /// The HTTP status of the same refusal over HTTP.
    pub status: u16,
    /// Stable machine-readable code.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds after which sending the same payment again makes sense.
    pub retry_after: Option<u32>,
    /// Further fields.
    pub details: serde_json::Map<String, Value>,
}

impl ErrorAnswer {
    /// An answer with `status`, `error` code and `message`.
    pub fn new(status: u16, error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            message: message.into(),
            retry_after: None,
            details: serde_json::Map::new(),
        }
    }

    /// With a retry delay.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// With further fields (the standard fields win over them).
    pub fn details(mut self, details: serde_json::Map<String, Value>) -> Self {
        self.details = details;
        self
    }

    fn to_value(&self) -> Value {
        let mut body = self.details.clone();
        body.insert("error".into(), self.error.clone().into());
        body.insert("message".into(), self.message.clone().into());
        body.insert("status".into(), self.status.into());
        if let Some(seconds) = self.retry_after {
            body.insert("retryAfter".into(), seconds.into());
        }
        Value::Object(body)
    }
}

/// The tool result for `answer` (see [`ErrorAnswer`]).
pub fn error_result(answer: &ErrorAnswer) -> CallToolResult {
    let structured = answer.to_value();
    let mut result = CallToolResult::default();
    result.is_error = Some(true);
    result.content = vec![ContentBlock::text(structured.to_string())];
    result.structured_content = Some(structured);
    result
}

/// The [`ErrorAnswer`] a tool result carries: `isError: true`, and an object
/// with a string `error` and a numeric `status` but no `accepts`, in
/// `structuredContent` or `content[0]`'s JSON text.
pub fn error_answer_of(result: &CallToolResult) -> Option<ErrorAnswer> {
    if result.is_error != Some(true) {
        return None;
    }
    let parse = |value: &Value| -> Option<ErrorAnswer> {
        let object = value.as_object()?;
        if object.contains_key("accepts") {
            return None;
        }
        let error = object.get("error")?.as_str()?.to_owned();
        let status = u16::try_from(object.get("status")?.as_u64()?).ok()?;
        let message = object
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let retry_after = object
            .get("retryAfter")
            .and_then(Value::as_u64)
            .and_then(|seconds| u32::try_from(seconds).ok());
        let mut details = object.clone();
        for key in ["error", "message", "status", "retryAfter"] {
            details.remove(key);
        }
        Some(ErrorAnswer {
            status,
            error,
            message,
            retry_after,
            details,
        })
    };
    if let Some(answer) = result.structured_content.as_ref().and_then(parse) {
        return Some(answer);
    }
    let text = &result.content.first()?.as_text()?.text;
    parse(&serde_json::from_str(text).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn required() -> PaymentRequired {
        serde_json::from_value(json!({
            "x402Version": 2,
            "error": "Payment required to access this resource",
            "resource": {"url": "mcp://tool/forecast", "description": "d", "mimeType": "application/json"},
            "accepts": [{
                "scheme": "exact", "network": "eip155:84532", "amount": "10000",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}
            }]
        }))
        .expect("a valid PaymentRequired")
    }

    #[test]
    fn payment_required_is_structured_content_and_the_same_json_text() {
        let result = payment_required_result(&required());
        let wire = serde_json::to_value(&result).expect("serialisable");
        assert_eq!(wire["isError"], json!(true));
        let text = wire["content"][0]["text"].as_str().expect("text content");
        assert_eq!(wire["content"][0]["type"], json!("text"));
        let parsed: Value = serde_json::from_str(text).expect("JSON text");
        assert_eq!(parsed, wire["structuredContent"]);
        assert_eq!(
            wire["structuredContent"]["accepts"][0]["amount"],
            json!("10000")
        );
        let back = payment_required_of(&result)
            .expect("signals payment")
            .expect("valid");
        assert_eq!(back, required());
    }

    #[test]
    fn the_text_is_read_when_structured_content_is_missing() {
        let mut result = payment_required_result(&required());
        result.structured_content = None;
        let back = payment_required_of(&result)
            .expect("signals payment")
            .expect("valid");
        assert_eq!(back, required());
    }

    #[test]
    fn successful_results_and_other_errors_are_not_payment_requests() {
        let mut result = payment_required_result(&required());
        result.is_error = None;
        assert!(payment_required_of(&result).is_none());
        let mut other = CallToolResult::default();
        other.is_error = Some(true);
        other.content = vec![ContentBlock::text("upstream failed")];
        assert!(payment_required_of(&other).is_none());
    }

    #[test]
    fn a_malformed_payment_request_is_an_error_not_a_panic() {
        let mut result = CallToolResult::default();
        result.is_error = Some(true);
        result.structured_content = Some(json!({"x402Version": 2, "accepts": "nope"}));
        assert!(matches!(payment_required_of(&result), Some(Err(_))));
    }

    #[test]
    fn receipts_round_trip_through_meta_beside_other_entries() {
        let receipt: SettleResponse = serde_json::from_value(json!({
            "success": true, "transaction": "0x12", "network": "eip155:84532", "payer": "0x85"
        }))
        .expect("valid receipt");
        let mut result = CallToolResult::default();
        let mut meta = MetaObject::new();
        meta.0.insert("tool/trace".into(), json!("abc"));
        result.meta = Some(meta);
        attach_receipt(&mut result, &receipt);
        let wire = serde_json::to_value(&result).expect("serialisable");
        assert_eq!(
            wire["_meta"]["x402/payment-response"]["transaction"],
            json!("0x12")
        );
        assert_eq!(wire["_meta"]["tool/trace"], json!("abc"));
        assert_eq!(
            receipt_of(&result).expect("present").expect("valid"),
            receipt
        );
    }

    #[test]
    fn any_payment_entry_is_handed_on_and_a_missing_one_is_none() {
        let mut meta = JsonObject::new();
        assert_eq!(payment_json_of(&meta), None);
        meta.insert(PAYMENT_META_KEY.into(), json!("not an object"));
        assert_eq!(payment_json_of(&meta), Some(b"\"not an object\"".to_vec()));
    }
    #[test]
    fn error_answers_round_trip_and_are_not_payment_requests() {
        let answer = ErrorAnswer::new(503, "settlement_pending", "try again").retry_after(2);
        let result = error_result(&answer);
        assert!(payment_required_of(&result).is_none());
        assert_eq!(error_answer_of(&result), Some(answer.clone()));
        let mut text_only = result.clone();
        text_only.structured_content = None;
        assert_eq!(error_answer_of(&text_only), Some(answer));
        let required = payment_required_result(&required());
        assert!(error_answer_of(&required).is_none());
    }
}
