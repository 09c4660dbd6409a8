//! The official x402 Python SDK's MCP integration (x402 2.25.0, `x402.mcp`) against itself on
//! the devnet, settling through OUR facilitator (the Stack's): its client pays its server over
//! streamable HTTP and over stdio. This proves the peer wiring (pins, scripts, facilitator
//! URL, devnet network and USDC) before the cross tests in paywire-mcp pair it with our code.
//!
//! Needs the Python venv (`bash crates/paywire-testkit/peer/python/install.sh`); fails loudly
//! without it unless PAYWIRE_SKIP_PYTHON_PEER=1.

use alloy_primitives::U256;
use paywire_testkit::pymcp::{
    PY_FREE_TOOL, PY_PAID_TOOL, PyMcpCall, PyMcpCallOptions, PyMcpServer, PyMcpServerOptions,
    PyMcpStdioServer, py_mcp_call, py_mcp_call_stdio, python_or_skip,
};
use paywire_testkit::stack::Stack;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PRICE: u128 = 10_000;

/// The receipt of a paid call: the SDK's parse and the raw `_meta` entry agree, and it names
/// a transaction on the devnet's network.
fn settled_receipt(call: &PyMcpCall, network: &str) -> Value {
    let receipt = call.payment_response.clone().expect("a payment response");
    assert!(call.payment_response_valid, "a SettleResponse: {receipt}");
    assert_eq!(receipt["success"], true, "{call:#?}");
    assert_eq!(receipt["network"], network);
    let tx = receipt["transaction"].as_str().expect("a transaction hash");
    assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");
    let meta = call.meta.as_ref().expect("_meta on the result");
    assert_eq!(meta["x402/payment-response"]["transaction"], tx);
    receipt
}

#[tokio::test]
async fn the_python_client_pays_the_python_server_through_our_facilitator() -> TestResult {
    if python_or_skip()?.is_none() {
        return Ok(());
    }
    let stack = Stack::start().await?;
    let devnet = stack.devnet();
    let options = PyMcpServerOptions::new(devnet, stack.facilitator_url(), stack.pay_to(), PRICE);
    let server = PyMcpServer::start(&options).await?;
    let payer = stack.payer();
    let before = devnet.usdc_balance(payer.address).await?;
    let call_options = PyMcpCallOptions::new(devnet);

    // Unpaid: the spec's payment-required result, and the tool did not run.
    let unpaid = py_mcp_call(
        server.url(),
        PY_PAID_TOOL,
        json!({"city": "Lisbon"}),
        payer.private_key,
        &PyMcpCallOptions {
            auto_payment: false,
            ..call_options.clone()
        },
    )
    .await?;
    assert!(unpaid.is_error && !unpaid.payment_made, "{unpaid:#?}");
    assert_eq!(unpaid.tools, [PY_PAID_TOOL, PY_FREE_TOOL]);
    let required = unpaid
        .structured_content
        .clone()
        .expect("structuredContent");
    assert_eq!(required["x402Version"], 2);
    assert_eq!(
        required["resource"]["url"],
        format!("mcp://tool/{PY_PAID_TOOL}")
    );
    let accept = &required["accepts"][0];
    assert_eq!(accept["scheme"], "exact");
    assert_eq!(accept["network"], devnet.network());
    assert_eq!(accept["amount"], PRICE.to_string());
    assert_eq!(accept["asset"], devnet.usdc().to_string());
    assert_eq!(accept["payTo"], stack.pay_to().to_string());
    let text: Value = serde_json::from_str(unpaid.text().expect("content[0].text"))?;
    assert_eq!(
        text, required,
        "content[0].text is the same PaymentRequired"
    );
    assert_eq!(server.tool_runs(PY_PAID_TOOL), 0);

    // Paid: the tool's result with the receipt in _meta, and the USDC moved on chain.
    let paid = py_mcp_call(
        server.url(),
        PY_PAID_TOOL,
        json!({"city": "Lisbon"}),
        payer.private_key,
        &call_options,
    )
    .await?;
    assert!(
        !paid.is_error && paid.payment_made,
        "{paid:#?}\n{}",
        server.log_tail()
    );
    assert!(
        paid.text().is_some_and(|t| t.contains("sunny")),
        "{paid:#?}"
    );
    let receipt = settled_receipt(&paid, devnet.network());
    let receipt_payer = receipt["payer"].as_str().unwrap_or_default();
    assert!(
        receipt_payer.eq_ignore_ascii_case(&payer.address.to_string()),
        "{receipt}"
    );
    assert_eq!(server.tool_runs(PY_PAID_TOOL), 1);
    assert_eq!(server.settlements().len(), 1);
    assert_eq!(
        devnet.usdc_balance(stack.pay_to()).await?,
        U256::from(PRICE)
    );
    assert_eq!(
        devnet.usdc_balance(payer.address).await?,
        before - U256::from(PRICE)
    );

    // The free tool needs no payment.
    let free = py_mcp_call(
        server.url(),
        PY_FREE_TOOL,
        json!({"message": "hello"}),
        payer.private_key,
        &call_options,
    )
    .await?;
    assert!(!free.is_error && !free.payment_made, "{free:#?}");
    assert_eq!(free.text(), Some("hello"));
    assert_eq!(
        devnet.usdc_balance(stack.pay_to()).await?,
        U256::from(PRICE)
    );
    Ok(())
}

#[tokio::test]
async fn the_python_client_pays_the_python_server_over_stdio() -> TestResult {
    if python_or_skip()?.is_none() {
        return Ok(());
    }
    let stack = Stack::start().await?;
    let devnet = stack.devnet();
    let options = PyMcpServerOptions::new(devnet, stack.facilitator_url(), stack.pay_to(), PRICE);
    let server = PyMcpStdioServer::new(&options)?;

    let paid = py_mcp_call_stdio(
        &server.command_line(),
        PY_PAID_TOOL,
        json!({"city": "Porto"}),
        stack.payer().private_key,
        &PyMcpCallOptions::new(devnet),
    )
    .await?;
    assert!(
        !paid.is_error && paid.payment_made,
        "{paid:#?}\n{}",
        server.log_text()
    );
    settled_receipt(&paid, devnet.network());
    assert_eq!(server.tool_runs(PY_PAID_TOOL), 1);
    assert_eq!(
        devnet.usdc_balance(stack.pay_to()).await?,
        U256::from(PRICE)
    );
    Ok(())
}
