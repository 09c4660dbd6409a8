//! Middleware behaviour that does not need a chain: a stub facilitator
//! answers verify and settle exactly as each test needs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_primitives::{Address, B256};
use common::*;
use paywire_core::codec::{decode_payment_response, encode_header};
use paywire_core::{
    BoxFuture, Facilitator, FacilitatorError, FacilitatorRequest, JsonObject, PaymentPayload,
    PaymentRequired, SettleResponse, SupportedResponse, VerifyResponse,
};
use paywire_server::{PaymentHooks, RequestContext};
use serde_json::{Value, json};

/// Says every payment is valid; answers settle with a fixed JSON document.
struct Stub {
    settle: Value,
    settles: AtomicUsize,
}

impl Facilitator for Stub {
    fn verify<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async {
            Ok(VerifyResponse::valid(
                "0x0000000000000000000000000000000000000001",
            ))
        })
    }

    fn settle<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        // Exactly what a client of a remote facilitator would do with this body.
        let decoded = serde_json::from_value(self.settle.clone())
            .map_err(|e| FacilitatorError::Decode(e.to_string()));
        Box::pin(async move { decoded })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

struct Grant;

impl PaymentHooks for Grant {
    fn grant_access<'a>(&'a self, ctx: &'a RequestContext) -> BoxFuture<'a, bool> {
        let granted = ctx.header("x-session") == Some("valid");
        Box::pin(async move { granted })
    }
}

struct Env {
    url: String,
    counters: Arc<Counters>,
    stub: Arc<Stub>,
}

async fn env_with(settle: Value, knobs: Knobs) -> Env {
    let stub = Arc::new(Stub {
        settle,
        settles: AtomicUsize::new(0),
    });
    let counters = Arc::new(Counters::default());
    let usdc = Address::repeat_byte(0x11);
    let layer = layer(stub.clone(), usdc, Payees::random(), knobs);
    let url = serve(app(Arc::clone(&counters), layer)).await;
    Env {
        url,
        counters,
        stub,
    }
}

async fn env(settle: Value) -> Env {
    env_with(settle, Knobs::default()).await
}

fn ok_settle() -> Value {
    json!({"success": true, "transaction": "0xabc", "network": "eip155:31337"})
}

impl Env {
    async fn challenge(&self, method: reqwest::Method, path: &str) -> PaymentRequired {
        let response = client()
            .request(method, format!("{}{path}", self.url))
            .send()
            .await
            .expect("request");
        required_of(&response)
    }

