//! Shared test fixtures: the priced axum app, facilitators, payment helpers.
#![allow(dead_code)]

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::Address;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use paywire_core::codec::{decode_payment_required, encode_header};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, Facilitator, FacilitatorError, FacilitatorRequest,
    PaymentPayload, PaymentRequired, PaymentRequirements, Price, SettleResponse, SupportedResponse,
    VerifyResponse,
};
use paywire_evm::exact::{ExactEvmClient, ExactEvmServer};
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks, LocalSigner};
use paywire_server::{
    HttpFacilitator, PayTo, PayToSpec, PaymentHooks, PaymentLayer, PaymentOption, PendingPolicy,
    PriceSpec, PricingError, RequestContext, Route, money,
};
use paywire_testkit::{Devnet, Stack};

pub const ORIGIN: &str = "https://api.example.test";
pub const CONTENT: &str = "cheap content";

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

/// How often each handler ran.
#[derive(Default, Debug)]
pub struct Counters {
    pub cheap: AtomicUsize,
    pub expensive: AtomicUsize,
    pub fail: AtomicUsize,
    pub dynamic: AtomicUsize,
    pub side_effect: AtomicUsize,
}

impl Counters {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// Recipients of the test app.
#[derive(Debug, Clone, Copy)]
pub struct Payees {
    pub merchant: Address,
    pub acme: Address,
    pub globex: Address,
}

impl Payees {
    pub fn random() -> Self {
        Self {
            merchant: Address::random(),
            acme: Address::random(),
            globex: Address::random(),
        }
    }
}

/// Configuration knobs of the test layer.
#[derive(Default)]
pub struct Knobs {
    pub hooks: Option<Arc<dyn PaymentHooks>>,
}

pub fn layer(
    facilitator: Arc<dyn Facilitator>,
    usdc: Address,
    payees: Payees,
    knobs: Knobs,
) -> PaymentLayer {
    let mut table = EvmNetworks::empty();
    table.insert(anvil_network(usdc));
    let merchant = PayTo::address(payees.merchant.to_string());
    let dynamic_price = PriceSpec::dynamic(|ctx: &RequestContext| {
        let len = ctx.body_len();
        async move {
            let text = if len <= 100 { "$0.01" } else { "$0.05" };
            money(text).map_err(|e| PricingError::Callback(e.to_string()))
        }
    });
    let tenant_pay_to = PayToSpec::dynamic(|ctx: &RequestContext| {
        let tenant = ctx.header("x-tenant").map(str::to_owned);
        async move {
            Ok(match tenant {
                Some(tenant) => PayTo::role(format!("tenant:{tenant}")),
                None => PayTo::role("merchant"),
            })
        }
    });
    let price = |text: &str| -> Price { money(text).expect("price") };
    let mut builder = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin(ORIGIN)
        .asset(&chain(), &usdc.to_string(), "USDC", 6)
        .pay_to_resolver(move |role: &str, _: &ChainId, _: &RequestContext| {
            let address = match role {
                "merchant" => Some(payees.merchant),
                "tenant:acme" => Some(payees.acme),
                "tenant:globex" => Some(payees.globex),
                _ => None,
            };
            let role = role.to_owned();
            async move {
                address
                    .map(|a| a.to_string())
                    .ok_or(PricingError::UnknownRole(role))
            }
        })
        .route(
            Route::new("GET /cheap")
                .expect("route")
                .description("Cheap <b>stuff</b> & more")
                .mime_type("text/plain")
                .accept(PaymentOption::exact(
                    chain(),
                    price("$0.01"),
                    merchant.clone(),
                )),
        )
        .route(
            Route::new("GET /expensive")
                .expect("route")
                .accept(PaymentOption::exact(
                    chain(),
                    price("$0.10"),
                    merchant.clone(),
                )),
        )
        .route(
            Route::new("GET /fail")
                .expect("route")
                .accept(PaymentOption::exact(
                    chain(),
                    price("$0.01"),
                    merchant.clone(),
                )),
        )
        .route(
            Route::new("POST /dynamic")
                .expect("route")
                .with_body(4096)
                .accept(PaymentOption::exact(chain(), dynamic_price, tenant_pay_to)),
        )
        .route(
            Route::new("POST /side-effect")
                .expect("route")
                .settle_before_handler()
                .accept(PaymentOption::exact(
                    chain(),
                    price("$0.01"),
                    merchant.clone(),
                )),
        )
        .route(
            Route::new("GET /pending-ok")
                .expect("route")
                .on_pending(PendingPolicy::Serve)
                .accept(PaymentOption::exact(chain(), price("$0.01"), merchant)),
        );
    if let Some(hooks) = knobs.hooks {
        builder = builder.hooks(hooks);
    }
    builder.build().expect("layer")
}

pub fn app(counters: Arc<Counters>, layer: PaymentLayer) -> Router {
    Router::new()
        .route(
            "/cheap",
            get(|State(c): State<Arc<Counters>>| async move {
                c.cheap.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                CONTENT
            }),
        )
        .route(
            "/expensive",
            get(|State(c): State<Arc<Counters>>| async move {
                c.expensive.fetch_add(1, Ordering::SeqCst);
                "expensive content"
            }),
        )
        .route(
            "/fail",
            get(|State(c): State<Arc<Counters>>| async move {
                c.fail.fetch_add(1, Ordering::SeqCst);
                (StatusCode::INTERNAL_SERVER_ERROR, "boom")
            }),
        )
        .route(
            "/dynamic",
            post(|State(c): State<Arc<Counters>>, body: Bytes| async move {
                c.dynamic.fetch_add(1, Ordering::SeqCst);
                format!("processed {} bytes", body.len())
            }),
        )
        .route(
            "/side-effect",
            post(|State(c): State<Arc<Counters>>| async move {
                c.side_effect.fetch_add(1, Ordering::SeqCst);
                "done"
            }),
        )
        .route("/pending-ok", get(|| async { "pending content" }))
        .route("/free", get(|| async { "free" }))
        .layer(layer)
        .with_state(counters)
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
