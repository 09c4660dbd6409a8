//! Shared test fixtures: the plugins, facilitators, payment helpers.
#![allow(dead_code)]

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use paywire_core::codec::{decode_payment_required, encode_header};
use paywire_core::{
    BoxFuture, ChainId, Facilitator, FacilitatorError, FacilitatorRequest, LocalFacilitator,
    PaymentPayload, PaymentRequired, PaymentRequirements, PluginRegistry, SettleResponse,
    SupportedResponse, VerifyResponse,
};
use paywire_evm::EvmPlugin;
use paywire_evm::exact::{EvmChainConfig, ExactEvmClient, ExactEvmFacilitator};
use paywire_evm::rpc::RpcClient;
use paywire_evm::{EvmAsset, EvmNetwork, EvmSigner, LocalSigner};
use paywire_testkit::Devnet;

/// The plugins of the gateway under test (what `paywire gateway` registers).
pub fn plugins() -> PluginRegistry {
    PluginRegistry::new().with(Arc::new(EvmPlugin))
}

pub fn chain() -> ChainId {
    ChainId::eip155(31337)
}

pub fn anvil_network(usdc: Address) -> EvmNetwork {
    EvmNetwork::new(
        31337,
        "Anvil",
        EvmAsset {
            address: usdc,
            symbol: "USDC".into(),
            decimals: 6,
            eip712_name: "USD Coin".into(),
            eip712_version: "2".into(),
            usd_stable: true,
        },
    )
}

/// Serves `router` on 127.0.0.1:0; returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}")
}

/// A base URL where nothing listens.
pub async fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{address}")
}

/// Counts calls; forwards to an inner facilitator.
pub struct Counting {
    pub inner: Arc<dyn Facilitator>,
    pub verifies: AtomicUsize,
    pub settles: AtomicUsize,
}

impl Counting {
    pub fn new(inner: Arc<dyn Facilitator>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            verifies: AtomicUsize::new(0),
            settles: AtomicUsize::new(0),
        })
    }
}

impl Facilitator for Counting {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.verifies.fetch_add(1, Ordering::SeqCst);
        self.inner.verify(request)
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        self.inner.settle(request)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        self.inner.supported()
    }
}

/// An in-process facilitator with the EVM `exact` scheme on the devnet.
pub async fn local_facilitator(devnet: &Devnet) -> Arc<LocalFacilitator> {
    let rpc = Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).expect("rpc"),
    );
    let key = LocalSigner::random();
    devnet
        .set_eth_balance(key.address(), U256::from(10u128.pow(21)))
        .await
        .expect("fund signer");
    let keys: Vec<Arc<dyn EvmSigner>> = vec![Arc::new(key)];
    let chain = EvmChainConfig::new(anvil_network(devnet.usdc()), rpc, keys);
    let evm = ExactEvmFacilitator::builder()
        .chain(chain)
        .build()
        .expect("facilitator");
    let mut local = LocalFacilitator::new();
    local.register(Arc::new(evm));
    Arc::new(local)
}

/// An axum app exposing `facilitator` over HTTP; returns its base URL.
pub async fn serve_facilitator(facilitator: Arc<dyn Facilitator>) -> String {
    type F = Arc<dyn Facilitator>;
    fn fail(error: FacilitatorError) -> axum::response::Response {
        (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
    }
    let router = Router::new()
        .route(
            "/verify",
            post(
                |State(f): State<F>, Json(request): Json<FacilitatorRequest>| async move {
                    match f.verify(&request).await {
                        Ok(answer) => Json(answer).into_response(),
                        Err(error) => fail(error),
                    }
                },
            ),
        )
        .route(
            "/settle",
            post(
                |State(f): State<F>, Json(request): Json<FacilitatorRequest>| async move {
                    match f.settle(&request).await {
                        Ok(answer) => Json(answer).into_response(),
                        Err(error) => fail(error),
                    }
                },
            ),
        )
        .route(
            "/supported",
            get(|State(f): State<F>| async move {
                match f.supported().await {
                    Ok(answer) => Json(answer).into_response(),
                    Err(error) => fail(error),
                }
            }),
        )
        .with_state(facilitator);
    serve(router).await
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name)?.to_str().ok()
}

/// Asserts a 402 and decodes its `PAYMENT-REQUIRED` header.
pub fn required_of(response: &reqwest::Response) -> PaymentRequired {
    assert_eq!(response.status().as_u16(), 402);
    let header = header(response, "payment-required").expect("PAYMENT-REQUIRED header");
    decode_payment_required(header.as_bytes()).expect("decodable PAYMENT-REQUIRED")
}

/// Signs an `exact` payment for `requirement` from devnet payer #`payer`.
pub async fn sign(
    devnet: &Devnet,
    payer: usize,
    requirement: &PaymentRequirements,
    required: &PaymentRequired,
) -> PaymentPayload {
    let client = ExactEvmClient::new(LocalSigner::new(devnet.payer(payer).signer()));
    let exact = client.sign(requirement).await.expect("sign");
    PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: Some(required.resource.clone()),
        accepted: requirement.clone(),
    }
}

pub fn encode(payload: &PaymentPayload) -> String {
    encode_header(payload)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}
