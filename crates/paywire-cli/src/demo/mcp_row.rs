//! The demo's MCP row: an upstream with a `GET /forecast/:city` endpoint,
//! sold by a gateway configuration through `paywire_gateway::mcp` as the
//! paid tool `get_forecast_city` over streamable HTTP, and the demo's agent
//! (its wallet, policy and budget) paying for one call with
//! `paywire_mcp::client::PayingMcpClient`.

use std::sync::Arc;
use std::time::Instant;

use alloy_primitives::Address;
use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use paywire_client::{Budget, BudgetScope, PaymentStatus, X402Client};
use paywire_devnet::Devnet;
use paywire_gateway::GatewayConfig;
use paywire_gateway::mcp::{DEFAULT_MCP_PATH, McpGateway};
use paywire_mcp::client::PayingMcpClient;

use super::{Row, Stage, Style, usdc};

/// The tool the agent calls: `GET /forecast/:city`, named from its route.
const TOOL: &str = "get_forecast_city";

/// The upstream API, unaware of payments.
fn forecast_api() -> Router {
    Router::new().route(
        "/forecast/{city}",
        get(|Path(city): Path<String>| async move {
            axum::Json(serde_json::json!({"city": city, "forecast": "sunny", "celsius": 23}))
        }),
    )
}

/// The gateway configuration selling the forecast as an MCP tool.
fn gateway_config(
    listen: &str,
    upstream: &str,
    facilitator: &str,
    devnet: &Devnet,
    merchant: Address,
) -> Result<GatewayConfig, String> {
    let text = format!(
        r#"listen = "{listen}"
public_origin = "http://{listen}"
upstream = "{upstream}"
well_known_networks = false
[[facilitators]]
url = "{facilitator}"
[[networks]]
network = "eip155:31337"
name = "Anvil"
asset = {{ address = "{usdc}", symbol = "USDC", decimals = 6, eip712_name = "USD Coin", eip712_version = "2", usd_stable = true }}
[[routes]]
method = "GET"
path = "/forecast/:city"
description = "Three-day forecast for a city"
[[routes.accepts]]
network = "eip155:31337"
price = "$0.01"
pay_to = "{merchant}"
"#,
        usdc = devnet.usdc(),
    );
    GatewayConfig::parse_with_env(&text, |_| None).map_err(|e| e.to_string())
}

/// Starts the upstream and the MCP server of its gateway configuration;
/// returns the MCP endpoint's URL.
pub(super) async fn start(
    devnet: &Devnet,
    facilitator: &str,
    merchant: Address,
) -> Result<String, String> {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let upstream_url = format!(
        "http://{}",
        upstream.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move {
        let _ = axum::serve(upstream, forecast_api()).await;
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let listen = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let config = gateway_config(&listen, &upstream_url, facilitator, devnet, merchant)?;
    let gateway =
        McpGateway::from_config(&config, &crate::plugins::registry()).map_err(|e| e.to_string())?;
    tokio::spawn(gateway.serve_http(listener, DEFAULT_MCP_PATH, std::future::pending()));
    Ok(format!("http://{listen}{DEFAULT_MCP_PATH}"))
}

/// What the budget counts in micro-dollars: settled and outstanding.
async fn counted(budget: &Budget) -> Result<u128, String> {
    let spent = budget.spent_total(&BudgetScope::Usd).await;
    let outstanding = budget.outstanding_total(&BudgetScope::Usd).await;
    Ok(spent.map_err(|e| e.to_string())? + outstanding.map_err(|e| e.to_string())?)
}

/// The agent calls the paid tool once; the table row if it was paid, its
/// receipt came back in `_meta` and the budget counted it.
pub(super) async fn pay_for_tool(
    style: &Style,
    stage: &Stage,
    agent: &Arc<X402Client>,
    budget: &Budget,
) -> Result<Row, String> {
    let before = counted(budget).await?;
    let client = PayingMcpClient::connect_http(&stage.mcp, Arc::clone(agent))
        .await
        .map_err(|e| format!("MCP connection: {e}"))?;
    let began = Instant::now();
    let mut arguments = serde_json::Map::new();
    arguments.insert("city".into(), "Lisbon".into());
    let call = client.call_tool(TOOL, arguments).await;
    let latency_ms = began.elapsed().as_secs_f64() * 1000.0;
    let _ = client.close().await;
    let paid = call.map_err(|e| format!("MCP {TOOL}: {e}"))?;
    let outcome = paid
        .outcome
        .filter(|outcome| outcome.status == PaymentStatus::Paid)
        .ok_or_else(|| format!("MCP {TOOL}: not paid: {:?}", paid.result))?;
    if paid.result.is_error == Some(true) {
        return Err(format!("MCP {TOOL}: tool error {:?}", paid.result));
    }
    let receipt = paywire_mcp::wire::receipt_of(&paid.result)
        .and_then(Result::ok)
        .ok_or_else(|| format!("MCP {TOOL}: no receipt in the result's _meta"))?;
    let charged = outcome.requirements.amount;
    let after = counted(budget).await?;
    if after.checked_sub(before) != charged.to_u128() {
        return Err(format!(
            "the budget counted {} micro-USD for a {charged} call",
            after.saturating_sub(before)
        ));
    }
    let text = paid
        .result
        .content
        .first()
        .and_then(|block| block.as_text())
        .map(|text| text.text.clone())
        .unwrap_or_default();
    style.ok(&format!(
        "tools/call {TOOL}(Lisbon): {text}, paid {} (receipt in _meta); the budget counts it",
        usdc(charged.as_u256())
    ));
    let network = &outcome.requirements.network;
    Ok(Row {
        request: format!("MCP {TOOL} (Lisbon)"),
        network: crate::plugins::networks()
            .name_of(network)
            .map_or_else(|| network.to_string(), str::to_owned),
        price: usdc(charged.as_u256()),
        how: "paid".into(),
        tx: receipt.transaction,
        latency_ms,
    })
}
