//! A resource server on loopback for bazaar tests: every request, whatever
//! its method and path, gets the 402 of one paid resource (a real HTTP
//! server, as the facilitator's confirmation fetch sees it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use paywire_core::{Extensions, PaymentRequired, PaymentRequirements, ResourceInfo, codec};
use serde_json::Value;

/// A running origin.
pub struct Origin {
    pub base: String,
    hits: Arc<AtomicUsize>,
}

impl Origin {
    /// Serves a 402 offering `offer`, declaring `declaration` (a bazaar
    /// extension value), and describing the resource as `description`.
    pub async fn start(
        offer: &PaymentRequirements,
        declaration: Value,
        description: &str,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut resource = ResourceInfo::new(format!("{base}/"));
        resource.description = Some(description.to_owned());
        resource.service_name = Some("Weather Co".into());
        resource.tags = Some(vec!["weather".into(), "Weather".into(), "forecast".into()]);
        resource.icon_url = Some("http://localhost/icon.png".into());
        let mut extensions = Extensions::new();
        extensions.0.insert("bazaar".into(), declaration);
        let required = PaymentRequired {
            x402_version: 2,
            error: Some("Payment required".into()),
            resource,
            accepts: vec![offer.clone()],
            extensions: Some(extensions),
        };
        let header = HeaderValue::from_str(&codec::encode_header(&required))?;
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let app = Router::new().fallback(move || {
            let (header, counted) = (header.clone(), Arc::clone(&counted));
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::PAYMENT_REQUIRED,
                    [(codec::PAYMENT_REQUIRED_HEADER, header)],
                    "{}",
                )
                    .into_response()
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base, hits })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The facilitator's `paywire_bazaar_declarations_total{outcome}` counter.
pub async fn bazaar_outcomes(
    http: &reqwest::Client,
    base: &str,
    outcome: &str,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let prefix = format!("paywire_bazaar_declarations_total{{outcome=\"{outcome}\"}} ");
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|n| n.trim().parse())
        .transpose()?
        .unwrap_or(0))
}

/// Waits (up to 10 s) until the facilitator has counted `count` bazaar
/// declarations with `outcome`: confirmation runs after `/settle` answers.
pub async fn wait_for_outcome(
    http: &reqwest::Client,
    base: &str,
    outcome: &str,
    count: u64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = bazaar_outcomes(http, base, outcome).await?;
        if seen >= count {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{outcome}: {seen} of {count} after 10 s").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
