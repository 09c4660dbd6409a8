//! Unknown settlement outcomes (facilitator timeout, 5xx, `pending`) and
//! bounded paid-response buffers, against a scripted facilitator reached over
//! HTTP with the real `HttpFacilitator` client: the payer who may have been
//! charged gets the response once settlement is final, exactly once, and an
//! oversized response is refused before anything is settled.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use common::*;
use paywire_core::codec::{decode_payment_response, encode_header};
use paywire_core::{ChainIdPattern, JsonObject, PaymentPayload, SettleResponse};
use paywire_evm::EvmNetworks;
use paywire_evm::exact::ExactEvmServer;
use paywire_server::{
    HttpFacilitator, InMemoryReservationStore, PayTo, PaymentLayer, PaymentLayerBuilder,
    PaymentOption, ReservationStore, Route, SqliteReservationStore, money,
};
use serde_json::{Value, json};

/// How long the server waits for the facilitator in these tests.
const SERVER_TIMEOUT: Duration = Duration::from_millis(400);

/// One scripted `/settle` behaviour.
#[derive(Clone, Debug)]
enum Settle {
    /// "Broadcasts" (verify then reports the nonce used) and answers only
    /// after the server gave up.
    Hang,
    /// Answers this JSON with 200.
    Answer(Value),
    /// Answers this JSON with 200 after a while (still within the server's
    /// timeout): concurrent retries overlap it.
    Slow(Value),
    /// Answers this HTTP status.
    Status(u16),
}

struct Script {
    queue: Mutex<VecDeque<Settle>>,
    /// Once the queue is empty.
    then: Settle,
    /// The authorization was used on chain: verify says so.
    landed: AtomicBool,
    settles: AtomicUsize,
}

impl Script {
    fn new(first: impl IntoIterator<Item = Settle>, then: Settle) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(first.into_iter().collect()),
            then,
            landed: AtomicBool::new(false),
            settles: AtomicUsize::new(0),
        })
    }

    fn settles(&self) -> usize {
        self.settles.load(Ordering::SeqCst)
    }

    fn next(&self) -> Settle {
        self.settles.fetch_add(1, Ordering::SeqCst);
        let queued = self.queue.lock().expect("lock").pop_front();
        queued.unwrap_or_else(|| self.then.clone())
    }
}

fn settled(transaction: &str) -> Value {
    json!({"success": true, "transaction": transaction, "network": "eip155:31337",
           "payer": "0x0000000000000000000000000000000000000001"})
}

fn pending(transaction: &str) -> Value {
    json!({"success": false, "errorReason": "settlement_pending", "transaction": transaction,
           "network": "eip155:31337"})
}

fn failed(reason: &str) -> Value {
    json!({"success": false, "errorReason": reason, "transaction": "", "network": "eip155:31337"})
}

/// What a paywire facilitator answers to a repeated settle of a settled
/// payment: the chain's used-nonce reason and its stable replay message.
fn replay_refused(reason: &str) -> Value {
    let mut answer = failed(reason);
    answer["errorMessage"] = json!(paywire_facilitator::REPLAY_REFUSAL_MESSAGE);
    answer
}

