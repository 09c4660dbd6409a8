//! Usage-based options through the payment gate, without a chain: a toy
//! usage-based scheme (`tab`: the payer signs a maximum, the seller charges
//! what the handler reports) and a scripted facilitator that records every
//! settle request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use paywire_core::scheme::RequirementsRequest;
use paywire_core::{
    AtomicAmount, BoxFuture, ChainId, ChainIdPattern, ErrorReason, Facilitator, FacilitatorError,
    FacilitatorRequest, JsonObject, Money, PaymentPayload, PaymentRequired, PaymentRequirements,
    Price, SchemeError, SchemeServer, SettleResponse, SupportedKind, SupportedResponse,
    VerifyResponse,
};
use paywire_server::gate::{
    Access, GateRequest, Handler, Hold, HoldError, HoldPermit, KeptReply, Outcome, PaymentInput,
    Refusal, ReplyClass, Served,
};
use paywire_server::{
    ConfigError, MissingUsage, PayTo, PaymentGate, PaymentOption, Route, SqliteReservationStore,
    Usage, money, normalize_path,
};
use serde_json::{Value, json};

/// The toy usage-based scheme: amounts in cents of "USD".
struct Tab;

impl SchemeServer for Tab {
    fn scheme(&self) -> &'static str {
        "tab"
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let Price::Money(money) = request.price else {
            return Err(SchemeError::InvalidRequirements("money only".into()));
        };
        Ok(PaymentRequirements {
            scheme: "tab".into(),
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

    fn usage_based(&self) -> bool {
        true
    }

    fn payment_required_extensions(
        &self,
        _requirements: &PaymentRequirements,
        facilitator_extensions: &[String],
    ) -> JsonObject {
        let mut declared = JsonObject::new();
        if facilitator_extensions.iter().any(|e| e == "tabSponsoring") {
            declared.insert("tabSponsoring".into(), json!({"info": {"by": "scheme"}}));
            declared.insert("shared".into(), json!({"info": {"by": "scheme"}}));
        }
        declared
    }
}

/// The same toy, charging exactly (not usage-based).
struct FixedTab;

impl SchemeServer for FixedTab {
    fn scheme(&self) -> &'static str {
        "fixedtab"
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let mut requirements = Tab.requirements(request)?;
        requirements.scheme = "fixedtab".into();
        Ok(requirements)
    }
}

fn ledger() -> ChainId {
    ChainId::parse("ledger:main").unwrap_or_else(|_| unreachable!())
}

/// What the scripted facilitator answers to the next settle.
#[derive(Clone, Copy)]
enum Next {
    /// Success, with `amount` = the requested amount.
    Settle,
    /// Success, without an `amount`.
    SettleSilently,
    /// A time-out: the outcome is unknown.
    TimeOut,
    /// Success claiming one more unit than requested.
    OverClaim,
}

/// Verifies that the payload signs the requirements' amount (the maximum),
/// settles as scripted and records each settle's requested amount.
struct Scripted {
    script: Mutex<VecDeque<Next>>,
    settled: Mutex<Vec<String>>,
    extensions: Vec<String>,
}

impl Scripted {
    fn new(extensions: &[&str]) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(VecDeque::new()),
            settled: Mutex::new(Vec::new()),
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        })
    }

    fn then(&self, next: Next) {
        if let Ok(mut script) = self.script.lock() {
            script.push_back(next);
        }
    }

    fn settled(&self) -> Vec<String> {
        self.settled.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Facilitator for Scripted {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        let signed = request
            .payment_payload
            .payload
            .get("max")
            .and_then(Value::as_str);
        let valid = signed == Some(request.payment_requirements.amount.to_string().as_str());
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
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        let requested = request.payment_requirements.amount;
        if let Ok(mut settled) = self.settled.lock() {
            settled.push(requested.to_string());
        }
        let next = self
            .script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or(Next::Settle);
        Box::pin(async move {
            let mut answer = SettleResponse::settled(ledger(), "tab-1", Some("alice".into()));
            match next {
                Next::Settle => answer.amount = Some(requested),
                Next::SettleSilently => {}
                Next::TimeOut => {
                    return Err(FacilitatorError::Transport("operation timed out".into()));
                }
                Next::OverClaim => {
                    answer.amount = requested.checked_add(AtomicAmount::from(1u64));
                }
            }
            Ok(answer)
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        let kinds: Vec<SupportedKind> = ["tab", "fixedtab"]
            .iter()
            .filter_map(|scheme| {
                serde_json::from_value(
                    json!({"x402Version": 2, "scheme": scheme, "network": "ledger:main"}),
                )
                .ok()
            })
            .collect();
        let supported = SupportedResponse {
            kinds,
            extensions: self.extensions.clone(),
            ..SupportedResponse::default()
        };
        Box::pin(async move { Ok(supported) })
    }
}

/// A tool result that may report its usage.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    text: String,
    usage: Option<Usage>,
}

struct Call(Reply);

impl Handler for Call {
    type Reply = Reply;
    type Held = (Reply, HoldPermit);
    type Error = std::convert::Infallible;

    fn run(self, _access: Access<'_>) -> BoxFuture<'static, Result<Reply, Self::Error>> {
        Box::pin(async move { Ok(self.0) })
    }

    fn class(_reply: &Reply) -> ReplyClass {
        ReplyClass::Sellable
    }

    fn hold(reply: Reply, mut hold: Hold) -> BoxFuture<'static, Result<Self::Held, HoldError>> {
        Box::pin(async move {
            hold.take(reply.text.len())?;
            Ok((reply, hold.finish()))
        })
    }

    fn release((reply, _permit): Self::Held) -> Reply {
        reply
    }

    fn keep((reply, _permit): Self::Held) -> KeptReply {
        KeptReply {
            status: 200,
            headers: Vec::new(),
            body: Bytes::from(reply.text),
        }
    }

    fn restore(kept: KeptReply) -> Reply {
        Reply {
            text: String::from_utf8_lossy(&kept.body).into_owned(),
            usage: None,
        }
    }

    fn usage(reply: &Reply) -> Option<Usage> {
        reply.usage.clone()
    }
}

fn tab_option() -> PaymentOption {
    PaymentOption::new(
        "tab",
        ledger(),
        money("$1.25").unwrap_or_else(|_| unreachable!()),
        PayTo::address("bob"),
    )
}

fn builder(facilitator: Arc<Scripted>) -> paywire_server::PaymentGateBuilder {
    PaymentGate::builder(facilitator)
        .scheme(
            ChainIdPattern::parse("ledger:*").unwrap_or_else(|_| unreachable!()),
            Arc::new(Tab),
        )
        .scheme(
            ChainIdPattern::parse("ledger:*").unwrap_or_else(|_| unreachable!()),
            Arc::new(FixedTab),
        )
}

fn gate_with(facilitator: Arc<Scripted>, policy: MissingUsage) -> PaymentGate {
    let route = Route::new("CALL /tools/complete")
        .unwrap_or_else(|_| unreachable!())
        .on_missing_usage(policy)
        .accept(tab_option());
    builder(facilitator)
        .route(route)
        .build()
        .unwrap_or_else(|error| panic!("gate: {error}"))
}

async fn call(gate: &PaymentGate, payment: Option<Value>, reply: Reply) -> Outcome<Reply> {
    let path = normalize_path("/tools/complete").unwrap_or_else(|_| unreachable!());
    let matched = gate
        .route("CALL", &path)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("priced"));
    let mut request = GateRequest::new("CALL", path, "mcp://tool/complete");
    if let Some(payment) = payment {
        request = request.payment(PaymentInput::Json(Bytes::from(payment.to_string())));
    }
    match gate.process(matched, request, Call(reply)).await {
        Ok(outcome) => outcome,
        Err(never) => match never {},
    }
}

