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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use paywire_core::{ChainId, ChainIdPattern};
use paywire_evm::Eip155ChainId;
use paywire_evm::exact::ExactEvmServer;
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks, TransferMethod};
use paywire_mcp::server::{McpPaymentServer, PaidTools, ToolContext, ToolOutput};
use paywire_server::{HttpFacilitator, PayTo, PaymentGate, PaymentOption, money};
use paywire_testkit::pymcp::{
    PY_FREE_TOOL, PY_PAID_TOOL, PyMcpCall, PyMcpCallOptions, py_mcp_call, py_mcp_call_stdio,
    python_or_skip, stdio_relay_command,
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
                    if let Err(error) = server.serve_io(read, write).await {
                        eprintln!("serve_io ended: {error}");
                    }
                });
            }
        });
        port
    }

    /// Moves all of `owner`'s USDC to a fresh address.
    async fn drain(&self, owner: Address) {
        let balance = self.usdc(owner).await;
        // ERC-20 `transfer(address,uint256)`.
        let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
        data.extend_from_slice(&[0; 12]);
        data.extend_from_slice(Address::random().as_slice());
        data.extend_from_slice(&balance.to_be_bytes::<32>());
        self.devnet()
            .transact(owner, self.devnet().usdc(), data)
            .await
            .expect("funds moved away");
    }
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
    ours.drain(payer.address).await;
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
