//! Our paying client against our paid-tool server, on the devnet, over
//! streamable HTTP and over the stdio code path (a pipe): unpaid tools cost
//! nothing, a paid call returns the result with its receipt and the budget
//! counts it, a usage-based tool is charged its usage, an exhausted budget
//! refuses before signing, and a payment for a cheap tool cannot buy a dear
//! one (field lesson 5).

mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_primitives::U256;
use paywire_client::{Budget, BudgetRule, BudgetScope, ClientError, PaymentStatus, X402Client};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, CreatedPayment, Extensions, PaymentRequirements,
    SchemeClient, SchemeError,
};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use paywire_evm::upto::UptoEvmClient;
use paywire_mcp::client::{McpClientError, PayingMcpClient};
use paywire_mcp::wire;
use rmcp::model::JsonObject;
use serde_json::{Value, json};
use server_support::{Env, PRICE, UPTO_MAX, call, count, serve_http, text_of};

/// A scheme client that counts what it signs.
struct Counting<C> {
    inner: C,
    signed: Arc<AtomicUsize>,
}

impl<C: SchemeClient> SchemeClient for Counting<C> {
    fn scheme(&self) -> &str {
        self.inner.scheme()
    }

    fn payer(&self, network: &ChainId) -> Option<String> {
        self.inner.payer(network)
    }

    fn create_payload<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        self.inner.create_payload(requirements)
    }

    fn create_payment<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        offered: Option<&'a Extensions>,
    ) -> BoxFuture<'a, Result<CreatedPayment, SchemeError>> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        self.inner.create_payment(requirements, offered)
    }
}

impl<C> std::fmt::Debug for Counting<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counting")
    }
}

/// An agent with a budget of `total` atomic units per asset (USDC, and the
/// Permit2 token the metered tool takes).
struct Agent {
    x402: Arc<X402Client>,
    budget: Arc<Budget>,
    usdc: BudgetScope,
    signed: Arc<AtomicUsize>,
}

impl Agent {
    async fn new(env: &Env, total: u128) -> Self {
        let devnet = env.devnet();
        let network = ChainId::parse(devnet.network()).expect("network");
        let scope = |asset: String| BudgetScope::Asset {
            network: network.clone(),
            asset,
        };
        let usdc = scope(devnet.usdc().to_string());
        let token = scope(devnet.plain_token().to_string());
        let rule = |scope: BudgetScope| BudgetRule {
            scope,
            per_call: None,
            per_hour: None,
            per_day: None,
            total: Some(total),
        };
        let budget = Arc::new(
            Budget::in_memory(vec![rule(usdc.clone()), rule(token)])
                .await
                .expect("budget"),
        );
        let signed = Arc::new(AtomicUsize::new(0));
        let signer = || LocalSigner::new(env.stack.payer().signer());
        let exact = Counting {
            inner: ExactEvmClient::new(signer()),
            signed: Arc::clone(&signed),
        };
        let upto = Counting {
            inner: UptoEvmClient::new(signer()),
            signed: Arc::clone(&signed),
        };
        let evm = ChainIdPattern::parse("eip155:*").expect("pattern");
        let x402 = X402Client::builder()
            .wallet(evm.clone(), Arc::new(exact))
            .wallet(evm, Arc::new(upto))
            .budget(Arc::clone(&budget))
            .build();
        Self {
            x402: Arc::new(x402),
            budget,
            usdc,
            signed,
        }
    }

    async fn spent(&self) -> u128 {
        self.budget.spent_total(&self.usdc).await.expect("budget")
    }

    fn signed(&self) -> usize {
        self.signed.load(Ordering::SeqCst)
    }
}

fn arguments(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// The scenario both transports must pass.
async fn pays_for_tools(env: &Env, agent: &Agent, client: &PayingMcpClient) {
    let tools = client.list_tools().await.expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "forecast"));

    let free = client
        .call_tool("echo", arguments(json!({"say": "hi"})))
        .await
        .expect("free call");
    assert!(free.outcome.is_none(), "a free tool is not paid for");
    assert_eq!(agent.signed(), 0);

    let paid = client
        .call_tool("forecast", arguments(json!({"city": "Porto"})))
        .await
        .expect("paid call");
    assert_ne!(paid.result.is_error, Some(true), "{:?}", paid.result);
    assert!(text_of(&paid.result).starts_with("sunny in Porto"));
    let outcome = paid.outcome.expect("paid");
    assert_eq!(outcome.status, PaymentStatus::Paid);
    let receipt = outcome.receipt.expect("a receipt in _meta");
    assert!(receipt.success);
    assert_eq!(
        wire::receipt_of(&paid.result)
            .expect("receipt")
            .expect("valid"),
        receipt
    );
    assert_eq!(env.usdc(env.pay_to).await, U256::from(PRICE));
    assert_eq!(agent.spent().await, u128::from(PRICE));
    assert_eq!(agent.signed(), 1);
    assert_eq!(count(&env.runs.forecast), 1);
}

