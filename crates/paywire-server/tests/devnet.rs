//! The middleware end to end against an anvil devnet with Circle's USDC, the paywire
//! facilitator service with the EVM plugin (the test kit's `Stack`), and an axum app.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use alloy_primitives::{Address, U256};
use common::*;
use paywire_core::codec::decode_payment_response;
use paywire_core::{Facilitator, PaymentRequired};
use paywire_server::{FacilitatorRouter, HttpFacilitator};
use paywire_testkit::{Devnet, DevnetOptions, Stack};

struct Env {
    stack: Stack,
    url: String,
    counters: Arc<Counters>,
    counting: Arc<Counting>,
    payees: Payees,
}

async fn env_with(facilitator: impl FnOnce(Arc<dyn Facilitator>) -> Arc<dyn Facilitator>) -> Env {
    let stack = stack().await;
    let counting = Counting::new(facilitator(common::facilitator(&stack)));
    let payees = Payees::random();
    let counters = Arc::new(Counters::default());
    let layer = layer(
        counting.clone(),
        stack.devnet().usdc(),
        payees,
        Knobs::default(),
    );
    let url = serve(app(Arc::clone(&counters), layer)).await;
    Env {
        stack,
        url,
        counters,
        counting,
        payees,
    }
}

async fn env() -> Env {
    env_with(|f| f).await
}

impl Env {
    async fn balance(&self, who: Address) -> U256 {
        self.stack
            .devnet()
            .usdc_balance(who)
            .await
            .expect("balance")
    }

    fn payer(&self, index: usize) -> Address {
        self.stack.devnet().payer(index).address
    }

    async fn challenge(&self, path: &str) -> PaymentRequired {
        let response = client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request");
        required_of(&response)
    }

    async fn pay_get(&self, path: &str, payment: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path}", self.url))
            .header("PAYMENT-SIGNATURE", payment)
            .send()
            .await
            .expect("request")
    }

    async fn signed_for(&self, path: &str, payer: usize) -> String {
        let required = self.challenge(path).await;
        encode(&sign(self.stack.devnet(), payer, &required.accepts[0], &required).await)
    }
}

#[tokio::test]
async fn unpaid_request_gets_a_complete_402() {
    let env = env().await;
    let response = client()
        .get(format!("{}/cheap", env.url))
        // A client-controlled Host must not leak into the resource URL.
        .header("host", "evil.example")
        .send()
        .await
        .expect("request");
    let required = required_of(&response);
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert_eq!(
        header(&response, "access-control-expose-headers"),
        Some("PAYMENT-REQUIRED, PAYMENT-RESPONSE")
    );
    assert!(header(&response, "content-type").is_some_and(|c| c.starts_with("application/json")));
    assert_eq!(required.x402_version, 2);
    assert_eq!(required.resource.url, format!("{ORIGIN}/cheap"));
    assert_eq!(
        required.resource.description.as_deref(),
        Some("Cheap <b>stuff</b> & more")
    );
    assert_eq!(required.resource.mime_type.as_deref(), Some("text/plain"));
    assert_eq!(required.accepts.len(), 1);
    let option = &required.accepts[0];
    assert_eq!(option.scheme, "exact");
    assert_eq!(option.network, chain());
    assert_eq!(option.amount.to_string(), "10000");
    assert!(
        option
            .asset
            .eq_ignore_ascii_case(&env.stack.devnet().usdc().to_string())
    );
    assert!(
        option
            .pay_to
            .eq_ignore_ascii_case(&env.payees.merchant.to_string())
    );
    assert_eq!(option.max_timeout_seconds, 60);
    assert_eq!(option.extra_str("name"), Some("USD Coin"));
    assert!(
        required
            .error
            .as_deref()
            .is_some_and(|e| e.contains("PAYMENT-SIGNATURE"))
    );
    let body: PaymentRequired = response.json().await.expect("JSON body");
    assert_eq!(
        body, required,
        "the JSON body is the header's PaymentRequired"
    );
    assert_eq!(Counters::get(&env.counters.cheap), 0);

    // Browsers get a paywall page that still carries the header (lesson 26).
    let html = client()
        .get(format!("{}/cheap", env.url))
        .header("accept", "text/html,application/xhtml+xml;q=0.9")
        .send()
        .await
        .expect("request");
    assert_eq!(required_of(&html), required);
    assert_eq!(header(&html, "cache-control"), Some("no-store"));
    assert!(header(&html, "access-control-expose-headers").is_some());
    assert!(header(&html, "content-type").is_some_and(|c| c.starts_with("text/html")));
    let page = html.text().await.expect("page");
    assert!(page.contains("0.01 USDC"), "{page}");
    assert!(
        page.contains("Cheap &lt;b&gt;stuff&lt;/b&gt; &amp; more"),
        "{page}"
    );
    assert!(!page.contains("<b>stuff"));

    // Unpriced routes pass through untouched.
    let free = client()
        .get(format!("{}/free", env.url))
        .send()
        .await
        .expect("request");
    assert_eq!(free.status().as_u16(), 200);
    assert!(header(&free, "cache-control").is_none());
    assert_eq!(free.text().await.expect("body"), "free");
}

