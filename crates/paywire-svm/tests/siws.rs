//! Sign-in-with-Solana after a Solana payment, on the real Solana runtime:
//! our facilitator service settles on litesvm (through the test chain's
//! JSON-RPC server), our payment layer with the sign-in-with-x hooks records
//! an entitlement for the payer of each settled payment, and a Solana wallet
//! that paid comes back signed in (SIWS) instead of paying again, exactly as
//! an EVM wallet does with SIWE.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::routing::get;
use paywire_client::X402Client;
use paywire_core::codec::{SIGN_IN_WITH_X_HEADER, decode_payment_required};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, Facilitator, FacilitatorError, FacilitatorRequest,
    PluginRegistry, Secret, SettleResponse, SupportedResponse, VerifyResponse, WalletConfig,
};
use paywire_facilitator::FacilitatorConfig;
use paywire_litesvm::{DEVNET_GENESIS_HASH, RpcServer, SolanaTestChain, TokenProgram};
use paywire_server::{HttpFacilitator, PayTo, PaymentLayer, PaymentOption, Route, money};
use paywire_siwx::{
    AccessPolicy, EntitlementStore, MemoryStore, SessionTokens, SiwxExtension, SiwxHooks,
    SiwxServer, SiwxServerConfig, SiwxSignIn, SolanaSiwxSigner, SolanaVerifier, VerifierRegistry,
    sign_in,
};
use paywire_svm::exact::ExactSvmServer;
use paywire_svm::{SvmKeypair, SvmPlugin};
use solana_address::Address;
use solana_hash::Hash;

/// Circle's devnet USDC: money prices on `solana-devnet` are paid in it.
const DEVNET_USDC: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
const DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
/// `$0.01` of a 6-decimal stablecoin.
const PRICE: u64 = 10_000;
/// What each payer holds at the start.
const FUNDS: u64 = 1_000_000;
/// The entitlement scope of `/report`.
const SCOPE: &str = "reports";

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The base58 64-byte secret key (`seed ‖ public key`) of `seed`, as
/// wallets export it.
fn secret_base58(seed: [u8; 32]) -> String {
    let address = SvmKeypair::from_seed(&seed).address();
    let mut bytes = seed.to_vec();
    bytes.extend_from_slice(address.as_ref());
    bs58::encode(bytes).into_string()
}

fn address_of(seed: [u8; 32]) -> Address {
    SvmKeypair::from_seed(&seed).address()
}

fn devnet() -> ChainId {
    ChainId::parse(DEVNET).expect("devnet id")
}

/// Our facilitator, counting the settlements the server asks for.
struct Counting {
    inner: HttpFacilitator,
    settles: AtomicUsize,
}

impl Facilitator for Counting {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.inner.verify(request)
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        self.inner.settle(request)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        self.inner.supported()
    }
}

/// The chain, our facilitator service over it, and our server selling
/// `GET /report` for `$0.01` on Solana devnet with a one-hour pass that
/// the payer signs in with.
struct Shop {
    chain: Arc<SolanaTestChain>,
    rpc: RpcServer,
    usdc: Address,
    fee_payer_seed: [u8; 32],
    merchant: Address,
    facilitator: Arc<Counting>,
    siwx: Arc<SiwxServer>,
    entitlements: Arc<MemoryStore>,
    url: String,
    host: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _ledger: tempfile::TempDir,
}

