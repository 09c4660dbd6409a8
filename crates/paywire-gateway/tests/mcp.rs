//! `paywire mcp serve` end to end: the gateway's priced routes as MCP tools
//! over streamable HTTP, an upstream axum service, our facilitator on an
//! anvil devnet (the test kit's `Stack`), payments signed with
//! `ExactEvmClient` and sent by a plain rmcp client in `_meta`.

mod common;

use std::sync::{Arc, Mutex, PoisonError};

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use common::*;
use paywire_core::{PaymentPayload, PaymentRequired};
use paywire_gateway::GatewayConfig;
use paywire_gateway::mcp::McpGateway;
use paywire_mcp::wire;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, JsonObject, MetaObject, RequestMetaObject,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

/// What the upstream was asked: path and query of every request.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, uri: &Uri) {
        let entry = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), ToString::to_string);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }

    fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn upstream(seen: Seen) -> Router {
    Router::new()
        .route(
            "/weather/{city}",
            get(
                |State(seen): State<Seen>, Path(city): Path<String>, uri: Uri| async move {
                    seen.push(&uri);
                    axum::Json(json!({"city": city, "celsius": 21}))
                },
            ),
        )
        .route(
            "/admin/secret",
            get(|State(seen): State<Seen>, uri: Uri| async move {
                seen.push(&uri);
                "the admin secret"
            }),
        )
        .route(
            "/broken",
            get(|State(seen): State<Seen>, uri: Uri| async move {
                seen.push(&uri);
                (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded")
            }),
        )
        .route(
            "/echo",
            post(
                |State(seen): State<Seen>, uri: Uri, body: String| async move {
                    seen.push(&uri);
                    ([("content-type", "application/json")], body)
                },
            ),
        )
        .fallback(|State(seen): State<Seen>, uri: Uri| async move {
            seen.push(&uri);
            "free content"
        })
        .with_state(seen)
}

fn config_text(upstream: &str, facilitator: &str, usdc: Address, payee: Address) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
public_origin = "https://paid.example.test"
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
path = "/weather/:city"
description = "Today's weather in a city"
[[routes.accepts]]
network = "eip155:31337"
price = "$0.01"
pay_to = "{payee}"
[routes.discovery]
query_params = {{ units = "metric" }}
output_example = {{ city = "Paris", celsius = 21 }}

[[routes]]
method = "GET"
path = "/admin/secret"
[[routes.accepts]]
network = "eip155:31337"
price = "$1.00"
pay_to = "{payee}"

[[routes]]
method = "GET"
path = "/broken"
[[routes.accepts]]
network = "eip155:31337"
price = "$0.01"
pay_to = "{payee}"

[[routes]]
method = "POST"
path = "/echo"
tool = "echo"
description = "Echoes a JSON body"
[[routes.accepts]]
network = "eip155:31337"
price = "$0.02"
pay_to = "{payee}"
"#
    )
}

/// The stack, the upstream's log, the payee, and an MCP client of the
/// gateway's tools.
struct Fixture {
    stack: paywire_testkit::Stack,
    seen: Seen,
    payee: Address,
    client: RunningService<RoleClient, ()>,
}

async fn fixture() -> Fixture {
    let stack = stack().await;
    let seen = Seen::default();
    let upstream_url = serve(upstream(seen.clone())).await;
    let payee = Address::random();
    let text = config_text(
        &upstream_url,
        stack.facilitator_url(),
        stack.devnet().usdc(),
        payee,
    );
    let config = GatewayConfig::parse_with_env(&text, |_| None).expect("config");
    let gateway = McpGateway::from_config(&config, &plugins()).expect("MCP gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    tokio::spawn(gateway.serve_http(listener, "/mcp", std::future::pending()));
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(url))
            .await
            .expect("MCP handshake");
    Fixture {
        stack,
        seen,
        payee,
        client,
    }
}

fn arguments(value: Value) -> JsonObject {
    value.as_object().cloned().expect("arguments are an object")
}

impl Fixture {
    async fn call(
        &self,
        tool: &str,
        args: Value,
        payment: Option<&PaymentPayload>,
    ) -> CallToolResult {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(arguments(args));
        if let Some(payment) = payment {
            let mut meta = JsonObject::new();
            wire::attach_payment(&mut meta, payment);
            params.meta = Some(RequestMetaObject(MetaObject(meta)));
        }
        self.client.call_tool(params).await.expect("tools/call")
    }

    /// The payment-required result of an unpaid call.
    async fn required(&self, tool: &str, args: Value) -> PaymentRequired {
        let result = self.call(tool, args, None).await;
        wire::payment_required_of(&result)
            .expect("a payment-required result")
            .expect("a well-formed PaymentRequired")
    }

