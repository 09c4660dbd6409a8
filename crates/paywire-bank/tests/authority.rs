//! The bundle authority on the real facilitator over HTTP: `/authorize`,
//! the JWKS, `/verify` and `/settle` of `batch-settlement` on `acme:credit`,
//! the principal's freeze and revoke, hold expiry, key rotation, and
//! concurrency across two facilitator instances on one PostgreSQL.
//!
//! Bundles are created directly in the ledger (the purchase flow is tested
//! elsewhere). Attestations are checked against the published JWKS with
//! `ed25519-dalek` directly, not with the authority's own verifier.

use std::error::Error;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use paywire_bank::BankPlugin;
use paywire_bank::authority::{Authority, CreditFacilitator};
use paywire_bank::config::BankConfig;
use paywire_bank::endpoints::credential_digest;
use paywire_bank::money::Currency;
use paywire_bank::store::{self, AuthorityStore, HoldStatus, Mandate, NewBundle, NewPurchase};
use paywire_core::{
    ChainId, ConfigEntry, PaymentPayload, PaymentRequirements, PluginRegistry, SchemeFacilitator,
};
use paywire_facilitator::FacilitatorConfig;
use paywire_testkit::postgres::PgCluster;
use serde_json::{Value, json};
use tokio::sync::oneshot;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;
type Fallible<T> = Result<T, Box<dyn Error + Send + Sync>>;

const AUTHORITY: &str = "https://credits.acme.test";
const SHOP: &str = "https://api.shop.test";
const RESOURCE: &str = "https://api.shop.test/v1/report";
const SHOP_KEY: &str = "shop-key-0123456789abcdef";
const OTHER_KEY: &str = "other-key-0123456789abcdef";
const OLD_SEED: [u8; 32] = [7; 32];
const NEW_SEED: [u8; 32] = [9; 32];

fn seed(bytes: [u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The chain table's knobs a test changes.
#[derive(Clone)]
struct Knobs {
    ttl: u64,
    hold: u64,
    keys: String,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            ttl: 300,
            hold: 900,
            keys: format!(
                r#"[{{ kid = "k-old", secret = "{}" }}, {{ kid = "k-new", secret = "{}", active = true }}]"#,
                seed(OLD_SEED),
                seed(NEW_SEED)
            ),
        }
    }
}

