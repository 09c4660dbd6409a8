//! Review r3: the unknown-outcome resume against our real facilitator
//! service (SQLite ledger) on an anvil devnet with Circle's USDC.
//!
//! Failing probes are `#[ignore = "finding N"]`; run them with
//! `cargo nextest run -p paywire-server --test review_r3_devnet --run-ignored all`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use alloy_primitives::U256;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use common::*;
use paywire_server::HttpFacilitator;
use paywire_testkit::Devnet;

/// Our facilitator service for `devnet` (as in `tests/devnet.rs`); its URL.
async fn facilitator_service(devnet: &Devnet, dir: &std::path::Path) -> String {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
store = "{store}"
receipt_timeout_seconds = 20
rpc_timeout_seconds = 5

[[chains]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_private_keys = ["${{SIGNER_KEY}}"]
gas_limit = 300000
max_fee_per_gas_gwei = 100

[[chains.assets]]
address = "{usdc}"
symbol = "USDC"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"
"#,
        store = dir.join("ledger.sqlite").display(),
        network = devnet.network(),
        rpc = devnet.rpc_url(),
        usdc = devnet.usdc(),
    );
    let key = devnet.usdc_owner().private_key_hex();
    let config = paywire_facilitator::FacilitatorConfig::parse_with_env(&text, |name| {
        (name == "SIGNER_KEY").then(|| key.clone())
    })
    .expect("facilitator config");
    let state = paywire_facilitator::build(&config)
        .await
        .expect("facilitator");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = paywire_facilitator::serve(listener, state, std::future::pending()).await;
    });
    url
}

/// A reverse proxy (load balancer, API gateway) in front of the facilitator
/// that loses the first `/settle` answer: it reads the facilitator's whole
/// answer, then tells the resource server `502 Bad Gateway`.
struct Lossy {
    upstream: String,
    lose_next_settle: AtomicBool,
    settles: AtomicUsize,
}

async fn lossy_proxy(upstream: String) -> (String, Arc<Lossy>) {
    let lossy = Arc::new(Lossy {
        upstream,
        lose_next_settle: AtomicBool::new(true),
        settles: AtomicUsize::new(0),
    });
    let router = Router::new()
        .fallback(|State(p): State<Arc<Lossy>>, request: Request| async move {
            let (parts, body) = request.into_parts();
            let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
            let url = format!("{}{}", p.upstream, parts.uri.path());
            let mut forward = reqwest::Client::new()
                .request(parts.method.clone(), url)
                .body(body.to_vec());
            if let Some(ct) = parts.headers.get("content-type") {
                forward = forward.header("content-type", ct.as_bytes());
            }
            let answer = forward.send().await.expect("upstream");
            let status = answer.status();
            let content_type = answer.headers().get("content-type").cloned();
            let bytes = answer.bytes().await.expect("upstream body");
            if parts.uri.path() == "/settle" {
                p.settles.fetch_add(1, Ordering::SeqCst);
                if p.lose_next_settle.swap(false, Ordering::SeqCst) {
                    return (axum::http::StatusCode::BAD_GATEWAY, "upstream reset").into_response();
                }
            }
            let mut response = Response::new(axum::body::Body::from(bytes));
            *response.status_mut() = axum::http::StatusCode::from_u16(status.as_u16()).unwrap();
            if let Some(ct) = content_type {
                response
                    .headers_mut()
                    .insert("content-type", ct.as_bytes().try_into().unwrap());
            }
            response
        })
        .with_state(Arc::clone(&lossy));
    (serve(router).await, lossy)
}

/// Finding 2: the facilitator records a settle answer as delivered before it
/// reaches the resource server. When that answer is lost on the way (a 502
/// from a proxy, a reset connection), the server rightly keeps the payment
/// as "outcome unknown", but every retry of the buyer is then refused by the
/// facilitator as a replay (the server resumes anonymously: no API key, no
/// payment-identifier), so the buyer is charged on chain and never served.
#[tokio::test]
#[ignore = "finding 2"]
async fn a_lost_settle_answer_still_lets_the_buyer_get_what_they_paid_for() {
    let devnet = Devnet::start().await.expect("devnet");
    let dir = std::env::temp_dir().join(format!(
        "x402-review-r3-{}-{}",
        std::process::id(),
        alloy_primitives::B256::random()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let facilitator_url = facilitator_service(&devnet, &dir).await;
    let (proxy_url, proxy) = lossy_proxy(facilitator_url).await;
    let facilitator = HttpFacilitator::new(&proxy_url).expect("client");
    let payees = Payees::random();
    let counters = Arc::new(Counters::default());
    let priced = layer(
        Arc::new(facilitator),
        devnet.usdc(),
        payees,
        Knobs::default(),
    );
    let url = format!("{}/cheap", serve(app(Arc::clone(&counters), priced)).await);
    let required = required_of(&client().get(&url).send().await.expect("402"));
    let payment = encode(&sign(&devnet, 1, &required.accepts[0], &required).await);
    let pay = || async {
        let response = client()
            .get(&url)
            .header("PAYMENT-SIGNATURE", &payment)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    };

    let (status, body) = pay().await;
    assert_eq!(status, 503, "unknown outcome: {body}");
    assert_eq!(
        devnet.usdc_balance(payees.merchant).await.expect("balance"),
        U256::from(10_000u64),
        "the buyer was charged"
    );
    let mut last = (0, String::new());
    for _ in 0..5 {
        last = pay().await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        last.0,
        200,
        "charged on chain, kept as 'unknown' by the server, yet every retry with the same \
         payment is refused ({} settle calls reached the facilitator): {}",
        proxy.settles.load(Ordering::SeqCst),
        last.1
    );
    assert_eq!(last.1, CONTENT);
}
