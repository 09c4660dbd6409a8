//! Operations over HTTP with a scripted facilitator (no chain): API keys,
//! rate limits, request ids, the `submitted` record, the background
//! reconciler and graceful shutdown with a settlement in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use paywire_core::scheme::{BoxFuture, NoObserver, SettlementObserver};
use paywire_core::{
    ErrorReason, Facilitator, FacilitatorError, FacilitatorRequest, SettleResponse,
    SupportedResponse, VerifyResponse,
};
use paywire_facilitator::{ApiKeys, AppState, Endpoint, Ledger, SettlementState};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TX: &str = "0x00000000000000000000000000000000000000000000000000000000000000aa";

/// The transaction the script settles `request` with: one per payment (the
/// facilitator answers success for one on-chain transaction to one payload
/// only), derived from the payload's `authorization.nonce`.
fn tx_for(request: &FacilitatorRequest) -> String {
    let n = request.payment_payload.payload["authorization"]["nonce"]
        .as_u64()
        .unwrap_or(0);
    format!("0x{:064x}", 0xaa + n)
}

/// Settles after `delay`, reporting [`tx_for`] to the observer first; the
/// first settle answers `pending` when `pending_first` is set.
#[derive(Default)]
struct Scripted {
    delay: Duration,
    pending_first: bool,
    calls: AtomicUsize,
}

impl Facilitator for Scripted {
    fn verify<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async { Ok(VerifyResponse::valid("0xpayer")) })
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.settle_observed(request, &NoObserver)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }

    fn settle_observed<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        observer: &'a dyn SettlementObserver,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let network = request.payment_requirements.network.clone();
            let tx = tx_for(request);
            observer
                .before_broadcast(&network, &tx)
                .await
                .map_err(FacilitatorError::BadRequest)?;
            tokio::time::sleep(self.delay).await;
            Ok(if self.pending_first && call == 0 {
                SettleResponse::pending(network, None, tx)
            } else {
                SettleResponse::settled(network, tx, None)
            })
        })
    }

    /// This script trusts its payloads' `authorization.from` (the EVM scheme
    /// proves it by signature; see `http.rs`).
    fn authenticated_payer(&self, request: &FacilitatorRequest) -> Option<String> {
        request.payment_payload.payload["authorization"]["from"]
            .as_str()
            .map(str::to_ascii_lowercase)
    }
}

struct Running {
    base: String,
    state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn serve(state: AppState) -> Result<Running, Box<dyn std::error::Error + Send + Sync>> {
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
    Ok(Running {
        base,
        state,
        shutdown: Some(tx),
        handle,
    })
}

async fn state(
    scripted: Arc<Scripted>,
) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
    state_on(scripted, Ledger::in_memory().await?).await
}

async fn state_on(
    scripted: Arc<Scripted>,
    ledger: Ledger,
) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
    Ok(AppState::new(scripted, ledger).with_reconciler(Duration::ZERO, Duration::ZERO))
}

/// Generates `mod $name { sqlite, postgres }` running `$name(Ledger)` on an
/// in-memory SQLite ledger and on a throwaway PostgreSQL cluster.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() -> TestResult {
                super::$name(Ledger::in_memory().await?).await
            }

            #[tokio::test]
            async fn postgres() -> TestResult {
                let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip().await?
                else {
                    return Ok(());
                };
                super::$name(Ledger::connect_postgres(cluster.url()).await?).await
            }
        }
    )*};
}

both_stores!(
    shutdown_waits_for_in_flight_settlements,
    background_reconciler_finishes_pending_settlements,
    startup_reconciliation_reruns_every_unfinished_state,
);

/// A well-formed request claiming `payer`; `n` makes the payload unique.
fn request(payer: &str, n: u64) -> Value {
    let requirements = json!({
        "scheme": "exact", "network": "eip155:31337", "amount": "10000",
        "asset": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "maxTimeoutSeconds": 60
    });
    json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "payload": {"signature": "0x01", "authorization": {"from": payer, "nonce": n}},
            "accepted": requirements,
        },
        "paymentRequirements": requirements,
    })
}