impl Shop {
    async fn open(payers: &[[u8; 32]]) -> Result<Self, Box<dyn std::error::Error>> {
        let genesis: Hash = DEVNET_GENESIS_HASH.parse()?;
        let chain = Arc::new(SolanaTestChain::with_genesis_hash(genesis));
        let usdc: Address = DEVNET_USDC.parse()?;
        chain.create_mint_at(&usdc, TokenProgram::Token, 6);
        let fee_payer_seed = [0xfe; 32];
        chain.airdrop(&address_of(fee_payer_seed), 10_000_000_000);
        for seed in payers {
            chain.airdrop(&address_of(*seed), 1_000_000_000);
            chain.mint_to(&usdc, &address_of(*seed), FUNDS);
        }
        let merchant = address_of([0x3e; 32]);
        chain.create_ata(&merchant, &usdc);
        let rpc = RpcServer::start(Arc::clone(&chain))?;

        let ledger = tempfile::tempdir()?;
        let text = format!(
            "store = {:?}\nreceipt_timeout_seconds = 10\n\
             [[chains]]\nnetwork = \"solana-devnet\"\nrpc_urls = [\"{}\"]\n\
             fee_payer_private_keys = [\"{}\"]\n",
            ledger.path().join("ledger.sqlite").display().to_string(),
            rpc.url(),
            secret_base58(fee_payer_seed)
        );
        let (facilitator_url, stop) = start_facilitator(&text).await;
        let facilitator = Arc::new(Counting {
            inner: HttpFacilitator::new(facilitator_url)?,
            settles: AtomicUsize::new(0),
        });

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let host = listener.local_addr()?.to_string();
        let url = format!("http://{host}");
        let siwx = Arc::new(SiwxServer::new(
            SiwxServerConfig::new(url.clone()),
            VerifierRegistry::new().with(Arc::new(SolanaVerifier)),
            Arc::new(MemoryStore::new()),
        )?);
        let entitlements = Arc::new(MemoryStore::new());
        let hooks = SiwxHooks::new(Arc::clone(&siwx), entitlements.clone())
            .scoped_route(
                "GET /report",
                AccessPolicy::Pass {
                    duration_ms: 3_600_000,
                },
                SCOPE,
            )
            .sessions(Arc::new(SessionTokens::new(&[7; 32], 60_000)?));
        let counted: Arc<dyn Facilitator> = facilitator.clone();
        let layer = PaymentLayer::builder(counted)
            .scheme(
                ChainIdPattern::namespace("solana")?,
                Arc::new(ExactSvmServer::default()),
            )
            .public_origin(url.clone())
            .hooks(Arc::new(hooks))
            .route(Route::new("GET /report")?.accept(PaymentOption::exact(
                devnet(),
                money("$0.01")?,
                PayTo::address(merchant.to_string()),
            )))
            .build()?;
        let app = axum::Router::new()
            .route("/report", get(|| async { "solana report" }))
            .layer(layer);
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            chain,
            rpc,
            usdc,
            fee_payer_seed,
            merchant,
            facilitator,
            siwx,
            entitlements,
            url,
            host,
            _stop: stop,
            _ledger: ledger,
        })
    }

    fn report(&self) -> String {
        format!("{}/report", self.url)
    }

    fn balance(&self, owner: &Address) -> u64 {
        self.chain.token_balance(owner, &self.usdc)
    }

    fn settles(&self) -> usize {
        self.facilitator.settles.load(Ordering::SeqCst)
    }

    /// A Solana wallet as `paywire pay` builds it (the plugin's wallet
    /// side), signing in with SIWS under the same key.
    fn client(&self, seed: [u8; 32]) -> (X402Client, Arc<SiwxSignIn>) {
        let registry = PluginRegistry::new().with(Arc::new(SvmPlugin));
        let network = devnet();
        let mut config = WalletConfig::new(Secret::new(secret_base58(seed)));
        config.rpc_urls = vec![(network.clone(), Secret::new(self.rpc.url()))];
        let wallet = registry
            .plugin_for(&network)
            .expect("solana plugin")
            .wallet(&config)
            .expect("wallet side");
        let signer = SolanaSiwxSigner::from_seed(&seed);
        assert_eq!(
            wallet.addresses,
            [paywire_siwx::SiwxSigner::address(&signer)],
            "the wallet pays from the address it signs in with"
        );
        let sign_in = Arc::new(SiwxSignIn::new(Arc::new(signer), vec![network]));
        let mut builder = X402Client::builder().sign_in(sign_in.clone());
        for registration in wallet.schemes {
            builder = builder.wallet(registration.networks, registration.handler);
        }
        (builder.build(), sign_in)
    }

    /// Whether `address` holds a live entitlement for `/report`.
    async fn entitled(&self, address: &Address) -> bool {
        self.entitlements
            .check(&address.to_string(), DEVNET, SCOPE, self.siwx.now())
            .await
            .expect("entitlement store")
            .is_some()
    }

    /// A SIWS proof of `seed` for `/report` (from a fresh 402), sent alone.
    async fn signed_in_get(&self, seed: [u8; 32]) -> reqwest::Response {
        let http = reqwest::Client::new();
        let unpaid = http.get(self.report()).send().await.expect("unpaid GET");
        assert_eq!(unpaid.status().as_u16(), 402);
        let header = unpaid
            .headers()
            .get("payment-required")
            .expect("PAYMENT-REQUIRED")
            .as_bytes()
            .to_vec();
        let required = decode_payment_required(&header).expect("402 decodes");
        let extension =
            SiwxExtension::from_extensions(required.extensions.as_ref().expect("extensions"))
                .expect("a sign-in-with-x challenge")
                .expect("well formed");
        let proof = sign_in(
            &extension,
            &self.host,
            &devnet(),
            &SolanaSiwxSigner::from_seed(&seed),
        )
        .await
        .expect("SIWS proof");
        http.get(self.report())
            .header(SIGN_IN_WITH_X_HEADER, proof.to_header())
            .send()
            .await
            .expect("signed-in GET")
    }
}

