//! The MCP tool call as a [`PaymentTransport`] of the payment flow.

use std::borrow::Cow;
use std::time::Duration;

use paywire_client::{
    AnswerStatus, ClientError, Credential, PaymentTransport, PreparedPayment, TransportError,
};
use paywire_core::codec::DecodeError;
use paywire_core::{BoxFuture, PaymentRequired, PaymentRequirements, SettleResponse, X402_VERSION};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, JsonObject, MetaObject, RequestMetaObject,
};
use rmcp::transport::streamable_http_client::StreamableHttpError;
use rmcp::{Peer, RoleClient, ServiceError};
use url::Url;

use super::{Approval, ApprovalRequest};
use crate::wire;

/// HTTP status of an [`wire::ErrorAnswer`] that means "unavailable now".
const SERVICE_UNAVAILABLE: u16 = 503;

/// One tool call: what is sent, and the resource it addresses.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    name: String,
    arguments: JsonObject,
    /// The call's `_meta` (the payment goes here).
    meta: JsonObject,
    /// `mcp://tool/<name>`. The flow uses it only for sign-in sessions,
    /// which MCP calls never carry (see [`McpTransport::attach`]).
    resource: Url,
}

impl ToolCall {
    pub(crate) fn new(name: &str, arguments: JsonObject) -> Self {
        Self {
            name: name.to_owned(),
            arguments,
            meta: JsonObject::new(),
            resource: tool_url(name),
        }
    }

    fn params(self) -> CallToolRequestParams {
        let mut params = CallToolRequestParams::new(Cow::Owned(self.name));
        params.arguments = Some(self.arguments);
        if !self.meta.is_empty() {
            params.meta = Some(RequestMetaObject(MetaObject(self.meta)));
        }
        params
    }
}

/// `mcp://tool/<name>`, the name percent-encoded as one path segment when it
/// holds characters a URL path cannot (tool names normally do not).
fn tool_url(name: &str) -> Url {
    if let Ok(url) = Url::parse(&wire::tool_resource_url(name))
        && url.path().strip_prefix('/') == Some(name)
    {
        return url;
    }
    // A constant that parses, whatever the tool's name.
    let mut url = Url::parse("mcp://tool/").expect("a constant, valid URL");
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(name);
    }
    url
}

/// Tool calls over one MCP session, for one [`super::PayingMcpClient::call_tool`].
pub(crate) struct McpTransport<'c> {
    pub(crate) peer: &'c Peer<RoleClient>,
    pub(crate) approval: Option<&'c dyn Approval>,
    pub(crate) timeout: Option<Duration>,
}

impl McpTransport<'_> {
    async fn call(&self, call: ToolCall) -> Result<CallToolResult, TransportError> {
        let name = call.name.clone();
        let sent = self.peer.call_tool(call.params());
        let answered = match self.timeout {
            // Not retryable: the server may still be running the paid call,
            // and a re-send of the same payment would meet its reservation
            // and read as unpaid. The budget keeps the payment outstanding.
            Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| {
                TransportError::fatal(format!(
                    "tools/call `{name}` timed out after {limit:?}; the payment may have been taken"
                ))
            })?,
            None => sent.await,
        };
        answered.map_err(|error| transport_error(&name, &error))
    }
}

/// A failed `tools/call` as the flow sees it: retryable only when the call
/// certainly did not reach the server (the connection was refused). A call
/// that may have reached the server, one that timed out included, is not
/// sent again: the server may still be running it under the payment's
/// reservation, so a re-send would read as unpaid while the first settles.
fn transport_error(tool: &str, error: &ServiceError) -> TransportError {
    let message = format!("tools/call `{tool}`: {error}");
    match error {
        ServiceError::TransportSend(sent) if never_connected(sent.error.as_ref()) => {
            TransportError::retryable(message)
        }
        _ => TransportError::fatal(message),
    }
}

/// Whether the error chain holds an HTTP connection failure (nothing of the
/// request reached the server). The
/// streamable HTTP transport keeps reqwest's error as a variant, not as a
/// `source`, so that variant is looked for too.
fn never_connected(error: &(dyn std::error::Error + 'static)) -> bool {
    let never_sent = |http: &reqwest::Error| http.is_connect();
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(StreamableHttpError::Client(http)) =
            error.downcast_ref::<StreamableHttpError<reqwest::Error>>()
        {
            return never_sent(http);
        }
        if let Some(http) = error.downcast_ref::<reqwest::Error>() {
            return never_sent(http);
        }
        current = error.source();
    }
    false
}

