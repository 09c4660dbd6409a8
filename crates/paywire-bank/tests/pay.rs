//! The credit binding end to end: a real facilitator with the bank plugin
//! (the bundle authority, SQLite ledger), a paywire-server axum app with a
//! credit-priced route, and the paying client with a bundle credential.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use paywire_bank::client::{BundleCredential, CreditCatalog, CreditClient, RetryPolicy};
use paywire_bank::server::{CreditNetwork, CreditServer};
use paywire_bank::store::{self, AuthorityStore, Mandate, NewBundle, NewPurchase};
use paywire_bank::wire::{SCHEME, SettleExtra};
use paywire_bank::{BankPlugin, Currency};
use paywire_client::{
    Budget, BudgetRule, BudgetScope, ClientError, PaymentOutcome, PaymentStatus, X402Client,
};
use paywire_core::codec::{PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER};
use paywire_core::{
    ChainId, ChainIdPattern, Facilitator, PaymentRequired, PluginRegistry, ResourceInfo,
    SchemeClient, SchemeError, SchemeServer as _, SettleResponse,
};
use paywire_facilitator::FacilitatorConfig;
use paywire_server::{HttpFacilitator, PayTo, PaymentLayer, PaymentOption, Route, Usage, money};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

const NETWORK: &str = "acme:credit";
const API_KEY: &str = "shop-secret-api-key-0123456789";
const SECRET: &str = "dGVzdC1idW5kbGUtc2VjcmV0LTAxMjM0NTY3ODk";
const BUNDLE: &str = "bdl_0123456789abcdef01234567";
/// Credits granted to the bundle (EUR cents).
const CREDITS: u64 = 1_000;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, base)
}

/// A server that counts every request it receives (the origin a credential
/// must never reach).
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let (listener, base) = listener().await;
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let app = Router::new().fallback(any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { (axum::http::StatusCode::OK, "{}") }
    }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, seen)
}

struct Env {
    authority: String,
    shop: String,
    store: Arc<dyn AuthorityStore>,
    served: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

/// The authority's facilitator configuration: one EUR credit network, the
/// shop registered with its API key.
fn facilitator_config(
    dir: &std::path::Path,
    authority: &str,
    shop: &str,
    currency: Currency,
) -> String {
    let seed = URL_SAFE_NO_PAD.encode([7u8; 32]);
    format!(
        r#"
listen = "127.0.0.1:0"
store = "{ledger}"

[[api_keys]]
key = "{API_KEY}"
name = "shop"
endpoints = ["verify", "settle"]

[[chains]]
network = "{NETWORK}"
authority = "{authority}"
allow_insecure_origin = true
currency = "{currency}"
store = "{bank}"
signing_keys = [{{ kid = "k1", secret = "{seed}", active = true }}]
servers = [{{ origin = "{shop}", api_key = "shop", seller = "shop" }}]
"#,
        ledger = dir.join("ledger.sqlite").display(),
        bank = dir.join("bank.sqlite").display(),
    )
}

/// A bundle with [`CREDITS`] spendable euro cents, its credential [`SECRET`].
async fn fund_bundle(store: &dyn AuthorityStore, currency: Currency) {
    let at = now();
    store
        .create_bundle(NewBundle {
            id: BUNDLE.into(),
            currency,
            credential_digest: Sha256::digest(SECRET.as_bytes()).into(),
            expires_at: None,
            now: at,
        })
        .await
        .expect("bundle");
    let mandate_id = "mdt_000000000000000000000001";
    store
        .save_mandate(Mandate {
            id: mandate_id.into(),
            bundle_id: BUNDLE.into(),
            rail: "sepa".into(),
            details: r#"{"iban":"DE89370400440532013000","name":"Test Buyer","mandate_id":"M-1","signed_on":"2026-01-02"}"#.into(),
            off_session: false,
            created_at: at,
        })
        .await
        .expect("mandate");
    store
        .purchase(NewPurchase {
            id: "pur_000000000000000000000001".into(),
            bundle_id: BUNDLE.into(),
            mandate_id: mandate_id.into(),
            credits: CREDITS,
            price: CREDITS,
            currency,
            spendable_now: CREDITS,
            spendable_at: at,
            now: at,
        })
        .await
        .expect("purchase");
}

/// The shop: `GET /report` (at most €0.50, reports €0.35 of usage) and
/// `GET /full` (at most €0.20, reports nothing: charged in full).
fn shop_app(authority: &str, shop: &str, served: &Arc<AtomicUsize>, currency: Currency) -> Router {
    let network: ChainId = NETWORK.parse().expect("network");
    let mut credit =
        CreditNetwork::new(network.clone(), authority, currency).expect("credit network");
    credit.purchase_url = Some(format!("{authority}/purchase"));
    let facilitator: Arc<dyn Facilitator> = Arc::new(
        HttpFacilitator::builder(authority)
            .bearer_token(API_KEY)
            .build()
            .expect("facilitator client"),
    );
    let option = |price: &str| {
        PaymentOption::new(
            SCHEME,
            network.clone(),
            money(price).expect("price"),
            PayTo::address("merchant"),
        )
    };
    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::Exact(network.clone()),
            Arc::new(CreditServer::new(vec![credit])),
        )
        .public_origin(shop)
        .route(
            Route::new("GET /report")
                .expect("route")
                .accept(option("0.50")),
        )
        .route(
            Route::new("GET /full")
                .expect("route")
                .accept(option("0.20")),
        )
        .build()
        .expect("layer");
    let (report, full) = (Arc::clone(served), Arc::clone(served));
    Router::new()
        .route(
            "/report",
            get(move || {
                report.fetch_add(1, Ordering::SeqCst);
                async {
                    let mut response = "the report".into_response();
                    response.extensions_mut().insert(Usage::atomic(35u64));
                    response
                }
            }),
        )
        .route(
            "/full",
            get(move || {
                full.fetch_add(1, Ordering::SeqCst);
                async { "the full answer" }
            }),
        )
        .layer(layer)
}