#[tokio::test]
async fn paid_request_is_served_and_settled_on_chain() {
    let env = env().await;
    let before_payee = env.balance(env.payees.merchant).await;
    let before_payer = env.balance(env.payer(1)).await;
    let payment = env.signed_for("/cheap", 1).await;
    let response = env.pay_get("/cheap", &payment).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert!(header(&response, "access-control-expose-headers").is_some());
    let receipt = decode_payment_response(
        header(&response, "payment-response")
            .expect("PAYMENT-RESPONSE")
            .as_bytes(),
    )
    .expect("decodable receipt");
    assert!(receipt.success);
    assert_eq!(receipt.network, chain());
    assert!(
        receipt
            .payer
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(&env.payer(1).to_string()))
    );
    assert_eq!(response.text().await.expect("body"), CONTENT);
    let onchain = env
        .stack
        .devnet()
        .rpc(
            "eth_getTransactionReceipt",
            serde_json::json!([receipt.transaction]),
        )
        .await
        .expect("receipt");
    assert_eq!(onchain["status"], "0x1", "{onchain}");
    assert_eq!(
        env.balance(env.payees.merchant).await,
        before_payee + U256::from(10_000u64)
    );
    assert_eq!(
        env.balance(env.payer(1)).await,
        before_payer - U256::from(10_000u64)
    );

    // The same payment cannot be used again.
    let replay = env.pay_get("/cheap", &payment).await;
    let required = required_of(&replay);
    assert!(required.error.is_some());
    assert_eq!(Counters::get(&env.counters.cheap), 1);
    assert_eq!(
        env.balance(env.payees.merchant).await,
        before_payee + U256::from(10_000u64)
    );
}

/// Lesson 2: a failing handler is not charged.
#[tokio::test]
async fn handler_error_is_not_charged() {
    let env = env().await;
    let before_payer = env.balance(env.payer(2)).await;
    let payment = env.signed_for("/fail", 2).await;
    let response = env.pay_get("/fail", &payment).await;
    assert_eq!(response.status().as_u16(), 500);
    assert!(header(&response, "payment-response").is_none());
    assert_eq!(Counters::get(&env.counters.fail), 1);
    assert_eq!(
        env.counting.settles.load(Ordering::SeqCst),
        0,
        "no settle call"
    );
    assert_eq!(env.balance(env.payer(2)).await, before_payer);
    assert_eq!(env.balance(env.payees.merchant).await, U256::ZERO);
    // The reservation was released: the same payment may be tried again.
    let again = env.pay_get("/fail", &payment).await;
    assert_eq!(again.status().as_u16(), 500);
    assert_eq!(env.counting.settles.load(Ordering::SeqCst), 0);
}

