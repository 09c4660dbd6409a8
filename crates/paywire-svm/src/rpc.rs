//! A typed Solana JSON-RPC client over reqwest: the handful of methods the
//! client and the facilitator call, several endpoints with fail-over,
//! per-request timeouts and failure counts per endpoint.
//!
//! RPC URLs often carry a provider API key in their path or query. The
//! client never prints one: errors, log lines and `Debug` name an endpoint
//! by scheme, host and port only ([`redact_url`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use paywire_core::{RpcErrorCount, RpcErrorKind};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A failed RPC interaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// No endpoint could be reached (every one was tried).
    #[error("RPC transport error: {0}")]
    Transport(String),
    /// The node answered with a JSON-RPC error.
    #[error("RPC error {code}: {message}")]
    Node {
        /// JSON-RPC error code.
        code: i64,
        /// Error message.
        message: String,
    },
    /// The answer did not have the expected shape.
    #[error("RPC answer undecodable: {0}")]
    Decode(String),
}

impl RpcError {
    /// A description that carries no text from the node or the transport
    /// (for public status pages).
    pub fn summary(&self) -> String {
        match self {
            Self::Transport(_) => "RPC endpoint unreachable".to_owned(),
            Self::Node { code, .. } => format!("RPC error {code}"),
            Self::Decode(_) => "RPC answer undecodable".to_owned(),
        }
    }
}

/// The part of an RPC URL that may be shown: scheme, host and port. Path,
/// query, fragment and user info are dropped; text that is not a URL is not
/// shown at all.
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

/// The kinds of failure an endpoint counts, in counter order.
const COUNTED_KINDS: [RpcErrorKind; 7] = [
    RpcErrorKind::Timeout,
    RpcErrorKind::Connect,
    RpcErrorKind::RateLimited,
    RpcErrorKind::HttpStatus,
    RpcErrorKind::Rpc,
    RpcErrorKind::Decode,
    RpcErrorKind::Other,
];

struct Endpoint {
    url: reqwest::Url,
    label: String,
    failures: [AtomicU64; COUNTED_KINDS.len()],
}

impl Endpoint {
    fn count(&self, kind: RpcErrorKind) {
        if let Some(slot) = COUNTED_KINDS.iter().position(|k| *k == kind) {
            self.failures[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a transport failure and describes it without the URL
    /// (reqwest's `Display` would print it whole).
    fn transport_failure(&self, error: &reqwest::Error) -> String {
        let kind = if error.is_timeout() {
            RpcErrorKind::Timeout
        } else if error.is_decode() || error.is_body() {
            RpcErrorKind::Decode
        } else {
            RpcErrorKind::Connect
        };
        self.count(kind);
        kind.as_str().to_owned()
    }
}

/// The commitment reads and confirmations use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Commitment {
    /// Processed by the node (may be rolled back).
    Processed,
    /// Voted on by a supermajority (the default).
    #[default]
    Confirmed,
    /// Rooted.
    Finalized,
}

impl Commitment {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Confirmed => "confirmed",
            Self::Finalized => "finalized",
        }
    }

    /// Whether a status at `level` meets this commitment.
    pub fn is_met_by(self, level: Commitment) -> bool {
        level as u8 >= self as u8
    }
}

/// An account as `getAccountInfo` reports it (data decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountInfo {
    /// The owning program, base58.
    pub owner: String,
    /// Its balance.
    pub lamports: u64,
    /// Its data.
    pub data: Vec<u8>,
}

#[derive(Deserialize)]
struct WireAccount {
    owner: String,
    lamports: u64,
    data: (String, String),
}

impl WireAccount {
    fn decode(self) -> Result<AccountInfo, RpcError> {
        if self.data.1 != "base64" {
            return Err(RpcError::Decode("account data is not base64".into()));
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(self.data.0)
            .map_err(|e| RpcError::Decode(e.to_string()))?;
        Ok(AccountInfo {
            owner: self.owner,
            lamports: self.lamports,
            data,
        })
    }
}

#[derive(Deserialize)]
struct WithContext<T> {
    value: T,
}

/// `getLatestBlockhash`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LatestBlockhash {
    /// The blockhash, base58.
    pub blockhash: String,
    /// The last block height at which it is valid.
    pub last_valid_block_height: u64,
}

/// `simulateTransaction`'s answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Simulation {
    /// The transaction error, if it failed (`null` when it succeeded).
    #[serde(default)]
    pub err: Option<Value>,
    /// Program logs.
    #[serde(default)]
    pub logs: Option<Vec<String>>,
    /// Compute units used.
    #[serde(default)]
    pub units_consumed: Option<u64>,
}

