//! Bazaar discovery through the facilitator's HTTP API: settled payments
//! that carry a declaration are cataloged (and only those, and only once the
//! resource's origin confirms them), the `EXTENSION-RESPONSES` header says
//! so, and `/discovery/*` serve the catalog with the specification's filters
//! and paging.

mod common;

use alloy_primitives::Address;
use common::origin::{Origin, wait_for_outcome};
use common::*;
use paywire_bazaar::{Declaration, ListPage, SearchPage};
use paywire_core::{PaymentPayload, ResourceInfo, codec};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Origins in these tests listen on loopback.
const DEVNET_BAZAAR: &str = "[bazaar]\nconfirm_private_addresses = true\n";

fn declared(mut payload: PaymentPayload, url: &str, declaration: Value) -> PaymentPayload {
    let mut extensions = payload.extensions.take().unwrap_or_default();
    extensions.0.insert("bazaar".into(), declaration);
    payload.extensions = Some(extensions);
    let mut resource = ResourceInfo::new(url);
    resource.description = Some("Whatever the payer says".into());
    resource.service_name = Some("Payer's Name".into());
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
    requirements: &paywire_core::PaymentRequirements,
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
    let mut stack = Stack::start_with(StackOptions::default().config(DEVNET_BAZAAR)).await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let http = reqwest::Client::new();
    let pay_to = Address::random();
    let requirements = requirements(devnet, pay_to);
    let (_, declaration) = Declaration::get()
        .query_param("city", "Paris")
        .output_json(json!({"temperature": 21}))
        .into_extension();
    let weather = Origin::start(
        &requirements,
        declaration.clone(),
        "Hourly weather forecast",
    )
    .await?;
    let (_, translation) = Declaration::post_json(json!({"text": "hello"})).into_extension();
    let translator = Origin::start(
        &requirements,
        translation.clone(),
        "Translation tool for agents",
    )
    .await?;

    // Nothing cataloged yet.
    let empty: ListPage = get_json(&http, server, "/discovery/resources").await?;
    assert_eq!(empty.pagination.total, 0);

    // A verified-only payment is not cataloged: only settled payments are.
    let payload = declared(
        pay(devnet, 1, &requirements, None).await?,
        &weather.url("/forecast?city=Rome"),
        declaration.clone(),
    );
    let (status, verified) = post(
        &http,
        &server.url("/verify"),
        &body(&payload, &requirements),
    )
    .await?;
    assert_eq!((status, &verified["isValid"]), (200, &json!(true)));
    let still_empty: ListPage = get_json(&http, server, "/discovery/resources").await?;
    assert_eq!(still_empty.pagination.total, 0);
    assert_eq!(weather.hits(), 0);

    // Settled: the origin is asked after /settle has answered.
    let (settled, header) = settle(&http, server, &payload, &requirements).await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    assert_eq!(header, Some(json!({"bazaar": {"status": "processing"}})));
    wait_for_outcome(&http, &server.base, "cataloged", 1).await?;

    // A declaration that breaks its own schema is refused, the payment still settles.
    let mut broken = declaration.clone();
    broken["info"]["input"]["method"] = json!("TRACE");
    let payload = declared(
        pay(devnet, 2, &requirements, None).await?,
        &weather.url("/other"),
        broken,
    );
    let (settled, header) = settle(&http, server, &payload, &requirements).await?;
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

    // An MCP tool cannot be confirmed against its origin: not listed.
    let (_, tool) = Declaration::mcp_tool(
        "forecast",
        json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    )
    .tool_details("Weather forecast tool for agents", None)
    .into_extension();
    let payload = declared(
        pay(devnet, 3, &requirements, None).await?,
        &weather.url("/mcp"),
        tool,
    );
    let (settled, header) = settle(&http, server, &payload, &requirements).await?;
    assert_eq!(settled["success"], json!(true));
    let header = header.expect("an extension response");
    assert_eq!(header["bazaar"]["status"], "rejected", "{header}");
    assert!(
        header["bazaar"]["rejectedReason"]
            .as_str()
            .unwrap_or_default()
            .contains("MCP"),
        "{header}"
    );

    // A body endpoint on another server.
    let payload = declared(
        pay(devnet, 4, &requirements, None).await?,
        &translator.url("/translate"),
        translation,
    );
    let (settled, _) = settle(&http, server, &payload, &requirements).await?;
    assert_eq!(settled["success"], json!(true));
    wait_for_outcome(&http, &server.base, "cataloged", 2).await?;

    let page: ListPage = get_json(&http, server, "/discovery/resources").await?;
    assert_eq!(page.pagination.total, 2);
    let listed = page
        .items
        .iter()
        .find(|e| e.resource == weather.url("/forecast"))
        .expect("the weather endpoint, without its query string");
    assert_eq!(listed.kind, "http");
    assert_eq!(listed.accepts, vec![requirements.clone()]);
    let metadata = listed.metadata.as_ref().expect("metadata");
    assert_eq!(
        metadata["description"], "Hourly weather forecast",
        "the origin's description, not the payer's"
    );
    assert_eq!(metadata["serviceName"], "Weather Co");
    assert_eq!(metadata["tags"], json!(["weather", "forecast"]));
    assert!(
        metadata.get("iconUrl").is_none(),
        "a localhost icon is dropped"
    );

    let mcp: ListPage = get_json(&http, server, "/discovery/resources?type=mcp").await?;
    assert_eq!(mcp.pagination.total, 0);
    let other_payee: ListPage = http
        .get(server.url(&format!("/discovery/resources?payTo={}", Address::random())))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(other_payee.pagination.total, 0);
    let paged: ListPage = get_json(&http, server, "/discovery/resources?limit=1&offset=1").await?;
    assert_eq!((paged.items.len(), paged.pagination.total), (1, 2));

    let found: SearchPage = get_json(&http, server, "/discovery/search?query=agents+tool").await?;
    assert_eq!(found.resources.len(), 1);
    assert_eq!(found.resources[0].resource, translator.url("/translate"));

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
    stack.restart_facilitator().await?;
    let server = stack.facilitator();
    let page: ListPage = get_json(&http, server, "/discovery/resources").await?;
    assert_eq!(page.pagination.total, 2);
    Ok(())
}

