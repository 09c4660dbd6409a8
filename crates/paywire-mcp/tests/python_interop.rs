//! Interop with the official x402 Python SDK's MCP integration (PyPI `x402` 2.25.0,
//! `x402.mcp`, on `mcp` 1.30.0; the official npm `@x402/mcp` does not exist), both ways, each
//! call settling on the devnet through our facilitator (the test kit's `Stack`):
//!
//! - their client (`x402MCPSession` + `x402Client` with `ExactEvmClientScheme`) → our server
//!   (`PaidTools` / `McpPaymentServer`), over streamable HTTP and over the stdio framing;
//! - our client (`PayingMcpClient`) → their server (FastMCP + `create_payment_wrapper` +
//!   `x402ResourceServer(HTTPFacilitatorClient)`), over streamable HTTP and stdio.
//!
//! Needs the Python venv (`bash crates/paywire-testkit/peer/python/install.sh`); fails loudly
//! without it unless PAYWIRE_SKIP_PYTHON_PEER=1.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use paywire_client::{Budget, BudgetRule, BudgetScope, ClientError, PaymentStatus, X402Client};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, PaymentRequirements, SchemeClient, SchemeError,
};
use paywire_evm::Eip155ChainId;
use paywire_evm::LocalSigner;
use paywire_evm::exact::{ExactEvmClient, ExactEvmServer};
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks, TransferMethod};
use paywire_mcp::client::{ApprovalRequest, McpClientError, PaidCall, PayingMcpClient};
use paywire_mcp::server::{McpPaymentServer, PaidTools, ToolContext, ToolOutput};
use paywire_mcp::wire;
use paywire_server::{HttpFacilitator, PayTo, PaymentGate, PaymentOption, money};
use paywire_testkit::pymcp::{
    PY_FREE_TOOL, PY_PAID_TOOL, PyMcpCall, PyMcpCallOptions, PyMcpServer, PyMcpServerOptions,
    PyMcpStdioServer, py_mcp_call, py_mcp_call_stdio, python_or_skip, stdio_relay_command,
};
use paywire_testkit::{Devnet, Stack};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde_json::{Value, json};
use tokio::sync::Notify;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// $0.01 in USDC atomic units.
const PRICE: u128 = 10_000;
/// What our paid tool answers: must never reach a caller whose payment did not settle.
const SECRET: &str = "the paid forecast";

fn chain() -> ChainId {
    ChainId::eip155(31337)
}

fn usdc_table(devnet: &Devnet) -> EvmNetworks {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::new(
        31337,
        "Anvil",
        EvmAsset {
            address: devnet.usdc(),
            symbol: "USDC".into(),
            decimals: 6,
            eip712_name: "USD Coin".into(),
            eip712_version: "2".into(),
            usd_stable: true,
            transfer_method: TransferMethod::Eip3009,
            eip2612: false,
        },
    ));
    table
}

fn tool(name: &str, description: &str, property: &str) -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {property: {"type": "string"}},
    });
    let Value::Object(schema) = schema else {
        unreachable!("a JSON object literal")
    };
    Tool::new(name.to_owned(), description.to_owned(), Arc::new(schema))
}

fn text(text: impl Into<String>) -> ToolOutput {
    CallToolResult::success(vec![ContentBlock::text(text.into())]).into()
}

/// Lets a test act while our paid tool runs (verified and reserved, not yet settled).
#[derive(Debug, Default)]
struct Pause {
    enabled: std::sync::atomic::AtomicBool,
    entered: Notify,
    release: Notify,
}

/// Our side: a stack, a pay-to address, how often the paid tool ran.
struct Ours {
    stack: Stack,
    pay_to: Address,
    runs: Arc<AtomicUsize>,
    pause: Arc<Pause>,
}

type Handler = Pin<Box<dyn Future<Output = ToolOutput> + Send>>;

impl Ours {
    async fn start() -> Self {
        Self {
            stack: Stack::start().await.expect("devnet stack"),
            pay_to: Address::random(),
            runs: Arc::default(),
            pause: Arc::default(),
        }
    }

    fn devnet(&self) -> &Devnet {
        self.stack.devnet()
    }

    async fn usdc(&self, owner: Address) -> U256 {
        self.devnet().usdc_balance(owner).await.expect("balance")
    }

