//! `paywire pay` end to end: the real binary pays our axum server (paywire-server
//! layer + in-process facilitator) on anvil with Circle's real USDC.

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::routing::get;
use paywire_core::{ChainId, ChainIdPattern, Facilitator, LocalFacilitator};
use paywire_evm::exact::{EvmChainConfig, ExactEvmFacilitator, ExactEvmServer};
use paywire_evm::permit2::UptoEvmFacilitator;
use paywire_evm::rpc::RpcClient;
use paywire_evm::upto::UptoEvmServer;
use paywire_evm::{EvmNetwork, EvmNetworks, EvmSigner, LocalSigner};
use paywire_server::{PayTo, PaymentLayer, PaymentOption, Route, Usage, money};
use paywire_testkit::Devnet;

struct Env {
    devnet: Devnet,
    url: String,
    payee: Address,
}

async fn env() -> Env {
    let devnet = Devnet::start().await.expect("devnet");
    let network = EvmNetwork::anvil(devnet.usdc());
    let rpc = Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).expect("rpc"),
    );
    let key = LocalSigner::random();
    devnet
        .set_eth_balance(key.address(), U256::from(10u128.pow(21)))
        .await
        .expect("fund");
    let keys: Vec<Arc<dyn EvmSigner>> = vec![Arc::new(key)];
    let evm = Arc::new(
        ExactEvmFacilitator::builder()
            .chain(EvmChainConfig::new(network.clone(), rpc, keys))
            .build()
            .expect("facilitator"),
    );
    let mut local = LocalFacilitator::new();
    local.register(Arc::new(UptoEvmFacilitator::new(Arc::clone(&evm))));
    local.register(evm);
    let facilitator: Arc<dyn Facilitator> = Arc::new(local);
    let mut table = EvmNetworks::empty();
    table.insert(network);
    let payee = Address::random();
    // Bind first: sign-in-with-x binds challenges to the public origin.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let store = Arc::new(paywire_siwx::MemoryStore::new());
    let siwx = paywire_siwx::SiwxServer::new(
        paywire_siwx::SiwxServerConfig::new(url.clone()),
        paywire_siwx::VerifierRegistry::new()
            .with(Arc::new(paywire_evm::siwx::EvmVerifier::new()))
            .with(Arc::new(paywire_siwx::SolanaVerifier)),
        store.clone(),
    )
    .expect("siwx");
    let hooks = paywire_siwx::SiwxHooks::new(Arc::new(siwx), store).route(
        "GET /pass",
        paywire_siwx::AccessPolicy::Pass {
            duration_ms: 3_600_000,
        },
    );
    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table.clone())),
        )
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(UptoEvmServer::new(table)),
        )
        .public_origin(url.clone())
        .hooks(Arc::new(hooks))
        .route(
            Route::new("GET /pass")
                .expect("route")
                .accept(PaymentOption::exact(
                    ChainId::eip155(31337),
                    money("$0.01").expect("price"),
                    PayTo::address(payee.to_string()),
                )),
        )
        .route(
            Route::new("GET /report")
                .expect("route")
                .accept(PaymentOption::exact(
                    ChainId::eip155(31337),
                    money("$0.01").expect("price"),
                    PayTo::address(payee.to_string()),
                )),
        )
        .route(
            Route::new("GET /generate")
                .expect("route")
                .accept(PaymentOption::new(
                    "upto",
                    ChainId::eip155(31337),
                    money("$0.05").expect("price"),
                    PayTo::address(payee.to_string()),
                )),
        )
        .build()
        .expect("layer");
    let app = Router::new()
        .route("/report", get(|| async { "the report" }))
        .route("/generate", get(generate))
        .route("/pass", get(|| async { "members only" }))
        .layer(layer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Env { devnet, url, payee }
}

/// A metered handler: it used 1858 atomic units of the paid asset.
async fn generate() -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = "1858 tokens".into_response();
    response.extensions_mut().insert(Usage::atomic(1858u64));
    response
}

async fn x402_pay(env: &Env, extra: &[&str]) -> (i32, String, String) {
    x402_pay_path(env, "/report", extra).await
}

