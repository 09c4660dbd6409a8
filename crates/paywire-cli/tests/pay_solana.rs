//! `paywire pay` on Solana: the real binary pays our payment layer through
//! our facilitator service, on a devnet-shaped Solana test chain (litesvm
//! behind its JSON-RPC server, Circle's devnet USDC address) and, for the
//! choice between families, anvil with Circle's USDC.

use std::sync::Arc;

use alloy_primitives::U256;
use axum::Router;
use axum::routing::get;
use paywire_core::{ChainId, ChainIdPattern, Facilitator, ServerConfig};
use paywire_evm::exact::ExactEvmServer;
use paywire_evm::{Eip155ChainId, EvmNetwork, EvmNetworks};
use paywire_litesvm::{DEVNET_GENESIS_HASH, Pubkey, RpcServer, SolanaTestChain, TokenProgram};
use paywire_server::{HttpFacilitator, PayTo, PaymentLayer, PaymentOption, Route, money};
use paywire_svm::{SvmKeypair, SvmPlugin};
use paywire_testkit::Devnet;

const DEVNET_USDC: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
const SOLANA_DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
/// `$0.01` of a 6-decimal stablecoin.
const PRICE: u64 = 10_000;
const PAYER_SEED: [u8; 32] = [0xa1; 32];
const FEE_PAYER_SEED: [u8; 32] = [0xfe; 32];

/// The 64 bytes `seed ‖ public key` of `seed`, as wallets export them.
fn keypair_bytes(seed: [u8; 32]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    bytes.extend_from_slice(SvmKeypair::from_seed(&seed).address().as_ref());
    bytes
}

fn keypair_base58(seed: [u8; 32]) -> String {
    bs58::encode(keypair_bytes(seed)).into_string()
}

/// Both chains, our facilitator service settling on both, and our payment
/// layer selling `/solana` (Solana only), `/both` (anvil or Solana) and
/// `/pass` (Solana, a one-hour pass with sign-in-with-x).
struct Env {
    chain: Arc<SolanaTestChain>,
    rpc: RpcServer,
    usdc: Pubkey,
    merchant: Pubkey,
    devnet: Devnet,
    evm_payee: alloy_primitives::Address,
    url: String,
    /// The facilitator's ledger lives here.
    _dir: tempfile::TempDir,
}

impl Env {
    fn payer(&self) -> Pubkey {
        SvmKeypair::from_seed(&PAYER_SEED).address()
    }

    fn merchant_usdc(&self) -> u64 {
        self.chain.token_balance(&self.merchant, &self.usdc)
    }

    fn payer_usdc(&self) -> u64 {
        self.chain.token_balance(&self.payer(), &self.usdc)
    }

    async fn evm_payee_usdc(&self) -> U256 {
        self.devnet
            .usdc_balance(self.evm_payee)
            .await
            .expect("balance")
    }

    fn rpc_option(&self) -> String {
        format!("solana-devnet={}", self.rpc.url())
    }
}

fn solana_chain() -> (Arc<SolanaTestChain>, Pubkey, Pubkey) {
    let chain = Arc::new(SolanaTestChain::with_genesis_hash(
        DEVNET_GENESIS_HASH.parse().expect("genesis hash"),
    ));
    let usdc: Pubkey = DEVNET_USDC.parse().expect("mint");
    chain.create_mint_at(&usdc, TokenProgram::Token, 6);
    chain.airdrop(
        &SvmKeypair::from_seed(&FEE_PAYER_SEED).address(),
        10_000_000_000,
    );
    let payer = SvmKeypair::from_seed(&PAYER_SEED).address();
    chain.airdrop(&payer, 1_000_000_000);
    chain.mint_to(&usdc, &payer, 1_000_000);
    let merchant = SvmKeypair::from_seed(&[0x3e; 32]).address();
    chain.create_ata(&merchant, &usdc);
    (chain, usdc, merchant)
}

