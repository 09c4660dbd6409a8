//! A recording, fault-injecting JSON-RPC proxy in front of a devnet: tests see
//! every request the facilitator sends and decide, per request, to forward
//! it, answer it themselves, or forward it and never answer.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::task::JoinHandle;

/// What the proxy does with one HTTP request (a JSON-RPC call or batch).
pub enum Action {
    /// Pass it to the node and relay the answer.
    Forward,
    /// Answer with this JSON body; the node never sees the request.
    Respond(Value),
    /// Pass it to the node, then hold the answer for this long (the client
    /// times out first: the node acted, the client never heard).
    ForwardThenStall(Duration),
    /// Pass this body to the node instead, and relay the answer.
    ForwardAs(Value),
    /// Answer with this JSON body after this long; the node never sees the
    /// request.
    RespondAfter(Value, Duration),
}

/// Decides the [`Action`] for a request body.
pub type Rule = Box<dyn Fn(&Value) -> Action + Send + Sync>;

struct Shared {
    upstream: String,
    http: reqwest::Client,
    rule: Mutex<Rule>,
    requests: Mutex<Vec<Value>>,
}

/// The running proxy; stops when dropped.
pub struct RpcProxy {
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RpcProxy {
    /// A proxy for `upstream` that forwards everything.
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            rule: Mutex::new(Box::new(|_| Action::Forward)),
            requests: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/", post(handle))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// The proxy's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces the rule.
    pub fn set_rule(&self, rule: impl Fn(&Value) -> Action + Send + Sync + 'static) {
        *self.shared.rule.lock().unwrap() = Box::new(rule);
    }

    /// Every JSON-RPC call seen so far (batches flattened), oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The calls of `method` seen so far.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|call| call["method"] == method)
            .collect()
    }

    /// Forgets the calls seen so far.
    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    {
        let mut requests = shared.requests.lock().unwrap();
        match &value {
            Value::Array(calls) => requests.extend(calls.iter().cloned()),
            other => requests.push(other.clone()),
        }
    }
    let action = (shared.rule.lock().unwrap())(&value);
    let forward_body = |body: Bytes| async {
        let answer = shared
            .http
            .post(&shared.upstream)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match answer {
            Ok(answer) => (
                StatusCode::OK,
                [("content-type", "application/json")],
                answer.bytes().await.unwrap_or_default(),
            )
                .into_response(),
            Err(_) => StatusCode::BAD_GATEWAY.into_response(),
        }
    };
    let forward = || forward_body(body.clone());
    match action {
        Action::Forward => forward().await,
        Action::Respond(answer) => axum::Json(answer).into_response(),
        Action::ForwardThenStall(pause) => {
            let answer = forward().await;
            tokio::time::sleep(pause).await;
            answer
        }
        Action::ForwardAs(other) => forward_body(Bytes::from(other.to_string())).await,
        Action::RespondAfter(answer, pause) => {
            tokio::time::sleep(pause).await;
            axum::Json(answer).into_response()
        }
    }
}

/// A rule making the node look like one that keeps no pending state (many
/// providers answer `pending` reads for the latest block): every `eth_call`
/// at `pending` is sent at `latest`.
pub fn without_pending_state(body: &Value) -> Action {
    fn rewrite(call: &mut Value) {
        if call["method"] == "eth_call"
            && let Some(params) = call["params"].as_array_mut()
        {
            for param in params.iter_mut().filter(|p| *p == "pending") {
                *param = Value::from("latest");
            }
        }
    }
    let mut body = body.clone();
    match &mut body {
        Value::Array(calls) => calls.iter_mut().for_each(rewrite),
        call => rewrite(call),
    }
    Action::ForwardAs(body)
}

/// A JSON-RPC error answer to `call` (a single request object).
pub fn error_answer(call: &Value, code: i64, message: &str) -> Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": call["id"].clone(),
        "error": {"code": code, "message": message},
    })
}

/// Parses a `0x…` block number.
pub fn block_number(value: &Value) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a block number: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}
