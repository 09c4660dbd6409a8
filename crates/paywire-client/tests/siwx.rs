//! Sign-in-with-x end to end: our client (with the paywire-siwx sign-in
//! provider) against our axum server (paywire-server layer with `SiwxHooks`),
//! paying through an in-process facilitator on anvil with Circle's real USDC.
//! A wallet that paid for an access pass signs in instead of paying again
//! until the pass ends.

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::routing::get;
use paywire_client::{PaymentOutcome, PaymentStatus, X402Client};
use paywire_core::{ChainId, ChainIdPattern, Facilitator, LocalFacilitator};
use paywire_evm::exact::{EvmChainConfig, ExactEvmClient, ExactEvmFacilitator, ExactEvmServer};
use paywire_evm::rpc::RpcClient;
use paywire_evm::siwx::{EvmSiwxSigner, EvmVerifier};
use paywire_evm::{EvmNetwork, EvmNetworks, EvmSigner, LocalSigner};
use paywire_server::{PaymentLayer, PaymentOption, Route, money};
use paywire_siwx::{
    AccessPolicy, MemoryStore, SessionTokens, SiwxHooks, SiwxServer, SiwxServerConfig, SiwxSignIn,
    SolanaVerifier, VerifierRegistry,
};
use paywire_testkit::Devnet;

const HOUR_MS: u64 = 3_600_000;

struct Env {
    devnet: Devnet,
    url: String,
    payee: Address,
    served: Arc<AtomicUsize>,
    /// 402 answers sent by the server.
    refused: Arc<AtomicUsize>,
    clock: Arc<AtomicU64>,
}

fn chain() -> ChainId {
    ChainId::eip155(31337)
}

async fn env(policy: AccessPolicy) -> Env {
    env_with(policy, false).await
}

/// `sessions`: the server issues session tokens after each sign-in.
async fn env_with(policy: AccessPolicy, sessions: bool) -> Env {
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
        .chain(EvmChainConfig::new(
            EvmNetwork::anvil(devnet.usdc()),
            rpc,
            keys,
        ))
        .build()
        .expect("facilitator");
    let mut local = LocalFacilitator::new();
    local.register(Arc::new(evm));
    let facilitator: Arc<dyn Facilitator> = Arc::new(local);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));

    // A controllable clock for the sign-in server and the entitlements.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_millis();
    let now = u64::try_from(now).expect("milliseconds since 1970 fit in u64");
    let clock = Arc::new(AtomicU64::new(now));
    let read = Arc::clone(&clock);
    let store = Arc::new(MemoryStore::new());
    let siwx = SiwxServer::new(
        SiwxServerConfig::new(url.clone()),
        VerifierRegistry::new()
            .with(Arc::new(EvmVerifier::new()))
            .with(Arc::new(SolanaVerifier)),
        store.clone(),
    )
    .expect("siwx server")
    .with_clock(Arc::new(move || read.load(Ordering::SeqCst)));
    let mut hooks = SiwxHooks::new(Arc::new(siwx), store).route("GET /report", policy);
    if sessions {
        hooks = hooks.sessions(Arc::new(
            SessionTokens::new(&[42; 32], HOUR_MS).expect("session secret"),
        ));
    }

    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(devnet.usdc()));
    let payee = Address::random();
    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin(url.clone())
        .hooks(Arc::new(hooks))
        .route(
            Route::new("GET /report")
                .expect("route")
                .accept(PaymentOption::exact(
                    chain(),
                    money("$0.01").expect("price"),
                    paywire_server::PayTo::address(payee.to_string()),
                )),
        )
        .build()
        .expect("layer");
    let served = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
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
        .layer(layer)
        .layer(axum::middleware::from_fn({
            let refused = Arc::clone(&refused);
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let refused = Arc::clone(&refused);
                async move {
                    let response = next.run(request).await;
                    if response.status() == http::StatusCode::PAYMENT_REQUIRED {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    response
                }
            }
        }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Env {
        devnet,
        url,
        payee,
        served,
        refused,
        clock,
    }
}

/// A paying client that signs in first with the same wallet.
fn client_for(env: &Env, payer: usize) -> X402Client {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(env.devnet.usdc()));
    let signer = LocalSigner::new(env.devnet.payer(payer).signer());
    let sign_in = SiwxSignIn::new(Arc::new(EvmSiwxSigner::new(signer.clone())), vec![chain()]);
    X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmClient::new(signer)),
        )
        .catalog(Arc::new(table))
        .sign_in(Arc::new(sign_in))
        .build()
}

async fn balance(env: &Env, who: Address) -> U256 {
    env.devnet.usdc_balance(who).await.expect("balance")
}

/// GET /report; returns the payment status (`None`: no payment was made).
async fn get_report(env: &Env, client: &X402Client) -> Option<PaymentStatus> {
    let http = reqwest::Client::new();
    let request = http
        .get(format!("{}/report", env.url))
        .build()
        .expect("request");
    let response = client.send(&http, request).await.expect("request");
    assert_eq!(response.status(), 200);
    let status = response
        .extensions()
        .get::<PaymentOutcome>()
        .map(|outcome| outcome.status);
    assert_eq!(response.text().await.expect("body"), "the report");
    status
}

