//! Funding, payouts and returns end to end on a real SQLite ledger and a
//! real outbox directory: the purchase endpoints through
//! `PluginEndpoint::handle`, collection files, payout files and
//! statements, returned debits.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use paywire_bank::files::FileError;
use paywire_bank::funding::{self, FundingConfig, FundingContext, WrittenFile};
use paywire_bank::money::Currency;
use paywire_bank::outbox::Outbox;
use paywire_bank::payout::{self, PayoutConfig};
use paywire_bank::returns;
use paywire_bank::store::sqlite::SqliteAuthorityStore;
use paywire_bank::store::{
    AuthorityStore, AuthorizeOutcome, BundleStatus, NewHold, SettleCharge, SettleOutcome,
};
use paywire_core::{ChainId, PluginEndpoint, PluginRequest, PluginResponse};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const AUTHORITY: &str = "https://credits.example";
const BUYER_IBAN: &str = "DE89 3704 0044 0532 0130 00";
const SHOP: &str = "https://shop.example";
const NEWS: &str = "https://news.example";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sepa_funding(outbox: &Path) -> FundingConfig {
    serde_json::from_value(json!({
        "tiers": [{ "credits": 1000, "price": 1000 }, { "credits": 11000, "price": 10000 }],
        "rail": "sepa",
        "availability": { "mode": "immediate", "risk_limit": 500 },
        "collection_days_ahead": 2,
        "outbox": outbox,
        "sepa": {
            "name": "Paywire Credits GmbH",
            "iban": "NL91 ABNA 0417 1643 00",
            "bic": "ABNANL2A",
            "creditor_scheme_id": "DE98ZZZ09999999999"
        },
        "top_up": { "allowed": true, "max_per_day": 2000 }
    }))
    .unwrap()
}

fn ach_funding(outbox: &Path) -> FundingConfig {
    serde_json::from_value(json!({
        "tiers": [{ "credits": 2500, "price": 2500 }],
        "rail": "ach",
        "availability": { "mode": "after_collection", "days": 3 },
        "outbox": outbox,
        "ach": {
            "company_name": "PAYWIRE CREDITS",
            "company_id": "1234567890",
            "odfi_routing": "021000021",
            "immediate_destination": "011000015",
            "destination_name": "FEDERAL RESERVE BANK",
            "origin_name": "PAYWIRE CREDITS"
        }
    }))
    .unwrap()
}

fn payouts(outbox: &Path, fee_bps: u32) -> PayoutConfig {
    serde_json::from_value(json!({
        "fee_bps": fee_bps,
        "cycle": "weekly",
        "outbox": outbox,
        "debtor": { "sepa": { "name": "Paywire Credits GmbH", "iban": "NL91ABNA0417164300" } },
        "sellers": [
            { "name": "shop", "origin": SHOP, "rail": "sepa",
              "sepa": { "name": "Shop SARL", "iban": "FR14 2004 1010 0505 0001 3M02 606" } },
            { "name": "news", "origin": NEWS, "rail": "sepa",
              "sepa": { "name": "News BV", "iban": "BE68 5390 0754 7034", "bic": "GKCCBEBB" } }
        ]
    }))
    .unwrap()
}

/// A ledger in an SQLite file (so tests can count rows independently).
struct Ledger {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<dyn AuthorityStore>,
}

async fn ledger() -> Ledger {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let store = Arc::new(SqliteAuthorityStore::open(&path).await.unwrap());
    Ledger {
        _dir: dir,
        path,
        store,
    }
}

impl Ledger {
    /// Rows of the ledger's bundles, mandates and purchases, read with a
    /// connection of our own.
    fn counts(&self) -> (i64, i64, i64) {
        let db = paywire_store::rusqlite::Connection::open(&self.path).unwrap();
        let count = |table: &str| -> i64 {
            db.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
        };
        (
            count("bank_bundles"),
            count("bank_mandates"),
            count("bank_purchases"),
        )
    }
}

fn context(store: &Arc<dyn AuthorityStore>, config: FundingConfig) -> FundingContext {
    FundingContext {
        store: Arc::clone(store),
        config: Arc::new(config),
        authority: AUTHORITY.to_owned(),
        network: ChainId::parse("acme:credit").unwrap(),
    }
}

fn endpoints(ctx: FundingContext) -> (Arc<dyn PluginEndpoint>, Arc<dyn PluginEndpoint>) {
    let mut all = funding::purchase_endpoints(ctx);
    let top_up = all.pop().unwrap();
    (all.pop().unwrap(), top_up)
}

fn json_post(path: &str, body: &Value) -> PluginRequest {
    PluginRequest::new("POST", path)
        .with_header("content-type", "application/json")
        .with_body(body.to_string())
}

fn form_post(path: &str, body: &str) -> PluginRequest {
    PluginRequest::new("POST", path)
        .with_header("content-type", "application/x-www-form-urlencoded")
        .with_body(body.to_owned())
}

