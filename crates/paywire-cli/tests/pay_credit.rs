//! `paywire pay` with a bank-rail bundle credential: the real binary pays a
//! credit-priced route through a real facilitator running the bundle
//! authority, reading the credential from `PAYWIRE_BUNDLE_CREDENTIAL` and
//! never printing it; then `paywire bank payout` pays the shop.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use paywire_bank::server::{CreditNetwork, CreditServer};
use paywire_bank::store::{self, AuthorityStore, Mandate, NewBundle, NewPurchase};
use paywire_bank::{BankPlugin, Currency};
use paywire_core::{ChainId, ChainIdPattern, Facilitator, PluginRegistry};
use paywire_server::{HttpFacilitator, PayTo, PaymentLayer, PaymentOption, Route, money};
use tokio::net::TcpListener;

const NETWORK: &str = "acme:credit";
const API_KEY: &str = "shop-secret-api-key-0123456789";
const SECRET: &str = "Y2xpLWJ1bmRsZS1zZWNyZXQtMDEyMzQ1Njc4OQ";
const BUNDLE: &str = "bdl_00000000000000000000cafe";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn fund(store: &dyn AuthorityStore) {
    let at = now();
    store
        .create_bundle(NewBundle {
            id: BUNDLE.into(),
            currency: Currency::Eur,
            credential_digest: paywire_bank::endpoints::credential_digest(SECRET),
            expires_at: None,
            now: at,
        })
        .await
        .expect("bundle");
    let mandate = "mdt_0000000000000000000000aa";
    store
        .save_mandate(Mandate {
            id: mandate.into(),
            bundle_id: BUNDLE.into(),
            rail: "sepa".into(),
            details: "{}".into(),
            off_session: false,
            created_at: at,
        })
        .await
        .expect("mandate");
    store
        .purchase(NewPurchase {
            id: "pur_0000000000000000000000aa".into(),
            bundle_id: BUNDLE.into(),
            mandate_id: mandate.into(),
            credits: 500,
            price: 500,
            currency: Currency::Eur,
            spendable_now: 500,
            spendable_at: at,
            now: at,
        })
        .await
        .expect("purchase");
}

/// The authority (a facilitator with the bank plugin) and a shop selling
/// `GET /report` for at most €0.25; returns both base URLs, the ledger and
/// the facilitator configuration.
async fn start(dir: &std::path::Path) -> (String, String, Arc<dyn AuthorityStore>, String) {
    let authority_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let authority = format!("http://{}", authority_listener.local_addr().expect("addr"));
    let shop_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let shop = format!("http://{}", shop_listener.local_addr().expect("addr"));
    let bank = dir.join("bank.sqlite");
    let text = format!(
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
currency = "EUR"
store = "{bank}"
signing_keys = [{{ kid = "k1", secret = "{seed}", active = true }}]
servers = [{{ origin = "{shop}", api_key = "shop", seller = "shop" }}]
"#,
        ledger = dir.join("ledger.sqlite").display(),
        bank = bank.display(),
        seed = URL_SAFE_NO_PAD.encode([9u8; 32]),
    );
    let config =
        paywire_facilitator::FacilitatorConfig::parse_with_env(&text, |_| None).expect("config");
    let plugins = PluginRegistry::new().with(Arc::new(BankPlugin));
    let state = paywire_facilitator::build(&config, &plugins)
        .await
        .expect("facilitator");
    tokio::spawn(async move {
        let _ = paywire_facilitator::serve(authority_listener, state, std::future::pending()).await;
    });
    let store = store::open(&bank.display().to_string())
        .await
        .expect("store");
    fund(store.as_ref()).await;
    let network: ChainId = NETWORK.parse().expect("network");
    let credit = CreditNetwork::new(network.clone(), &authority, Currency::Eur).expect("credit");
    let facilitator: Arc<dyn Facilitator> = Arc::new(
        HttpFacilitator::builder(authority.clone())
            .bearer_token(API_KEY)
            .build()
            .expect("facilitator client"),
    );
    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::Exact(network.clone()),
            Arc::new(CreditServer::new(vec![credit])),
        )
        .public_origin(shop.clone())
        .route(
            Route::new("GET /report")
                .expect("route")
                .accept(PaymentOption::new(
                    "batch-settlement",
                    network,
                    money("0.25").expect("price"),
                    PayTo::address("merchant"),
                )),
        )
        .build()
        .expect("layer");
    let app = Router::new()
        .route("/report", get(|| async { "the credit report" }))
        .layer(layer);
    tokio::spawn(async move {
        let _ = axum::serve(shop_listener, app).await;
    });
    (authority, shop, store, text)
}

