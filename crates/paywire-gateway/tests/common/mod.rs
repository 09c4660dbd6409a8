//! Shared test fixtures: the plugins, facilitators, payment helpers.
#![allow(dead_code)]

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::Address;
use axum::Router;
use paywire_core::codec::{decode_payment_required, encode_header};
use paywire_core::{
    BoxFuture, ChainId, Facilitator, FacilitatorError, FacilitatorRequest, PaymentPayload,
    PaymentRequired, PaymentRequirements, PluginRegistry, SettleResponse, SupportedResponse,
    VerifyResponse,
};
use paywire_evm::EvmPlugin;
use paywire_evm::exact::ExactEvmClient;
use paywire_evm::{EvmAsset, EvmNetwork, LocalSigner};
use paywire_server::HttpFacilitator;
use paywire_testkit::{Devnet, Stack};

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
            transfer_method: paywire_evm::TransferMethod::Eip3009,
            eip2612: false,
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

/// A devnet with a funded facilitator signer and payers, and the paywire facilitator
/// service settling on it (the test kit's `Stack`).
pub async fn stack() -> Stack {
    Stack::start().await.expect("devnet and facilitator")
}

/// A client of `stack`'s facilitator service.
pub fn facilitator(stack: &Stack) -> Arc<dyn Facilitator> {
    Arc::new(HttpFacilitator::new(stack.facilitator_url()).expect("facilitator client"))
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
