//! The payment gate without HTTP: a toy transport (tool calls with a name,
//! JSON arguments and a `_meta` map, as MCP has) drives `PaymentGate`
//! directly with a toy `iou` scheme on a made-up ledger, no chain. Nothing
//! here uses an HTTP type: what the gate needs from a transport is
//! `GateRequest` + `Handler`, and it answers with an `Outcome`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use paywire_core::scheme::RequirementsRequest;
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, ErrorReason, Facilitator, FacilitatorError,
    FacilitatorRequest, JsonObject, LocalFacilitator, PaymentPayload, PaymentRequirements, Price,
    SchemeError, SchemeFacilitator, SchemeServer, SettleResponse, SupportedResponse,
    VerifyResponse,
};
use paywire_server::gate::{
    Access, GateRequest, Handler, Headers, Hold, HoldError, KeptReply, Outcome, PaymentInput,
    Refusal, ReplyClass, Served,
};
use paywire_server::{PathError, PayTo, PaymentGate, PaymentOption, Route, money, normalize_path};
use serde_json::{Value, json};

/// "IOU" on a made-up ledger: the payload is a note whose `amount` must
/// equal the requirement's.
struct Iou;

impl SchemeServer for Iou {
    fn scheme(&self) -> &'static str {
        "iou"
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let Price::Money(money) = request.price else {
            return Err(SchemeError::InvalidRequirements("money only".into()));
        };
        Ok(PaymentRequirements {
            scheme: "iou".into(),
            network: request.network.clone(),
            amount: money
                .to_atomic(2)
                .map_err(|e| SchemeError::InvalidRequirements(e.to_string()))?,
            asset: "USD".into(),
            pay_to: request.pay_to.into(),
            max_timeout_seconds: request.max_timeout_seconds,
            extra: None,
        })
    }
}

impl SchemeFacilitator for Iou {
    fn scheme(&self) -> &'static str {
        "iou"
    }

    fn networks(&self) -> Vec<ChainId> {
        vec![ledger()]
    }

    fn signers(&self, _network: &ChainId) -> Vec<String> {
        vec!["ledger-bot".into()]
    }

    fn verify<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<VerifyResponse, SchemeError>> {
        let signed = payload.payload.get("amount").and_then(Value::as_str);
        let valid = signed == Some(requirements.amount.to_string().as_str());
        Box::pin(async move {
            Ok(if valid {
                VerifyResponse::valid("alice")
            } else {
                VerifyResponse::invalid(ErrorReason::INVALID_PAYLOAD, Some("alice".into()))
            })
        })
    }

    fn settle<'a>(
        &'a self,
        _payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        let network = requirements.network.clone();
        Box::pin(async move {
            Ok(SettleResponse::settled(
                network,
                "iou-1",
                Some("alice".into()),
            ))
        })
    }
}

fn ledger() -> ChainId {
    ChainId::parse("ledger:main").expect("CAIP-2")
}

/// The in-process facilitator, counting settlements.
struct Ledger {
    local: LocalFacilitator,
    settles: AtomicUsize,
}

impl Facilitator for Ledger {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.local.verify(request)
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        self.local.settle(request)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        self.local.supported()
    }
}

/// A tool's result: text, or a tool error.
#[derive(Debug, Clone, PartialEq)]
struct ToolResult {
    is_error: bool,
    text: String,
}

/// One tool call as the toy transport runs it.
struct ToolCall {
    result: ToolResult,
    runs: Arc<AtomicUsize>,
}

impl Handler for ToolCall {
    type Reply = ToolResult;
    type Held = (ToolResult, paywire_server::gate::HoldPermit);
    type Error = std::convert::Infallible;

    fn run(self, access: Access<'_>) -> BoxFuture<'static, Result<ToolResult, Self::Error>> {
        assert!(access.payer().is_none() || access.payer() == Some("alice"));
        self.runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(self.result) })
    }

    fn class(reply: &ToolResult) -> ReplyClass {
        if reply.is_error {
            ReplyClass::Failed { status: 500 }
        } else {
            ReplyClass::Sellable
        }
    }

    fn hold(
        reply: ToolResult,
        mut hold: Hold,
    ) -> BoxFuture<'static, Result<Self::Held, HoldError>> {
        Box::pin(async move {
            hold.take(reply.text.len())?;
            Ok((reply, hold.finish()))
        })
    }

    fn release((reply, _permit): Self::Held) -> ToolResult {
        reply
    }

    fn keep((reply, _permit): Self::Held) -> KeptReply {
        KeptReply {
            status: 200,
            headers: Vec::new(),
            body: Bytes::from(reply.text),
        }
    }

    fn restore(kept: KeptReply) -> ToolResult {
        ToolResult {
            is_error: false,
            text: String::from_utf8_lossy(&kept.body).into_owned(),
        }
    }
}

