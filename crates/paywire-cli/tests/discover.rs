//! Bazaar discovery end to end: a seller declares its endpoints, an agent
//! pays for them with `paywire pay`, our facilitator catalogs what it settled,
//! and `paywire discover` lists, searches and picks the cheapest.

use paywire_evm::Eip155ChainId;
use std::sync::Arc;

use alloy_primitives::Address;
use axum::Router;
use axum::routing::{get, post};
use paywire_bazaar::Declaration;
use paywire_core::{ChainId, ChainIdPattern, Facilitator};
use paywire_evm::exact::ExactEvmServer;
use paywire_evm::{EvmNetwork, EvmNetworks};
use paywire_facilitator::FacilitatorConfig;
use paywire_server::{HttpFacilitator, PayTo, PaymentLayer, PaymentOption, Route, money};
use paywire_testkit::Devnet;
use serde_json::{Value, json};

struct Env {
    devnet: Devnet,
    seller: String,
    facilitator: String,
    _dir: tempfile::TempDir,
}

async fn start_facilitator(devnet: &Devnet, dir: &std::path::Path) -> String {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
store = "{store}"

[[chains]]
network = "eip155:31337"
rpc_urls = ["{rpc}"]
signer_private_keys = ["${{SIGNER}}"]

[[chains.assets]]
address = "{usdc}"
symbol = "USDC"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"

# The seller below listens on loopback.
[bazaar]
confirm_private_addresses = true
"#,
        store = dir.join("ledger.sqlite").display(),
        rpc = devnet.rpc_url(),
        usdc = devnet.usdc(),
    );
    let key = devnet.usdc_owner().private_key_hex();
    let config =
        FacilitatorConfig::parse_with_env(&text, |name| (name == "SIGNER").then(|| key.clone()))
            .expect("config");
    let state = paywire_facilitator::build(
        &config,
        &paywire_core::PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin)),
    )
    .await
    .expect("facilitator");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = paywire_facilitator::serve(listener, state, std::future::pending()).await;
    });
    url
}

fn option(price: &str, payee: Address) -> PaymentOption {
    PaymentOption::exact(
        ChainId::eip155(31337),
        money(price).expect("price"),
        PayTo::address(payee.to_string()),
    )
}

async fn env() -> Env {
    let devnet = Devnet::start().await.expect("devnet");
    let dir = tempfile::tempdir().expect("dir");
    let facilitator = start_facilitator(&devnet, dir.path()).await;
    let remote: Arc<dyn Facilitator> =
        Arc::new(HttpFacilitator::new(facilitator.as_str()).expect("facilitator client"));
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(devnet.usdc()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let seller = format!("http://{}", listener.local_addr().expect("addr"));
    let payee = Address::random();
    let (weather_key, weather) = Declaration::get()
        .query_param("city", "Paris")
        .output_json(json!({"city": "Paris", "temperature": 21}))
        .into_extension();
    let (users_key, users) = Declaration::get()
        .output_json(json!({"name": "Ada"}))
        .into_extension();
    let (translate_key, translate) =
        Declaration::post_json(json!({"text": "hello", "to": "fr"})).into_extension();
    let layer = PaymentLayer::builder(remote)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin(seller.clone())
        .route(
            Route::new("GET /weather")
                .expect("route")
                .accept(option("$0.01", payee))
                .description("Current weather for a city")
                .service("Example Weather", ["weather", "forecast"], None)
                .extension(weather_key, weather),
        )
        .route(
            Route::new("GET /users/:id")
                .expect("route")
                .accept(option("$0.002", payee))
                .description("A user profile")
                .extension(users_key, users),
        )
        .route(
            Route::new("POST /translate")
                .expect("route")
                .accept(option("$0.05", payee))
                .description("Machine translation")
                .extension(translate_key, translate),
        )
        .build()
        .expect("layer");
    let app = Router::new()
        .route("/weather", get(|| async { "sunny" }))
        .route("/users/{id}", get(|| async { "Ada" }))
        .route("/translate", post(|| async { "bonjour" }))
        .layer(layer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Env {
        devnet,
        seller,
        facilitator,
        _dir: dir,
    }
}

async fn paywire(env: &Env, args: &[&str]) -> (i32, String, String) {
    let asset = format!("eip155:31337:{}:6:usd", env.devnet.usdc());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(args)
        .args(["--asset", &asset])
        .env("PAYWIRE_PRIVATE_KEY", env.devnet.payer(4).private_key_hex())
        .env("PAYWIRE_FACILITATOR", &env.facilitator)
        .output()
        .await
        .expect("run paywire");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn paid_endpoints_are_discovered_and_the_cheapest_is_picked() {
    let env = env().await;
    let (code, out, err) = paywire(&env, &["discover", "--json"]).await;
    assert_eq!((code, out.trim()), (0, "[]"), "{err}");

    for (method, path) in [
        ("GET", "/weather?city=Rome"),
        ("GET", "/users/1"),
        ("GET", "/users/2"),
        ("POST", "/translate"),
    ] {
        let url = format!("{}{path}", env.seller);
        let (code, _, err) = paywire(&env, &["pay", "-X", method, &url, "-d", "{}"]).await;
        assert_eq!(code, 0, "{method} {path}: {err}");
    }

    // The facilitator confirms each declaration with the seller after
    // settling; wait for the three entries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut urls: Vec<String> = loop {
        let (code, out, err) = paywire(&env, &["discover", "--json"]).await;
        assert_eq!(code, 0, "{err}");
        let listed: Value = serde_json::from_str(&out).expect("json");
        let urls: Vec<String> = listed
            .as_array()
            .expect("array")
            .iter()
            .map(|e| e["resource"].as_str().unwrap_or_default().to_owned())
            .collect();
        if urls.len() >= 3 || std::time::Instant::now() > deadline {
            break urls;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    urls.sort();
    let base = &env.seller;
    assert_eq!(
        urls,
        [
            format!("{base}/translate"),
            format!("{base}/users/:id"),
            format!("{base}/weather")
        ],
        "two users are one catalog entry; the query string is not part of the key"
    );

    let (code, out, err) = paywire(&env, &["discover"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "{base}/weather  Example Weather: Current weather for a city"
        )),
        "{out}"
    );
    assert!(out.contains("$0.010000 on eip155:31337 (exact)"), "{out}");

    let (code, out, err) = paywire(&env, &["discover", "--query", "translation"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("{base}/translate")) && !out.contains("/weather"),
        "{out}"
    );

    let (code, out, err) = paywire(&env, &["discover", "--cheapest", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let chosen: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(chosen["resource"]["resource"], format!("{base}/users/:id"));
    assert_eq!(chosen["option"]["amount"], "2000");

    let (code, _, err) = paywire(&env, &["discover", "--cheapest", "--network", "base"]).await;
    assert_eq!(code, 3, "nothing payable on Base: {err}");
    let (code, _, err) = paywire(&env, &["discover", "--limit", "0"]).await;
    assert_eq!(code, 2, "{err}");
}
