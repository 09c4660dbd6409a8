//! The paying MCP client end to end on the devnet: a small spec-following
//! paid-tool server (written here, so that the client is tested against the
//! transport spec rather than against our own server) verifies and settles
//! through the devnet facilitator's HTTP API, over an in-process byte stream,
//! streamable HTTP and stdio (a child process).
//!
//! Covered: a paid call returns the result with a receipt and moves USDC; an
//! exhausted budget refuses before signing; the approval hook sees the tool,
//! its arguments and the chosen option, and its refusal signs nothing; a 503
//! with `retryAfter` is answered with the same payment; a failed settlement
//! returns no tool content and leaves the payment outstanding; malformed,
//! oversized and v1 payment requests are errors; free tools and plain error
//! results cost nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, U256};
use paywire_client::{Budget, BudgetRule, BudgetScope, ClientError, PaymentStatus, X402Client};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, Facilitator, FacilitatorRequest, JsonObject,
    PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo, SchemeClient, SchemeError,
};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use paywire_mcp::client::{ApprovalRequest, McpClientError, PaidCall, PayingMcpClient};
use paywire_mcp::wire::{self, ErrorAnswer};
use paywire_server::HttpFacilitator;
use paywire_testkit::stack::Stack;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};

/// The price of the paid tool `forecast`, in atomic USDC ($0.01).
const PRICE: u64 = 10_000;

/// What the paid tool answers once paid.
const FORECAST: &str = "sunny, 24 degrees";

/// The stdio server's environment: the facilitator URL and the requirements.
const FACILITATOR_VARIABLE: &str = "PAYWIRE_MCP_CLIENT_TEST_FACILITATOR";
const REQUIREMENTS_VARIABLE: &str = "PAYWIRE_MCP_CLIENT_TEST_REQUIREMENTS";

/// How the seller misbehaves.
#[derive(Debug, Default, Clone, Copy)]
struct Script {
    /// Answer the first paid call with a 503 and `retryAfter: 1`, keeping
    /// the payment (the settlement outcome is "not known yet").
    unavailable_first: bool,
    /// Settle against another payee's requirements, so the facilitator
    /// refuses the settlement after the tool ran.
    settlement_fails: bool,
}

/// The seller's state, shared by every session.
struct SellerState {
    facilitator: HttpFacilitator,
    requirements: PaymentRequirements,
    script: Script,
    /// Calls of `forecast` without a payment.
    unpaid_calls: AtomicUsize,
    /// The raw `_meta["x402/payment"]` entries of the paid calls.
    payments: Mutex<Vec<Value>>,
    /// Times the paid tool ran.
    runs: AtomicUsize,
}

/// A spec-following paid-tool MCP server.
#[derive(Clone)]
struct Seller(Arc<SellerState>);

impl Seller {
    fn new(facilitator_url: &str, requirements: PaymentRequirements, script: Script) -> Self {
        Self(Arc::new(SellerState {
            facilitator: HttpFacilitator::new(facilitator_url).expect("facilitator client"),
            requirements,
            script,
            unpaid_calls: AtomicUsize::new(0),
            payments: Mutex::new(Vec::new()),
            runs: AtomicUsize::new(0),
        }))
    }

    fn offer(&self, error: &str) -> CallToolResult {
        let mut resource = ResourceInfo::new(wire::tool_resource_url("forecast"));
        resource.description = Some("Tomorrow's weather".into());
        resource.mime_type = Some("text/plain".into());
        wire::payment_required_result(&PaymentRequired {
            x402_version: 2,
            error: Some(error.into()),
            resource,
            accepts: vec![self.0.requirements.clone()],
            extensions: None,
        })
    }