    /// A payment of `required`'s first option from devnet payer #2.
    async fn pay(&self, required: &PaymentRequired) -> PaymentPayload {
        sign(self.stack.devnet(), 2, &required.accepts[0], required).await
    }

    async fn received(&self) -> U256 {
        self.stack
            .devnet()
            .usdc_balance(self.payee)
            .await
            .expect("balance")
    }
}

#[tokio::test]
async fn priced_routes_are_paid_tools() {
    let fixture = fixture().await;
    let tools = fixture.client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(
        names,
        ["get_weather_city", "get_admin_secret", "get_broken", "echo"]
    );
    let weather = &tools[0];
    assert_eq!(
        weather.description.as_deref(),
        Some("Today's weather in a city")
    );
    let schema = Value::Object((*weather.input_schema).clone());
    assert_eq!(schema["required"], json!(["city"]));
    assert_eq!(schema["properties"]["units"]["examples"], json!(["metric"]));
    assert_eq!(
        tools[3].input_schema["properties"]["body"]["type"],
        "object"
    );

    // Unpaid: the spec's payment-required result; the upstream is not asked.
    let result = fixture
        .call("get_weather_city", json!({"city": "Paris"}), None)
        .await;
    assert_eq!(result.is_error, Some(true));
    let text = &result.content[0].as_text().expect("text content").text;
    assert_eq!(
        serde_json::from_str::<Value>(text).expect("JSON text"),
        result
            .structured_content
            .clone()
            .expect("structuredContent")
    );
    let required = wire::payment_required_of(&result)
        .expect("payment required")
        .expect("well formed");
    assert_eq!(required.resource.url, "mcp://tool/get_weather_city");
    assert_eq!(
        required.resource.description.as_deref(),
        Some("Today's weather in a city")
    );
    assert_eq!(required.accepts[0].amount.to_string(), "10000");
    // The bazaar declaration describes the tool, not the HTTP route.
    let bazaar = &required.extensions.as_ref().expect("extensions").0["bazaar"];
    assert_eq!(bazaar["info"]["input"]["type"], "mcp");
    assert_eq!(bazaar["info"]["input"]["toolName"], "get_weather_city");
    assert_eq!(
        paywire_bazaar::validate(&bazaar["info"], &bazaar["schema"]),
        Ok(())
    );
    assert!(fixture.seen.all().is_empty());

    // Paid: the upstream's answer with the receipt; the USDC moved.
    let payment = fixture.pay(&required).await;
    let paid = fixture
        .call(
            "get_weather_city",
            json!({"city": "Paris", "units": "metric"}),
            Some(&payment),
        )
        .await;
    assert_ne!(paid.is_error, Some(true), "{paid:?}");
    assert_eq!(
        paid.structured_content,
        Some(json!({"city": "Paris", "celsius": 21}))
    );
    let receipt = wire::receipt_of(&paid)
        .expect("a receipt in _meta")
        .expect("a well-formed receipt");
    assert!(receipt.success);
    assert!(receipt.transaction.starts_with("0x"), "{receipt:?}");
    assert_eq!(fixture.received().await, U256::from(10_000u64));
    assert_eq!(fixture.seen.all(), ["/weather/Paris?units=metric"]);

    // The same payment again: asked to pay, the upstream is not called.
    let replay = fixture
        .call("get_weather_city", json!({"city": "Paris"}), Some(&payment))
        .await;
    assert!(wire::payment_required_of(&replay).is_some(), "{replay:?}");
    assert_eq!(fixture.seen.all().len(), 1);

    // A POST route: the `body` argument is the JSON body, priced the same.
    let required = fixture.required("echo", json!({"body": {"n": 1}})).await;
    assert_eq!(required.accepts[0].amount.to_string(), "20000");
    let payment = fixture.pay(&required).await;
    let echoed = fixture
        .call("echo", json!({"body": {"n": 1}}), Some(&payment))
        .await;
    assert_eq!(
        echoed.structured_content,
        Some(json!({"n": 1})),
        "{echoed:?}"
    );
    assert_eq!(fixture.received().await, U256::from(30_000u64));
}

#[tokio::test]
async fn an_upstream_error_is_a_tool_error_and_not_charged() {
    let fixture = fixture().await;
    let required = fixture.required("get_broken", json!({})).await;
    let payment = fixture.pay(&required).await;
    let broken = fixture.call("get_broken", json!({}), Some(&payment)).await;
    assert_eq!(broken.is_error, Some(true));
    assert!(wire::payment_required_of(&broken).is_none(), "{broken:?}");
    assert!(wire::receipt_of(&broken).is_none(), "{broken:?}");
    let text = &broken.content[0].as_text().expect("text").text;
    assert!(
        text.contains("500") && text.contains("upstream exploded"),
        "{text}"
    );
    assert_eq!(fixture.seen.all(), ["/broken"]);
    assert_eq!(fixture.received().await, U256::ZERO);
}

