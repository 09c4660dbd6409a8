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

/// Our facilitator service for `devnet` (as in `tests/devnet.rs`), with
/// `api_key` as its one `[[api_keys]]` entry if given; its URL.
async fn facilitator_service(
    devnet: &Devnet,
    dir: &std::path::Path,
    api_key: Option<&str>,
) -> String {
    let mut text = format!(
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
    if api_key.is_some() {
        text.push_str("\n[[api_keys]]\nkey = \"${API_KEY}\"\nname = \"shop\"\n");
    }
    let key = devnet.usdc_owner().private_key_hex();
    let config = paywire_facilitator::FacilitatorConfig::parse_with_env(&text, |name| match name {
        "SIGNER_KEY" => Some(key.clone()),
        "API_KEY" => api_key.map(str::to_owned),
        _ => None,
    })
    .expect("facilitator config");
    let state = paywire_facilitator::build(
        &config,
        &paywire_core::PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin)),
    )
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
            for name in ["content-type", "authorization"] {
                if let Some(value) = parts.headers.get(name) {
                    forward = forward.header(name, value.as_bytes());
                }
            }
            let answer = forward.send().await.expect("upstream");
            let status = answer.status();
            let content_type = answer.headers().get("content-type").cloned();
            let bytes = answer.bytes().await.expect("upstream body");
            if parts.uri.path() == "/settle" {
                p.settles.fetch_add(1, Ordering::SeqCst);
                if p.lose_next_settle.swap(false, Ordering::SeqCst) {
                    return (http::StatusCode::BAD_GATEWAY, "upstream reset").into_response();
                }
            }
            let mut response = Response::new(axum::body::Body::from(bytes));
            *response.status_mut() = http::StatusCode::from_u16(status.as_u16()).unwrap();
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

/// How the resource server and the buyer are set up in front of the lossy
/// proxy.
#[derive(Clone, Copy)]
struct Setup {
    /// The API key the server presents to the facilitator (`None`: anonymous).
    api_key: Option<&'static str>,
    /// The `payment-identifier` id the buyer's payment carries.
    payment_id: Option<&'static str>,
}

/// What the buyer got: the answers to the first paid request and to each
/// retry with the same payment (until served, at most `retries`), the
/// merchant's balance, the handler runs and the settles that reached the
/// facilitator.
struct Story {
    first: (u16, String),
    retries: Vec<(u16, Option<String>, String)>,
    merchant: U256,
    served: usize,
    settles: usize,
}

/// Finding 2 scenario: the facilitator settles, its answer is lost by a proxy
/// (502), the buyer retries with the same payment.
async fn lose_the_settle_answer(setup: Setup, retries: usize) -> Story {
    let devnet = Devnet::start().await.expect("devnet");
    let dir = std::env::temp_dir().join(format!(
        "x402-review-r3-{}-{}",
        std::process::id(),
        alloy_primitives::B256::random()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let facilitator_url = facilitator_service(&devnet, &dir, setup.api_key).await;
    let (proxy_url, proxy) = lossy_proxy(facilitator_url).await;
    let mut builder = HttpFacilitator::builder(&proxy_url);
    if let Some(key) = setup.api_key {
        builder = builder.bearer_token(key);
    }
    let facilitator = builder.build().expect("client");
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
    let mut payload = sign(&devnet, 1, &required.accepts[0], &required).await;
    if let Some(id) = setup.payment_id {
        let mut extensions = paywire_core::Extensions::new();
        extensions.0.insert(
            "payment-identifier".into(),
            serde_json::json!({"info": {"required": false, "id": id}, "schema": {}}),
        );
        payload.extensions = Some(extensions);
    }
    let payment = encode(&payload);
    let pay = || async {
        let response = client()
            .get(&url)
            .header("PAYMENT-SIGNATURE", &payment)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let challenge = header(&response, "payment-required").map(str::to_owned);
        (status, challenge, response.text().await.expect("body"))
    };
    let (status, _, body) = pay().await;
    let mut story = Story {
        first: (status, body),
        retries: Vec::new(),
        merchant: U256::ZERO,
        served: 0,
        settles: 0,
    };
    for _ in 0..retries {
        let answer = pay().await;
        story.retries.push(answer);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    story.merchant = devnet.usdc_balance(payees.merchant).await.expect("balance");
    story.served = counters.cheap.load(Ordering::SeqCst);
    story.settles = proxy.settles.load(Ordering::SeqCst);
    story
}

/// The answers every lost-answer story starts with: the outcome is unknown
/// to the server, the buyer was charged once.
fn assert_charged_once_unknown(story: &Story) {
    assert_eq!(story.first.0, 503, "unknown outcome: {}", story.first.1);
    assert!(
        story.first.1.contains("settlement_unknown"),
        "{}",
        story.first.1
    );
    assert_eq!(story.merchant, U256::from(10_000u64), "charged once");
}

/// Finding 2, anonymous server: the facilitator refuses the server's retry
/// as a replay. The buyer must then get a clear non-402 answer telling them
/// not to pay again (never a fresh challenge), every time.
#[tokio::test]
async fn a_lost_settle_answer_without_a_key_is_disputed_never_a_new_402() {
    let story = lose_the_settle_answer(
        Setup {
            api_key: None,
            payment_id: None,
        },
        3,
    )
    .await;
    assert_charged_once_unknown(&story);
    for (status, challenge, body) in &story.retries {
        assert_eq!(*status, 409, "{body}");
        assert!(challenge.is_none(), "no new challenge: {body}");
        assert!(body.contains("settlement_disputed"), "{body}");
        assert!(body.contains("do not pay again"), "{body}");
        assert!(!body.contains(CONTENT));
    }
    assert_eq!(
        story.served, 1,
        "the handler ran for the first attempt only"
    );
    assert_eq!(story.merchant, U256::from(10_000u64), "never charged twice");
}

/// Finding 2, a server with an API key: its retry is the facilitator's
/// idempotent retry, so the buyer gets what they paid for, once.
#[tokio::test]
async fn a_lost_settle_answer_still_lets_the_buyer_get_what_they_paid_for() {
    let story = lose_the_settle_answer(
        Setup {
            api_key: Some("review-r3-server-key"),
            payment_id: None,
        },
        2,
    )
    .await;
    assert_served_once_after_the_loss(&story);
}

/// Finding 2, anonymous server, a buyer sending a `payment-identifier` (as
/// our client does when the 402 advertises it): the same id makes the retry
/// idempotent at the facilitator.
#[tokio::test]
async fn a_lost_settle_answer_is_served_to_a_buyer_with_a_payment_identifier() {
    let story = lose_the_settle_answer(
        Setup {
            api_key: None,
            payment_id: Some("pay_review_r3_lost_answer_0001"),
        },
        2,
    )
    .await;
    assert_served_once_after_the_loss(&story);
}

fn assert_served_once_after_the_loss(story: &Story) {
    assert_charged_once_unknown(story);
    let (status, _, body) = &story.retries[0];
    assert_eq!(
        *status, 200,
        "charged on chain, kept as 'unknown' by the server: the retry is served ({} settle \
         calls reached the facilitator): {body}",
        story.settles
    );
    assert_eq!(body, CONTENT);
    let (status, _, body) = &story.retries[1];
    assert_eq!(*status, 402, "served once: {body}");
    assert!(!body.contains(CONTENT));
    assert_eq!(story.served, 1, "the kept response was served");
    assert_eq!(story.settles, 2);
    assert_eq!(story.merchant, U256::from(10_000u64), "charged once");
}
