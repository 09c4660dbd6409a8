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
