//! What `PaidTools::builder` refuses to build: tool names that cannot be a
//! route's path segment, duplicate tools, a paid tool without payment
//! options, an endpoint URL that is not one.

use std::sync::Arc;

use paywire_mcp::server::{ConfigError, PaidTools, ToolContext, ToolOutput};
use paywire_server::{HttpFacilitator, PaymentGate, PaymentGateBuilder};
use rmcp::model::{CallToolResult, JsonObject, Tool};

fn gate() -> PaymentGateBuilder {
    // Never contacted: building checks the configuration only.
    let facilitator = HttpFacilitator::new("http://127.0.0.1:9").expect("facilitator client");
    PaymentGate::builder(Arc::new(facilitator))
}

fn tool(name: &str) -> Tool {
    Tool::new(name.to_owned(), "a tool", Arc::new(JsonObject::new()))
}

async fn handler(_: ToolContext, _: JsonObject) -> ToolOutput {
    CallToolResult::success(Vec::new()).into()
}

#[test]
fn tool_names_must_be_path_segments() {
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "a b",
        "x?y",
        "%2e%2e",
        &"n".repeat(129),
    ] {
        let built = PaidTools::builder(gate())
            .paid_tool(tool(bad), |route| route, handler)
            .build();
        assert!(matches!(built, Err(ConfigError::ToolName(_))), "{bad:?}");
        let built = PaidTools::builder(gate())
            .free_tool(tool(bad), handler)
            .build();
        assert!(
            matches!(built, Err(ConfigError::ToolName(_))),
            "{bad:?} (free)"
        );
    }
}

#[test]
fn duplicate_tools_are_refused() {
    let built = PaidTools::builder(gate())
        .free_tool(tool("weather"), handler)
        .free_tool(tool("weather"), handler)
        .build();
    assert!(matches!(built, Err(ConfigError::DuplicateTool(name)) if name == "weather"));
}

#[test]
fn a_paid_tool_needs_payment_options_and_the_endpoint_a_url() {
    let built = PaidTools::builder(gate())
        .paid_tool(tool("weather"), |route| route, handler)
        .build();
    assert!(matches!(built, Err(ConfigError::Gate(_))), "{built:?}");
    let built = PaidTools::builder(gate()).endpoint_url("not a url").build();
    assert!(
        matches!(built, Err(ConfigError::EndpointUrl(_))),
        "{built:?}"
    );
    let built = PaidTools::builder(gate())
        .free_tool(tool("weather.v2"), handler)
        .endpoint_url("https://tools.example.test/mcp")
        .build();
    assert!(built.is_ok(), "{built:?}");
}

/// Field lesson 5 through routing: with case-insensitive paths, `report`
/// would be priced by the earlier `Report` route ($0.01) and run the $1
/// handler. A paid tool must be priced by its own route, or not run.
#[tokio::test]
async fn a_paid_tool_priced_by_another_route_is_refused_and_never_runs() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use paywire_core::{ChainId, ChainIdPattern};
    use paywire_evm::exact::ExactEvmServer;
    use paywire_mcp::wire;
    use paywire_server::{PayTo, PaymentOption, Route, money};
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;

    let priced = |price: &'static str| {
        move |route: Route| {
            route.accept(PaymentOption::exact(
                ChainId::parse("eip155:8453").expect("network"),
                money(price).expect("price"),
                PayTo::address("0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
            ))
        }
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = {
        let runs = Arc::clone(&runs);
        move |_: ToolContext, _: JsonObject| {
            runs.fetch_add(1, Ordering::SeqCst);
            async { CallToolResult::success(Vec::new()) }
        }
    };
    let gate = gate().case_insensitive_paths(true).scheme(
        ChainIdPattern::parse("eip155:*").expect("pattern"),
        Arc::new(ExactEvmServer::default()),
    );
    let server = PaidTools::builder(gate)
        .paid_tool(tool("Report"), priced("$0.01"), handler)
        .paid_tool(tool("report"), priced("$1"), counted)
        .build()
        .expect("tool set");
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_io);
    tokio::spawn(server.serve_io(server_read, server_write));
    let (read, write) = tokio::io::split(client_io);
    let client = ().serve((read, write)).await.expect("MCP over the pipe");

    let result = client
        .call_tool(CallToolRequestParams::new("report"))
        .await
        .expect("tools/call answered");
    assert!(
        wire::payment_required_of(&result).is_none(),
        "offered the other route's price: {result:?}"
    );
    let answer = wire::error_answer_of(&result).expect("an error answer");
    assert_eq!(answer.error, "tool_price_misconfigured");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    client.cancel().await.expect("close");
}

/// A handler that panics before it even returns its future is a failed
/// call, answered at once, not a call that never returns.
#[tokio::test]
async fn a_handler_panicking_before_its_future_is_a_failed_call() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;

    let server = PaidTools::builder(gate())
        .free_tool(
            tool("boom"),
            |_: ToolContext, _: JsonObject| -> std::future::Ready<ToolOutput> {
                panic!("the handler panics before returning its future")
            },
        )
        .build()
        .expect("tool set");
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_io);
    tokio::spawn(server.serve_io(server_read, server_write));
    let (read, write) = tokio::io::split(client_io);
    let client = ().serve((read, write)).await.expect("MCP over the pipe");
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.call_tool(CallToolRequestParams::new("boom")),
    )
    .await
    .expect("answered, not hung")
    .expect("tools/call answered");
    assert_eq!(answered.is_error, Some(true));
    client.cancel().await.expect("close");
}