    /// `meta` is the call's `_meta` (rmcp hands it to the handler in the
    /// request context, not in the parameters).
    async fn answer(&self, request: CallToolRequestParams, meta: &JsonObject) -> CallToolResult {
        match request.name.as_ref() {
            "echo" => {
                let arguments = Value::Object(request.arguments.unwrap_or_default());
                CallToolResult::success(vec![ContentBlock::text(arguments.to_string())])
            }
            "broken" => CallToolResult::error(vec![ContentBlock::text("upstream exploded")]),
            "garbled" => {
                let mut result = CallToolResult::default();
                result.is_error = Some(true);
                result.structured_content = Some(json!({"x402Version": 2, "accepts": "nope"}));
                result
            }
            "huge" => {
                let mut offer = self.offer("Payment required");
                if let Some(Value::Object(structured)) = offer.structured_content.as_mut() {
                    structured.insert("error".into(), "x".repeat(100 * 1024).into());
                }
                offer
            }
            "v1" => {
                let mut offer = self.offer("Payment required");
                if let Some(Value::Object(structured)) = offer.structured_content.as_mut() {
                    structured.insert("x402Version".into(), 1.into());
                }
                offer
            }
            "forecast" => self.paid(meta).await,
            other => CallToolResult::error(vec![ContentBlock::text(format!("no tool {other}"))]),
        }
    }

    /// The paid tool: verify, run, settle; the result only after settlement.
    async fn paid(&self, meta: &JsonObject) -> CallToolResult {
        let state = &self.0;
        let raw = wire::payment_json_of(meta);
        let Some(raw) = raw else {
            state.unpaid_calls.fetch_add(1, Ordering::SeqCst);
            return self.offer("Payment required to access this resource");
        };
        let value: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let first = {
            let mut payments = state.payments.lock().expect("lock");
            payments.push(value.clone());
            payments.len() == 1
        };
        let Ok(payload) = serde_json::from_value::<PaymentPayload>(value) else {
            return self.offer("Malformed payment");
        };
        if payload.accepted != state.requirements {
            return self.offer("The payment does not match an offered option");
        }
        if state.script.unavailable_first && first {
            return wire::error_result(
                &ErrorAnswer::new(503, "settlement_pending", "the outcome is not known yet")
                    .retry_after(1),
            );
        }
        let check = FacilitatorRequest::new(payload.clone(), state.requirements.clone());
        match state.facilitator.verify(&check).await {
            Ok(verdict) if verdict.is_valid => {}
            _ => return self.offer("Payment verification failed"),
        }
        state.runs.fetch_add(1, Ordering::SeqCst);
        let mut settle_against = state.requirements.clone();
        if state.script.settlement_fails {
            settle_against.pay_to = Address::random().to_string();
        }
        let settle = FacilitatorRequest::new(payload, settle_against);
        match state.facilitator.settle(&settle).await {
            Ok(receipt) if receipt.success => {
                let mut result = CallToolResult::success(vec![ContentBlock::text(FORECAST)]);
                wire::attach_receipt(&mut result, &receipt);
                result
            }
            // The tool ran, but its content is not returned (field lesson 1).
            _ => self.offer("Settlement failed"),
        }
    }
}

impl ServerHandler for Seller {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = |value: Value| match value {
            Value::Object(object) => Arc::new(object),
            _ => Arc::new(JsonObject::new()),
        };
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new(
                "forecast",
                "Tomorrow's weather ($0.01)",
                schema(json!({"type": "object"})),
            ),
            Tool::new(
                "echo",
                "Free: echoes its arguments",
                schema(json!({"type": "object"})),
            ),
        ]))
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut meta = request.meta.take().map(|meta| meta.0.0).unwrap_or_default();
        meta.extend(context.meta.0.0);
        Ok(self.answer(request, &meta).await.into())
    }
}

/// A wallet that counts its signatures.
struct Counting {
    wallet: ExactEvmClient<LocalSigner>,
    signed: AtomicUsize,
}

impl SchemeClient for Counting {
    fn scheme(&self) -> &str {
        self.wallet.scheme()
    }
    fn payer(&self, network: &ChainId) -> Option<String> {
        self.wallet.payer(network)
    }
    fn create_payload<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        self.wallet.create_payload(requirements)
    }
}