impl PaymentTransport for McpTransport<'_> {
    type Request = ToolCall;
    type Response = CallToolResult;

    fn resource<'r>(&self, request: &'r ToolCall) -> &'r Url {
        &request.resource
    }

    fn try_clone(&self, request: &ToolCall) -> Option<ToolCall> {
        Some(request.clone())
    }

    /// Sign-in credentials are not sent over MCP (see the module docs): the
    /// flow then pays as usual.
    fn attach(&self, _: &mut ToolCall, credential: &Credential) -> Result<(), TransportError> {
        Err(TransportError::fatal(format!(
            "sign-in credential `{}` not sent: sign-in is not supported over MCP",
            credential.name
        )))
    }

    fn attach_payment(
        &self,
        request: &mut ToolCall,
        payment: &PreparedPayment,
    ) -> Result<(), TransportError> {
        wire::attach_payment(&mut request.meta, &payment.payload);
        Ok(())
    }

    fn approve<'a>(
        &'a self,
        request: &'a ToolCall,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(approval) = self.approval else {
                return Ok(());
            };
            let asked = ApprovalRequest {
                tool: request.name.clone(),
                arguments: request.arguments.clone(),
                requirements: requirements.clone(),
            };
            approval.approve(&asked).await
        })
    }

    fn send(&self, request: ToolCall) -> BoxFuture<'_, Result<CallToolResult, TransportError>> {
        Box::pin(self.call(request))
    }

    fn send_paid(
        &self,
        request: ToolCall,
    ) -> BoxFuture<'_, Result<CallToolResult, TransportError>> {
        Box::pin(self.call(request))
    }

    fn status(&self, response: &CallToolResult) -> AnswerStatus {
        answer_status(response)
    }

    fn receipt(&self, response: &CallToolResult) -> Option<SettleResponse> {
        match wire::receipt_of(response)? {
            Ok(receipt) => Some(receipt),
            Err(error) => {
                tracing::warn!(%error, "unreadable settlement receipt in the tool result");
                None
            }
        }
    }

    fn retry_after(&self, response: &CallToolResult) -> Option<Duration> {
        let seconds = wire::error_answer_of(response)?.retry_after?;
        Some(Duration::from_secs(u64::from(seconds)))
    }

    /// MCP answers carry no sign-in session fields.
    fn field<'r>(&self, _: &'r CallToolResult, _: &str) -> Option<&'r str> {
        None
    }

    fn read_offer(
        &self,
        response: CallToolResult,
        max_body: usize,
    ) -> BoxFuture<'_, Result<PaymentRequired, ClientError>> {
        Box::pin(std::future::ready(read_offer(&response, max_body)))
    }
}

/// What a tool result says to the flow.
pub(crate) fn answer_status(result: &CallToolResult) -> AnswerStatus {
    if result.is_error != Some(true) {
        return AnswerStatus::Granted;
    }
    if wire::payment_required_of(result).is_some() {
        return AnswerStatus::PaymentRequired;
    }
    match wire::error_answer_of(result) {
        Some(answer) if answer.status == SERVICE_UNAVAILABLE => AnswerStatus::Unavailable,
        _ => AnswerStatus::Other,
    }
}

/// The `PaymentRequired` of a payment-required result, refusing one whose
/// JSON is larger than `limit` bytes before decoding it.
pub(crate) fn read_offer(
    result: &CallToolResult,
    limit: usize,
) -> Result<PaymentRequired, ClientError> {
    if offer_size(result) > limit {
        return Err(ClientError::PaymentRequiredTooLarge { limit });
    }
    let required = wire::payment_required_of(result)
        .ok_or(ClientError::MissingPaymentRequired)?
        .map_err(|error| DecodeError::Json(error.to_string()))?;
    if required.x402_version != X402_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: Some(u64::from(required.x402_version)),
        }
        .into());
    }
    Ok(required)
}

/// The larger of the two places an offer is read from: the JSON size of
/// `structuredContent` and the length of `content[0]`'s text.
fn offer_size(result: &CallToolResult) -> usize {
    let structured = result.structured_content.as_ref().map_or(0, json_size);
    let text = result
        .content
        .first()
        .and_then(|block| block.as_text())
        .map_or(0, |text| text.text.len());
    structured.max(text)
}