async fn env() -> Env {
    env_in(Currency::Eur).await
}

async fn env_in(currency: Currency) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let (authority_listener, authority) = listener().await;
    let (shop_listener, shop) = listener().await;
    let text = facilitator_config(dir.path(), &authority, &shop, currency);
    let config = FacilitatorConfig::parse_with_env(&text, |_| None).expect("config");
    let plugins = PluginRegistry::new().with(Arc::new(BankPlugin));
    let state = paywire_facilitator::build(&config, &plugins)
        .await
        .expect("facilitator");
    tokio::spawn(async move {
        let _ = paywire_facilitator::serve(authority_listener, state, std::future::pending()).await;
    });
    let bank = dir.path().join("bank.sqlite");
    let store = store::open(&bank.display().to_string())
        .await
        .expect("bank store");
    fund_bundle(store.as_ref(), currency).await;
    let served = Arc::new(AtomicUsize::new(0));
    let app = shop_app(&authority, &shop, &served, currency);
    tokio::spawn(async move {
        let _ = axum::serve(shop_listener, app).await;
    });
    Env {
        authority,
        shop,
        store,
        served,
        _dir: dir,
    }
}

fn credential(authority: &str) -> BundleCredential {
    BundleCredential::new(BUNDLE, SECRET, authority).expect("credential")
}

fn client(credential: BundleCredential) -> X402Client {
    let wallet = CreditClient::new(credential).expect("credit client");
    X402Client::builder()
        .wallet(
            ChainIdPattern::parse("*:credit").expect("pattern"),
            Arc::new(wallet),
        )
        .catalog(Arc::new(CreditCatalog))
        .build()
}

/// The credit binding's `extra` of a receipt.
fn settle_extra(receipt: &SettleResponse) -> SettleExtra {
    let value = receipt
        .extra
        .clone()
        .map(serde_json::Value::Object)
        .expect("the receipt carries the credit extra");
    serde_json::from_value(value).expect("a SettleExtra")
}

async fn pay(client: &X402Client, url: &str) -> Result<reqwest::Response, ClientError> {
    let http = reqwest::Client::new();
    let request = http.get(url).build().expect("request");
    client.send(&http, request).await
}

#[tokio::test]
async fn the_402_lists_the_credit_offer() {
    let env = env().await;
    let response = reqwest::get(format!("{}/report", env.shop))
        .await
        .expect("unpaid request");
    assert_eq!(response.status(), 402);
    let header = response
        .headers()
        .get(PAYMENT_REQUIRED_HEADER)
        .expect("PAYMENT-REQUIRED")
        .as_bytes()
        .to_vec();
    let required: PaymentRequired =
        serde_json::from_slice(&STANDARD.decode(header).expect("base64")).expect("json");
    assert_eq!(required.resource.url, format!("{}/report", env.shop));
    let [offer] = required.accepts.as_slice() else {
        panic!("one offer: {:?}", required.accepts);
    };
    assert_eq!(offer.scheme, "batch-settlement");
    assert_eq!(offer.network.to_string(), NETWORK);
    assert_eq!(offer.asset, "EUR");
    assert_eq!(offer.amount.to_string(), "50");
    assert_eq!(offer.pay_to, "merchant");
    let extra = offer.extra.as_ref().expect("extra");
    assert_eq!(extra["version"], "1.0.0");
    assert_eq!(extra["authority"], env.authority.as_str());
    assert_eq!(extra["purchaseUrl"], format!("{}/purchase", env.authority));
}

