//! The demo's bank-rail row: a bundle authority (a facilitator with the bank
//! plugin), a buyer who buys euro credits with a SEPA direct-debit mandate,
//! two calls to a credit-priced route paid from the bundle, and the payout
//! run that writes the seller's `pain.001` and prints its totals.
//!
//! The buyer buys over HTTP from the authority's `/purchase`, which the
//! facilitator serves from the credit table's `funding` table; the payout
//! run is what `paywire bank payout` does with the `payouts` table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use paywire_bank::client::{BundleCredential, CreditCatalog, CreditClient};
use paywire_bank::funding;
use paywire_bank::outbox::Outbox;
use paywire_bank::payout::{self, PayoutConfig};
use paywire_bank::server::{CreditNetwork, CreditServer};
use paywire_bank::store::AuthorityStore;
use paywire_bank::{BankPlugin, Currency};
use paywire_client::{PaymentOutcome, PaymentStatus, X402Client};
use paywire_core::{ChainId, ChainIdPattern, Facilitator, PluginRegistry};
use paywire_server::{HttpFacilitator, PayTo, PaymentLayer, PaymentOption, Route, Usage, money};
use serde_json::json;

use super::{Row, Style};

const NETWORK: &str = "acme:credit";
/// The shop's API key at the authority (a throwaway for this run).
const SHOP_KEY_NAME: &str = "shop";

/// What the row needs after the stage is set.
pub(super) struct CreditStage {
    authority: String,
    shop: String,
    store: Arc<dyn AuthorityStore>,
    payouts: PayoutConfig,
}

/// 32 random bytes, base64url (an API key, a signing seed).
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(alloy_primitives::B256::random())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The credit table's `funding` and `payouts` tables.
fn operations_tables(
    dir: &Path,
    shop: &str,
) -> Result<(serde_json::Value, serde_json::Value), String> {
    let outbox = dir.join("bank-outbox");
    std::fs::create_dir_all(&outbox).map_err(|e| e.to_string())?;
    let funding = json!({
        "tiers": [{ "credits": 1000, "price": 1000 }],
        "rail": "sepa",
        "availability": { "mode": "immediate", "risk_limit": 1000 },
        "outbox": outbox,
        "sepa": {
            "name": "Acme Credits GmbH",
            "iban": "NL91ABNA0417164300",
            "bic": "ABNANL2A",
            "creditor_scheme_id": "DE98ZZZ09999999999"
        }
    });
    let payouts = json!({
        "fee_bps": 200,
        "outbox": outbox,
        "debtor": { "sepa": { "name": "Acme Credits GmbH", "iban": "NL91ABNA0417164300" } },
        "sellers": [{ "name": "shop", "origin": shop, "rail": "sepa",
                      "sepa": { "name": "Shop SARL", "iban": "FR1420041010050500013M02606" } }]
    });
    Ok((funding, payouts))
}

/// A JSON value as a TOML inline value (the demo's tables hold strings,
/// integers, booleans, arrays and objects only).
fn inline_toml(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{key} = {}", inline_toml(value)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline_toml).collect();
            format!("[{}]", items.join(", "))
        }
        // JSON string escapes are valid TOML basic-string escapes.
        other => other.to_string(),
    }
}

/// Starts the authority and the credit-priced shop.
pub(super) async fn start(dir: &Path) -> Result<CreditStage, String> {
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let (authority_listener, shop_listener) = (
        bind().await.map_err(|e| e.to_string())?,
        bind().await.map_err(|e| e.to_string())?,
    );
    let origin = |listener: &tokio::net::TcpListener| {
        listener
            .local_addr()
            .map(|a| format!("http://{a}"))
            .map_err(|e| e.to_string())
    };
    let (authority, shop) = (origin(&authority_listener)?, origin(&shop_listener)?);
    let api_key = random_token();
    let bank = dir.join("bank.sqlite");
    let (funding_table, payouts_table) = operations_tables(dir, &shop)?;
    let text = format!(
        r#"listen = "127.0.0.1:0"
store = "{ledger}"
[[api_keys]]
key = "{api_key}"
name = "{SHOP_KEY_NAME}"
endpoints = ["verify", "settle"]
[[chains]]
network = "{NETWORK}"
authority = "{authority}"
# The demo's authority is on loopback; a real one is https.
allow_insecure_origin = true
currency = "EUR"
store = "{bank}"
signing_keys = [{{ kid = "demo", secret = "{seed}", active = true }}]
servers = [{{ origin = "{shop}", api_key = "{SHOP_KEY_NAME}", seller = "shop" }}]
funding = {funding}
payouts = {payouts}
"#,
        ledger = dir.join("authority.sqlite").display(),
        bank = bank.display(),
        seed = random_token(),
        funding = inline_toml(&funding_table),
        payouts = inline_toml(&payouts_table),
    );
    let config = paywire_facilitator::FacilitatorConfig::parse_with_env(&text, |_| None)
        .map_err(|e| e.to_string())?;
    let plugins = PluginRegistry::new().with(Arc::new(BankPlugin));
    let state = paywire_facilitator::build(&config, &plugins)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = paywire_facilitator::serve(authority_listener, state, std::future::pending()).await;
    });
    let store = paywire_bank::store::open(&bank.display().to_string())
        .await
        .map_err(|e| e.to_string())?;
    let app = shop_app(&authority, &shop, &api_key)?;
    tokio::spawn(async move {
        let _ = axum::serve(shop_listener, app).await;
    });
    let payouts = serde_json::from_value(payouts_table).map_err(|e| format!("payouts: {e}"))?;
    Ok(CreditStage {
        authority,
        shop,
        store,
        payouts,
    })
}

