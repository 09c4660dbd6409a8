//! `paywire gateway` end to end: an upstream axum service behind the gateway,
//! our facilitator (in-process `LocalFacilitator` over HTTP) on an anvil
//! devnet, a payment signed with `ExactEvmClient`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use common::*;
use paywire_core::codec::decode_payment_response;
use paywire_gateway::{Gateway, GatewayConfig};

#[derive(Default)]
struct Upstream {
    priced: AtomicUsize,
    broken: AtomicUsize,
    large: AtomicUsize,
}

fn upstream(state: Arc<Upstream>) -> Router {
    Router::new()
        .route(
            "/free",
            get(|headers: HeaderMap| async move {
                let get = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                format!(
                    "free host={} fwd-host={} conn-private={}",
                    get("host"),
                    get("x-forwarded-host"),
                    get("x-private")
                )
            }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/api/large",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<Upstream>>| async move {
                    s.large.fetch_add(1, Ordering::SeqCst);
                    "L".repeat(4096)
                },
            ),
        )
        .route(
            "/api/priced",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<Upstream>>,
                 headers: HeaderMap| async move {
                    s.priced.fetch_add(1, Ordering::SeqCst);
                    format!(
                        "priced content; signature seen: {}",
                        headers.contains_key("payment-signature")
                    )
                },
            ),
        )
        .route(
            "/api/moved",
            get(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", "https://cdn.example.test/file?sig=secret")],
                )
            }),
        )
        .route(
            "/api/broken",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<Upstream>>| async move {
                    s.broken.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded")
                },
            ),
        )
        .with_state(state)
}

fn config(upstream: &str, facilitator: &str, usdc: Address, payee: Address) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
public_origin = "https://paid.example.test"
upstream = "{upstream}"
well_known_networks = false

[[facilitators]]
url = "http://127.0.0.1:1"   # down: the router fails over

[[facilitators]]
url = "{facilitator}"
token = "${{GATEWAY_TEST_TOKEN}}"

[[networks]]
network = "eip155:31337"
name = "Anvil"
asset = {{ address = "{usdc}", symbol = "USDC", decimals = 6, eip712_name = "USD Coin", eip712_version = "2", usd_stable = true }}

[[routes]]
method = "GET"
path = "/api/priced"
description = "Priced upstream data"
mime_type = "text/plain"
service_name = "Gateway Test"
tags = ["data"]

[[routes.accepts]]
network = "eip155:31337"
price = "$0.01"
pay_to = "{payee}"

[routes.discovery]
query_params = {{ q = "example" }}
output_example = "upstream text"
output_type = "text"

[[routes]]
method = "GET"
path = "/api/broken"

[[routes.accepts]]
network = "eip155:31337"
amount = "10000"
asset = "{usdc}"
pay_to = "{payee}"
"#
    )
}

