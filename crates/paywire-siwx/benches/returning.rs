//! Server CPU time to let a returning wallet in through the paywire-server
//! `PaymentLayer` with `SiwxHooks` (memory store, session tokens on), next
//! to a full paid request through the same layer with a stub facilitator
//! that answers valid / success instantly. No network anywhere.
//!
//! - `siwx/402 with challenge`: a request without headers: the 402 with a
//!   fresh single-use nonce (the challenge issuance a signature costs);
//! - `siwx/returning by signature`: a `SIGN-IN-WITH-X` proof over a fresh
//!   challenge each iteration; the challenge issuance and the client's
//!   signing happen in the untimed setup, so this is parse + field checks +
//!   nonce consumption + EIP-191 recovery + entitlement check + session
//!   token issuance; add `402 with challenge` for the full server cost of a
//!   signature sign-in;
//! - `siwx/returning by session token`: the token header (HMAC, expiry,
//!   scope, revocation list, entitlement check);
//! - `siwx/paid (stub facilitator)`: a fresh payment each iteration (decode,
//!   match, verify call, settle call, receipt header, entitlement recorded).
//!
//! Run: `cargo bench -p paywire-siwx --bench returning`.
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
use paywire_core::codec::{SIGN_IN_WITH_X_HEADER, decode_payment_required, encode_header};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, Facilitator, FacilitatorError, FacilitatorRequest,
    JsonObject, PaymentPayload, PaymentRequired, SettleResponse, SupportedResponse, VerifyResponse,
};
use paywire_evm::exact::ExactEvmServer;
use paywire_evm::siwx::{EvmSiwxSigner, EvmVerifier};
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks, LocalSigner};
use paywire_server::{PayTo, PaymentLayer, PaymentOption, Route, money};
use paywire_siwx::{
    AccessPolicy, EntitlementStore, MemoryStore, SESSION_HEADER, SessionTokens, SiwxExtension,
    SiwxHooks, SiwxServer, SiwxServerConfig, SolanaVerifier, VerifierRegistry, sign_in,
};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

const PAYER: &str = "0x0000000000000000000000000000000000000001";

struct Instant;

impl Facilitator for Instant {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async { Ok(VerifyResponse::valid(PAYER)) })
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
                payer: Some(PAYER.into()),
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

const ORIGIN: &str = "https://api.example.test";
const HOST: &str = "api.example.test";
const ROUTE: &str = "GET /weather";

fn layer(store: Arc<MemoryStore>) -> PaymentLayer {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::new(
        31337,
        "Anvil",
        EvmAsset {
            address: Address::repeat_byte(0x11),
            symbol: "USDC".into(),
            decimals: 6,
            eip712_name: "USD Coin".into(),
            eip712_version: "2".into(),
            usd_stable: true,
            transfer_method: paywire_evm::TransferMethod::Eip3009,
            eip2612: false,
        },
    ));
    let siwx = SiwxServer::new(
        SiwxServerConfig::new(ORIGIN),
        VerifierRegistry::new()
            .with(Arc::new(EvmVerifier::new()))
            .with(Arc::new(SolanaVerifier)),
        store.clone(),
    )
    .expect("siwx server");
    let hooks = SiwxHooks::new(Arc::new(siwx), store)
        .route(ROUTE, AccessPolicy::PayOnce)
        .sessions(Arc::new(
            SessionTokens::new(&[42; 32], 3_600_000).expect("secret"),
        ));
    PaymentLayer::builder(Arc::new(Instant))
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin(ORIGIN)
        .hooks(Arc::new(hooks))
        .route(
            Route::new(ROUTE)
                .expect("route")
                .accept(PaymentOption::exact(
                    ChainId::eip155(31337),
                    money("$0.01").expect("price"),
                    PayTo::address(Address::repeat_byte(0x22).to_string()),
                )),
        )
        .build()
        .expect("layer")
}

fn request(headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get("/weather").header("host", HOST);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
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

fn required_of(response: &Response<Body>) -> PaymentRequired {
    assert_eq!(response.status(), 402);
    decode_payment_required(
        response
            .headers()
            .get("payment-required")
            .expect("header")
            .as_bytes(),
    )
    .expect("decode")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let inner = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("sunny, 21 C")))
    });
    let store = Arc::new(MemoryStore::new());
    let service = layer(store.clone()).layer(inner);
    let chain = ChainId::eip155(31337);

    // The returning wallet holds a pay-once entitlement.
    let wallet = LocalSigner::random();
    let signer = EvmSiwxSigner::new(wallet.clone());
    runtime
        .block_on(store.grant(&AccessPolicy::PayOnce.entitlement(
            &wallet.address().to_checksum(None),
            chain.as_str(),
            ROUTE,
            0,
        )))
        .expect("grant");

    let run = |request: Request<Body>| {
        runtime
            .block_on(async {
                let response = service.clone().oneshot(request).await?;
                let (parts, body) = response.into_parts();
                let bytes = body.collect().await.expect("body").to_bytes();
                Ok::<_, Infallible>((parts, bytes))
            })
            .expect("response")
    };
    let fresh_proof = || {
        let challenge = runtime
            .block_on(service.clone().oneshot(request(&[])))
            .expect("402");
        let required = required_of(&challenge);
        let extension = SiwxExtension::from_extensions(required.extensions.as_ref().expect("ext"))
            .expect("siwx challenge")
            .expect("valid challenge");
        runtime
            .block_on(sign_in(&extension, HOST, &chain, &signer))
            .expect("sign in")
            .to_header()
    };

    // A session token, from one signature sign-in.
    let (parts, _) = run(request(&[(SIGN_IN_WITH_X_HEADER, &fresh_proof())]));
    assert_eq!(parts.status, 200);
    let token = parts
        .headers
        .get(SESSION_HEADER)
        .expect("session token")
        .to_str()
        .expect("ascii")
        .to_owned();
    let required = required_of(
        &runtime
            .block_on(service.clone().oneshot(request(&[])))
            .expect("402"),
    );

    c.bench_function("siwx/402 with challenge", |b| {
        b.iter(|| black_box(run(request(&[]))));
    });

    c.bench_function("siwx/returning by signature", |b| {
        b.iter_batched(
            || request(&[(SIGN_IN_WITH_X_HEADER, &fresh_proof())]),
            |request| {
                let response = run(request);
                assert_eq!(response.0.status, 200);
                black_box(response)
            },
            BatchSize::SmallInput,
        );
    });

    c.bench_function("siwx/returning by session token", |b| {
        b.iter(|| {
            let response = run(request(&[(SESSION_HEADER, &token)]));
            assert_eq!(response.0.status, 200);
            black_box(response)
        });
    });

    c.bench_function("siwx/paid (stub facilitator)", |b| {
        b.iter_batched(
            || request(&[("PAYMENT-SIGNATURE", &payment(&required))]),
            |request| {
                let response = run(request);
                assert_eq!(response.0.status, 200);
                black_box(response)
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
