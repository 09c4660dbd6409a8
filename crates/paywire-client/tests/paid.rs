//! The client end to end: our client pays our axum server (paywire-server layer)
//! through an in-process facilitator on anvil with Circle's real USDC.

use paywire_evm::Eip155ChainId;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use paywire_client::{
    Budget, BudgetRule, BudgetScope, ClientError, PaymentOutcome, PaymentStatus, SelectionPolicy,
    X402Client, X402Middleware,
};
use paywire_core::codec::{self, PAYMENT_SIGNATURE_HEADER};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, Facilitator, FacilitatorRequest, JsonObject,
    LocalFacilitator, PaymentRequirements, SchemeClient, SchemeError, SpendProbe,
};
use paywire_evm::exact::{
    Clock, EvmChainConfig, ExactEvmClient, ExactEvmFacilitator, ExactEvmServer, ExactEvmSpendProbe,
};
use paywire_evm::rpc::RpcClient;
use paywire_evm::{EvmNetwork, EvmNetworks, EvmSigner, LocalSigner};
use paywire_server::{PaymentLayer, PaymentOption, Route, money};
use paywire_testkit::Devnet;

fn network(usdc: Address) -> EvmNetwork {
    EvmNetwork::anvil(usdc)
}

struct Env {
    devnet: Devnet,
    url: String,
    cheap_payee: Address,
    dear_payee: Address,
    served: Arc<AtomicUsize>,
    /// Paid by `GET /flaky`, whose handler fails after the payment arrived.
    flaky_payee: Address,
    /// The `PAYMENT-SIGNATURE` headers `GET /flaky` received.
    flaky_payments: Arc<Mutex<Vec<String>>>,
    facilitator: Arc<dyn Facilitator>,
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
    let flaky_payee = Address::random();
    // Two options for one resource: the dearer one listed first (field lesson 19).
    let layer = PaymentLayer::builder(Arc::clone(&facilitator))
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
                    paywire_server::PayTo::address(dear_payee.to_string()),
                ))
                .accept(PaymentOption::exact(
                    chain,
                    money("$0.01").expect("price"),
                    paywire_server::PayTo::address(cheap_payee.to_string()),
                )),
        )
        .route(
            Route::new("GET /flaky")
                .expect("route")
                .accept(PaymentOption::exact(
                    ChainId::eip155(31337),
                    money("$0.01").expect("price"),
                    paywire_server::PayTo::address(flaky_payee.to_string()),
                )),
        )
        .build()
        .expect("layer");
    let flaky_payments = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::clone(&flaky_payments);
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
        .route(
            "/flaky",
            get(move |headers: HeaderMap| {
                let received = Arc::clone(&received);
                async move {
                    if let Some(payment) = headers.get(PAYMENT_SIGNATURE_HEADER) {
                        let payment = payment.to_str().unwrap_or_default().to_owned();
                        received.lock().expect("lock").push(payment);
                    }
                    (StatusCode::INTERNAL_SERVER_ERROR, "crashed")
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
        flaky_payee,
        flaky_payments,
        facilitator,
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
        let budget = Arc::new(
            Budget::open(&path, vec![rule.clone()])
                .await
                .expect("budget"),
        );
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
    let budget = Arc::new(Budget::open(&path, vec![rule]).await.expect("budget"));
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

/// A wallet that counts its signatures.
struct Counting<W> {
    wallet: W,
    signed: AtomicUsize,
}

impl<W: SchemeClient> SchemeClient for Counting<W> {
    fn scheme(&self) -> &str {
        self.wallet.scheme()
    }
    fn payer(&self, network: &ChainId) -> Option<String> {
        self.wallet.payer(network)
    }
    fn create_payload<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        self.wallet.create_payload(requirements)
    }
}

/// The payer's side of the outstanding-payment tests: a client with a
/// budget of `total_micro_usd`, a spend probe, and a clock (shared by the
/// wallet and the budget) that the test moves along with anvil's.
struct Payer {
    client: X402Client,
    budget: Arc<Budget>,
    wallet: Arc<Counting<ExactEvmClient<LocalSigner>>>,
    /// Seconds added to the system clock.
    skew: Arc<AtomicU64>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

async fn payer_with_probe(
    env: &Env,
    payer: usize,
    total_micro_usd: u128,
    probe: Arc<dyn SpendProbe>,
) -> Payer {
    let skew = Arc::new(AtomicU64::new(0));
    let wallet_skew = Arc::clone(&skew);
    let clock: Clock = Arc::new(move || unix_now() + wallet_skew.load(Ordering::SeqCst));
    let budget_skew = Arc::clone(&skew);
    let budget = Arc::new(
        Budget::in_memory(vec![BudgetRule {
            total: Some(total_micro_usd),
            ..BudgetRule::usd()
        }])
        .await
        .expect("budget")
        .with_clock(move || (unix_now() + budget_skew.load(Ordering::SeqCst)).cast_signed()),
    );
    let wallet = Arc::new(Counting {
        wallet: ExactEvmClient::new(LocalSigner::new(env.devnet.payer(payer).signer()))
            .with_clock(clock),
        signed: AtomicUsize::new(0),
    });
    let mut table = EvmNetworks::empty();
    table.insert(network(env.devnet.usdc()));
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::clone(&wallet) as Arc<dyn SchemeClient>,
        )
        .catalog(Arc::new(table))
        .budget(Arc::clone(&budget))
        .spend_probe(probe)
        .build();
    Payer {
        client,
        budget,
        wallet,
        skew,
    }
}

fn devnet_probe(env: &Env) -> Arc<dyn SpendProbe> {
    let rpc = RpcClient::new(
        vec![env.devnet.rpc_url().to_owned()],
        Duration::from_secs(10),
    )
    .expect("rpc");
    Arc::new(ExactEvmSpendProbe::new().network(ChainId::eip155(31337), Arc::new(rpc)))
}

impl Payer {
    async fn get(&self, env: &Env, path: &str) -> Result<reqwest::Response, ClientError> {
        let http = reqwest::Client::new();
        let request = http
            .get(format!("{}{path}", env.url))
            .build()
            .expect("request");
        self.client.send(&http, request).await
    }

    fn signed(&self) -> usize {
        self.wallet.signed.load(Ordering::SeqCst)
    }

    async fn outstanding(&self) -> u128 {
        self.budget
            .outstanding_total(&BudgetScope::Usd)
            .await
            .expect("budget")
    }

    async fn spent(&self) -> u128 {
        self.budget
            .spent_total(&BudgetScope::Usd)
            .await
            .expect("budget")
    }

    /// Moves anvil's clock and the payer's past the end of every
    /// authorization signed so far (60 s) plus the probe's reorg margin.
    async fn outlive_authorizations(&self, env: &Env) {
        let seconds = 60 + 120 + 30;
        env.devnet
            .increase_time(seconds)
            .await
            .expect("time travel");
        self.skew.fetch_add(seconds, Ordering::SeqCst);
    }
}

async fn expect_budget_refusal(payer: &Payer, env: &Env) {
    let signed = payer.signed();
    match payer.get(env, "/report").await {
        Err(ClientError::NoAcceptableOption(why)) => assert!(why.contains("budget"), "{why}"),
        other => panic!(
            "expected a budget refusal, got {:?}",
            other.map(|r| r.status())
        ),
    }
    assert_eq!(payer.signed(), signed, "refused before signing");
}

/// Field lesson 31: the server answered 500 after it received the signed
/// authorization, so it could still settle it: the budget keeps counting it
/// until the chain proves it unspent after `validBefore`.
#[tokio::test]
async fn a_payment_answered_with_500_counts_until_proven_unspent() {
    let env = env().await;
    let payer = payer_with_probe(&env, 1, 15_000, devnet_probe(&env)).await;
    let before = balance(&env, env.devnet.payer(1).address).await;

    let response = payer.get(&env, "/flaky").await.expect("answer");
    assert_eq!(response.status(), 500);
    let outcome = response.extensions().get::<PaymentOutcome>().cloned();
    assert_eq!(outcome.map(|o| o.status), Some(PaymentStatus::NotPaid));
    assert_eq!(env.flaky_payments.lock().expect("lock").len(), 1);
    assert_eq!(
        payer.outstanding().await,
        10_000,
        "the sent authorization counts"
    );
    // $0.01 outstanding + $0.01 more > $0.015.
    expect_budget_refusal(&payer, &env).await;

    payer.outlive_authorizations(&env).await;
    let response = payer.get(&env, "/report").await.expect("paid");
    assert_eq!(response.status(), 200, "released once proven unspent");
    assert_eq!(payer.outstanding().await, 0);
    assert_eq!(payer.spent().await, 10_000);
    assert_eq!(balance(&env, env.flaky_payee).await, U256::ZERO);
    assert_eq!(
        balance(&env, env.devnet.payer(1).address).await,
        before - U256::from(10_000)
    );
}

/// The server answered 500, then settled the authorization it kept: the
/// budget counts that payment once, as spent.
#[tokio::test]
async fn a_late_settlement_is_counted_once() {
    let env = env().await;
    let payer = payer_with_probe(&env, 2, 30_000, devnet_probe(&env)).await;
    assert_eq!(
        payer.get(&env, "/flaky").await.expect("answer").status(),
        500
    );

    let header = env.flaky_payments.lock().expect("lock")[0].clone();
    let payload = codec::decode_payment_signature(header.as_bytes()).expect("payload");
    let request = FacilitatorRequest::new(payload.clone(), payload.accepted.clone());
    let settled = env.facilitator.settle(&request).await.expect("settle");
    assert!(settled.success, "{settled:?}");
    assert_eq!(balance(&env, env.flaky_payee).await, U256::from(10_000));

    assert_eq!(
        payer.get(&env, "/report").await.expect("paid").status(),
        200
    );
    assert_eq!(
        (payer.outstanding().await, payer.spent().await),
        (10_000, 10_000)
    );
    payer.outlive_authorizations(&env).await;
    // Reconciled as spent: $0.01 + $0.01 + $0.01 fits $0.03 exactly; counted
    // twice, it would not.
    assert_eq!(
        payer.get(&env, "/report").await.expect("paid").status(),
        200
    );
    assert_eq!(
        (payer.outstanding().await, payer.spent().await),
        (0, 30_000)
    );
    expect_budget_refusal(&payer, &env).await;
    assert_eq!(balance(&env, env.cheap_payee).await, U256::from(20_000));
}

/// When the chain cannot be read, an outstanding payment stays counted (and
/// the payment attempt is refused by the budget, not stuck).
#[tokio::test]
async fn an_unreachable_rpc_keeps_the_payment_counted() {
    let env = env().await;
    let unreachable = RpcClient::new(
        vec!["http://127.0.0.1:9/secret-key".to_owned()],
        Duration::from_secs(2),
    )
    .expect("rpc");
    let probe =
        Arc::new(ExactEvmSpendProbe::new().network(ChainId::eip155(31337), Arc::new(unreachable)));
    let payer = payer_with_probe(&env, 4, 15_000, probe).await;
    assert_eq!(
        payer.get(&env, "/flaky").await.expect("answer").status(),
        500
    );
    payer.outlive_authorizations(&env).await;
    let started = std::time::Instant::now();
    expect_budget_refusal(&payer, &env).await;
    assert!(started.elapsed() < Duration::from_secs(10), "never stuck");
    assert_eq!(payer.outstanding().await, 10_000);
}