/// Lessons 3 and 4: concurrent copies of one payment run the handler once.
#[tokio::test]
async fn concurrent_copies_of_one_payment_run_the_handler_once() {
    let env = env().await;
    let payment = env.signed_for("/cheap", 3).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let url = format!("{}/cheap", env.url);
        let payment = payment.clone();
        tasks.push(tokio::spawn(async move {
            let response = client()
                .get(url)
                .header("PAYMENT-SIGNATURE", payment)
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            let body = response.text().await.expect("body");
            (status, body)
        }));
    }
    let mut served = 0;
    for task in tasks {
        let (status, body) = task.await.expect("task");
        match status {
            200 => {
                assert_eq!(body, CONTENT);
                served += 1;
            }
            402 => assert!(!body.contains(CONTENT)),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(served, 1);
    assert_eq!(Counters::get(&env.counters.cheap), 1, "handler ran once");
    assert_eq!(
        env.balance(env.payees.merchant).await,
        U256::from(10_000u64),
        "exactly one transfer"
    );
}

/// Lesson 5: payments are bound to the requirements of this request.
#[tokio::test]
async fn cross_route_and_modified_payments_are_refused() {
    let env = env().await;
    let cheap = env.signed_for("/cheap", 4).await;
    let response = env.pay_get("/expensive", &cheap).await;
    let required = required_of(&response);
    assert!(
        required
            .error
            .as_deref()
            .is_some_and(|e| e.contains("does not match")),
        "{required:?}"
    );
    assert_eq!(Counters::get(&env.counters.expensive), 0);

    // Another payTo, signed consistently by the client.
    let challenge = env.challenge("/cheap").await;
    let mut other = challenge.accepts[0].clone();
    other.pay_to = Address::random().to_string();
    let redirected = encode(&sign(env.stack.devnet(), 4, &other, &challenge).await);
    assert_eq!(
        env.pay_get("/cheap", &redirected).await.status().as_u16(),
        402
    );

    // A lower amount in `accepted`.
    let mut lower = challenge.accepts[0].clone();
    lower.amount = 1u64.into();
    let underpaid = encode(&sign(env.stack.devnet(), 4, &lower, &challenge).await);
    assert_eq!(
        env.pay_get("/cheap", &underpaid).await.status().as_u16(),
        402
    );

    assert_eq!(env.counting.verifies.load(Ordering::SeqCst), 0);
    assert_eq!(Counters::get(&env.counters.cheap), 0);
    assert_eq!(env.balance(env.payees.merchant).await, U256::ZERO);
}

/// Dynamic price (by body size) and payTo (by tenant): the 402 and the paid
/// retry agree, and the small price does not buy a big request.
#[tokio::test]
async fn dynamic_price_and_tenant_pay_to() {
    let env = env().await;
    let post = |body: &'static str, tenant: &'static str, payment: Option<String>| {
        let mut request = client()
            .post(format!("{}/dynamic", env.url))
            .header("x-tenant", tenant)
            .body(body);
        if let Some(payment) = payment {
            request = request.header("PAYMENT-SIGNATURE", payment);
        }
        request.send()
    };
    let small = "x".repeat(10).leak() as &'static str;
    let big = "y".repeat(1000).leak() as &'static str;

    let small_required = required_of(&post(small, "acme", None).await.expect("request"));
    let option = &small_required.accepts[0];
    assert_eq!(option.amount.to_string(), "10000");
    assert!(
        option
            .pay_to
            .eq_ignore_ascii_case(&env.payees.acme.to_string())
    );
    let big_required = required_of(&post(big, "acme", None).await.expect("request"));
    assert_eq!(big_required.accepts[0].amount.to_string(), "50000");
    let globex = required_of(&post(small, "globex", None).await.expect("request"));
    assert!(
        globex.accepts[0]
            .pay_to
            .eq_ignore_ascii_case(&env.payees.globex.to_string())
    );

    // The small price for a big body is refused.
    let small_payment = encode(&sign(env.stack.devnet(), 5, option, &small_required).await);
    let refused = post(big, "acme", Some(small_payment.clone()))
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 402);
    // So is acme's payment sent as another tenant.
    let refused = post(small, "globex", Some(small_payment.clone()))
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 402);
    assert_eq!(Counters::get(&env.counters.dynamic), 0);

    // The matching retry is served and pays acme.
    let served = post(small, "acme", Some(small_payment))
        .await
        .expect("request");
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(served.text().await.expect("body"), "processed 10 bytes");
    assert_eq!(env.balance(env.payees.acme).await, U256::from(10_000u64));
    assert_eq!(env.balance(env.payees.globex).await, U256::ZERO);

    // The big price pays for the big body.
    let big_payment = encode(
        &sign(
            env.stack.devnet(),
            5,
            &big_required.accepts[0],
            &big_required,
        )
        .await,
    );
    let served = post(big, "acme", Some(big_payment)).await.expect("request");
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(env.balance(env.payees.acme).await, U256::from(60_000u64));
}

