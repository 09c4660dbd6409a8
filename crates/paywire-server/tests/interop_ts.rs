//! Interop with the official x402 TypeScript SDK (2.27.0): its fetch client
//! (`wrapFetchWithPayment`) pays our axum app (`PaymentLayer` + `ExactEvmServer`) on anvil
//! with Circle's real USDC, settling (a) through our in-process facilitator and (b) through
//! the official TS facilitator reached with our `HttpFacilitator`.
//!
//! Needs Node.js and npm (the pinned SDK is installed once into the test kit's cache).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::routing::get;
use common::{anvil_network, chain, serve, stack};
use paywire_core::codec::decode_payment_response;
use paywire_core::{ChainIdPattern, Facilitator};
use paywire_evm::EvmNetworks;
use paywire_evm::exact::ExactEvmServer;
use paywire_server::{HttpFacilitator, PayTo, PaymentLayer, PaymentOption, Route, money};
use paywire_testkit::Devnet;
use paywire_testkit::peer::{TsFacilitator, ts_client_fetch};

/// $0.01 in USDC base units.
const PRICE: u64 = 10_000;
const BODY: &str = "weather: sunny";

/// Our app selling `GET /weather` for $0.01 to `payee`, settled by `facilitator`.
/// Returns its base URL and the handler's call counter.
async fn our_app(
    devnet: &Devnet,
    facilitator: Arc<dyn Facilitator>,
    payee: Address,
) -> (String, Arc<AtomicUsize>) {
    let mut table = EvmNetworks::empty();
    table.insert(anvil_network(devnet.usdc()));
    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .route(
            Route::new("GET /weather")
                .expect("route")
                .description("Weather report")
                .mime_type("text/plain")
                .accept(PaymentOption::exact(
                    chain(),
                    money("$0.01").expect("price"),
                    PayTo::address(payee.to_string()),
                )),
        )
        .build()
        .expect("layer");
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let app = Router::new()
        .route(
            "/weather",
            get(move || {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    BODY
                }
            }),
        )
        .layer(layer);
    (serve(app).await, served)
}

/// The TS client pays `url`/weather from payer #`payer`; checks the answer, the receipt and
/// the exact balance changes.
async fn ts_client_pays(
    devnet: &Devnet,
    url: &str,
    payer: usize,
    payee: Address,
    served: &AtomicUsize,
) {
    let payer = devnet.payer(payer);
    let before = devnet.usdc_balance(payer.address).await.expect("balance");
    let started = Instant::now();
    let answer = ts_client_fetch(devnet, payer.private_key, &format!("{url}/weather"))
        .await
        .expect("the TS client ran");
    eprintln!("TS client paid request took {:?}", started.elapsed());
    assert_eq!(
        answer.status, 200,
        "the TS client was not served: {answer:#?}"
    );
    assert_eq!(answer.body, BODY);
    let header = answer
        .payment_response_header
        .as_deref()
        .expect("PAYMENT-RESPONSE header");
    let receipt = decode_payment_response(header.as_bytes()).expect("decodable PAYMENT-RESPONSE");
    assert!(receipt.success, "{receipt:?}");
    // The SDK reads our receipt too.
    assert_eq!(answer.payment_response_error, None);
    let theirs = answer
        .payment_response
        .as_ref()
        .expect("the SDK decoded PAYMENT-RESPONSE");
    assert_eq!(theirs["success"], serde_json::json!(true), "{theirs}");
    assert_eq!(
        theirs["transaction"],
        receipt.transaction.as_str(),
        "{theirs}"
    );
    assert_eq!(theirs["network"], "eip155:31337", "{theirs}");
    assert_eq!(receipt.network, chain());
    assert_eq!(
        receipt.payer.as_deref().map(str::to_ascii_lowercase),
        Some(payer.address.to_string().to_ascii_lowercase())
    );
    assert_eq!(receipt.transaction.len(), 66, "{receipt:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(
        devnet.usdc_balance(payee).await.expect("balance"),
        U256::from(PRICE),
        "payee +price exactly"
    );
    assert_eq!(
        devnet.usdc_balance(payer.address).await.expect("balance"),
        before - U256::from(PRICE),
        "payer -price exactly"
    );
}

#[tokio::test]
async fn ts_client_pays_our_server_through_our_facilitator() {
    let stack = stack().await;
    let devnet = stack.devnet();
    let facilitator = common::facilitator(&stack);
    let payee = Address::random();
    let (url, served) = our_app(devnet, facilitator, payee).await;
    ts_client_pays(devnet, &url, 1, payee, &served).await;
}

#[tokio::test]
async fn ts_client_pays_our_server_through_the_ts_facilitator() {
    let devnet = Devnet::start().await.expect("devnet");
    let started = Instant::now();
    let ts = TsFacilitator::start(&devnet, devnet.usdc_owner().private_key)
        .await
        .expect("TS facilitator");
    eprintln!("TS facilitator started in {:?}", started.elapsed());
    let facilitator: Arc<dyn Facilitator> =
        Arc::new(HttpFacilitator::new(ts.url()).expect("HttpFacilitator"));
    let payee = Address::random();
    let (url, served) = our_app(&devnet, facilitator, payee).await;
    ts_client_pays(&devnet, &url, 2, payee, &served).await;
    eprintln!("--- TS facilitator log ---\n{}", ts.log_tail());
}

/// When a settlement was broadcast but its receipt did not arrive in time, the TS
/// facilitator answers `{"success": false, "errorReason": "settlement_pending",
/// "transaction": "0x.."}`; our server recognises it as pending, so a
/// `PendingPolicy::Serve` route serves with the pending receipt.
#[tokio::test]
async fn ts_facilitator_pending_settlement_is_served_on_a_serve_route() {
    use paywire_testkit::DevnetOptions;
    use paywire_testkit::peer::TsFacilitatorOptions;
    use std::time::Duration;

    // No mining: the settlement stays in the pool and the TS facilitator's receipt wait
    // (1.5 s here) times out.
    let devnet = Devnet::start_with(DevnetOptions {
        automine: false,
        block_time: None,
        ..DevnetOptions::default()
    })
    .await
    .expect("devnet");
    let ts = TsFacilitator::start_with(
        &devnet,
        devnet.usdc_owner().private_key,
        TsFacilitatorOptions {
            confirmation_timeout: Some(Duration::from_millis(1500)),
            ..TsFacilitatorOptions::default()
        },
    )
    .await
    .expect("TS facilitator");
    let facilitator: Arc<dyn Facilitator> =
        Arc::new(HttpFacilitator::new(ts.url()).expect("HttpFacilitator"));
    let payees = common::Payees::random();
    let layer = common::layer(facilitator, devnet.usdc(), payees, common::Knobs::default());
    let url = serve(common::app(Arc::new(common::Counters::default()), layer)).await;
    let payer = devnet.payer(1);
    let before = devnet.usdc_balance(payer.address).await.expect("balance");
    let answer = ts_client_fetch(&devnet, payer.private_key, &format!("{url}/pending-ok"))
        .await
        .expect("the TS client ran");
    devnet.mine().await.expect("mine");
    assert_eq!(
        devnet.usdc_balance(payer.address).await.expect("balance"),
        before - U256::from(PRICE),
        "the pending settlement landed"
    );
    assert_eq!(
        answer.status,
        200,
        "a pending settlement on a PendingPolicy::Serve route must be served: {answer:#?}\n{}",
        ts.log_tail()
    );
}