    /// Our paid-tool server with the Python peer's tool names: `get_weather` for $0.01
    /// (`exact`, devnet USDC) and the free `ping`.
    fn server(&self) -> McpPaymentServer<PaidTools> {
        let facilitator =
            Arc::new(HttpFacilitator::new(self.stack.facilitator_url()).expect("facilitator"));
        let gate = PaymentGate::builder(facilitator).scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(usdc_table(self.devnet()))),
        );
        let pay_to = PayTo::address(self.pay_to.to_string());
        let runs = Arc::clone(&self.runs);
        let pause = Arc::clone(&self.pause);
        let paid = move |_: ToolContext, arguments: JsonObject| -> Handler {
            runs.fetch_add(1, Ordering::SeqCst);
            let pause = Arc::clone(&pause);
            Box::pin(async move {
                if pause.enabled.load(Ordering::SeqCst) {
                    pause.entered.notify_one();
                    pause.release.notified().await;
                }
                let city = arguments.get("city").and_then(Value::as_str).unwrap_or("?");
                text(format!("{SECRET}: sunny in {city}"))
            })
        };
        let ping = |_: ToolContext, arguments: JsonObject| async move {
            text(
                arguments
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("pong"),
            )
        };
        PaidTools::builder(gate)
            .paid_tool(
                tool(PY_PAID_TOOL, "A paid weather report", "city"),
                |route| {
                    route.accept(PaymentOption::exact(
                        chain(),
                        money("$0.01").expect("price"),
                        pay_to,
                    ))
                },
                paid,
            )
            .free_tool(tool(PY_FREE_TOOL, "Echoes its message", "message"), ping)
            .build()
            .expect("tool set")
            .server_info("paywire-interop", "1.0.0")
    }

    /// Serves our server over streamable HTTP; its MCP endpoint.
    async fn serve_http(&self) -> String {
        let router = self.server().streamable_http_router("/mcp");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{address}/mcp")
    }

    /// Serves our server with the stdio transport's framing (`serve_io`) on every TCP
    /// connection to the returned port (the Python stdio client reaches it through the
    /// test kit's relay).
    async fn serve_stdio_framing(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = self.server();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (read, write) = stream.into_split();
                let server = server.clone();
                tokio::spawn(async move {
                    if let Err(error) = Box::pin(server.serve_io(read, write)).await {
                        eprintln!("serve_io ended: {error}");
                    }
                });
            }
        });
        port
    }
}

/// Moves all of `owner`'s USDC to a fresh address (so a verified payment cannot settle).
async fn drain(stack: &Stack, owner: Address) {
    let devnet = stack.devnet();
    let balance = devnet.usdc_balance(owner).await.expect("balance");
    // ERC-20 `transfer(address,uint256)`.
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend_from_slice(&[0; 12]);
    data.extend_from_slice(Address::random().as_slice());
    data.extend_from_slice(&balance.to_be_bytes::<32>());
    devnet
        .transact(owner, devnet.usdc(), data)
        .await
        .expect("funds moved away");
}

/// Their client's view of a settled call: our result text, our receipt parsed as their
/// `SettleResponse`, naming a devnet transaction from the payer.
fn assert_settled_by_us(call: &PyMcpCall, network: &str, payer: Address) {
    assert!(!call.is_error && call.payment_made, "{call:#?}");
    assert!(call.text().is_some_and(|t| t.contains(SECRET)), "{call:#?}");
    assert!(
        call.payment_response_valid,
        "their SettleResponse model accepts our receipt: {call:#?}"
    );
    let receipt = call.payment_response.as_ref().expect("a receipt");
    assert_eq!(receipt["success"], true);
    assert_eq!(receipt["network"], network);
    assert_eq!(receipt["transaction"].as_str().map(str::len), Some(66));
    let receipt_payer = receipt["payer"].as_str().unwrap_or_default();
    assert!(
        receipt_payer.eq_ignore_ascii_case(&payer.to_string()),
        "{receipt}"
    );
}