/// The toy transport: tools are routes `CALL /tools/<name>`, the payment
/// comes as JSON from `_meta["x402/payment"]`.
struct Transport {
    gate: PaymentGate,
    runs: Arc<AtomicUsize>,
}

impl Transport {
    async fn call(
        &self,
        tool: &str,
        result: ToolResult,
        meta: &[(&str, Value)],
    ) -> Option<Outcome<ToolResult>> {
        let path = normalize_path(&format!("/tools/{tool}")).expect("tool path");
        let matched = self.gate.route("CALL", &path).expect("routable")?;
        let payment = meta
            .iter()
            .find(|(key, _)| *key == "x402/payment")
            .map_or(PaymentInput::Absent, |(_, value)| {
                PaymentInput::Json(Bytes::from(value.to_string()))
            });
        let headers = Headers::from_pairs(
            meta.iter()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        );
        let request = GateRequest::new("CALL", path, format!("mcp://tool/{tool}"))
            .headers(headers)
            .payment(payment);
        let call = ToolCall {
            result,
            runs: Arc::clone(&self.runs),
        };
        match self.gate.process(matched, request, call).await {
            Ok(outcome) => Some(outcome),
            Err(never) => match never {},
        }
    }
}

fn content(text: &str) -> ToolResult {
    ToolResult {
        is_error: false,
        text: text.to_owned(),
    }
}

fn transport(max_reply_bytes: usize) -> (Transport, Arc<Ledger>) {
    let mut local = LocalFacilitator::new();
    local.register(Arc::new(Iou));
    let ledger_facilitator = Arc::new(Ledger {
        local,
        settles: AtomicUsize::new(0),
    });
    let option = || {
        PaymentOption::new(
            "iou",
            ledger(),
            money("$1.25").expect("price"),
            PayTo::address("bob"),
        )
    };
    let gate = PaymentGate::builder(ledger_facilitator.clone())
        .scheme(
            ChainIdPattern::parse("ledger:*").expect("pattern"),
            Arc::new(Iou),
        )
        .max_paid_response_bytes(max_reply_bytes)
        .route(
            Route::new("CALL /tools/forecast")
                .expect("route")
                .accept(option()),
        )
        .route(
            Route::new("CALL /tools/broken")
                .expect("route")
                .accept(option()),
        )
        .build()
        .expect("gate");
    let transport = Transport {
        gate,
        runs: Arc::new(AtomicUsize::new(0)),
    };
    (transport, ledger_facilitator)
}

fn payment_required(outcome: Option<Outcome<ToolResult>>) -> paywire_core::PaymentRequired {
    match outcome {
        Some(Outcome::Refuse(Refusal::PaymentRequired { required, .. })) => *required,
        other => panic!("expected payment required, got {other:?}"),
    }
}

/// The note the toy client signs for `accepted`.
fn pay(accepted: &PaymentRequirements, amount: &str) -> Value {
    let mut note = JsonObject::new();
    note.insert("amount".into(), json!(amount));
    serde_json::to_value(PaymentPayload {
        x402_version: 2,
        resource: None,
        accepted: accepted.clone(),
        payload: note,
        extensions: None,
    })
    .expect("JSON")
}

