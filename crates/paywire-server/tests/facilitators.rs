//! `HttpFacilitator` status/decoding mapping and `FacilitatorRouter`
//! routing and failover rules, against small stub HTTP facilitators.

mod common;

use paywire_evm::Eip155ChainId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use common::{dead_url, serve};
use paywire_core::{
    AtomicAmount, BoxFuture, ChainId, Facilitator, FacilitatorError, FacilitatorRequest,
    JsonObject, PaymentPayload, PaymentRequirements, SettleResponse, SupportedResponse,
    VerifyResponse,
};
use paywire_server::{FacilitatorRouter, HttpFacilitator, request_not_sent};
use serde_json::json;

#[derive(Default)]
struct Calls {
    verify: AtomicUsize,
    settle: AtomicUsize,
    supported: AtomicUsize,
    authorization: Mutex<Option<String>>,
}

struct Behaviour {
    network: &'static str,
    verify: (u16, &'static str),
    settle: (u16, &'static str),
}

const VALID: &str = r#"{"isValid": true, "payer": "0x1"}"#;
const SETTLED: &str = r#"{"success": true, "transaction": "0xabc", "network": "eip155:31337"}"#;

async fn stub(behaviour: Behaviour) -> (String, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let state = (Arc::new(behaviour), Arc::clone(&calls));
    type S = (Arc<Behaviour>, Arc<Calls>);
    fn answer((status, body): (u16, &'static str)) -> (StatusCode, &'static str) {
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
    }
    let router = Router::new()
        .route(
            "/verify",
            post(|State((b, c)): State<S>, headers: HeaderMap| async move {
                c.verify.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut slot) = c.authorization.lock() {
                    *slot = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                }
                answer(b.verify)
            }),
        )
        .route(
            "/settle",
            post(|State((b, c)): State<S>| async move {
                c.settle.fetch_add(1, Ordering::SeqCst);
                answer(b.settle)
            }),
        )
        .route(
            "/supported",
            get(|State((b, c)): State<S>| async move {
                c.supported.fetch_add(1, Ordering::SeqCst);
                json!({"kinds": [{"x402Version": 2, "scheme": "exact", "network": b.network}]})
                    .to_string()
            }),
        )
        .with_state(state);
    (serve(router).await, calls)
}

fn request() -> FacilitatorRequest {
    let requirements = PaymentRequirements {
        scheme: "exact".into(),
        network: ChainId::eip155(31337),
        amount: AtomicAmount::from(10_000u64),
        asset: "0x1111111111111111111111111111111111111111".into(),
        pay_to: "0x2222222222222222222222222222222222222222".into(),
        max_timeout_seconds: 60,
        extra: None,
    };
    let payload = PaymentPayload {
        x402_version: 2,
        payload: JsonObject::new(),
        extensions: None,
        resource: None,
        accepted: requirements.clone(),
    };
    FacilitatorRequest::new(payload, requirements)
}

/// `/supported` from one facilitator, verify and settle sent to another.
struct Split {
    supported: Arc<dyn Facilitator>,
    calls: Arc<dyn Facilitator>,
}

impl Facilitator for Split {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.calls.verify(request)
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.calls.settle(request)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        self.supported.supported()
    }
}

fn http(url: &str) -> Arc<dyn Facilitator> {
    Arc::new(HttpFacilitator::new(url).expect("client"))
}

#[tokio::test]
async fn http_facilitator_maps_statuses_and_bodies() {
    let (url, calls) = stub(Behaviour {
        network: "eip155:31337",
        verify: (200, VALID),
        settle: (200, "not json"),
    })
    .await;
    let facilitator = HttpFacilitator::builder(format!("{url}/"))
        .bearer_token("t0k")
        .build()
        .expect("client");
    let request = request();
    let verified = facilitator.verify(&request).await.expect("verify");
    assert!(verified.is_valid);
    assert_eq!(
        calls.authorization.lock().expect("lock").as_deref(),
        Some("Bearer t0k")
    );
    assert!(matches!(
        facilitator.settle(&request).await,
        Err(FacilitatorError::Decode(_))
    ));
    let supported = facilitator.supported().await.expect("supported");
    assert!(supported.kind("exact", &ChainId::eip155(31337)).is_some());

    let (url, _) = stub(Behaviour {
        network: "eip155:31337",
        verify: (400, "bad request"),
        settle: (503, "overloaded"),
    })
    .await;
    let facilitator = HttpFacilitator::new(url).expect("client");
    assert!(matches!(
        facilitator.verify(&request).await,
        Err(FacilitatorError::Http { status: 400, .. })
    ));
    match facilitator.settle(&request).await {
        Err(FacilitatorError::Http { status: 503, body }) => assert_eq!(body, "overloaded"),
        other => panic!("unexpected {other:?}"),
    }

    let dead = HttpFacilitator::new(dead_url().await).expect("client");
    let error = dead.settle(&request).await.expect_err("dead");
    assert!(request_not_sent(&error), "{error}");
}

#[tokio::test]
async fn router_fails_over_verify_but_never_a_possibly_sent_settle() {
    let (other_chain, other_calls) = stub(Behaviour {
        network: "eip155:1",
        verify: (200, VALID),
        settle: (200, SETTLED),
    })
    .await;
    let (broken, broken_calls) = stub(Behaviour {
        network: "eip155:31337",
        verify: (500, "down"),
        settle: (500, "down"),
    })
    .await;
    let (healthy, healthy_calls) = stub(Behaviour {
        network: "eip155:31337",
        verify: (200, VALID),
        settle: (200, SETTLED),
    })
    .await;
    let router = FacilitatorRouter::new(vec![http(&other_chain), http(&broken), http(&healthy)]);
    let request = request();

    assert!(router.verify(&request).await.expect("verify").is_valid);
    assert_eq!(other_calls.verify.load(Ordering::SeqCst), 0, "not listed");
    assert_eq!(broken_calls.verify.load(Ordering::SeqCst), 1);
    assert_eq!(healthy_calls.verify.load(Ordering::SeqCst), 1);

    // The broken facilitator received the settle: its error is surfaced.
    assert!(matches!(
        router.settle(&request).await,
        Err(FacilitatorError::Http { status: 500, .. })
    ));
    assert_eq!(broken_calls.settle.load(Ordering::SeqCst), 1);
    assert_eq!(healthy_calls.settle.load(Ordering::SeqCst), 0);

    // Connection refused: certainly not sent, so the next one settles.
    let (healthy, healthy_calls) = stub(Behaviour {
        network: "eip155:31337",
        verify: (200, VALID),
        settle: (200, SETTLED),
    })
    .await;
    // Lists the kind (so it is routed to) but refuses connections.
    let (listing, _) = stub(Behaviour {
        network: "eip155:31337",
        verify: (200, VALID),
        settle: (200, SETTLED),
    })
    .await;
    let dead: Arc<dyn Facilitator> = Arc::new(Split {
        supported: http(&listing),
        calls: http(&dead_url().await),
    });
    let router = FacilitatorRouter::new(vec![dead, http(&healthy)]);
    assert!(router.settle(&request).await.expect("settle").success);
    assert_eq!(healthy_calls.settle.load(Ordering::SeqCst), 1);

    // `/supported` is cached.
    assert!(router.verify(&request).await.expect("verify").is_valid);
    assert!(router.verify(&request).await.expect("verify").is_valid);
    assert_eq!(healthy_calls.supported.load(Ordering::SeqCst), 1);
    let merged = router.supported().await.expect("supported");
    assert_eq!(merged.kinds.len(), 1);
}

/// Lesson 13's defaults: the server waits for `/settle` longer than our
/// facilitator waits for a receipt, so a slow chain yields `pending` with the
/// transaction hash instead of a server-side timeout.
#[test]
fn server_timeout_exceeds_the_facilitators_receipt_wait() {
    let facilitator = paywire_facilitator::FacilitatorConfig::parse_with_env("", |_| None)
        .expect("an empty facilitator configuration takes every default");
    let receipt_wait = std::time::Duration::from_secs(facilitator.receipt_timeout_seconds);
    assert!(
        paywire_server::DEFAULT_FACILITATOR_TIMEOUT
            >= receipt_wait + std::time::Duration::from_secs(10),
        "{:?} is not comfortably above the receipt wait {receipt_wait:?}",
        paywire_server::DEFAULT_FACILITATOR_TIMEOUT
    );
}

/// Item 7: a facilitator's answer is read up to 1 MiB, never more; an
/// oversized success body is an undecodable answer, an oversized error body is
/// cut, and an error never carries the facilitator's URL (it may hold a key).
#[tokio::test]
async fn facilitator_answers_are_read_up_to_a_bound() {
    let huge: &'static str = Box::leak(
        format!(r#"{{"isValid": true, "payer": "{}"}}"#, "a".repeat(2 << 20)).into_boxed_str(),
    );
    let (url, _) = stub(Behaviour {
        network: "eip155:31337",
        verify: (200, huge),
        settle: (500, huge),
    })
    .await;
    let facilitator = HttpFacilitator::new(&url).expect("client");
    let request = request();
    match facilitator.verify(&request).await {
        Err(FacilitatorError::Decode(message)) => {
            assert!(message.contains("larger than"), "{message}");
        }
        other => panic!("expected an oversized answer error, got {other:?}"),
    }
    match facilitator.settle(&request).await {
        Err(FacilitatorError::Http { status: 500, body }) => assert!(body.len() <= 512),
        other => panic!("expected HTTP 500, got {other:?}"),
    }
    let dead = format!("{}/secret-key-path", dead_url().await);
    let error = HttpFacilitator::new(&dead)
        .expect("client")
        .settle(&request)
        .await
        .expect_err("nothing listens");
    assert!(request_not_sent(&error), "{error}");
    assert!(!error.to_string().contains("secret-key-path"), "{error}");
}

/// A facilitator whose `/supported` lists `sponsored` on one network with
/// its own `sponsor`, and that counts the verifications it is asked.
struct Sponsor {
    name: &'static str,
    verified: AtomicUsize,
}

impl Facilitator for Sponsor {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.verified.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(serde_json::from_str(VALID).expect("valid")) })
    }

    fn settle<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Transport("not here".into())) })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        let name = self.name;
        Box::pin(async move {
            Ok(
                serde_json::from_value(json!({"kinds": [{"x402Version": 2, "scheme": "sponsored",
                "network": "solana:x", "extra": {"sponsor": name}}]}))
                .expect("supported"),
            )
        })
    }
}

