//! Bazaar discovery through the facilitator's HTTP API: settled payments
//! that carry a declaration are cataloged (and only those), the
//! `EXTENSION-RESPONSES` header says so, and `/discovery/*` serve the
//! catalog with the specification's filters and paging.

mod common;

use alloy_primitives::Address;
use common::*;
use serde_json::{Value, json};
use x402_bazaar::{Declaration, ListPage, SearchPage};
use x402_core::{PaymentPayload, ResourceInfo, codec};
use x402_testkit::Devnet;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn declared(mut payload: PaymentPayload, url: &str, declaration: Value) -> PaymentPayload {
    let mut extensions = payload.extensions.take().unwrap_or_default();
    extensions.0.insert("bazaar".into(), declaration);
    payload.extensions = Some(extensions);
    let mut resource = ResourceInfo::new(url);
    resource.description = Some("Hourly weather forecast".into());
    resource.service_name = Some("Weather Co".into());
    resource.tags = Some(vec!["weather".into(), "Weather".into(), "forecast".into()]);
    resource.icon_url = Some("http://localhost/icon.png".into());
    payload.resource = Some(resource);
    payload
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    Ok(http.get(server.url(path)).send().await?.json().await?)
}

async fn settle(
    http: &reqwest::Client,
    server: &Server,
    payload: &PaymentPayload,
    requirements: &x402_core::PaymentRequirements,
) -> Result<(Value, Option<Value>), Box<dyn std::error::Error + Send + Sync>> {
    let response = http
        .post(server.url("/settle"))
        .json(&body(payload, requirements))
        .send()
        .await?;
    let header = response
        .headers()
        .get("extension-responses")
        .map(|v| codec::decode_header::<Value>(v.as_bytes()))
        .transpose()?;
    Ok((response.json().await?, header))
}

#[tokio::test]
async fn settled_declarations_are_cataloged_and_served() -> TestResult {
    let devnet = Devnet::start().await?;
    let dir = tempfile::tempdir()?;
    let server = start(&devnet, &dir.path().join("ledger.sqlite")).await?;
    let http = reqwest::Client::new();
    let pay_to = Address::random();
    let requirements = requirements(&devnet, pay_to);

    // Nothing cataloged yet.
    let empty: ListPage = get_json(&http, &server, "/discovery/resources").await?;
    assert_eq!(empty.pagination.total, 0);

    // A verified-only payment is not cataloged: only settled payments are.
    let (_, declaration) = Declaration::get()
        .query_param("city", "Paris")
        .output_json(json!({"temperature": 21}))
        .into_extension();
    let payload = declared(
        pay(&devnet, 1, &requirements, None).await?,
        "https://weather.example/forecast?city=Rome",
        declaration.clone(),
    );
    let (status, verified) = post(
        &http,
        &server.url("/verify"),
        &body(&payload, &requirements),
    )
    .await?;
    assert_eq!((status, &verified["isValid"]), (200, &json!(true)));
    let still_empty: ListPage = get_json(&http, &server, "/discovery/resources").await?;
    assert_eq!(still_empty.pagination.total, 0);

    let (settled, header) = settle(&http, &server, &payload, &requirements).await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    assert_eq!(header, Some(json!({"bazaar": {"status": "success"}})));

    // A declaration that breaks its own schema is refused, the payment still settles.
    let mut broken = declaration.clone();
    broken["info"]["input"]["method"] = json!("TRACE");
    let payload = declared(
        pay(&devnet, 2, &requirements, None).await?,
        "https://evil.example/x",
        broken,
    );
    let (settled, header) = settle(&http, &server, &payload, &requirements).await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    let header = header.expect("an extension response");
    assert_eq!(header["bazaar"]["status"], "rejected");
    assert!(
        header["bazaar"]["rejectedReason"]
            .as_str()
            .unwrap_or_default()
            .contains("schema"),
        "{header}"
    );

    // An MCP tool on another server.
    let (_, tool) = Declaration::mcp_tool(
        "forecast",
        json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    )
    .tool_details("Weather forecast tool for agents", None)
    .into_extension();
    let payload = declared(
        pay(&devnet, 3, &requirements, None).await?,
        "https://tools.example/mcp",
        tool,
    );
    let (settled, _) = settle(&http, &server, &payload, &requirements).await?;
    assert_eq!(settled["success"], json!(true));

    let page: ListPage = get_json(&http, &server, "/discovery/resources").await?;
    assert_eq!(page.pagination.total, 2);
    let weather = page
        .items
        .iter()
        .find(|e| e.resource == "https://weather.example/forecast")
        .expect("the weather endpoint, without its query string");
    assert_eq!(weather.kind, "http");
    assert_eq!(weather.accepts, vec![requirements.clone()]);
    let metadata = weather.metadata.as_ref().expect("metadata");
    assert_eq!(metadata["serviceName"], "Weather Co");
    assert_eq!(metadata["tags"], json!(["weather", "forecast"]));
    assert!(
        metadata.get("iconUrl").is_none(),
        "a localhost icon is dropped"
    );

    let mcp: ListPage = get_json(&http, &server, "/discovery/resources?type=mcp").await?;
    assert_eq!(mcp.items.len(), 1);
    assert_eq!(mcp.items[0].tool_name(), Some("forecast"));
    let other_payee: ListPage = http
        .get(server.url(&format!("/discovery/resources?payTo={}", Address::random())))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(other_payee.pagination.total, 0);
    let paged: ListPage = get_json(&http, &server, "/discovery/resources?limit=1&offset=1").await?;
    assert_eq!((paged.items.len(), paged.pagination.total), (1, 2));

    let found: SearchPage = get_json(&http, &server, "/discovery/search?query=agents+tool").await?;
    assert_eq!(found.resources.len(), 1);
    assert_eq!(found.resources[0].resource, "https://tools.example/mcp");

    // Bad queries are 400s with a reason, never 500s.
    for bad in [
        "/discovery/resources?limit=0",
        "/discovery/resources?limit=101",
        "/discovery/resources?offset=-1",
        "/discovery/search",
        "/discovery/search?query=%20",
    ] {
        let response = http.get(server.url(bad)).send().await?;
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        let error: Value = response.json().await?;
        assert_eq!(error["error"], "invalid_query", "{bad}: {error}");
    }

    // The catalog is in the ledger's SQLite file: it survives a restart.
    server.stop().await;
    let server = start(&devnet, &dir.path().join("ledger.sqlite")).await?;
    let page: ListPage = get_json(&http, &server, "/discovery/resources").await?;
    assert_eq!(page.pagination.total, 2);
    Ok(())
}

#[tokio::test]
async fn discovery_can_be_switched_off() -> TestResult {
    let devnet = Devnet::start().await?;
    let dir = tempfile::tempdir()?;
    let server = start_configured(
        &devnet,
        &dir.path().join("l.sqlite"),
        "[bazaar]\nenabled = false\n",
    )
    .await?;
    let http = reqwest::Client::new();
    let response = http.get(server.url("/discovery/resources")).send().await?;
    assert_eq!(response.status().as_u16(), 404);
    let supported: Value = get_json(&http, &server, "/supported").await?;
    assert_eq!(supported["extensions"], json!(["payment-identifier"]));
    Ok(())
}