fn config_text(store: &str, knobs: &Knobs, api_keys: bool) -> String {
    let keys = if api_keys {
        format!(
            r#"
[[api_keys]]
key = "{SHOP_KEY}"
name = "shop"
endpoints = ["verify", "settle"]

[[api_keys]]
key = "{OTHER_KEY}"
name = "other"
endpoints = ["verify", "settle"]
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"
listen = "127.0.0.1:0"
store = "{store}"
{keys}
[[chains]]
network = "acme:credit"
authority = "{AUTHORITY}"
currency = "EUR"
presentation_ttl_seconds = {ttl}
hold_seconds = {hold}
max_authorize_amount = 5000
signing_keys = {signing}
servers = [
  {{ origin = "{SHOP}", api_key = "shop", seller = "shop" }},
  {{ origin = "https://api.other.test", api_key = "other", seller = "other" }},
]
"#,
        ttl = knobs.ttl,
        hold = knobs.hold,
        signing = knobs.keys,
    )
}

/// One running facilitator.
struct Node {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn start(store: &str, knobs: &Knobs) -> Fallible<Self> {
        let config = FacilitatorConfig::parse(&config_text(store, knobs, true))?;
        let plugins = PluginRegistry::new().with(Arc::new(BankPlugin));
        let state = paywire_facilitator::build(&config, &plugins).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = paywire_facilitator::serve(listener, state, async move {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(Self {
            url,
            stop: Some(stop),
            task: Some(task),
        })
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A bundle with `balance` spendable credits and its bearer credential.
struct Bundle {
    id: String,
    credential: String,
}

async fn bundle(ledger: &dyn AuthorityStore, name: &str, balance: u64) -> Fallible<Bundle> {
    let id = format!("bdl_{name:0>24}");
    let secret = URL_SAFE_NO_PAD.encode(format!("secret-of-{name}-0123456789abcdef"));
    ledger
        .create_bundle(NewBundle {
            id: id.clone(),
            currency: Currency::Eur,
            credential_digest: credential_digest(&secret),
            expires_at: None,
            now: 1,
        })
        .await?;
    let mandate_id = format!("mdt_{name:0>24}");
    ledger
        .save_mandate(Mandate {
            id: mandate_id.clone(),
            bundle_id: id.clone(),
            rail: "sepa".into(),
            details: "{}".into(),
            off_session: false,
            created_at: 1,
        })
        .await?;
    let bought = ledger
        .purchase(NewPurchase {
            id: format!("pur_{name:0>24}"),
            bundle_id: id.clone(),
            mandate_id,
            credits: balance,
            price: balance,
            currency: Currency::Eur,
            spendable_now: balance,
            spendable_at: 1,
            now: 1,
        })
        .await?;
    assert!(bought, "purchase refused");
    Ok(Bundle {
        credential: format!("pwb1.{id}.{secret}"),
        id,
    })
}

async fn balance(ledger: &dyn AuthorityStore, id: &str) -> Fallible<u64> {
    Ok(ledger.bundle(id).await?.ok_or("no bundle")?.balance)
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// `POST /authorize`: (status, body).
async fn authorize(node: &Node, credential: &str, body: &Value) -> Fallible<(u16, Value)> {
    let response = client()
        .post(format!("{}/authorize", node.url))
        .bearer_auth(credential)
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

fn authorize_body(bundle: &Bundle, amount: u64, key: &str) -> Value {
    json!({
        "bundleId": bundle.id,
        "amount": amount.to_string(),
        "asset": "EUR",
        "resource": RESOURCE,
        "idempotencyKey": key,
    })
}

async fn attest(node: &Node, bundle: &Bundle, amount: u64, key: &str) -> Fallible<String> {
    let (status, body) = authorize(
        node,
        &bundle.credential,
        &authorize_body(bundle, amount, key),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    Ok(body["attestation"]
        .as_str()
        .ok_or("no attestation")?
        .to_owned())
}

fn requirements(amount: u64) -> Value {
    json!({
        "scheme": "batch-settlement",
        "network": "acme:credit",
        "amount": amount.to_string(),
        "asset": "EUR",
        "payTo": "merchant",
        "maxTimeoutSeconds": 300,
        "extra": { "version": "1.0.0", "authority": AUTHORITY },
    })
}

fn request(attestation: &str, price: u64, charge: u64) -> Value {
    json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "resource": { "url": RESOURCE },
            "accepted": requirements(price),
            "payload": { "type": "consume", "attestation": attestation },
        },
        "paymentRequirements": requirements(charge),
    })
}

async fn call(node: &Node, path: &str, api_key: &str, body: &Value) -> Fallible<(u16, Value)> {
    let response = client()
        .post(format!("{}{path}", node.url))
        .bearer_auth(api_key)
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// `/verify` of `attestation` at price 50: `(isValid, invalidReason)`.
async fn verify(node: &Node, attestation: &str) -> Fallible<(bool, String)> {
    let (_, body) = call(node, "/verify", SHOP_KEY, &request(attestation, 50, 50)).await?;
    Ok((
        body["isValid"] == json!(true),
        body["invalidReason"].as_str().unwrap_or("").to_owned(),
    ))
}

/// `/settle` of `attestation` charging `charge`, by `api_key`.
async fn settle(node: &Node, api_key: &str, attestation: &str, charge: u64) -> Fallible<Value> {
    let (_, body) = call(node, "/settle", api_key, &request(attestation, 50, charge)).await?;
    Ok(body)
}

fn reason(body: &Value) -> &str {
    body["errorReason"].as_str().unwrap_or("")
}

fn decode(part: &str) -> Fallible<Value> {
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part)?)?)
}

/// Re-signs `header` and `claims` with `key`.
fn forge(header: &Value, claims: &Value, key: &SigningKey) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// The scheme facilitator on `db`, without HTTP or the facilitator's own
/// settlement ledger in front of it.
fn direct_facilitator(db: &Sqlite) -> Fallible<CreditFacilitator> {
    let chain = json!({
        "network": "acme:credit",
        "authority": AUTHORITY,
        "currency": "EUR",
        "signing_keys": [{ "kid": "k-new", "secret": seed(NEW_SEED), "active": true }],
        "servers": [{ "origin": SHOP, "api_key": "shop", "seller": "shop" }],
    });
    let entry = ConfigEntry::new(ChainId::parse("acme:credit")?, "chains[0]", chain);
    let config = BankConfig::from_entry(&entry)?;
    Ok(CreditFacilitator::new(Arc::new(Authority {
        config,
        store: Arc::clone(&db.ledger),
    })))
}

struct Sqlite {
    _dir: tempfile::TempDir,
    path: String,
    ledger: Arc<dyn AuthorityStore>,
}

async fn sqlite() -> Fallible<Sqlite> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("facilitator.sqlite").display().to_string();
    let ledger = store::open(&path).await?;
    Ok(Sqlite {
        _dir: dir,
        path,
        ledger,
    })
}

#[tokio::test]
async fn authorize_mints_an_attestation_that_verifies_against_the_jwks() -> TestResult {
    let db = sqlite().await?;
    let node = Node::start(&db.path, &Knobs::default()).await?;
    let alice = bundle(&*db.ledger, "alice", 1000).await?;
    let token = attest(&node, &alice, 50, "key-alice-0001").await?;
    assert_eq!(balance(&*db.ledger, &alice.id).await?, 950);

    let jwks: Value = client()
        .get(format!("{}/.well-known/jwks.json", node.url))
        .send()
        .await?
        .json()
        .await?;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode(parts[0])?;
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "x402-credit+jwt");
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("no keys")?
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .ok_or("kid not published")?;
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().ok_or("no x")?)?
        .try_into()
        .map_err(|_| "x is not 32 bytes")?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(parts[2])?
        .try_into()
        .map_err(|_| "signature is not 64 bytes")?;
    VerifyingKey::from_bytes(&x)?.verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &ed25519_dalek::Signature::from_bytes(&signature),
    )?;
    let claims = decode(parts[1])?;
    assert_eq!(claims["iss"], AUTHORITY);
    assert_eq!(claims["sub"], alice.id.as_str());
    assert_eq!(claims["aud"], SHOP);
    assert_eq!(claims["resource"], RESOURCE);
    assert_eq!(claims["amount"], "50");
    assert_eq!(claims["asset"], "EUR");
    let iat = claims["iat"].as_u64().ok_or("iat")?;
    assert_eq!(claims["exp"].as_u64(), Some(iat + 300));
    assert_eq!(claims["holdExp"].as_u64(), Some(iat + 900));
    assert!(
        claims["jti"]
            .as_str()
            .is_some_and(|jti| jti.starts_with("att_") && jti.len() == 28)
    );

    // The same key again: the same attestation, no second decrement.
    assert_eq!(attest(&node, &alice, 50, "key-alice-0001").await?, token);
    assert_eq!(balance(&*db.ledger, &alice.id).await?, 950);
    assert_eq!(verify(&node, &token).await?, (true, String::new()));
    node.stop().await;
    Ok(())
}