#[tokio::test]
async fn paying_with_credits_works_end_to_end() {
    let env = env().await;
    let client = client(credential(&env.authority));
    let response = pay(&client, &format!("{}/report", env.shop))
        .await
        .expect("paid request");
    assert_eq!(response.status(), 200);
    let outcome = response
        .extensions()
        .get::<PaymentOutcome>()
        .cloned()
        .expect("outcome");
    assert_eq!(response.text().await.expect("body"), "the report");
    assert_eq!(outcome.status, PaymentStatus::Paid);
    let receipt = outcome.receipt.expect("receipt");
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.payer.as_deref(), Some(BUNDLE));
    assert_eq!(receipt.transaction, "");
    let extra = settle_extra(&receipt);
    assert!(!extra.commitment_id.is_empty());
    assert_eq!(extra.charged_amount, "35", "the usage the handler reported");
    assert_eq!(extra.bundle_state.bundle_id, BUNDLE);
    assert_eq!(extra.bundle_state.asset, "EUR");
    assert_eq!(extra.bundle_state.balance, (CREDITS - 35).to_string());

    // A handler reporting no usage is charged the whole price.
    let response = pay(&client, &format!("{}/full", env.shop))
        .await
        .expect("second paid request");
    assert_eq!(response.status(), 200);
    let outcome = response
        .extensions()
        .get::<PaymentOutcome>()
        .cloned()
        .expect("outcome");
    let second = settle_extra(&outcome.receipt.expect("receipt"));
    assert_eq!(second.charged_amount, "20");
    assert_ne!(second.commitment_id, extra.commitment_id, "one jti each");
    assert_eq!(second.bundle_state.balance, (CREDITS - 55).to_string());
    let bundle = env
        .store
        .bundle(BUNDLE)
        .await
        .expect("read")
        .expect("bundle");
    assert_eq!((bundle.balance, bundle.held), (CREDITS - 55, 0));
    assert_eq!(env.served.load(Ordering::SeqCst), 2);
}

/// A dollar budget does not take euro credits for dollars: the offer is
/// refused before the authority is asked, and nothing is held.
#[tokio::test]
async fn a_dollar_budget_refuses_euro_credits() {
    let env = env().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = BudgetRule {
        total: Some(1_000_000),
        ..BudgetRule::usd()
    };
    let budget = Budget::open(dir.path().join("budget.sqlite"), vec![rule])
        .await
        .expect("budget");
    let wallet = CreditClient::new(credential(&env.authority)).expect("credit client");
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("*:credit").expect("pattern"),
            Arc::new(wallet),
        )
        .catalog(Arc::new(CreditCatalog))
        .budget(Arc::new(budget))
        .build();
    let refused = pay(&client, &format!("{}/report", env.shop)).await;
    assert!(
        matches!(refused, Err(ClientError::NoAcceptableOption(ref why)) if why.contains("USD")),
        "{:?}",
        refused.map(|r| r.status())
    );
    let bundle = env
        .store
        .bundle(BUNDLE)
        .await
        .expect("read")
        .expect("bundle");
    assert_eq!((bundle.balance, bundle.held), (CREDITS, 0), "nothing held");
    assert_eq!(env.served.load(Ordering::SeqCst), 0);
}