fn reply(usage: Option<Usage>) -> Reply {
    Reply {
        text: "the answer".into(),
        usage,
    }
}

fn payment_required(outcome: Outcome<Reply>) -> PaymentRequired {
    match outcome {
        Outcome::Refuse(Refusal::PaymentRequired { required, .. }) => *required,
        other => panic!("expected a 402, got {other:?}"),
    }
}

/// A payment signing `accepted`'s amount as the maximum; `nonce` tells
/// payments apart.
fn pay(accepted: &PaymentRequirements, nonce: u32) -> Value {
    let mut note = JsonObject::new();
    note.insert("max".into(), json!(accepted.amount.to_string()));
    note.insert("nonce".into(), json!(nonce));
    serde_json::to_value(PaymentPayload {
        x402_version: 2,
        resource: None,
        accepted: accepted.clone(),
        payload: note,
        extensions: None,
    })
    .unwrap_or(Value::Null)
}

fn served(outcome: Outcome<Reply>) -> (Reply, SettleResponse) {
    match outcome {
        Outcome::Serve(Served {
            reply,
            receipt: Some(receipt),
            ..
        }) => (reply, receipt),
        other => panic!("expected a served reply with a receipt, got {other:?}"),
    }
}

async fn offer(gate: &PaymentGate) -> PaymentRequirements {
    let required = payment_required(call(gate, None, reply(None)).await);
    required.accepts[0].clone()
}

