//! The facilitator's gas and key safety over HTTP: RPC URLs (which carry
//! provider API keys) never leave the process, counterfactual wallets are
//! deployed only when configured, and an authorization reusing a settled
//! nonce is refused at `/settle`.

mod common;

use std::io::Write;
use std::sync::Mutex;

use alloy_primitives::{Address, B256, U256};
use common::*;
use paywire_core::{PaymentPayload, PaymentRequirements};
use paywire_evm::LocalSigner;
use paywire_evm::exact::{Authorization, ExactEvmPayload, eip712_domain, signing_hash};
use paywire_facilitator::FacilitatorConfig;
use paywire_testkit::Devnet;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH_SECRET: &str = "PATHSECRET0123";
const QUERY_SECRET: &str = "QUERYSECRET4567";

/// Everything this test binary logs, at every level.
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
    for secret in [PATH_SECRET, QUERY_SECRET] {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

/// An RPC "provider" on loopback that answers every request with
/// `response` (raw HTTP), or with nothing at all when it is `None`.
async fn fake_provider(response: Option<&'static str>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            match response {
                Some(text) => {
                    let _ = socket.write_all(text.as_bytes()).await;
                }
                None => held.push(socket),
            }
        }
    });
    format!("http://{address}/v2/{PATH_SECRET}?apikey={QUERY_SECRET}")
}

fn random_key() -> String {
    format!("0x{}", alloy_primitives::hex::encode(B256::random()))
}

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    format!("http://{address}/v2/{PATH_SECRET}?apikey={QUERY_SECRET}")
}

/// $0.01 of a made-up token on chain 31337, with its EIP-712 domain.
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