const PAYER_A: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const PAYER_B: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    key: Option<&str>,
) -> Result<(u16, Value), Box<dyn std::error::Error + Send + Sync>> {
    let mut builder = client.post(url).json(body);
    if let Some(key) = key {
        builder = builder.bearer_auth(key);
    }
    let response = builder.send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn api_keys_gate_endpoints() -> TestResult {
    let keys = ApiKeys::none()
        .with_key(
            "settle-key-0123456789",
            vec![Endpoint::Verify, Endpoint::Settle],
        )
        .with_key("verify-key-0123456789", vec![Endpoint::Verify]);
    let server = serve(state(Arc::default()).await?.with_api_keys(keys)).await?;
    let client = reqwest::Client::new();
    let body = request(PAYER_A, 1);

    for (path, key, status, code) in [
        ("/verify", None, 401, Some("unauthorized")),
        (
            "/verify",
            Some("wrong-key-0123456789"),
            401,
            Some("unauthorized"),
        ),
        ("/verify", Some("verify-key-0123456789"), 200, None),
        (
            "/settle",
            Some("verify-key-0123456789"),
            403,
            Some("forbidden"),
        ),
        ("/settle", None, 401, Some("unauthorized")),
        ("/settle", Some("settle-key-0123456789"), 200, None),
    ] {
        let (got, answer) = post(&client, &server.url(path), &body, key).await?;
        assert_eq!(got, status, "{path} {key:?}: {answer}");
        if let Some(code) = code {
            assert_eq!(answer["error"], json!(code), "{answer}");
        }
    }
    // Not listed by any key: open. Health and metrics are never gated.
    for path in ["/supported", "/health", "/metrics"] {
        let response = client.get(server.url(path)).send().await?;
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn rate_limits_per_ip_and_per_payer() -> TestResult {
    let client = reqwest::Client::new();

    let server = serve(state(Arc::default()).await?.with_rate_limits(Some(3), None)).await?;
    for n in 0..3 {
        let (status, answer) =
            post(&client, &server.url("/verify"), &request(PAYER_A, n), None).await?;
        assert_eq!(status, 200, "{answer}");
    }
    let response = client
        .post(server.url("/settle"))
        .json(&request(PAYER_B, 9))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or("no Retry-After")?;
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let answer: Value = response.json().await?;
    assert_eq!(answer["error"], json!("rate_limited"));
    // /supported and /health are not limited.
    assert_eq!(
        client
            .get(server.url("/supported"))
            .send()
            .await?
            .status()
            .as_u16(),
        200
    );
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("paywire_rate_limited_total{limit=\"ip\"} 1"),
        "{metrics}"
    );

    let server = serve(state(Arc::default()).await?.with_rate_limits(None, Some(2))).await?;
    for n in 0..2 {
        let (status, _) = post(&client, &server.url("/settle"), &request(PAYER_A, n), None).await?;
        assert_eq!(status, 200);
    }
    // Same payer, any case: limited. Another payer: fine.
    let (status, answer) = post(
        &client,
        &server.url("/verify"),
        &request(&PAYER_A.to_lowercase(), 5),
        None,
    )
    .await?;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"], json!("rate_limited"));
    let (status, _) = post(&client, &server.url("/verify"), &request(PAYER_B, 5), None).await?;
    assert_eq!(status, 200);
    Ok(())
}

#[tokio::test]
async fn request_ids_are_returned() -> TestResult {
    let server = serve(state(Arc::default()).await?).await?;
    let client = reqwest::Client::new();
    let id = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let first = client.get(server.url("/health")).send().await?;
    let second = client.get(server.url("/nope")).send().await?;
    let (a, b) = (id(&first).ok_or("no id")?, id(&second).ok_or("no id")?);
    assert_ne!(a, b);
    let echoed = client
        .get(server.url("/health"))
        .header("x-request-id", "upstream-id-42")
        .send()
        .await?;
    assert_eq!(id(&echoed).as_deref(), Some("upstream-id-42"));
    Ok(())
}

async fn shutdown_waits_for_in_flight_settlements(ledger: Ledger) -> TestResult {
    let scripted = Arc::new(Scripted {
        delay: Duration::from_millis(1500),
        ..Scripted::default()
    });
    let mut server = serve(state_on(Arc::clone(&scripted), ledger).await?).await?;
    let client = reqwest::Client::new();

    // One client waits for its answer; another hangs up early.
    let waiting = {
        let (client, url) = (client.clone(), server.url("/settle"));
        tokio::spawn(async move { post(&client, &url, &request(PAYER_A, 1), None).await })
    };
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()?;
    let hung_up = post(
        &impatient,
        &server.url("/settle"),
        &request(PAYER_B, 2),
        None,
    )
    .await;
    assert!(hung_up.is_err());

    // While in flight, the ledger already has the transaction as `submitted`.
    let open = server.state.ledger().unresolved().await?;
    assert_eq!(open.len(), 2, "{open:?}");
    for row in &open {
        assert_eq!(row.state, SettlementState::Submitted);
        let request = row.request.as_ref().ok_or("no request")?;
        assert_eq!(row.transaction, Some(tx_for(request)));
    }

    if let Some(shutdown) = server.shutdown.take() {
        let _ = shutdown.send(());
    }
    let (status, answer) = waiting.await??;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], json!(true), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), &mut server.handle).await??;
    // serve returned only after both settlements were recorded.
    assert!(server.state.ledger().unresolved().await?.is_empty());
    assert_eq!(scripted.calls.load(Ordering::SeqCst), 2);
    Ok(())
}