/// An attestation signed with the authority's key (a leaked key, or a bug)
/// whose claims disagree with the hold of its `jti` settles nothing: the
/// hold is compared before the charge is committed, not after.
#[tokio::test]
async fn settle_compares_the_hold_before_charging() -> TestResult {
    let db = sqlite().await?;
    let node = Node::start(&db.path, &Knobs::default()).await?;
    let dora = bundle(&*db.ledger, "dora", 1000).await?;
    let token = attest(&node, &dora, 50, "key-dora-0000001").await?;
    let parts: Vec<&str> = token.split('.').collect();
    let header = decode(parts[0])?;
    let mut claims = decode(parts[1])?;
    claims["amount"] = "60".into();
    let mismatched = forge(&header, &claims, &SigningKey::from_bytes(&NEW_SEED));
    let refused = settle(&node, SHOP_KEY, &mismatched, 50).await?;
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(reason(&refused), "attestation_invalid");
    let jti = claims["jti"].as_str().ok_or("jti")?;
    let hold = db.ledger.hold(jti).await?.ok_or("no hold")?;
    assert_eq!(hold.status, HoldStatus::Open, "nothing was charged");
    // The genuine attestation still settles.
    let settled = settle(&node, SHOP_KEY, &token, 50).await?;
    assert_eq!(settled["success"], true, "{settled}");
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn settle_charges_once_and_refuses_conflicts_overcharges_and_strangers() -> TestResult {
    let db = sqlite().await?;
    let node = Node::start(&db.path, &Knobs::default()).await?;
    let bob = bundle(&*db.ledger, "bob", 1000).await?;
    let token = attest(&node, &bob, 50, "key-bob-00000001").await?;

    let over = settle(&node, SHOP_KEY, &token, 51).await?;
    assert_eq!(over["success"], false, "{over}");
    assert_eq!(reason(&over), "charge_exceeds_attestation");
    assert_eq!(balance(&*db.ledger, &bob.id).await?, 950);

    let stranger = settle(&node, OTHER_KEY, &token, 35).await?;
    assert_eq!(stranger["success"], false, "{stranger}");
    assert_eq!(reason(&stranger), "unauthorized_server");

    let settled = settle(&node, SHOP_KEY, &token, 35).await?;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["transaction"], "");
    assert_eq!(settled["payer"], bob.id.as_str());
    assert_eq!(settled["amount"], "35");
    let extra = &settled["extra"];
    assert_eq!(
        extra["commitmentId"],
        decode(token.split('.').nth(1).ok_or("claims")?)?["jti"]
    );
    assert_eq!(extra["bundleState"]["bundleId"], bob.id.as_str());
    assert_eq!(extra["bundleState"]["asset"], "EUR");
    assert_eq!(extra["chargedAmount"], "35");
    assert_eq!(extra["bundleState"]["balance"], "965");
    assert_eq!(balance(&*db.ledger, &bob.id).await?, 965);

    let again = settle(&node, SHOP_KEY, &token, 35).await?;
    assert_eq!(again, settled, "an identical repeat gets the same result");
    let conflict = settle(&node, SHOP_KEY, &token, 30).await?;
    assert_eq!(conflict["success"], false, "{conflict}");
    assert_eq!(reason(&conflict), "settle_conflict");
    assert_eq!(balance(&*db.ledger, &bob.id).await?, 965);
    // The facilitator's replay guard answers a settled payload first...
    assert_eq!(
        verify(&node, &token).await?,
        (false, "settle_conflict".to_owned())
    );
    node.stop().await;
    // ...and the authority's own ledger check refuses it too.
    let scheme = direct_facilitator(&db)?;
    let body = request(&token, 50, 50);
    let payload: PaymentPayload = serde_json::from_value(body["paymentPayload"].clone())?;
    let required: PaymentRequirements =
        serde_json::from_value(body["paymentRequirements"].clone())?;
    let answer = scheme.verify(&payload, &required).await?;
    assert_eq!(
        answer
            .invalid_reason
            .map(|reason| reason.to_string())
            .as_deref(),
        Some("attestation_already_settled")
    );
    Ok(())
}

