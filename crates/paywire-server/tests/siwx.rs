//! The payment layer with sign-in-with-x hooks (`paywire_siwx::SiwxHooks`) on an
//! anvil devnet with Circle's real USDC: the challenge in every 402, and the
//! security properties of the sign-in gate (entitlements are per address,
//! proofs are per resource, store outages are 503s).

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::routing::get;
use paywire_client::X402Client;
use paywire_core::codec::{
    PAYMENT_REQUIRED_HEADER, SIGN_IN_WITH_X_HEADER, decode_payment_required,
};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, Facilitator, LocalFacilitator, PaymentRequired,
};
use paywire_evm::exact::{EvmChainConfig, ExactEvmClient, ExactEvmFacilitator, ExactEvmServer};
use paywire_evm::rpc::RpcClient;
use paywire_evm::siwx::{EvmSiwxSigner, EvmVerifier};
use paywire_evm::{EvmNetwork, EvmNetworks, EvmSigner, LocalSigner};
use paywire_server::{PaymentLayer, PaymentOption, Route, money};
use paywire_siwx::{
    AccessPolicy, Entitlement, EntitlementStore, MemoryStore, SESSION_HEADER, SessionTokens,
    SiwxExtension, SiwxHooks, SiwxServer, SiwxServerConfig, SolanaVerifier, StoreError,
    VerifierRegistry, sign_in,
};
use paywire_testkit::Devnet;

const HOUR_MS: u64 = 3_600_000;

struct Env {
    devnet: Devnet,
    url: String,
    host: String,
    payee: Address,
}

fn chain() -> ChainId {
    ChainId::eip155(31337)
}

/// Entitlements that can be switched off, to simulate an outage.
struct Flaky {
    inner: MemoryStore,
    down: std::sync::atomic::AtomicBool,
}

impl Flaky {
    fn check_up(&self) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError("database is down".into()))
        } else {
            Ok(())
        }
    }
}

impl EntitlementStore for Flaky {
    fn grant<'a>(&'a self, e: &'a Entitlement) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check_up()?;
            self.inner.grant(e).await
        })
    }
    fn check<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<Entitlement>, StoreError>> {
        Box::pin(async move {
            self.check_up()?;
            self.inner.check(address, network, scope, now).await
        })
    }
    fn revoke<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.inner.revoke(address, network, scope)
    }
    fn revoke_session<'a>(
        &'a self,
        id: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.revoke_session(id, expires_at)
    }
    fn is_session_revoked<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.is_session_revoked(id)
    }
}

/// `/a` and `/b` share the scope `reports` (a 1-hour pass); `/auth` is
/// auth-only; `/plain` is priced without sign-in.
async fn env(entitlements: Arc<Flaky>) -> Env {
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
    let host = listener.local_addr().expect("addr").to_string();
    let url = format!("http://{host}");
    let siwx = SiwxServer::new(
        SiwxServerConfig::new(url.clone()),
        VerifierRegistry::new()
            .with(Arc::new(EvmVerifier::new()))
            .with(Arc::new(SolanaVerifier)),
        Arc::new(MemoryStore::new()),
    )
    .expect("siwx server");
    let pass = AccessPolicy::Pass {
        duration_ms: HOUR_MS,
    };
    let hooks = SiwxHooks::new(Arc::new(siwx), entitlements)
        .scoped_route("GET /a", pass, "reports")
        .scoped_route("GET /b", pass, "reports")
        .auth_only("GET /auth")
        .sessions(Arc::new(
            SessionTokens::new(&[42; 32], 60_000).expect("tokens"),
        ));

    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(devnet.usdc()));
    let payee = Address::random();
    let option = || {
        PaymentOption::exact(
            chain(),
            money("$0.01").expect("price"),
            paywire_server::PayTo::address(payee.to_string()),
        )
    };
    let mut builder = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin(url.clone())
        .hooks(Arc::new(hooks));
    for path in ["/a", "/b", "/auth", "/plain"] {
        builder = builder.route(
            Route::new(&format!("GET {path}"))
                .expect("route")
                .accept(option()),
        );
    }
    let layer = builder.build().expect("layer");
    let app = Router::new()
        .route("/a", get(|| async { "A" }))
        .route("/b", get(|| async { "B" }))
        .route("/auth", get(|| async { "hello" }))
        .route("/plain", get(|| async { "plain" }))
        .layer(layer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Env {
        devnet,
        url,
        host,
        payee,
    }
}

fn flaky() -> Arc<Flaky> {
    Arc::new(Flaky {
        inner: MemoryStore::new(),
        down: false.into(),
    })
}

fn signer(env: &Env, payer: usize) -> LocalSigner {
    LocalSigner::new(env.devnet.payer(payer).signer())
}

/// Pays for `path` with payer `payer` (no sign-in).
async fn pay(env: &Env, payer: usize, path: &str) {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(env.devnet.usdc()));
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmClient::new(signer(env, payer))),
        )
        .catalog(Arc::new(table))
        .build();
    let http = reqwest::Client::new();
    let request = http
        .get(format!("{}{path}", env.url))
        .build()
        .expect("request");
    let response = client.send(&http, request).await.expect("paid");
    assert_eq!(response.status(), 200);
}

