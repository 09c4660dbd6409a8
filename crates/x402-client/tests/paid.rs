//! The client end to end: our client pays our axum server (x402-server layer)
//! through an in-process facilitator on anvil with Circle's real USDC.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::routing::get;
use x402_client::{
    Budget, BudgetRule, ClientError, PaymentOutcome, PaymentStatus, SelectionPolicy, X402Client,
    X402Middleware,
};
use x402_core::{ChainId, ChainIdPattern, Facilitator, LocalFacilitator};
use x402_evm::exact::{EvmChainConfig, ExactEvmClient, ExactEvmFacilitator, ExactEvmServer};
use x402_evm::rpc::RpcClient;
use x402_evm::{EvmNetwork, EvmNetworks, EvmSigner, LocalSigner};
use x402_server::{PaymentLayer, PaymentOption, Route, money};
use x402_testkit::Devnet;

fn network(usdc: Address) -> EvmNetwork {
    EvmNetwork::anvil(usdc)
}

struct Env {
    devnet: Devnet,
    url: String,
    cheap_payee: Address,
    dear_payee: Address,
    served: Arc<AtomicUsize>,
}

async fn env() -> Env {
    let devnet = Devnet::start().await.expect("devnet");
    let rpc = Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).expect("rpc"),
    );
    let key = LocalSigner::random();
    devnet
        .set_eth_balance(key.address(), U256::from(10u128.pow(21)))
        .await
        .expect("fund");
    let keys: Vec<Arc<dyn EvmSigner>> = vec![Arc::new(key)];
    let evm = ExactEvmFacilitator::builder()
        .chain(EvmChainConfig::new(network(devnet.usdc()), rpc, keys))
        .build()
        .expect("facilitator");
    let mut local = LocalFacilitator::new();
    local.register(Arc::new(evm));
    let facilitator: Arc<dyn Facilitator> = Arc::new(local);

    let mut table = EvmNetworks::empty();
    table.insert(network(devnet.usdc()));
    let chain = ChainId::eip155(31337);
    let (cheap_payee, dear_payee) = (Address::random(), Address::random());
    // Two options for one resource: the dearer one listed first (field lesson 19).
    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin("https://api.example.test")
        .route(
            Route::new("GET /report")
                .expect("route")
                .accept(PaymentOption::exact(
                    chain.clone(),
                    money("$0.05").expect("price"),
                    x402_server::PayTo::address(dear_payee.to_string()),
                ))
                .accept(PaymentOption::exact(
                    chain,
                    money("$0.01").expect("price"),
                    x402_server::PayTo::address(cheap_payee.to_string()),
                )),
        )
        .build()
        .expect("layer");
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let app = Router::new()
        .route(
            "/report",
            get(move || {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "the report"
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
    Env {
        devnet,
        url,
        cheap_payee,
        dear_payee,
        served,
    }
}

fn client_for(
    env: &Env,
    payer: usize,
    budget: Option<Arc<Budget>>,
    policy: SelectionPolicy,
) -> X402Client {
    let mut table = EvmNetworks::empty();
    table.insert(network(env.devnet.usdc()));
    let wallet = ExactEvmClient::new(LocalSigner::new(env.devnet.payer(payer).signer()));
    let mut builder = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(wallet),
        )
        .catalog(Arc::new(table))
        .policy(policy);
    if let Some(budget) = budget {
        builder = builder.budget(budget);
    }
    builder.build()
}

async fn balance(env: &Env, who: Address) -> U256 {
    env.devnet.usdc_balance(who).await.expect("balance")
}

#[tokio::test]
async fn pays_the_cheapest_option_and_reads_the_receipt() {
    let env = env().await;
    let payer = env.devnet.payer(1).address;
    let before = balance(&env, payer).await;
    let client = client_for(&env, 1, None, SelectionPolicy::default());
    let http = reqwest::Client::new();
    let request = http
        .get(format!("{}/report", env.url))
        .build()
        .expect("request");
    let response = client.send(&http, request).await.expect("paid request");
    assert_eq!(response.status(), 200);
    let outcome = response
        .extensions()
        .get::<PaymentOutcome>()
        .cloned()
        .expect("outcome");
    assert_eq!(outcome.status, PaymentStatus::Paid);
    let receipt = outcome.receipt.expect("receipt");
    assert!(receipt.success);
    assert_eq!(receipt.payer.as_deref(), Some(payer.to_string().as_str()));
    assert_eq!(response.text().await.expect("body"), "the report");
    assert_eq!(
        balance(&env, env.cheap_payee).await,
        U256::from(10_000),
        "paid the $0.01 option"
    );
    assert_eq!(
        balance(&env, env.dear_payee).await,
        U256::ZERO,
        "not the first-listed $0.05 option"
    );
    assert_eq!(balance(&env, payer).await, before - U256::from(10_000));
}

/// A body that can be sent only once cannot be re-sent with a payment: the
/// client refuses before signing anything, and nothing is paid.
#[tokio::test]
async fn a_streamed_body_is_never_paid_for() {
    let env = env().await;
    let payer = env.devnet.payer(6).address;
    let before = balance(&env, payer).await;
    let client = client_for(&env, 6, None, SelectionPolicy::default());
    let http = reqwest::Client::new();
    let chunks: Vec<Result<&'static [u8], std::io::Error>> = vec![Ok(b"streamed")];
    let request = http
        .get(format!("{}/report", env.url))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .build()
        .expect("request");
    let served = env.served.load(Ordering::SeqCst);
    match client.send(&http, request).await {
        Err(ClientError::BodyNotReplayable) => {}
        other => panic!(
            "expected BodyNotReplayable, got {:?}",
            other.map(|r| r.status())
        ),
    }
    assert_eq!(balance(&env, payer).await, before, "nothing was paid");
    assert_eq!(
        env.served.load(Ordering::SeqCst),
        served,
        "the handler never ran"
    );
}

#[tokio::test]
async fn middleware_pays_transparently() {
    let env = env().await;
    let client = Arc::new(client_for(&env, 2, None, SelectionPolicy::default()));
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(X402Middleware::new(client))
        .build();
    let response = http
        .get(format!("{}/report", env.url))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .extensions()
            .get::<PaymentOutcome>()
            .map(|o| o.status),
        Some(PaymentStatus::Paid)
    );
    assert_eq!(balance(&env, env.cheap_payee).await, U256::from(10_000));
    assert_eq!(env.served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn budget_stops_spending_and_survives_restarts() {
    let env = env().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("budget.db");
    let rule = BudgetRule {
        total: Some(25_000),
        ..BudgetRule::usd()
    }; // $0.025
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let budget = Arc::new(Budget::open(&path, vec![rule.clone()]).expect("budget"));
        let client = client_for(&env, 3, Some(budget), SelectionPolicy::default());
        let request = http
            .get(format!("{}/report", env.url))
            .build()
            .expect("request");
        assert_eq!(
            client.send(&http, request).await.expect("paid").status(),
            200
        );
    }
    // A restarted agent keeps its spend: the third $0.01 would exceed $0.025.
    let budget = Arc::new(Budget::open(&path, vec![rule]).expect("budget"));
    let client = client_for(&env, 3, Some(budget), SelectionPolicy::default());
    let request = http
        .get(format!("{}/report", env.url))
        .build()
        .expect("request");
    match client.send(&http, request).await {
        Err(ClientError::NoAcceptableOption(why)) => assert!(why.contains("budget"), "{why}"),
        other => panic!("expected a budget refusal, got {other:?}"),
    }
    assert_eq!(
        balance(&env, env.cheap_payee).await,
        U256::from(20_000),
        "exactly two payments"
    );
    assert_eq!(env.served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn policy_refusal_explains_every_option() {
    let env = env().await;
    let policy = SelectionPolicy {
        deny_networks: vec![ChainIdPattern::parse("eip155:31337").expect("pattern")],
        ..SelectionPolicy::default()
    };
    let client = client_for(&env, 4, None, policy);
    let http = reqwest::Client::new();
    let request = http
        .get(format!("{}/report", env.url))
        .build()
        .expect("request");
    match client.send(&http, request).await {
        Err(ClientError::NoAcceptableOption(why)) => {
            assert_eq!(why.matches("network denied").count(), 2, "{why}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(env.served.load(Ordering::SeqCst), 0);
}
