//! Usage-based routes through the gateway, without a chain: a toy plugin
//! with a usage-based scheme (`tab`), a scripted facilitator recording what
//! it is asked to settle, and an upstream that reports usage in a header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::Query;
use axum::response::IntoResponse;
use http::{Request, StatusCode};
use paywire_core::codec::{
    PAYMENT_SIGNATURE_HEADER, decode_payment_required, decode_payment_response, encode_header,
};
use paywire_core::scheme::RequirementsRequest;
use paywire_core::{
    AssetInfo, AtomicAmount, BoxFuture, ChainId, ChainIdPattern, ChainPlugin, Facilitator,
    FacilitatorError, FacilitatorRequest, JsonObject, NetworkClass, NetworkInfo, PaymentPayload,
    PaymentRequirements, PluginError, PluginRegistry, Price, Registration, SchemeError,
    SchemeServer, ServerAsset, ServerConfig, ServerParts, SettleResponse, SupportedResponse,
    VerifyResponse,
};
use paywire_gateway::{Gateway, GatewayConfig};
use serde_json::json;
use tower::ServiceExt;

/// Usage-based requirements in cents of `USD`.
struct Tab;

impl SchemeServer for Tab {
    fn scheme(&self) -> &'static str {
        "tab"
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let Price::Money(money) = request.price else {
            return Err(SchemeError::InvalidRequirements("money only".into()));
        };
        Ok(PaymentRequirements {
            scheme: "tab".into(),
            network: request.network.clone(),
            amount: money
                .to_atomic(2)
                .map_err(|e| SchemeError::InvalidRequirements(e.to_string()))?,
            asset: "USD".into(),
            pay_to: request.pay_to.into(),
            max_timeout_seconds: request.max_timeout_seconds,
            extra: None,
        })
    }

    fn usage_based(&self) -> bool {
        true
    }
}

struct LedgerPlugin;

impl ChainPlugin for LedgerPlugin {
    fn namespace(&self) -> &'static str {
        "ledger"
    }

    fn networks(&self) -> Vec<NetworkInfo> {
        vec![NetworkInfo::new(
            ChainId::parse("ledger:main").expect("CAIP-2"),
            "ledger",
            NetworkClass::Testnet,
        )]
    }

    fn server(&self, config: &ServerConfig) -> Result<ServerParts, PluginError> {
        let mut parts = ServerParts::default();
        for entry in &config.entries {
            parts.assets.push(ServerAsset::new(
                entry.network.clone(),
                "USD",
                AssetInfo {
                    symbol: "USD".into(),
                    decimals: 2,
                    usd_stable: true,
                },
            ));
        }
        let pattern = ChainIdPattern::namespace("ledger").map_err(PluginError::from)?;
        parts
            .schemes
            .push(Registration::new(pattern, Arc::new(Tab)));
        Ok(parts)
    }
}

/// Accepts every payment and records each settle's requested amount.
#[derive(Default)]
struct Recording(Mutex<Vec<String>>);

impl Recording {
    fn settled(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Facilitator for Recording {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async { Ok(VerifyResponse::valid("alice")) })
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        let amount = request.payment_requirements.amount;
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(amount.to_string());
        let mut answer = SettleResponse::settled(
            request.payment_requirements.network.clone(),
            "tab-1",
            Some("alice".into()),
        );
        answer.amount = Some(amount);
        Box::pin(async move { Ok(answer) })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

/// The upstream: answers with the usage headers its query asks for
/// (`?usage=…&tokens=…&status=…`); with `?reflect=1` it echoes the request's
/// `X-Paywire-Usage` (a debug endpoint a client could abuse).
async fn upstream() -> String {
    async fn answer(
        Query(query): Query<HashMap<String, String>>,
        request_headers: http::HeaderMap,
    ) -> axum::response::Response {
        let status = query
            .get("status")
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        let mut response = (status, "upstream body").into_response();
        for (key, header) in [("usage", "x-paywire-usage"), ("tokens", "x-tokens")] {
            if let Some(value) = query.get(key)
                && let Ok(value) = http::HeaderValue::from_str(value)
            {
                response.headers_mut().append(header, value);
            }
        }
        if query.contains_key("reflect")
            && let Some(value) = request_headers.get("x-paywire-usage")
        {
            response
                .headers_mut()
                .append("x-paywire-usage", value.clone());
        }
        response
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback(answer)).await;
    });
    format!("http://{address}")
}

fn config(upstream: &str, missing_usage: &str) -> GatewayConfig {
    let route = |path: &str, extra: &str| {
        format!(
            "[[routes]]\nmethod = \"GET\"\npath = \"{path}\"\n{extra}\
             missing_usage = \"{missing_usage}\"\n\
             [[routes.accepts]]\nscheme = \"tab\"\nnetwork = \"ledger\"\nprice = \"$1.25\"\n\
             pay_to = \"bob\"\n"
        )
    };
    let text = format!(
        "public_origin = \"https://shop.example.test\"\nupstream = \"{upstream}\"\n\
         usage_header = \"X-Paywire-Usage\"\n\
         [[facilitators]]\nurl = \"http://127.0.0.1:1\"\n\
         [[networks]]\nnetwork = \"ledger\"\n{}{}",
        route("/complete", ""),
        route("/custom", "usage_header = \"X-Tokens\"\n"),
    );
    GatewayConfig::parse_with_env(&text, |_| None).expect("config")
}

struct Shop {
    gateway: Gateway,
    facilitator: Arc<Recording>,
}