/// An unpaid GET: the 402's requirements (from the header), checked to be
/// the same as the JSON body's.
async fn challenge(env: &Env, path: &str) -> PaymentRequired {
    let response = reqwest::get(format!("{}{path}", env.url))
        .await
        .expect("get");
    assert_eq!(response.status(), 402);
    let header = response
        .headers()
        .get(PAYMENT_REQUIRED_HEADER)
        .expect("PAYMENT-REQUIRED")
        .as_bytes()
        .to_vec();
    let from_header = decode_payment_required(&header).expect("decode");
    let body: serde_json::Value = response.json().await.expect("json body");
    assert_eq!(
        serde_json::to_value(&from_header).expect("json"),
        body,
        "header and body carry the same 402"
    );
    from_header
}

fn extension(required: &PaymentRequired) -> SiwxExtension {
    SiwxExtension::from_extensions(required.extensions.as_ref().expect("extensions"))
        .expect("sign-in-with-x present")
        .expect("well-formed")
}

/// Signs the challenge of a fresh 402 of `challenge_path` with payer
/// `payer` and sends the proof to `send_path`.
async fn signed_get(
    env: &Env,
    payer: usize,
    challenge_path: &str,
    send_path: &str,
) -> reqwest::Response {
    let ext = extension(&challenge(env, challenge_path).await);
    let proof = sign_in(
        &ext,
        &env.host,
        &chain(),
        &EvmSiwxSigner::new(signer(env, payer)),
    )
    .await
    .expect("sign in");
    reqwest::Client::new()
        .get(format!("{}{send_path}", env.url))
        .header(SIGN_IN_WITH_X_HEADER, proof.to_header())
        .send()
        .await
        .expect("send")
}

async fn error_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 402);
    let body: serde_json::Value = response.json().await.expect("json");
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_402_carries_a_fresh_challenge_for_the_route_networks() {
    let env = env(flaky()).await;
    let first = challenge(&env, "/a").await;
    let second = challenge(&env, "/a").await;
    let (one, two) = (extension(&first), extension(&second));
    let chains: Vec<(&str, &str)> = one
        .supported_chains
        .iter()
        .map(|c| (c.chain_id.as_str(), c.kind.as_str()))
        .collect();
    assert_eq!(chains, [("eip155:31337", "eip191")]);
    assert_ne!(one.info.nonce, two.info.nonce, "a fresh nonce per 402");
    assert_eq!(one.info.domain, env.host);
    assert_eq!(one.info.uri, format!("{}/a", env.url));
    // The payment requirements are untouched.
    assert_eq!(first.accepts, second.accepts);
    // A route without sign-in has no challenge.
    let plain = challenge(&env, "/plain").await;
    assert!(
        plain
            .extensions
            .as_ref()
            .is_none_or(|e| !e.contains("sign-in-with-x"))
    );
}

#[tokio::test]
async fn entitlement_of_x_is_not_usable_by_y() {
    let env = env(flaky()).await;
    pay(&env, 1, "/a").await;
    assert_eq!(
        env.devnet.usdc_balance(env.payee).await.expect("balance"),
        U256::from(10_000)
    );

    // X signs in: served, and with a session token.
    let response = signed_get(&env, 1, "/a", "/a").await;
    assert_eq!(response.status(), 200);
    let token = response
        .headers()
        .get(SESSION_HEADER)
        .expect("session token")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(response.text().await.expect("body"), "A");
    // The shared scope covers /b too.
    assert_eq!(signed_get(&env, 1, "/b", "/b").await.status(), 200);

    // Y's valid sign-in is not X's entitlement.
    let error = error_of(signed_get(&env, 2, "/a", "/a").await).await;
    assert!(error.starts_with("siwx_no_entitlement"), "{error}");

    // The token works for X on the scope, not as a proof for anything else.
    let http = reqwest::Client::new();
    let with_token = http
        .get(format!("{}/b", env.url))
        .header(SESSION_HEADER, &token)
        .send()
        .await
        .expect("send");
    assert_eq!(with_token.status(), 200);
    let forged = http
        .get(format!("{}/a", env.url))
        .header(SESSION_HEADER, format!("{token}00"))
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), 402);
    assert_eq!(
        env.devnet.usdc_balance(env.payee).await.expect("balance"),
        U256::from(10_000),
        "no further transfer"
    );
}

#[tokio::test]
async fn proof_for_resource_a_is_refused_on_resource_b() {
    let env = env(flaky()).await;
    pay(&env, 3, "/a").await;
    // X is entitled to the whole scope, but a proof is bound to its resource.
    let error = error_of(signed_get(&env, 3, "/a", "/b").await).await;
    assert!(error.starts_with("siwx_uri_mismatch"), "{error}");
    // The same proof flow for /b itself works.
    assert_eq!(signed_get(&env, 3, "/b", "/b").await.status(), 200);
    // And a proof is single use.
    let ext = extension(&challenge(&env, "/a").await);
    let proof = sign_in(
        &ext,
        &env.host,
        &chain(),
        &EvmSiwxSigner::new(signer(&env, 3)),
    )
    .await
    .expect("sign in");
    let send = || {
        reqwest::Client::new()
            .get(format!("{}/a", env.url))
            .header(SIGN_IN_WITH_X_HEADER, proof.to_header())
            .send()
    };
    assert_eq!(send().await.expect("send").status(), 200);
    let error = error_of(send().await.expect("send")).await;
    assert!(error.starts_with("siwx_nonce_reused"), "{error}");
}

#[tokio::test]
async fn auth_only_route_needs_no_payment_and_store_outage_is_503() {
    let store = flaky();
    let env = env(Arc::clone(&store)).await;
    // Auth-only: any valid sign-in, no entitlement.
    let response = signed_get(&env, 4, "/auth", "/auth").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "hello");

    store.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let response = signed_get(&env, 4, "/a", "/a").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "siwx_store_unavailable");
}