#[tokio::test]
async fn gateway_sells_an_upstream_end_to_end() {
    let stack = stack().await;
    let (devnet, facilitator_url) = (stack.devnet(), stack.facilitator_url());
    let state = Arc::new(Upstream::default());
    let upstream_url = serve(upstream(Arc::clone(&state))).await;
    let payee = Address::random();
    let text = config(&upstream_url, facilitator_url, devnet.usdc(), payee);
    let config = GatewayConfig::parse_with_env(&text, |name| {
        (name == "GATEWAY_TEST_TOKEN").then(|| "test-token".to_owned())
    })
    .expect("config");
    let gateway = Gateway::from_config(&config, &plugins()).expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gateway_url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    let http = client();

    // Free route: proxied, Host rewritten, hop-by-hop headers stripped.
    let free = http
        .get(format!("{gateway_url}/free"))
        .header("connection", "x-private")
        .header("x-private", "secret")
        .send()
        .await
        .expect("free");
    assert_eq!(free.status().as_u16(), 200);
    let upstream_authority = upstream_url.trim_start_matches("http://");
    let gateway_authority = gateway_url.trim_start_matches("http://");
    assert_eq!(
        free.text().await.expect("body"),
        format!("free host={upstream_authority} fwd-host={gateway_authority} conn-private=-")
    );
    // Request bodies go through (streamed) on free routes.
    let payload = vec![b'x'; 300_000];
    let echo = http
        .post(format!("{gateway_url}/echo"))
        .body(payload.clone())
        .send()
        .await
        .expect("echo");
    assert_eq!(echo.status().as_u16(), 200);
    assert_eq!(
        echo.bytes().await.expect("body").as_ref(),
        payload.as_slice()
    );
    // Unknown upstream paths come back as the upstream answered them.
    let missing = http
        .get(format!("{gateway_url}/nowhere"))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status().as_u16(), 404);

    // Priced route: 402, then paid.
    let unpaid = http
        .get(format!("{gateway_url}/api/priced"))
        .send()
        .await
        .expect("unpaid");
    let required = required_of(&unpaid);
    assert_eq!(
        required.resource.url,
        "https://paid.example.test/api/priced"
    );
    assert_eq!(
        required.resource.description.as_deref(),
        Some("Priced upstream data")
    );
    assert_eq!(required.accepts[0].amount.to_string(), "10000");
    assert_eq!(
        required.resource.service_name.as_deref(),
        Some("Gateway Test")
    );
    let bazaar = &required.extensions.as_ref().expect("extensions").0["bazaar"];
    assert_eq!(
        bazaar["info"],
        serde_json::json!({
            "input": {"type": "http", "method": "GET", "queryParams": {"q": "example"}},
            "output": {"type": "text", "example": "upstream text"}
        })
    );
    assert_eq!(
        paywire_bazaar::validate(&bazaar["info"], &bazaar["schema"]),
        Ok(())
    );
    assert_eq!(state.priced.load(Ordering::SeqCst), 0);

    let payer = devnet.payer(1).address;
    let payer_before = devnet.usdc_balance(payer).await.expect("balance");
    let payment = encode(&sign(devnet, 1, &required.accepts[0], &required).await);
    let paid = http
        .get(format!("{gateway_url}/api/priced"))
        .header("PAYMENT-SIGNATURE", &payment)
        .send()
        .await
        .expect("paid");
    assert_eq!(paid.status().as_u16(), 200);
    let receipt = decode_payment_response(
        header(&paid, "payment-response")
            .expect("PAYMENT-RESPONSE")
            .as_bytes(),
    )
    .expect("receipt");
    assert!(receipt.success);
    assert_eq!(
        paid.text().await.expect("body"),
        "priced content; signature seen: false"
    );
    assert_eq!(state.priced.load(Ordering::SeqCst), 1);
    assert_eq!(
        devnet.usdc_balance(payee).await.expect("balance"),
        U256::from(10_000u64)
    );
    assert_eq!(
        devnet.usdc_balance(payer).await.expect("balance"),
        payer_before - U256::from(10_000u64)
    );
    // The same payment again: refused, upstream not called.
    let replay = http
        .get(format!("{gateway_url}/api/priced"))
        .header("PAYMENT-SIGNATURE", &payment)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status().as_u16(), 402);
    assert_eq!(state.priced.load(Ordering::SeqCst), 1);

    // Upstream 500: the upstream's answer, no receipt, nothing charged.
    let required = required_of(
        &http
            .get(format!("{gateway_url}/api/broken"))
            .send()
            .await
            .expect("unpaid"),
    );
    let payer_before = devnet.usdc_balance(payer).await.expect("balance");
    let payment = encode(&sign(devnet, 1, &required.accepts[0], &required).await);
    let broken = http
        .get(format!("{gateway_url}/api/broken"))
        .header("PAYMENT-SIGNATURE", &payment)
        .send()
        .await
        .expect("broken");
    assert_eq!(broken.status().as_u16(), 500);
    assert!(header(&broken, "payment-response").is_none());
    assert_eq!(broken.text().await.expect("body"), "upstream exploded");
    assert_eq!(state.broken.load(Ordering::SeqCst), 1);
    assert_eq!(
        devnet.usdc_balance(payer).await.expect("balance"),
        payer_before
    );
    assert_eq!(
        devnet.usdc_balance(payee).await.expect("balance"),
        U256::from(10_000u64)
    );
}

