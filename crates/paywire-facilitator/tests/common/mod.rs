//! Shared helpers: a devnet, a facilitator server on 127.0.0.1:0, signed payments.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, U256};
use paywire_core::{PaymentPayload, PaymentRequirements};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use paywire_facilitator::{AppState, FacilitatorConfig};
use paywire_testkit::Devnet;
use paywire_testkit::postgres::PgCluster;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod origin;

/// Price of every test payment: $0.01.
pub const PRICE: u64 = 10_000;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A running facilitator.
pub struct Server {
    pub base: String,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// A config for `network` served by `rpc` with the devnet's USDC (when `usdc` is set).
pub fn config_text(network: &str, rpc: &str, usdc: Option<Address>, store: &Path) -> String {
    let mut text = format!(
        r#"
listen = "127.0.0.1:0"
store = "{}"
receipt_timeout_seconds = 20
rpc_timeout_seconds = 2

[[chains]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_private_keys = ["${{TEST_SIGNER_KEY}}"]
gas_limit = 300000
max_fee_per_gas_gwei = 100
"#,
        store.display()
    );
    if let Some(usdc) = usdc {
        text.push_str(&format!(
            r#"
[[chains.assets]]
address = "{usdc}"
symbol = "USDC"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"
"#
        ));
    }
    text
}

/// The chain plugins the tests' facilitators settle with: EVM.
pub fn plugins() -> paywire_core::PluginRegistry {
    paywire_core::PluginRegistry::new().with(std::sync::Arc::new(paywire_evm::EvmPlugin))
}

/// Builds and starts a facilitator from config text.
pub async fn start_from(
    text: &str,
    signer_key: &str,
) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    let key = signer_key.to_owned();
    let config = FacilitatorConfig::parse_with_env(text, |name| {
        (name == "TEST_SIGNER_KEY").then(|| key.clone())
    })?;
    let state = paywire_facilitator::build(&config, &plugins()).await?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let served = state.clone();
    let handle = tokio::spawn(async move {
        let _ = paywire_facilitator::serve(listener, served, async {
            let _ = rx.await;
        })
        .await;
    });
    Ok(Server {
        base,
        state,
        shutdown: Some(tx),
        handle: Some(handle),
    })
}

/// Like [`start`], with more configuration (`[section]` text) appended.
pub async fn start_configured(
    devnet: &Devnet,
    store: &Path,
    extra: &str,
) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    let mut text = config_text(
        devnet.network(),
        devnet.rpc_url(),
        Some(devnet.usdc()),
        store,
    );
    text.push('\n');
    text.push_str(extra);
    start_from(&text, &devnet.usdc_owner().private_key_hex()).await
}

/// A facilitator for the devnet, with its ledger at `store`; dev account #0 settles.
pub async fn start(
    devnet: &Devnet,
    store: &Path,
) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    let text = config_text(
        devnet.network(),
        devnet.rpc_url(),
        Some(devnet.usdc()),
        store,
    );
    start_from(&text, &devnet.usdc_owner().private_key_hex()).await
}

/// $0.01 of devnet USDC to `pay_to`.
pub fn requirements(devnet: &Devnet, pay_to: Address) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": devnet.network(),
        "amount": PRICE.to_string(),
        "asset": devnet.usdc().to_string(),
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USD Coin", "version": "2"}
    }))
    .expect("requirements are well formed")
}

/// A payment by devnet payer `index`, optionally with a payment-identifier id.
pub async fn pay(
    devnet: &Devnet,
    index: usize,
    requirements: &PaymentRequirements,
    payment_id: Option<&str>,
) -> Result<PaymentPayload, Box<dyn std::error::Error + Send + Sync>> {
    let client = ExactEvmClient::new(LocalSigner::new(devnet.payer(index).signer()));
    let exact = client.sign(requirements).await?;
    let extensions = payment_id.map(|id| {
        serde_json::from_value(json!({
            "payment-identifier": {
                "info": {"required": false, "id": id},
                "schema": {"type": "object"}
            }
        }))
        .expect("extensions are well formed")
    });
    Ok(PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions,
        resource: None,
        accepted: requirements.clone(),
    })
}

/// The `/verify` and `/settle` body.
pub fn body(payload: &PaymentPayload, requirements: &PaymentRequirements) -> Value {
    json!({
        "x402Version": 2,
        "paymentPayload": payload,
        "paymentRequirements": requirements,
    })
}

/// POSTs JSON and returns (status, body).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<(u16, Value), Box<dyn std::error::Error + Send + Sync>> {
    let response = client.post(url).json(body).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// POSTs raw bytes as JSON and returns (status, body).
pub async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> Result<(u16, Value), Box<dyn std::error::Error + Send + Sync>> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

pub async fn balance(
    devnet: &Devnet,
    owner: Address,
) -> Result<U256, Box<dyn std::error::Error + Send + Sync>> {
    Ok(devnet.usdc_balance(owner).await?)
}

/// Where a test's ledger lives: a SQLite file in a temporary directory, or a
/// throwaway PostgreSQL cluster. Both are removed on drop.
pub enum TestStore {
    Sqlite(tempfile::TempDir),
    Postgres(PgCluster),
}

impl TestStore {
    pub fn sqlite() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self::Sqlite(tempfile::tempdir()?))
    }

    /// A fresh cluster; `None` (after a loud notice) only when PostgreSQL is
    /// missing and `PAYWIRE_SKIP_POSTGRES=1` is set.
    pub async fn postgres() -> Result<Option<Self>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(PgCluster::start_or_skip().await?.map(Self::Postgres))
    }

    /// The `store` setting: the SQLite file path or the PostgreSQL URL.
    pub fn location(&self) -> PathBuf {
        match self {
            Self::Sqlite(dir) => dir.path().join("ledger.sqlite"),
            Self::Postgres(cluster) => PathBuf::from(cluster.url()),
        }
    }
}

/// Generates `mod $name { sqlite, postgres }` tests running the async fn
/// `$name(TestStore) -> TestResult` against each store.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() -> TestResult {
                super::$name(TestStore::sqlite()?).await
            }

            #[tokio::test]
            async fn postgres() -> TestResult {
                match TestStore::postgres().await? {
                    Some(store) => super::$name(store).await,
                    None => Ok(()),
                }
            }
        }
    )*};
}

/// How many transactions `address` has sent (its account nonce).
pub async fn tx_count(
    devnet: &Devnet,
    address: Address,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let answer = devnet
        .rpc(
            "eth_getTransactionCount",
            json!([address.to_string(), "latest"]),
        )
        .await?;
    let text = answer.as_str().ok_or("nonce is not a string")?;
    Ok(u64::from_str_radix(text.trim_start_matches("0x"), 16)?)
}

/// A replayed settle's answer: 200, `success: false`, the used-nonce
/// reason, `transaction: ""`, the network.
pub fn assert_replay_refused(status: u16, answer: &Value) {
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], json!(false), "{answer}");
    assert_eq!(
        answer["errorReason"],
        json!("invalid_exact_evm_nonce_already_used"),
        "{answer}"
    );
    assert_eq!(answer["transaction"], json!(""), "{answer}");
    assert_eq!(answer["network"], json!("eip155:31337"), "{answer}");
    // The message tells a resource server "already settled and delivered"
    // apart from other used-nonce failures: stable, word for word.
    assert_eq!(
        answer["errorMessage"],
        json!(paywire_facilitator::REPLAY_REFUSAL_MESSAGE),
        "{answer}"
    );
}

/// The value of the metric line starting with `name ` (0 when absent).
pub async fn metric_value(
    base: &str,
    name: &str,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0))
}
