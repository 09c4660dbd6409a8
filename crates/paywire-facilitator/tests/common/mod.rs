//! Shared helpers: a devnet, a facilitator server on 127.0.0.1:0, signed payments.
#![allow(dead_code, unused_imports)]

use std::path::Path;

use alloy_primitives::{Address, U256};
use paywire_core::{PaymentPayload, PaymentRequirements};
use paywire_testkit::Devnet;
use serde_json::{Value, json};

pub mod origin;

/// Price of every test payment: $0.01.
pub const PRICE: u64 = 10_000;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A running facilitator (the test kit's).
pub use paywire_testkit::stack::FacilitatorServer as Server;
/// Where a test's ledger lives (SQLite in a temporary directory, or PostgreSQL).
pub use paywire_testkit::stack::Ledger as TestStore;
pub use paywire_testkit::stack::{Stack, StackOptions};
/// The devnet facilitator config, the EVM plugins: the test kit's.
pub use paywire_testkit::stack::{config_text, plugins};

/// Builds and starts a facilitator from config text.
pub async fn start_from(
    text: &str,
    signer_key: &str,
) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Server::start(text, signer_key).await?)
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
    start_configured(devnet, store, "").await
}

/// $0.01 of devnet USDC to `pay_to`.
pub fn requirements(devnet: &Devnet, pay_to: Address) -> PaymentRequirements {
    paywire_testkit::stack::exact_requirements(devnet, PRICE, pay_to)
}

/// A payment by devnet payer `index`, optionally with a payment-identifier id.
pub async fn pay(
    devnet: &Devnet,
    index: usize,
    requirements: &PaymentRequirements,
    payment_id: Option<&str>,
) -> Result<PaymentPayload, Box<dyn std::error::Error + Send + Sync>> {
    let mut payment = paywire_testkit::stack::sign_exact(devnet.payer(index), requirements).await?;
    payment.extensions = payment_id.map(|id| {
        serde_json::from_value(json!({
            "payment-identifier": {
                "info": {"required": false, "id": id},
                "schema": {"type": "object"}
            }
        }))
        .expect("extensions are well formed")
    });
    Ok(payment)
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