async fn x402_pay_path(env: &Env, path: &str, extra: &[&str]) -> (i32, String, String) {
    let asset = format!("eip155:31337:{}:6:usd", env.devnet.usdc());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .arg("pay")
        .arg(format!("{}{path}", env.url))
        .args(["--asset", &asset])
        .args(extra)
        .env("PAYWIRE_PRIVATE_KEY", env.devnet.payer(2).private_key_hex())
        .output()
        .await
        .expect("run paywire");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_and_prints_the_body_and_a_receipt() {
    let env = env().await;
    let (code, stdout, stderr) = x402_pay(&env, &["--max", "0.05"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "the report");
    assert!(stderr.contains("paywire: paid 10000"), "{stderr}");
    assert!(stderr.contains("tx 0x"), "{stderr}");
    assert_eq!(
        env.devnet.usdc_balance(env.payee).await.expect("balance"),
        U256::from(10_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_above_max_and_dry_run_pays_nothing() {
    let env = env().await;
    let (code, _, stderr) = x402_pay(&env, &["--max", "0.005"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("above the per-call maximum"), "{stderr}");
    let (code, stdout, stderr) = x402_pay(&env, &["--dry-run"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("would pay 10000"), "{stderr}");
    assert_eq!(
        env.devnet.usdc_balance(env.payee).await.expect("balance"),
        U256::ZERO
    );
    let (code, _, stderr) = x402_pay(&env, &["--network", "base"]).await;
    assert_eq!(code, 3, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_key_from_a_file() {
    let env = env().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("payer.key");
    std::fs::write(&key, format!("{}\n", env.devnet.payer(3).private_key_hex()))
        .expect("write key");
    let asset = format!("eip155:31337:{}:6:usd", env.devnet.usdc());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .arg("pay")
        .arg(format!("{}/report", env.url))
        .args(["--asset", &asset, "--wallet-file"])
        .arg(&key)
        .env_remove("PAYWIRE_PRIVATE_KEY")
        .output()
        .await
        .expect("run paywire");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains(&env.devnet.payer(3).private_key_hex()[2..]),
        "the key is never printed"
    );
    assert_eq!(
        env.devnet.usdc_balance(env.payee).await.expect("balance"),
        U256::from(10_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wallet_is_a_usage_error() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args([
            "pay",
            "http://127.0.0.1:9/x",
            "--wallet-env",
            "PAYWIRE_TEST_NO_SUCH_VAR",
        ])
        .output()
        .await
        .expect("run paywire");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PAYWIRE_TEST_NO_SUCH_VAR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_wallet_signs_in_instead_of_paying() {
    let env = env().await;
    let (code, stdout, stderr) = x402_pay_path(&env, "/pass", &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "members only");
    assert!(stderr.contains("paywire: paid 10000"), "{stderr}");
    for _ in 0..2 {
        let (code, stdout, stderr) = x402_pay_path(&env, "/pass", &[]).await;
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout, "members only");
        assert!(
            !stderr.contains("paywire: paid"),
            "signed in, not paid: {stderr}"
        );
    }
    assert_eq!(
        env.devnet.usdc_balance(env.payee).await.expect("balance"),
        U256::from(10_000),
        "one payment for three visits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_timeout_caps_how_long_an_authorization_lives() {
    let env = env().await;
    // The route offers maxTimeoutSeconds 60 (the server's default).
    let (code, _, stderr) = x402_pay(&env, &["--max-timeout", "59"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("maxTimeoutSeconds 60 exceeds the cap of 59 s"),
        "{stderr}"
    );
    assert_eq!(
        env.devnet.usdc_balance(env.payee).await.expect("balance"),
        U256::ZERO
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = dir.path().join("budget.db");
    let rpc = format!("eip155:31337={}", env.devnet.rpc_url());
    let (code, _, stderr) = x402_pay(
        &env,
        &[
            "--max-timeout",
            "60",
            "--budget",
            budget.to_str().expect("path"),
            "--total-usd",
            "0.05",
            "--rpc",
            &rpc,
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        env.devnet.usdc_balance(env.payee).await.expect("balance"),
        U256::from(10_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rpc_option_does_not_echo_the_url() {
    let seed = [0x42; 32];
    let mut solana_key = seed.to_vec();
    solana_key.extend_from_slice(paywire_svm::SvmKeypair::from_seed(&seed).address().as_ref());
    let solana_key = bs58::encode(solana_key).into_string();
    let evm_key = format!("0x{}", "11".repeat(32));
    for (rpc, variable, key) in [
        (
            "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1=ftp://rpc.example/SECRET-KEY",
            "PAYWIRE_SOLANA_KEY",
            solana_key,
        ),
        ("anvil=not a url/SECRET-KEY", "PAYWIRE_PRIVATE_KEY", evm_key),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
            .args(["pay", "http://127.0.0.1:9/x", "--rpc", rpc])
            .env_remove("PAYWIRE_PRIVATE_KEY")
            .env_remove("PAYWIRE_SOLANA_KEY")
            .env(variable, key)
            .output()
            .await
            .expect("run paywire");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("rpc["),
            "names the option's network: {stderr}"
        );
        assert!(!stderr.contains("SECRET-KEY"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metered_route_charges_the_usage_and_says_so() {
    let env = env().await;
    let payer = env.devnet.payer(2);
    env.devnet
        .approve_permit2(env.devnet.usdc(), payer, U256::MAX)
        .await
        .expect("one-time Permit2 approval");
    let (code, stdout, stderr) = x402_pay_path(&env, "/generate", &["--max", "0.05"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "1858 tokens");
    assert!(
        stderr.contains("paywire: paid 1858 (at most 50000)"),
        "{stderr}"
    );
    assert_eq!(
        env.devnet.usdc_balance(env.payee).await.expect("balance"),
        U256::from(1858)
    );
}