/// USD credits count against a dollar budget as dollars at two decimals:
/// the authorized maximum ($0.50 = 500 000 micro-dollars) is
/// reserved, and stays counted after settlement although the receipt says
/// 35 cents were charged (the receipt is the server's claim).
#[tokio::test]
async fn a_dollar_budget_counts_usd_credits_at_their_maximum() {
    let env = env_in(Currency::Usd).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = BudgetRule {
        total: Some(1_000_000),
        ..BudgetRule::usd()
    };
    let budget = Arc::new(
        Budget::open(dir.path().join("budget.sqlite"), vec![rule])
            .await
            .expect("budget"),
    );
    let wallet = CreditClient::new(credential(&env.authority)).expect("credit client");
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("*:credit").expect("pattern"),
            Arc::new(wallet),
        )
        .catalog(Arc::new(CreditCatalog))
        .budget(Arc::clone(&budget))
        .build();
    let response = pay(&client, &format!("{}/report", env.shop))
        .await
        .expect("paid within the budget");
    assert_eq!(response.status(), 200);
    let receipt = response
        .extensions()
        .get::<PaymentOutcome>()
        .and_then(|o| o.receipt.clone())
        .expect("receipt");
    assert_eq!(settle_extra(&receipt).charged_amount, "35");
    let spent = budget.spent_total(&BudgetScope::Usd).await.expect("spent");
    let outstanding = budget
        .outstanding_total(&BudgetScope::Usd)
        .await
        .expect("outstanding");
    assert_eq!(spent + outstanding, 500_000, "the $0.50 maximum counts");
    // A second $0.50 call would still fit ($1.00 total), a third not.
    assert!(pay(&client, &format!("{}/report", env.shop)).await.is_ok());
    let refused = pay(&client, &format!("{}/report", env.shop)).await;
    assert!(
        matches!(refused, Err(ClientError::NoAcceptableOption(_))),
        "{:?}",
        refused.map(|r| r.status())
    );
    let bundle = env
        .store
        .bundle(BUNDLE)
        .await
        .expect("read")
        .expect("bundle");
    assert_eq!(
        bundle.balance,
        CREDITS - 70,
        "the authority charged the usage"
    );
}

/// A 402 naming another authority (and its purchase URL) never receives
/// the credential, and a credential of another authority is never sent to
/// the one the offer names.
#[tokio::test]
async fn a_credential_never_reaches_another_origin() {
    let env = env().await;
    let (rogue, rogue_seen) = counting_server().await;

    // The credential belongs to the rogue's origin; the offer names ours.
    let client_elsewhere = client(credential(&rogue));
    let refused = pay(&client_elsewhere, &format!("{}/report", env.shop)).await;
    assert!(
        matches!(refused, Err(ClientError::Signing(_))),
        "{:?}",
        refused.map(|r| r.status())
    );

    // The offer names the rogue as authority (and purchase URL); the
    // credential is our authority's.
    let network: ChainId = NETWORK.parse().expect("network");
    let mut phishing = CreditNetwork::new(network, &rogue, Currency::Eur).expect("network");
    phishing.purchase_url = Some(format!("{rogue}/purchase"));
    let requirements = CreditServer::new(vec![phishing])
        .requirements(&paywire_core::RequirementsRequest {
            network: &NETWORK.parse().expect("network"),
            price: &money("0.10").expect("price"),
            pay_to: "merchant",
            max_timeout_seconds: 60,
            facilitator_kind: None,
        })
        .expect("requirements");
    let ours = CreditClient::new(credential(&env.authority)).expect("client");
    let resource = ResourceInfo::new(format!("{rogue}/thing"));
    let error = ours
        .create_payment_for(&requirements, None, &resource)
        .await
        .expect_err("refused");
    assert!(matches!(error, SchemeError::Unsupported(_)), "{error}");
    assert_eq!(
        rogue_seen.load(Ordering::SeqCst),
        0,
        "the rogue saw nothing"
    );
    assert_eq!(env.served.load(Ordering::SeqCst), 0);
}