/// A facilitator over HTTP following `script`.
async fn facilitator(script: Arc<Script>) -> String {
    type S = Arc<Script>;
    let router = Router::new()
        .route(
            "/verify",
            post(|State(s): State<S>| async move {
                if s.landed.load(Ordering::SeqCst) {
                    axum::Json(json!({"isValid": false,
                        "invalidReason": "invalid_exact_evm_nonce_already_used",
                        "payer": "0x0000000000000000000000000000000000000001"}))
                } else {
                    axum::Json(json!({"isValid": true,
                        "payer": "0x0000000000000000000000000000000000000001"}))
                }
            }),
        )
        .route(
            "/settle",
            post(|State(s): State<S>| async move {
                use axum::response::IntoResponse;
                match s.next() {
                    Settle::Hang => {
                        s.landed.store(true, Ordering::SeqCst);
                        tokio::time::sleep(SERVER_TIMEOUT * 10).await;
                        axum::Json(settled("0xabc")).into_response()
                    }
                    Settle::Answer(value) => axum::Json(value).into_response(),
                    Settle::Slow(value) => {
                        tokio::time::sleep(SERVER_TIMEOUT / 3).await;
                        axum::Json(value).into_response()
                    }
                    Settle::Status(status) => (
                        http::StatusCode::from_u16(status).expect("status"),
                        "facilitator trouble",
                    )
                        .into_response(),
                }
            }),
        )
        .route(
            "/supported",
            get(|| async {
                axum::Json(
                    json!({"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:31337"}]}),
                )
            }),
        )
        .with_state(script);
    serve(router).await
}

/// How often each handler ran.
#[derive(Default)]
struct Runs {
    cheap: AtomicUsize,
    side_effect: AtomicUsize,
}

const BIG: usize = 2048;

fn priced(pattern: &str) -> Route {
    Route::new(pattern)
        .expect("route")
        .accept(PaymentOption::exact(
            chain(),
            money("$0.01").expect("price"),
            PayTo::address(Address::repeat_byte(0x22).to_string()),
        ))
}

fn builder(facilitator_url: &str) -> PaymentLayerBuilder {
    let mut table = EvmNetworks::empty();
    table.insert(anvil_network(Address::repeat_byte(0x11)));
    let facilitator = HttpFacilitator::builder(facilitator_url)
        .timeout(SERVER_TIMEOUT)
        .build()
        .expect("facilitator client");
    PaymentLayer::builder(Arc::new(facilitator))
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin(ORIGIN)
        .route(priced("GET /cheap"))
        .route(priced("GET /big"))
        .route(priced("GET /big-stream"))
        .route(priced("POST /side-effect").settle_before_handler())
}

fn app(runs: Arc<Runs>, layer: PaymentLayer) -> Router {
    Router::new()
        .route(
            "/cheap",
            get(|State(r): State<Arc<Runs>>| async move {
                r.cheap.fetch_add(1, Ordering::SeqCst);
                CONTENT
            }),
        )
        .route("/big", get(|| async { "b".repeat(BIG) }))
        .route(
            "/big-stream",
            // No Content-Length: only reading tells the size.
            get(|| async {
                axum::body::Body::new(Chunks {
                    left: 4,
                    size: BIG / 2,
                })
            }),
        )
        .route(
            "/side-effect",
            post(|State(r): State<Arc<Runs>>| async move {
                r.side_effect.fetch_add(1, Ordering::SeqCst);
                "done"
            }),
        )
        .layer(layer)
        .with_state(runs)
}

/// A body of `count` chunks of `size` bytes with no declared length.
struct Chunks {
    left: usize,
    size: usize,
}

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        let chunk = bytes::Bytes::from(vec![b's'; self.size]);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }
}

struct Env {
    url: String,
    runs: Arc<Runs>,
    script: Arc<Script>,
}

async fn env_with(
    script: Arc<Script>,
    configure: impl FnOnce(PaymentLayerBuilder) -> PaymentLayerBuilder,
) -> Env {
    let facilitator_url = facilitator(Arc::clone(&script)).await;
    let runs = Arc::new(Runs::default());
    let layer = configure(builder(&facilitator_url)).build().expect("layer");
    let url = serve(app(Arc::clone(&runs), layer)).await;
    Env { url, runs, script }
}

async fn env(script: Arc<Script>) -> Env {
    env_with(script, |b| b).await
}