async fn background_reconciler_finishes_pending_settlements(ledger: Ledger) -> TestResult {
    let scripted = Arc::new(Scripted {
        pending_first: true,
        ..Scripted::default()
    });
    let state = state_on(Arc::clone(&scripted), ledger)
        .await?
        .with_reconciler(Duration::from_millis(200), Duration::from_secs(1));
    let server = serve(state).await?;
    let client = reqwest::Client::new();
    let (status, answer) =
        post(&client, &server.url("/settle"), &request(PAYER_A, 1), None).await?;
    assert_eq!(status, 200);
    assert_eq!(answer["success"], json!(false));
    assert_eq!(
        answer["errorReason"],
        json!("settlement_pending"),
        "{answer}"
    );

    let mut finished = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if server.state.ledger().unresolved().await?.is_empty() {
            finished = true;
            break;
        }
    }
    assert!(
        finished,
        "the reconciler did not finish the pending settlement"
    );
    assert_eq!(scripted.calls.load(Ordering::SeqCst), 2);
    // The retried /settle answers from the ledger.
    let (status, answer) =
        post(&client, &server.url("/settle"), &request(PAYER_A, 1), None).await?;
    assert_eq!(status, 200);
    assert_eq!(answer["success"], json!(true), "{answer}");
    let request_1: FacilitatorRequest = serde_json::from_value(request(PAYER_A, 1))?;
    assert_eq!(answer["transaction"], json!(tx_for(&request_1)));
    assert_eq!(scripted.calls.load(Ordering::SeqCst), 2);
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("paywire_recovered_total{outcome=\"confirmed\"} 1"),
        "{metrics}"
    );
    Ok(())
}

async fn startup_reconciliation_reruns_every_unfinished_state(ledger: Ledger) -> TestResult {
    let scripted = Arc::new(Scripted::default());
    let state = state_on(Arc::clone(&scripted), ledger).await?;
    let ledger = state.ledger().clone();
    for (n, fingerprint) in ["received", "submitted", "pending", "old"]
        .iter()
        .enumerate()
    {
        let parsed: FacilitatorRequest = serde_json::from_value(request(PAYER_A, n as u64))?;
        ledger.mark_received(fingerprint, &parsed, None).await?;
    }
    ledger.mark_submitted("submitted", TX).await?;
    let pending = SettleResponse::failed(
        "eip155:31337".parse()?,
        ErrorReason::TRANSACTION_PENDING,
        None,
        TX,
    );
    ledger.record_outcome("pending", &pending).await?;
    let report = state.reconcile_all().await?;
    assert_eq!(report.examined, 4);
    assert_eq!(report.resolved, 4);
    assert_eq!(scripted.calls.load(Ordering::SeqCst), 4);
    assert!(ledger.unresolved().await?.is_empty());
    // Nothing left: a second pass does nothing.
    assert_eq!(state.reconcile_all().await?.examined, 0);
    Ok(())
}