/// The length of `value` as compact JSON, counted without building it.
fn json_size(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(bytes.len());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; on a (theoretical) error the size
    // counted so far is still a lower bound, and decoding stays bounded by
    // the message size rmcp accepted.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use rmcp::model::ContentBlock;
    use rmcp::transport::DynamicTransportError;
    use serde_json::json;

    use super::*;
    use crate::wire::ErrorAnswer;

    fn offer() -> PaymentRequired {
        serde_json::from_value(json!({
            "x402Version": 2,
            "resource": {"url": "mcp://tool/forecast"},
            "accepts": [{
                "scheme": "exact", "network": "eip155:84532", "amount": "10000",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "maxTimeoutSeconds": 60
            }]
        }))
        .expect("a valid offer")
    }

    #[test]
    fn results_map_to_what_the_flow_expects() {
        let granted = CallToolResult::success(vec![ContentBlock::text("ok")]);
        assert_eq!(answer_status(&granted), AnswerStatus::Granted);
        let required = wire::payment_required_result(&offer());
        assert_eq!(answer_status(&required), AnswerStatus::PaymentRequired);
        let pending = wire::error_result(&ErrorAnswer::new(503, "pending", "later").retry_after(3));
        assert_eq!(answer_status(&pending), AnswerStatus::Unavailable);
        let refused = wire::error_result(&ErrorAnswer::new(403, "refused", "no"));
        assert_eq!(answer_status(&refused), AnswerStatus::Other);
        let failed = CallToolResult::error(vec![ContentBlock::text("boom")]);
        assert_eq!(answer_status(&failed), AnswerStatus::Other);
        // A successful result is never read as a payment request.
        let mut not_an_error = required;
        not_an_error.is_error = Some(false);
        assert_eq!(answer_status(&not_an_error), AnswerStatus::Granted);
    }

    #[test]
    fn offers_are_read_within_the_limit_only() {
        let required = wire::payment_required_result(&offer());
        assert_eq!(read_offer(&required, 64 * 1024).expect("read"), offer());
        let size = offer_size(&required);
        assert!(read_offer(&required, size).is_ok());
        assert!(matches!(
            read_offer(&required, size - 1),
            Err(ClientError::PaymentRequiredTooLarge { .. })
        ));
        // The text alone is bounded too (a server without structuredContent).
        let mut text_only = required;
        text_only.structured_content = None;
        assert!(matches!(
            read_offer(&text_only, size - 1),
            Err(ClientError::PaymentRequiredTooLarge { .. })
        ));
    }

    #[test]
    fn malformed_offers_are_errors() {
        let mut garbled = CallToolResult::error(vec![ContentBlock::text("{")]);
        garbled.structured_content = Some(json!({"x402Version": 2, "accepts": [1]}));
        assert!(matches!(
            read_offer(&garbled, 1024),
            Err(ClientError::BadPaymentRequired(DecodeError::Json(_)))
        ));
        let mut v3 = offer();
        v3.x402_version = 3;
        assert!(matches!(
            read_offer(&wire::payment_required_result(&v3), 1024),
            Err(ClientError::BadPaymentRequired(
                DecodeError::UnsupportedVersion { found: Some(3) }
            ))
        ));
        let plain = CallToolResult::error(vec![ContentBlock::text("boom")]);
        assert!(matches!(
            read_offer(&plain, 1024),
            Err(ClientError::MissingPaymentRequired)
        ));
    }

    #[test]
    fn tool_resources_are_mcp_urls() {
        assert_eq!(tool_url("forecast").as_str(), "mcp://tool/forecast");
        let odd = tool_url("a b/c?d");
        assert_eq!(odd.scheme(), "mcp");
        assert_eq!(odd.path_segments().map(Iterator::count), Some(1));
    }

    #[test]
    fn only_refused_connections_are_retryable() {
        let timeout = ServiceError::Timeout {
            timeout: Duration::from_secs(1),
        };
        assert!(!transport_error("t", &timeout).is_retryable());
        assert!(!transport_error("t", &ServiceError::TransportClosed).is_retryable());
        assert!(!transport_error("t", &ServiceError::UnexpectedResponse).is_retryable());
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        assert!(!transport_error("t", &send_error(io)).is_retryable());
    }

    fn send_error(error: impl std::error::Error + Send + Sync + 'static) -> ServiceError {
        ServiceError::TransportSend(DynamicTransportError::from_parts(
            "test",
            std::any::TypeId::of::<()>(),
            Box::new(error),
        ))
    }

    #[tokio::test]
    async fn a_refused_http_connection_is_retryable() {
        // Nothing listens on a port just released.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let refused = reqwest::Client::new()
            .post(format!("http://{address}/mcp"))
            .send()
            .await
            .expect_err("nothing listens");
        assert!(
            transport_error("t", &send_error(StreamableHttpError::Client(refused))).is_retryable()
        );
    }
}
