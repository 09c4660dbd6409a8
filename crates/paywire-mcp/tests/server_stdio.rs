//! The paid-tool server over the stdio code path (`serve_io` on an in-memory
//! pipe, newline-delimited JSON-RPC as on stdin/stdout), on the devnet: the
//! same gate, the same answers as over HTTP.

mod server_support;

use alloy_primitives::U256;
use paywire_mcp::wire;
use rmcp::ServiceExt;
use serde_json::json;
use server_support::{Env, PRICE, call, count, receipt_of, required_of, text_of};

const ENDPOINT: &str = "https://tools.example.test/mcp";

#[tokio::test]
async fn a_paid_call_over_a_pipe_is_refused_unpaid_and_served_paid() {
    let env = Env::start().await;
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_io);
    let server = env.server(Some(ENDPOINT));
    let serving = tokio::spawn(server.serve_io(server_read, server_write));
    let (client_read, client_write) = tokio::io::split(client_io);
    let client = ().serve((client_read, client_write)).await.expect("MCP over the pipe");

    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "forecast"));

    let unpaid = call(&client, "forecast", json!({"city": "Lima"}), None).await;
    let required = required_of(&unpaid);
    // With an endpoint URL, tools share it as their resource URL.
    assert_eq!(required.resource.url, ENDPOINT);
    assert_eq!(count(&env.runs.forecast), 0);
    // The tool's bazaar declaration, echoed by the payment, makes a valid
    // catalog entry for this endpoint and tool.
    let payment = env.sign(env.stack.payer(), &required).await;
    let echoed: paywire_core::PaymentPayload =
        serde_json::from_value(payment.clone()).expect("payload");
    let entry = paywire_bazaar::extract(&echoed, &required.accepts[0], 0)
        .expect("a declaration")
        .expect("a valid catalog entry");
    assert_eq!(
        (
            entry.kind.as_str(),
            entry.tool_name(),
            entry.resource.as_str()
        ),
        ("mcp", Some("forecast"), ENDPOINT)
    );

    let malformed = call(
        &client,
        "forecast",
        json!({}),
        Some(json!({"x402Version": 2})),
    )
    .await;
    assert!(required_of(&malformed).error.is_some());
    assert_eq!(count(&env.runs.forecast), 0);

    let paid = call(&client, "forecast", json!({"city": "Lima"}), Some(payment)).await;
    assert!(text_of(&paid).starts_with("sunny in Lima"), "{paid:?}");
    assert!(receipt_of(&paid).success);
    assert_eq!(count(&env.runs.forecast), 1);
    assert_eq!(env.usdc(env.pay_to).await, U256::from(PRICE));

    let free = call(&client, "echo", json!({"a": 1}), None).await;
    assert!(wire::receipt_of(&free).is_none());

    // Closing the client's side ends the server.
    client.cancel().await.expect("client closed");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), serving)
        .await
        .expect("the server stops when its input closes")
        .expect("server task");
    assert!(ended.is_ok(), "{ended:?}");
}