#[tokio::test]
async fn rpc_urls_never_leave_the_process() -> TestResult {
    capture_logs();
    let garbage = fake_provider(Some(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot json!",
    ))
    .await;
    let failing = fake_provider(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ))
    .await;
    let silent = fake_provider(None).await;
    let urls = [closed_port_url(), garbage, failing, silent];
    let asset = Address::random();
    let store = tempfile::tempdir()?;
    let text = format!(
        r#"
listen = "127.0.0.1:0"
store = "{}"
rpc_timeout_seconds = 1
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
        store.path().join("ledger.sqlite").display(),
        serde_json::to_string(&urls)?,
    );
    let key = random_key();
    let config = FacilitatorConfig::parse_with_env(&text, |_| Some(key.clone()))?;
    assert_no_secret("Debug of the configuration", &format!("{config:?}"));
    // What the EVM plugin built from the table (its resolved chain's Debug
    // is checked in paywire-evm's own tests).
    let parts = paywire_facilitator::chain_parts(&config, &plugins()).await?;
    assert_no_secret("Debug of the chain parts", &format!("{parts:?}"));
    let server = start_from(&text, &key).await?;
    assert_no_secret("Debug of the state", &format!("{:?}", server.state));

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
        let response = client.post(server.url(path)).json(&request).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        assert!(
            status >= 400 || text.contains("false"),
            "{path}: {status} {text}"
        );
        assert!(
            text.contains("127.0.0.1"),
            "{path} still names the host: {text}"
        );
        assert_no_secret(path, &text);
    }
    for path in ["/ready", "/metrics"] {
        let text = client.get(server.url(path)).send().await?.text().await?;
        assert_no_secret(path, &text);
    }
    let ready = client.get(server.url("/ready")).send().await?;
    assert_eq!(ready.status().as_u16(), 503);
    let logs = logs();
    assert!(
        logs.contains("RPC endpoint failed"),
        "logs captured: {logs}"
    );
    assert_no_secret("the log", &logs);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_invalid_rpc_url_is_refused_without_echoing_it() -> TestResult {
    let store = tempfile::tempdir()?;
    let mut text = config_text(
        "eip155:31337",
        &format!("ftp//{PATH_SECRET}"),
        Some(Address::random()),
        &store.path().join("ledger.sqlite"),
    );
    text.push('\n');
    let error = match start_from(&text, &random_key()).await {
        Ok(_) => panic!("an invalid RPC URL was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("not a valid URL"), "{error}");
    assert_no_secret("the setup error", &error);
    Ok(())
}

/// A payment from payer #3's counterfactual wallet (funded, not deployed).
async fn counterfactual_payment(
    devnet: &Devnet,
    requirements: &PaymentRequirements,
) -> Result<(PaymentPayload, Address), Box<dyn std::error::Error + Send + Sync>> {
    let owner = LocalSigner::new(devnet.payer(3).signer());
    let factory = devnet.deploy_wallet_factory().await?;
    let salt = B256::repeat_byte(0x42);
    let wallet = devnet
        .predict_wallet(factory, owner.address(), salt)
        .await?;
    devnet.mint_usdc(wallet, U256::from(3 * PRICE)).await?;
    let mut signed = sign(devnet, &owner, wallet, requirements, B256::random(), 300);
    signed.signature = paywire_testkit::wrap_eip6492(
        factory,
        paywire_testkit::deploy_calldata(owner.address(), salt),
        signed.signature,
    );
    Ok((wrap(signed, requirements), wallet))
}

/// An authorization of `from` paying `requirements`, signed by `key`.
fn sign(
    devnet: &Devnet,
    key: &LocalSigner,
    from: Address,
    requirements: &PaymentRequirements,
    nonce: B256,
    valid_for: u64,
) -> ExactEvmPayload {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let authorization = Authorization {
        from,
        to: requirements.pay_to.parse().expect("payTo is an address"),
        value: PRICE.into(),
        valid_after: 0u64.into(),
        valid_before: (now + valid_for).into(),
        nonce,
    };
    let domain = eip712_domain("USD Coin", "2", 31337, devnet.usdc());
    let signature = key
        .sign_hash_sync(&signing_hash(&authorization, &domain))
        .expect("signing works");
    ExactEvmPayload {
        authorization,
        signature: signature.as_bytes().into(),
    }
}

fn wrap(exact: ExactEvmPayload, requirements: &PaymentRequirements) -> PaymentPayload {
    PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: None,
        accepted: requirements.clone(),
    }
}

async fn transactions_sent(devnet: &Devnet, from: Address) -> u64 {
    let count = devnet
        .rpc("eth_getTransactionCount", json!([from, "pending"]))
        .await
        .expect("the devnet answers");
    u64::from_str_radix(count.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
        .unwrap_or(u64::MAX)
}

#[tokio::test]
async fn counterfactual_wallets_follow_the_configuration() -> TestResult {
    let devnet = Devnet::start().await?;
    let store = tempfile::tempdir()?;
    let client = reqwest::Client::new();
    let requirements = requirements(&devnet, Address::random());
    let (payload, wallet) = counterfactual_payment(&devnet, &requirements).await?;
    let request = body(&payload, &requirements);
    let signer = devnet.usdc_owner().address;
    let sent_before = transactions_sent(&devnet, signer).await;

    // Default: refused at /verify and /settle, nothing sent; both count
    // against the per-IP limit.
    let off = start_configured(
        &devnet,
        &store.path().join("off.sqlite"),
        "[rate_limit]\nper_ip_per_minute = 2",
    )
    .await?;
    let (status, verify) = post(&client, &off.url("/verify"), &request).await?;
    assert_eq!(status, 200, "{verify}");
    assert_eq!(verify["isValid"], json!(false));
    assert_eq!(
        verify["invalidReason"],
        json!("invalid_exact_evm_payload_undeployed_smart_wallet")
    );
    let (status, settle) = post(&client, &off.url("/settle"), &request).await?;
    assert_eq!(status, 200, "{settle}");
    assert_eq!(settle["success"], json!(false));
    assert_eq!(settle["transaction"], json!(""));
    let limited = client
        .post(off.url("/settle"))
        .json(&request)
        .send()
        .await?;
    assert_eq!(limited.status().as_u16(), 429);
    assert!(devnet.code_at(wallet).await?.is_empty(), "nothing deployed");
    assert_eq!(transactions_sent(&devnet, signer).await, sent_before);
    off.stop().await;

    // On, with a cap below the deployment's cost: refused at /verify.
    let capped = start_configured_chain(
        &devnet,
        &store.path().join("capped.sqlite"),
        "counterfactual_wallets = \"deploy\"\nmax_wallet_deployment_gas = 50000",
    )
    .await?;
    let (_, verify) = post(&client, &capped.url("/verify"), &request).await?;
    assert_eq!(
        verify["invalidReason"],
        json!("invalid_exact_evm_payload_undeployed_smart_wallet"),
        "{verify}"
    );
    capped.stop().await;
    assert_eq!(transactions_sent(&devnet, signer).await, sent_before);

    // On, within the cap: deployed, then paid.
    let on = start_configured_chain(
        &devnet,
        &store.path().join("on.sqlite"),
        "counterfactual_wallets = \"deploy\"",
    )
    .await?;
    let (status, settle) = post(&client, &on.url("/settle"), &request).await?;
    assert_eq!(status, 200, "{settle}");
    assert_eq!(settle["success"], json!(true), "{settle}");
    assert!(!devnet.code_at(wallet).await?.is_empty(), "deployed");
    assert_eq!(balance(&devnet, wallet).await?, U256::from(2 * PRICE));
    on.stop().await;
    Ok(())
}

/// Like [`start`], with `chain_settings` added to the `[[chains]]` entry.
async fn start_configured_chain(
    devnet: &Devnet,
    store: &std::path::Path,
    chain_settings: &str,
) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    let text = config_text(
        devnet.network(),
        devnet.rpc_url(),
        Some(devnet.usdc()),
        store,
    )
    .replace(
        "gas_limit = 300000\n",
        &format!("gas_limit = 300000\n{chain_settings}\n"),
    );
    start_from(&text, &devnet.usdc_owner().private_key_hex()).await
}

#[tokio::test]
async fn an_authorization_reusing_a_settled_nonce_fails_at_settle() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let client = reqwest::Client::new();
    let pay_to = Address::random();
    let requirements = requirements(devnet, pay_to);
    let key = LocalSigner::new(devnet.payer(2).signer());
    let nonce = B256::random();
    let first = wrap(
        sign(devnet, &key, key.address(), &requirements, nonce, 300),
        &requirements,
    );
    // Same payer and nonce, another validBefore: another signature.
    let second = wrap(
        sign(devnet, &key, key.address(), &requirements, nonce, 301),
        &requirements,
    );
    let (_, settled) = post(
        &client,
        &server.url("/settle"),
        &body(&first, &requirements),
    )
    .await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    let (status, replay) = post(
        &client,
        &server.url("/settle"),
        &body(&second, &requirements),
    )
    .await?;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["success"], json!(false), "{replay}");
    assert_eq!(replay["transaction"], json!(""), "{replay}");
    assert_eq!(
        replay["errorReason"],
        json!("invalid_exact_evm_nonce_already_used"),
        "{replay}"
    );
    assert_eq!(balance(devnet, pay_to).await?, U256::from(PRICE));
    stack.stop().await;
    Ok(())
}