#[tokio::test]
async fn our_client_pays_our_server_over_streamable_http() {
    let env = Env::start().await;
    let agent = Agent::new(&env, 1_000_000).await;
    let url = serve_http(env.server(None)).await;
    let client = PayingMcpClient::connect_http(&url, Arc::clone(&agent.x402))
        .await
        .expect("MCP session");
    pays_for_tools(&env, &agent, &client).await;

    // Usage-based: the agent signs at most $0.05 and is charged its usage.
    let (devnet, payer) = (env.devnet(), env.stack.payer());
    devnet
        .mint_token(
            devnet.plain_token(),
            payer.address,
            U256::from(1_000_000u64),
        )
        .await
        .expect("tokens");
    devnet
        .approve_permit2(devnet.plain_token(), payer, U256::MAX)
        .await
        .expect("one-time Permit2 approval");
    let metered = client
        .call_tool("metered", arguments(json!({"tokens": 1858})))
        .await
        .expect("metered call");
    assert_eq!(text_of(&metered.result), "used 1858 tokens");
    let outcome = metered.outcome.expect("paid");
    assert_eq!(outcome.status, PaymentStatus::Paid);
    assert_eq!(outcome.requirements.amount, UPTO_MAX.into());
    assert_eq!(env.token(env.pay_to).await, U256::from(1858u64));
    client.close().await.expect("close");
    env.stack.stop().await;
}

#[tokio::test]
async fn our_client_pays_our_server_over_the_stdio_code_path() {
    let env = Env::start().await;
    let agent = Agent::new(&env, 1_000_000).await;
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_io);
    tokio::spawn(env.server(None).serve_io(server_read, server_write));
    let (read, write) = tokio::io::split(client_io);
    let client = PayingMcpClient::connect_io(read, write, Arc::clone(&agent.x402))
        .await
        .expect("MCP session");
    pays_for_tools(&env, &agent, &client).await;
    client.close().await.expect("close");
    env.stack.stop().await;
}

#[tokio::test]
async fn an_exhausted_budget_refuses_before_signing_and_the_tool_never_runs() {
    let env = Env::start().await;
    // Enough for one forecast, not two.
    let agent = Agent::new(&env, u128::from(PRICE) + 1).await;
    let url = serve_http(env.server(None)).await;
    let client = PayingMcpClient::connect_http(&url, Arc::clone(&agent.x402))
        .await
        .expect("MCP session");
    client
        .call_tool("forecast", arguments(json!({"city": "Oslo"})))
        .await
        .expect("the first call fits the budget");
    let refused = client
        .call_tool("forecast", arguments(json!({"city": "Oslo"})))
        .await
        .expect_err("the budget is spent");
    assert!(
        matches!(
            refused,
            McpClientError::Payment(ClientError::Budget(_) | ClientError::NoAcceptableOption(_))
        ),
        "{refused:?}"
    );
    assert_eq!(agent.signed(), 1, "nothing signed for the refused call");
    assert_eq!(count(&env.runs.forecast), 1);
    assert_eq!(env.usdc(env.pay_to).await, U256::from(PRICE));
    client.close().await.expect("close");
    env.stack.stop().await;
}

#[tokio::test]
async fn a_payment_for_a_cheap_tool_does_not_buy_a_dear_one() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let peer = server_support::http_client(&url).await;
    // `trip` for 1 day costs $0.01, for 3 days $0.03: pay for one, ask for three.
    let cheap = call(&peer, "trip", json!({"days": 1}), None).await;
    let payment = env
        .sign(env.stack.payer(), &server_support::required_of(&cheap))
        .await;
    let dear = call(&peer, "trip", json!({"days": 3}), Some(payment)).await;
    assert!(
        wire::payment_required_of(&dear).is_some(),
        "{:?}",
        text_of(&dear)
    );
    assert_eq!(count(&env.runs.trip), 0);
    assert_eq!(env.usdc(env.pay_to).await, U256::ZERO);
    peer.cancel().await.expect("close");
    env.stack.stop().await;
}