/// Catalog poisoning: a payer pays themselves and echoes someone else's URL.
#[tokio::test]
async fn an_attackers_payment_neither_lists_nor_changes_a_victims_url() -> TestResult {
    let stack = Stack::start_with(StackOptions::default().config(DEVNET_BAZAAR)).await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let http = reqwest::Client::new();
    let (victim, attacker) = (Address::random(), Address::random());
    let victims_offer = requirements(devnet, victim);
    let attackers_offer = requirements(devnet, attacker);
    let (_, declaration) = Declaration::get().into_extension();
    let origin = Origin::start(&victims_offer, declaration.clone(), "The real forecast").await?;
    let url = origin.url("/forecast");
    let attack = |index: usize| {
        let (devnet, offer, declaration, url) = (&devnet, &attackers_offer, &declaration, &url);
        let (http, server) = (&http, &server);
        async move {
            let payload = declared(
                pay(devnet, index, offer, None).await?,
                url,
                declaration.clone(),
            );
            settle(http, server, &payload, offer).await
        }
    };

    // The attacker's payment settles (it is a real payment) but is not listed.
    let (settled, header) = attack(1).await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    assert_eq!(header, Some(json!({"bazaar": {"status": "processing"}})));
    wait_for_outcome(&http, &server.base, "unconfirmed", 1).await?;
    let page: ListPage = get_json(&http, server, "/discovery/resources").await?;
    assert_eq!(page.pagination.total, 0, "{page:?}");

    // Again: the origin's remembered answer refuses it at once.
    let (_, header) = attack(2).await?;
    let header = header.expect("an extension response");
    assert_eq!(header["bazaar"]["status"], "rejected");
    assert!(
        header["bazaar"]["rejectedReason"]
            .as_str()
            .unwrap_or_default()
            .contains("does not offer the paid payTo"),
        "{header}"
    );

    // The victim's own customer pays: listed, as the origin describes it.
    let payload = declared(
        pay(devnet, 3, &victims_offer, None).await?,
        &url,
        declaration.clone(),
    );
    let (settled, header) = settle(&http, server, &payload, &victims_offer).await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    assert_eq!(header, Some(json!({"bazaar": {"status": "success"}})));
    let listed: ListPage = get_json(&http, server, "/discovery/resources").await?;
    assert_eq!(listed.pagination.total, 1);
    let entry = &listed.items[0];
    assert_eq!(entry.resource, url);
    assert_eq!(entry.accepts, vec![victims_offer.clone()]);
    assert_eq!(
        entry.metadata.as_ref().expect("metadata")["description"],
        "The real forecast"
    );

    // A later attack leaves the entry as it is.
    let (_, header) = attack(4).await?;
    assert_eq!(header.expect("a response")["bazaar"]["status"], "rejected");
    let after: ListPage = get_json(&http, server, "/discovery/resources").await?;
    assert_eq!(after.items, listed.items);
    let by_attacker: ListPage = get_json(
        &http,
        server,
        &format!("/discovery/resources?payTo={attacker}"),
    )
    .await?;
    assert_eq!(by_attacker.pagination.total, 0);
    assert_eq!(origin.hits(), 1, "the origin's answer was reused");
    Ok(())
}

