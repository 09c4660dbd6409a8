//! [`RpcServer`]: Solana JSON-RPC 2.0 over HTTP on a loopback port, single and batch requests,
//! with knobs for failure tests.

mod methods;
mod wire;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub use methods::METHODS;

use crate::chain::SolanaTestChain;

/// How the server fails a request (see [`RpcServer::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// HTTP 503 Service Unavailable with a plain-text body.
    Http503,
    /// HTTP 200 with a JSON-RPC error `-32005` "Node is unhealthy" for every call in it.
    RpcError,
    /// Never answers (until the server shuts down): for client timeouts.
    Hang,
}

struct Shared {
    chain: Arc<SolanaTestChain>,
    failures: Mutex<VecDeque<FailureKind>>,
    log: Mutex<Vec<String>>,
}

/// A Solana JSON-RPC node over a [`SolanaTestChain`], on `127.0.0.1:<free port>`, served by its
/// own thread (so it works from sync tests and from any tokio runtime). Stops on drop.
pub struct RpcServer {
    url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RpcServer {
    /// Binds a free loopback port and starts serving `chain`.
    pub fn start(chain: Arc<SolanaTestChain>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            chain,
            failures: Mutex::new(VecDeque::new()),
            log: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .route("/", post(handle))
            .with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name("paywire-litesvm-rpc".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                tracing::warn!(error = %e, "solana test RPC server stopped");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Hanging requests would keep a graceful shutdown waiting forever.
                runtime.shutdown_background();
            })?;
        Ok(Self {
            url,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The chain served.
    pub fn chain(&self) -> &Arc<SolanaTestChain> {
        &self.shared.chain
    }

    /// Fails the next `n` HTTP requests (a batch counts once) with `kind`, after any already
    /// queued failures.
    pub fn fail_next(&self, n: usize, kind: FailureKind) {
        let mut failures = self
            .shared
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        failures.extend(std::iter::repeat_n(kind, n));
    }

    /// Method names of every call received so far, in order (failed ones included).
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many calls of `method` were received.
    pub fn request_count(&self, method: &str) -> usize {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|m| *m == method)
            .count()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return json_response(&error_reply(&Value::Null, -32700, "Parse error")),
    };
    let calls: Vec<&Value> = match &request {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    shared
        .log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(calls.iter().map(|c| {
            c.get("method")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        }));
    let failure = shared
        .failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front();
    match failure {
        Some(FailureKind::Http503) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
        }
        Some(FailureKind::Hang) => {
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        }
        Some(FailureKind::RpcError) => {
            let reply = |c: &Value| error_reply(id_of(c), -32005, "Node is unhealthy");
            return json_response(&batch_or_single(
                &request,
                calls.into_iter().map(reply).collect(),
            ));
        }
        None => {}
    }
    if matches!(&request, Value::Array(items) if items.is_empty()) {
        return json_response(&error_reply(&Value::Null, -32600, "Invalid request"));
    }
    let replies = calls.into_iter().map(|c| reply(&shared.chain, c)).collect();
    json_response(&batch_or_single(&request, replies))
}

fn reply(chain: &SolanaTestChain, call: &Value) -> Value {
    let id = id_of(call);
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return error_reply(id, -32600, "Invalid request");
    };
    let params = call
        .get("params")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    match methods::call(chain, method, &params) {
        Ok(result) => json!({ "jsonrpc": "2.0", "result": result, "id": id }),
        Err(e) => json!({ "jsonrpc": "2.0", "error": e.to_json(), "id": id }),
    }
}

fn id_of(call: &Value) -> &Value {
    call.get("id").unwrap_or(&Value::Null)
}

fn error_reply(id: &Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "error": { "code": code, "message": message }, "id": id })
}

fn batch_or_single(request: &Value, mut replies: Vec<Value>) -> Value {
    if request.is_array() {
        Value::Array(replies)
    } else {
        replies.pop().unwrap_or(Value::Null)
    }
}

fn json_response(body: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