#[tokio::test]
async fn their_client_pays_our_server_over_streamable_http() -> TestResult {
    if python_or_skip()?.is_none() {
        return Ok(());
    }
    let ours = Ours::start().await;
    let url = ours.serve_http().await;
    let devnet = ours.devnet();
    let payer = ours.stack.payer();
    let before = ours.usdc(payer.address).await;
    let options = PyMcpCallOptions::new(devnet);

    // Unpaid: their SDK reads our payment-required result (structuredContent, content text).
    let unpaid = py_mcp_call(
        &url,
        PY_PAID_TOOL,
        json!({"city": "Lisbon"}),
        payer.private_key,
        &PyMcpCallOptions {
            auto_payment: false,
            ..options.clone()
        },
    )
    .await?;
    assert!(unpaid.is_error && !unpaid.payment_made, "{unpaid:#?}");
    assert_eq!(unpaid.tools, [PY_PAID_TOOL, PY_FREE_TOOL]);
    let required = unpaid
        .payment_required
        .as_ref()
        .expect("their SDK sees a payment request");
    assert_eq!(
        required["resource"]["url"],
        format!("mcp://tool/{PY_PAID_TOOL}")
    );
    assert_eq!(required["accepts"][0]["amount"], PRICE.to_string());
    assert_eq!(ours.runs.load(Ordering::SeqCst), 0);

    // Paid: their client signs what we offered; we verify, run, settle, and answer with the
    // receipt in _meta.
    let paid = py_mcp_call(
        &url,
        PY_PAID_TOOL,
        json!({"city": "Lisbon"}),
        payer.private_key,
        &options,
    )
    .await?;
    assert_settled_by_us(&paid, devnet.network(), payer.address);
    let payment = paid
        .payment_payload
        .as_ref()
        .expect("the payment they sent");
    assert_eq!(
        payment["resource"]["url"],
        format!("mcp://tool/{PY_PAID_TOOL}")
    );
    assert_eq!(ours.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ours.usdc(ours.pay_to).await, U256::from(PRICE));
    assert_eq!(ours.usdc(payer.address).await, before - U256::from(PRICE));

    // Free: no payment.
    let free = py_mcp_call(
        &url,
        PY_FREE_TOOL,
        json!({"message": "hi"}),
        payer.private_key,
        &options,
    )
    .await?;
    assert!(!free.is_error && !free.payment_made, "{free:#?}");
    assert_eq!(free.text(), Some("hi"));
    assert_eq!(ours.usdc(ours.pay_to).await, U256::from(PRICE));
    Ok(())
}

#[tokio::test]
async fn their_stdio_client_pays_our_server_over_the_stdio_framing() -> TestResult {
    if python_or_skip()?.is_none() {
        return Ok(());
    }
    let ours = Ours::start().await;
    let port = ours.serve_stdio_framing().await;
    let payer = ours.stack.payer();

    let paid = py_mcp_call_stdio(
        &stdio_relay_command(port)?,
        PY_PAID_TOOL,
        json!({"city": "Porto"}),
        payer.private_key,
        &PyMcpCallOptions::new(ours.devnet()),
    )
    .await?;
    assert_settled_by_us(&paid, ours.devnet().network(), payer.address);
    assert_eq!(ours.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ours.usdc(ours.pay_to).await, U256::from(PRICE));
    Ok(())
}

/// Field lesson 1 across implementations: our tool ran, the payment then cannot settle (the
/// payer's USDC left between verification and settlement); their client gets our
/// payment-required answer with the reason and never the tool's content.
#[tokio::test]
async fn their_client_gets_no_content_when_our_settlement_fails() -> TestResult {
    if python_or_skip()?.is_none() {
        return Ok(());
    }
    let ours = Ours::start().await;
    ours.pause.enabled.store(true, Ordering::SeqCst);
    let url = ours.serve_http().await;
    let payer = ours.stack.payer();
    let options = PyMcpCallOptions::new(ours.devnet());
    let key = payer.private_key;
    let call = tokio::spawn(async move {
        py_mcp_call(&url, PY_PAID_TOOL, json!({"city": "Faro"}), key, &options).await
    });
    tokio::time::timeout(Duration::from_secs(60), ours.pause.entered.notified())
        .await
        .expect("the tool ran after verification");
    drain(&ours.stack, payer.address).await;
    ours.pause.release.notify_one();
    let failed = call.await??;

    let wire = serde_json::to_string(&(&failed.content, &failed.structured_content))?;
    assert!(!wire.contains(SECRET), "the tool's content leaked: {wire}");
    assert!(failed.is_error && failed.payment_made, "{failed:#?}");
    let required = failed
        .payment_required
        .as_ref()
        .expect("a payment-required answer");
    assert!(
        required["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{required}"
    );
    assert!(
        failed.payment_response.is_none()
            || failed
                .payment_response
                .as_ref()
                .is_some_and(|r| r["success"] == false),
        "{failed:#?}"
    );
    assert_eq!(ours.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ours.usdc(ours.pay_to).await, U256::ZERO, "nothing was paid");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Our client → their server.

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
    ) -> BoxFuture<'a, Result<paywire_core::JsonObject, SchemeError>> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        self.wallet.create_payload(requirements)
    }
}

/// Our buyer: the stack's payer, with a budget of `total` atomic devnet USDC.
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
            .catalog(Arc::new(usdc_table(devnet)))
            .budget(Arc::clone(&budget))
            .max_outcome_wait(Duration::from_secs(2))
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