#[tokio::test]
async fn the_reported_usage_is_settled_and_stated_in_the_receipt() {
    let facilitator = Scripted::new(&[]);
    let gate = gate_with(facilitator.clone(), MissingUsage::default());
    let accepted = offer(&gate).await;
    assert_eq!(accepted.amount.to_string(), "125", "the maximum is offered");

    let (text, receipt) = served(
        call(
            &gate,
            Some(pay(&accepted, 1)),
            reply(Some(Usage::atomic(42u64))),
        )
        .await,
    );
    assert_eq!(text.text, "the answer");
    assert_eq!(receipt.amount, Some(AtomicAmount::from(42u64)));

    // A money report is converted with the asset's decimals, like a price.
    let dollars = Money::parse("$0.07").unwrap_or_else(|_| unreachable!());
    let (_, receipt) = served(
        call(
            &gate,
            Some(pay(&accepted, 2)),
            reply(Some(Usage::money(dollars))),
        )
        .await,
    );
    assert_eq!(receipt.amount, Some(AtomicAmount::from(7u64)));

    // Above the maximum: clamped.
    let (_, receipt) = served(
        call(
            &gate,
            Some(pay(&accepted, 3)),
            reply(Some(Usage::atomic(1000u64))),
        )
        .await,
    );
    assert_eq!(receipt.amount, Some(AtomicAmount::from(125u64)));
    assert_eq!(facilitator.settled(), ["42", "7", "125"]);
}

#[tokio::test]
async fn zero_usage_still_settles_with_zero() {
    let facilitator = Scripted::new(&[]);
    let gate = gate_with(facilitator.clone(), MissingUsage::default());
    let accepted = offer(&gate).await;
    facilitator.then(Next::SettleSilently);
    let (_, receipt) = served(
        call(
            &gate,
            Some(pay(&accepted, 1)),
            reply(Some(Usage::atomic(0u64))),
        )
        .await,
    );
    assert_eq!(facilitator.settled(), ["0"], "the facilitator consumes it");
    assert_eq!(
        receipt.amount,
        Some(AtomicAmount::ZERO),
        "a receipt without an amount states the charge"
    );
    // Used: the same authorization is not served again.
    let again = call(
        &gate,
        Some(pay(&accepted, 1)),
        reply(Some(Usage::atomic(0u64))),
    )
    .await;
    assert!(matches!(again, Outcome::Refuse(_)), "{again:?}");
    assert_eq!(facilitator.settled().len(), 1);
}

#[tokio::test]
async fn missing_usage_follows_the_route_policy() {
    let unusable = Money::parse("$0.001").unwrap_or_else(|_| unreachable!());
    for (policy, report, expected) in [
        (MissingUsage::ChargeMaximum, None, Some("125")),
        (MissingUsage::ChargeNothing, None, Some("0")),
        (MissingUsage::Refuse, None, None),
        // A report the asset cannot represent counts as none.
        (
            MissingUsage::ChargeNothing,
            Some(Usage::money(unusable.clone())),
            Some("0"),
        ),
        (MissingUsage::Refuse, Some(Usage::money(unusable)), None),
    ] {
        let facilitator = Scripted::new(&[]);
        let gate = gate_with(facilitator.clone(), policy);
        let accepted = offer(&gate).await;
        let outcome = call(&gate, Some(pay(&accepted, 1)), reply(report.clone())).await;
        let Some(amount) = expected else {
            match outcome {
                Outcome::Refuse(Refusal::Error(error)) => {
                    assert_eq!((error.status, error.error.as_str()), (500, "usage_missing"));
                }
                other => panic!("expected usage_missing, got {other:?}"),
            }
            assert!(facilitator.settled().is_empty(), "nothing charged");
            // The payment stays usable: a report now gets it settled.
            let (_, receipt) = served(
                call(
                    &gate,
                    Some(pay(&accepted, 1)),
                    reply(Some(Usage::atomic(5u64))),
                )
                .await,
            );
            assert_eq!(receipt.amount, Some(AtomicAmount::from(5u64)));
            continue;
        };
        let (_, receipt) = served(outcome);
        assert_eq!(
            receipt.amount.map(|a| a.to_string()).as_deref(),
            Some(amount)
        );
        assert_eq!(facilitator.settled(), [amount], "{policy:?}");
    }
}

