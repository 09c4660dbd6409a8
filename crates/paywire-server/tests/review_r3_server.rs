//! Review r3 (hostile probes of the server's unknown-outcome resume and the
//! paid pipeline), against a scripted facilitator over HTTP with the real
//! `HttpFacilitator` client.
//!
//! Failing probes are `#[ignore = "finding N"]`; run them with
//! `cargo nextest run -p paywire-server --test review_r3_server --run-ignored all`.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::*;
use paywire_core::codec::{decode_payment_response, encode_header};
use paywire_core::{ChainIdPattern, Extensions, JsonObject, PaymentPayload, SettleResponse};
use paywire_evm::EvmNetworks;
use paywire_evm::exact::ExactEvmServer;
use paywire_server::{HttpFacilitator, PayTo, PaymentLayer, PaymentOption, Route, money};
use serde_json::{Value, json};

const SERVER_TIMEOUT: Duration = Duration::from_millis(400);
const SECRET_LOCATION: &str = "https://cdn.example.test/file.zip?X-Amz-Signature=secret";

#[derive(Clone, Debug)]
enum Settle {
    /// Answers only after the server gave up.
    Hang,
    Answer(Value),
}

struct Script {
    queue: Mutex<VecDeque<Settle>>,
    then: Settle,
    settles: AtomicUsize,
    /// Payment-identifier ids the facilitator saw on /settle.
    ids: Mutex<Vec<Option<String>>>,
}

impl Script {
    fn new(first: impl IntoIterator<Item = Settle>, then: Settle) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(first.into_iter().collect()),
            then,
            settles: AtomicUsize::new(0),
            ids: Mutex::new(Vec::new()),
        })
    }
    fn settles(&self) -> usize {
        self.settles.load(Ordering::SeqCst)
    }
}

fn settled(tx: &str) -> Value {
    json!({"success": true, "transaction": tx, "network": "eip155:31337",
           "payer": "0x0000000000000000000000000000000000000001"})
}

async fn facilitator(script: Arc<Script>) -> String {
    type S = Arc<Script>;
    let router = Router::new()
        .route(
            "/verify",
            post(|| async {
                axum::Json(json!({"isValid": true,
                    "payer": "0x0000000000000000000000000000000000000001"}))
            }),
        )
        .route(
            "/settle",
            post(
                |State(s): State<S>, axum::Json(body): axum::Json<Value>| async move {
                    s.settles.fetch_add(1, Ordering::SeqCst);
                    let id = body
                        .pointer("/paymentPayload/extensions/payment-identifier/info/id")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    s.ids.lock().unwrap().push(id);
                    let next = s.queue.lock().unwrap().pop_front();
                    match next.unwrap_or_else(|| s.then.clone()) {
                        Settle::Hang => {
                            tokio::time::sleep(SERVER_TIMEOUT * 10).await;
                            axum::Json(settled("0xabc")).into_response()
                        }
                        Settle::Answer(v) => axum::Json(v).into_response(),
                    }
                },
            ),
        )
        .route(
            "/supported",
            get(|| async {
                axum::Json(json!({"kinds": [{"x402Version": 2, "scheme": "exact",
                    "network": "eip155:31337"}]}))
            }),
        )
        .with_state(script);
    serve(router).await
}

fn priced(pattern: &str) -> Route {
    Route::new(pattern)
        .expect("route")
        .accept(PaymentOption::exact(
            chain(),
            money("$0.01").expect("price"),
            PayTo::address(Address::repeat_byte(0x22).to_string()),
        ))
}

#[derive(Default)]
struct Runs {
    a: AtomicUsize,
    b: AtomicUsize,
    first: AtomicUsize,
}