/// Our facilitator service settling on anvil and on the Solana chain, its
/// ledger in `dir`.
async fn facilitator(devnet: &Devnet, solana_rpc: &str, dir: &std::path::Path) -> String {
    let evm_key = alloy_primitives::B256::random().to_string();
    let key = paywire_evm::LocalSigner::from_hex(&evm_key).expect("key");
    devnet
        .set_eth_balance(key.address(), U256::from(10u128.pow(21)))
        .await
        .expect("fund");
    let text = format!(
        "store = {store:?}\n[[chains]]\nnetwork = \"anvil\"\nrpc_urls = [\"{evm_rpc}\"]\n\
         signer_private_keys = [\"{evm_key}\"]\nmax_fee_per_gas_gwei = 1000\n\
         [[chains.assets]]\naddress = \"{usdc}\"\nsymbol = \"USDC\"\ndecimals = 6\n\
         eip712_name = \"USD Coin\"\neip712_version = \"2\"\n\
         [[chains]]\nnetwork = \"solana-devnet\"\nrpc_urls = [\"{solana_rpc}\"]\n\
         fee_payer_private_keys = [\"{fee_payer}\"]\n",
        evm_rpc = devnet.rpc_url(),
        usdc = devnet.usdc(),
        fee_payer = keypair_base58(FEE_PAYER_SEED),
        store = dir.join("ledger.sqlite").display().to_string(),
    );
    let config =
        paywire_facilitator::FacilitatorConfig::parse_with_env(&text, |_| None).expect("config");
    let registry = paywire_core::PluginRegistry::new()
        .with(Arc::new(paywire_evm::EvmPlugin))
        .with(Arc::new(SvmPlugin));
    let state = paywire_facilitator::build(&config, &registry)
        .await
        .expect("facilitator");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = paywire_facilitator::serve(listener, state, std::future::pending()).await;
    });
    format!("http://{address}")
}

/// Sign-in-with-x on `/pass` (EVM and Solana wallets) for `origin`.
fn pass_hooks(origin: &str) -> paywire_siwx::SiwxHooks {
    let store = Arc::new(paywire_siwx::MemoryStore::new());
    let siwx = paywire_siwx::SiwxServer::new(
        paywire_siwx::SiwxServerConfig::new(origin.to_owned()),
        paywire_siwx::VerifierRegistry::new()
            .with(Arc::new(paywire_evm::siwx::EvmVerifier::new()))
            .with(Arc::new(paywire_siwx::SolanaVerifier)),
        store.clone(),
    )
    .expect("siwx");
    paywire_siwx::SiwxHooks::new(Arc::new(siwx), store).route(
        "GET /pass",
        paywire_siwx::AccessPolicy::Pass {
            duration_ms: 3_600_000,
        },
    )
}

fn route(spec: &str, offers: Vec<PaymentOption>) -> Route {
    offers
        .into_iter()
        .fold(Route::new(spec).expect("route"), Route::accept)
}

/// The payment layer: Solana's server side from its plugin (Circle's USDC
/// on devnet, `extra.feePayer` from the facilitator), anvil's by hand.
fn layer(
    env_parts: (&Devnet, &Pubkey, alloy_primitives::Address),
    facilitator: &str,
    origin: &str,
) -> PaymentLayer {
    let (devnet, merchant, evm_payee) = env_parts;
    let facilitator: Arc<dyn Facilitator> =
        Arc::new(HttpFacilitator::new(facilitator).expect("facilitator client"));
    let mut well_known = ServerConfig::default();
    well_known.well_known = true;
    let solana = paywire_core::ChainPlugin::server(&SvmPlugin, &well_known).expect("solana");
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(devnet.usdc()));
    let anvil = ChainId::eip155(31337);
    let mut builder = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::namespace("eip155").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .asset(&anvil, &devnet.usdc().to_string(), "USDC", 6)
        .public_origin(origin.to_owned())
        .hooks(Arc::new(pass_hooks(origin)));
    for registration in solana.schemes {
        builder = builder.scheme(registration.networks, registration.handler);
    }
    for asset in solana.assets {
        builder = builder.asset(
            &asset.network,
            &asset.asset,
            &asset.info.symbol,
            asset.info.decimals,
        );
    }
    let solana_devnet = ChainId::parse(SOLANA_DEVNET).expect("network");
    let on_solana = || {
        PaymentOption::exact(
            solana_devnet.clone(),
            money("$0.01").expect("price"),
            PayTo::address(merchant.to_string()),
        )
    };
    let on_anvil = PaymentOption::exact(
        anvil,
        money("$0.01").expect("price"),
        PayTo::address(evm_payee.to_string()),
    );
    builder
        .route(route("GET /solana", vec![on_solana()]))
        .route(route("GET /both", vec![on_anvil, on_solana()]))
        .route(route("GET /pass", vec![on_solana()]))
        .build()
        .expect("layer")
}