#[tokio::test]
async fn usage_based_options_need_settlement_after_the_handler() {
    let before = Route::new("CALL /tools/complete")
        .unwrap_or_else(|_| unreachable!())
        .settle_before_handler()
        .accept(tab_option());
    let error = builder(Scripted::new(&[])).route(before).build().err();
    assert!(
        matches!(&error, Some(ConfigError::UsageBeforeHandler { scheme, .. }) if scheme == "tab"),
        "{error:?}"
    );
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("settle after its handler"), "{message}");

    // An exact option may still settle first; an expected price needs usage.
    let fixed = || {
        PaymentOption::new(
            "fixedtab",
            ledger(),
            money("$1").unwrap_or_else(|_| unreachable!()),
            PayTo::address("bob"),
        )
    };
    let exact_first = Route::new("CALL /tools/complete")
        .unwrap_or_else(|_| unreachable!())
        .settle_before_handler()
        .accept(fixed());
    assert!(
        builder(Scripted::new(&[]))
            .route(exact_first)
            .build()
            .is_ok()
    );
    let expected = Route::new("CALL /tools/complete")
        .unwrap_or_else(|_| unreachable!())
        .accept(fixed().expected_price(money("$0.5").unwrap_or_else(|_| unreachable!())));
    assert!(matches!(
        builder(Scripted::new(&[])).route(expected).build(),
        Err(ConfigError::ExpectedPriceNotUsageBased { .. })
    ));
}

#[tokio::test]
async fn a_retry_after_an_unknown_outcome_settles_the_same_amount() {
    let facilitator = Scripted::new(&[]);
    let gate = gate_with(facilitator.clone(), MissingUsage::default());
    let accepted = offer(&gate).await;
    facilitator.then(Next::TimeOut);
    let first = call(
        &gate,
        Some(pay(&accepted, 1)),
        reply(Some(Usage::atomic(30u64))),
    )
    .await;
    assert!(matches!(first, Outcome::Refuse(_)), "{first:?}");
    // The retry's handler would report another usage: the kept reply and
    // the first amount win.
    let (kept, receipt) = served(
        call(
            &gate,
            Some(pay(&accepted, 1)),
            reply(Some(Usage::atomic(99u64))),
        )
        .await,
    );
    assert_eq!(kept.text, "the answer");
    assert_eq!(receipt.amount, Some(AtomicAmount::from(30u64)));
    assert_eq!(facilitator.settled(), ["30", "30"]);
}