/// One entry of `getSignatureStatuses`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SignatureStatus {
    /// The slot it landed in.
    pub slot: u64,
    /// Its error, if it failed on chain.
    #[serde(default)]
    pub err: Option<Value>,
    /// How final it is.
    #[serde(default)]
    pub confirmation_status: Option<Commitment>,
}

/// Solana JSON-RPC over HTTP with endpoint fail-over.
pub struct SvmRpc {
    endpoints: Vec<Endpoint>,
    http: reqwest::Client,
    next_id: AtomicU64,
    preferred: AtomicUsize,
    commitment: Commitment,
}

impl std::fmt::Debug for SvmRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvmRpc")
            .field("endpoints", &self.endpoint_labels())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcErrorBody>,
}

#[derive(Deserialize)]
struct RpcErrorBody {
    code: i64,
    message: String,
}

impl SvmRpc {
    /// A client for `endpoints` (tried in order on transport failure) with a
    /// per-request `timeout`. Each must be an `http://` or `https://` URL;
    /// an error names a bad one by position only.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Self, RpcError> {
        if endpoints.is_empty() {
            return Err(RpcError::Transport("no RPC endpoint configured".into()));
        }
        let endpoints = endpoints
            .iter()
            .enumerate()
            .map(|(index, url)| {
                let parsed = reqwest::Url::parse(url.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                    .ok_or_else(|| {
                        RpcError::Transport(format!("RPC endpoint #{index} is not an http(s) URL"))
                    })?;
                Ok(Endpoint {
                    label: redact_url(url),
                    url: parsed,
                    failures: Default::default(),
                })
            })
            .collect::<Result<Vec<_>, RpcError>>()?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|_| RpcError::Transport("cannot build the HTTP client".into()))?;
        Ok(Self {
            endpoints,
            http,
            next_id: AtomicU64::new(1),
            preferred: AtomicUsize::new(0),
            commitment: Commitment::Confirmed,
        })
    }

    /// The same client reading at `commitment`.
    pub fn with_commitment(mut self, commitment: Commitment) -> Self {
        self.commitment = commitment;
        self
    }

    /// The commitment in use.
    pub fn commitment(&self) -> Commitment {
        self.commitment
    }

    /// The endpoints as they may be shown (scheme, host, port).
    pub fn endpoint_labels(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.label.as_str()).collect()
    }

    /// Failures per endpoint and kind so far (kinds never seen left out).
    pub fn error_counts(&self) -> Vec<RpcErrorCount> {
        self.endpoints
            .iter()
            .flat_map(|endpoint| {
                COUNTED_KINDS
                    .iter()
                    .zip(&endpoint.failures)
                    .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
                    .filter(|(_, count)| *count > 0)
                    .map(|(kind, count)| RpcErrorCount::new(endpoint.label.clone(), kind, count))
            })
            .collect()
    }

    /// One HTTP round trip to the first endpoint that answers.
    async fn post(&self, body: &Value) -> Result<RpcResponse, RpcError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for attempt in 0..self.endpoints.len() {
            let index = (start + attempt) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            match self.post_to(endpoint, body).await {
                Ok(response) => {
                    if attempt > 0 {
                        self.preferred.store(index, Ordering::Relaxed);
                        tracing::warn!(endpoint = %endpoint.label, "Solana RPC fail-over");
                    }
                    return Ok(response);
                }
                Err(error) => failures.push(format!("{}: {error}", endpoint.label)),
            }
        }
        Err(RpcError::Transport(failures.join("; ")))
    }

    async fn post_to(&self, endpoint: &Endpoint, body: &Value) -> Result<RpcResponse, String> {
        let response = self
            .http
            .post(endpoint.url.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| endpoint.transport_failure(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            endpoint.count(RpcErrorKind::RateLimited);
            return Err(format!("HTTP {status}"));
        }
        if !status.is_success() {
            endpoint.count(RpcErrorKind::HttpStatus);
            return Err(format!("HTTP {status}"));
        }
        let answer: RpcResponse = response
            .json()
            .await
            .map_err(|e| endpoint.transport_failure(&e))?;
        if answer.error.is_some() {
            endpoint.count(RpcErrorKind::Rpc);
        }
        Ok(answer)
    }

    /// One call of `method`, its result decoded as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post(&body).await?;
        if let Some(error) = response.error {
            // Node messages are program or validator text, never our URL.
            return Err(RpcError::Node {
                code: error.code,
                message: error.message,
            });
        }
        serde_json::from_value(response.result.unwrap_or(Value::Null))
            .map_err(|e| RpcError::Decode(format!("{method}: {e}")))
    }

    /// `getGenesisHash`.
    pub async fn genesis_hash(&self) -> Result<String, RpcError> {
        self.call("getGenesisHash", json!([])).await
    }

    /// `getHealth` (`"ok"` when healthy).
    pub async fn health(&self) -> Result<String, RpcError> {
        self.call("getHealth", json!([])).await
    }

    /// `getLatestBlockhash` at our commitment.
    pub async fn latest_blockhash(&self) -> Result<LatestBlockhash, RpcError> {
        let answer: WithContext<LatestBlockhash> = self
            .call(
                "getLatestBlockhash",
                json!([{"commitment": self.commitment.as_str()}]),
            )
            .await?;
        Ok(answer.value)
    }

    /// `isBlockhashValid` at our commitment.
    pub async fn is_blockhash_valid(&self, blockhash: &str) -> Result<bool, RpcError> {
        let answer: WithContext<bool> = self
            .call(
                "isBlockhashValid",
                json!([blockhash, {"commitment": self.commitment.as_str()}]),
            )
            .await?;
        Ok(answer.value)
    }

    /// `getBalance` in lamports.
    pub async fn balance(&self, address: &str) -> Result<u64, RpcError> {
        let answer: WithContext<u64> = self
            .call(
                "getBalance",
                json!([address, {"commitment": self.commitment.as_str()}]),
            )
            .await?;
        Ok(answer.value)
    }

    /// `getAccountInfo` (base64); `None` when the account does not exist.
    pub async fn account(&self, address: &str) -> Result<Option<AccountInfo>, RpcError> {
        let answer: WithContext<Option<WireAccount>> = self
            .call(
                "getAccountInfo",
                json!([address, {"encoding": "base64", "commitment": self.commitment.as_str()}]),
            )
            .await?;
        answer.value.map(WireAccount::decode).transpose()
    }

    /// `getMultipleAccounts` (base64), in the order asked.
    pub async fn accounts(
        &self,
        addresses: &[String],
    ) -> Result<Vec<Option<AccountInfo>>, RpcError> {
        let answer: WithContext<Vec<Option<WireAccount>>> = self
            .call(
                "getMultipleAccounts",
                json!([addresses, {"encoding": "base64", "commitment": self.commitment.as_str()}]),
            )
            .await?;
        if answer.value.len() != addresses.len() {
            return Err(RpcError::Decode("getMultipleAccounts: wrong length".into()));
        }
        answer
            .value
            .into_iter()
            .map(|a| a.map(WireAccount::decode).transpose())
            .collect()
    }

    /// `simulateTransaction` of a base64 transaction, without replacing its
    /// blockhash; `sig_verify` asks the node to check every signature.
    pub async fn simulate(
        &self,
        transaction: &str,
        sig_verify: bool,
    ) -> Result<Simulation, RpcError> {
        let answer: WithContext<Simulation> = self
            .call(
                "simulateTransaction",
                json!([transaction, {
                    "encoding": "base64",
                    "sigVerify": sig_verify,
                    "replaceRecentBlockhash": false,
                    "commitment": self.commitment.as_str(),
                }]),
            )
            .await?;
        Ok(answer.value)
    }

    /// `sendTransaction` of a base64 transaction without preflight (the
    /// caller simulated it); returns the signature.
    pub async fn send(&self, transaction: &str) -> Result<String, RpcError> {
        self.call(
            "sendTransaction",
            json!([transaction, {
                "encoding": "base64",
                "skipPreflight": true,
                "preflightCommitment": self.commitment.as_str(),
            }]),
        )
        .await
    }

    /// `getSignatureStatuses`, searching history, in the order asked.
    pub async fn signature_statuses(
        &self,
        signatures: &[String],
    ) -> Result<Vec<Option<SignatureStatus>>, RpcError> {
        let answer: WithContext<Vec<Option<SignatureStatus>>> = self
            .call(
                "getSignatureStatuses",
                json!([signatures, {"searchTransactionHistory": true}]),
            )
            .await?;
        Ok(answer.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_scheme_host_and_port_only() {
        assert_eq!(
            redact_url("https://user:pw@rpc.example:8899/v2/SECRETKEY?api-key=X"),
            "https://rpc.example:8899"
        );
        assert_eq!(redact_url("not a url SECRET"), "<invalid URL>");
        let error = SvmRpc::new(&["ftp://host/SECRET".into()], Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("SECRET"), "{error}");
        let rpc = SvmRpc::new(
            &["http://127.0.0.1:9/SECRETKEY".into()],
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{rpc:?}").contains("SECRETKEY"));
    }

    #[test]
    fn commitment_levels_order() {
        assert!(Commitment::Confirmed.is_met_by(Commitment::Finalized));
        assert!(Commitment::Confirmed.is_met_by(Commitment::Confirmed));
        assert!(!Commitment::Confirmed.is_met_by(Commitment::Processed));
    }
}