    /// A payment the stub accepts: `accepted` echoes our requirement.
    async fn payment(&self, method: reqwest::Method, path: &str) -> String {
        let required = self.challenge(method, path).await;
        let mut authorization = JsonObject::new();
        authorization.insert("from".into(), json!(Address::random().to_string()));
        authorization.insert("nonce".into(), json!(B256::random().to_string()));
        let mut payload = JsonObject::new();
        payload.insert("authorization".into(), Value::Object(authorization));
        payload.insert("signature".into(), json!("0x00"));
        encode_header(&PaymentPayload {
            x402_version: 2,
            payload,
            extensions: None,
            resource: Some(required.resource.clone()),
            accepted: required.accepts[0].clone(),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        name: &str,
        value: &str,
    ) -> reqwest::Response {
        client()
            .request(method, format!("{}{path}", self.url))
            .header(name, value)
            .send()
            .await
            .expect("request")
    }
}

/// Lesson 1: anything but a literal `success: true` is a failed settlement.
#[tokio::test]
async fn non_true_success_never_serves_the_body() {
    for settle in [
        json!({"success": false, "transaction": "", "network": "eip155:31337"}),
        json!({"success": "true", "transaction": "0xabc", "network": "eip155:31337"}),
        json!({"success": 1, "transaction": "0xabc", "network": "eip155:31337"}),
        json!({"transaction": "0xabc", "network": "eip155:31337"}),
    ] {
        let env = env(settle.clone()).await;
        let payment = env.payment(reqwest::Method::GET, "/cheap").await;
        let response = env
            .send(
                reqwest::Method::GET,
                "/cheap",
                "PAYMENT-SIGNATURE",
                &payment,
            )
            .await;
        assert_eq!(response.status().as_u16(), 402, "{settle}");
        let receipt = decode_payment_response(
            header(&response, "payment-response")
                .expect("failure receipt")
                .as_bytes(),
        )
        .expect("receipt");
        assert!(!receipt.success);
        assert_eq!(header(&response, "cache-control"), Some("no-store"));
        let body = response.text().await.expect("body");
        assert!(!body.contains(CONTENT), "{settle}: body leaked");
        assert_eq!(env.stub.settles.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn settle_before_handler_skips_the_handler_when_settlement_fails() {
    let env = env(
        json!({"success": false, "errorReason": "insufficient_funds",
                         "transaction": "", "network": "eip155:31337"}),
    )
    .await;
    let payment = env.payment(reqwest::Method::POST, "/side-effect").await;
    let response = env
        .send(
            reqwest::Method::POST,
            "/side-effect",
            "PAYMENT-SIGNATURE",
            &payment,
        )
        .await;
    assert_eq!(response.status().as_u16(), 402);
    let required = required_of(&response);
    assert!(
        required
            .error
            .as_deref()
            .is_some_and(|e| e.contains("insufficient_funds"))
    );
    assert_eq!(
        Counters::get(&env.counters.side_effect),
        0,
        "handler never ran"
    );
}

#[tokio::test]
async fn pending_settlement_is_refused_by_default_and_served_when_configured() {
    let pending = json!({"success": false, "errorReason": "transaction_pending",
                         "transaction": "0xfeed", "network": "eip155:31337"});
    let env = env(pending).await;
    let payment = env.payment(reqwest::Method::GET, "/cheap").await;
    let response = env
        .send(
            reqwest::Method::GET,
            "/cheap",
            "PAYMENT-SIGNATURE",
            &payment,
        )
        .await;
    assert_eq!(response.status().as_u16(), 402);
    assert!(header(&response, "retry-after").is_some());
    let receipt = decode_payment_response(
        header(&response, "payment-response")
            .expect("pending receipt")
            .as_bytes(),
    )
    .expect("receipt");
    assert!(receipt.is_pending());
    assert!(!response.text().await.expect("body").contains(CONTENT));

    let payment = env.payment(reqwest::Method::GET, "/pending-ok").await;
    let response = env
        .send(
            reqwest::Method::GET,
            "/pending-ok",
            "PAYMENT-SIGNATURE",
            &payment,
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(header(&response, "payment-response").is_some());
    assert_eq!(response.text().await.expect("body"), "pending content");
}

#[tokio::test]
async fn malformed_payment_signature_is_a_400_with_reason() {
    let env = env(ok_settle()).await;
    let cases = [
        ("!!!not base64!!!".to_owned(), "invalid_base64"),
        // base64 of `{oops`.
        ("e29vcHM=".to_owned(), "invalid_json"),
        // Valid JSON, v2, but not a PaymentPayload.
        (encode_header(&json!({"x402Version": 2})), "invalid_json"),
        ("A".repeat(20_000), "header_too_large"),
        (
            encode_header(&json!({"x402Version": 1, "scheme": "exact", "payload": {}})),
            "invalid_x402_version",
        ),
    ];
    for (value, reason) in cases {
        let response = env
            .send(reqwest::Method::GET, "/cheap", "PAYMENT-SIGNATURE", &value)
            .await;
        assert_eq!(response.status().as_u16(), 400, "{reason}");
        assert_eq!(header(&response, "cache-control"), Some("no-store"));
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(body["error"], reason);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(Counters::get(&env.counters.cheap), 0);
    assert_eq!(env.stub.settles.load(Ordering::SeqCst), 0);
}

/// Lesson 25: a v1 client is told what to do.
#[tokio::test]
async fn v1_x_payment_gets_an_explanatory_402() {
    let env = env(ok_settle()).await;
    let response = env
        .send(
            reqwest::Method::GET,
            "/cheap",
            "X-PAYMENT",
            "eyJ4NDAyVmVyc2lvbiI6MX0=",
        )
        .await;
    let required = required_of(&response);
    let error = required.error.expect("error");
    assert!(error.contains("v1"), "{error}");
    assert!(error.contains("PAYMENT-SIGNATURE"), "{error}");
    // Lesson 26 on this path too.
    assert_eq!(
        header(&response, "access-control-expose-headers"),
        Some("PAYMENT-REQUIRED, PAYMENT-RESPONSE")
    );
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert_eq!(Counters::get(&env.counters.cheap), 0);
}

/// Lesson 6 on the paid path, with the stub.
#[tokio::test]
async fn paid_response_is_not_cacheable() {
    let env = env(ok_settle()).await;
    let payment = env.payment(reqwest::Method::GET, "/cheap").await;
    let response = env
        .send(
            reqwest::Method::GET,
            "/cheap",
            "PAYMENT-SIGNATURE",
            &payment,
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert_eq!(
        header(&response, "access-control-expose-headers"),
        Some("PAYMENT-REQUIRED, PAYMENT-RESPONSE")
    );
    assert_eq!(response.text().await.expect("body"), CONTENT);
}

#[tokio::test]
async fn grant_access_hook_lets_requests_through() {
    let env = env_with(
        ok_settle(),
        Knobs {
            hooks: Some(Arc::new(Grant)),
        },
    )
    .await;
    let response = env
        .send(reqwest::Method::GET, "/cheap", "x-session", "valid")
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.expect("body"), CONTENT);
    let response = env
        .send(reqwest::Method::GET, "/cheap", "x-session", "forged")
        .await;
    assert_eq!(response.status().as_u16(), 402);
    assert_eq!(env.stub.settles.load(Ordering::SeqCst), 0);
}

/// Aborts verification or settlement for requests carrying `x-abort`, and
/// replaces every refusal with a teapot when `x-recover` is present.
struct Guarded {
    recoveries: AtomicUsize,
}

impl PaymentHooks for Guarded {
    fn before_verify<'a>(
        &'a self,
        ctx: &'a RequestContext,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, paywire_server::HookVerdict> {
        let abort = ctx.header("x-abort") == Some("verify");
        Box::pin(async move {
            if abort {
                paywire_server::HookVerdict::Abort {
                    status: 403,
                    reason: "blocked_payer".into(),
                    message: "this payer is blocked".into(),
                }
            } else {
                paywire_server::HookVerdict::Continue
            }
        })
    }

    fn before_settle<'a>(
        &'a self,
        ctx: &'a RequestContext,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, paywire_server::HookVerdict> {
        let abort = ctx.header("x-abort") == Some("settle");
        Box::pin(async move {
            if abort {
                paywire_server::HookVerdict::Abort {
                    status: 402,
                    reason: "settlement_window_closed".into(),
                    message: "try again later".into(),
                }
            } else {
                paywire_server::HookVerdict::Continue
            }
        })
    }

    fn on_failure<'a>(
        &'a self,
        ctx: &'a RequestContext,
        _failure: &'a paywire_server::PaymentFailure,
    ) -> BoxFuture<'a, Option<paywire_server::gate::CustomRefusal>> {
        let recover = ctx.header("x-recover").is_some();
        if recover {
            self.recoveries.fetch_add(1, Ordering::SeqCst);
        }
        Box::pin(async move {
            recover.then(|| paywire_server::gate::CustomRefusal::new(418, "custom refusal"))
        })
    }
}

#[tokio::test]
async fn hooks_can_abort_verification_and_settlement_and_replace_refusals() {
    let hooks = Arc::new(Guarded {
        recoveries: AtomicUsize::new(0),
    });
    let env = env_with(
        ok_settle(),
        Knobs {
            hooks: Some(hooks.clone()),
        },
    )
    .await;
    let send = |payment: String, extra: (&'static str, &'static str)| {
        let url = format!("{}/cheap", env.url);
        async move {
            client()
                .get(url)
                .header("PAYMENT-SIGNATURE", payment)
                .header(extra.0, extra.1)
                .send()
                .await
                .expect("request")
        }
    };
    // Aborted before verification: 403 JSON, handler not run, nothing settled.
    let payment = env.payment(reqwest::Method::GET, "/cheap").await;
    let response = send(payment.clone(), ("x-abort", "verify")).await;
    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], json!("blocked_payer"));
    assert_eq!(Counters::get(&env.counters.cheap), 0);
    // Aborted before settlement: the handler ran, its body is withheld, a 402
    // explains, nothing is settled, and the payment can be used again.
    let response = send(payment.clone(), ("x-abort", "settle")).await;
    assert_eq!(response.status().as_u16(), 402);
    let required = required_of(&response);
    assert!(
        required
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("settlement_window_closed"))
    );
    assert_ne!(response.text().await.expect("body"), CONTENT);
    assert_eq!(env.stub.settles.load(Ordering::SeqCst), 0);
    let response = send(payment, ("x-unrelated", "1")).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "the reservation was released"
    );
    assert_eq!(env.stub.settles.load(Ordering::SeqCst), 1);
    // A refusal replaced by on_failure.
    let response = send("%%%".into(), ("x-recover", "1")).await;
    assert_eq!(response.status().as_u16(), 418);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("no-store")
    );
    assert_eq!(response.text().await.expect("body"), "custom refusal");
    assert_eq!(hooks.recoveries.load(Ordering::SeqCst), 1);
}
