//! Usage-based routes as MCP tools, without a chain: a toy plugin with a
//! usage-based scheme (`tab`), a facilitator recording what it is asked to
//! settle, an upstream reporting usage in a header; the MCP server is
//! driven over an in-memory pipe (the stdio transport's code path).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::Query;
use axum::response::IntoResponse;
use http::StatusCode;
use paywire_core::scheme::RequirementsRequest;
use paywire_core::{
    AssetInfo, AtomicAmount, BoxFuture, ChainId, ChainIdPattern, ChainPlugin, Facilitator,
    FacilitatorError, FacilitatorRequest, NetworkClass, NetworkInfo, PaymentPayload,
    PaymentRequirements, PluginError, PluginRegistry, Price, Registration, SchemeError,
    SchemeServer, ServerAsset, ServerConfig, ServerParts, SettleResponse, SupportedResponse,
    VerifyResponse,
};
use paywire_gateway::GatewayConfig;
use paywire_gateway::mcp::McpGateway;
use paywire_mcp::wire;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, JsonObject, MetaObject, RequestMetaObject,
};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};

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

/// Answers with the usage headers its query asks for
/// (`?usage=…&tokens=…&status=…`).
async fn upstream() -> String {
    async fn answer(Query(query): Query<HashMap<String, String>>) -> axum::response::Response {
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
        response
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let app = axum::Router::new()
            .route("/big", axum::routing::get(|| async { "B".repeat(4096) }))
            .route(
                "/moved",
                axum::routing::get(|| async {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [("location", "https://cdn.example.test/file?sig=paid")],
                    )
                }),
            )
            .route(
                "/image",
                axum::routing::get(|| async {
                    (
                        [("content-type", "image/png")],
                        vec![0x89u8, b'P', b'N', b'G', 0xff],
                    )
                }),
            )
            .route(
                "/json",
                axum::routing::get(|| async { axum::Json(json!({"answer": 42})) }),
            )
            .fallback(answer);
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

fn config(upstream: &str) -> GatewayConfig {
    let route = |path: &str, extra: &str| {
        format!(
            "[[routes]]\nmethod = \"GET\"\npath = \"{path}\"\n{extra}\
             [[routes.accepts]]\nscheme = \"tab\"\nnetwork = \"ledger\"\nprice = \"$1.25\"\n\
             pay_to = \"bob\"\n"
        )
    };
    let text = format!(
        "public_origin = \"https://shop.example.test\"\nupstream = \"{upstream}\"\n\
         max_paid_response_bytes = 2048\n\
         [[facilitators]]\nurl = \"http://127.0.0.1:1\"\n\
         [[networks]]\nnetwork = \"ledger\"\n{}{}{}{}{}{}",
        route("/complete", ""),
        route("/custom", "usage_header = \"X-Tokens\"\n"),
        route("/big", ""),
        route("/moved", ""),
        route("/image", ""),
        route("/json", ""),
    );
    GatewayConfig::parse_with_env(&text, |_| None).expect("config")
}

struct Shop {
    client: RunningService<RoleClient, ()>,
    facilitator: Arc<Recording>,
    payments: AtomicU64,
}

impl Shop {
    async fn new() -> Self {
        let upstream = upstream().await;
        let facilitator = Arc::new(Recording::default());
        let plugins = PluginRegistry::new().with(Arc::new(LedgerPlugin));
        let gateway =
            McpGateway::with_facilitator(&config(&upstream), &plugins, facilitator.clone())
                .expect("MCP gateway");
        let (client_side, server_side) = tokio::io::duplex(64 * 1024);
        let (server_read, server_write) = tokio::io::split(server_side);
        tokio::spawn(gateway.server().serve_io(server_read, server_write));
        let (client_read, client_write) = tokio::io::split(client_side);
        let client = ().serve((client_read, client_write)).await.expect("MCP handshake");
        Self {
            client,
            facilitator,
            payments: AtomicU64::new(0),
        }
    }

    async fn call(
        &self,
        tool: &str,
        args: Value,
        payment: Option<&PaymentPayload>,
    ) -> CallToolResult {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = args.as_object().cloned();
        if let Some(payment) = payment {
            let mut meta = JsonObject::new();
            wire::attach_payment(&mut meta, payment);
            params.meta = Some(RequestMetaObject(MetaObject(meta)));
        }
        self.client.call_tool(params).await.expect("tools/call")
    }

    /// A paid call: the offer of an unpaid call, accepted (the toy
    /// facilitator takes any payload).
    async fn paid(&self, tool: &str, args: Value) -> CallToolResult {
        let unpaid = self.call(tool, args.clone(), None).await;
        let required = wire::payment_required_of(&unpaid)
            .expect("payment required")
            .expect("well formed");
        // Each payment is a new one (the gate refuses a payload twice).
        let mut note = paywire_core::JsonObject::new();
        note.insert("tool".into(), json!(tool));
        note.insert("args".into(), args.clone());
        note.insert(
            "nonce".into(),
            json!(self.payments.fetch_add(1, Ordering::SeqCst)),
        );
        let payment = PaymentPayload {
            x402_version: 2,
            resource: Some(required.resource.clone()),
            accepted: required.accepts[0].clone(),
            payload: note,
            extensions: None,
        };
        self.call(tool, args, Some(&payment)).await
    }
}

fn charged(result: &CallToolResult) -> Option<AtomicAmount> {
    wire::receipt_of(result)?.ok()?.amount
}

#[tokio::test]
async fn the_upstream_usage_header_is_what_a_tool_call_is_charged() {
    let shop = Shop::new().await;
    let paid = shop.paid("get_complete", json!({"usage": "42"})).await;
    assert_ne!(paid.is_error, Some(true), "{paid:?}");
    assert_eq!(charged(&paid), Some(AtomicAmount::from(42u64)));
    assert_eq!(
        paid.content[0].as_text().expect("text").text,
        "upstream body"
    );

    // A route's own header name; the global one is ignored there.
    let paid = shop
        .paid("get_custom", json!({"tokens": 9, "usage": 50}))
        .await;
    assert_eq!(charged(&paid), Some(AtomicAmount::from(9u64)));

    // Without a report: the route's policy (default: the maximum).
    let paid = shop.paid("get_complete", json!({})).await;
    assert_eq!(charged(&paid), Some(AtomicAmount::from(125u64)), "{paid:?}");
    assert_eq!(shop.facilitator.settled(), ["42", "9", "125"]);

    // An upstream error is a tool error, never charged.
    let failed = shop
        .paid("get_complete", json!({"usage": 5, "status": 500}))
        .await;
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(charged(&failed), None);
    assert_eq!(shop.facilitator.settled().len(), 3);
}

#[tokio::test]
async fn upstream_answers_become_tool_results() {
    let shop = Shop::new().await;
    // A JSON object: text and structuredContent.
    let json = shop.paid("get_json", json!({})).await;
    assert_eq!(
        json.structured_content,
        Some(json!({"answer": 42})),
        "{json:?}"
    );
    assert_eq!(
        json.content[0].as_text().expect("text").text,
        r#"{"answer":42}"#
    );
    // A redirect is sold like content: where it points.
    let moved = shop.paid("get_moved", json!({})).await;
    assert_ne!(moved.is_error, Some(true), "{moved:?}");
    assert_eq!(
        moved.content[0].as_text().expect("text").text,
        "https://cdn.example.test/file?sig=paid"
    );
    // An image: image content, base64.
    let image = shop.paid("get_image", json!({})).await;
    let content = image.content[0].as_image().expect("image content");
    assert_eq!(content.mime_type, "image/png");
    assert_eq!(content.data, "iVBOR/8=");
    assert_eq!(shop.facilitator.settled().len(), 3);
    // Over max_paid_response_bytes: a tool error, never charged.
    let big = shop.paid("get_big", json!({})).await;
    assert_eq!(big.is_error, Some(true), "{big:?}");
    assert_eq!(charged(&big), None);
    assert_eq!(shop.facilitator.settled().len(), 3);
}