/// `GET /report`: at most €0.50, the handler reports €0.35 of usage.
fn shop_app(authority: &str, shop: &str, api_key: &str) -> Result<Router, String> {
    let network: ChainId = NETWORK
        .parse()
        .map_err(|e: paywire_core::ChainIdError| e.to_string())?;
    let credit =
        CreditNetwork::new(network.clone(), authority, Currency::Eur).map_err(|e| e.to_string())?;
    let facilitator: Arc<dyn Facilitator> = Arc::new(
        HttpFacilitator::builder(authority)
            .bearer_token(api_key)
            .build()
            .map_err(|e| e.to_string())?,
    );
    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::Exact(network.clone()),
            Arc::new(CreditServer::new(vec![credit])),
        )
        .public_origin(shop)
        .route(
            Route::new("GET /report")
                .map_err(|e| e.to_string())?
                .accept(PaymentOption::new(
                    "batch-settlement",
                    network,
                    money("0.50").map_err(|e| e.to_string())?,
                    PayTo::address("merchant"),
                )),
        )
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Router::new()
        .route(
            "/report",
            get(|| async {
                let mut response = "a report".into_response();
                response.extensions_mut().insert(Usage::atomic(35u64));
                response
            }),
        )
        .layer(layer))
}

/// Buys a €10.00 bundle with a SEPA mandate at the authority's
/// `/purchase`; the credential it answers.
async fn buy(stage: &CreditStage) -> Result<BundleCredential, String> {
    let order = json!({ "tier": 0, "name": "Zoe Buyer", "iban": "DE89370400440532013000",
                        "accept": true, "offSession": false });
    let response = reqwest::Client::new()
        .post(format!("{}{}", stage.authority, funding::PURCHASE_PATH))
        .json(&order)
        .send()
        .await
        .map_err(|e| format!("purchase: {}", e.without_url()))?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("purchase: {}", e.without_url()))?;
    let credential = body
        .get("credential")
        .and_then(serde_json::Value::as_str)
        .filter(|_| status == 201)
        .ok_or_else(|| format!("purchase refused (HTTP {status})"))?;
    BundleCredential::parse(credential).map_err(|e| e.to_string())
}

/// The table row of one credit call.
fn row(style: &Style, label: &str, response: &reqwest::Response, latency_ms: f64) -> Option<Row> {
    let outcome = response.extensions().get::<PaymentOutcome>().cloned()?;
    let receipt = outcome.receipt.filter(|r| r.success)?;
    if outcome.status != PaymentStatus::Paid {
        return None;
    }
    let extra: paywire_bank::wire::SettleExtra = receipt
        .extra
        .clone()
        .map(serde_json::Value::Object)
        .and_then(|extra| serde_json::from_value(extra).ok())?;
    let charged = paywire_bank::money::parse_minor(&extra.charged_amount).ok()?;
    let balance = paywire_bank::money::parse_minor(&extra.bundle_state.balance).ok()?;
    let eur = |minor: u64| format!("{} EUR", Currency::Eur.format(minor));
    style.ok(&format!(
        "{label}: HTTP {}, paid {} (authorized at most {}), bundle balance {}",
        response.status(),
        eur(charged),
        eur(50),
        eur(balance)
    ));
    Some(Row {
        request: label.to_owned(),
        network: NETWORK.to_owned(),
        price: eur(charged),
        how: "paid".into(),
        tx: extra.commitment_id,
        latency_ms,
    })
}

/// Buys a bundle, pays two calls from it, runs the payout; the rows of the
/// two calls, or why a step failed.
pub(super) async fn run(style: &Style, stage: &CreditStage) -> Result<Vec<Row>, String> {
    let credential = buy(stage).await?;
    style.ok(&format!(
        "bought €10.00 of credits with a SEPA mandate: bundle {}",
        credential.bundle_id()
    ));
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::reference(paywire_bank::wire::CREDIT_REFERENCE)
                .map_err(|e| e.to_string())?,
            Arc::new(CreditClient::new(credential).map_err(|e| e.to_string())?),
        )
        .catalog(Arc::new(CreditCatalog))
        .build();
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    for call in ["GET /report (credits)", "GET /report (credits, again)"] {
        let request = http
            .get(format!("{}/report", stage.shop))
            .build()
            .map_err(|e| e.to_string())?;
        let began = Instant::now();
        let response = client
            .send(&http, request)
            .await
            .map_err(|e| format!("{call}: {e}"))?;
        let latency_ms = began.elapsed().as_secs_f64() * 1000.0;
        rows.push(row(style, call, &response, latency_ms).ok_or(format!("{call}: not paid"))?);
    }
    let outbox = Outbox::new(&stage.payouts.outbox).map_err(|e| e.to_string())?;
    let report = payout::run_payout(stage.store.as_ref(), &stage.payouts, &outbox, now())
        .await
        .map_err(|e| format!("payout: {e}"))?;
    let lines = crate::bank::payout_lines(&report);
    let paid_seventy = report
        .sellers
        .iter()
        .any(|s| s.name == "shop" && s.gross == 70 && s.jtis.len() == 2);
    if !paid_seventy || report.files.is_empty() {
        return Err(format!("payout: unexpected report {lines:?}"));
    }
    for line in lines {
        style.ok(&line);
    }
    for file in &report.files {
        style.ok(&format!("pain.001 written: {}", file.path.display()));
    }
    Ok(rows)
}