async fn env(script: Arc<Script>) -> (String, Arc<Runs>) {
    let facilitator_url = facilitator(script).await;
    let mut table = EvmNetworks::empty();
    table.insert(anvil_network(Address::repeat_byte(0x11)));
    let facilitator = HttpFacilitator::builder(&facilitator_url)
        .timeout(SERVER_TIMEOUT)
        .build()
        .expect("facilitator");
    let layer = PaymentLayer::builder(Arc::new(facilitator))
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin(ORIGIN)
        .route(priced("GET /download"))
        .route(priced("GET /ws"))
        .route(priced("GET /a"))
        .route(priced("GET /b"))
        .route(priced("POST /first").settle_before_handler())
        .route(priced("GET /ws-first").settle_before_handler())
        .route(priced("GET /not-modified"))
        .route(priced("GET /empty"))
        .build()
        .expect("layer");
    let runs = Arc::new(Runs::default());
    let router = Router::new()
        // A paid download that hands out a presigned URL (a common pattern).
        .route(
            "/download",
            get(|| async {
                let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
                response
                    .headers_mut()
                    .insert("location", HeaderValue::from_static(SECRET_LOCATION));
                response
            }),
        )
        // A paid WebSocket-style upgrade (what axum's WebSocketUpgrade answers).
        .route("/ws", get(|| async { upgrade() }))
        .route("/ws-first", get(|| async { upgrade() }))
        .route("/not-modified", get(|| async { StatusCode::NOT_MODIFIED }))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/a",
            get(|State(r): State<Arc<Runs>>| async move {
                r.a.fetch_add(1, Ordering::SeqCst);
                "content A"
            }),
        )
        .route(
            "/b",
            get(|State(r): State<Arc<Runs>>| async move {
                r.b.fetch_add(1, Ordering::SeqCst);
                "content B"
            }),
        )
        .route(
            "/first",
            post(|State(r): State<Arc<Runs>>| async move {
                r.first.fetch_add(1, Ordering::SeqCst);
                "side effect done"
            }),
        )
        .layer(layer)
        .with_state(Arc::clone(&runs));
    (serve(router).await, runs)
}

/// What axum's `WebSocketUpgrade` answers.
fn upgrade() -> axum::response::Response {
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert("x-stream-token", HeaderValue::from_static("paid-stream"));
    response
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A payment echoing the route's first requirement; `id` adds a
/// payment-identifier extension.
async fn payment_for(
    method: reqwest::Method,
    url: &str,
    authorization: (Address, B256),
    id: Option<&str>,
) -> String {
    let response = no_redirects()
        .request(method, url)
        .send()
        .await
        .expect("402");
    let required = required_of(&response);
    let mut auth = JsonObject::new();
    auth.insert("from".into(), json!(authorization.0.to_string()));
    auth.insert("nonce".into(), json!(authorization.1.to_string()));
    let mut payload = JsonObject::new();
    payload.insert("authorization".into(), Value::Object(auth));
    payload.insert("signature".into(), json!("0x00"));
    let extensions = id.map(|id| {
        let mut e = Extensions::new();
        e.0.insert(
            "payment-identifier".into(),
            json!({"info": {"id": id}, "schema": {}}),
        );
        e
    });
    encode_header(&PaymentPayload {
        x402_version: 2,
        payload,
        extensions,
        resource: Some(required.resource.clone()),
        accepted: required.accepts[0].clone(),
    })
}

async fn pay(
    method: reqwest::Method,
    url: &str,
    payment: &str,
) -> (
    u16,
    reqwest::header::HeaderMap,
    Option<SettleResponse>,
    String,
) {
    let response = no_redirects()
        .request(method, url)
        .header("PAYMENT-SIGNATURE", payment)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let receipt = headers
        .get("payment-response")
        .map(|h| decode_payment_response(h.as_bytes()).expect("receipt"));
    (
        status,
        headers,
        receipt,
        response.text().await.unwrap_or_default(),
    )
}

fn fresh() -> (Address, B256) {
    (Address::random(), B256::random())
}

/// Finding 1: a paid route whose handler answers 3xx (a presigned download
/// URL in `Location`) is delivered to the payer although nothing is settled,
/// and the payment is released, so one verifying authorization fetches the
/// redirect target any number of times for free.
#[tokio::test]
async fn paid_redirect_is_not_given_away_unsettled() {
    let script = Script::new([], Settle::Answer(settled("0xabc")));
    let (base, _) = env(Arc::clone(&script)).await;
    let url = format!("{base}/download");
    let payment = payment_for(reqwest::Method::GET, &url, fresh(), None).await;
    for _ in 0..3 {
        let (status, headers, receipt, _) = pay(reqwest::Method::GET, &url, &payment).await;
        let leaked = headers
            .get("location")
            .is_some_and(|l| l.as_bytes() == SECRET_LOCATION.as_bytes());
        assert!(
            !leaked || receipt.as_ref().is_some_and(|r| r.success),
            "status {status}: the paid redirect target was handed out with no settlement \
             (facilitator /settle calls so far: {})",
            script.settles()
        );
    }
}

/// Finding 1 (same root cause): a paid route answering `101 Switching
/// Protocols` (a paid WebSocket stream) is upgraded without settlement, and
/// the payment stays reusable.
#[tokio::test]
async fn paid_upgrade_is_not_given_away_unsettled() {
    let script = Script::new([], Settle::Answer(settled("0xabc")));
    let (base, _) = env(Arc::clone(&script)).await;
    let url = format!("{base}/ws");
    let payment = payment_for(reqwest::Method::GET, &url, fresh(), None).await;
    // reqwest does not surface 101 to callers: speak HTTP/1.1 directly.
    let addr = base.trim_start_matches("http://").to_owned();
    for _ in 0..2 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             PAYMENT-SIGNATURE: {payment}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("answer")
            .expect("read");
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(
            !head.starts_with("HTTP/1.1 101") || script.settles() > 0,
            "upgraded to the paid stream with no settlement:\n{head}"
        );
    }
}

