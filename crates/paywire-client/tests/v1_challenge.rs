//! Field lesson 25: a client that meets an x402 v1 server says so clearly
//! (`invalid_x402_version`) and signs nothing, whether the v1 challenge is a
//! genuine v1 body or a v2-shaped document labelled version 1. No chain is
//! involved because nothing may be signed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_primitives::Address;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use paywire_client::{ClientError, X402Client};
use paywire_core::codec::{PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER, V1_PAYMENT_HEADER};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, DecodeError, JsonObject, PaymentRequirements, SchemeClient,
    SchemeError,
};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use serde_json::json;

/// Base Sepolia USDC.
const ASSET: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

/// A wallet that counts its signatures.
struct Counting {
    wallet: ExactEvmClient<LocalSigner>,
    signed: AtomicUsize,
}

impl SchemeClient for Counting {
    fn scheme(&self) -> &str {
        self.wallet.scheme()
    }
    fn payer(&self, network: &ChainId) -> Option<String> {
        self.wallet.payer(network)
    }
    fn create_payload<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        self.wallet.create_payload(requirements)
    }
}

/// What the v1 TypeScript middleware answers: a JSON body, no header.
fn v1_body(pay_to: &str) -> serde_json::Value {
    json!({
        "x402Version": 1,
        "error": "X-PAYMENT header is required",
        "accepts": [{
            "scheme": "exact",
            "network": "base-sepolia",
            "maxAmountRequired": "10000",
            "resource": "https://api.example.test/r",
            "description": "",
            "mimeType": "application/json",
            "payTo": pay_to,
            "maxTimeoutSeconds": 60,
            "asset": ASSET,
            "extra": {"name": "USDC", "version": "2"}
        }]
    })
}

/// A complete v2 challenge except that it says version 1: payable if the
/// version were not checked.
fn v2_shaped_labelled_v1(pay_to: &str) -> serde_json::Value {
    json!({
        "x402Version": 1,
        "resource": {"url": "https://api.example.test/r"},
        "accepts": [{
            "scheme": "exact",
            "network": "eip155:84532",
            "amount": "10000",
            "asset": ASSET,
            "payTo": pay_to,
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"}
        }]
    })
}

/// Counts the requests that carried a payment header of either version.
async fn server(paid_attempts: Arc<AtomicUsize>) -> String {
    let pay_to = Address::random().to_string();
    let header = base64_json(&v2_shaped_labelled_v1(&pay_to));
    let body = v1_body(&pay_to).to_string();
    let counted = move |headers: &HeaderMap| {
        if headers.contains_key(PAYMENT_SIGNATURE_HEADER) || headers.contains_key(V1_PAYMENT_HEADER)
        {
            paid_attempts.fetch_add(1, Ordering::SeqCst);
        }
    };
    let (count_body, count_header) = (counted.clone(), counted);
    let app = Router::new()
        .route(
            "/v1-body",
            get(move |headers: HeaderMap| async move {
                count_body(&headers);
                (
                    StatusCode::PAYMENT_REQUIRED,
                    [("content-type", "application/json")],
                    body,
                )
                    .into_response()
            }),
        )
        .route(
            "/v1-header",
            get(move |headers: HeaderMap| async move {
                count_header(&headers);
                let response: Response = (
                    StatusCode::PAYMENT_REQUIRED,
                    [(PAYMENT_REQUIRED_HEADER, header)],
                    "",
                )
                    .into_response();
                response
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn base64_json(value: &serde_json::Value) -> String {
    paywire_core::codec::encode_header(value)
}

#[tokio::test]
async fn a_v1_challenge_is_named_and_nothing_is_signed() {
    let paid_attempts = Arc::new(AtomicUsize::new(0));
    let url = server(Arc::clone(&paid_attempts)).await;
    for path in ["/v1-body", "/v1-header"] {
        let wallet = Arc::new(Counting {
            wallet: ExactEvmClient::new(LocalSigner::random()),
            signed: AtomicUsize::new(0),
        });
        let client = X402Client::builder()
            .wallet(
                ChainIdPattern::parse("eip155:*").expect("pattern"),
                Arc::clone(&wallet) as Arc<dyn SchemeClient>,
            )
            .build();
        let http = reqwest::Client::new();
        let request = http.get(format!("{url}{path}")).build().expect("request");
        match client.send(&http, request).await {
            Err(ClientError::BadPaymentRequired(
                error @ DecodeError::UnsupportedVersion { found: Some(1) },
            )) => {
                assert_eq!(error.reason(), "invalid_x402_version");
                let text = error.to_string();
                assert!(text.contains("version 1"), "{path}: {text}");
            }
            other => panic!(
                "{path}: expected an invalid_x402_version error, got {:?}",
                other.map(|r| r.status())
            ),
        }
        assert_eq!(wallet.signed.load(Ordering::SeqCst), 0, "{path}: signed");
    }
    assert_eq!(
        paid_attempts.load(Ordering::SeqCst),
        0,
        "no payment header of either version was sent"
    );
}