/// A payment echoing the route's requirement: `(from, nonce)` name the
/// authorization, `signature` tells payloads for it apart.
async fn payment_for(url: &str, authorization: (Address, B256), signature: &str) -> String {
    let required = required_of(&client().get(url).send().await.expect("402"));
    let mut auth = JsonObject::new();
    auth.insert("from".into(), json!(authorization.0.to_string()));
    auth.insert("nonce".into(), json!(authorization.1.to_string()));
    let mut payload = JsonObject::new();
    payload.insert("authorization".into(), Value::Object(auth));
    payload.insert("signature".into(), json!(signature));
    encode_header(&PaymentPayload {
        x402_version: 2,
        payload,
        extensions: None,
        resource: Some(required.resource.clone()),
        accepted: required.accepts[0].clone(),
    })
}

fn fresh_authorization() -> (Address, B256) {
    (Address::random(), B256::random())
}

async fn pay(
    method: reqwest::Method,
    url: &str,
    payment: &str,
) -> (u16, Option<SettleResponse>, String) {
    let response = client()
        .request(method, url)
        .header("PAYMENT-SIGNATURE", payment)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let receipt = header(&response, "payment-response")
        .map(|h| decode_payment_response(h.as_bytes()).expect("receipt"));
    (status, receipt, response.text().await.expect("body"))
}

async fn paid_get(url: &str, payment: &str) -> (u16, Option<SettleResponse>, String) {
    pay(reqwest::Method::GET, url, payment).await
}

/// Lessons 13 and 21: a settle call that times out after the facilitator
/// broadcast leaves the outcome unknown; the same payload's retries get the
/// kept response once settlement is confirmed, exactly once even when ten
/// arrive together, and another payload reusing the authorization never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_settlement_is_served_once_to_the_same_payload() {
    let env = env(Script::new([Settle::Hang], Settle::Slow(settled("0xabc")))).await;
    let url = format!("{}/cheap", env.url);
    let authorization = fresh_authorization();
    let payment = payment_for(&url, authorization, "0x00").await;

    let response = client()
        .get(&url)
        .header("PAYMENT-SIGNATURE", &payment)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status().as_u16(),
        503,
        "unknown outcome, not a plain 502"
    );
    assert!(header(&response, "retry-after").is_some());
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "settlement_unknown");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("same PAYMENT-SIGNATURE")),
        "{body}"
    );
    assert_eq!(env.runs.cheap.load(Ordering::SeqCst), 1);
    assert_eq!(env.script.settles(), 1);

    // Another payload for the same authorization: refused, nothing settled.
    let forged = payment_for(&url, authorization, "0x01").await;
    let (status, _, body) = paid_get(&url, &forged).await;
    assert_eq!(status, 402);
    assert!(!body.contains(CONTENT));
    assert_eq!(env.script.settles(), 1);

    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (url, payment) = (url.clone(), payment.clone());
        tasks.push(tokio::spawn(async move { paid_get(&url, &payment).await }));
    }
    let mut served = 0;
    for task in tasks {
        let (status, receipt, body) = task.await.expect("task");
        if status == 200 {
            served += 1;
            assert_eq!(body, CONTENT);
            let receipt = receipt.expect("PAYMENT-RESPONSE");
            assert!(receipt.success);
            assert_eq!(receipt.transaction, "0xabc");
        } else {
            assert_eq!(status, 402, "{body}");
            assert!(!body.contains(CONTENT));
        }
    }
    assert_eq!(served, 1, "served exactly once");
    assert_eq!(
        env.runs.cheap.load(Ordering::SeqCst),
        1,
        "the kept response was served"
    );
    assert_eq!(env.script.settles(), 2, "one re-ask");

    let (status, _, body) = paid_get(&url, &payment).await;
    assert_eq!(status, 402, "settled: used for good");
    assert!(!body.contains(CONTENT));
    assert_eq!(env.script.settles(), 2);
}

