//! A small JSON-RPC client for EVM nodes: several endpoints with fail-over,
//! per-request timeouts, and batches (several calls in one round trip).
//!
//! Every method this crate sends is idempotent (reads, and
//! `eth_sendRawTransaction`, whose re-send of identical bytes is harmless), so
//! a transport failure is retried on the next endpoint.
//!
//! RPC URLs often carry a provider API key in their path or query. The client
//! never prints one: errors, log lines and `Debug` name an endpoint by scheme,
//! host and port only ([`redact_url`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use paywire_core::{RpcErrorCount, RpcErrorKind};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A failed RPC interaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

    /// A short description that never carries text from the node or the
    /// transport (for public status pages such as `/ready`): the kind of
    /// failure and, for a node error, its code.
    pub fn summary(&self) -> String {
        match self {
            Self::Transport(_) => "RPC endpoint unreachable".to_owned(),
            Self::Node { code, .. } => format!("RPC error {code}"),
            Self::Decode(_) => "RPC answer undecodable".to_owned(),
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

/// The part of an RPC URL that may be shown: scheme, host and port. Path,
/// query, fragment and user info (where providers put API keys) are dropped;
/// text that is not a URL is not shown at all.
pub fn redact_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url.trim()) else {
        return "<invalid URL>".to_owned();
    };
    let host = parsed.host_str().unwrap_or("");
    match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    }
}

/// An RPC endpoint URL as configured. Providers put API keys in the path or
/// query, so it prints (`Debug`) as scheme, host and port only
/// ([`redact_url`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RpcUrl(String);

impl RpcUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The whole URL, API key included: for the RPC client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RpcUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcUrl({})", redact_url(&self.0))
    }
}

impl PartialEq<&str> for RpcUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// One RPC endpoint: the URL requests go to, and the label errors show.
struct Endpoint {
    url: reqwest::Url,
    label: String,
    /// Parts of the URL never to show ([`url_secrets`]).
    secrets: Vec<String>,
    /// Failures so far, by kind ([`RpcClient::error_counts`]).
    failures: Failures,
}

/// Failure counters of one endpoint, one per [`RpcErrorKind`] counted.
#[derive(Default)]
struct Failures([AtomicU64; COUNTED_KINDS.len()]);

/// The kinds of failure an endpoint counts, in [`Failures`] order.
const COUNTED_KINDS: [RpcErrorKind; 7] = [
    RpcErrorKind::Timeout,
    RpcErrorKind::Connect,
    RpcErrorKind::RateLimited,
    RpcErrorKind::HttpStatus,
    RpcErrorKind::Rpc,
    RpcErrorKind::Decode,
    RpcErrorKind::Other,
];