fn failed(reason: &str) -> Value {
    json!({"success": false, "errorReason": reason, "transaction": "", "network": "eip155:31337"})
}

/// The head of the answer to a raw HTTP/1.1 `GET path` carrying `payment`
/// (reqwest does not surface 101 to callers).
async fn raw_get(base: &str, path: &str, payment: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         PAYMENT-SIGNATURE: {payment}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// Finding 1: a paid redirect is settled like content, once: a failed
/// settlement withholds it (and frees the payment, nothing was charged); a
/// settled one carries the receipt; the payment is then used, for HEAD too.
#[tokio::test]
async fn a_paid_redirect_is_sold_once_and_withheld_unsettled() {
    let script = Script::new(
        [Settle::Answer(failed("insufficient_funds"))],
        Settle::Answer(settled("0xabc")),
    );
    let (base, _) = env(Arc::clone(&script)).await;
    let url = format!("{base}/download");
    let payment = payment_for(reqwest::Method::GET, &url, fresh(), None).await;
    let location = |headers: &reqwest::header::HeaderMap| headers.get("location").cloned();

    let (status, headers, _, _) = pay(reqwest::Method::GET, &url, &payment).await;
    assert_eq!(status, 402, "settlement failed: withheld");
    assert_eq!(location(&headers), None);
    assert_eq!(script.settles(), 1);

    let (status, headers, receipt, _) = pay(reqwest::Method::GET, &url, &payment).await;
    assert_eq!(status, 307);
    assert_eq!(
        location(&headers).as_ref().map(HeaderValue::as_bytes),
        Some(SECRET_LOCATION.as_bytes())
    );
    assert!(receipt.expect("PAYMENT-RESPONSE").success);
    assert_eq!(
        headers.get("cache-control").map(HeaderValue::as_bytes),
        Some(&b"no-store"[..])
    );
    assert_eq!(script.settles(), 2);

    let (status, headers, _, _) = pay(reqwest::Method::GET, &url, &payment).await;
    assert_eq!(status, 402, "used");
    assert_eq!(location(&headers), None);
    assert_eq!(script.settles(), 2);

    // HEAD is priced like GET: its redirect is sold once as well.
    let head = payment_for(reqwest::Method::HEAD, &url, fresh(), None).await;
    let (status, headers, receipt, _) = pay(reqwest::Method::HEAD, &url, &head).await;
    assert_eq!(status, 307);
    assert!(location(&headers).is_some());
    assert!(receipt.expect("PAYMENT-RESPONSE").success);
    let (status, headers, _, _) = pay(reqwest::Method::HEAD, &url, &head).await;
    assert_eq!(status, 402);
    assert_eq!(location(&headers), None);
    assert_eq!(script.settles(), 3);
}

/// Finding 1: on a settle-after-handler route an upgrade is refused with a
/// clear error and nothing is charged (the payment stays usable); a
/// settle-first route upgrades once settled, with the receipt.
#[tokio::test]
async fn an_upgrade_is_sold_only_settle_first() {
    let script = Script::new([], Settle::Answer(settled("0xabc")));
    let (base, runs) = env(Arc::clone(&script)).await;
    let payment = payment_for(reqwest::Method::GET, &format!("{base}/ws"), fresh(), None).await;
    let head = raw_get(&base, "/ws", &payment).await;
    assert!(head.starts_with("HTTP/1.1 500"), "{head}");
    assert!(
        head.contains("upgrade_needs_settle_before_handler"),
        "{head}"
    );
    assert!(!head.contains("paid-stream"), "{head}");
    assert_eq!(script.settles(), 0, "nothing charged");
    // Not charged, so not used up: the same requirements elsewhere accept it.
    let (status, _, _, body) = pay(reqwest::Method::GET, &format!("{base}/a"), &payment).await;
    assert_eq!((status, body.as_str()), (200, "content A"));
    assert_eq!(runs.a.load(Ordering::SeqCst), 1);

    let first = payment_for(
        reqwest::Method::GET,
        &format!("{base}/ws-first"),
        fresh(),
        None,
    )
    .await;
    let settles = script.settles();
    let head = raw_get(&base, "/ws-first", &first).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("payment-response:"),
        "{head}"
    );
    assert_eq!(script.settles(), settles + 1);
    let head = raw_get(&base, "/ws-first", &first).await;
    assert!(head.starts_with("HTTP/1.1 402"), "used: {head}");
}