#[tokio::test]
async fn verify_refuses_expired_forged_foreign_and_misbound_attestations() -> TestResult {
    let db = sqlite().await?;
    let knobs = Knobs {
        ttl: 3,
        hold: 60,
        ..Knobs::default()
    };
    let node = Node::start(&db.path, &knobs).await?;
    let carol = bundle(&*db.ledger, "carol", 1000).await?;
    let token = attest(&node, &carol, 50, "key-carol-000001").await?;
    let parts: Vec<&str> = token.split('.').collect();
    let header = decode(parts[0])?;
    let mut claims = decode(parts[1])?;
    // Forgeries get a longer presentation window, so that only the change
    // under test can make them fail.
    claims["exp"] = (claims["iat"].as_u64().ok_or("iat")? + 30).into();
    let ours = SigningKey::from_bytes(&NEW_SEED);

    // A byte of the signature changed.
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2])?;
    signature[0] ^= 1;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_eq!(
        verify(&node, &tampered).await?,
        (false, "attestation_invalid".into())
    );
    // Signed by a key the authority never published, under an unknown kid.
    let mut unknown = header.clone();
    unknown["kid"] = "k-evil".into();
    let stranger = SigningKey::from_bytes(&[3; 32]);
    assert_eq!(
        verify(&node, &forge(&unknown, &claims, &stranger)).await?,
        (false, "attestation_invalid".into())
    );
    // A stranger's signature under our kid.
    assert_eq!(
        verify(&node, &forge(&header, &claims, &stranger)).await?,
        (false, "attestation_invalid".into())
    );
    // alg none, no signature.
    let none = json!({ "alg": "none", "kid": "k-new", "typ": "x402-credit+jwt" });
    let unsigned = format!("{}.{}.", URL_SAFE_NO_PAD.encode(none.to_string()), parts[1]);
    assert_eq!(
        verify(&node, &unsigned).await?,
        (false, "attestation_invalid".into())
    );
    // Properly signed with our key but another issuer, audience or
    // resource; another audience is not the calling server's.
    for (claim, value, refusal) in [
        ("iss", "https://credits.evil.test", "attestation_invalid"),
        ("aud", "https://api.other.test", "unauthorized_server"),
        (
            "resource",
            "https://api.shop.test/v1/other",
            "attestation_invalid",
        ),
    ] {
        let mut altered = claims.clone();
        altered[claim] = value.into();
        assert_eq!(
            verify(&node, &forge(&header, &altered, &ours)).await?,
            (false, refusal.into()),
            "{claim}"
        );
    }
    // A genuine attestation verified by a server it was not made for.
    let (_, body) = call(&node, "/verify", OTHER_KEY, &request(&token, 50, 50)).await?;
    assert_eq!(body["isValid"], json!(false), "{body}");
    assert_eq!(body["invalidReason"], "unauthorized_server");
    // The same signed claims re-signed verify (the forgeries fail for
    // their changes, not for the re-signing).
    assert_eq!(
        verify(&node, &forge(&header, &claims, &ours)).await?,
        (true, String::new())
    );
    // Below the price.
    let cheap = attest(&node, &carol, 40, "key-carol-000002").await?;
    assert_eq!(
        verify(&node, &cheap).await?,
        (false, "price_not_acceptable".into())
    );

    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(
        verify(&node, &token).await?,
        (false, "attestation_expired".into())
    );
    // Past exp, within holdExp: a deferred settle still succeeds.
    let settled = settle(&node, SHOP_KEY, &token, 50).await?;
    assert_eq!(settled["success"], true, "{settled}");
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn revoked_attestations_and_frozen_bundles_are_refused() -> TestResult {
    let db = sqlite().await?;
    let node = Node::start(&db.path, &Knobs::default()).await?;
    let dave = bundle(&*db.ledger, "dave", 1000).await?;
    let eve = bundle(&*db.ledger, "eve", 1000).await?;
    let token = attest(&node, &dave, 50, "key-dave-0000001").await?;
    let jti = decode(token.split('.').nth(1).ok_or("claims")?)?["jti"].clone();

    // Another principal cannot revoke it.
    let (status, _) = call(
        &node,
        "/attestations/revoke",
        &eve.credential,
        &json!({ "jti": jti }),
    )
    .await?;
    assert_eq!(status, 404);
    assert_eq!(verify(&node, &token).await?, (true, String::new()));

    let (status, body) = call(
        &node,
        "/attestations/revoke",
        &dave.credential,
        &json!({ "jti": jti }),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        balance(&*db.ledger, &dave.id).await?,
        1000,
        "the hold is released"
    );
    assert_eq!(verify(&node, &token).await?, (false, "revoked".into()));
    let refused = settle(&node, SHOP_KEY, &token, 10).await?;
    assert_eq!(
        (refused["success"].clone(), reason(&refused)),
        (json!(false), "revoked")
    );

    let (status, body) = call(&node, "/bundles/freeze", &dave.credential, &json!({})).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = authorize(
        &node,
        &dave.credential,
        &authorize_body(&dave, 10, "key-dave-0000002"),
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("bundle_revoked"))
    );
    // Eve's bundle is untouched.
    attest(&node, &eve, 10, "key-eve-00000001").await?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn authorize_refuses_bad_requests_with_the_specified_codes() -> TestResult {
    let db = sqlite().await?;
    let node = Node::start(&db.path, &Knobs::default()).await?;
    let fred = bundle(&*db.ledger, "fred", 100).await?;
    let gina = bundle(&*db.ledger, "gina", 100).await?;
    let code = |reply: (u16, Value)| (reply.0, reply.1["error"].as_str().unwrap_or("").to_owned());

    let mut body = authorize_body(&fred, 10, "key-fred-0000001");
    assert_eq!(
        code(authorize(&node, "pwb1.nobody.secret", &body).await?),
        (401, "unauthorized".into())
    );
    let wrong_secret = format!(
        "pwb1.{}.{}",
        fred.id,
        URL_SAFE_NO_PAD.encode("guess-guess-guess")
    );
    assert_eq!(
        code(authorize(&node, &wrong_secret, &body).await?),
        (401, "unauthorized".into())
    );
    // Gina's credential for Fred's bundle.
    assert_eq!(
        code(authorize(&node, &gina.credential, &body).await?),
        (404, "bundle_not_found".into())
    );
    for (field, value) in [
        ("amount", json!("010")),
        ("amount", json!("0")),
        ("amount", json!("5001")),
        ("asset", json!("GBP")),
        ("resource", json!("ftp://api.shop.test/x")),
        (
            "resource",
            json!(format!("https://api.shop.test/{}", "a".repeat(2100))),
        ),
        ("idempotencyKey", json!("short")),
        ("idempotencyKey", json!("has spaces in it")),
    ] {
        let mut bad = body.clone();
        bad[field] = value;
        assert_eq!(
            code(authorize(&node, &fred.credential, &bad).await?),
            (400, "invalid_request".into()),
            "{field}"
        );
    }
    let mut unknown = body.clone();
    unknown["extra"] = json!(1);
    assert_eq!(
        code(authorize(&node, &fred.credential, &unknown).await?).0,
        400
    );
    body["asset"] = json!("USD");
    assert_eq!(
        code(authorize(&node, &fred.credential, &body).await?).0,
        400,
        "not the bundle's currency"
    );

    attest(&node, &fred, 60, "key-fred-0000002").await?;
    assert_eq!(
        code(
            authorize(
                &node,
                &fred.credential,
                &authorize_body(&fred, 50, "key-fred-0000003")
            )
            .await?
        ),
        (402, "insufficient_credits".into())
    );
    assert_eq!(
        code(
            authorize(
                &node,
                &fred.credential,
                &authorize_body(&fred, 20, "key-fred-0000002")
            )
            .await?
        ),
        (409, "idempotency_conflict".into())
    );
    assert_eq!(balance(&*db.ledger, &fred.id).await?, 40);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn lapsed_holds_are_recredited() -> TestResult {
    let db = sqlite().await?;
    let knobs = Knobs {
        ttl: 1,
        hold: 2,
        ..Knobs::default()
    };
    let node = Node::start(&db.path, &knobs).await?;
    let hana = bundle(&*db.ledger, "hana", 1000).await?;
    let token = attest(&node, &hana, 100, "key-hana-0000001").await?;
    assert_eq!(balance(&*db.ledger, &hana.id).await?, 900);
    // The sweeper releases it without any settle.
    let mut released = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if balance(&*db.ledger, &hana.id).await? == 1000 {
            released = true;
            break;
        }
    }
    assert!(released, "the lapsed hold was not re-credited");
    let late = settle(&node, SHOP_KEY, &token, 10).await?;
    assert_eq!(
        (late["success"].clone(), reason(&late)),
        (json!(false), "hold_expired")
    );
    assert_eq!(balance(&*db.ledger, &hana.id).await?, 1000);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn retired_keys_keep_verifying_until_removed() -> TestResult {
    let db = sqlite().await?;
    let old_only = Knobs {
        keys: format!(
            r#"[{{ kid = "k-old", secret = "{}", active = true }}]"#,
            seed(OLD_SEED)
        ),
        ..Knobs::default()
    };
    let node = Node::start(&db.path, &old_only).await?;
    let ivan = bundle(&*db.ledger, "ivan", 1000).await?;
    let old = attest(&node, &ivan, 50, "key-ivan-0000001").await?;
    assert_eq!(
        decode(old.split('.').next().ok_or("header")?)?["kid"],
        "k-old"
    );
    node.stop().await;

    // Rotated: k-new signs, k-old is retired but published.
    let node = Node::start(&db.path, &Knobs::default()).await?;
    let jwks: Value = client()
        .get(format!("{}/.well-known/jwks.json", node.url))
        .send()
        .await?
        .json()
        .await?;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .ok_or("keys")?
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, ["k-old", "k-new"]);
    let new = attest(&node, &ivan, 50, "key-ivan-0000002").await?;
    assert_eq!(
        decode(new.split('.').next().ok_or("header")?)?["kid"],
        "k-new"
    );
    assert_eq!(verify(&node, &old).await?, (true, String::new()));
    node.stop().await;

    // k-old removed: its attestations no longer verify.
    let new_only = Knobs {
        keys: format!(
            r#"[{{ kid = "k-new", secret = "{}", active = true }}]"#,
            seed(NEW_SEED)
        ),
        ..Knobs::default()
    };
    let node = Node::start(&db.path, &new_only).await?;
    assert_eq!(
        verify(&node, &old).await?,
        (false, "attestation_invalid".into())
    );
    assert_eq!(verify(&node, &new).await?, (true, String::new()));
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_plugin_refuses_to_start_without_settle_keys_or_with_unknown_ones() -> TestResult {
    let db = sqlite().await?;
    let plugins = PluginRegistry::new().with(Arc::new(BankPlugin));
    let open = FacilitatorConfig::parse(&config_text(&db.path, &Knobs::default(), false))?;
    let error = paywire_facilitator::build(&open, &plugins)
        .await
        .err()
        .ok_or("started without API keys")?;
    assert!(error.to_string().contains("API keys"), "{error}");

    let text = config_text(&db.path, &Knobs::default(), true)
        .replace(r#"api_key = "other""#, r#"api_key = "ghost""#);
    let unknown = FacilitatorConfig::parse(&text)?;
    let error = paywire_facilitator::build(&unknown, &plugins)
        .await
        .err()
        .ok_or("started with an unknown key id")?;
    assert!(error.to_string().contains("servers[1].api_key"), "{error}");

    let secret = seed(NEW_SEED);
    let bad_key = config_text(&db.path, &Knobs::default(), true).replace(&secret, "short");
    let error = paywire_facilitator::build(&FacilitatorConfig::parse(&bad_key)?, &plugins)
        .await
        .err()
        .ok_or("started with a bad key")?;
    assert!(error.to_string().contains("signing_keys[1]"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_decrement_once_per_key_and_never_below_zero() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let url = cluster.create_database("authority").await?;
    let first = Node::start(&url, &Knobs::default()).await?;
    let second = Node::start(&url, &Knobs::default()).await?;
    let ledger = store::open(&url).await?;
    let jane = bundle(&*ledger, "jane", 1000).await?;

    // 50 concurrent retries of one authorization, spread over both.
    let body = authorize_body(&jane, 10, "key-jane-same-01");
    let calls = (0..50).map(|n| {
        let node = if n % 2 == 0 { &first } else { &second };
        authorize(node, &jane.credential, &body)
    });
    let answers = futures_join(calls).await;
    let mut tokens = Vec::new();
    for answer in answers {
        let (status, body) = answer?;
        assert_eq!(status, 200, "{body}");
        tokens.push(
            body["attestation"]
                .as_str()
                .ok_or("attestation")?
                .to_owned(),
        );
    }
    assert!(
        tokens.iter().all(|token| *token == tokens[0]),
        "different attestations"
    );
    assert_eq!(balance(&*ledger, &jane.id).await?, 990);

    // 50 distinct authorizations of 50 on 990: 19 fit.
    let credential = jane.credential.as_str();
    let calls = (0..50).map(|n| {
        let node = if n % 2 == 0 { &first } else { &second };
        let body = authorize_body(&jane, 50, &format!("key-jane-many-{n:02}"));
        async move { authorize(node, credential, &body).await }
    });
    let mut granted = 0;
    for answer in futures_join(calls).await {
        let (status, body) = answer?;
        match status {
            200 => granted += 1,
            402 => assert_eq!(body["error"], "insufficient_credits"),
            other => return Err(format!("unexpected {other}: {body}").into()),
        }
    }
    assert_eq!(granted, 19);
    assert_eq!(balance(&*ledger, &jane.id).await?, 40);
    first.stop().await;
    second.stop().await;
    Ok(())
}

/// Runs `futures` concurrently (spawned on the runtime's threads when they
/// are `'static`; here polled together on this task).
async fn futures_join<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut pending: Vec<_> = futures.into_iter().enumerate().collect();
    std::future::poll_fn(move |cx| {
        pending.retain_mut(|(index, future)| match future.as_mut().poll(cx) {
            std::task::Poll::Ready(output) => {
                outputs[*index] = Some(output);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(outputs.drain(..).flatten().collect())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