impl Failures {
    fn add(&self, kind: RpcErrorKind, n: u64) {
        if let Some(slot) = COUNTED_KINDS.iter().position(|k| *k == kind) {
            self.0[slot].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The kind of a transport failure of reqwest.
    fn kind_of(error: &reqwest::Error) -> RpcErrorKind {
        if error.is_timeout() {
            RpcErrorKind::Timeout
        } else if error.is_decode() || error.is_body() {
            RpcErrorKind::Decode
        } else {
            // Refused, unreachable, DNS, TLS, or a request that could not be
            // sent at all: the endpoint is out of reach.
            RpcErrorKind::Connect
        }
    }
}

/// How many JSON-RPC error objects in `answer` (one response or a batch)
/// are node failures rather than execution reverts, which are a normal
/// answer to a simulation.
fn node_failures(answer: &Value) -> u64 {
    let responses = match answer {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let failed = responses
        .into_iter()
        .filter_map(|response| response.get("error"))
        .filter(|error| {
            let code = error.get("code").and_then(Value::as_i64);
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            code != Some(3) && !message.contains("revert")
        })
        .count();
    u64::try_from(failed).unwrap_or(u64::MAX)
}

impl Endpoint {
    fn parse(url: &str, index: usize) -> Result<Self, RpcError> {
        // The error names the endpoint by position: the text may hold a key.
        let invalid = || RpcError::Transport(format!("RPC endpoint #{index} is not a valid URL"));
        let parsed = reqwest::Url::parse(url.trim()).map_err(|_| invalid())?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(RpcError::Transport(format!(
                "RPC endpoint #{index} ({}) must be an http:// or https:// URL",
                redact_url(url)
            )));
        }
        Ok(Self {
            label: redact_url(url),
            secrets: url_secrets(&parsed),
            url: parsed,
            failures: Failures::default(),
        })
    }

    /// Counts the transport failure `error` and describes it ([`Self::describe`]).
    fn failed(&self, error: reqwest::Error) -> String {
        self.failures.add(Failures::kind_of(&error), 1);
        self.describe(error)
    }

    /// `error` as text without the request URL: reqwest's `Display` prints
    /// the whole URL, so it is dropped and the causes (connection refused,
    /// timed out) are appended instead. Any remaining trace of the path or
    /// query is scrubbed as well.
    fn describe(&self, error: reqwest::Error) -> String {
        let error = error.without_url();
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.scrub(text)
    }

    /// Removes from `text` the URL and every part of it that may hold a key
    /// (path, path segments, query, query values, user info), then any
    /// remaining long opaque token ([`scrub_opaque_tokens`]).
    fn scrub(&self, mut text: String) -> String {
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        scrub_opaque_tokens(&text)
    }

    /// Scrubs the error objects of a JSON-RPC answer (one response or a
    /// batch): providers and gateways name the key they refused in the
    /// message (`invalid API key …`). Results are left alone.
    fn scrub_errors(&self, answer: &mut Value) {
        let responses = match answer {
            Value::Array(items) => items.iter_mut().collect(),
            single => vec![single],
        };
        for response in responses {
            if let Some(error) = response.get_mut("error") {
                self.scrub_strings(error);
            }
        }
    }

    fn scrub_strings(&self, value: &mut Value) {
        match value {
            Value::String(text) => *text = self.scrub(std::mem::take(text)),
            Value::Array(items) => items.iter_mut().for_each(|item| self.scrub_strings(item)),
            Value::Object(members) => members
                .values_mut()
                .for_each(|member| self.scrub_strings(member)),
            _ => {}
        }
    }
}

/// The parts of `url` that may carry a provider key, longest first: the
/// whole URL, its path and query (raw and percent-decoded), each path
/// segment and query value of [`MIN_SECRET_LEN`] characters or more, and the
/// user name and password.
fn url_secrets(url: &reqwest::Url) -> Vec<String> {
    let mut secrets = vec![url.as_str().to_owned()];
    if url.path().len() > 1 {
        secrets.push(url.path().to_owned());
    }
    secrets.extend(url.query().map(str::to_owned));
    secrets.extend(url.path_segments().into_iter().flatten().map(str::to_owned));
    for (name, value) in url.query_pairs() {
        secrets.push(name.into_owned());
        secrets.push(value.into_owned());
    }
    secrets.push(url.username().to_owned());
    secrets.extend(url.password().map(str::to_owned));
    let decoded: Vec<String> = secrets
        .iter()
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
        .map(std::borrow::Cow::into_owned)
        .collect();
    secrets.extend(decoded);
    secrets.retain(|s| s.len() >= MIN_SECRET_LEN);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// Shortest URL part treated as a secret: shorter ones (`v2`, `rpc`) are
/// route names, and replacing them would mangle unrelated text.
const MIN_SECRET_LEN: usize = 6;

/// Shortest run of letters, digits, `-` and `_` that [`scrub_opaque_tokens`]
/// removes.
const OPAQUE_TOKEN_LEN: usize = 20;

/// Replaces every long opaque token in `text` (an API key, a bearer token:
/// at least [`OPAQUE_TOKEN_LEN`] letters, digits, `-` or `_`, mixing letters
/// and digits) with `<redacted>`. `0x` hex (addresses, hashes, revert data)
/// and plain words or numbers stay.
pub fn scrub_opaque_tokens(text: &str) -> String {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_token_char) {
        out.push_str(&rest[..start]);
        let run = &rest[start..];
        let end = run.find(|c: char| !is_token_char(c)).unwrap_or(run.len());
        let token = &run[..end];
        let hex = token
            .strip_prefix("0x")
            .is_some_and(|digits| digits.chars().all(|c| c.is_ascii_hexdigit()));
        let mixed = token.chars().any(|c| c.is_ascii_digit())
            && token.chars().any(|c| c.is_ascii_alphabetic());
        if token.len() >= OPAQUE_TOKEN_LEN && mixed && !hex {
            out.push_str("<redacted>");
        } else {
            out.push_str(token);
        }
        rest = &run[end..];
    }
    out.push_str(rest);
    out
}

/// JSON-RPC client over HTTP with endpoint fail-over.
pub struct RpcClient {
    endpoints: Vec<Endpoint>,
    http: reqwest::Client,
    next_id: AtomicU64,
    preferred: AtomicUsize,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("endpoints", &self.endpoint_labels())
            .finish_non_exhaustive()
    }
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
    /// per-request `timeout`. Each must be an `http://` or `https://` URL.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Self, RpcError> {
        if endpoints.is_empty() {
            return Err(RpcError::Transport("no RPC endpoint configured".into()));
        }
        let endpoints = endpoints
            .iter()
            .enumerate()
            .map(|(index, url)| Endpoint::parse(url, index))
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true);
        if endpoints.iter().all(|e| e.url.scheme() == "http") {
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

    /// The configured endpoints as they may be shown: scheme, host and port
    /// (see [`redact_url`]).
    pub fn endpoint_labels(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.label.as_str()).collect()
    }

