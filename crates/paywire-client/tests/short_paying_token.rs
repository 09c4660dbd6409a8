//! Field lesson 12 end to end: our client pays our server (paywire-server
//! layer, in-process facilitator on anvil) in a listed token whose
//! `transferWithAuthorization` succeeds but pays the seller short. The
//! settlement's receipt succeeds; the body must still be withheld and the
//! client must not count the payment as paid.

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::routing::get;
use paywire_client::{PaymentOutcome, PaymentStatus, SelectionPolicy, X402Client};
use paywire_core::{ChainId, ChainIdPattern, Facilitator, LocalFacilitator};
use paywire_evm::exact::{EvmChainConfig, ExactEvmClient, ExactEvmFacilitator, ExactEvmServer};
use paywire_evm::rpc::RpcClient;
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks, EvmSigner, LocalSigner};
use paywire_server::{PaymentLayer, PaymentOption, Route, money};
use paywire_testkit::Devnet;

const CONTENT: &str = "the paid report";
/// $0.01 of the 6-decimal token.
const PRICE: u64 = 10_000;

struct Env {
    devnet: Devnet,
    token: Address,
    url: String,
    seller: Address,
    handled: Arc<AtomicUsize>,
    client: X402Client,
}

/// A seller pricing `GET /report` at $0.01 of a ShortchangeToken that keeps
/// `shortfall` of every payment.
async fn env(shortfall: u64) -> Env {
    let devnet = Devnet::start().await.expect("devnet");
    let token = devnet
        .deploy_shortchange_token("Shortchange Dollar", "1", U256::from(shortfall))
        .await
        .expect("token");
    let payer = devnet.payer(1);
    devnet
        .mint_shortchange_token(token, payer.address, U256::from(10 * PRICE))
        .await
        .expect("mint");
    let network = EvmNetwork::new(
        31337,
        "Anvil",
        EvmAsset {
            address: token,
            symbol: "SHORT".into(),
            decimals: 6,
            eip712_name: "Shortchange Dollar".into(),
            eip712_version: "1".into(),
            usd_stable: true,
            transfer_method: paywire_evm::TransferMethod::Eip3009,
            eip2612: false,
        },
    );
    let mut table = EvmNetworks::empty();
    table.insert(network.clone());

    let rpc = Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).expect("rpc"),
    );
    let key = LocalSigner::random();
    devnet
        .set_eth_balance(key.address(), U256::from(10u128.pow(21)))
        .await
        .expect("fund");
    let signers: Vec<Arc<dyn EvmSigner>> = vec![Arc::new(key)];
    let evm = ExactEvmFacilitator::builder()
        .chain(EvmChainConfig::new(network, rpc, signers))
        .build()
        .expect("facilitator");
    let mut local = LocalFacilitator::new();
    local.register(Arc::new(evm));
    let facilitator: Arc<dyn Facilitator> = Arc::new(local);

    let seller = Address::random();
    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table.clone())),
        )
        .public_origin("https://api.example.test")
        .route(
            Route::new("GET /report")
                .expect("route")
                .accept(PaymentOption::exact(
                    ChainId::eip155(31337),
                    money("$0.01").expect("price"),
                    paywire_server::PayTo::address(seller.to_string()),
                )),
        )
        .build()
        .expect("layer");
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let app = Router::new()
        .route(
            "/report",
            get(move || {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    CONTENT
                }
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmClient::new(LocalSigner::new(payer.signer()))),
        )
        .catalog(Arc::new(table))
        .policy(SelectionPolicy::default())
        .build();
    Env {
        devnet,
        token,
        url,
        seller,
        handled,
        client,
    }
}

/// `GET /report`, paid: (status, body, outcome).
async fn buy(env: &Env) -> (u16, String, PaymentOutcome) {
    let http = reqwest::Client::new();
    let request = http
        .get(format!("{}/report", env.url))
        .build()
        .expect("request");
    let response = env.client.send(&http, request).await.expect("answer");
    let status = response.status().as_u16();
    let outcome = response
        .extensions()
        .get::<PaymentOutcome>()
        .cloned()
        .expect("a payment was made");
    (status, response.text().await.expect("body"), outcome)
}

#[tokio::test]
async fn a_successful_receipt_that_paid_short_never_serves_the_body() {
    let env = env(3_000).await;
    let (status, body, outcome) = buy(&env).await;
    assert!(
        !body.contains(CONTENT),
        "the body was served for a short payment ({status}): {body}"
    );
    assert_ne!(status, 200);
    assert_eq!(outcome.status, PaymentStatus::NotPaid);
    let receipt = outcome.receipt.expect("a failure receipt");
    assert!(!receipt.success);
    // The transaction really ran: the seller got 7,000 of 10,000.
    assert_eq!(
        env.devnet
            .token_balance(env.token, env.seller)
            .await
            .expect("balance"),
        U256::from(PRICE - 3_000)
    );
    assert_eq!(env.handled.load(Ordering::SeqCst), 1, "buffered, not sent");

    // The same token paying in full is served: the refusal was about the amount.
    env.devnet
        .set_shortchange_shortfall(env.token, U256::ZERO)
        .await
        .expect("set shortfall");
    let (status, body, outcome) = buy(&env).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, CONTENT);
    assert_eq!(outcome.status, PaymentStatus::Paid);
}