/// Finding 1 (the other non-error answers): 204 and 304 are charged like
/// any answer that is not an error, once.
#[tokio::test]
async fn no_content_and_not_modified_are_charged_once() {
    let script = Script::new([], Settle::Answer(settled("0xabc")));
    let (base, _) = env(Arc::clone(&script)).await;
    for (path, expected) in [("/empty", 204), ("/not-modified", 304)] {
        let url = format!("{base}{path}");
        let payment = payment_for(reqwest::Method::GET, &url, fresh(), None).await;
        let settles = script.settles();
        let (status, _, receipt, _) = pay(reqwest::Method::GET, &url, &payment).await;
        assert_eq!(status, expected, "{path}");
        assert!(receipt.expect("PAYMENT-RESPONSE").success, "{path}");
        assert_eq!(script.settles(), settles + 1, "{path}");
        assert_eq!(
            pay(reqwest::Method::GET, &url, &payment).await.0,
            402,
            "{path}"
        );
    }
}

/// Holds: a payment whose outcome is unknown on route A, resumed on route B
/// (same requirements), is served once in total; the cached A response is not
/// also served later.
#[tokio::test]
async fn resume_on_another_route_serves_once() {
    let script = Script::new([Settle::Hang], Settle::Answer(settled("0xabc")));
    let (base, runs) = env(Arc::clone(&script)).await;
    let (a, b) = (format!("{base}/a"), format!("{base}/b"));
    let payment = payment_for(reqwest::Method::GET, &a, fresh(), None).await;
    assert_eq!(pay(reqwest::Method::GET, &a, &payment).await.0, 503);
    let (status, _, _, body) = pay(reqwest::Method::GET, &b, &payment).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "content B");
    for url in [&a, &b] {
        let (status, _, _, body) = pay(reqwest::Method::GET, url, &payment).await;
        assert_eq!(status, 402, "{body}");
    }
    assert_eq!(runs.a.load(Ordering::SeqCst), 1);
    assert_eq!(runs.b.load(Ordering::SeqCst), 1);
}

/// Holds: a resume carrying another payment-identifier id is still one
/// serve; the cached response is served once.
#[tokio::test]
async fn resume_with_another_payment_identifier_serves_once() {
    let script = Script::new([Settle::Hang], Settle::Answer(settled("0xabc")));
    let (base, runs) = env(Arc::clone(&script)).await;
    let a = format!("{base}/a");
    let auth = fresh();
    let first = payment_for(reqwest::Method::GET, &a, auth, Some("pay_one")).await;
    let other = payment_for(reqwest::Method::GET, &a, auth, Some("pay_two")).await;
    assert_eq!(pay(reqwest::Method::GET, &a, &first).await.0, 503);
    let mut served = 0;
    for payment in [&other, &first, &other] {
        if pay(reqwest::Method::GET, &a, payment).await.0 == 200 {
            served += 1;
        }
    }
    assert_eq!(served, 1);
    assert_eq!(runs.a.load(Ordering::SeqCst), 1);
}

/// Holds (lesson 1 on the settle-first path, fresh and resumed): anything
/// but a literal `success: true` never runs the handler.
#[tokio::test]
async fn settle_first_never_runs_on_a_non_success() {
    let answers = [
        json!({"success": false, "transaction": "", "network": "eip155:31337",
               "errorReason": "insufficient_funds"}),
        json!({"success": "true", "transaction": "0x1", "network": "eip155:31337"}),
        json!({"transaction": "0x1", "network": "eip155:31337"}),
        json!({"success": 1, "transaction": "0x1", "network": "eip155:31337"}),
        json!({"success": false, "errorReason": "settlement_pending", "transaction": "",
               "network": "eip155:31337"}),
    ];
    for answer in answers {
        let script = Script::new(
            [Settle::Hang, Settle::Answer(answer.clone())],
            Settle::Answer(answer.clone()),
        );
        let (base, runs) = env(Arc::clone(&script)).await;
        let url = format!("{base}/first");
        let fresh_payment = payment_for(reqwest::Method::POST, &url, fresh(), None).await;
        // Fresh (after a first hang: resumed), then fresh again.
        assert_eq!(
            pay(reqwest::Method::POST, &url, &fresh_payment).await.0,
            503
        );
        let (status, _, _, body) = pay(reqwest::Method::POST, &url, &fresh_payment).await;
        assert_ne!(status, 200, "{answer}: {body}");
        let other = payment_for(reqwest::Method::POST, &url, fresh(), None).await;
        let (status, _, _, body) = pay(reqwest::Method::POST, &url, &other).await;
        assert_ne!(status, 200, "{answer}: {body}");
        assert_eq!(runs.first.load(Ordering::SeqCst), 0, "{answer}");
    }
}
