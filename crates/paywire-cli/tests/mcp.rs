//! `paywire mcp serve|call|tools` end to end: the real binary sells an
//! upstream's route as a paid MCP tool from a gateway configuration, over
//! stdio (driven by `PayingMcpClient::connect_stdio`) and streamable HTTP
//! (driven by `paywire mcp call`), paid on anvil with Circle's USDC through
//! our facilitator (the test kit's `Stack`).

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use paywire_client::{PaymentStatus, SelectionPolicy, X402Client};
use paywire_core::{ChainId, ChainIdPattern};
use paywire_evm::exact::ExactEvmClient;
use paywire_evm::{EvmNetwork, EvmNetworks, LocalSigner};
use paywire_mcp::client::PayingMcpClient;
use paywire_testkit::Stack;

struct Env {
    stack: Stack,
    payee: Address,
    config: tempfile::NamedTempFile,
}

/// The devnet, our facilitator, an upstream with `GET /weather/{city}`,
/// and a gateway configuration selling it for $0.01.
async fn env() -> Env {
    let stack = Stack::start().await.expect("devnet and facilitator");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = format!("http://{}", listener.local_addr().expect("addr"));
    let api = Router::new().route(
        "/weather/{city}",
        get(|Path(city): Path<String>| async move { format!("sunny in {city}") }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, api).await;
    });
    let payee = Address::random();
    let text = format!(
        r#"public_origin = "http://127.0.0.1"
upstream = "{upstream}"
well_known_networks = false
[[facilitators]]
url = "{facilitator}"
[[networks]]
network = "eip155:31337"
name = "Anvil"
asset = {{ address = "{usdc}", symbol = "USDC", decimals = 6, eip712_name = "USD Coin", eip712_version = "2", usd_stable = true }}
[[routes]]
method = "GET"
path = "/weather/:city"
description = "Today's weather"
[[routes.accepts]]
network = "eip155:31337"
price = "$0.01"
pay_to = "{payee}"
"#,
        facilitator = stack.facilitator_url(),
        usdc = stack.devnet().usdc(),
    );
    let config = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(config.path(), text).expect("write config");
    Env {
        stack,
        payee,
        config,
    }
}

/// An agent paying from devnet payer #`index` on the anvil chain.
fn agent(env: &Env, index: usize) -> Arc<X402Client> {
    let devnet = env.stack.devnet();
    let mut catalog = EvmNetworks::empty();
    catalog.insert(EvmNetwork::anvil(devnet.usdc()));
    let wallet = LocalSigner::new(devnet.payer(index).signer());
    Arc::new(
        X402Client::builder()
            .wallet(
                ChainIdPattern::namespace("eip155").expect("pattern"),
                Arc::new(ExactEvmClient::new(wallet)),
            )
            .catalog(Arc::new(catalog))
            .policy(SelectionPolicy::default())
            .build(),
    )
}

async fn received(env: &Env) -> U256 {
    env.stack
        .devnet()
        .usdc_balance(env.payee)
        .await
        .expect("balance")
}

fn arguments(city: &str) -> paywire_core::JsonObject {
    let mut arguments = paywire_core::JsonObject::new();
    arguments.insert("city".into(), city.into());
    arguments
}

/// The issue's "end to end through stdio": `paywire mcp serve --stdio` as a
/// child process, paid by the paying MCP client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_stdio_sells_a_route_as_a_paid_tool() {
    let env = env().await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"));
    command
        .args(["mcp", "serve", "--stdio", "--config"])
        .arg(env.config.path())
        .env("RUST_LOG", "warn");
    let client = PayingMcpClient::connect_stdio(command, agent(&env, 2))
        .await
        .expect("MCP over the child's stdio");
    let tools = client.list_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "get_weather_city");
    let paid = client
        .call_tool("get_weather_city", arguments("Lisbon"))
        .await
        .expect("paid call");
    assert_ne!(paid.result.is_error, Some(true), "{:?}", paid.result);
    assert_eq!(
        paid.result.content[0].as_text().expect("text").text,
        "sunny in Lisbon"
    );
    let outcome = paid.outcome.expect("a payment was made");
    assert_eq!(outcome.status, PaymentStatus::Paid);
    assert_eq!(outcome.requirements.network, ChainId::eip155(31337));
    let receipt = outcome.receipt.expect("receipt");
    assert!(receipt.transaction.starts_with("0x"), "{receipt:?}");
    assert_eq!(received(&env).await, U256::from(10_000u64));
    client.close().await.expect("close");
}

/// `paywire mcp serve` on streamable HTTP, called by `paywire mcp call`
/// (and listed by `paywire mcp tools`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_pays_a_tool_served_over_streamable_http() {
    let env = env().await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(["mcp", "serve", "--listen", &listen, "--config"])
        .arg(env.config.path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start paywire mcp serve");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&listen).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never listened"
        );
        assert!(
            server.try_wait().expect("status").is_none(),
            "the server exited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://{listen}/mcp");
    let paywire = |args: &[&str]| {
        let asset = format!("eip155:31337:{}:6:usd", env.stack.devnet().usdc());
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"));
        command.arg("mcp").args(args).args(["--asset", &asset]).env(
            "PAYWIRE_PRIVATE_KEY",
            env.stack.devnet().payer(3).private_key_hex(),
        );
        command
    };
    let run = |mut command: tokio::process::Command| async move {
        let output = command.output().await.expect("run paywire");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let mut listing = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"));
    listing.args(["mcp", "tools", &url]);
    let (code, stdout, stderr) = run(listing).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("get_weather_city"), "{stdout}");
    assert!(stdout.contains("Today's weather"), "{stdout}");

    // A dry run shows the price and pays nothing.
    let call = &[
        "call",
        &url,
        "get_weather_city",
        "--args",
        r#"{"city":"Paris"}"#,
    ];
    let (code, stdout, stderr) = run(paywire(&[call.as_slice(), &["--dry-run"]].concat())).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("would pay 10000 (atomic)"), "{stderr}");
    // Above --max: refused before anything is signed.
    let (code, _, stderr) = run(paywire(&[call.as_slice(), &["--max", "0.005"]].concat())).await;
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(received(&env).await, U256::ZERO);

    let (code, stdout, stderr) = run(paywire(call)).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "sunny in Paris\n");
    assert!(stderr.contains("paywire: paid 10000 (atomic)"), "{stderr}");
    assert!(stderr.contains("tx 0x"), "{stderr}");
    assert_eq!(received(&env).await, U256::from(10_000u64));

    // Bad arguments are a usage error.
    let (code, _, stderr) = run(paywire(&[
        "call",
        &url,
        "get_weather_city",
        "--args",
        "[1]",
    ]))
    .await;
    assert_eq!(code, 2, "{stderr}");
    let _ = server.kill().await;
}