fn city(name: &str) -> JsonObject {
    let mut arguments = JsonObject::new();
    arguments.insert("city".into(), name.into());
    arguments
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.clone()))
        .collect()
}

/// Their server's answer to our paid call: its tool's output, our outcome `Paid` with their
/// receipt (read from `_meta`), the USDC moved.
async fn assert_paid_by_us(stack: &Stack, call: &PaidCall, pay_to: Address) {
    assert_ne!(call.result.is_error, Some(true), "{:?}", call.result);
    assert!(text_of(&call.result).contains("sunny"), "{:?}", call.result);
    let outcome = call.outcome.as_ref().expect("a payment was made");
    assert_eq!(outcome.status, PaymentStatus::Paid, "{outcome:?}");
    let receipt = outcome
        .receipt
        .as_ref()
        .expect("their receipt, read from _meta");
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.network.to_string(), stack.devnet().network());
    assert_eq!(receipt.transaction.len(), 66, "{receipt:?}");
    assert_eq!(outcome.requirements.amount, PRICE.into());
    assert_eq!(
        stack.devnet().usdc_balance(pay_to).await.expect("balance"),
        U256::from(PRICE)
    );
}

#[tokio::test]
async fn our_client_pays_their_server_over_streamable_http() -> TestResult {
    if python_or_skip()?.is_none() {
        return Ok(());
    }
    let stack = Stack::start().await?;
    let devnet = stack.devnet();
    let options = PyMcpServerOptions::new(devnet, stack.facilitator_url(), stack.pay_to(), PRICE);
    let server = PyMcpServer::start(&options).await?;
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let approvals: Arc<Mutex<Vec<ApprovalRequest>>> = Arc::default();
    let asked = Arc::clone(&approvals);
    let client = PayingMcpClient::connect_http(server.url(), Arc::clone(&buyer.x402))
        .await?
        .approval(move |request: &ApprovalRequest| {
            asked.lock().expect("lock").push(request.clone());
            true
        });
    let payer = stack.payer().address;
    let before = devnet.usdc_balance(payer).await?;

    let tools: Vec<String> = client
        .list_tools()
        .await?
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect();
    assert_eq!(tools, [PY_PAID_TOOL, PY_FREE_TOOL]);

    let call = client.call_tool(PY_PAID_TOOL, city("Lisbon")).await?;
    assert_paid_by_us(&stack, &call, stack.pay_to()).await;
    assert_eq!(server.tool_runs(PY_PAID_TOOL), 1, "{}", server.log_tail());
    assert_eq!(server.settlements().len(), 1);
    assert_eq!(buyer.signed(), 1);
    assert_eq!(buyer.spent().await, PRICE);
    assert_eq!(buyer.outstanding().await, 0);
    assert_eq!(
        devnet.usdc_balance(payer).await?,
        before - U256::from(PRICE)
    );
    // The approval saw their offer as built by their resource server.
    let seen = approvals.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].tool, PY_PAID_TOOL);
    assert_eq!(seen[0].arguments, city("Lisbon"));
    assert_eq!(seen[0].requirements.amount, PRICE.into());
    assert!(
        seen[0]
            .requirements
            .pay_to
            .eq_ignore_ascii_case(&stack.pay_to().to_string())
    );

    // Their free tool: no payment, no approval asked.
    let mut message = JsonObject::new();
    message.insert("message".into(), "hi".into());
    let free = client.call_tool(PY_FREE_TOOL, message).await?;
    assert!(free.outcome.is_none(), "{free:?}");
    assert_eq!(text_of(&free.result), "hi");
    assert_eq!(buyer.signed(), 1);
    assert_eq!(approvals.lock().expect("lock").len(), 1);
    client.close().await?;
    Ok(())
}

#[tokio::test]
async fn our_client_pays_their_server_over_stdio() -> TestResult {
    if python_or_skip()?.is_none() {
        return Ok(());
    }
    let stack = Stack::start().await?;
    let options = PyMcpServerOptions::new(
        stack.devnet(),
        stack.facilitator_url(),
        stack.pay_to(),
        PRICE,
    );
    let server = PyMcpStdioServer::new(&options)?;
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = PayingMcpClient::connect_stdio(server.command()?, Arc::clone(&buyer.x402)).await?;

    let call = client.call_tool(PY_PAID_TOOL, city("Porto")).await?;
    assert_paid_by_us(&stack, &call, stack.pay_to()).await;
    assert_eq!(server.tool_runs(PY_PAID_TOOL), 1, "{}", server.log_text());
    assert_eq!(buyer.spent().await, PRICE);
    client.close().await?;
    Ok(())
}