/// A `pending` answer, then the facilitator confirms: the retry gets the kept
/// response with the final receipt.
#[tokio::test]
async fn pending_then_confirmed_is_served_from_the_kept_response() {
    let env = env(Script::new(
        [Settle::Answer(pending("0xfeed"))],
        Settle::Answer(settled("0xfeed")),
    ))
    .await;
    let url = format!("{}/cheap", env.url);
    let authorization = fresh_authorization();
    let payment = payment_for(&url, authorization, "0x00").await;
    let (status, receipt, body) = paid_get(&url, &payment).await;
    assert_eq!(status, 402);
    assert!(receipt.expect("pending receipt").is_pending());
    assert!(!body.contains(CONTENT));

    // Another payload for the pending authorization still verifies (nothing
    // landed yet) but never resumes the payment.
    let forged = payment_for(&url, authorization, "0x01").await;
    let (status, _, body) = paid_get(&url, &forged).await;
    assert_eq!(status, 402);
    assert!(!body.contains(CONTENT));
    assert_eq!(env.script.settles(), 1);

    let (status, receipt, body) = paid_get(&url, &payment).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, CONTENT);
    let receipt = receipt.expect("PAYMENT-RESPONSE");
    assert!(receipt.success);
    assert_eq!(receipt.transaction, "0xfeed");
    assert_eq!(env.runs.cheap.load(Ordering::SeqCst), 1);
    assert_eq!(env.script.settles(), 2);
}

/// A facilitator of another implementation refuses a resumed payment with
/// its chain's bare used-nonce code (no paywire replay message): the scheme
/// recognises the code, so the payer is told the payment appears settled.
#[tokio::test]
async fn a_bare_used_nonce_code_on_a_resumed_payment_reads_as_settled() {
    let env = env(Script::new(
        [
            Settle::Status(502),
            Settle::Answer(failed("invalid_exact_evm_payload_authorization_nonce_used")),
        ],
        Settle::Answer(settled("0xbeef")),
    ))
    .await;
    let url = format!("{}/cheap", env.url);
    let payment = payment_for(&url, fresh_authorization(), "0x00").await;
    let (status, _, _) = paid_get(&url, &payment).await;
    assert_eq!(status, 503);
    let response = client()
        .get(&url)
        .header("PAYMENT-SIGNATURE", &payment)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 409);
    let body: Value = response.json().await.expect("JSON");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("appears to have been settled"),
        "{message}"
    );
}

/// Which scheme judges a refusal of a resumed payment is ours to decide (the
/// requirement's network), not the facilitator's: an answer naming another
/// network is judged exactly like one naming ours. Here a payload defect that
/// the EVM scheme knows to be unchargeable frees the payment (402), whatever
/// network the facilitator writes into its answer.
#[tokio::test]
async fn a_refusal_is_judged_by_our_requirement_not_the_network_the_facilitator_names() {
    for named in ["eip155:31337", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"] {
        let mut refusal = failed("invalid_exact_evm_payload_authorization_valid_after");
        refusal["network"] = json!(named);
        let env = env(Script::new(
            [Settle::Status(502), Settle::Answer(refusal)],
            Settle::Answer(settled("0xbeef")),
        ))
        .await;
        let url = format!("{}/cheap", env.url);
        let payment = payment_for(&url, fresh_authorization(), "0x00").await;
        let (status, _, _) = paid_get(&url, &payment).await;
        assert_eq!(status, 503);
        let (status, _, body) = paid_get(&url, &payment).await;
        assert_eq!(status, 402, "answer naming {named}: {body}");
    }
}

