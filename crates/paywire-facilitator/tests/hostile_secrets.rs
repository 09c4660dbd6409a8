//! Hostile review of issue 12, item 4 (secrets): RPC URLs and the ledger's
//! store URL must not leave the process. Probes marked
//! `#[ignore = "finding N"]` fail on the code they were written against; run
//! them with
//! `cargo nextest run -p paywire-facilitator --test hostile_secrets --run-ignored all`.

mod common;

use std::io::Write;
use std::sync::Mutex;

use alloy_primitives::{Address, B256};
use common::*;
use paywire_core::{PaymentPayload, PaymentRequirements};
use paywire_evm::LocalSigner;
use paywire_facilitator::FacilitatorConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH_SECRET: &str = "PATHSECRET0123";
const QUERY_SECRET: &str = "QUERYSECRET4567";
const USER_SECRET: &str = "USERSECRET89ab";
const PG_SECRET: &str = "PGSECRETcdef01";

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
}

fn logs() -> String {
    String::from_utf8_lossy(
        &LOG.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned()
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PATH_SECRET, QUERY_SECRET, USER_SECRET, PG_SECRET] {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

/// A provider on loopback answering every request with `response`.
async fn fake_provider(response: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 8192];
            let _ = socket.read(&mut buffer).await;
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    address
}

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn offline_requirements(asset: Address) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": "eip155:31337",
        "amount": PRICE.to_string(),
        "asset": asset.to_string(),
        "payTo": Address::random().to_string(),
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USD Coin", "version": "2"}
    }))
    .expect("requirements are well formed")
}

fn chain_config(store: &str, urls: &[String], asset: Address, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
store = "{store}"
rpc_timeout_seconds = 1
{extra}
[[chains]]
network = "eip155:31337"
rpc_urls = {}
signer_private_keys = ["${{TEST_SIGNER_KEY}}"]
[[chains.assets]]
address = "{asset}"
symbol = "USDC"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"
"#,
        serde_json::to_string(urls).unwrap_or_default(),
    )
}

fn random_key() -> String {
    format!("0x{}", alloy_primitives::hex::encode(B256::random()))
}

/// Every client-visible answer and the log, checked for secrets.
async fn probe_everything(server: &Server, asset: Address) -> TestResult {
    let requirements = offline_requirements(asset);
    let exact = paywire_evm::exact::ExactEvmClient::new(LocalSigner::random())
        .sign(&requirements)
        .await?;
    let payload = PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: None,
        accepted: requirements.clone(),
    };
    let request = body(&payload, &requirements);
    let client = reqwest::Client::new();
    for path in ["/verify", "/settle"] {
        let text = client
            .post(server.url(path))
            .json(&request)
            .send()
            .await?
            .text()
            .await?;
        assert_no_secret(path, &text);
    }
    for path in ["/ready", "/metrics", "/supported"] {
        let text = client.get(server.url(path)).send().await?.text().await?;
        assert_no_secret(path, &text);
    }
    assert_no_secret("Debug of the state", &format!("{:?}", server.state));
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding 5: a JSON-RPC error from the provider is passed on verbatim.
// Transport errors are scrubbed of the URL, its path and its query, but a
// provider (or a gateway in front of it) that names the key in its error
// object -- here Alchemy-style: HTTP 401 with a JSON-RPC error body -- has it
// shown in `/ready` (public, unauthenticated) and in the log.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn a_provider_error_naming_the_key_is_scrubbed() -> TestResult {
    capture_logs();
    let message = format!(
        r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":-32001,"message":"invalid API key {PATH_SECRET}"}}}}"#
    );
    let address = fake_provider(http("401 Unauthorized", &message)).await;
    let url = format!("http://{address}/v2/{PATH_SECRET}?apikey={QUERY_SECRET}");
    let asset = Address::random();
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("ledger.sqlite").display().to_string();
    let text = chain_config(&store, &[url], asset, "");
    let key = random_key();
    let server = start_from(&text, &key).await?;
    let ready = reqwest::get(server.url("/ready")).await?.text().await?;
    eprintln!("/ready: {ready}");
    probe_everything(&server, asset).await?;
    assert_no_secret("the log", &logs());
    server.stop().await;
    Ok(())
}