#[tokio::test]
async fn returning_wallet_signs_in_instead_of_paying() {
    let env = env(AccessPolicy::Pass {
        duration_ms: HOUR_MS,
    })
    .await;
    let payer = env.devnet.payer(1).address;
    let client = client_for(&env, 1);

    // First visit: sign-in is refused (no entitlement yet), so the client pays.
    assert_eq!(get_report(&env, &client).await, Some(PaymentStatus::Paid));
    assert_eq!(balance(&env, env.payee).await, U256::from(10_000));
    let payer_after_payment = balance(&env, payer).await;

    // Returning visits: signed in, served, nothing transferred.
    for _ in 0..5 {
        assert_eq!(
            get_report(&env, &client).await,
            None,
            "served without payment"
        );
    }
    assert_eq!(env.served.load(Ordering::SeqCst), 6);
    assert_eq!(balance(&env, env.payee).await, U256::from(10_000));
    assert_eq!(balance(&env, payer).await, payer_after_payment);
}

#[tokio::test]
async fn access_pass_expires_and_payment_is_asked_again() {
    let env = env(AccessPolicy::Pass {
        duration_ms: HOUR_MS,
    })
    .await;
    let client = client_for(&env, 2);

    assert_eq!(get_report(&env, &client).await, Some(PaymentStatus::Paid));
    env.clock.fetch_add(HOUR_MS - 1_000, Ordering::SeqCst);
    assert_eq!(get_report(&env, &client).await, None, "pass still valid");
    assert_eq!(balance(&env, env.payee).await, U256::from(10_000));

    // The pass ends: sign-in alone no longer opens the route.
    env.clock.fetch_add(2_000, Ordering::SeqCst);
    assert_eq!(
        get_report(&env, &client).await,
        Some(PaymentStatus::Paid),
        "payment asked again after the pass ended"
    );
    assert_eq!(balance(&env, env.payee).await, U256::from(20_000));
    // ...and the new payment bought a new pass.
    assert_eq!(get_report(&env, &client).await, None);
    assert_eq!(balance(&env, env.payee).await, U256::from(20_000));
    assert_eq!(env.served.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn counted_uses_run_out() {
    let env = env(AccessPolicy::Uses(2)).await;
    let client = client_for(&env, 3);
    assert_eq!(get_report(&env, &client).await, Some(PaymentStatus::Paid));
    assert_eq!(get_report(&env, &client).await, None);
    assert_eq!(get_report(&env, &client).await, None);
    assert_eq!(get_report(&env, &client).await, Some(PaymentStatus::Paid));
    assert_eq!(balance(&env, env.payee).await, U256::from(20_000));
}

#[tokio::test]
async fn middleware_signs_in_too() {
    let env = env(AccessPolicy::PayOnce).await;
    let client = Arc::new(client_for(&env, 4));
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(paywire_client::X402Middleware::new(client))
        .build();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = http
            .get(format!("{}/report", env.url))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        statuses.push(
            response
                .extensions()
                .get::<PaymentOutcome>()
                .map(|o| o.status),
        );
    }
    assert_eq!(statuses, [Some(PaymentStatus::Paid), None, None]);
    assert_eq!(balance(&env, env.payee).await, U256::from(10_000));
    assert_eq!(env.served.load(Ordering::SeqCst), 3);
}

/// Returns the provider too, to look at its session cache.
fn client_and_sign_in(env: &Env, payer: usize) -> (X402Client, Arc<SiwxSignIn>) {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(env.devnet.usdc()));
    let signer = LocalSigner::new(env.devnet.payer(payer).signer());
    let sign_in = Arc::new(SiwxSignIn::new(
        Arc::new(EvmSiwxSigner::new(signer.clone())),
        vec![chain()],
    ));
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmClient::new(signer)),
        )
        .catalog(Arc::new(table))
        .sign_in(sign_in.clone())
        .build();
    (client, sign_in)
}