/// Still unknown (5xx, then pending), then a definite failure that does not
/// prove the first attempt was free: the body stays withheld every time
/// (lesson 1) and the payment stays resumable, never reusable afresh. Such
/// a failure is a `409 settlement_disputed`, never a 402 whose fresh
/// challenge would invite paying a second time (review r3 finding 2).
#[tokio::test]
async fn failures_after_an_unknown_outcome_withhold_the_body_and_keep_the_payment() {
    let env = env(Script::new(
        [
            Settle::Status(502),
            Settle::Answer(pending("0xbeef")),
            Settle::Answer(replay_refused("invalid_exact_evm_nonce_already_used")),
            Settle::Answer(
                json!({"success": "true", "transaction": "0xbeef", "network": "eip155:31337"}),
            ),
        ],
        Settle::Answer(settled("0xbeef")),
    ))
    .await;
    let url = format!("{}/cheap", env.url);
    let payment = payment_for(&url, fresh_authorization(), "0x00").await;
    let (status, _, body) = paid_get(&url, &payment).await;
    assert_eq!(
        status, 503,
        "a 5xx after the call may have broadcast: {body}"
    );
    assert!(body.contains("settlement_unknown"));

    let (status, receipt, body) = paid_get(&url, &payment).await;
    assert_eq!(status, 402);
    assert!(receipt.expect("pending receipt").is_pending());
    assert!(!body.contains(CONTENT));

    for expected in ["appears to have been settled", "(unknown)"] {
        let response = client()
            .get(&url)
            .header("PAYMENT-SIGNATURE", &payment)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 409);
        assert!(
            header(&response, "payment-required").is_none(),
            "no new challenge"
        );
        assert!(header(&response, "payment-response").is_none());
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"], "settlement_disputed", "{body}");
        let message = body["message"].as_str().expect("message");
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("do not pay again"), "{message}");
        let reference = body["reference"].as_str().expect("reference");
        assert_eq!(reference.len(), 64);
        assert!(message.contains(reference), "{message}");
    }
    assert_eq!(env.script.settles(), 4, "every retry asked the facilitator");
    assert_eq!(env.runs.cheap.load(Ordering::SeqCst), 1);

    // The payment was kept: once the facilitator confirms, the kept
    // response is served (the handler does not run again).
    let (status, _, body) = paid_get(&url, &payment).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, CONTENT);
    assert_eq!(env.runs.cheap.load(Ordering::SeqCst), 1);
}

/// A refusal proving the payload could never move funds frees the payment
/// (nothing was charged); the same payload then goes through the whole
/// pipeline again.
#[tokio::test]
async fn refusal_proving_nothing_was_charged_frees_the_payment() {
    let script = Script::new(
        [
            Settle::Status(504),
            Settle::Answer(failed("invalid_exact_evm_payload_recipient_mismatch")),
        ],
        Settle::Answer(settled("0xcafe")),
    );
    let env = env(script).await;
    let url = format!("{}/cheap", env.url);
    let payment = payment_for(&url, fresh_authorization(), "0x00").await;
    assert_eq!(paid_get(&url, &payment).await.0, 503);
    let (status, _, body) = paid_get(&url, &payment).await;
    assert_eq!(status, 402);
    assert!(!body.contains(CONTENT));
    let (status, _, body) = paid_get(&url, &payment).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        env.runs.cheap.load(Ordering::SeqCst),
        2,
        "a fresh attempt ran the handler"
    );
}

/// Settle-first routes: nothing ran before the unknown outcome; the retry
/// runs the handler once settlement is confirmed.
#[tokio::test]
async fn settle_first_route_runs_the_handler_once_settlement_is_confirmed() {
    let env = env(Script::new(
        [Settle::Hang],
        Settle::Answer(settled("0xd00d")),
    ))
    .await;
    let url = format!("{}/side-effect", env.url);
    let required = required_of(&client().post(&url).send().await.expect("402"));
    assert_eq!(required.accepts.len(), 1);
    let authorization = fresh_authorization();
    let payment = {
        // The 402 of a POST route, paid.
        let mut auth = JsonObject::new();
        auth.insert("from".into(), json!(authorization.0.to_string()));
        auth.insert("nonce".into(), json!(authorization.1.to_string()));
        let mut payload = JsonObject::new();
        payload.insert("authorization".into(), Value::Object(auth));
        payload.insert("signature".into(), json!("0x00"));
        encode_header(&PaymentPayload {
            x402_version: 2,
            payload,
            extensions: None,
            resource: Some(required.resource.clone()),
            accepted: required.accepts[0].clone(),
        })
    };
    let (status, _, _) = pay(reqwest::Method::POST, &url, &payment).await;
    assert_eq!(status, 503);
    assert_eq!(env.runs.side_effect.load(Ordering::SeqCst), 0);
    let (status, receipt, body) = pay(reqwest::Method::POST, &url, &payment).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "done");
    assert!(receipt.expect("receipt").success);
    assert_eq!(env.runs.side_effect.load(Ordering::SeqCst), 1);
    let (status, _, _) = pay(reqwest::Method::POST, &url, &payment).await;
    assert_eq!(status, 402);
    assert_eq!(env.runs.side_effect.load(Ordering::SeqCst), 1);
}