impl Shop {
    async fn new(missing_usage: &str) -> Self {
        let upstream = upstream().await;
        let facilitator = Arc::new(Recording::default());
        let plugins = PluginRegistry::new().with(Arc::new(LedgerPlugin));
        let gateway = Gateway::with_facilitator(
            &config(&upstream, missing_usage),
            &plugins,
            facilitator.clone(),
        )
        .expect("gateway");
        Self {
            gateway,
            facilitator,
        }
    }

    async fn get(&self, target: &str, paid: bool) -> http::Response<Body> {
        self.get_with(target, paid, &[]).await
    }

    /// [`Shop::get`] with extra request headers.
    async fn get_with(
        &self,
        target: &str,
        paid: bool,
        headers: &[(&str, &str)],
    ) -> http::Response<Body> {
        let mut request = Request::get(target);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if paid {
            let unpaid = self
                .gateway
                .router()
                .oneshot(Request::get(target).body(Body::empty()).expect("request"))
                .await
                .expect("answer");
            assert_eq!(unpaid.status(), 402, "{target}");
            let header = unpaid
                .headers()
                .get("payment-required")
                .expect("402 header");
            let required = decode_payment_required(header.as_bytes()).expect("decodable");
            let mut note = JsonObject::new();
            note.insert("target".into(), json!(target));
            let payload = PaymentPayload {
                x402_version: 2,
                resource: None,
                accepted: required.accepts[0].clone(),
                payload: note,
                extensions: None,
            };
            request = request.header(PAYMENT_SIGNATURE_HEADER, encode_header(&payload));
        }
        self.gateway
            .router()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("answer")
    }
}

fn charged(response: &http::Response<Body>) -> Option<AtomicAmount> {
    let header = response.headers().get("payment-response")?;
    decode_payment_response(header.as_bytes()).ok()?.amount
}

fn no_usage_header(response: &http::Response<Body>) {
    for name in ["x-paywire-usage", "x-tokens"] {
        assert!(
            !response.headers().contains_key(name),
            "{name} left the gateway: {:?}",
            response.headers()
        );
    }
}

#[tokio::test]
async fn the_upstream_usage_header_is_charged_and_never_forwarded() {
    let shop = Shop::new("charge_maximum").await;
    let paid = shop.get("/complete?usage=42", true).await;
    assert_eq!(paid.status(), 200);
    assert_eq!(charged(&paid), Some(AtomicAmount::from(42u64)));
    no_usage_header(&paid);

    // Dollars, converted with the asset's decimals.
    let paid = shop.get("/complete?usage=%240.07", true).await;
    assert_eq!(charged(&paid), Some(AtomicAmount::from(7u64)));
    no_usage_header(&paid);

    // A route's own header name; the global one is ignored there.
    let paid = shop.get("/custom?tokens=9&usage=50", true).await;
    assert_eq!(charged(&paid), Some(AtomicAmount::from(9u64)));
    no_usage_header(&paid);
    assert_eq!(shop.facilitator.settled(), ["42", "7", "9"]);

    // Free routes and error answers lose the header too.
    let free = shop.get("/free?usage=5&tokens=5", false).await;
    assert_eq!(free.status(), 200);
    no_usage_header(&free);
    let failed = shop.get("/complete?usage=5&status=500", true).await;
    assert_eq!(failed.status(), 500);
    assert_eq!(charged(&failed), None, "errors are never charged");
    no_usage_header(&failed);
    let free_error = shop.get("/free?usage=5&status=404", false).await;
    assert_eq!(free_error.status(), 404);
    no_usage_header(&free_error);
    assert_eq!(shop.facilitator.settled().len(), 3);
}

#[tokio::test]
async fn a_malformed_usage_header_falls_back_to_the_route_policy() {
    for value in ["-1", "1.5", "0x10", "01", "%241.001", "abc", "%24"] {
        let shop = Shop::new("charge_maximum").await;
        let paid = shop.get(&format!("/complete?usage={value}"), true).await;
        assert_eq!(paid.status(), 200, "{value}");
        assert_eq!(charged(&paid), Some(AtomicAmount::from(125u64)), "{value}");
        no_usage_header(&paid);
    }
    let shop = Shop::new("charge_nothing").await;
    let paid = shop.get("/complete", true).await;
    assert_eq!(charged(&paid), Some(AtomicAmount::ZERO));
    assert_eq!(shop.facilitator.settled(), ["0"]);

    let shop = Shop::new("refuse").await;
    let refused = shop.get("/complete?usage=nope", true).await;
    assert_eq!(refused.status(), 500);
    no_usage_header(&refused);
    assert!(shop.facilitator.settled().is_empty());
}

#[tokio::test]
async fn a_client_sent_usage_header_never_reaches_the_upstream() {
    let shop = Shop::new("charge_maximum").await;
    // The upstream would reflect it as its usage report; the gateway removed it from the
    // request, so the route's policy (the maximum) applies instead of the client's "0".
    let paid = shop
        .get_with("/complete?reflect=1", true, &[("x-paywire-usage", "0")])
        .await;
    assert_eq!(paid.status(), 200);
    assert_eq!(charged(&paid), Some(AtomicAmount::from(125u64)));
    no_usage_header(&paid);
    let custom = shop
        .get_with(
            "/complete?reflect=1&again=1",
            true,
            &[("x-tokens", "0"), ("x-paywire-usage", "1")],
        )
        .await;
    assert_eq!(charged(&custom), Some(AtomicAmount::from(125u64)));
}
