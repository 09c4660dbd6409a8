//! A small JSON-RPC client for EVM nodes: several endpoints with fail-over,
//! per-request timeouts, and batches (several calls in one round trip).
//!
//! Every method this crate sends is idempotent (reads, and
//! `eth_sendRawTransaction`, whose re-send of identical bytes is harmless), so
//! a transport failure is retried on the next endpoint.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A failed RPC interaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No endpoint could be reached (all attempts failed).
    #[error("RPC transport error: {0}")]
    Transport(String),
    /// The node answered with a JSON-RPC error.
    #[error("RPC error {code}: {message}")]
    Node {
        /// JSON-RPC error code.
        code: i64,
        /// Error message.
        message: String,
        /// Revert data or other detail, if any.
        data: Option<String>,
    },
    /// The answer did not have the expected shape.
    #[error("RPC answer undecodable: {0}")]
    Decode(String),
}

impl RpcError {
    /// Whether this is an execution revert reported by the node.
    pub fn is_revert(&self) -> bool {
        match self {
            Self::Node { code, message, .. } => {
                *code == 3 || message.contains("revert") || message.contains("execution reverted")
            }
            _ => false,
        }
    }

    /// The node's error message, if any.
    pub fn node_message(&self) -> Option<&str> {
        match self {
            Self::Node { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// JSON-RPC client over HTTP with endpoint fail-over.
#[derive(Debug)]
pub struct RpcClient {
    endpoints: Vec<String>,
    http: reqwest::Client,
    next_id: AtomicU64,
    preferred: AtomicUsize,
}

#[derive(Deserialize)]
struct RpcErrorBody {
    code: i64,
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RpcResponse {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcErrorBody>,
}

impl RpcResponse {
    fn into_result(self) -> Result<Value, RpcError> {
        if let Some(error) = self.error {
            return Err(RpcError::Node {
                code: error.code,
                message: error.message,
                data: error.data.map(|d| match d {
                    Value::String(s) => s,
                    other => other.to_string(),
                }),
            });
        }
        Ok(self.result.unwrap_or(Value::Null))
    }
}

impl RpcClient {
    /// A client for `endpoints` (tried in order on transport failure) with a
    /// per-request `timeout`.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Self, RpcError> {
        if endpoints.is_empty() {
            return Err(RpcError::Transport("no RPC endpoint configured".into()));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true);
        if endpoints.iter().all(|url| url.starts_with("http://")) {
            // Plain HTTP never verifies a certificate: skip loading the
            // system's root store (some 600 KB resident).
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder
            .build()
            .map_err(|e| RpcError::Transport(e.to_string()))?;
        Ok(Self {
            endpoints,
            http,
            next_id: AtomicU64::new(1),
            preferred: AtomicUsize::new(0),
        })
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    async fn post(&self, body: &Value) -> Result<Value, RpcError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_error = String::new();
        for attempt in 0..self.endpoints.len() {
            let index = (start + attempt) % self.endpoints.len();
            let url = &self.endpoints[index];
            let outcome = async {
                let response = self
                    .http
                    .post(url)
                    .json(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return Err(format!("HTTP {status}"));
                }
                response.json::<Value>().await.map_err(|e| e.to_string())
            }
            .await;
            match outcome {
                Ok(value) => {
                    if attempt > 0 {
                        self.preferred.store(index, Ordering::Relaxed);
                        tracing::warn!(endpoint = %url, "RPC fail-over to endpoint");
                    }
                    return Ok(value);
                }
                Err(error) => {
                    tracing::debug!(endpoint = %url, %error, "RPC endpoint failed");
                    last_error = format!("{url}: {error}");
                }
            }
        }
        Err(RpcError::Transport(last_error))
    }

    /// One call.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self.post(&body).await?;
        let response: RpcResponse =
            serde_json::from_value(answer).map_err(|e| RpcError::Decode(e.to_string()))?;
        let value = response.into_result()?;
        serde_json::from_value(value).map_err(|e| RpcError::Decode(format!("{method}: {e}")))
    }

    /// Several calls in one HTTP round trip. The outer error is a transport
    /// failure; each inner result is that call's own answer.
    pub async fn batch(
        &self,
        calls: Vec<(&str, Value)>,
    ) -> Result<Vec<Result<Value, RpcError>>, RpcError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        if let [(method, params)] = calls.as_slice() {
            // One call goes as a plain request: nodes handle it on a
            // cheaper path than a batch of one.
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let answer = self.post(&body).await?;
            let response: RpcResponse =
                serde_json::from_value(answer).map_err(|e| RpcError::Decode(e.to_string()))?;
            return Ok(vec![response.into_result()]);
        }
        let first_id = self
            .next_id
            .fetch_add(calls.len() as u64, Ordering::Relaxed);
        let body = Value::Array(
            calls
                .iter()
                .enumerate()
                .map(|(i, (method, params))| {
                    json!({"jsonrpc": "2.0", "id": first_id + i as u64, "method": method, "params": params})
                })
                .collect(),
        );
        let answer = self.post(&body).await?;
        let responses: Vec<RpcResponse> = match answer {
            Value::Array(items) => items
                .into_iter()
                .map(|item| {
                    serde_json::from_value(item).map_err(|e| RpcError::Decode(e.to_string()))
                })
                .collect::<Result<_, _>>()?,
            // Some nodes answer a whole batch with a single error object.
            other => {
                let single: RpcResponse =
                    serde_json::from_value(other).map_err(|e| RpcError::Decode(e.to_string()))?;
                let error = single.into_result().err().unwrap_or_else(|| {
                    RpcError::Decode("batch answered with a single result".into())
                });
                return Ok(calls.iter().map(|_| Err(error.clone())).collect());
            }
        };
        let mut results: Vec<Result<Value, RpcError>> = calls
            .iter()
            .map(|_| Err(RpcError::Decode("missing from batch answer".into())))
            .collect();
        for response in responses {
            let slot = response
                .id
                .as_ref()
                .and_then(Value::as_u64)
                .and_then(|id| id.checked_sub(first_id))
                .and_then(|offset| usize::try_from(offset).ok())
                .filter(|offset| *offset < results.len());
            if let Some(offset) = slot {
                results[offset] = response.into_result();
            }
        }
        Ok(results)
    }

    /// `eth_call` against the latest block.
    pub async fn call(
        &self,
        from: Option<Address>,
        to: Address,
        data: &[u8],
    ) -> Result<Bytes, RpcError> {
        self.request("eth_call", call_params(from, to, data)).await
    }

    /// `eth_getCode` at the latest block.
    pub async fn code(&self, address: Address) -> Result<Bytes, RpcError> {
        self.request("eth_getCode", json!([address, "latest"]))
            .await
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let id: U256 = self.request("eth_chainId", json!([])).await?;
        u64::try_from(id).map_err(|e| RpcError::Decode(e.to_string()))
    }

    /// `eth_getTransactionCount` including pending transactions.
    pub async fn pending_nonce(&self, address: Address) -> Result<u64, RpcError> {
        let count: U256 = self
            .request("eth_getTransactionCount", json!([address, "pending"]))
            .await?;
        u64::try_from(count).map_err(|e| RpcError::Decode(e.to_string()))
    }

    /// `eth_gasPrice`.
    pub async fn gas_price(&self) -> Result<u128, RpcError> {
        let price: U256 = self.request("eth_gasPrice", json!([])).await?;
        u128::try_from(price).map_err(|e| RpcError::Decode(e.to_string()))
    }

    /// `eth_getBalance` (native currency) at the latest block.
    pub async fn balance(&self, address: Address) -> Result<U256, RpcError> {
        self.request("eth_getBalance", json!([address, "latest"]))
            .await
    }

    /// `eth_sendRawTransaction`; returns the transaction hash.
    pub async fn send_raw_transaction(&self, raw: &[u8]) -> Result<B256, RpcError> {
        self.request(
            "eth_sendRawTransaction",
            json!([Bytes::copy_from_slice(raw)]),
        )
        .await
    }

    /// `eth_getTransactionReceipt`; `None` while not mined.
    pub async fn receipt(&self, hash: B256) -> Result<Option<Receipt>, RpcError> {
        self.request("eth_getTransactionReceipt", json!([hash]))
            .await
    }

    /// `eth_getLogs` for one contract and topic filter over a block range.
    pub async fn logs(
        &self,
        address: Address,
        topics: Vec<Option<B256>>,
        from_block: u64,
    ) -> Result<Vec<Log>, RpcError> {
        self.request(
            "eth_getLogs",
            json!([{
                "address": address,
                "topics": topics,
                "fromBlock": format!("0x{from_block:x}"),
                "toBlock": "latest",
            }]),
        )
        .await
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let number: U256 = self.request("eth_blockNumber", json!([])).await?;
        u64::try_from(number).map_err(|e| RpcError::Decode(e.to_string()))
    }
}

/// Parameters of an `eth_call` against the latest block.
pub fn call_params(from: Option<Address>, to: Address, data: &[u8]) -> Value {
    let mut tx = json!({"to": to, "data": Bytes::copy_from_slice(data)});
    if let Some(from) = from {
        tx["from"] = json!(from);
    }
    json!([tx, "latest"])
}

/// Parameters of a "deployless" `eth_call` (no `to`: `data` is creation code).
pub fn create_call_params(data: &[u8]) -> Value {
    json!([{"data": Bytes::copy_from_slice(data)}, "latest"])
}

/// Decodes a batch item holding `eth_call` output.
pub fn decode_bytes(value: Result<Value, RpcError>) -> Result<Bytes, RpcError> {
    serde_json::from_value(value?).map_err(|e| RpcError::Decode(e.to_string()))
}

/// The fields of a transaction receipt this crate reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Transaction hash.
    pub transaction_hash: B256,
    /// `0x1` on success, `0x0` on revert.
    #[serde(default)]
    pub status: Option<U256>,
    /// Block that included the transaction.
    #[serde(default)]
    pub block_number: Option<U256>,
    /// Gas used.
    #[serde(default)]
    pub gas_used: Option<U256>,
    /// Emitted logs.
    #[serde(default)]
    pub logs: Vec<Log>,
}

impl Receipt {
    /// Whether the transaction executed without reverting.
    pub fn succeeded(&self) -> bool {
        self.status == Some(U256::from(1))
    }
}

/// An event log.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Log {
    /// Emitting contract.
    pub address: Address,
    /// Indexed topics.
    pub topics: Vec<B256>,
    /// Non-indexed data.
    pub data: Bytes,
    /// Transaction that emitted it.
    #[serde(default)]
    pub transaction_hash: Option<B256>,
    /// Block number.
    #[serde(default)]
    pub block_number: Option<U256>,
}