#[tokio::test]
async fn pay_spends_a_bundle_credential_from_the_environment_without_printing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (authority, shop, store, text) = start(dir.path()).await;
    let credential = format!("pwb1.{BUNDLE}.{SECRET}@{authority}");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(["pay", &format!("{shop}/report")])
        .env("PAYWIRE_BUNDLE_CREDENTIAL", &credential)
        .env_remove("PAYWIRE_PRIVATE_KEY")
        .env_remove("PAYWIRE_SOLANA_KEY")
        .env("RUST_LOG", "debug")
        .output()
        .await
        .expect("run paywire");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, "the credit report");
    assert!(stderr.contains("paid 25"), "{stderr}");
    for shown in [&stdout, &stderr] {
        assert!(!shown.contains(SECRET), "the credential leaked: {shown}");
    }
    let bundle = store.bundle(BUNDLE).await.expect("read").expect("bundle");
    assert_eq!((bundle.balance, bundle.held), (475, 0));

    // The payout run pays the shop its charge: a pain.001 in the outbox and
    // the totals per seller on stdout, in exact decimal money.
    let outbox = dir.path().join("outbox");
    std::fs::create_dir(&outbox).expect("outbox");
    let operations = dir.path().join("operations.toml");
    let payouts = format!(
        r#"
[chains.payouts]
fee_bps = 0
outbox = "{outbox}"
[chains.payouts.debtor.sepa]
name = "Paywire Credits GmbH"
iban = "NL91ABNA0417164300"
[[chains.payouts.sellers]]
name = "shop"
origin = "{shop}"
rail = "sepa"
[chains.payouts.sellers.sepa]
name = "Shop SARL"
iban = "FR1420041010050500013M02606"
"#,
        outbox = outbox.display()
    );
    std::fs::write(&operations, format!("{text}{payouts}")).expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(["bank", "payout", "--config"])
        .arg(&operations)
        .output()
        .await
        .expect("run paywire bank payout");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("seller shop: 1 charge(s), gross 0.25 EUR, fee 0.00 EUR, net 0.25 EUR"),
        "{stdout}"
    );
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .map(|entry| entry.expect("entry").path())
        .collect();
    let payment = files
        .iter()
        .find(|path| {
            std::fs::read_to_string(path).is_ok_and(|text| text.contains("pain.001.001.03"))
        })
        .expect("a pain.001 file");
    assert!(stdout.contains(&payment.display().to_string()), "{stdout}");
    for iban in ["FR1420041010050500013M02606", "NL91ABNA0417164300"] {
        assert!(
            !stdout.contains(iban) && !stderr.contains(iban),
            "{stdout}{stderr}"
        );
    }
    // Nothing left to pay.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(["bank", "payout", "--config"])
        .arg(&operations)
        .output()
        .await
        .expect("run paywire bank payout");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing to pay out"));

    // A malformed credential is refused without being quoted.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(["pay", &format!("{shop}/report")])
        .env(
            "PAYWIRE_BUNDLE_CREDENTIAL",
            format!("pwb1.{BUNDLE}.{SECRET}"),
        )
        .env_remove("PAYWIRE_PRIVATE_KEY")
        .env_remove("PAYWIRE_SOLANA_KEY")
        .output()
        .await
        .expect("run paywire");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bundle credential"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
}