async fn env() -> Env {
    let (chain, usdc, merchant) = solana_chain();
    let rpc = RpcServer::start(Arc::clone(&chain)).expect("rpc server");
    let devnet = Devnet::start().await.expect("devnet");
    let dir = tempfile::tempdir().expect("tempdir");
    let facilitator = facilitator(&devnet, rpc.url(), dir.path()).await;
    let evm_payee = alloy_primitives::Address::random();
    // Bind first: sign-in-with-x binds challenges to the public origin.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/solana", get(|| async { "solana report" }))
        .route("/both", get(|| async { "either chain" }))
        .route("/pass", get(|| async { "members only" }))
        .layer(layer((&devnet, &merchant, evm_payee), &facilitator, &url));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Env {
        chain,
        rpc,
        usdc,
        merchant,
        devnet,
        evm_payee,
        url,
        _dir: dir,
    }
}

/// `paywire pay URL/path extra…` with `envs` set and both default key
/// variables cleared first; (exit code, stdout, stderr).
async fn run_pay(
    env: &Env,
    path: &str,
    extra: &[&str],
    envs: &[(&str, String)],
) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .arg("pay")
        .arg(format!("{}{path}", env.url))
        .args(extra)
        .env_remove("PAYWIRE_PRIVATE_KEY")
        .env_remove("PAYWIRE_SOLANA_KEY")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("run paywire");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn solana_key_env() -> Vec<(&'static str, String)> {
    vec![("PAYWIRE_SOLANA_KEY", keypair_base58(PAYER_SEED))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_a_solana_offer_with_a_key_from_the_environment() {
    let env = env().await;
    let rpc = env.rpc_option();
    // A dollar cap: the catalog knows Circle's devnet USDC on Solana.
    let (code, _, stderr) = run_pay(
        &env,
        "/solana",
        &["--rpc", &rpc, "--max", "0.005"],
        &solana_key_env(),
    )
    .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("above the per-call maximum"), "{stderr}");
    let (code, stdout, stderr) = run_pay(
        &env,
        "/solana",
        &["--rpc", &rpc, "--max", "0.05"],
        &solana_key_env(),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "solana report");
    assert!(
        stderr.contains(&format!(
            "paywire: paid {PRICE} (atomic) of {DEVNET_USDC} on {SOLANA_DEVNET}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&keypair_base58(PAYER_SEED)), "{stderr}");
    assert_eq!(env.merchant_usdc(), PRICE);
    assert_eq!(env.payer_usdc(), 1_000_000 - PRICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_with_a_solana_keygen_key_file() {
    let env = env().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("id.json");
    let json = serde_json::to_string(&keypair_bytes(PAYER_SEED)).expect("json");
    std::fs::write(&file, &json).expect("write key");
    let rpc = env.rpc_option();
    let (code, stdout, stderr) = run_pay(
        &env,
        "/solana",
        &[
            "--rpc",
            &rpc,
            "--solana-wallet-file",
            file.to_str().expect("path"),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "solana report");
    assert!(
        !stderr.contains(&json[1..20]),
        "the key is never printed: {stderr}"
    );
    assert_eq!(env.merchant_usdc(), PRICE);
    assert_eq!(env.payer_usdc(), 1_000_000 - PRICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_solana_key_is_a_usage_error_that_never_echoes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A keypair whose public half does not match its secret half, and text
    // that is no keypair at all.
    let mut mismatched = keypair_bytes(PAYER_SEED);
    mismatched[40] ^= 1;
    let mismatched = bs58::encode(mismatched).into_string();
    let garbage = "3vQB7B6MrGQZaxCuFg4oh-not-base58-SECRETSECRET".to_owned();
    for key in [mismatched, garbage] {
        let file = dir.path().join("bad.key");
        std::fs::write(&file, &key).expect("write key");
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
            .args(["pay", "http://127.0.0.1:9/x", "--solana-wallet-file"])
            .arg(&file)
            .env_remove("PAYWIRE_PRIVATE_KEY")
            .output()
            .await
            .expect("run paywire");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("not a valid Solana key"), "{stderr}");
        assert!(!stderr.contains(&key[..24]), "{stderr}");
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
            .args(["pay", "http://127.0.0.1:9/x"])
            .env_remove("PAYWIRE_PRIVATE_KEY")
            .env("PAYWIRE_SOLANA_KEY", &key)
            .output()
            .await
            .expect("run paywire");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains(&key[..24]), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_at_all_or_an_unset_named_variable_is_a_usage_error() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(["pay", "http://127.0.0.1:9/x"])
        .env_remove("PAYWIRE_PRIVATE_KEY")
        .env_remove("PAYWIRE_SOLANA_KEY")
        .output()
        .await
        .expect("run paywire");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PAYWIRE_PRIVATE_KEY"), "{stderr}");
    assert!(stderr.contains("PAYWIRE_SOLANA_KEY"), "{stderr}");
    // A variable named on the command line must be set, even when the
    // other family's key is there.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args([
            "pay",
            "http://127.0.0.1:9/x",
            "--wallet-env",
            "PAYWIRE_TEST_NO_SUCH_VAR",
        ])
        .env_remove("PAYWIRE_PRIVATE_KEY")
        .env("PAYWIRE_SOLANA_KEY", keypair_base58(PAYER_SEED))
        .output()
        .await
        .expect("run paywire");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PAYWIRE_TEST_NO_SUCH_VAR is not set"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_and_prefer_choose_between_evm_and_solana() {
    let env = env().await;
    let rpc = env.rpc_option();
    let mut both = solana_key_env();
    both.push(("PAYWIRE_PRIVATE_KEY", env.devnet.payer(2).private_key_hex()));
    // Both offers are worth $0.01 (the anvil USDC is named as a dollar
    // asset), so the preference decides, not the value.
    let asset = format!("eip155:31337:{}:6:usd", env.devnet.usdc());
    let pay = |choice: [&'static str; 2]| {
        let (rpc, asset, both, env) = (rpc.clone(), asset.clone(), both.clone(), &env);
        async move {
            let options = ["--rpc", &rpc, "--asset", &asset, choice[0], choice[1]];
            run_pay(env, "/both", &options, &both).await
        }
    };
    let (code, _, stderr) = pay(["--network", "solana-devnet"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("on {SOLANA_DEVNET}")), "{stderr}");
    assert_eq!(
        (env.merchant_usdc(), env.evm_payee_usdc().await),
        (PRICE, U256::ZERO)
    );

    let (code, _, stderr) = pay(["--prefer", "anvil"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("on eip155:31337"), "{stderr}");
    assert_eq!(
        (env.merchant_usdc(), env.evm_payee_usdc().await),
        (PRICE, U256::from(PRICE))
    );

    let (code, _, stderr) = pay(["--prefer", "solana-devnet"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("on {SOLANA_DEVNET}")), "{stderr}");
    assert_eq!(
        (env.merchant_usdc(), env.evm_payee_usdc().await),
        (2 * PRICE, U256::from(PRICE))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_solana_payer_signs_in_instead_of_paying() {
    let env = env().await;
    let rpc = env.rpc_option();
    let (code, stdout, stderr) = run_pay(&env, "/pass", &["--rpc", &rpc], &solana_key_env()).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "members only");
    assert!(stderr.contains("paywire: paid 10000"), "{stderr}");
    for _ in 0..2 {
        let (code, stdout, stderr) =
            run_pay(&env, "/pass", &["--rpc", &rpc], &solana_key_env()).await;
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout, "members only");
        assert!(
            !stderr.contains("paywire: paid"),
            "signed in, not paid: {stderr}"
        );
    }
    assert_eq!(env.merchant_usdc(), PRICE, "one payment for three visits");
}