/// A restart loses the kept response but not the payment (SQLite store): the
/// retry runs the handler once settlement is final, once.
#[tokio::test]
async fn after_a_restart_the_retry_runs_the_handler_once() {
    let dir = std::env::temp_dir().join(format!(
        "paywire-server-recovery-{}-{}",
        std::process::id(),
        B256::random()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("reservations.sqlite");
    let script = Script::new([Settle::Hang], Settle::Answer(settled("0xabc")));
    let facilitator_url = facilitator(Arc::clone(&script)).await;
    let runs = Arc::new(Runs::default());
    let instance = |runs: Arc<Runs>| {
        let store: Arc<dyn ReservationStore> =
            Arc::new(SqliteReservationStore::open(&path).expect("open"));
        let layer = builder(&facilitator_url)
            .reservations(store)
            .build()
            .expect("layer");
        app(runs, layer)
    };
    let before = serve(instance(Arc::clone(&runs))).await;
    let url = format!("{before}/cheap");
    let payment = payment_for(&url, fresh_authorization(), "0x00").await;
    assert_eq!(paid_get(&url, &payment).await.0, 503);

    let after = serve(instance(Arc::clone(&runs))).await;
    let url = format!("{after}/cheap");
    let (status, receipt, body) = paid_get(&url, &payment).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, CONTENT);
    assert!(receipt.expect("receipt").success);
    assert_eq!(runs.cheap.load(Ordering::SeqCst), 2, "ran again, once");
    assert_eq!(paid_get(&url, &payment).await.0, 402);
    assert_eq!(runs.cheap.load(Ordering::SeqCst), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 7: a paid response over the limit (declared or streamed) is refused
/// with a clear error before settlement; nothing is charged and the payment
/// stays usable.
#[tokio::test]
async fn oversized_paid_response_is_refused_before_settlement() {
    let env = env_with(Script::new([], Settle::Answer(settled("0xabc"))), |b| {
        b.max_paid_response_bytes(BIG - 1)
    })
    .await;
    let authorization = fresh_authorization();
    let payment = payment_for(&format!("{}/big", env.url), authorization, "0x00").await;
    for path in ["/big", "/big-stream"] {
        let response = client()
            .get(format!("{}{path}", env.url))
            .header("PAYMENT-SIGNATURE", &payment)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 500, "{path}");
        assert!(header(&response, "payment-response").is_none());
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"], "response_too_large", "{path}");
        assert!(
            body["message"].as_str().is_some_and(
                |m| m.contains(&(BIG - 1).to_string()) && m.contains("nothing was charged")
            ),
            "{body}"
        );
    }
    assert_eq!(env.script.settles(), 0, "never settled");
    // Released: the same payment buys a response within the limit.
    let (status, _, body) = paid_get(&format!("{}/cheap", env.url), &payment).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.script.settles(), 1);
}

/// The default limit is 8 MiB.
#[tokio::test]
async fn default_paid_response_limit_is_eight_mib() {
    assert_eq!(paywire_server::DEFAULT_MAX_PAID_RESPONSE_BYTES, 8 << 20);
    let script = Script::new([], Settle::Answer(settled("0xabc")));
    let facilitator_url = facilitator(Arc::clone(&script)).await;
    let layer = builder(&facilitator_url)
        .route(priced("GET /huge"))
        .reservations(Arc::new(InMemoryReservationStore::default()))
        .build()
        .expect("layer");
    let router = Router::new()
        .route("/huge", get(|| async { vec![b'h'; (8 << 20) + 1] }))
        .route("/cheap", get(|| async { vec![b'c'; 8 << 20] }))
        .layer(layer);
    let url = serve(router).await;
    let payment = payment_for(&format!("{url}/huge"), fresh_authorization(), "0x00").await;
    let (status, _, body) = paid_get(&format!("{url}/huge"), &payment).await;
    assert_eq!(status, 500, "{}", &body[..body.len().min(200)]);
    assert_eq!(script.settles(), 0);
    let (status, _, body) = paid_get(&format!("{url}/cheap"), &payment).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 8 << 20);
}

