//! CPU overhead of `PaymentService` around a trivial service, without
//! network: the 402 path (no payment header) and the paid path with a stub
//! facilitator that answers valid / success instantly (decode, match,
//! verify call, reservation, buffering, settle call, receipt header).
//!
//! Run: `cargo bench -p paywire-server --bench layer`.
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use paywire_evm::Eip155ChainId;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use axum::body::Body;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::BodyExt;
use paywire_core::codec::{decode_payment_required, encode_header};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, Facilitator, FacilitatorError, FacilitatorRequest,
    JsonObject, PaymentPayload, PaymentRequired, SettleResponse, SupportedResponse, VerifyResponse,
};
use paywire_evm::exact::ExactEvmServer;
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks};
use paywire_server::{PayTo, PaymentLayer, PaymentOption, Route, money};
use serde_json::{Value, json};

struct Instant;

impl Facilitator for Instant {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async {
            Ok(VerifyResponse::valid(
                "0x0000000000000000000000000000000000000001",
            ))
        })
    }

    fn settle<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async {
            Ok(SettleResponse {
                success: true,
                error_reason: None,
                error_message: None,
                payer: Some("0x0000000000000000000000000000000000000001".into()),
                transaction: "0xabc".into(),
                network: ChainId::eip155(31337),
                amount: None,
                extra: None,
                extensions: None,
            })
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

fn layer() -> PaymentLayer {
    let usdc = Address::repeat_byte(0x11);
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::new(
        31337,
        "Anvil",
        EvmAsset {
            address: usdc,
            symbol: "USDC".into(),
            decimals: 6,
            eip712_name: "USD Coin".into(),
            eip712_version: "2".into(),
            usd_stable: true,
            transfer_method: paywire_evm::TransferMethod::Eip3009,
            eip2612: false,
        },
    ));
    PaymentLayer::builder(Arc::new(Instant))
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin("https://api.example.test")
        .route(
            Route::new("GET /weather")
                .expect("route")
                .description("Current weather")
                .accept(PaymentOption::exact(
                    ChainId::eip155(31337),
                    money("$0.01").expect("price"),
                    PayTo::address(Address::repeat_byte(0x22).to_string()),
                )),
        )
        .build()
        .expect("layer")
}

fn request(payment: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("/weather").header("host", "api.example.test");
    if let Some(payment) = payment {
        builder = builder.header("PAYMENT-SIGNATURE", payment);
    }
    builder.body(Body::empty()).expect("request")
}

fn payment(required: &PaymentRequired) -> String {
    let mut authorization = JsonObject::new();
    authorization.insert("from".into(), json!(Address::random().to_string()));
    authorization.insert("to".into(), json!(Address::repeat_byte(0x22).to_string()));
    authorization.insert("value".into(), json!("10000"));
    authorization.insert("validAfter".into(), json!("0"));
    authorization.insert("validBefore".into(), json!("99999999999"));
    authorization.insert("nonce".into(), json!(B256::random().to_string()));
    let mut payload = JsonObject::new();
    payload.insert("authorization".into(), Value::Object(authorization));
    payload.insert("signature".into(), json!(format!("0x{}", "ab".repeat(65))));
    encode_header(&PaymentPayload {
        x402_version: 2,
        payload,
        extensions: None,
        resource: Some(required.resource.clone()),
        accepted: required.accepts[0].clone(),
    })
}

fn bench(c: &mut Criterion) {
    use tower::{Layer, ServiceExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let inner = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("sunny, 21 C")))
    });
    let service = layer().layer(inner);

    let challenge = runtime
        .block_on(service.clone().oneshot(request(None)))
        .expect("402");
    assert_eq!(challenge.status(), 402);
    let required = decode_payment_required(
        challenge
            .headers()
            .get("payment-required")
            .expect("header")
            .as_bytes(),
    )
    .expect("decode");

    c.bench_function("layer/402 (no payment)", |b| {
        b.iter(|| {
            let response = runtime
                .block_on(service.clone().oneshot(request(None)))
                .expect("response");
            black_box(response.status())
        });
    });

    // Baseline: the trivial service alone.
    c.bench_function("layer/baseline (inner service only)", |b| {
        b.iter(|| {
            let response = runtime
                .block_on(inner.oneshot(request(None)))
                .expect("response");
            black_box(response.status())
        });
    });

    c.bench_function("layer/paid (stub facilitator)", |b| {
        b.iter_batched(
            // A fresh payment each time (a payment is single use).
            || request(Some(&payment(&required))),
            |request| {
                let response = runtime
                    .block_on(async {
                        let response = service.clone().oneshot(request).await?;
                        let (parts, body) = response.into_parts();
                        let bytes = body.collect().await.expect("body").to_bytes();
                        Ok::<_, Infallible>((parts, bytes))
                    })
                    .expect("response");
                assert_eq!(response.0.status, 200);
                black_box(response)
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