#[tokio::test]
async fn settle_before_handler_runs_handler_after_settlement() {
    let env = env().await;
    let required = {
        let response = client()
            .post(format!("{}/side-effect", env.url))
            .send()
            .await
            .expect("request");
        required_of(&response)
    };
    let payment = encode(&sign(env.stack.devnet(), 6, &required.accepts[0], &required).await);
    let response = client()
        .post(format!("{}/side-effect", env.url))
        .header("PAYMENT-SIGNATURE", payment)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert!(header(&response, "payment-response").is_some());
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert_eq!(Counters::get(&env.counters.side_effect), 1);
    assert_eq!(
        env.balance(env.payees.merchant).await,
        U256::from(10_000u64)
    );
}

/// Failover: the primary facilitator is down, the secondary serves.
#[tokio::test]
async fn router_fails_over_to_the_secondary_http_facilitator() {
    let dead = dead_url().await;
    let env = env().await;
    // The secondary: the stack's facilitator service.
    let live_url = env.stack.facilitator_url().to_owned();
    let primary = Arc::new(HttpFacilitator::new(dead.clone()).expect("client"));
    let secondary = Arc::new(HttpFacilitator::new(live_url.clone()).expect("client"));
    let router: Arc<dyn Facilitator> = Arc::new(FacilitatorRouter::new(vec![primary, secondary]));
    let counters = Arc::new(Counters::default());
    let priced = layer(
        router,
        env.stack.devnet().usdc(),
        env.payees,
        Knobs::default(),
    );
    let url = serve(app(Arc::clone(&counters), priced)).await;

    let response = client()
        .get(format!("{url}/cheap"))
        .send()
        .await
        .expect("request");
    let required = required_of(&response);
    let payment = encode(&sign(env.stack.devnet(), 7, &required.accepts[0], &required).await);
    let response = client()
        .get(format!("{url}/cheap"))
        .header("PAYMENT-SIGNATURE", payment)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.expect("body"), CONTENT);
    assert_eq!(Counters::get(&counters.cheap), 1);
    assert_eq!(
        env.balance(env.payees.merchant).await,
        U256::from(10_000u64)
    );

    // Both down: 502 with a JSON body, nothing served.
    let both_dead: Arc<dyn Facilitator> = Arc::new(FacilitatorRouter::new(vec![
        Arc::new(HttpFacilitator::new(dead.clone()).expect("client")),
        Arc::new(HttpFacilitator::new(dead_url().await).expect("client")),
    ]));
    let counters = Arc::new(Counters::default());
    let priced = layer(
        both_dead,
        env.stack.devnet().usdc(),
        env.payees,
        Knobs::default(),
    );
    let url = serve(app(Arc::clone(&counters), priced)).await;
    let response = client()
        .get(format!("{url}/cheap"))
        .send()
        .await
        .expect("request");
    let required = required_of(&response);
    let payment = encode(&sign(env.stack.devnet(), 7, &required.accepts[0], &required).await);
    let response = client()
        .get(format!("{url}/cheap"))
        .header("PAYMENT-SIGNATURE", payment)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 502);
    assert!(header(&response, "content-type").is_some_and(|c| c.starts_with("application/json")));
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"], "facilitator_unavailable");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(Counters::get(&counters.cheap), 0, "nothing served");
}