/// Hostile path arguments: none reaches another route or a free path,
/// paid or not; each either stays one segment of `/weather/:city` (and is
/// priced as that) or is refused without running anything.
#[tokio::test]
async fn path_arguments_cannot_reach_another_route() {
    let fixture = fixture().await;
    let hostile = [
        "../admin/secret",
        "..",
        ".",
        "%2e%2e",
        "%2e%2e/admin/secret",
        "..%2fadmin%2fsecret",
        "/",
        "/admin/secret",
        "a/../../admin/secret",
        "?x=1",
        "x#frag",
        "x;y",
        "Paris/..",
        "",
    ];
    // Unpaid: a payment request for this tool's own route, or a refusal.
    for city in hostile {
        let result = fixture
            .call("get_weather_city", json!({ "city": city }), None)
            .await;
        assert_eq!(result.is_error, Some(true), "{city:?}");
        if let Some(required) = wire::payment_required_of(&result) {
            let required = required.expect("well formed");
            assert_eq!(required.resource.url, "mcp://tool/get_weather_city");
            assert_eq!(required.accepts[0].amount.to_string(), "10000", "{city:?}");
        }
    }
    assert!(fixture.seen.all().is_empty(), "{:?}", fixture.seen.all());
    // Paid with a $0.01 payment for the weather: never the $1 route, never
    // a free path.
    let required = fixture
        .required("get_weather_city", json!({"city": "Paris"}))
        .await;
    let mut payment = fixture.pay(&required).await;
    for city in hostile {
        let result = fixture
            .call("get_weather_city", json!({ "city": city }), Some(&payment))
            .await;
        if wire::receipt_of(&result).is_some() {
            // Spent on a request that stayed in its route: a fresh one.
            payment = fixture.pay(&required).await;
        }
    }
    for seen in fixture.seen.all() {
        let path = seen.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        assert_eq!(segments.len(), 2, "{seen}");
        assert_eq!(segments[0], "weather", "{seen}");
        assert!(!seen.contains("admin/secret"), "{seen}");
    }
    assert!(
        !fixture.seen.all().is_empty(),
        "some hostile values are plain city names (e.g. `?x=1`) and are served"
    );
}

/// A tool whose calls an earlier route would price (here `GET /files/*`
/// at $0.001 shadows `GET /files/:name` at $0.01) is refused, never sold
/// at the other route's price.
#[tokio::test]
async fn a_tool_shadowed_by_an_earlier_route_is_refused() {
    let upstream = serve(Router::new()).await;
    let facilitator = dead_url().await;
    let route = |path: &str, price: &str| {
        format!(
            "[[routes]]\nmethod = \"GET\"\npath = \"{path}\"\n[[routes.accepts]]\n\
             network = \"eip155:31337\"\nprice = \"{price}\"\npay_to = \"{}\"\n",
            Address::random()
        )
    };
    let text = format!(
        "public_origin = \"https://a.example\"\nupstream = \"{upstream}\"\n\
         well_known_networks = false\n[[facilitators]]\nurl = \"{facilitator}\"\n\
         [[networks]]\nnetwork = \"eip155:31337\"\nname = \"Anvil\"\n\
         asset = {{ address = \"{}\", symbol = \"USDC\", decimals = 6, eip712_name = \"USD Coin\", eip712_version = \"2\", usd_stable = true }}\n{}{}",
        Address::random(),
        route("/files/*", "$0.001"),
        route("/files/:name", "$0.01"),
    );
    let config = GatewayConfig::parse_with_env(&text, |_| None).expect("config");
    let gateway = McpGateway::from_config(&config, &plugins()).expect("MCP gateway");
    let (client_side, server_side) = tokio::io::duplex(64 * 1024);
    let (read, write) = tokio::io::split(server_side);
    tokio::spawn(gateway.server().serve_io(read, write));
    let client = ().serve(tokio::io::split(client_side)).await.expect("handshake");
    let mut params = CallToolRequestParams::new("get_files_name");
    params.arguments = Some(arguments(json!({"name": "report.pdf"})));
    let result = client.call_tool(params).await.expect("tools/call");
    assert_eq!(result.is_error, Some(true));
    assert!(wire::payment_required_of(&result).is_none(), "{result:?}");
    let text = &result.content[0].as_text().expect("text").text;
    assert!(text.contains("another request"), "{text}");
    // The shadowing route's own tool is sold at its price.
    let mut params = CallToolRequestParams::new("get_files");
    params.arguments = Some(arguments(json!({"path": "report.pdf"})));
    let result = client.call_tool(params).await.expect("tools/call");
    let required = wire::payment_required_of(&result)
        .expect("payment required")
        .expect("well formed");
    assert_eq!(required.accepts[0].amount.to_string(), "1000");
}