/// Field lesson 1 from the other side: their tool ran, then their settlement fails (the
/// payer's USDC left after verification). Their server answers a settlement-failed
/// payment-required result (its failure receipt inside `structuredContent`, not `_meta`); our
/// client returns it without tool content, reports NotPaid, signs nothing new, and keeps the
/// amount outstanding in the budget.
#[tokio::test]
async fn our_client_gets_no_content_when_their_settlement_fails() -> TestResult {
    if python_or_skip()?.is_none() {
        return Ok(());
    }
    let stack = Stack::start().await?;
    let pause = tempfile::tempdir()?;
    let release = pause.path().join("release");
    let mut options = PyMcpServerOptions::new(
        stack.devnet(),
        stack.facilitator_url(),
        stack.pay_to(),
        PRICE,
    );
    options.pause_file = Some(release.clone());
    let server = PyMcpServer::start(&options).await?;
    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = PayingMcpClient::connect_http(server.url(), Arc::clone(&buyer.x402)).await?;

    let call = async {
        let started = tokio::time::Instant::now();
        let (call, ()) = tokio::join!(client.call_tool(PY_PAID_TOOL, city("Faro")), async {
            while server.tool_runs(PY_PAID_TOOL) == 0 {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the tool never ran"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drain(&stack, stack.payer().address).await;
            std::fs::write(&release, b"go").expect("release the tool");
        });
        call
    };
    let call = call.await?;

    assert_eq!(call.result.is_error, Some(true), "{:?}", call.result);
    assert!(
        !text_of(&call.result).contains("sunny"),
        "no tool content: {:?}",
        call.result
    );
    let required = wire::payment_required_of(&call.result)
        .expect("their settlement failure reads as a payment-required result")
        .expect("readable");
    let error = required.error.unwrap_or_default();
    assert!(error.starts_with("Payment settlement failed"), "{error}");
    let outcome = call.outcome.expect("a payment was made");
    assert_eq!(outcome.status, PaymentStatus::NotPaid, "{outcome:?}");
    assert_eq!(buyer.signed(), 1, "not paid again with a new payment");
    assert_eq!(
        buyer.outstanding().await,
        PRICE,
        "the signed authorization stays counted"
    );
    assert_eq!(buyer.spent().await, 0);
    assert_eq!(server.tool_runs(PY_PAID_TOOL), 1);
    assert!(server.settlements().is_empty());
    assert_eq!(
        stack.devnet().usdc_balance(stack.pay_to()).await?,
        U256::ZERO
    );
    Ok(())
}

/// Our refusals happen before signing, whoever the server is: an exhausted budget and a
/// refusing approval hook sign nothing, and their server sees no paid call.
#[tokio::test]
async fn our_client_refuses_their_price_before_signing() -> TestResult {
    if python_or_skip()?.is_none() {
        return Ok(());
    }
    let stack = Stack::start().await?;
    let options = PyMcpServerOptions::new(
        stack.devnet(),
        stack.facilitator_url(),
        stack.pay_to(),
        PRICE,
    );
    let server = PyMcpServer::start(&options).await?;

    let poor = Buyer::new(&stack, PRICE - 1).await;
    let client = PayingMcpClient::connect_http(server.url(), Arc::clone(&poor.x402)).await?;
    let refused = client.call_tool(PY_PAID_TOOL, city("Braga")).await;
    assert!(
        matches!(
            &refused,
            Err(McpClientError::Payment(ClientError::NoAcceptableOption(why))) if why.contains("budget")
        ),
        "{refused:?}"
    );
    assert_eq!(poor.signed(), 0, "nothing signed");
    assert_eq!(poor.outstanding().await, 0);

    let buyer = Buyer::new(&stack, 1_000_000).await;
    let client = PayingMcpClient::connect_http(server.url(), Arc::clone(&buyer.x402))
        .await?
        .approval(|request: &ApprovalRequest| request.requirements.amount < PRICE.into());
    let refused = client.call_tool(PY_PAID_TOOL, city("Braga")).await;
    assert!(
        matches!(&refused, Err(McpClientError::Refused(_))),
        "{refused:?}"
    );
    assert_eq!(buyer.signed(), 0, "nothing signed");
    assert_eq!(buyer.outstanding().await, 0, "budget untouched");

    assert_eq!(server.tool_runs(PY_PAID_TOOL), 0, "{}", server.log_tail());
    assert!(server.settlements().is_empty());
    assert_eq!(
        stack.devnet().usdc_balance(stack.pay_to()).await?,
        U256::ZERO
    );
    Ok(())
}