/// The buyer: a client with a budget of `total` atomic USDC.
struct Buyer {
    x402: Arc<X402Client>,
    wallet: Arc<Counting>,
    budget: Arc<Budget>,
    scope: BudgetScope,
}

impl Buyer {
    async fn new(stack: &Stack, total: u128) -> Self {
        let devnet = stack.devnet();
        let scope = BudgetScope::Asset {
            network: ChainId::parse(devnet.network()).expect("network"),
            asset: devnet.usdc().to_string(),
        };
        let budget = Arc::new(
            Budget::in_memory(vec![BudgetRule {
                scope: scope.clone(),
                per_call: None,
                per_hour: None,
                per_day: None,
                total: Some(total),
            }])
            .await
            .expect("budget"),
        );
        let wallet = Arc::new(Counting {
            wallet: ExactEvmClient::new(LocalSigner::new(stack.payer().signer())),
            signed: AtomicUsize::new(0),
        });
        let x402 = X402Client::builder()
            .wallet(
                ChainIdPattern::parse("eip155:*").expect("pattern"),
                Arc::clone(&wallet) as Arc<dyn SchemeClient>,
            )
            .budget(Arc::clone(&budget))
            .max_outcome_wait(std::time::Duration::from_secs(2))
            .build();
        Self {
            x402: Arc::new(x402),
            wallet,
            budget,
            scope,
        }
    }

    fn signed(&self) -> usize {
        self.wallet.signed.load(Ordering::SeqCst)
    }

    async fn spent(&self) -> u128 {
        self.budget.spent_total(&self.scope).await.expect("budget")
    }

    async fn outstanding(&self) -> u128 {
        self.budget
            .outstanding_total(&self.scope)
            .await
            .expect("budget")
    }
}

/// Serves `seller` on one end of an in-process byte stream and connects a
/// paying client to the other.
async fn connect(seller: &Seller, buyer: &Buyer) -> PayingMcpClient {
    let (server_end, client_end) = tokio::io::duplex(1 << 20);
    let handler = seller.clone();
    tokio::spawn(async move {
        if let Ok(running) = handler.serve(server_end).await {
            let _ = running.waiting().await;
        }
    });
    let (read, write) = tokio::io::split(client_end);
    PayingMcpClient::connect_io(read, write, Arc::clone(&buyer.x402))
        .await
        .expect("MCP session")
}

async fn start() -> Stack {
    Stack::start().await.expect("devnet stack")
}

async fn balance(stack: &Stack, who: Address) -> U256 {
    stack.devnet().usdc_balance(who).await.expect("balance")
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.clone()))
        .collect()
}

fn no_arguments() -> JsonObject {
    JsonObject::new()
}

/// Checks a paid call: the forecast, a successful receipt, USDC moved.
async fn assert_paid(stack: &Stack, call: &PaidCall) {
    assert_eq!(call.result.is_error, Some(false), "{:?}", call.result);
    assert_eq!(text_of(&call.result), FORECAST);
    let outcome = call.outcome.as_ref().expect("a payment was made");
    assert_eq!(outcome.status, PaymentStatus::Paid);
    let receipt = outcome.receipt.as_ref().expect("a receipt in _meta");
    assert!(receipt.success);
    assert!(receipt.transaction.starts_with("0x"), "{receipt:?}");
    assert_eq!(outcome.requirements.amount, PRICE.into());
    assert_eq!(balance(stack, stack.pay_to()).await, U256::from(PRICE));
}

