//! Review r3: hostile probes of the paying client (budget, redirects,
//! re-sends). No chain: the wallet is fake, the servers are plain axum apps.
//!
//! Failing probes are `#[ignore = "finding N"]`; run them with
//! `cargo nextest run -p paywire-client --test review_r3_client --run-ignored all`.

use paywire_evm::Eip155ChainId;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use paywire_client::{Budget, BudgetRule, BudgetScope, PaymentOutcome, X402Client};
use paywire_core::codec::{self, PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, JsonObject, PaymentRequired, PaymentRequirements,
    ResourceInfo, SchemeClient, SchemeError,
};

const ASSET: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

fn required() -> PaymentRequired {
    PaymentRequired {
        x402_version: 2,
        error: None,
        resource: ResourceInfo::new("https://api.example.test/r"),
        accepts: vec![PaymentRequirements {
            scheme: "exact".into(),
            network: ChainId::eip155(84532),
            amount: 60_000u64.into(),
            asset: ASSET.into(),
            pay_to: "0x2222222222222222222222222222222222222222".into(),
            max_timeout_seconds: 60,
            extra: None,
        }],
        extensions: None,
    }
}

/// A wallet whose first signature is slow (a hardware wallet waiting for a
/// button, a remote signer waiting for approval): while it waits, the
/// budget's clock moves 16 minutes on.
struct SlowFirst {
    clock: Arc<AtomicI64>,
    calls: AtomicUsize,
    gate: tokio::sync::Notify,
}

impl SchemeClient for SlowFirst {
    fn scheme(&self) -> &'static str {
        "exact"
    }
    fn payer(&self, _: &ChainId) -> Option<String> {
        Some("0x1111111111111111111111111111111111111111".into())
    }
    fn create_payload<'a>(
        &'a self,
        _: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if n == 0 {
                self.clock.fetch_add(16 * 60, Ordering::SeqCst);
                self.gate.notified().await;
            }
            let mut payload = JsonObject::new();
            payload.insert("n".into(), n.into());
            Ok(payload)
        })
    }
}

/// Finding 3: a reservation stops counting after 15 minutes even while its
/// signature is still being produced; a second payment then fits, the slow
/// one is still marked outstanding afterwards, and the total limit is
/// exceeded.
#[tokio::test]
async fn a_slow_signature_does_not_let_the_total_be_exceeded() {
    let clock = Arc::new(AtomicI64::new(1_000_000));
    let scope = BudgetScope::Asset {
        network: ChainId::eip155(84532),
        asset: ASSET.into(),
    };
    let budget = {
        let clock = Arc::clone(&clock);
        Arc::new(
            Budget::in_memory(vec![BudgetRule {
                scope: scope.clone(),
                per_call: None,
                per_hour: None,
                per_day: None,
                total: Some(100_000),
            }])
            .await
            .expect("budget")
            .with_clock(move || clock.load(Ordering::SeqCst)),
        )
    };
    let wallet = Arc::new(SlowFirst {
        clock: Arc::clone(&clock),
        calls: AtomicUsize::new(0),
        gate: tokio::sync::Notify::new(),
    });
    let client = Arc::new(
        X402Client::builder()
            .wallet(
                ChainIdPattern::parse("eip155:*").expect("pattern"),
                Arc::clone(&wallet) as Arc<dyn SchemeClient>,
            )
            .budget(Arc::clone(&budget))
            .build(),
    );
    let slow = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.prepare(&required()).await })
    };
    while wallet.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let second = client.prepare(&required()).await;
    wallet.gate.notify_one();
    let first = slow.await.expect("task");
    let outstanding = budget.outstanding_total(&scope).await.expect("total");
    assert!(
        !(first.is_ok() && second.is_ok()),
        "two 60000-unit payments signed under a 100000 total; outstanding now {outstanding}"
    );
    assert!(outstanding <= 100_000, "outstanding {outstanding} > total");
}

/// A fake wallet that counts signatures.
#[derive(Default)]
struct Counting(AtomicUsize);

impl SchemeClient for Counting {
    fn scheme(&self) -> &'static str {
        "exact"
    }
    fn payer(&self, _: &ChainId) -> Option<String> {
        Some("0x1111111111111111111111111111111111111111".into())
    }
    fn create_payload<'a>(
        &'a self,
        _: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut payload = JsonObject::new();
            payload.insert("n".into(), n.into());
            Ok(payload)
        })
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn payer() -> (X402Client, Arc<Counting>) {
    let wallet = Arc::new(Counting::default());
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::clone(&wallet) as Arc<dyn SchemeClient>,
        )
        .max_outcome_wait(Duration::from_millis(200))
        .build();
    (client, wallet)
}