/// Lesson 33: `/ready` is public, so a failing probe shows only the kind of
/// failure. A node's own error text can name an account, a billing contact
/// or an internal host that no URL scrubbing recognises; it goes to the log,
/// never to the page.
#[tokio::test]
async fn ready_shows_the_kind_of_rpc_failure_not_the_nodes_text() -> TestResult {
    let node_text = "quota exceeded for account acct-7781 (billing: ops@seller.example)";
    let answer =
        format!(r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":-32005,"message":"{node_text}"}}}}"#);
    let address = fake_provider(http("200 OK", &answer)).await;
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("ledger.sqlite").display().to_string();
    let text = chain_config(
        &store,
        &[format!("http://{address}")],
        Address::random(),
        "",
    );
    let server = start_from(&text, &random_key()).await?;
    let response = reqwest::get(server.url("/ready")).await?;
    assert_eq!(response.status().as_u16(), 503);
    let page: Value = response.json().await?;
    server.stop().await;
    assert_eq!(
        page["chains"][0]["error"],
        json!("RPC error -32005"),
        "{page}"
    );
    for fragment in ["acct-7781", "ops@seller.example", "quota"] {
        assert!(!page.to_string().contains(fragment), "{page}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding 6: the ledger's store URL (`postgres://user:password@host/db`) is
// a plain `String` in `FacilitatorConfig`, whose `Debug` prints it -- the
// RPC URLs next to it are redacted -- and a store URL of an unsupported
// scheme is quoted whole in the configuration error.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn the_store_password_is_never_printed() -> TestResult {
    let asset = Address::random();
    let url = format!("http://127.0.0.1:1/v2/{PATH_SECRET}");
    let key = random_key();
    let postgres = format!("postgres://x402:{PG_SECRET}@127.0.0.1:1/x402");
    let text = chain_config(&postgres, std::slice::from_ref(&url), asset, "");
    let config = FacilitatorConfig::parse_with_env(&text, |_| Some(key.clone()))?;
    let debug = format!("{config:?}");
    let location = format!("{:?}", config.store_location());
    // Postgres down: the startup error.
    let startup = match start_from(&text, &key).await {
        Ok(_) => String::from("started"),
        Err(error) => error.to_string(),
    };
    let mysql = format!("mysql://root:{PG_SECRET}@db.internal/x402");
    let text = chain_config(&mysql, &[url], asset, "");
    let refused = match FacilitatorConfig::parse_with_env(&text, |_| Some(key.clone())) {
        Ok(config) => format!("{:?}", config.store_location()),
        Err(error) => error.to_string(),
    };
    eprintln!("Debug: {debug}\nlocation: {location}\nstartup: {startup}\nrefused: {refused}");
    assert_no_secret("the Postgres startup error", &startup);
    assert_no_secret("Debug of the configuration", &debug);
    assert_no_secret("Debug of the store location", &location);
    assert_no_secret("the unsupported-store error", &refused);
    Ok(())
}

// ---------------------------------------------------------------------------
// Held: credentials in the URL's user info, an IPv6 host, a closed port, a
// garbage answer and an HTTP 401 without a JSON-RPC body: nothing shows the
// user info, the path or the query.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn userinfo_and_ipv6_urls_do_not_leak() -> TestResult {
    capture_logs();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let garbage = fake_provider(http("200 OK", "<html>oops</html>")).await;
    let unauthorized = fake_provider(http("401 Unauthorized", "bad key")).await;
    let urls = vec![
        format!("http://user:{USER_SECRET}@{closed}/v2/{PATH_SECRET}?apikey={QUERY_SECRET}"),
        format!("http://{USER_SECRET}@{garbage}/{PATH_SECRET}"),
        format!("http://x:{USER_SECRET}@{unauthorized}/?{QUERY_SECRET}"),
        format!("http://[::1]:1/v2/{PATH_SECRET}?k={QUERY_SECRET}"),
        format!("https://nonexistent.invalid/v2/{PATH_SECRET}?k={QUERY_SECRET}"),
    ];
    let asset = Address::random();
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("ledger.sqlite").display().to_string();
    let text = chain_config(&store, &urls, asset, "");
    let key = random_key();
    let config = FacilitatorConfig::parse_with_env(&text, |_| Some(key.clone()))?;
    assert_no_secret("Debug of the configuration", &format!("{config:?}"));
    let server = start_from(&text, &key).await?;
    probe_everything(&server, asset).await?;
    assert_no_secret("the log", &logs());
    server.stop().await;
    Ok(())
}