#[tokio::test]
async fn private_origins_are_not_fetched_without_the_switch() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let http = reqwest::Client::new();
    let offer = requirements(devnet, Address::random());
    let (_, declaration) = Declaration::get().into_extension();
    let origin = Origin::start(&offer, declaration.clone(), "On loopback").await?;

    // An IP literal is refused before anything is sent.
    let payload = declared(
        pay(devnet, 1, &offer, None).await?,
        &origin.url("/x"),
        declaration.clone(),
    );
    let (settled, header) = settle(&http, server, &payload, &offer).await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    let header = header.expect("an extension response");
    assert_eq!(header["bazaar"]["status"], "rejected");
    assert!(
        header["bazaar"]["rejectedReason"]
            .as_str()
            .unwrap_or_default()
            .contains("private or reserved"),
        "{header}"
    );
    // A name is refused where it resolves.
    let port = origin.base.rsplit(':').next().unwrap_or_default();
    let payload = declared(
        pay(devnet, 2, &offer, None).await?,
        &format!("http://localhost:{port}/x"),
        declaration,
    );
    let (settled, _) = settle(&http, server, &payload, &offer).await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    wait_for_outcome(&http, &server.base, "unconfirmed", 2).await?;
    assert_eq!(origin.hits(), 0);
    let page: ListPage = get_json(&http, server, "/discovery/resources").await?;
    assert_eq!(page.pagination.total, 0);
    Ok(())
}

#[tokio::test]
async fn a_silent_origin_does_not_hold_up_settlement() -> TestResult {
    let stack = Stack::start_with(
        StackOptions::default()
            .config("[bazaar]\nconfirm_private_addresses = true\nconfirm_timeout_seconds = 1\n"),
    )
    .await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/x", silent.local_addr()?);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let http = reqwest::Client::new();
    let offer = requirements(devnet, Address::random());
    let (_, declaration) = Declaration::get().into_extension();
    let payload = declared(pay(devnet, 1, &offer, None).await?, &url, declaration);
    let started = std::time::Instant::now();
    let (settled, header) = settle(&http, server, &payload, &offer).await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    assert_eq!(header, Some(json!({"bazaar": {"status": "processing"}})));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    wait_for_outcome(&http, &server.base, "unconfirmed", 1).await?;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn discovery_can_be_switched_off() -> TestResult {
    let stack =
        Stack::start_with(StackOptions::default().config("[bazaar]\nenabled = false\n")).await?;
    let server = stack.facilitator();
    let http = reqwest::Client::new();
    let response = http.get(server.url("/discovery/resources")).send().await?;
    assert_eq!(response.status().as_u16(), 404);
    let supported: Value = get_json(&http, server, "/supported").await?;
    assert_eq!(supported["extensions"], json!(["payment-identifier"]));
    Ok(())
}

#[test]
fn the_confirmation_timeout_is_bounded_and_private_origins_are_off_by_default() {
    let base = "listen = \"127.0.0.1:0\"\nstore = \"memory\"\n";
    let parse = |extra: &str| {
        paywire_facilitator::FacilitatorConfig::parse_with_env(&format!("{base}{extra}"), |_| None)
    };
    let defaults = parse("").expect("defaults");
    assert!(!defaults.bazaar.confirm_private_addresses);
    assert_eq!(defaults.bazaar.confirm_timeout_seconds, 5);
    for bad in ["0", "31"] {
        let error = parse(&format!("[bazaar]\nconfirm_timeout_seconds = {bad}\n"))
            .expect_err("out of range");
        assert!(
            error.to_string().contains("confirm_timeout_seconds"),
            "{error}"
        );
    }
}