/// Review r3 finding 2 (decision): every 402 advertises `payment-identifier`
/// (optional ids) unless turned off, so buyers' ids make a settle retried
/// after a lost answer idempotent at the facilitator; a route's own
/// declaration wins.
#[tokio::test]
async fn the_402_advertises_payment_identifier_unless_turned_off() {
    let declared = json!({"info": {"required": true}, "schema": {"type": "object"}});
    let env = env_with(Script::new([], Settle::Answer(settled("0x1"))), |b| {
        b.route(priced("GET /declared").extension("payment-identifier", declared.clone()))
    })
    .await;
    let offered = |url: String| async move {
        required_of(&client().get(url).send().await.expect("402")).extensions
    };
    let extensions = offered(format!("{}/cheap", env.url))
        .await
        .expect("extensions");
    let advertised = &extensions.0["payment-identifier"];
    assert_eq!(advertised["info"], json!({"required": false}));
    assert_eq!(
        advertised["schema"]["properties"]["id"],
        json!({"type": "string", "minLength": 16, "maxLength": 128})
    );
    let extensions = offered(format!("{}/declared", env.url))
        .await
        .expect("extensions");
    assert_eq!(extensions.0["payment-identifier"], declared);

    let off = env_with(Script::new([], Settle::Answer(settled("0x1"))), |b| {
        b.advertise_payment_identifier(false)
    })
    .await;
    assert_eq!(offered(format!("{}/cheap", off.url)).await, None);
}

/// The paid responses held back until settlement share an in-flight limit:
/// a response that would go over it is refused `503 server_busy` before
/// anything is settled, and the same payment goes through once room is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_responses_held_at_once_are_bounded_in_total() {
    let env = env_with(Script::new([], Settle::Slow(settled("0xb16"))), |b| {
        b.max_paid_response_bytes_in_flight(BIG + BIG / 2)
    })
    .await;
    let url = format!("{}/big", env.url);
    let first = payment_for(&url, fresh_authorization(), "0x00").await;
    let second = payment_for(&url, fresh_authorization(), "0x00").await;
    let slow = {
        let (url, first) = (url.clone(), first.clone());
        tokio::spawn(async move { paid_get(&url, &first).await })
    };
    // The first response is held while its settlement takes a while.
    tokio::time::sleep(SERVER_TIMEOUT / 8).await;
    let response = client()
        .get(&url)
        .header("PAYMENT-SIGNATURE", &second)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(header(&response, "retry-after"), Some("1"));
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "server_busy", "{body}");
    let (status, _, body) = slow.await.expect("task");
    assert_eq!((status, body.len()), (200, BIG));
    assert_eq!(env.script.settles(), 1, "the refused one was not settled");

    let (status, receipt, body) = paid_get(&url, &second).await;
    assert_eq!(
        (status, body.len()),
        (200, BIG),
        "room is back, the payment still usable"
    );
    assert!(receipt.expect("receipt").success);
    assert_eq!(env.script.settles(), 2);
}