/// The charge of an unknown outcome is recorded with the reservation: a
/// retry served by a fresh gate (a restart, or another instance on the same
/// store), which remembers nothing in memory, still asks for the first
/// attempt's amount; the route's default (here the maximum) would be a
/// second charge.
#[tokio::test]
async fn a_retry_on_a_restarted_gate_settles_the_same_amount() {
    let dir = std::env::temp_dir().join(format!(
        "paywire-usage-restart-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("dir: {error}"));
    let path = dir.join("reservations.sqlite");
    let on_store = |facilitator: Arc<Scripted>| {
        let store =
            SqliteReservationStore::open(&path).unwrap_or_else(|error| panic!("store: {error}"));
        let route = Route::new("CALL /tools/complete")
            .unwrap_or_else(|_| unreachable!())
            .accept(tab_option());
        builder(facilitator)
            .reservations(Arc::new(store))
            .route(route)
            .build()
            .unwrap_or_else(|error| panic!("gate: {error}"))
    };
    let facilitator = Scripted::new(&[]);
    let before = on_store(facilitator.clone());
    let accepted = offer(&before).await;
    facilitator.then(Next::TimeOut);
    let first = call(
        &before,
        Some(pay(&accepted, 7)),
        reply(Some(Usage::atomic(30u64))),
    )
    .await;
    assert!(matches!(first, Outcome::Refuse(_)), "{first:?}");
    drop(before);
    let after = on_store(facilitator.clone());
    let (_, receipt) = served(
        call(
            &after,
            Some(pay(&accepted, 7)),
            reply(Some(Usage::atomic(99u64))),
        )
        .await,
    );
    assert_eq!(receipt.amount, Some(AtomicAmount::from(30u64)));
    assert_eq!(facilitator.settled(), ["30", "30"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_facilitator_claiming_more_than_requested_is_not_served() {
    let facilitator = Scripted::new(&[]);
    let gate = gate_with(facilitator.clone(), MissingUsage::default());
    let accepted = offer(&gate).await;
    facilitator.then(Next::OverClaim);
    let outcome = call(
        &gate,
        Some(pay(&accepted, 1)),
        reply(Some(Usage::atomic(10u64))),
    )
    .await;
    match outcome {
        Outcome::Refuse(Refusal::Error(error)) => {
            assert_eq!(error.error, "settlement_amount_mismatch");
            assert!(!error.message.contains("the answer"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Never reused either: it may have been spent.
    let again = call(
        &gate,
        Some(pay(&accepted, 1)),
        reply(Some(Usage::atomic(10u64))),
    )
    .await;
    assert!(matches!(again, Outcome::Refuse(_)), "{again:?}");
    assert_eq!(facilitator.settled(), ["10"]);
}

#[tokio::test]
async fn the_402_carries_scheme_extensions_only_when_the_facilitator_lists_them() {
    let route = || {
        Route::new("CALL /tools/complete")
            .unwrap_or_else(|_| unreachable!())
            .extension("shared", json!({"info": {"by": "route"}}))
            .accept(tab_option())
    };
    let listed = builder(Scripted::new(&["tabSponsoring"]))
        .route(route())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let required = payment_required(call(&listed, None, reply(None)).await);
    let extensions = required.extensions.unwrap_or_default();
    assert_eq!(
        extensions.0["tabSponsoring"],
        json!({"info": {"by": "scheme"}})
    );
    assert_eq!(
        extensions.0["shared"],
        json!({"info": {"by": "route"}}),
        "the route's declaration wins"
    );
    assert!(extensions.0.contains_key("payment-identifier"));

    let unlisted = builder(Scripted::new(&[]))
        .route(route())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let required = payment_required(call(&unlisted, None, reply(None)).await);
    let extensions = required.extensions.unwrap_or_default();
    assert!(!extensions.0.contains_key("tabSponsoring"));
}

#[tokio::test]
async fn an_expected_price_is_advertised_in_extra() {
    let expected = |price: &str| {
        let route = Route::new("CALL /tools/complete")
            .unwrap_or_else(|_| unreachable!())
            .accept(tab_option().expected_price(money(price).unwrap_or_else(|_| unreachable!())));
        builder(Scripted::new(&[]))
            .route(route)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let accepted = offer(&expected("$0.30")).await;
    assert_eq!(accepted.extra_str("expectedAmount"), Some("30"));
    assert_eq!(accepted.expected_amount(), Some(AtomicAmount::from(30u64)));
    // Above the maximum: not advertised.
    let accepted = offer(&expected("$2")).await;
    assert_eq!(accepted.extra_str("expectedAmount"), None);
}

/// Over HTTP, the handler reports usage in a response extension; the layer
/// settles it and nothing of the extension reaches the client.
#[tokio::test]
async fn the_layer_settles_the_usage_a_response_extension_reports() {
    use axum::body::Body;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    use paywire_core::codec::{
        PAYMENT_SIGNATURE_HEADER, decode_payment_required, decode_payment_response, encode_header,
    };
    use tower::ServiceExt;

    let facilitator = Scripted::new(&[]);
    let layer = paywire_server::PaymentLayer::builder(facilitator.clone())
        .scheme(
            ChainIdPattern::parse("ledger:*").unwrap_or_else(|_| unreachable!()),
            Arc::new(Tab),
        )
        .public_origin("https://api.example.com")
        .route(
            Route::new("GET /complete")
                .unwrap_or_else(|_| unreachable!())
                .accept(tab_option()),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let app = axum::Router::new()
        .route(
            "/complete",
            axum::routing::get(|| async {
                let mut response = "completed".into_response();
                response.extensions_mut().insert(Usage::atomic(17u64));
                response
            }),
        )
        .layer(layer);
    let get = || http::Request::get("/complete");

    let unpaid = app
        .clone()
        .oneshot(get().body(Body::empty()).unwrap_or_else(|_| unreachable!()))
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(unpaid.status(), 402);
    let header = unpaid
        .headers()
        .get("payment-required")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let required = decode_payment_required(&header).unwrap_or_else(|e| panic!("{e}"));
    let payload: PaymentPayload =
        serde_json::from_value(pay(&required.accepts[0], 1)).unwrap_or_else(|e| panic!("{e}"));

    let paid = app
        .oneshot(
            get()
                .header(PAYMENT_SIGNATURE_HEADER, encode_header(&payload))
                .body(Body::empty())
                .unwrap_or_else(|_| unreachable!()),
        )
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(paid.status(), 200);
    let receipt = paid
        .headers()
        .get("payment-response")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let receipt = decode_payment_response(&receipt).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(receipt.amount, Some(AtomicAmount::from(17u64)));
    assert_eq!(facilitator.settled(), ["17"]);
    let headers = format!("{:?}", paid.headers()).to_ascii_lowercase();
    assert!(!headers.contains("usage"), "{headers}");
    let body = paid
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    assert_eq!(&body[..], b"completed");
}