/// Our facilitator service (`paywire facilitator`, SQLite ledger in `dir`) for
/// `devnet`, waiting up to `receipt_wait_seconds` for a receipt; its URL.
async fn facilitator_service(
    devnet: &Devnet,
    dir: &std::path::Path,
    receipt_wait_seconds: u64,
) -> String {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
store = "{store}"
receipt_timeout_seconds = {receipt_wait_seconds}
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

/// Lesson 13 end to end: our facilitator waits longer for the receipt than
/// the server waits for it, so the server's settle call times out after the
/// transaction was broadcast. The payment is kept; once the block is mined,
/// the buyer's retry with the same payload gets the kept response and the
/// on-chain receipt, exactly once, for exactly one transfer.
#[tokio::test]
async fn settlement_outliving_the_server_timeout_is_served_on_retry() {
    let devnet = Devnet::start_with(DevnetOptions {
        automine: false,
        block_time: None,
        ..DevnetOptions::default()
    })
    .await
    .expect("devnet");
    let dir = std::env::temp_dir().join(format!(
        "paywire-server-e2e-recovery-{}-{}",
        std::process::id(),
        alloy_primitives::B256::random()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let facilitator_url = facilitator_service(&devnet, &dir, 20).await;
    let facilitator = HttpFacilitator::builder(&facilitator_url)
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("client");
    let counting = Counting::new(Arc::new(facilitator));
    let payees = Payees::random();
    let counters = Arc::new(Counters::default());
    let priced = layer(counting.clone(), devnet.usdc(), payees, Knobs::default());
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
        let receipt = header(&response, "payment-response")
            .map(|h| decode_payment_response(h.as_bytes()).expect("receipt"));
        (status, receipt, response.text().await.expect("body"))
    };

    let (status, _, body) = pay().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("settlement_unknown"), "{body}");
    assert_eq!(Counters::get(&counters.cheap), 1);
    assert_eq!(
        devnet.usdc_balance(payees.merchant).await.expect("balance"),
        U256::ZERO
    );

    devnet.mine().await.expect("mine");
    let mut served = None;
    for _ in 0..20 {
        match pay().await {
            (200, receipt, body) => {
                served = Some((receipt, body));
                break;
            }
            // The facilitator has not recorded the receipt yet.
            (503 | 402, _, body) => {
                assert!(!body.contains(CONTENT));
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            (other, _, body) => panic!("unexpected {other}: {body}"),
        }
    }
    let (receipt, body) = served.expect("served once settlement was confirmed");
    assert_eq!(body, CONTENT);
    let receipt = receipt.expect("PAYMENT-RESPONSE");
    assert!(receipt.success);
    let onchain = devnet
        .rpc(
            "eth_getTransactionReceipt",
            serde_json::json!([receipt.transaction]),
        )
        .await
        .expect("receipt");
    assert_eq!(onchain["status"], "0x1", "{onchain}");
    assert_eq!(
        Counters::get(&counters.cheap),
        1,
        "the kept response was served"
    );
    assert_eq!(
        devnet.usdc_balance(payees.merchant).await.expect("balance"),
        U256::from(10_000u64),
        "exactly one transfer"
    );
    let (status, _, body) = pay().await;
    assert_eq!(status, 402, "used for good");
    assert!(!body.contains(CONTENT));
    let _ = std::fs::remove_dir_all(&dir);
}