#[tokio::test]
async fn upstream_down_is_a_502() {
    let dead = dead_url().await;
    let text = format!(
        "public_origin = \"https://a.example\"\nupstream = \"{dead}\"\n\
         [[facilitators]]\nurl = \"{dead}\"\n"
    );
    let config = GatewayConfig::parse_with_env(&text, |_| None).expect("config");
    let url = serve(
        Gateway::from_config(&config, &plugins())
            .expect("gateway")
            .router(),
    )
    .await;
    let response = client()
        .get(format!("{url}/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 502);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "upstream_unavailable");
}

/// Item 7: an upstream answer over `max_paid_response_bytes` is refused with a
/// clear error, never settled, and the payment stays usable.
#[tokio::test]
async fn oversized_upstream_answer_is_refused_and_not_charged() {
    let stack = stack().await;
    let devnet = stack.devnet();
    let counting = Counting::new(facilitator(&stack));
    let state = Arc::new(Upstream::default());
    let upstream_url = serve(upstream(Arc::clone(&state))).await;
    let payee = Address::random();
    let text = config(&upstream_url, "http://127.0.0.1:1", devnet.usdc(), payee)
        .replace(
            "well_known_networks = false",
            "well_known_networks = false\nmax_paid_response_bytes = 1024",
        )
        .replace(
            "[[routes]]\nmethod = \"GET\"\npath = \"/api/broken\"",
            "[[routes]]\nmethod = \"GET\"\npath = \"/api/large\"\n\
             [[routes.accepts]]\nnetwork = \"eip155:31337\"\nprice = \"$0.01\"\n\
             pay_to = \"PAYEE\"\n\n[[routes]]\nmethod = \"GET\"\npath = \"/api/broken\"",
        )
        .replace("PAYEE", &payee.to_string());
    let config =
        GatewayConfig::parse_with_env(&text, |_| Some("token".to_owned())).expect("config");
    assert_eq!(config.max_paid_response_bytes, 1024);
    let gateway =
        Gateway::with_facilitator(&config, &plugins(), counting.clone()).expect("gateway");
    let url = serve(gateway.router()).await;
    let http = client();
    let required = required_of(
        &http
            .get(format!("{url}/api/large"))
            .send()
            .await
            .expect("402"),
    );
    let payment = encode(&sign(devnet, 2, &required.accepts[0], &required).await);
    let large = http
        .get(format!("{url}/api/large"))
        .header("PAYMENT-SIGNATURE", &payment)
        .send()
        .await
        .expect("large");
    assert_eq!(large.status().as_u16(), 500);
    assert!(header(&large, "payment-response").is_none());
    let body: serde_json::Value = large.json().await.expect("json");
    assert_eq!(body["error"], "response_too_large");
    assert_eq!(state.large.load(Ordering::SeqCst), 1);
    assert_eq!(counting.settles.load(Ordering::SeqCst), 0, "never settled");
    assert_eq!(
        devnet.usdc_balance(payee).await.expect("balance"),
        U256::ZERO
    );
    // The same payment buys an answer within the limit.
    let small = http
        .get(format!("{url}/api/priced"))
        .header("PAYMENT-SIGNATURE", &payment)
        .send()
        .await
        .expect("small");
    assert_eq!(small.status().as_u16(), 200);
    assert_eq!(
        devnet.usdc_balance(payee).await.expect("balance"),
        U256::from(10_000u64)
    );
}

/// Finding 1 (review r3): an upstream redirect on a priced route is what was
/// sold (e.g. a presigned URL): it is settled before it is passed on, once.
#[tokio::test]
async fn a_priced_upstream_redirect_is_settled_before_it_is_passed_on() {
    let stack = stack().await;
    let devnet = stack.devnet();
    let counting = Counting::new(facilitator(&stack));
    let upstream_url = serve(upstream(Arc::new(Upstream::default()))).await;
    let payee = Address::random();
    let text = config(&upstream_url, "http://127.0.0.1:1", devnet.usdc(), payee)
        .replace("path = \"/api/priced\"", "path = \"/api/moved\"");
    let config =
        GatewayConfig::parse_with_env(&text, |_| Some("token".to_owned())).expect("config");
    let gateway =
        Gateway::with_facilitator(&config, &plugins(), counting.clone()).expect("gateway");
    let url = format!("{}/api/moved", serve(gateway.router()).await);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let required = required_of(&http.get(&url).send().await.expect("402"));
    let payment = encode(&sign(devnet, 3, &required.accepts[0], &required).await);
    let paid = || async {
        http.get(&url)
            .header("PAYMENT-SIGNATURE", &payment)
            .send()
            .await
            .expect("paid")
    };
    let moved = paid().await;
    assert_eq!(moved.status().as_u16(), 307);
    assert_eq!(
        header(&moved, "location"),
        Some("https://cdn.example.test/file?sig=secret")
    );
    let receipt = decode_payment_response(
        header(&moved, "payment-response")
            .expect("PAYMENT-RESPONSE")
            .as_bytes(),
    )
    .expect("receipt");
    assert!(receipt.success);
    assert_eq!(counting.settles.load(Ordering::SeqCst), 1);
    assert_eq!(
        devnet.usdc_balance(payee).await.expect("balance"),
        U256::from(10_000u64)
    );
    let again = paid().await;
    assert_eq!(again.status().as_u16(), 402, "used");
    assert!(header(&again, "location").is_none());
    assert_eq!(counting.settles.load(Ordering::SeqCst), 1);
}