/// Our facilitator service from `text`, over HTTP; stops when the sender drops.
async fn start_facilitator(text: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let config = FacilitatorConfig::parse_with_env(text, |_| None).expect("facilitator config");
    let registry = PluginRegistry::new().with(Arc::new(SvmPlugin));
    let state = paywire_facilitator::build(&config, &registry)
        .await
        .expect("facilitator builds with the solana plugin");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let _ = paywire_facilitator::serve(listener, state, shutdown).await;
    });
    (format!("http://{address}"), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solana_payer_comes_back_with_siws_instead_of_paying_again() -> TestResult {
    let (alice_seed, bob_seed) = ([0xa1; 32], [0xb2; 32]);
    let shop = Shop::open(&[alice_seed, bob_seed]).await?;
    let (alice, bob) = (address_of(alice_seed), address_of(bob_seed));
    let http = reqwest::Client::new();
    let (client, sign_in) = shop.client(alice_seed);

    // First visit: the signature proves the wallet but it holds no pass, so
    // the client pays; the settled payment records the pass for its payer.
    let paid = client.send(&http, http.get(shop.report()).build()?).await?;
    assert_eq!(paid.status().as_u16(), 200);
    assert!(paid.headers().contains_key("payment-response"), "paid");
    assert_eq!(paid.text().await?, "solana report");
    assert_eq!(shop.balance(&alice), FUNDS - PRICE, "the price moved");
    assert_eq!(shop.balance(&shop.merchant), PRICE);
    assert_eq!(shop.settles(), 1);
    let sends = shop.chain.sends();

    // The pass is the transfer authority's, not the facilitator's fee payer's
    // (the fee payer signs the transaction first).
    assert!(shop.entitled(&alice).await, "the payer holds the pass");
    let fee_payer = address_of(shop.fee_payer_seed);
    assert!(!shop.entitled(&fee_payer).await, "the fee payer holds none");

    // Second visit: signed in with SIWS, served without paying.
    let returning = client.send(&http, http.get(shop.report()).build()?).await?;
    assert_eq!(returning.status().as_u16(), 200);
    assert!(
        !returning.headers().contains_key("payment-response"),
        "no payment was made"
    );
    assert_eq!(returning.text().await?, "solana report");
    assert_eq!(
        sign_in.cached_sessions(),
        1,
        "the SIWS sign-in earned a session"
    );
    // Third visit: the session token from that sign-in, again without paying.
    let by_session = client.send(&http, http.get(shop.report()).build()?).await?;
    assert_eq!(by_session.status().as_u16(), 200);
    assert!(!by_session.headers().contains_key("payment-response"));
    assert_eq!(shop.settles(), 1, "no settlement was asked for");
    assert_eq!(shop.chain.sends(), sends, "nothing was sent to the chain");
    assert_eq!(shop.balance(&alice), FUNDS - PRICE, "nothing more moved");
    assert_eq!(shop.balance(&shop.merchant), PRICE);

    // Another wallet's valid signature earns nothing: it has to pay.
    let refused = shop.signed_in_get(bob_seed).await;
    assert_eq!(refused.status().as_u16(), 402);
    let body: serde_json::Value = refused.json().await?;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("siwx_no_entitlement"), "{body}");
    let (bob_client, _) = shop.client(bob_seed);
    let paid = bob_client
        .send(&http, http.get(shop.report()).build()?)
        .await?;
    assert_eq!(paid.status().as_u16(), 200);
    assert!(paid.headers().contains_key("payment-response"), "paid");
    assert_eq!(shop.balance(&bob), FUNDS - PRICE);
    assert_eq!(shop.balance(&shop.merchant), 2 * PRICE);
    assert_eq!(shop.settles(), 2);
    assert!(shop.entitled(&bob).await);
    // ... and then Bob's signature alone gets in too.
    let returning = shop.signed_in_get(bob_seed).await;
    assert_eq!(returning.status().as_u16(), 200);
    assert_eq!(shop.settles(), 2);
    Ok(())
}