#[tokio::test]
async fn a_toy_transport_goes_from_402_to_paid_to_settled_without_http() {
    let (transport, ledger) = transport(1024);
    assert!(
        transport.call("free", content("x"), &[]).await.is_none(),
        "an unpriced tool is not the gate's"
    );

    // No payment: 402 with the toy scheme's requirements; the tool did not run.
    let required = payment_required(transport.call("forecast", content("sunny"), &[]).await);
    assert_eq!(required.resource.url, "mcp://tool/forecast");
    assert_eq!(required.accepts.len(), 1);
    assert_eq!(required.accepts[0].scheme, "iou");
    assert_eq!(required.accepts[0].amount.to_string(), "125");
    assert_eq!(transport.runs.load(Ordering::SeqCst), 0);

    // Paid: the tool runs once, its result is served with the receipt.
    let payment = pay(&required.accepts[0], "125");
    let meta = [("x402/payment", payment.clone())];
    match transport.call("forecast", content("sunny"), &meta).await {
        Some(Outcome::Serve(Served { reply, receipt, .. })) => {
            assert_eq!(reply, content("sunny"));
            let receipt = receipt.expect("receipt");
            assert!(receipt.success);
            assert_eq!(receipt.transaction, "iou-1");
        }
        other => panic!("expected the tool's result, got {other:?}"),
    }
    assert_eq!(transport.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ledger.settles.load(Ordering::SeqCst), 1);

    // The same payment again: used, the tool does not run.
    let replay = payment_required(transport.call("forecast", content("sunny"), &meta).await);
    assert_eq!(replay.error.as_deref(), Some("payment already used"));
    assert_eq!(transport.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ledger.settles.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_gate_binds_judges_and_holds_back_without_http() {
    let (transport, ledger) = transport(8);
    let required = payment_required(transport.call("forecast", content("x"), &[]).await);

    // `accepted` must equal the requirement field by field (lesson 5).
    let mut cheaper = required.accepts[0].clone();
    cheaper.amount = paywire_core::AtomicAmount::from(1u64);
    let mismatch = payment_required(
        transport
            .call(
                "forecast",
                content("x"),
                &[("x402/payment", pay(&cheaper, "1"))],
            )
            .await,
    );
    assert!(mismatch.error.is_some_and(|e| e.contains("does not match")));

    // Undecodable JSON: a 400-class error, nothing run.
    match transport
        .call(
            "forecast",
            content("x"),
            &[("x402/payment", json!({"x402Version": 1}))],
        )
        .await
    {
        Some(Outcome::Refuse(Refusal::Error(error))) => {
            assert_eq!(
                (error.status, error.error.as_str()),
                (400, "invalid_x402_version")
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }

    // A tool error is passed on and never charged (lesson 2).
    let payment = [("x402/payment", pay(&required.accepts[0], "125"))];
    let failed = ToolResult {
        is_error: true,
        text: "boom".into(),
    };
    match transport.call("broken", failed.clone(), &payment).await {
        Some(Outcome::Serve(Served { reply, receipt, .. })) => {
            assert_eq!(reply, failed);
            assert!(receipt.is_none());
        }
        other => panic!("expected the tool error, got {other:?}"),
    }
    // A result over the hold limit is refused, not charged, and the payment
    // stays usable.
    match transport
        .call("forecast", content("far too long"), &payment)
        .await
    {
        Some(Outcome::Refuse(Refusal::Error(error))) => {
            assert_eq!(
                (error.status, error.error.as_str()),
                (500, "response_too_large")
            );
        }
        other => panic!("expected response_too_large, got {other:?}"),
    }
    assert_eq!(ledger.settles.load(Ordering::SeqCst), 0);
    match transport.call("forecast", content("short"), &payment).await {
        Some(Outcome::Serve(Served { receipt, .. })) => assert!(receipt.is_some()),
        other => panic!("expected the result, got {other:?}"),
    }
    assert_eq!(ledger.settles.load(Ordering::SeqCst), 1);
}

/// The routing refusals are the gate's, not only the HTTP adapter's.
#[tokio::test]
async fn the_gate_refuses_lower_case_methods_and_non_ascii_when_ignoring_case() {
    let (transport, _) = transport(1024);
    let path = normalize_path("/tools/forecast").expect("path");
    assert_eq!(
        transport.gate.route("call", &path).err(),
        Some(PathError::LowerCaseMethod)
    );
    let gate = PaymentGate::builder(Arc::new(LocalFacilitator::new()))
        .scheme(
            ChainIdPattern::parse("ledger:*").expect("pattern"),
            Arc::new(Iou),
        )
        .case_insensitive_paths(true)
        .route(
            Route::new("CALL /tools/strasse")
                .expect("route")
                .accept(PaymentOption::new(
                    "iou",
                    ledger(),
                    money("$1").expect("price"),
                    PayTo::address("bob"),
                )),
        )
        .build()
        .expect("gate");
    let upper = normalize_path("/TOOLS/STRASSE").expect("path");
    assert!(gate.route("CALL", &upper).expect("ASCII").is_some());
    let folded = normalize_path("/tools/stra%C3%9Fe").expect("path");
    assert_eq!(
        gate.route("CALL", &folded).err(),
        Some(PathError::NonAsciiIgnoringCase)
    );
}