#[tokio::test]
async fn a_paid_call_returns_the_result_and_its_receipt() {
    let stack = start().await;
    let seller = Seller::new(
        stack.facilitator_url(),
        stack.requirements(PRICE),
        Script::default(),
    );
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = connect(&seller, &buyer).await;

    let tools = client.list_tools().await.expect("tools");
    assert!(tools.iter().any(|tool| tool.name == "forecast"));
    let mut arguments = JsonObject::new();
    arguments.insert("city".into(), "Lisbon".into());
    let call = client
        .call_tool("forecast", arguments)
        .await
        .expect("paid call");
    assert_paid(&stack, &call).await;

    assert_eq!(seller.0.unpaid_calls.load(Ordering::SeqCst), 1);
    assert_eq!(seller.0.runs.load(Ordering::SeqCst), 1);
    let payments = seller.0.payments.lock().expect("lock").clone();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["x402Version"], json!(2));
    assert_eq!(payments[0]["accepted"]["amount"], json!(PRICE.to_string()));
    assert_eq!(payments[0]["resource"]["url"], json!("mcp://tool/forecast"));
    assert_eq!(buyer.signed(), 1);
    assert_eq!(buyer.spent().await, u128::from(PRICE));
    assert_eq!(buyer.outstanding().await, 0);
    client.close().await.expect("close");
    stack.stop().await;
}

#[tokio::test]
async fn a_paid_call_over_streamable_http() {
    use rmcp::transport::streamable_http_server::StreamableHttpService;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

    let stack = start().await;
    let seller = Seller::new(
        stack.facilitator_url(),
        stack.requirements(PRICE),
        Script::default(),
    );
    let factory = seller.clone();
    let service: StreamableHttpService<Seller, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(factory.clone()),
        Default::default(),
        Default::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        let router = axum::Router::new().nest_service("/mcp", service);
        let _ = axum::serve(listener, router).await;
    });

    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = PayingMcpClient::connect_http(&url, Arc::clone(&buyer.x402))
        .await
        .expect("MCP session over HTTP");
    let call = client
        .call_tool("forecast", no_arguments())
        .await
        .expect("paid call");
    assert_paid(&stack, &call).await;
    assert_eq!(seller.0.runs.load(Ordering::SeqCst), 1);
    assert_eq!(buyer.signed(), 1);
    client.close().await.expect("close");
    server.abort();
    stack.stop().await;
}

/// The stdio server: this test binary started again, serving the seller on
/// its stdin and stdout. Ignored: only [`a_paid_call_over_stdio`] runs it.
#[tokio::test]
#[ignore = "the stdio server of a_paid_call_over_stdio, started by it"]
async fn stdio_seller() {
    // Run by hand (`--include-ignored`) it has nothing to serve.
    let Ok(facilitator) = std::env::var(FACILITATOR_VARIABLE) else {
        eprintln!("stdio_seller is started by a_paid_call_over_stdio only");
        return;
    };
    let requirements = std::env::var(REQUIREMENTS_VARIABLE).expect("requirements");
    let requirements = serde_json::from_str(&requirements).expect("requirements JSON");
    let seller = Seller::new(&facilitator, requirements, Script::default());
    let running = seller
        .serve(rmcp::transport::stdio())
        .await
        .expect("stdio session");
    let _ = running.waiting().await;
}

#[tokio::test]
async fn a_paid_call_over_stdio() {
    let stack = start().await;
    let requirements = stack.requirements(PRICE);
    let mut command = tokio::process::Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            "--exact",
            "stdio_seller",
            "--ignored",
            "--nocapture",
            "--quiet",
        ])
        .args(["--test-threads", "1"])
        .env(FACILITATOR_VARIABLE, stack.facilitator_url())
        .env(
            REQUIREMENTS_VARIABLE,
            serde_json::to_string(&requirements).expect("JSON"),
        )
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = PayingMcpClient::connect_stdio(command, Arc::clone(&buyer.x402))
        .await
        .expect("MCP session over stdio");
    let call = client
        .call_tool("forecast", no_arguments())
        .await
        .expect("paid call");
    assert_paid(&stack, &call).await;
    assert_eq!(buyer.signed(), 1);
    client.close().await.expect("close");
    stack.stop().await;
}

