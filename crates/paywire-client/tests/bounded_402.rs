//! 402 answers are read with a size limit: an oversized body is refused
//! with a clear error before anything is signed (field lesson 31, issue 12
//! item 7). The server is a plain axum app: no chain is involved because
//! nothing may be signed.

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_primitives::Address;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use paywire_client::{ClientError, DEFAULT_MAX_402_BODY, X402Client};
use paywire_core::codec::{self, PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, JsonObject, PaymentRequired, PaymentRequirements,
    ResourceInfo, SchemeClient, SchemeError,
};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;

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

fn challenge(padding: usize) -> PaymentRequired {
    let mut extra = serde_json::Map::new();
    extra.insert("name".into(), "USD Coin".into());
    extra.insert("version".into(), "2".into());
    PaymentRequired {
        x402_version: 2,
        // The padding makes the document large while keeping it valid.
        error: Some("x".repeat(padding)),
        resource: ResourceInfo::new("https://api.example.test/r"),
        accepts: vec![PaymentRequirements {
            scheme: "exact".into(),
            network: ChainId::eip155(84532),
            amount: 10_000u64.into(),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            pay_to: Address::random().to_string(),
            max_timeout_seconds: 60,
            extra: Some(extra),
        }],
        extensions: None,
    }
}

fn json_402(padding: usize, streamed: bool) -> Response {
    let json = serde_json::to_vec(&challenge(padding)).expect("json");
    let body = if streamed {
        // Chunked, without a Content-Length: only counting stops it.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            json.chunks(4096).map(|c| Ok(c.to_vec())).collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    } else {
        Body::from(json)
    };
    (
        StatusCode::PAYMENT_REQUIRED,
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

/// Paid requests get 200; unpaid ones the 402 built by `unpaid`.
fn paywalled(unpaid: fn() -> Response) -> axum::routing::MethodRouter {
    get(move |headers: HeaderMap| async move {
        if headers.contains_key(PAYMENT_SIGNATURE_HEADER) {
            "paid".into_response()
        } else {
            unpaid()
        }
    })
}

async fn server() -> String {
    let app = Router::new()
        .route("/big", paywalled(|| json_402(100 * 1024, false)))
        .route("/big-stream", paywalled(|| json_402(100 * 1024, true)))
        .route("/small", paywalled(|| json_402(1024, false)))
        .route(
            "/header-and-big-body",
            paywalled(|| {
                let header = codec::encode_header(&challenge(0));
                (
                    StatusCode::PAYMENT_REQUIRED,
                    [(PAYMENT_REQUIRED_HEADER, header)],
                    "p".repeat(1024 * 1024),
                )
                    .into_response()
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

fn payer(max_402_body: Option<usize>) -> (X402Client, Arc<Counting>) {
    let wallet = Arc::new(Counting {
        wallet: ExactEvmClient::new(LocalSigner::random()),
        signed: AtomicUsize::new(0),
    });
    let mut builder = X402Client::builder().wallet(
        ChainIdPattern::parse("eip155:*").expect("pattern"),
        Arc::clone(&wallet) as Arc<dyn SchemeClient>,
    );
    if let Some(limit) = max_402_body {
        builder = builder.max_402_body(limit);
    }
    (builder.build(), wallet)
}

async fn get_with(client: &X402Client, url: &str) -> Result<reqwest::Response, ClientError> {
    let http = reqwest::Client::new();
    let request = http.get(url).build().expect("request");
    client.send(&http, request).await
}

#[tokio::test]
async fn an_oversized_402_body_is_refused_before_signing() {
    let url = server().await;
    for path in ["/big", "/big-stream"] {
        let (client, wallet) = payer(None);
        match get_with(&client, &format!("{url}{path}")).await {
            Err(error @ ClientError::PaymentRequiredTooLarge { limit }) => {
                assert_eq!(limit, DEFAULT_MAX_402_BODY);
                assert!(
                    error.to_string().contains("65536-byte limit"),
                    "{path}: {error}"
                );
            }
            other => panic!(
                "{path}: expected PaymentRequiredTooLarge, got {:?}",
                other.map(|r| r.status())
            ),
        }
        assert_eq!(
            wallet.signed.load(Ordering::SeqCst),
            0,
            "{path}: nothing signed"
        );
    }
}

#[tokio::test]
async fn the_limit_is_configurable_and_small_bodies_pay() {
    let url = server().await;
    let (client, wallet) = payer(None);
    let response = get_with(&client, &format!("{url}/small"))
        .await
        .expect("paid");
    assert_eq!(response.status(), 200);
    assert_eq!(wallet.signed.load(Ordering::SeqCst), 1);

    let (roomy, wallet) = payer(Some(200 * 1024));
    for path in ["/big", "/big-stream"] {
        let response = get_with(&roomy, &format!("{url}{path}"))
            .await
            .expect("paid");
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_eq!(wallet.signed.load(Ordering::SeqCst), 2);

    let (tight, wallet) = payer(Some(512));
    assert!(matches!(
        get_with(&tight, &format!("{url}/small")).await,
        Err(ClientError::PaymentRequiredTooLarge { limit: 512 })
    ));
    assert_eq!(wallet.signed.load(Ordering::SeqCst), 0);
}

/// With a `PAYMENT-REQUIRED` header the body (e.g. a paywall page) is not
/// read at all, whatever its size.
#[tokio::test]
async fn a_402_with_the_header_does_not_read_the_body() {
    let url = server().await;
    let (client, wallet) = payer(None);
    let response = get_with(&client, &format!("{url}/header-and-big-body"))
        .await
        .expect("paid");
    assert_eq!(response.status(), 200);
    assert_eq!(wallet.signed.load(Ordering::SeqCst), 1);
}