fn challenge_response() -> axum::response::Response {
    (
        StatusCode::PAYMENT_REQUIRED,
        [(PAYMENT_REQUIRED_HEADER, codec::encode_header(&required()))],
    )
        .into_response()
}

/// Finding 4: the signed payment follows a redirect to another origin
/// (reqwest keeps custom headers across hosts): the seller's paid answer
/// `307 Location: https://third-party/...` hands the buyer's unsettled,
/// still valid authorization to that third party.
#[tokio::test]
async fn the_payment_does_not_follow_a_redirect_to_another_origin() {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let third_party = {
        let seen = Arc::clone(&seen);
        serve(Router::new().route(
            "/landing",
            get(move |headers: HeaderMap| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push(
                        headers
                            .get(PAYMENT_SIGNATURE_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                    );
                    "landed"
                }
            }),
        ))
        .await
    };
    // Another origin: same host, other port; use "localhost" to differ by host too.
    let target = third_party.replace("127.0.0.1", "localhost") + "/landing";
    let seller = serve(Router::new().route(
        "/r",
        get(move |headers: HeaderMap| {
            let target = target.clone();
            async move {
                if headers.contains_key(PAYMENT_SIGNATURE_HEADER) {
                    (StatusCode::TEMPORARY_REDIRECT, [("location", target)]).into_response()
                } else {
                    challenge_response()
                }
            }
        }),
    ))
    .await;
    let (client, _) = payer();
    let http = reqwest::Client::new();
    let request = http.get(format!("{seller}/r")).build().expect("request");
    let response = client.send(&http, request).await.expect("response");
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].is_none(),
        "the third-party origin received the buyer's PAYMENT-SIGNATURE"
    );
}

/// Where the signed payment was seen, per path, by the test servers.
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

/// A route that records whether it received the payment.
fn recording(seen: &Seen, path: &'static str) -> axum::routing::MethodRouter {
    let seen = Arc::clone(seen);
    get(move |headers: HeaderMap| {
        let seen = Arc::clone(&seen);
        async move {
            let paid = headers.contains_key(PAYMENT_SIGNATURE_HEADER);
            seen.lock().unwrap().push((path.to_owned(), paid));
            if path == "/landing" || paid {
                (StatusCode::OK, format!("{path} served")).into_response()
            } else {
                challenge_response()
            }
        }
    })
}

