//! An API seller: an axum app with a fixed-price route, a route priced by the
//! size of its input with a per-tenant recipient, and a free route.
//!
//! ```sh
//! PAYWIRE_FACILITATOR_URL=http://127.0.0.1:4021 \
//! PAYWIRE_PAY_TO=0xYourAddress \
//! cargo run -p paywire-examples --example seller
//! ```

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use paywire_core::{ChainId, ChainIdPattern, Facilitator};
use paywire_evm::exact::ExactEvmServer;
use paywire_server::{
    HttpFacilitator, PayTo, PayToSpec, PaymentLayer, PaymentOption, PriceSpec, PricingError,
    RequestContext, Route, money,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let facilitator_url =
        std::env::var("PAYWIRE_FACILITATOR_URL").unwrap_or_else(|_| "http://127.0.0.1:4021".into());
    let pay_to = std::env::var("PAYWIRE_PAY_TO")?;
    let network = ChainId::parse("eip155:84532")?; // Base Sepolia

    // Any `Facilitator` works: a remote one over HTTP, an in-process
    // `LocalFacilitator`, or a `FacilitatorRouter` over several.
    let facilitator: Arc<dyn Facilitator> = Arc::new(HttpFacilitator::new(facilitator_url)?);

    // Price by input size: $0.01 up to 1 KiB, $0.05 above.
    let by_size = PriceSpec::dynamic(|ctx: &RequestContext| {
        let len = ctx.body_len();
        async move {
            money(if len <= 1024 { "$0.01" } else { "$0.05" })
                .map_err(|e| PricingError::Callback(e.to_string()))
        }
    });
    // The recipient is a role resolved per request (here: one address).
    let tenant = PayToSpec::dynamic(|ctx: &RequestContext| {
        let tenant = ctx.header("x-tenant").map(str::to_owned);
        async move {
            Ok(PayTo::role(format!(
                "tenant:{}",
                tenant.unwrap_or_default()
            )))
        }
    });
    let resolved = pay_to.clone();

    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::namespace("eip155")?,
            Arc::new(ExactEvmServer::default()),
        )
        .public_origin("https://api.example.com")
        .pay_to_resolver(move |_role: &str, _: &ChainId, _: &RequestContext| {
            let address = resolved.clone();
            async move { Ok(address) }
        })
        .route(
            Route::new("GET /report")?
                .description("Daily market report")
                .mime_type("application/json")
                .accept(PaymentOption::exact(
                    network.clone(),
                    money("$0.01")?,
                    PayTo::address(pay_to),
                )),
        )
        .route(
            Route::new("POST /summarise")?
                .with_body(64 * 1024)
                .accept(PaymentOption::exact(network, by_size, tenant)),
        )
        .build()?;

    let app = Router::new()
        .route("/report", get(|| async { r#"{"report":"..."}"# }))
        .route(
            "/summarise",
            post(|body: String| async move { format!("{} bytes summarised", body.len()) }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