#[tokio::test]
async fn session_token_skips_the_402_on_returning_requests() {
    let env = env_with(
        AccessPolicy::Pass {
            duration_ms: 2 * HOUR_MS,
        },
        true,
    )
    .await;
    let (client, sign_in) = client_and_sign_in(&env, 5);

    // Pay: 402, sign-in refused (402), paid.
    assert_eq!(get_report(&env, &client).await, Some(PaymentStatus::Paid));
    assert_eq!(env.refused.load(Ordering::SeqCst), 2);
    assert_eq!(sign_in.cached_sessions(), 0, "no token for a payment");
    // Sign in: 402, signed in and served with a session token.
    assert_eq!(get_report(&env, &client).await, None);
    assert_eq!(env.refused.load(Ordering::SeqCst), 3);
    assert_eq!(sign_in.cached_sessions(), 1);
    // Returning requests: the token goes up front, no 402, no signature.
    for _ in 0..5 {
        assert_eq!(get_report(&env, &client).await, None);
    }
    assert_eq!(
        env.refused.load(Ordering::SeqCst),
        3,
        "zero 402s with a token"
    );
    assert_eq!(env.served.load(Ordering::SeqCst), 7);

    // The token expires (1 h) while the pass (2 h) holds: one 402, the
    // stale token is dropped, the wallet signs in again and gets a new one.
    env.clock.fetch_add(HOUR_MS + 1_000, Ordering::SeqCst);
    assert_eq!(get_report(&env, &client).await, None);
    assert_eq!(env.refused.load(Ordering::SeqCst), 4);
    assert_eq!(sign_in.cached_sessions(), 1);
    assert_eq!(get_report(&env, &client).await, None);
    assert_eq!(env.refused.load(Ordering::SeqCst), 4);

    // The pass ends while the new token is still valid: a token only
    // proves the address, the entitlement is still checked, so the token
    // is refused (402), the sign-in too (402), and the client pays.
    env.clock.fetch_add(HOUR_MS - 500, Ordering::SeqCst);
    assert_eq!(get_report(&env, &client).await, Some(PaymentStatus::Paid));
    assert_eq!(env.refused.load(Ordering::SeqCst), 6);
    assert_eq!(sign_in.cached_sessions(), 0);
    assert_eq!(balance(&env, env.payee).await, U256::from(20_000));
}

// ---------------------------------------------------------------------------
// Interop with the official TypeScript SDK's sign-in-with-x
// (`@x402/extensions/sign-in-with-x` 2.27.0). Needs Node.js and npm.

/// The official TS client (`wrapFetchWithSIWx` with a viem account) signs in to our
/// axum server: refused for a wallet that never paid, served for one that did (no
/// payment, balances unchanged).
#[tokio::test]
async fn ts_siwx_client_signs_in_to_our_server() {
    use paywire_testkit::peer::ts_siwx_fetch;

    let env = env(AccessPolicy::PayOnce).await;
    let url = format!("{}/report", env.url);

    // A wallet that never paid: signed in, but no entitlement.
    let stranger = ts_siwx_fetch(env.devnet.payer(7).private_key, &url)
        .await
        .expect("TS sign-in client");
    let statuses: Vec<u16> = stranger.exchanges.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [402, 402], "{stranger:?}");
    assert!(
        stranger.exchanges[1]
            .request_headers
            .contains_key("sign-in-with-x"),
        "{stranger:?}"
    );
    assert_eq!(env.served.load(Ordering::SeqCst), 0);

    // A wallet that paid (with our client) signs in with the TS client.
    let client = client_for(&env, 6);
    assert_eq!(get_report(&env, &client).await, Some(PaymentStatus::Paid));
    let payer = env.devnet.payer(6).address;
    let paid = balance(&env, payer).await;
    let response = ts_siwx_fetch(env.devnet.payer(6).private_key, &url)
        .await
        .expect("TS sign-in client");
    let statuses: Vec<u16> = response.exchanges.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [402, 200], "{response:?}");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, "the report");
    assert_eq!(env.served.load(Ordering::SeqCst), 2);
    assert_eq!(balance(&env, env.payee).await, U256::from(10_000));
    assert_eq!(balance(&env, payer).await, paid);
}

/// Our client (with `SiwxSignIn`) against the official `@x402/express` server with
/// `createSIWxResourceServerExtension` + `declareSIWxExtension`, settling through the
/// official TS facilitator: pays once, then is let in on a sign-in.
#[tokio::test]
async fn our_client_signs_in_to_the_ts_siwx_server() {
    use paywire_testkit::peer::{TS_SERVER_BODY, TsFacilitator, TsServer};

    let devnet = Devnet::start().await.expect("devnet");
    let facilitator = TsFacilitator::start(&devnet, devnet.usdc_owner().private_key)
        .await
        .expect("TS facilitator");
    let payee = Address::random();
    let server = TsServer::start_with_siwx(&devnet, facilitator.url(), payee, 10_000)
        .await
        .expect("TS SIWX server");
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(devnet.usdc()));
    let signer = LocalSigner::new(devnet.payer(1).signer());
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmClient::new(signer.clone())),
        )
        .catalog(Arc::new(table))
        .sign_in(Arc::new(SiwxSignIn::new(
            Arc::new(EvmSiwxSigner::new(signer)),
            vec![chain()],
        )))
        .build();
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let request = http.get(server.resource_url()).build().expect("request");
        let response = client.send(&http, request).await.unwrap_or_else(|e| {
            panic!(
                "request failed: {e}\n--- TS server log ---\n{}",
                server.log_tail()
            )
        });
        let status = response.status();
        let outcome = response
            .extensions()
            .get::<PaymentOutcome>()
            .map(|o| o.status);
        let body = response.text().await.expect("body");
        assert_eq!(
            status,
            200,
            "{body}\n--- TS server log ---\n{}",
            server.log_tail()
        );
        assert_eq!(body, TS_SERVER_BODY);
        statuses.push(outcome);
    }
    assert_eq!(
        statuses,
        [Some(PaymentStatus::Paid), None, None],
        "--- TS server log ---\n{}",
        server.log_tail()
    );
    assert_eq!(
        devnet.usdc_balance(payee).await.expect("balance"),
        U256::from(10_000)
    );
}