fn body_json(response: &PluginResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

fn header<'a>(response: &'a PluginResponse, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn sepa_order(tier: u32) -> Value {
    json!({ "tier": tier, "name": "Zoë Müller", "iban": BUYER_IBAN, "bic": "COBADEFFXXX",
            "accept": true, "offSession": true })
}

/// Buys `tier` by SEPA and answers the JSON receipt.
async fn buy(purchase: &Arc<dyn PluginEndpoint>, tier: u32) -> Value {
    let response = purchase
        .handle(json_post("/purchase", &sepa_order(tier)))
        .await;
    assert_eq!(
        response.status,
        201,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    body_json(&response)
}

fn secret_of(credential: &str) -> String {
    let (token, _) = credential.split_once('@').unwrap();
    token.rsplit('.').next().unwrap().to_owned()
}

#[tokio::test]
async fn sepa_purchase_creates_a_bundle_its_credential_and_mandate() {
    let ledger = ledger().await;
    let outbox = tempfile::tempdir().unwrap();
    let (purchase, _) = endpoints(context(&ledger.store, sepa_funding(outbox.path())));
    let receipt = buy(&purchase, 1).await;

    let credential = receipt["credential"].as_str().unwrap();
    let bundle_id = receipt["bundleId"].as_str().unwrap();
    assert!(credential.starts_with(&format!("pwb1.{bundle_id}.")));
    assert!(credential.ends_with(&format!("@{AUTHORITY}")));
    let secret = secret_of(credential);
    assert_eq!(secret.len(), 43, "32 bytes, base64url without padding");
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let bundle = ledger
        .store
        .bundle_by_credential(digest)
        .await
        .unwrap()
        .expect("the credential opens the bundle");
    assert_eq!(bundle.id, bundle_id);
    assert_eq!(bundle.currency, Currency::Eur);
    // Immediate availability up to the risk limit, the rest pending.
    assert_eq!((bundle.balance, bundle.pending), (500, 10_500));
    assert_eq!(receipt["credits"], "11000");
    assert_eq!(receipt["spendableNow"], "500");
    assert_eq!(receipt["asset"], "EUR");
    assert!(receipt["purchaseId"].as_str().unwrap().starts_with("pur_"));

    let mandate_id = receipt["mandateId"].as_str().unwrap();
    let mandate = ledger.store.mandate(mandate_id).await.unwrap().unwrap();
    assert_eq!(mandate.bundle_id, bundle_id);
    assert_eq!(mandate.rail, "sepa");
    assert!(mandate.off_session);
    assert!(mandate.details.contains("DE89370400440532013000"));
    // The answer never carries the IBAN beyond its last four characters.
    let text = receipt.to_string();
    assert!(!text.contains("DE89370400440532013000") && !text.contains("0532 0130"));
    assert_eq!(receipt["account"], "…3000");
    assert_eq!(ledger.counts(), (1, 1, 1));
}

#[tokio::test]
async fn ach_purchase_from_the_form_answers_a_receipt_page() {
    let ledger = ledger().await;
    let outbox = tempfile::tempdir().unwrap();
    let (purchase, _) = endpoints(context(&ledger.store, ach_funding(outbox.path())));
    let response = purchase
        .handle(form_post(
            "/purchase",
            "tier=0&name=Ann+%3Cb%3ELee&routing=021000021&account=12345678901&accountType=savings&accept=on",
        ))
        .await;
    let page = String::from_utf8(response.body.clone()).unwrap();
    assert_eq!(response.status, 201, "{page}");
    assert!(
        header(&response, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        header(&response, "content-security-policy")
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert!(page.contains("pwb1.bdl_"), "the credential is shown once");
    assert!(page.contains("…8901"));
    assert!(!page.contains("12345678901"), "no full account number");
    assert!(!page.contains("<b>"), "nothing typed is echoed unescaped");
    // After-collection policy: nothing spendable yet.
    let bundle_id = page
        .split("Bundle <code>")
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .unwrap();
    let bundle = ledger.store.bundle(bundle_id).await.unwrap().unwrap();
    assert_eq!(
        (bundle.balance, bundle.pending, bundle.currency),
        (0, 2500, Currency::Usd)
    );
}

#[tokio::test]
async fn the_purchase_page_is_a_self_contained_form() {
    let ledger = ledger().await;
    let outbox = tempfile::tempdir().unwrap();
    let (purchase, _) = endpoints(context(&ledger.store, sepa_funding(outbox.path())));
    let response = purchase
        .handle(PluginRequest::new("GET", "/purchase"))
        .await;
    assert_eq!(response.status, 200);
    let page = String::from_utf8(response.body.clone()).unwrap();
    for field in [
        "name=\"tier\"",
        "name=\"iban\"",
        "name=\"bic\"",
        "name=\"name\"",
        "name=\"accept\"",
    ] {
        assert!(page.contains(field), "{field}");
    }
    assert!(page.contains("method=\"post\" action=\"/purchase\""));
    assert!(page.contains("110.00 EUR of credits for 100.00 EUR"));
    assert!(!page.contains("src=") && !page.contains("href=") && !page.contains("<script"));
    let csp = header(&response, "content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("style-src 'sha256-"));
    assert!(csp.contains("frame-ancestors 'none'"));
    let put = purchase
        .handle(PluginRequest::new("PUT", "/purchase"))
        .await;
    assert_eq!(put.status, 405);
}

#[tokio::test]
async fn bad_purchases_are_refused_with_a_reason_and_store_nothing() {
    let ledger = ledger().await;
    let outbox = tempfile::tempdir().unwrap();
    let (sepa, _) = endpoints(context(&ledger.store, sepa_funding(outbox.path())));
    let (ach, _) = endpoints(context(&ledger.store, ach_funding(outbox.path())));
    let mut order = sepa_order(0);
    let cases: Vec<(&Arc<dyn PluginEndpoint>, Value, &str)> = vec![
        (
            &sepa,
            {
                order["iban"] = json!("DE89 3704 0044 0532 0130 01");
                order.clone()
            },
            "mod 97",
        ),
        (
            &sepa,
            {
                order = sepa_order(0);
                order["bic"] = json!("COBA");
                order.clone()
            },
            "BIC",
        ),
        (
            &sepa,
            {
                order = sepa_order(7);
                order.clone()
            },
            "tier",
        ),
        (
            &sepa,
            {
                order = sepa_order(0);
                order["accept"] = json!(false);
                order.clone()
            },
            "mandate",
        ),
        (
            &sepa,
            {
                order = sepa_order(0);
                order["name"] = json!("日本");
                order.clone()
            },
            "name",
        ),
        (
            &sepa,
            {
                order = sepa_order(0);
                order["x"] = json!("1");
                order.clone()
            },
            "unknown field",
        ),
        (
            &ach,
            json!({ "tier": 0, "name": "Ann Lee", "routing": "021000022",
                       "account": "12345678901", "accountType": "checking", "accept": true }),
            "checksum",
        ),
        (
            &ach,
            json!({ "tier": 0, "name": "Ann Lee", "routing": "021000021",
                       "account": "12", "accountType": "checking", "accept": true }),
            "4 to 17",
        ),
        (
            &ach,
            json!({ "tier": 0, "name": "Ann Lee", "routing": "021000021",
                       "account": "12345678901", "accountType": "gold", "accept": true }),
            "accountType",
        ),
    ];
    for (endpoint, body, reason) in cases {
        let response = endpoint.handle(json_post("/purchase", &body)).await;
        assert_eq!(response.status, 400, "{body}");
        let answer = body_json(&response);
        assert_eq!(answer["error"], "invalid_request");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains(reason),
            "{message:?} should name {reason:?}"
        );
        assert!(!message.contains("0532"), "no account digits in errors");
    }
    // A form with a bad IBAN gets the form back with the reason, not the IBAN.
    let response = sepa
        .handle(form_post(
            "/purchase",
            "tier=0&name=Ann&iban=DE89370400440532013001&accept=on",
        ))
        .await;
    assert_eq!(response.status, 400);
    let page = String::from_utf8(response.body.clone()).unwrap();
    assert!(page.contains("mod 97") && !page.contains("DE89370400440532013001"));
    // What is echoed (an unknown field's name) is escaped.
    let response = sepa
        .handle(form_post(
            "/purchase",
            "tier=0&%3Cscript%3Ealert(1)%3C%2Fscript%3E=1",
        ))
        .await;
    assert_eq!(response.status, 400);
    let page = String::from_utf8(response.body.clone()).unwrap();
    assert!(page.contains("&lt;script&gt;alert(1)") && !page.contains("<script>"));
    let unsupported = sepa
        .handle(PluginRequest::new("POST", "/purchase").with_body("tier=0"))
        .await;
    assert_eq!(unsupported.status, 415);
    assert_eq!(ledger.counts(), (0, 0, 0), "nothing stored");
}

#[tokio::test]
async fn top_ups_use_the_stored_mandate_within_the_daily_limit() {
    let ledger = ledger().await;
    let outbox = tempfile::tempdir().unwrap();
    let (purchase, top_up) = endpoints(context(&ledger.store, sepa_funding(outbox.path())));
    let receipt = buy(&purchase, 0).await;
    let credential = receipt["credential"].as_str().unwrap();
    let bundle_id = receipt["bundleId"].as_str().unwrap();
    let request = |auth: Option<&str>| {
        let request = json_post("/purchase/top-up", &json!({ "tier": 0 }));
        match auth {
            Some(auth) => request.with_header("authorization", format!("Bearer {auth}")),
            None => request,
        }
    };
    assert_eq!(top_up.handle(request(None)).await.status, 401);
    let forged = format!("pwb1.{bundle_id}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(top_up.handle(request(Some(&forged))).await.status, 401);

    let first = top_up.handle(request(Some(credential))).await;
    assert_eq!(first.status, 201);
    let first = body_json(&first);
    assert_eq!(first["bundleId"], bundle_id);
    assert!(
        first.get("credential").is_none(),
        "the credential is shown once only"
    );
    assert_ne!(first["purchaseId"], receipt["purchaseId"]);
    // 1000 + 1000 reach the 2000 daily limit: the third is refused.
    assert_eq!(top_up.handle(request(Some(credential))).await.status, 201);
    let over = top_up.handle(request(Some(credential))).await;
    assert_eq!(over.status, 429);
    assert_eq!(ledger.counts(), (1, 1, 3));
    let bundle = ledger.store.bundle(bundle_id).await.unwrap().unwrap();
    assert_eq!(bundle.balance + bundle.pending, 3000);

    // A mandate without off-session consent allows no top-up.
    let mut order = sepa_order(0);
    order["offSession"] = json!(false);
    let other = body_json(&purchase.handle(json_post("/purchase", &order)).await);
    let refused = top_up
        .handle(request(Some(other["credential"].as_str().unwrap())))
        .await;
    assert_eq!(refused.status, 403);
}

/// The text of a written file.
fn read(file: &WrittenFile) -> String {
    std::fs::read_to_string(&file.path).unwrap()
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[tokio::test]
async fn a_collection_file_carries_each_purchase_once() {
    let ledger = ledger().await;
    let dir = tempfile::tempdir().unwrap();
    let config = sepa_funding(dir.path());
    let (purchase, _) = endpoints(context(&ledger.store, config.clone()));
    let a = buy(&purchase, 0).await;
    let b = buy(&purchase, 1).await;
    let outbox = Outbox::new(dir.path()).unwrap();
    let written = funding::run_collection(&*ledger.store, &config, &outbox, now())
        .await
        .unwrap();
    assert_eq!(written.len(), 1);
    let file = &written[0];
    assert_eq!(
        (file.count, file.total, file.currency),
        (2, 11_000, Currency::Eur)
    );
    assert!(file.batch_id.starts_with("col-") && file.batch_id.len() == 29);
    assert_eq!(
        file.path.file_name().unwrap().to_str().unwrap(),
        format!("{}.xml", file.batch_id)
    );
    let xml = read(file);
    assert!(xml.contains("pain.008.001.02"));
    assert!(xml.contains("<NbOfTxs>2</NbOfTxs>") && xml.contains("<CtrlSum>110.00</CtrlSum>"));
    for receipt in [&a, &b] {
        // The SEPA set has no `_`: `pur_…` is `pur-…` in the file.
        let id = receipt["purchaseId"]
            .as_str()
            .unwrap()
            .replace("pur_", "pur-");
        assert_eq!(xml.matches(&format!(">{id}<")).count(), 1, "{id} once");
        let mandate = receipt["mandateReference"].as_str().unwrap();
        assert!(mandate.starts_with("mdt-"));
        assert!(xml.contains(&format!("<MndtId>{mandate}</MndtId>")));
    }
    assert!(xml.contains("DE89370400440532013000") && xml.contains("DE98ZZZ09999999999"));
    // Nothing left: the next run writes nothing.
    let before = files_in(dir.path());
    let again = funding::run_collection(&*ledger.store, &config, &outbox, now())
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(files_in(dir.path()), before);
}

/// Spends `amount` of `bundle` for `audience` and settles `charge`.
async fn charge(
    store: &dyn AuthorityStore,
    bundle: &str,
    audience: &str,
    amount: u64,
    charge: u64,
) -> String {
    charge_in(store, Currency::Eur, bundle, audience, amount, charge).await
}

/// [`charge`] in `currency`.
async fn charge_in(
    store: &dyn AuthorityStore,
    currency: Currency,
    bundle: &str,
    audience: &str,
    amount: u64,
    charge: u64,
) -> String {
    let jti = format!("jti-{}", now_nanos());
    let t = now();
    let outcome = store
        .authorize(NewHold {
            bundle_id: bundle.to_owned(),
            idempotency_key: jti.clone(),
            params_digest: Sha256::digest(jti.as_bytes()).into(),
            jti: jti.clone(),
            amount,
            currency,
            audience: audience.to_owned(),
            attestation: "header.claims.signature".to_owned(),
            hold_exp: t + 900,
            now: t,
        })
        .await
        .unwrap();
    assert_eq!(outcome, AuthorizeOutcome::Created);
    let settled = store
        .settle(SettleCharge {
            jti: jti.clone(),
            charge,
            params_digest: [7; 32],
            now: t,
        })
        .await
        .unwrap();
    assert!(matches!(settled, SettleOutcome::Settled(_)), "{settled:?}");
    jti
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn payouts_pay_each_charge_once_with_exact_fees_and_statements() {
    let ledger = ledger().await;
    let dir = tempfile::tempdir().unwrap();
    let (purchase, _) = endpoints(context(&ledger.store, sepa_funding(dir.path())));
    let mut config = sepa_funding(dir.path());
    config.availability =
        serde_json::from_value(json!({ "mode": "immediate", "risk_limit": 100000 })).unwrap();
    let (rich, _) = endpoints(context(&ledger.store, config));
    let _ = purchase;
    let bundle = buy(&rich, 1).await["bundleId"].as_str().unwrap().to_owned();
    let store = &*ledger.store;
    let shop = vec![
        charge(store, &bundle, SHOP, 600, 500).await,
        charge(store, &bundle, SHOP, 501, 501).await,
    ];
    let news = vec![charge(store, &bundle, NEWS, 999, 999).await];
    // A zero charge releases the hold and is never paid out.
    let _zero = charge(store, &bundle, NEWS, 10, 0).await;

    let outbox = Outbox::new(dir.path()).unwrap();
    let config = payouts(dir.path(), 250);
    let report = payout::run_payout(store, &config, &outbox, now() + 1)
        .await
        .unwrap();
    assert!(report.unassigned.is_empty());
    assert_eq!(report.files.len(), 1);
    let file = &report.files[0];
    // shop: 1001 gross, floor(25.025) = 25 fee, 976 net; news: 999, floor(24.975) = 24, 975.
    assert_eq!((file.count, file.total), (2, 976 + 975));
    let summary: Vec<(&str, u64, u64, u64)> = report
        .sellers
        .iter()
        .map(|s| (s.name.as_str(), s.gross, s.fee, s.net))
        .collect();
    assert_eq!(summary, [("news", 999, 24, 975), ("shop", 1001, 25, 976)]);
    let xml = read(file);
    assert!(xml.contains("pain.001.001.03") && xml.contains("<CtrlSum>19.51</CtrlSum>"));
    assert!(xml.contains(">9.76<") && xml.contains(">9.75<"));
    assert!(xml.contains("FR1420041010050500013M02606") && xml.contains("BE68539007547034"));

    for (seller, jtis) in [("shop", &shop), ("news", &news)] {
        let entry = report.sellers.iter().find(|s| s.name == seller).unwrap();
        let path = dir.path().join(&entry.statement);
        let statement: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let listed: BTreeSet<&str> = statement["charges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["jti"].as_str().unwrap())
            .collect();
        let expected: BTreeSet<&str> = jtis.iter().map(String::as_str).collect();
        assert_eq!(listed, expected, "{seller}");
        assert_eq!(statement["gross"], entry.gross.to_string());
        assert_eq!(statement["fee"], entry.fee.to_string());
        assert_eq!(statement["net"], entry.net.to_string());
        assert_eq!(
            statement["paymentFile"],
            file.path.file_name().unwrap().to_str().unwrap()
        );
        assert!(
            !statement.to_string().contains("FR14"),
            "no bank details in statements"
        );
    }

    // A second run finds nothing: no charge is in two files.
    let before = files_in(dir.path());
    let again = payout::run_payout(store, &config, &outbox, now() + 2)
        .await
        .unwrap();
    assert!(again.files.is_empty() && again.sellers.is_empty());
    assert_eq!(files_in(dir.path()), before);
    // Charges settled later go into the next run, and only those.
    let late = charge(store, &bundle, SHOP, 100, 100).await;
    let next = payout::run_payout(store, &config, &outbox, now() + 3)
        .await
        .unwrap();
    assert_eq!(next.sellers.len(), 1);
    assert_eq!(next.sellers[0].jtis, [late]);
    assert_eq!((next.sellers[0].fee, next.sellers[0].net), (2, 98));
}

#[test]
fn fees_are_exact_integer_arithmetic() {
    assert_eq!(payout::fee_for(1001, 250), 25);
    assert_eq!(payout::fee_for(999, 250), 24);
    assert_eq!(payout::fee_for(39, 250), 0);
    assert_eq!(payout::fee_for(10_000, 10_000), 10_000);
    assert_eq!(
        payout::fee_for(1_000_000_000_000_000, 9_999),
        999_900_000_000_000
    );
    assert_eq!(payout::fee_for(u64::MAX, 10_000), u64::MAX);
}

#[tokio::test]
async fn charges_of_an_unknown_seller_are_listed_not_lost() {
    let ledger = ledger().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = sepa_funding(dir.path());
    config.availability =
        serde_json::from_value(json!({ "mode": "immediate", "risk_limit": 100000 })).unwrap();
    let (purchase, _) = endpoints(context(&ledger.store, config));
    let bundle = buy(&purchase, 0).await["bundleId"]
        .as_str()
        .unwrap()
        .to_owned();
    let stray = charge(&*ledger.store, &bundle, "https://gone.example", 40, 40).await;
    let outbox = Outbox::new(dir.path()).unwrap();
    let report = payout::run_payout(&*ledger.store, &payouts(dir.path(), 0), &outbox, now() + 1)
        .await
        .unwrap();
    assert!(report.files.is_empty());
    assert_eq!(report.unassigned.len(), 1);
    assert_eq!(report.unassigned[0].jti, stray);
    let listing = files_in(dir.path());
    let name = listing
        .iter()
        .find(|n| n.ends_with("-unassigned.statement.json"))
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert!(text.contains(&stray) && text.contains("https://gone.example"));
}

/// A pain.002 rejecting `end_to_end_id` (reason AM04).
fn pain002_rejecting(end_to_end_id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>STS-1</MsgId><CreDtTm>2026-12-03T10:00:00</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts>
      <OrgnlMsgId>col_x</OrgnlMsgId><OrgnlMsgNmId>pain.008.001.02</OrgnlMsgNmId>
      <GrpSts>PART</GrpSts>
    </OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts>
      <OrgnlPmtInfId>col_x</OrgnlPmtInfId>
      <TxInfAndSts>
        <OrgnlEndToEndId>{end_to_end_id}</OrgnlEndToEndId>
        <TxSts>RJCT</TxSts>
        <StsRsnInf><Rsn><Cd>AM04</Cd></Rsn></StsRsnInf>
      </TxInfAndSts>
      <TxInfAndSts>
        <OrgnlEndToEndId>pur-000000000000000000000000</OrgnlEndToEndId>
        <TxSts>RJCT</TxSts>
      </TxInfAndSts>
    </OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>
"#
    )
}

#[tokio::test]
async fn a_returned_debit_freezes_the_bundle_and_books_the_loss_not_the_sellers() {
    let ledger = ledger().await;
    let dir = tempfile::tempdir().unwrap();
    let config = sepa_funding(dir.path());
    let (purchase, top_up) = endpoints(context(&ledger.store, config.clone()));
    let receipt = buy(&purchase, 0).await; // 1000 credits, 500 spendable now
    let bundle = receipt["bundleId"].as_str().unwrap();
    let purchase_id = receipt["purchaseId"].as_str().unwrap();
    let store = &*ledger.store;
    let paid = charge(store, bundle, SHOP, 300, 300).await;
    let outbox = Outbox::new(dir.path()).unwrap();
    let payout_config = payouts(dir.path(), 0);
    let first = payout::run_payout(store, &payout_config, &outbox, now() + 1)
        .await
        .unwrap();
    assert_eq!(first.sellers[0].jtis, std::slice::from_ref(&paid));
    let collected = funding::run_collection(store, &config, &outbox, now())
        .await
        .unwrap();
    assert_eq!(collected.len(), 1);

    let in_file = purchase_id.replace("pur_", "pur-");
    let report = returns::import_pain002(store, &pain002_rejecting(&in_file), now())
        .await
        .unwrap();
    assert_eq!(report.returned.len(), 1);
    let returned = &report.returned[0];
    assert_eq!(
        (returned.purchase_id.as_str(), returned.bundle_id.as_str()),
        (purchase_id, bundle)
    );
    assert_eq!(
        (returned.returned, returned.loss, returned.reason.as_str()),
        (1000, 300, "AM04")
    );
    assert_eq!(report.unknown, ["pur_000000000000000000000000"]);
    let frozen = store.bundle(bundle).await.unwrap().unwrap();
    assert_eq!(frozen.status, BundleStatus::Frozen);
    assert_eq!((frozen.balance, frozen.pending), (0, 0));
    assert_eq!(store.losses().await.unwrap(), [(Currency::Eur, 300)]);
    // Frozen: no authorization, no top-up.
    let hold = store
        .authorize(NewHold {
            bundle_id: bundle.to_owned(),
            idempotency_key: "after-return".into(),
            params_digest: [1; 32],
            jti: "jti-after-return".into(),
            amount: 1,
            currency: Currency::Eur,
            audience: SHOP.into(),
            attestation: "x".into(),
            hold_exp: now() + 900,
            now: now(),
        })
        .await
        .unwrap();
    assert_eq!(hold, AuthorizeOutcome::Frozen);
    let credential = receipt["credential"].as_str().unwrap();
    let refused = top_up
        .handle(
            json_post("/purchase/top-up", &json!({ "tier": 0 }))
                .with_header("authorization", format!("Bearer {credential}")),
        )
        .await;
    assert_eq!(refused.status, 403);
    // The seller's paid charge is untouched: not reclaimed, not repaid.
    let held = store.hold(&paid).await.unwrap().unwrap();
    assert_eq!(held.charged, Some(300));
    let again = payout::run_payout(store, &payout_config, &outbox, now() + 2)
        .await
        .unwrap();
    assert!(again.sellers.is_empty() && again.files.is_empty());
    // The same report again changes nothing.
    let repeat = returns::import_pain002(store, &pain002_rejecting(&in_file), now())
        .await
        .unwrap();
    assert!(repeat.returned.is_empty());
    assert_eq!(repeat.already, 1);
    assert_eq!(store.losses().await.unwrap(), [(Currency::Eur, 300)]);
}

#[tokio::test]
async fn ach_collection_and_a_nacha_return() {
    let ledger = ledger().await;
    let dir = tempfile::tempdir().unwrap();
    let config = ach_funding(dir.path());
    let (purchase, _) = endpoints(context(&ledger.store, config.clone()));
    let order = |account: &str| {
        json!({ "tier": 0, "name": "Ann Lee", "routing": "021000021", "account": account,
                "accountType": "checking", "accept": true })
    };
    let a = body_json(
        &purchase
            .handle(json_post("/purchase", &order("12345678901")))
            .await,
    );
    let b = body_json(
        &purchase
            .handle(json_post("/purchase", &order("99887766")))
            .await,
    );
    let outbox = Outbox::new(dir.path()).unwrap();
    let written = funding::run_collection(&*ledger.store, &config, &outbox, now())
        .await
        .unwrap();
    let file = &written[0];
    assert_eq!(
        (file.count, file.total, file.currency),
        (2, 5000, Currency::Usd)
    );
    assert_eq!(file.path.extension().and_then(|e| e.to_str()), Some("ach"));
    let text = read(file);
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines.iter().all(|l| l.len() == 94));
    let entries: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with('6'))
        .collect();
    assert_eq!(entries.len(), 2);
    assert!(
        entries
            .iter()
            .all(|e| &e[1..3] == "27" && &e[29..39] == "0000002500")
    );
    let id_of = |receipt: &Value| receipt["purchaseId"].as_str().unwrap()[4..].to_ascii_uppercase();
    for receipt in [&a, &b] {
        assert_eq!(
            entries
                .iter()
                .filter(|e| e[39..54].trim() == id_of(receipt))
                .count(),
            1
        );
    }
    // The bank returns b's debit (R01): an addenda 99 after its entry.
    let mut returned = Vec::new();
    for line in &lines {
        returned.push((*line).to_owned());
        if line.starts_with('6') && line[39..54].trim() == id_of(&b) {
            let mut addenda = format!("799R01{}", &line[79..94]);
            addenda.push_str(&" ".repeat(94 - addenda.len()));
            returned.push(addenda);
        }
    }
    let report = returns::import_nacha(&*ledger.store, &returned.join("\r\n"), now())
        .await
        .unwrap();
    assert_eq!(report.returned.len(), 1);
    assert_eq!(
        report.returned[0].purchase_id,
        b["purchaseId"].as_str().unwrap()
    );
    assert_eq!(
        (report.returned[0].reason.as_str(), report.returned[0].loss),
        ("R01", 0)
    );
    let frozen = ledger
        .store
        .bundle(b["bundleId"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frozen.status, BundleStatus::Frozen);
    let untouched = ledger
        .store
        .bundle(a["bundleId"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.status, BundleStatus::Active);
}

#[tokio::test]
async fn written_files_are_immutable() {
    let ledger = ledger().await;
    let dir = tempfile::tempdir().unwrap();
    let config = sepa_funding(dir.path());
    let (purchase, _) = endpoints(context(&ledger.store, config.clone()));
    buy(&purchase, 0).await;
    let outbox = Outbox::new(dir.path()).unwrap();
    let written = funding::run_collection(&*ledger.store, &config, &outbox, now())
        .await
        .unwrap();
    let file = &written[0];
    let name = file.path.file_name().unwrap().to_str().unwrap();
    let original = read(file);
    assert!(matches!(
        outbox.write(name, "tampered"),
        Err(FileError::FileExists(_))
    ));
    assert_eq!(read(file), original);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "read-only");
    }
}

#[test]
fn configurations_refuse_what_cannot_work() {
    let dir = Path::new("/tmp/unused");
    let mut funding = sepa_funding(dir);
    funding.sepa = None;
    assert!(funding.validate().is_err(), "SEPA rail without a creditor");
    let mut funding = sepa_funding(dir);
    funding.tiers.clear();
    assert!(funding.validate().is_err());
    let unknown: Result<FundingConfig, _> = serde_json::from_value(json!({
        "tiers": [{ "credits": 1, "price": 1 }], "rail": "sepa",
        "availability": { "mode": "immediate", "risk_limit": 1 }, "outbox": "/x", "colour": "red"
    }));
    assert!(unknown.is_err(), "unknown keys are refused");
    let bad_iban: Result<FundingConfig, _> = serde_json::from_value(json!({
        "tiers": [{ "credits": 1, "price": 1 }], "rail": "sepa",
        "availability": { "mode": "immediate", "risk_limit": 1 }, "outbox": "/x",
        "sepa": { "name": "x", "iban": "DE00370400440532013000", "creditor_scheme_id": "x" }
    }));
    assert!(bad_iban.is_err());
    let mut payout = payouts(dir, 10_001);
    assert!(payout.validate().is_err(), "fee over 100 %");
    payout.fee_bps = 100;
    payout.sellers[1].name = "shop".into();
    assert!(payout.validate().is_err(), "seller named twice");
    payout.sellers[1].name = "unassigned".into();
    assert!(
        payout.validate().is_err(),
        "a seller named like the statement of charges without a seller"
    );
    payout.sellers[1].name = "../etc".into();
    assert!(
        payout.validate().is_err(),
        "seller name unusable in a file name"
    );
    let debug = format!("{:?} {:?}", sepa_funding(dir), payouts(dir, 0));
    for secret in [
        "Paywire Credits GmbH",
        "NL91ABNA0417164300",
        "Shop SARL",
        "FR1420041010050500013M02606",
    ] {
        assert!(!debug.contains(secret), "{secret} in Debug");
    }
}

#[tokio::test]
async fn ach_payouts_are_nacha_credits() {
    let ledger = ledger().await;
    let dir = tempfile::tempdir().unwrap();
    let mut funding = ach_funding(dir.path());
    funding.availability =
        serde_json::from_value(json!({ "mode": "immediate", "risk_limit": 100000 })).unwrap();
    let (purchase, _) = endpoints(context(&ledger.store, funding));
    let order = json!({ "tier": 0, "name": "Ann Lee", "routing": "021000021",
                        "account": "12345678901", "accountType": "checking", "accept": true });
    let receipt = body_json(&purchase.handle(json_post("/purchase", &order)).await);
    let bundle = receipt["bundleId"].as_str().unwrap();
    let store = &*ledger.store;
    let jtis = [
        charge_in(store, Currency::Usd, bundle, SHOP, 1234, 1234).await,
        charge_in(store, Currency::Usd, bundle, SHOP, 766, 766).await,
    ];
    let config: PayoutConfig = serde_json::from_value(json!({
        "fee_bps": 1000,
        "outbox": dir.path(),
        "debtor": { "ach": {
            "company_name": "PAYWIRE CREDITS", "company_id": "1234567890",
            "odfi_routing": "021000021", "immediate_destination": "011000015",
            "destination_name": "FEDERAL RESERVE BANK", "origin_name": "PAYWIRE CREDITS" } },
        "sellers": [{ "name": "shop", "origin": SHOP, "rail": "ach",
            "ach": { "name": "Shop Inc", "routing": "011000015", "account": "99887766",
                     "account_type": "savings" } }]
    }))
    .unwrap();
    let outbox = Outbox::new(dir.path()).unwrap();
    let report = payout::run_payout(store, &config, &outbox, now() + 1)
        .await
        .unwrap();
    assert_eq!(report.sellers.len(), 1);
    let shop = &report.sellers[0];
    assert_eq!(
        (shop.currency, shop.gross, shop.fee, shop.net),
        (Currency::Usd, 2000, 200, 1800)
    );
    assert_eq!(
        shop.jtis.iter().collect::<BTreeSet<_>>(),
        jtis.iter().collect()
    );
    let file = &report.files[0];
    assert_eq!(file.path.extension().and_then(|e| e.to_str()), Some("ach"));
    let text = read(file);
    let entries: Vec<&str> = text.lines().filter(|l| l.starts_with('6')).collect();
    assert_eq!(entries.len(), 1);
    // Savings credit (32) to the seller's bank and account, the net amount.
    let entry = entries[0];
    assert_eq!((&entry[1..3], &entry[3..11]), ("32", "01100001"));
    assert_eq!(entry[12..29].trim(), "99887766");
    assert_eq!(&entry[29..39], "0000001800");
    // The batch control: service class 220 (credits only), total credit 18.00.
    let control = text.lines().find(|l| l.starts_with('8')).unwrap();
    assert_eq!(&control[1..4], "220");
    assert_eq!(&control[20..32], "000000000000", "total debit");
    assert_eq!(&control[32..44], "000000001800", "total credit");
}

#[tokio::test]
async fn first_purchases_are_rate_limited() {
    let ledger = ledger().await;
    let outbox = tempfile::tempdir().unwrap();
    let mut config = sepa_funding(outbox.path());
    config.max_purchases_per_minute = 2;
    // Retried once should the minute turn during the three purchases.
    for attempt in 0..2 {
        let (purchase, _) = endpoints(context(&ledger.store, config.clone()));
        let minute = now() / 60;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let response = purchase
                .handle(json_post("/purchase", &sepa_order(0)))
                .await;
            statuses.push(response.status);
        }
        if now() / 60 != minute && attempt == 0 {
            continue;
        }
        assert_eq!(statuses, [201, 201, 429]);
        break;
    }
    let (bundles, _, purchases) = ledger.counts();
    assert!(bundles == purchases && bundles % 2 == 0 && bundles > 0);
}
