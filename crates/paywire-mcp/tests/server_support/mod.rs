//! Fixtures of the paid-tool server tests: a devnet stack, a tool set with
//! free, fixed-price, dynamic, failing, pausable and metered tools, a raw
//! rmcp client, and payment signing with paywire-evm's scheme clients.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_primitives::{Address, U256};
use paywire_core::{
    ChainId, ChainIdPattern, PaymentPayload, PaymentRequired, PaymentRequirements, SchemeClient,
    SettleResponse,
};
use paywire_evm::Eip155ChainId;
use paywire_evm::exact::{ExactEvmClient, ExactEvmServer};
use paywire_evm::upto::{UptoEvmClient, UptoEvmServer};
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks, LocalSigner, TransferMethod};
use paywire_mcp::server::{McpPaymentServer, PaidTools, ToolContext, ToolOutput};
use paywire_mcp::wire;
use paywire_server::{
    HttpFacilitator, PayTo, PaymentGate, PaymentOption, PriceSpec, PricingError, RequestContext,
    Usage, money,
};
use paywire_testkit::{DevAccount, Devnet, Stack};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, JsonObject, RequestMetaObject, Tool,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::{Peer, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// $0.01 in USDC atomic units: the fixed price.
pub const PRICE: u64 = 10_000;
/// $0.05: the most one metered call may cost.
pub const UPTO_MAX: u64 = 50_000;
/// What the paused tool returns: must never reach a caller whose payment
/// did not settle.
pub const SECRET: &str = "the paid secret";

pub fn chain() -> ChainId {
    ChainId::eip155(31337)
}

fn pattern() -> ChainIdPattern {
    ChainIdPattern::parse("eip155:*").expect("pattern")
}

/// The devnet chain with its USDC (EIP-3009), for `exact`.
pub fn usdc_table(devnet: &Devnet) -> EvmNetworks {
    table(
        devnet.usdc(),
        "USD Coin",
        "2",
        TransferMethod::Eip3009,
        "USDC",
    )
}

/// The devnet chain with its plain test token paid through Permit2, for
/// `upto`.
pub fn permit2_table(devnet: &Devnet) -> EvmNetworks {
    table(
        devnet.plain_token(),
        "",
        "",
        TransferMethod::Permit2,
        "PUSD",
    )
}

fn table(
    token: Address,
    name: &str,
    version: &str,
    method: TransferMethod,
    symbol: &str,
) -> EvmNetworks {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::new(
        31337,
        "Anvil",
        EvmAsset {
            address: token,
            symbol: symbol.into(),
            decimals: 6,
            eip712_name: name.into(),
            eip712_version: version.into(),
            usd_stable: true,
            transfer_method: method,
            eip2612: false,
        },
    ));
    table
}

/// How often each tool ran.
#[derive(Debug, Default)]
pub struct Runs {
    pub echo: AtomicUsize,
    pub forecast: AtomicUsize,
    pub trip: AtomicUsize,
    pub flaky: AtomicUsize,
    pub paused: AtomicUsize,
    pub metered: AtomicUsize,
}