/// A rogue server relays the shop's 402 (whose resource names the shop):
/// the client binds its authorization to the origin it contacted, so the
/// payment it hands the rogue buys nothing at the shop.
#[tokio::test]
async fn a_relayed_402_buys_nothing_at_the_origin_it_names() {
    let env = env().await;
    let report = format!("{}/report", env.shop);
    let unpaid = reqwest::get(&report).await.expect("unpaid request");
    assert_eq!(unpaid.status(), 402);
    let offer = unpaid
        .headers()
        .get(PAYMENT_REQUIRED_HEADER)
        .expect("the 402 header")
        .clone();
    let (listener, rogue) = listener().await;
    let captured = Arc::new(std::sync::Mutex::new(None::<String>));
    let keep = Arc::clone(&captured);
    let app = Router::new().fallback(any(move |headers: axum::http::HeaderMap| {
        let keep = Arc::clone(&keep);
        let offer = offer.clone();
        async move {
            if let Some(payment) = headers.get(PAYMENT_SIGNATURE_HEADER) {
                let payment = payment.to_str().expect("ascii").to_owned();
                *keep.lock().expect("lock") = Some(payment);
                return (axum::http::StatusCode::OK, "thanks").into_response();
            }
            let mut answer = axum::http::StatusCode::PAYMENT_REQUIRED.into_response();
            answer.headers_mut().insert(PAYMENT_REQUIRED_HEADER, offer);
            answer
        }
    }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let client = client(credential(&env.authority));
    let _ = pay(&client, &format!("{rogue}/report")).await;
    let payment = captured
        .lock()
        .expect("lock")
        .clone()
        .expect("the client paid the rogue");
    let payload: serde_json::Value =
        serde_json::from_slice(&STANDARD.decode(&payment).expect("base64")).expect("JSON");
    let attestation = payload["payload"]["attestation"]
        .as_str()
        .expect("an attestation");
    let claims = attestation.split('.').nth(1).expect("claims");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64url"))
            .expect("JSON claims");
    assert_eq!(
        claims["aud"],
        rogue.as_str(),
        "bound to the contacted origin"
    );
    assert_eq!(claims["resource"], format!("{rogue}/report"));
    assert_eq!(
        payload["resource"]["url"],
        format!("{rogue}/report"),
        "the payload names what the attestation is for"
    );

    let replayed = reqwest::Client::new()
        .get(&report)
        .header(PAYMENT_SIGNATURE_HEADER, &payment)
        .send()
        .await
        .expect("replay");
    assert_ne!(replayed.status(), 200, "the shop refuses it");
    assert_eq!(env.served.load(Ordering::SeqCst), 0);
}

/// An authority that fails with 503 twice, then answers: the client retries
/// with one idempotency key; a 4xx is final and not retried.
#[tokio::test]
async fn authorize_retries_reuse_one_idempotency_key() {
    let (listener, base) = listener().await;
    let keys = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = Arc::clone(&keys);
    let origin = base.clone();
    let app = Router::new().route(
        "/authorize",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let recorded = Arc::clone(&recorded);
            let origin = origin.clone();
            async move {
                let mut keys = recorded.lock().expect("lock");
                keys.push(
                    body["idempotencyKey"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
                if body["amount"] == "999" {
                    let refusal =
                        serde_json::json!({"error": "insufficient_credits", "message": "no"});
                    return (
                        axum::http::StatusCode::PAYMENT_REQUIRED,
                        axum::Json(refusal),
                    );
                }
                if keys.len() < 3 {
                    return (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({})),
                    );
                }
                let claims = serde_json::json!({
                    "iss": origin, "sub": body["bundleId"], "aud": "http://127.0.0.1",
                    "exp": 1, "holdExp": 2, "iat": 0, "jti": "att_1",
                    "amount": body["amount"], "asset": body["asset"], "resource": body["resource"],
                });
                let jws = format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims.to_string()));
                (
                    axum::http::StatusCode::OK,
                    axum::Json(serde_json::json!({"attestation": jws})),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let retry = RetryPolicy {
        attempts: 3,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    };
    let client = CreditClient::with_retry(credential(&base), retry).expect("client");
    let requirements = |amount: u64| {
        let mut network =
            CreditNetwork::new(NETWORK.parse().expect("network"), &base, Currency::Usd)
                .expect("network");
        network.tiers.clear();
        CreditServer::new(vec![network])
            .requirements(&paywire_core::RequirementsRequest {
                network: &NETWORK.parse().expect("network"),
                price: &paywire_core::Price::Atomic {
                    amount: amount.into(),
                    asset: "USD".into(),
                    extra: None,
                },
                pay_to: "merchant",
                max_timeout_seconds: 60,
                facilitator_kind: None,
            })
            .expect("requirements")
    };
    let resource = ResourceInfo::new("http://127.0.0.1:1/r");
    let created = client
        .create_payment_for(&requirements(50), None, &resource)
        .await
        .expect("third attempt answers");
    assert_eq!(created.payload["type"], "consume");
    {
        let keys = keys.lock().expect("lock");
        assert_eq!(keys.len(), 3);
        assert!(
            keys.iter().all(|k| k == &keys[0]) && keys[0].len() >= 16,
            "{keys:?}"
        );
    }
    let error = client
        .create_payment_for(&requirements(999), None, &resource)
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("insufficient_credits"),
        "{error}"
    );
    let keys = keys.lock().expect("lock");
    assert_eq!(keys.len(), 4, "a 4xx is not retried");
    assert_ne!(keys[3], keys[0], "a new logical payment has a new key");
}

/// Credits are valued by their currency: USD credits are dollars at two
/// decimals, EUR credits are not dollars.
#[test]
fn credit_offers_are_valued_by_currency() {
    use paywire_core::AssetCatalog as _;
    let network: ChainId = NETWORK.parse().expect("network");
    let usd = CreditCatalog.asset_info(&network, "USD").expect("usd");
    assert!(usd.usd_stable);
    assert_eq!(usd.decimals, 2);
    assert!(
        !CreditCatalog
            .asset_info(&network, "EUR")
            .expect("eur")
            .usd_stable
    );
}