    /// Failures of each endpoint so far, by kind (kinds never seen are left
    /// out), each endpoint named by scheme, host and port only.
    pub fn error_counts(&self) -> Vec<RpcErrorCount> {
        self.endpoints
            .iter()
            .flat_map(|endpoint| {
                COUNTED_KINDS
                    .iter()
                    .zip(&endpoint.failures.0)
                    .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
                    .filter(|(_, count)| *count > 0)
                    .map(|(kind, count)| RpcErrorCount::new(endpoint.label.clone(), kind, count))
            })
            .collect()
    }

    async fn post(&self, body: &Value) -> Result<Value, RpcError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_error = String::new();
        for attempt in 0..self.endpoints.len() {
            let index = (start + attempt) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let outcome = async {
                let response = self
                    .http
                    .post(endpoint.url.clone())
                    .json(body)
                    .send()
                    .await
                    .map_err(|e| endpoint.failed(e))?;
                let status = response.status();
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    endpoint.failures.add(RpcErrorKind::RateLimited, 1);
                    return Err(format!("HTTP {status}"));
                }
                if status.is_server_error() {
                    endpoint.failures.add(RpcErrorKind::HttpStatus, 1);
                    return Err(format!("HTTP {status}"));
                }
                let mut answer = response
                    .json::<Value>()
                    .await
                    .map_err(|e| endpoint.failed(e))?;
                endpoint
                    .failures
                    .add(RpcErrorKind::Rpc, node_failures(&answer));
                endpoint.scrub_errors(&mut answer);
                Ok(answer)
            }
            .await;
            let label = &endpoint.label;
            match outcome {
                Ok(value) => {
                    if attempt > 0 {
                        self.preferred.store(index, Ordering::Relaxed);
                        tracing::warn!(endpoint = %label, "RPC fail-over to endpoint");
                    }
                    return Ok(value);
                }
                Err(error) => {
                    tracing::debug!(endpoint = %label, %error, "RPC endpoint failed");
                    if !last_error.is_empty() {
                        last_error.push_str("; ");
                    }
                    last_error.push_str(&format!("{label}: {error}"));
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

    /// `eth_getLogs` for one contract and topic filter over the blocks
    /// `from_block..=to_block`.
    pub async fn logs(
        &self,
        address: Address,
        topics: Vec<Option<B256>>,
        from_block: u64,
        to_block: u64,
    ) -> Result<Vec<Log>, RpcError> {
        self.request(
            "eth_getLogs",
            json!([{
                "address": address,
                "topics": topics,
                "fromBlock": format!("0x{from_block:x}"),
                "toBlock": format!("0x{to_block:x}"),
            }]),
        )
        .await
    }

    /// The timestamp (Unix seconds) of block `number`.
    pub async fn block_timestamp(&self, number: u64) -> Result<u64, RpcError> {
        let header: Option<BlockHeader> = self
            .request(
                "eth_getBlockByNumber",
                json!([format!("0x{number:x}"), false]),
            )
            .await?;
        let header = header.ok_or_else(|| RpcError::Decode(format!("block {number} not found")))?;
        u64::try_from(header.timestamp).map_err(|e| RpcError::Decode(e.to_string()))
    }

    /// `eth_getTransactionByHash`: the recipient and input of a transaction.
    pub async fn transaction(&self, hash: B256) -> Result<Option<Transaction>, RpcError> {
        self.request("eth_getTransactionByHash", json!([hash]))
            .await
    }

    /// `debug_traceTransaction` with the call tracer: every call the
    /// transaction made. Many providers do not offer it (a
    /// [`RpcError::Node`] then).
    pub async fn trace_calls(&self, hash: B256) -> Result<CallFrame, RpcError> {
        self.request(
            "debug_traceTransaction",
            json!([hash, {"tracer": "callTracer"}]),
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
    call_params_at(from, to, data, "latest")
}

/// Parameters of an `eth_call` against the pending state: the latest block
/// plus the transactions waiting in the node's pool (where the node keeps
/// one; others answer for the latest block).
pub fn pending_call_params(from: Option<Address>, to: Address, data: &[u8]) -> Value {
    call_params_at(from, to, data, "pending")
}

fn call_params_at(from: Option<Address>, to: Address, data: &[u8], block: &str) -> Value {
    let mut tx = json!({"to": to, "data": Bytes::copy_from_slice(data)});
    if let Some(from) = from {
        tx["from"] = json!(from);
    }
    json!([tx, block])
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

/// The fields of a block header this crate reads.
#[derive(Debug, Clone, Deserialize)]
struct BlockHeader {
    timestamp: U256,
}

/// The fields of a transaction this crate reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Transaction {
    /// Called contract (`None` for a contract creation).
    #[serde(default)]
    pub to: Option<Address>,
    /// Calldata.
    pub input: Bytes,
    /// Sender.
    #[serde(default)]
    pub from: Option<Address>,
    /// The sender's nonce it uses.
    #[serde(default)]
    pub nonce: Option<U256>,
    /// The block that included it; `None` while it waits in the pool.
    #[serde(default, rename = "blockNumber")]
    pub block_number: Option<U256>,
}

/// One call of a transaction, as the call tracer reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct CallFrame {
    /// `CALL`, `STATICCALL`, `DELEGATECALL`, `CREATE`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Called contract.
    #[serde(default)]
    pub to: Option<Address>,
    /// Calldata.
    #[serde(default)]
    pub input: Bytes,
    /// Why the call reverted, if it did.
    #[serde(default)]
    pub error: Option<String>,
    /// Calls this call made.
    #[serde(default)]
    pub calls: Vec<CallFrame>,
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    const SECRETS: [&str; 4] = ["someuser", "SECRETPASS", "SECRETPATHKEY", "SECRETQUERYKEY"];

    fn keyed_url(port: u16) -> String {
        format!(
            "http://someuser:SECRETPASS@127.0.0.1:{port}/v2/SECRETPATHKEY?apikey=SECRETQUERYKEY"
        )
    }

    #[tokio::test]
    async fn a_dead_endpoint_counts_connect_failures_under_its_bare_host()
    -> Result<(), Box<dyn std::error::Error>> {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let rpc = RpcClient::new(vec![keyed_url(port)], Duration::from_secs(2))?;
        assert!(rpc.block_number().await.is_err());
        assert!(rpc.chain_id().await.is_err());
        let counts = rpc.error_counts();
        let host = format!("http://127.0.0.1:{port}");
        assert_eq!(
            counts,
            vec![RpcErrorCount::new(host, RpcErrorKind::Connect, 2)]
        );
        let shown = format!("{counts:?}");
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{shown}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn statuses_and_node_errors_are_counted_by_kind_and_reverts_are_not()
    -> Result<(), Box<dyn std::error::Error>> {
        use axum::http::StatusCode;
        // Answers in turn: 429, 503, a node error, a revert, a result.
        let turn = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().fallback(move || {
            let turn = Arc::clone(&turn);
            async move {
                let error = |code: i64, message: &str| {
                    json!({"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}})
                };
                match turn.fetch_add(1, Ordering::SeqCst) {
                    0 => (StatusCode::TOO_MANY_REQUESTS, axum::Json(Value::Null)),
                    1 => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(Value::Null)),
                    2 => (StatusCode::OK, axum::Json(error(-32000, "header not found"))),
                    3 => (StatusCode::OK, axum::Json(error(3, "execution reverted"))),
                    _ => (StatusCode::OK, axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": "0x1"}))),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let rpc = RpcClient::new(vec![keyed_url(port)], Duration::from_secs(5))?;
        for _ in 0..5 {
            let _ = rpc.block_number().await;
        }
        let host = format!("http://127.0.0.1:{port}");
        let mut counts = rpc.error_counts();
        counts.sort_by_key(|count| count.kind);
        assert_eq!(
            counts,
            vec![
                RpcErrorCount::new(host.clone(), RpcErrorKind::RateLimited, 1),
                RpcErrorCount::new(host.clone(), RpcErrorKind::HttpStatus, 1),
                RpcErrorCount::new(host, RpcErrorKind::Rpc, 1),
            ]
        );
        Ok(())
    }

    #[test]
    fn node_errors_lose_every_part_of_the_url_that_may_be_a_key() {
        let endpoint = Endpoint::parse(
            "https://user:pa%24sword99@rpc.example:8545/v2/KeyInPath42?apikey=QueryKey77&x=1",
            0,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut answer = json!([
            {"jsonrpc": "2.0", "id": 1, "error": {
                "code": -32001,
                "message": "invalid API key KeyInPath42 (query QueryKey77, user pa$sword99)",
                "data": {"detail": ["apikey=QueryKey77"]},
            }},
            {"jsonrpc": "2.0", "id": 2, "result": "KeyInPath42"},
        ]);
        endpoint.scrub_errors(&mut answer);
        let text = answer[0]["error"].to_string();
        for secret in ["KeyInPath42", "QueryKey77", "pa$sword99", "pa%24sword99"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("invalid API key <redacted>"), "{text}");
        assert_eq!(answer[1]["result"], "KeyInPath42", "results are untouched");
    }

    #[test]
    fn opaque_tokens_go_and_chain_data_stays() {
        let address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
        let text = format!(
            "key alcht_4fG7hJ9kL2mN5pQ8rS1tU3vW went bad for {address}: \
             execution reverted: FiatTokenV2: invalid signature, maxFeePerGas 1000000000000000000000"
        );
        let scrubbed = scrub_opaque_tokens(&text);
        assert!(!scrubbed.contains("alcht_4fG7"), "{scrubbed}");
        assert!(scrubbed.contains(address), "{scrubbed}");
        assert!(
            scrubbed.contains("FiatTokenV2: invalid signature"),
            "{scrubbed}"
        );
        assert!(scrubbed.contains("1000000000000000000000"), "{scrubbed}");
    }

    #[test]
    fn the_summary_carries_no_node_text() {
        let error = RpcError::Node {
            code: -32001,
            message: "invalid API key SECRET".into(),
            data: Some("SECRET".into()),
        };
        assert_eq!(error.summary(), "RPC error -32001");
        assert!(
            !RpcError::Transport("http://h/SECRET".into())
                .summary()
                .contains("SECRET")
        );
    }
}