pub fn count(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

/// Lets a test act while the `paused` tool runs (after verification and
/// reservation, before settlement).
#[derive(Debug, Default)]
pub struct Pause {
    pub entered: Notify,
    pub release: Notify,
}

/// A stack, a pay-to address, and what the tools saw.
pub struct Env {
    pub stack: Stack,
    pub pay_to: Address,
    pub runs: Arc<Runs>,
    pub pause: Arc<Pause>,
}

impl Env {
    pub async fn start() -> Self {
        Self {
            stack: Stack::start().await.expect("devnet stack"),
            pay_to: Address::random(),
            runs: Arc::default(),
            pause: Arc::default(),
        }
    }

    pub fn devnet(&self) -> &Devnet {
        self.stack.devnet()
    }

    pub async fn usdc(&self, owner: Address) -> U256 {
        self.devnet().usdc_balance(owner).await.expect("balance")
    }

    pub async fn token(&self, owner: Address) -> U256 {
        self.devnet()
            .token_balance(self.devnet().plain_token(), owner)
            .await
            .expect("balance")
    }

    /// The paid-tool server of the tests; `endpoint` sets the resource URL.
    pub fn server(&self, endpoint: Option<&str>) -> McpPaymentServer<PaidTools> {
        let devnet = self.devnet();
        let facilitator =
            Arc::new(HttpFacilitator::new(self.stack.facilitator_url()).expect("facilitator"));
        let gate = PaymentGate::builder(facilitator)
            .scheme(pattern(), Arc::new(ExactEvmServer::new(usdc_table(devnet))))
            .scheme(
                pattern(),
                Arc::new(UptoEvmServer::new(permit2_table(devnet))),
            );
        let pay_to = || PayTo::address(self.pay_to.to_string());
        let fixed = |route: paywire_server::Route| {
            route.accept(PaymentOption::exact(
                chain(),
                money("$0.01").expect("price"),
                pay_to(),
            ))
        };
        let mut tools = PaidTools::builder(gate)
            .free_tool(
                tool("echo", "Echoes its arguments"),
                counting(&self.runs, |r| &r.echo, echo),
            )
            .paid_tool(
                tool("forecast", "A paid weather forecast"),
                fixed,
                counting(&self.runs, |r| &r.forecast, forecast),
            )
            .paid_tool(
                tool("trip", "Priced per day: $0.01 times `days`"),
                |route| {
                    route.accept(PaymentOption::exact(
                        chain(),
                        PriceSpec::dynamic(price_per_day),
                        pay_to(),
                    ))
                },
                counting(
                    &self.runs,
                    |r| &r.trip,
                    |_, _| async { text("trip planned") },
                ),
            )
            .paid_tool(
                tool("flaky", "Fails when asked to"),
                fixed,
                counting(&self.runs, |r| &r.flaky, flaky),
            )
            .paid_tool(
                tool("paused", "Waits for the test"),
                fixed,
                paused(Arc::clone(&self.runs), Arc::clone(&self.pause)),
            )
            .paid_tool(
                tool("metered", "Charges the `tokens` it used, at most $0.05"),
                |route| {
                    route.accept(PaymentOption::new(
                        "upto",
                        chain(),
                        money("$0.05").expect("price"),
                        pay_to(),
                    ))
                },
                counting(&self.runs, |r| &r.metered, metered),
            );
        if let Some(endpoint) = endpoint {
            tools = tools.endpoint_url(endpoint);
        }
        tools
            .build()
            .expect("tool set")
            .server_info("paywire-test", "1.0.0")
    }

    /// Signs a payment for the first option of `required` from `payer`,
    /// echoing the resource and extensions (as x402 clients do).
    pub async fn sign(&self, payer: &DevAccount, required: &PaymentRequired) -> Value {
        let accepted = required.accepts.first().expect("an option").clone();
        let signer = || LocalSigner::new(payer.signer());
        let payload = match accepted.scheme.as_str() {
            "exact" => {
                ExactEvmClient::new(signer())
                    .create_payload(&accepted)
                    .await
            }
            "upto" => UptoEvmClient::new(signer()).create_payload(&accepted).await,
            other => panic!("no client for {other}"),
        }
        .expect("signed");
        let payment = PaymentPayload {
            x402_version: 2,
            payload,
            extensions: required.extensions.clone(),
            resource: Some(required.resource.clone()),
            accepted,
        };
        serde_json::to_value(payment).expect("payment JSON")
    }
}

pub fn tool(name: &'static str, description: &'static str) -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    });
    let Value::Object(schema) = schema else {
        unreachable!()
    };
    Tool::new(name, description, Arc::new(schema))
}

pub fn text(text: impl Into<String>) -> ToolOutput {
    CallToolResult::success(vec![ContentBlock::text(text.into())]).into()
}

/// `handler`, counting its runs in the counter `pick` chooses.
fn counting<F, Fut>(
    runs: &Arc<Runs>,
    pick: fn(&Runs) -> &AtomicUsize,
    handler: F,
) -> impl Fn(ToolContext, JsonObject) -> std::pin::Pin<Box<dyn Future<Output = ToolOutput> + Send>>
+ Send
+ Sync
+ 'static
where
    F: Fn(ToolContext, JsonObject) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ToolOutput> + Send + 'static,
{
    let runs = Arc::clone(runs);
    move |context, arguments| {
        pick(&runs).fetch_add(1, Ordering::SeqCst);
        Box::pin(handler(context, arguments))
    }
}

async fn echo(_: ToolContext, arguments: JsonObject) -> ToolOutput {
    text(Value::Object(arguments).to_string())
}

async fn forecast(context: ToolContext, arguments: JsonObject) -> ToolOutput {
    let city = arguments
        .get("city")
        .and_then(Value::as_str)
        .unwrap_or("nowhere");
    let payer = context.payer.unwrap_or_default();
    text(format!("sunny in {city} for {payer}"))
}