#[tokio::test]
async fn an_exhausted_budget_refuses_before_signing() {
    let stack = start().await;
    let seller = Seller::new(
        stack.facilitator_url(),
        stack.requirements(PRICE),
        Script::default(),
    );
    let buyer = Buyer::new(&stack, u128::from(PRICE) - 1).await;
    let client = connect(&seller, &buyer).await;

    let refused = client.call_tool("forecast", no_arguments()).await;
    assert!(
        matches!(
            &refused,
            Err(McpClientError::Payment(ClientError::NoAcceptableOption(why))) if why.contains("budget")
        ),
        "{refused:?}"
    );
    assert_eq!(buyer.signed(), 0, "nothing signed");
    assert!(
        seller.0.payments.lock().expect("lock").is_empty(),
        "no paid call reached the server"
    );
    assert_eq!(seller.0.runs.load(Ordering::SeqCst), 0);
    assert_eq!(buyer.outstanding().await, 0);
    assert_eq!(balance(&stack, stack.pay_to()).await, U256::ZERO);
    stack.stop().await;
}

#[tokio::test]
async fn the_approval_hook_sees_the_call_and_its_refusal_signs_nothing() {
    let stack = start().await;
    let seller = Seller::new(
        stack.facilitator_url(),
        stack.requirements(PRICE),
        Script::default(),
    );
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let seen: Arc<Mutex<Vec<ApprovalRequest>>> = Arc::default();
    let asked = Arc::clone(&seen);
    let client = connect(&seller, &buyer)
        .await
        .approval(move |request: &ApprovalRequest| {
            asked.lock().expect("lock").push(request.clone());
            false
        });

    let mut arguments = JsonObject::new();
    arguments.insert("city".into(), "Porto".into());
    let refused = client.call_tool("forecast", arguments.clone()).await;
    assert!(
        matches!(&refused, Err(McpClientError::Refused(_))),
        "{refused:?}"
    );
    let asked_once = seen.lock().expect("lock").clone();
    assert_eq!(asked_once.len(), 1);
    assert_eq!(asked_once[0].tool, "forecast");
    assert_eq!(asked_once[0].arguments, arguments);
    assert_eq!(asked_once[0].requirements, stack.requirements(PRICE));
    assert_eq!(asked_once[0].requirements.amount, PRICE.into());
    assert_eq!(buyer.signed(), 0, "nothing signed");
    assert_eq!(buyer.outstanding().await, 0, "budget untouched");
    assert_eq!(buyer.spent().await, 0, "budget untouched");
    assert!(seller.0.payments.lock().expect("lock").is_empty());

    // A free tool never asks the hook.
    let free = client
        .call_tool("echo", arguments)
        .await
        .expect("free call");
    assert!(free.outcome.is_none());
    assert_eq!(seen.lock().expect("lock").len(), 1, "the hook was asked");

    // An approving hook lets the same call through.
    let approving = connect(&seller, &buyer)
        .await
        .approval(|request: &ApprovalRequest| request.requirements.amount <= PRICE.into());
    let call = approving
        .call_tool("forecast", no_arguments())
        .await
        .expect("approved call");
    assert_paid(&stack, &call).await;
    stack.stop().await;
}

#[tokio::test]
async fn a_503_with_retry_after_is_answered_with_the_same_payment() {
    let stack = start().await;
    let script = Script {
        unavailable_first: true,
        ..Script::default()
    };
    let seller = Seller::new(stack.facilitator_url(), stack.requirements(PRICE), script);
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = connect(&seller, &buyer).await;

    let call = client
        .call_tool("forecast", no_arguments())
        .await
        .expect("paid call");
    assert_paid(&stack, &call).await;
    let payments = seller.0.payments.lock().expect("lock").clone();
    assert_eq!(payments.len(), 2, "sent again after the 503");
    assert_eq!(payments[0], payments[1], "the same payment, byte for byte");
    assert_eq!(buyer.signed(), 1, "one signature");
    assert_eq!(seller.0.runs.load(Ordering::SeqCst), 1);
    assert_eq!(buyer.spent().await, u128::from(PRICE));
    stack.stop().await;
}