#[tokio::test]
async fn router_asks_the_facilitator_whose_supported_data_the_requirements_carry() {
    let first = Arc::new(Sponsor {
        name: "first",
        verified: AtomicUsize::new(0),
    });
    let second = Arc::new(Sponsor {
        name: "second",
        verified: AtomicUsize::new(0),
    });
    let router = FacilitatorRouter::new(vec![first.clone(), second.clone()]);
    let request_for = |sponsor: &str| {
        let mut request = request();
        request.payment_requirements.scheme = "sponsored".into();
        request.payment_requirements.network = ChainId::parse("solana:x").expect("network");
        let mut extra = JsonObject::new();
        extra.insert("sponsor".into(), json!(sponsor));
        request.payment_requirements.extra = Some(extra);
        request
    };
    router
        .verify(&request_for("second"))
        .await
        .expect("verified");
    assert_eq!(
        (
            first.verified.load(Ordering::SeqCst),
            second.verified.load(Ordering::SeqCst)
        ),
        (0, 1),
        "the payment names the second facilitator's sponsor"
    );
    // Data no facilitator published (a merchant's own sponsor): every
    // facilitator listing the kind remains a candidate, in order.
    router
        .verify(&request_for("merchant"))
        .await
        .expect("verified");
    assert_eq!(first.verified.load(Ordering::SeqCst), 1);
}