async fn flaky(_: ToolContext, arguments: JsonObject) -> ToolOutput {
    assert!(
        arguments.get("panic").and_then(Value::as_bool) != Some(true),
        "the tool panics as asked"
    );
    if arguments.get("fail").and_then(Value::as_bool) == Some(true) {
        CallToolResult::error(vec![ContentBlock::text("upstream failed")]).into()
    } else {
        text("worked")
    }
}

async fn metered(_: ToolContext, arguments: JsonObject) -> ToolOutput {
    let tokens = arguments
        .get("tokens")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    text(format!("used {tokens} tokens")).usage(Usage::atomic(tokens))
}

fn paused(
    runs: Arc<Runs>,
    pause: Arc<Pause>,
) -> impl Fn(ToolContext, JsonObject) -> std::pin::Pin<Box<dyn Future<Output = ToolOutput> + Send>>
+ Send
+ Sync
+ 'static {
    move |_, _| {
        runs.paused.fetch_add(1, Ordering::SeqCst);
        let pause = Arc::clone(&pause);
        Box::pin(async move {
            pause.entered.notify_one();
            pause.release.notified().await;
            text(SECRET)
        })
    }
}

/// $0.01 per day of the `days` argument (1 to 9), read from the arguments
/// the gate hands to pricing.
fn price_per_day(
    ctx: &RequestContext,
) -> impl Future<Output = Result<paywire_core::Price, PricingError>> + Send + use<> {
    let days = ctx
        .body
        .as_ref()
        .and_then(|body| serde_json::from_slice::<Value>(body).ok())
        .and_then(|args| args.get("days").and_then(Value::as_u64))
        .unwrap_or(1);
    async move {
        if !(1..=9).contains(&days) {
            return Err(PricingError::Callback(format!("{days} days is not sold")));
        }
        money(&format!("$0.0{days}")).map_err(|e| PricingError::Callback(e.to_string()))
    }
}

/// Serves `server` over streamable HTTP; the MCP endpoint's URL.
pub async fn serve_http(server: McpPaymentServer<PaidTools>) -> String {
    let router = server.streamable_http_router("/mcp");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}/mcp")
}

/// A raw rmcp client of the streamable HTTP endpoint `url`.
pub async fn http_client(url: &str) -> RunningService<RoleClient, ()> {
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_owned());
    ().serve(transport).await.expect("MCP client connected")
}

/// Calls `name(arguments)` with `payment` (any JSON) in `_meta`.
pub async fn call(
    peer: &Peer<RoleClient>,
    name: &'static str,
    arguments: Value,
    payment: Option<Value>,
) -> CallToolResult {
    try_call(peer, name, arguments, payment)
        .await
        .expect("tools/call answered")
}

pub async fn try_call(
    peer: &Peer<RoleClient>,
    name: &'static str,
    arguments: Value,
    payment: Option<Value>,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let mut params = CallToolRequestParams::new(name);
    if let Value::Object(arguments) = arguments {
        params.arguments = Some(arguments);
    }
    if let Some(payment) = payment {
        let mut meta = JsonObject::new();
        meta.insert(wire::PAYMENT_META_KEY.to_owned(), payment);
        params.meta = Some(RequestMetaObject::from(meta));
    }
    peer.call_tool(params).await
}

/// The spec's payment-required result, checked field by field: `isError`,
/// `structuredContent` equal to the JSON text of `content[0]`, `x402Version`
/// 2 and at least one option.
pub fn required_of(result: &CallToolResult) -> PaymentRequired {
    let wire = serde_json::to_value(result).expect("result JSON");
    assert_eq!(wire["isError"], json!(true), "{wire}");
    let text = wire["content"][0]["text"]
        .as_str()
        .expect("content[0].text");
    assert_eq!(wire["content"][0]["type"], json!("text"));
    let parsed: Value = serde_json::from_str(text).expect("content[0].text is JSON");
    assert_eq!(
        parsed, wire["structuredContent"],
        "both forms carry the same object"
    );
    assert_eq!(parsed["x402Version"], json!(2));
    assert!(!parsed["accepts"].as_array().expect("accepts").is_empty());
    wire::payment_required_of(result)
        .expect("a payment-required result")
        .expect("a valid PaymentRequired")
}

/// The receipt of a served result.
pub fn receipt_of(result: &CallToolResult) -> SettleResponse {
    wire::receipt_of(result)
        .expect("a receipt in _meta")
        .expect("a valid receipt")
}

/// The text of a result's first content block.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// The requirements a result asks for, first option.
pub fn first(required: &PaymentRequired) -> &PaymentRequirements {
    required.accepts.first().expect("an option")
}
