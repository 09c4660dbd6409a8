//! A minimal JSON-RPC client over reqwest, with the few typed calls the devnet needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{DevnetError, Result};

/// How often [`crate::Devnet::wait_receipt`] polls.
pub const RECEIPT_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How long [`crate::Devnet::wait_receipt`] waits before giving up.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// A log entry of a transaction receipt.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ReceiptLog {
    /// The emitting contract.
    pub address: Address,
    /// The indexed topics (topic 0 is the event signature hash).
    pub topics: Vec<B256>,
    /// The non-indexed data.
    pub data: Bytes,
}

/// The parts of a transaction receipt callers usually look at; `raw` has the rest.
#[derive(Clone, Debug)]
pub struct TxReceipt {
    /// The transaction hash.
    pub transaction_hash: B256,
    /// `true` for status 1 (success), `false` for status 0 (reverted).
    pub status: bool,
    /// The block the transaction was mined in.
    pub block_number: u64,
    /// Gas used by this transaction.
    pub gas_used: u64,
    /// The sender.
    pub from: Address,
    /// The recipient (`None` for a contract creation).
    pub to: Option<Address>,
    /// The created contract, for a deployment.
    pub contract_address: Option<Address>,
    /// The emitted logs.
    pub logs: Vec<ReceiptLog>,
    /// The receipt as the node returned it.
    pub raw: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReceipt {
    transaction_hash: B256,
    status: alloy_primitives::U64,
    block_number: alloy_primitives::U64,
    gas_used: alloy_primitives::U64,
    from: Address,
    to: Option<Address>,
    contract_address: Option<Address>,
    #[serde(default)]
    logs: Vec<ReceiptLog>,
}

impl TryFrom<Value> for TxReceipt {
    type Error = DevnetError;

    fn try_from(raw: Value) -> Result<Self> {
        let r: RawReceipt = serde_json::from_value(raw.clone())
            .map_err(|e| DevnetError::Unexpected(format!("malformed receipt {raw}: {e}")))?;
        Ok(TxReceipt {
            transaction_hash: r.transaction_hash,
            status: r.status == alloy_primitives::U64::from(1),
            block_number: r.block_number.to(),
            gas_used: r.gas_used.to(),
            from: r.from,
            to: r.to,
            contract_address: r.contract_address,
            logs: r.logs,
            raw,
        })
    }
}

/// A JSON-RPC client for one node URL.
#[derive(Debug)]
pub(crate) struct Rpc {
    url: String,
    http: reqwest::Client,
    next_id: AtomicU64,
}

impl Rpc {
    pub(crate) fn new(url: String) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| DevnetError::Http {
                method: "(building the HTTP client)".into(),
                source: e,
            })?;
        Ok(Self {
            url,
            http,
            next_id: AtomicU64::new(1),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with `params` and returns the `result` member.
    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let http_err = |source| DevnetError::Http {
            method: method.to_string(),
            source,
        };
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(http_err)?;
        let mut answer: Value = response.json().await.map_err(http_err)?;
        if let Some(error) = answer.get("error") {
            return Err(DevnetError::Rpc {
                method: method.to_string(),
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_string(),
                data: error.get("data").cloned().map(Box::new),
            });
        }
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(DevnetError::Unexpected(format!(
                "{method}: answer without result or error: {answer}"
            ))),
        }
    }

    /// Calls `method` and deserializes the result.
    pub(crate) async fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T> {
        let value = self.call(method, params).await?;
        serde_json::from_value(value.clone()).map_err(|e| {
            DevnetError::Unexpected(format!("{method}: unexpected result {value}: {e}"))
        })
    }

    /// `eth_call` against the latest block.
    pub(crate) async fn eth_call(&self, to: Address, data: &[u8]) -> Result<Bytes> {
        self.call_as(
            "eth_call",
            json!([{"to": to, "data": Bytes::copy_from_slice(data)}, "latest"]),
        )
        .await
    }

    /// `eth_sendTransaction` from an unlocked account; `to: None` deploys `data`.
    pub(crate) async fn send_transaction(
        &self,
        from: Address,
        to: Option<Address>,
        data: &[u8],
        value: Option<U256>,
        gas: Option<u64>,
    ) -> Result<B256> {
        let mut tx = json!({"from": from, "data": Bytes::copy_from_slice(data)});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        if let Some(value) = value {
            tx["value"] = json!(value);
        }
        if let Some(gas) = gas {
            tx["gas"] = json!(format!("{gas:#x}"));
        }
        self.call_as("eth_sendTransaction", json!([tx])).await
    }

    /// Polls `eth_getTransactionReceipt` every [`RECEIPT_POLL_INTERVAL`] until it is mined.
    pub(crate) async fn wait_receipt(&self, hash: B256) -> Result<TxReceipt> {
        let started = Instant::now();
        loop {
            let receipt = self
                .call("eth_getTransactionReceipt", json!([hash]))
                .await?;
            if !receipt.is_null() {
                return TxReceipt::try_from(receipt);
            }
            if started.elapsed() > RECEIPT_TIMEOUT {
                return Err(DevnetError::Timeout(format!(
                    "no receipt for {hash} after {RECEIPT_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(RECEIPT_POLL_INTERVAL).await;
        }
    }

    /// Sends, waits for the receipt and fails on status 0.
    pub(crate) async fn transact(
        &self,
        from: Address,
        to: Option<Address>,
        data: &[u8],
    ) -> Result<TxReceipt> {
        let hash = self.send_transaction(from, to, data, None, None).await?;
        let receipt = self.wait_receipt(hash).await?;
        if !receipt.status {
            return Err(DevnetError::Reverted { hash });
        }
        Ok(receipt)
    }

    /// Deploys `code` (creation bytecode with constructor arguments appended) from `from`.
    pub(crate) async fn deploy(&self, code: &[u8], from: Address) -> Result<Address> {
        let receipt = self.transact(from, None, code).await?;
        receipt.contract_address.ok_or_else(|| {
            DevnetError::Unexpected(format!(
                "deployment {} has no contractAddress",
                receipt.transaction_hash
            ))
        })
    }
}