#[tokio::test]
async fn a_failed_settlement_returns_no_content_and_keeps_the_payment_outstanding() {
    let stack = start().await;
    let script = Script {
        settlement_fails: true,
        ..Script::default()
    };
    let seller = Seller::new(stack.facilitator_url(), stack.requirements(PRICE), script);
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = connect(&seller, &buyer).await;

    let call = client
        .call_tool("forecast", no_arguments())
        .await
        .expect("an answer");
    assert_eq!(seller.0.runs.load(Ordering::SeqCst), 1, "the tool ran");
    assert_eq!(call.result.is_error, Some(true));
    assert!(!text_of(&call.result).contains(FORECAST), "no tool content");
    let required = wire::payment_required_of(&call.result)
        .expect("a payment-required result")
        .expect("readable");
    assert_eq!(required.error.as_deref(), Some("Settlement failed"));
    let outcome = call.outcome.expect("a payment was made");
    assert_eq!(outcome.status, PaymentStatus::NotPaid);
    assert_eq!(buyer.signed(), 1, "not paid again with a new payment");
    assert_eq!(
        buyer.outstanding().await,
        u128::from(PRICE),
        "the server holds a signed authorization: it stays counted"
    );
    assert_eq!(buyer.spent().await, 0);
    assert_eq!(balance(&stack, stack.pay_to()).await, U256::ZERO);
    stack.stop().await;
}

#[tokio::test]
async fn malformed_oversized_and_v1_payment_requests_are_errors() {
    let stack = start().await;
    let seller = Seller::new(
        stack.facilitator_url(),
        stack.requirements(PRICE),
        Script::default(),
    );
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = connect(&seller, &buyer).await;

    let garbled = client.call_tool("garbled", no_arguments()).await;
    assert!(
        matches!(
            &garbled,
            Err(McpClientError::Payment(ClientError::BadPaymentRequired(_)))
        ),
        "{garbled:?}"
    );
    let huge = client.call_tool("huge", no_arguments()).await;
    assert!(
        matches!(
            &huge,
            Err(McpClientError::Payment(
                ClientError::PaymentRequiredTooLarge { .. }
            ))
        ),
        "{huge:?}"
    );
    let v1 = client.call_tool("v1", no_arguments()).await;
    assert!(
        matches!(
            &v1,
            Err(McpClientError::Payment(ClientError::BadPaymentRequired(
                paywire_core::codec::DecodeError::UnsupportedVersion { found: Some(1) }
            )))
        ),
        "{v1:?}"
    );
    assert_eq!(buyer.signed(), 0);
    assert_eq!(buyer.outstanding().await, 0);

    // The session survives: the next call works.
    let echo = client
        .call_tool("echo", no_arguments())
        .await
        .expect("echo");
    assert_eq!(echo.result.is_error, Some(false));
    stack.stop().await;
}

#[tokio::test]
async fn free_tools_and_plain_errors_cost_nothing() {
    let stack = start().await;
    let seller = Seller::new(
        stack.facilitator_url(),
        stack.requirements(PRICE),
        Script::default(),
    );
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = connect(&seller, &buyer).await;

    let mut arguments = JsonObject::new();
    arguments.insert("say".into(), "hello".into());
    let echo = client.call_tool("echo", arguments).await.expect("echo");
    assert!(echo.outcome.is_none());
    assert_eq!(text_of(&echo.result), r#"{"say":"hello"}"#);

    let broken = client
        .call_tool("broken", no_arguments())
        .await
        .expect("an answer");
    assert!(broken.outcome.is_none());
    assert_eq!(broken.result.is_error, Some(true));
    assert_eq!(text_of(&broken.result), "upstream exploded");

    assert_eq!(buyer.signed(), 0);
    assert_eq!(buyer.outstanding().await, 0);
    assert_eq!(buyer.spent().await, 0);
    stack.stop().await;
}