/// A seller whose paid `/r` redirects (307, no receipt) to `to`; the URL
/// of its `/r`.
async fn redirecting_seller(seen: &Seen, to: String) -> String {
    let seen_r = Arc::clone(seen);
    let app = Router::new()
        .route(
            "/r",
            get(move |headers: HeaderMap| {
                let (seen, to) = (Arc::clone(&seen_r), to.clone());
                async move {
                    let paid = headers.contains_key(PAYMENT_SIGNATURE_HEADER);
                    seen.lock().unwrap().push(("/r".to_owned(), paid));
                    if paid {
                        (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response()
                    } else {
                        challenge_response()
                    }
                }
            }),
        )
        .route("/r2", recording(seen, "/r2"));
    serve(app).await + "/r"
}

/// Finding 4 through the reqwest middleware: the same redirect to another
/// origin is followed without the payment, whatever the inner client does.
#[tokio::test]
async fn the_middleware_does_not_carry_the_payment_to_another_origin() {
    let seen: Seen = Arc::default();
    let third_party = serve(Router::new().route("/landing", recording(&seen, "/landing"))).await;
    let target = third_party.replace("127.0.0.1", "localhost") + "/landing";
    let url = redirecting_seller(&seen, target).await;
    let (client, wallet) = payer();
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(paywire_client::X402Middleware::new(Arc::new(client)))
        .build();
    let response = http.get(&url).send().await.expect("response");
    assert_eq!(response.status(), 200);
    assert!(response.extensions().get::<PaymentOutcome>().is_some());
    assert_eq!(response.text().await.expect("body"), "/landing served");
    assert_eq!(
        seen.lock().unwrap().clone(),
        [
            ("/r".to_owned(), false),
            ("/r".to_owned(), true),
            ("/landing".to_owned(), false)
        ]
    );
    assert_eq!(wallet.0.load(Ordering::SeqCst), 1);
}

/// Finding 4, what still works: a redirect within the seller's origin that
/// did not take the payment (no receipt) carries it on.
#[tokio::test]
async fn a_redirect_within_the_origin_carries_the_payment_on() {
    let seen: Seen = Arc::default();
    let url = redirecting_seller(&seen, "/r2".to_owned()).await;
    let (client, _) = payer();
    let http = reqwest::Client::new();
    let response = client
        .send(&http, http.get(&url).build().expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "/r2 served");
    assert_eq!(
        seen.lock().unwrap().clone(),
        [
            ("/r".to_owned(), false),
            ("/r".to_owned(), true),
            ("/r2".to_owned(), true)
        ]
    );
}

/// Finding 4, what still works: an unpaid GET redirected to another origin
/// (`http://` to `https://`, a canonical host) is paid where its 402 came
/// from, so the payment never passes through the first origin's redirect.
#[tokio::test]
async fn a_redirected_request_is_paid_where_it_was_challenged() {
    let seen: Seen = Arc::default();
    let canonical = serve(Router::new().route("/r", recording(&seen, "/r"))).await;
    let moved_to = canonical.clone() + "/r";
    let seen_old = Arc::clone(&seen);
    let old = serve(Router::new().route(
        "/old",
        get(move |headers: HeaderMap| {
            let (seen, to) = (Arc::clone(&seen_old), moved_to.clone());
            async move {
                let paid = headers.contains_key(PAYMENT_SIGNATURE_HEADER);
                seen.lock().unwrap().push(("/old".to_owned(), paid));
                (StatusCode::MOVED_PERMANENTLY, [("location", to)])
            }
        }),
    ))
    .await
    .replace("127.0.0.1", "localhost");
    let (client, _) = payer();
    let http = reqwest::Client::new();
    let request = http.get(format!("{old}/old")).build().expect("request");
    let response = client.send(&http, request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        seen.lock().unwrap().clone(),
        [
            ("/old".to_owned(), false),
            ("/r".to_owned(), false),
            ("/r".to_owned(), true)
        ]
    );
}

/// Holds: a 402 with a new (dearer) challenge after paying, and 503s with
/// odd Retry-After values, never make the client sign a second payment; the
/// re-sends are bounded in number and in time.
#[tokio::test]
async fn odd_answers_after_paying_never_sign_twice() {
    for answer in [
        "402-new",
        "503-huge",
        "503-date",
        "503-negative",
        "503-zero",
    ] {
        let sends = Arc::new(AtomicUsize::new(0));
        let app = {
            let sends = Arc::clone(&sends);
            Router::new().route(
                "/r",
                get(move |headers: HeaderMap| {
                    let sends = Arc::clone(&sends);
                    async move {
                        if !headers.contains_key(PAYMENT_SIGNATURE_HEADER) {
                            return challenge_response();
                        }
                        sends.fetch_add(1, Ordering::SeqCst);
                        let retry_after = match answer {
                            "503-huge" => "999999999",
                            "503-date" => "Wed, 21 Oct 2099 07:28:00 GMT",
                            "503-negative" => "-5",
                            "503-zero" => "0",
                            _ => {
                                let mut dearer = required();
                                dearer.accepts[0].amount = 90_000u64.into();
                                return (
                                    StatusCode::PAYMENT_REQUIRED,
                                    [(PAYMENT_REQUIRED_HEADER, codec::encode_header(&dearer))],
                                )
                                    .into_response();
                            }
                        };
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", retry_after.to_owned())],
                        )
                            .into_response()
                    }
                }),
            )
        };
        let url = serve(app).await;
        let (client, wallet) = payer();
        let http = reqwest::Client::new();
        let started = Instant::now();
        let request = http.get(format!("{url}/r")).build().expect("request");
        let response = client.send(&http, request).await.expect("response");
        assert!(started.elapsed() < Duration::from_secs(5), "{answer}");
        assert_ne!(response.status(), 200, "{answer}");
        assert_eq!(wallet.0.load(Ordering::SeqCst), 1, "{answer}: signed once");
        assert!(
            sends.load(Ordering::SeqCst) <= 4,
            "{answer}: bounded re-sends"
        );
    }
}
