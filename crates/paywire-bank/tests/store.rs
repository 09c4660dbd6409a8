//! The authority ledger's contract, run against every backend: in-memory
//! SQLite, an SQLite file and PostgreSQL (a real server from
//! `paywire_testkit`; these tests fail without PostgreSQL unless
//! `PAYWIRE_SKIP_POSTGRES=1`). Concurrency is tested with two store
//! instances (two pools, or two SQLite handles) on one database.

use std::collections::BTreeSet;
use std::sync::Arc;

use paywire_bank::money::Currency;
use paywire_bank::store::postgres::PgAuthorityStore;
use paywire_bank::store::sqlite::SqliteAuthorityStore;
use paywire_bank::store::{
    self, AuthorityStore, AuthorizeOutcome, BundleStatus, HoldStatus, Mandate, NewBundle, NewHold,
    NewPurchase, ReturnOutcome, SettleCharge, SettleOutcome,
};
use paywire_testkit::postgres::PgCluster;
use tokio::task::JoinSet;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const T0: u64 = 1_800_000_000;

fn digest(tag: u8) -> [u8; 32] {
    [tag; 32]
}

/// A bundle of `currency` with `credits` spendable at once (one purchase
/// over one mandate of `rail`).
async fn funded(
    store: &dyn AuthorityStore,
    id: &str,
    currency: Currency,
    credits: u64,
) -> TestResult {
    store
        .create_bundle(NewBundle {
            id: id.into(),
            currency,
            credential_digest: digest_of(id),
            expires_at: None,
            now: T0,
        })
        .await?;
    let rail = if currency == Currency::Eur {
        "sepa"
    } else {
        "ach"
    };
    store
        .save_mandate(Mandate {
            id: format!("mdt_{id}"),
            bundle_id: id.into(),
            rail: rail.into(),
            details: r#"{"iban":"DE89370400440532013000"}"#.into(),
            off_session: true,
            created_at: T0,
        })
        .await?;
    if credits > 0 {
        let bought = store
            .purchase(purchase(id, &format!("pur_{id}"), credits, credits))
            .await?;
        assert!(bought, "purchase refused");
    }
    Ok(())
}

fn digest_of(id: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (slot, byte) in out.iter_mut().zip(id.bytes().cycle()) {
        *slot = byte;
    }
    out
}

fn purchase(bundle: &str, id: &str, credits: u64, now_spendable: u64) -> NewPurchase {
    NewPurchase {
        id: id.into(),
        bundle_id: bundle.into(),
        mandate_id: format!("mdt_{bundle}"),
        credits,
        price: credits,
        currency: Currency::Eur,
        spendable_now: now_spendable,
        spendable_at: T0 + 500,
        now: T0,
    }
}

fn hold(bundle: &str, key: &str, tag: u8, jti: &str, amount: u64) -> NewHold {
    NewHold {
        bundle_id: bundle.into(),
        idempotency_key: key.into(),
        params_digest: digest(tag),
        jti: jti.into(),
        amount,
        currency: Currency::Eur,
        audience: "https://shop.example".into(),
        attestation: format!("att.{jti}"),
        hold_exp: T0 + 100,
        now: T0,
    }
}

fn charge(jti: &str, amount: u64, tag: u8, now: u64) -> SettleCharge {
    SettleCharge {
        jti: jti.into(),
        charge: amount,
        params_digest: digest(tag),
        now,
    }
}

/// (balance, pending, held) of a bundle.
async fn money(
    store: &dyn AuthorityStore,
    id: &str,
) -> Result<(u64, u64, u64), Box<dyn std::error::Error + Send + Sync>> {
    let bundle = store.bundle(id).await?.ok_or("no bundle")?;
    Ok((bundle.balance, bundle.pending, bundle.held))
}

async fn authorize_semantics(store: &dyn AuthorityStore) -> TestResult {
    funded(store, "bdl_auth", Currency::Eur, 1000).await?;
    let first = store
        .authorize(hold("bdl_auth", "k1", 1, "j1", 300))
        .await?;
    assert_eq!(first, AuthorizeOutcome::Created);
    assert_eq!(money(store, "bdl_auth").await?, (700, 0, 300));
    // Same key, same parameters: the first attestation, nothing decremented.
    let replay = store
        .authorize(hold("bdl_auth", "k1", 1, "j1b", 300))
        .await?;
    assert_eq!(
        replay,
        AuthorizeOutcome::Replayed {
            attestation: "att.j1".into()
        }
    );
    assert!(store.hold("j1b").await?.is_none(), "a replay minted a hold");
    // Same key, other parameters.
    let conflict = store
        .authorize(hold("bdl_auth", "k1", 2, "j1c", 10))
        .await?;
    assert_eq!(conflict, AuthorizeOutcome::Conflict);
    assert_eq!(money(store, "bdl_auth").await?, (700, 0, 300));
    // Not enough, other currency, unknown bundle.
    let short = store
        .authorize(hold("bdl_auth", "k2", 1, "j2", 701))
        .await?;
    assert_eq!(short, AuthorizeOutcome::Insufficient { balance: 700 });
    let mut usd = hold("bdl_auth", "k3", 1, "j3", 1);
    usd.currency = Currency::Usd;
    assert_eq!(
        store.authorize(usd).await?,
        AuthorizeOutcome::CurrencyMismatch
    );
    let unknown = store.authorize(hold("bdl_nope", "k1", 1, "j4", 1)).await?;
    assert_eq!(unknown, AuthorizeOutcome::NotFound);
    // Amounts over the largest handled are refused, not wrapped.
    let huge = hold(
        "bdl_auth",
        "k4",
        1,
        "j4",
        paywire_bank::money::MAX_MINOR + 1,
    );
    assert!(store.authorize(huge).await.is_err());
    assert!(store.settle(charge("j1", u64::MAX, 1, T0)).await.is_err());
    assert_eq!(money(store, "bdl_auth").await?, (700, 0, 300));
    // Exactly the balance is fine, never below zero.
    assert_eq!(
        store
            .authorize(hold("bdl_auth", "k5", 1, "j5", 700))
            .await?,
        AuthorizeOutcome::Created
    );
    assert_eq!(money(store, "bdl_auth").await?, (0, 0, 1000));
    Ok(())
}

/// Continues [`authorize_semantics`]: key bindings outlive their holds.
async fn bindings_outlive_holds(store: &dyn AuthorityStore) -> TestResult {
    // The binding outlives the hold: settled, then replayed.
    let settled = store.settle(charge("j1", 100, 9, T0 + 10)).await?;
    assert!(matches!(settled, SettleOutcome::Settled(_)));
    assert_eq!(money(store, "bdl_auth").await?, (200, 0, 700));
    let later = store
        .authorize(hold("bdl_auth", "k1", 1, "j1d", 300))
        .await?;
    assert_eq!(
        later,
        AuthorizeOutcome::Replayed {
            attestation: "att.j1".into()
        }
    );
    assert_eq!(money(store, "bdl_auth").await?, (200, 0, 700));
    // Expired too.
    assert_eq!(store.release_expired(T0 + 100).await?, 1);
    let expired = store
        .authorize(hold("bdl_auth", "k5", 1, "j5b", 700))
        .await?;
    assert_eq!(
        expired,
        AuthorizeOutcome::Replayed {
            attestation: "att.j5".into()
        }
    );
    assert_eq!(money(store, "bdl_auth").await?, (900, 0, 0));
    // Frozen.
    assert!(store.freeze("bdl_auth", "principal", T0).await?);
    assert_eq!(
        store.authorize(hold("bdl_auth", "k6", 1, "j6", 1)).await?,
        AuthorizeOutcome::Frozen
    );
    Ok(())
}

async fn settle_semantics(store: &dyn AuthorityStore) -> TestResult {
    funded(store, "bdl_set", Currency::Eur, 1000).await?;
    store.authorize(hold("bdl_set", "a", 1, "s1", 300)).await?;
    // Over the hold: nothing changes.
    assert_eq!(
        store.settle(charge("s1", 301, 7, T0 + 1)).await?,
        SettleOutcome::OverHold
    );
    assert_eq!(
        store.hold("s1").await?.ok_or("no hold")?.status,
        HoldStatus::Open
    );
    assert_eq!(money(store, "bdl_set").await?, (700, 0, 300));
    // The last second before hold_exp is still in the window.
    let SettleOutcome::Settled(settled) = store.settle(charge("s1", 120, 7, T0 + 99)).await? else {
        return Err("not settled".into());
    };
    assert_eq!(settled.status, HoldStatus::Settled);
    assert_eq!(settled.charged, Some(120));
    assert_eq!(settled.settle_digest, Some(digest(7)));
    assert_eq!(settled.balance_after, Some(880));
    assert_eq!(settled.settled_at, Some(T0 + 99));
    assert_eq!(money(store, "bdl_set").await?, (880, 0, 0));
    // Repeat with the same digest: the same hold; another digest: conflict.
    let again = store.settle(charge("s1", 120, 7, T0 + 500)).await?;
    assert_eq!(again, SettleOutcome::Repeated(settled.clone()));
    assert_eq!(
        store.settle(charge("s1", 50, 8, T0 + 2)).await?,
        SettleOutcome::Conflict
    );
    assert_eq!(money(store, "bdl_set").await?, (880, 0, 0));
    assert_eq!(
        store.settle(charge("nope", 1, 7, T0)).await?,
        SettleOutcome::Unknown
    );
    // At hold_exp (when the sweeper releases it too): released and
    // refused, then refused again.
    store.authorize(hold("bdl_set", "b", 1, "s2", 200)).await?;
    assert_eq!(money(store, "bdl_set").await?, (680, 0, 200));
    assert_eq!(
        store.settle(charge("s2", 10, 7, T0 + 100)).await?,
        SettleOutcome::HoldExpired
    );
    assert_eq!(
        store.hold("s2").await?.ok_or("no hold")?.status,
        HoldStatus::Expired
    );
    assert_eq!(money(store, "bdl_set").await?, (880, 0, 0));
    assert_eq!(
        store.settle(charge("s2", 10, 7, T0 + 1)).await?,
        SettleOutcome::HoldExpired
    );
    assert_eq!(money(store, "bdl_set").await?, (880, 0, 0));
    // Revoked: released; a settled hold cannot be revoked.
    store.authorize(hold("bdl_set", "c", 1, "s3", 80)).await?;
    assert!(store.revoke("s3", T0 + 3).await?);
    assert!(!store.revoke("s3", T0 + 3).await?);
    assert!(!store.revoke("s1", T0 + 3).await?);
    assert!(!store.revoke("nope", T0 + 3).await?);
    assert_eq!(
        store.settle(charge("s3", 10, 7, T0 + 4)).await?,
        SettleOutcome::Revoked
    );
    assert_eq!(money(store, "bdl_set").await?, (880, 0, 0));
    // A zero charge releases everything.
    store.authorize(hold("bdl_set", "d", 1, "s4", 80)).await?;
    let SettleOutcome::Settled(zero) = store.settle(charge("s4", 0, 7, T0 + 5)).await? else {
        return Err("not settled".into());
    };
    assert_eq!(zero.charged, Some(0));
    assert_eq!(money(store, "bdl_set").await?, (880, 0, 0));
    Ok(())
}

async fn expiry_freeze_credentials(store: &dyn AuthorityStore) -> TestResult {
    funded(store, "bdl_exp", Currency::Eur, 1000).await?;
    let mut early = hold("bdl_exp", "e1", 1, "x1", 100);
    early.hold_exp = T0 + 50;
    store.authorize(early).await?;
    store.authorize(hold("bdl_exp", "e2", 1, "x2", 200)).await?;
    assert_eq!(store.release_expired(T0 + 49).await?, 0);
    assert_eq!(store.release_expired(T0 + 50).await?, 1);
    assert_eq!(store.release_expired(T0 + 50).await?, 0);
    assert_eq!(
        store.hold("x1").await?.ok_or("no hold")?.status,
        HoldStatus::Expired
    );
    assert_eq!(
        store.hold("x2").await?.ok_or("no hold")?.status,
        HoldStatus::Open
    );
    assert_eq!(money(store, "bdl_exp").await?, (800, 0, 200));
    // Credentials open their bundle only.
    let found = store
        .bundle_by_credential(digest_of("bdl_exp"))
        .await?
        .ok_or("not found")?;
    assert_eq!(found.id, "bdl_exp");
    assert_eq!(found.currency, Currency::Eur);
    assert!(store.bundle_by_credential(digest(0xee)).await?.is_none());
    // Freezing keeps the first reason.
    assert!(!store.freeze("bdl_nope", "principal", T0).await?);
    assert!(store.freeze("bdl_exp", "principal", T0).await?);
    assert!(store.freeze("bdl_exp", "other", T0).await?);
    let frozen = store.bundle("bdl_exp").await?.ok_or("no bundle")?;
    assert_eq!(frozen.status, BundleStatus::Frozen);
    assert_eq!(frozen.frozen_reason.as_deref(), Some("principal"));
    assert!(
        !store
            .purchase(purchase("bdl_exp", "pur_frozen", 10, 10))
            .await?
    );
    Ok(())
}

async fn purchases_and_collections(store: &dyn AuthorityStore) -> TestResult {
    funded(store, "bdl_pur", Currency::Eur, 0).await?;
    funded(store, "bdl_usd", Currency::Usd, 0).await?;
    assert!(
        !store
            .purchase(purchase("bdl_none", "pur_x", 10, 10))
            .await?
    );
    assert!(
        store
            .purchase(purchase("bdl_pur", "pur_1", 1000, 400))
            .await?
    );
    assert_eq!(money(store, "bdl_pur").await?, (400, 600, 0));
    // A debit never put in a collection file cannot be returned: its
    // credits stay pending past their date until it is collected.
    store.mature_purchases(T0 + 500).await?;
    assert_eq!(money(store, "bdl_pur").await?, (400, 600, 0));
    let mut dollars = purchase("bdl_usd", "pur_usd", 500, 500);
    dollars.currency = Currency::Usd;
    assert!(store.purchase(dollars).await?);
    assert!(
        store
            .purchase(purchase("bdl_pur", "pur_2", 300, 300))
            .await?
    );
    let mandate = store.mandate("mdt_bdl_pur").await?.ok_or("no mandate")?;
    assert_eq!(mandate.rail, "sepa");
    assert!(mandate.details.contains("DE89"));
    assert!(
        !format!("{mandate:?}").contains("DE89"),
        "Debug shows bank details"
    );
    // Claims: by rail and currency, each purchase once.
    let sepa = store
        .claim_collection("col_1", "sepa", Currency::Eur, T0 + 1)
        .await?;
    // (Earlier purchases of this database are claimed along.)
    let sepa: Vec<_> = sepa
        .into_iter()
        .filter(|e| e.bundle_id == "bdl_pur")
        .collect();
    let ids: Vec<_> = sepa.iter().map(|e| e.purchase_id.as_str()).collect();
    assert_eq!(ids, ["pur_1", "pur_2"]);
    assert_eq!(sepa[0].price, 1000);
    assert_eq!(sepa[0].mandate, mandate);
    // Claimed but its file not written: still nothing matures.
    store.mature_purchases(T0 + 500).await?;
    assert_eq!(money(store, "bdl_pur").await?, (700, 600, 0));
    // Written: maturity counts from the collection when that is later
    // than the purchase's own date; once, and a second mark changes nothing.
    assert!(store.collection_written("col_1", T0 + 600, T0 + 1).await? >= 2);
    assert_eq!(
        store
            .collection_written("col_1", T0 + 9_000, T0 + 2)
            .await?,
        0
    );
    store.mature_purchases(T0 + 599).await?;
    assert_eq!(money(store, "bdl_pur").await?, (700, 600, 0));
    assert!(store.mature_purchases(T0 + 600).await? >= 1);
    assert_eq!(store.mature_purchases(T0 + 900).await?, 0);
    assert_eq!(money(store, "bdl_pur").await?, (1300, 0, 0));
    assert!(
        store
            .claim_collection("col_2", "sepa", Currency::Eur, T0 + 2)
            .await?
            .is_empty()
    );
    assert!(
        store
            .claim_collection("col_3", "ach", Currency::Eur, T0 + 2)
            .await?
            .is_empty()
    );
    let ach = store
        .claim_collection("col_4", "ach", Currency::Usd, T0 + 2)
        .await?;
    assert_eq!(ach.len(), 1);
    assert_eq!(ach[0].currency, Currency::Usd);
    Ok(())
}

async fn returns(store: &dyn AuthorityStore) -> TestResult {
    // Matured purchase, partly spent: the unspent part comes back, the
    // charged part is the authority's loss.
    funded(store, "bdl_ret", Currency::Eur, 0).await?;
    assert!(
        store
            .purchase(purchase("bdl_ret", "pur_r1", 1000, 1000))
            .await?
    );
    store.authorize(hold("bdl_ret", "r", 1, "r1", 300)).await?;
    store.settle(charge("r1", 100, 1, T0 + 1)).await?;
    assert_eq!(money(store, "bdl_ret").await?, (900, 0, 0));
    assert_eq!(
        store.record_return("pur_r1", "AM04", T0 + 2).await?,
        ReturnOutcome::Unknown,
        "not collected yet"
    );
    assert_eq!(
        store
            .claim_collection("col_r", "sepa", Currency::Eur, T0 + 2)
            .await?
            .len(),
        1
    );
    let outcome = store.record_return("pur_r1", "AM04", T0 + 3).await?;
    assert_eq!(
        outcome,
        ReturnOutcome::Recorded {
            bundle_id: "bdl_ret".into(),
            returned: 1000,
            loss: 100
        }
    );
    let bundle = store.bundle("bdl_ret").await?.ok_or("no bundle")?;
    assert_eq!((bundle.balance, bundle.pending, bundle.held), (0, 0, 0));
    assert_eq!(bundle.status, BundleStatus::Frozen);
    assert_eq!(bundle.frozen_reason.as_deref(), Some("returned_debit"));
    assert_eq!(
        store.record_return("pur_r1", "AM04", T0 + 4).await?,
        ReturnOutcome::AlreadyReturned
    );
    assert_eq!(
        store.record_return("pur_none", "AM04", T0 + 4).await?,
        ReturnOutcome::Unknown
    );
    // The seller's charge stays payable.
    let paid = store
        .claim_payout("pay_r", Currency::Eur, T0 + 10, T0 + 10)
        .await?;
    assert!(
        paid.iter().any(|c| c.jti == "r1" && c.charged == 100),
        "{paid:?}"
    );
    Ok(())
}

/// Continues [`returns`]: a return before the purchase matured.
async fn return_before_maturity(store: &dyn AuthorityStore) -> TestResult {
    // Not matured, partly held: pending first, then balance, the held part lost.
    funded(store, "bdl_ret2", Currency::Eur, 0).await?;
    assert!(
        store
            .purchase(purchase("bdl_ret2", "pur_r2", 1000, 200))
            .await?
    );
    store.authorize(hold("bdl_ret2", "r", 1, "r2", 150)).await?;
    assert_eq!(money(store, "bdl_ret2").await?, (50, 800, 150));
    store
        .claim_collection("col_r2", "sepa", Currency::Eur, T0 + 2)
        .await?;
    let second = store.record_return("pur_r2", "MD06", T0 + 3).await?;
    assert_eq!(
        second,
        ReturnOutcome::Recorded {
            bundle_id: "bdl_ret2".into(),
            returned: 1000,
            loss: 150
        }
    );
    assert_eq!(money(store, "bdl_ret2").await?, (0, 0, 150));
    // A returned purchase never matures.
    assert_eq!(store.mature_purchases(T0 + 10_000).await?, 0);
    assert_eq!(store.losses().await?, vec![(Currency::Eur, 250)]);
    Ok(())
}

async fn payouts(store: &dyn AuthorityStore) -> TestResult {
    funded(store, "bdl_pay", Currency::Eur, 1000).await?;
    for (jti, amount, at) in [("p1", 100, 10), ("p2", 0, 20), ("p3", 50, 30)] {
        store.authorize(hold("bdl_pay", jti, 1, jti, 100)).await?;
        store.settle(charge(jti, amount, 1, T0 + at)).await?;
    }
    store
        .authorize(hold("bdl_pay", "open", 1, "p4", 100))
        .await?;
    let first = store
        .claim_payout("pay_1", Currency::Eur, T0 + 20, T0 + 40)
        .await?;
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].jti.as_str(), first[0].charged, first[0].settled_at),
        ("p1", 100, T0 + 10)
    );
    assert_eq!(first[0].audience, "https://shop.example");
    assert!(
        store
            .claim_payout("pay_usd", Currency::Usd, T0 + 90, T0 + 40)
            .await?
            .is_empty()
    );
    let second = store
        .claim_payout("pay_2", Currency::Eur, T0 + 90, T0 + 40)
        .await?;
    assert_eq!(
        second.iter().map(|c| c.jti.as_str()).collect::<Vec<_>>(),
        ["p3"]
    );
    assert!(
        store
            .claim_payout("pay_3", Currency::Eur, T0 + 90, T0 + 40)
            .await?
            .is_empty()
    );
    Ok(())
}

/// Every semantic of the contract, on a fresh database.
async fn conformance(store: &dyn AuthorityStore) -> TestResult {
    authorize_semantics(store).await?;
    bindings_outlive_holds(store).await?;
    settle_semantics(store).await?;
    expiry_freeze_credentials(store).await?;
    purchases_and_collections(store).await?;
    returns(store).await?;
    return_before_maturity(store).await?;
    payouts(store).await?;
    Ok(())
}

/// Two instances on one database, racing.
async fn concurrency(a: Arc<dyn AuthorityStore>, b: Arc<dyn AuthorityStore>) -> TestResult {
    let stores = [a, b];
    same_key(&stores).await?;
    distinct_keys(&stores).await?;
    one_jti(&stores).await?;
    claims(&stores).await?;
    expiry_races(&stores).await?;
    maturity_and_return_races(&stores).await?;
    Ok(())
}

async fn same_key(stores: &[Arc<dyn AuthorityStore>; 2]) -> TestResult {
    funded(&*stores[0], "bdl_c1", Currency::Eur, 1000).await?;
    let mut set = JoinSet::new();
    for i in 0..50 {
        let store = Arc::clone(&stores[i % 2]);
        set.spawn(async move {
            store
                .authorize(hold("bdl_c1", "same", 1, &format!("c1_{i}"), 100))
                .await
        });
    }
    let mut created = Vec::new();
    let mut attestations = BTreeSet::new();
    while let Some(answer) = set.join_next().await {
        match answer?? {
            AuthorizeOutcome::Created => created.push(()),
            AuthorizeOutcome::Replayed { attestation } => {
                attestations.insert(attestation);
            }
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    assert_eq!(created.len(), 1);
    assert_eq!(attestations.len(), 1, "replays disagree: {attestations:?}");
    let attestation = attestations.into_iter().next().ok_or("no replay")?;
    let jti = attestation.strip_prefix("att.").ok_or("attestation")?;
    assert!(
        stores[1].hold(jti).await?.is_some(),
        "replays carry another attestation"
    );
    assert_eq!(money(&*stores[1], "bdl_c1").await?, (900, 0, 100));
    Ok(())
}

async fn distinct_keys(stores: &[Arc<dyn AuthorityStore>; 2]) -> TestResult {
    funded(&*stores[0], "bdl_c2", Currency::Eur, 2000).await?;
    let mut set = JoinSet::new();
    for i in 0..50 {
        let store = Arc::clone(&stores[i % 2]);
        set.spawn(async move {
            store
                .authorize(hold("bdl_c2", &format!("k{i}"), 1, &format!("c2_{i}"), 100))
                .await
        });
    }
    let (mut created, mut short) = (0, 0);
    while let Some(answer) = set.join_next().await {
        match answer?? {
            AuthorizeOutcome::Created => created += 1,
            AuthorizeOutcome::Insufficient { .. } => short += 1,
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    assert_eq!((created, short), (20, 30));
    assert_eq!(money(&*stores[1], "bdl_c2").await?, (0, 0, 2000));
    Ok(())
}

async fn one_jti(stores: &[Arc<dyn AuthorityStore>; 2]) -> TestResult {
    funded(&*stores[0], "bdl_c3", Currency::Eur, 1000).await?;
    stores[0]
        .authorize(hold("bdl_c3", "one", 1, "c3", 500))
        .await?;
    let mut set = JoinSet::new();
    for i in 0..20u8 {
        let store = Arc::clone(&stores[usize::from(i % 2)]);
        // Two parameter sets: charge 100 (tag 1) or charge 200 (tag 2).
        let tag = 1 + i % 4 / 2;
        set.spawn(async move {
            (
                tag,
                store
                    .settle(charge("c3", u64::from(tag) * 100, tag, T0 + 1))
                    .await,
            )
        });
    }
    let mut outcomes = Vec::new();
    while let Some(answer) = set.join_next().await {
        let (tag, outcome) = answer?;
        outcomes.push((tag, outcome?));
    }
    let winners: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, SettleOutcome::Settled(_)))
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winning_tag = winners[0].0;
    for (tag, outcome) in &outcomes {
        match outcome {
            SettleOutcome::Settled(_) => {}
            SettleOutcome::Repeated(_) => assert_eq!(*tag, winning_tag),
            SettleOutcome::Conflict => assert_ne!(*tag, winning_tag),
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    let charged = u64::from(winning_tag) * 100;
    assert_eq!(money(&*stores[1], "bdl_c3").await?, (1000 - charged, 0, 0));
    Ok(())
}

async fn claims(stores: &[Arc<dyn AuthorityStore>; 2]) -> TestResult {
    funded(&*stores[0], "bdl_c4", Currency::Eur, 0).await?;
    for i in 0..40 {
        assert!(
            stores[i % 2]
                .purchase(purchase("bdl_c4", &format!("pur_c4_{i:02}"), 100, 100))
                .await?
        );
        stores[i % 2]
            .authorize(hold("bdl_c4", &format!("k{i}"), 1, &format!("c4_{i}"), 50))
            .await?;
        stores[i % 2]
            .settle(charge(&format!("c4_{i}"), 10, 1, T0 + 1))
            .await?;
    }
    let mut set = JoinSet::new();
    for i in 0..6 {
        let store = Arc::clone(&stores[i % 2]);
        set.spawn(async move {
            let collected = store
                .claim_collection(&format!("col_{i}"), "sepa", Currency::Eur, T0 + 2)
                .await?;
            let paid = store
                .claim_payout(&format!("pay_{i}"), Currency::Eur, T0 + 1, T0 + 2)
                .await?;
            Ok::<_, store::StoreError>((
                collected
                    .into_iter()
                    .map(|e| e.purchase_id)
                    .collect::<Vec<_>>(),
                paid.into_iter().map(|c| c.jti).collect::<Vec<_>>(),
            ))
        });
    }
    let (mut collected, mut paid) = (Vec::new(), Vec::new());
    while let Some(answer) = set.join_next().await {
        let (c, p) = answer??;
        // (Purchases and charges of the earlier races are claimed along.)
        collected.extend(c.into_iter().filter(|id| id.starts_with("pur_c4_")));
        paid.extend(p.into_iter().filter(|jti| jti.starts_with("c4_")));
    }
    let collected_set: BTreeSet<_> = collected.iter().cloned().collect();
    let paid_set: BTreeSet<_> = paid.iter().cloned().collect();
    assert_eq!(collected.len(), 40, "a purchase in two batches, or missing");
    assert_eq!(collected_set.len(), 40);
    assert_eq!(paid.len(), 40, "a charge in two batches, or missing");
    assert_eq!(paid_set.len(), 40);
    Ok(())
}

/// Settles racing `release_expired` and each other, on both instances:
/// every hold ends settled or expired, once, and the money adds up.
async fn expiry_races(stores: &[Arc<dyn AuthorityStore>; 2]) -> TestResult {
    funded(&*stores[0], "bdl_c5", Currency::Eur, 3000).await?;
    for i in 0..30 {
        let mut new = hold("bdl_c5", &format!("k{i}"), 1, &format!("c5_{i}"), 100);
        new.hold_exp = T0 + 10;
        stores[i % 2].authorize(new).await?;
    }
    let mut set = JoinSet::new();
    for i in 0..30 {
        let store = Arc::clone(&stores[i % 2]);
        // At hold_exp a settle is still in time; release_expired at
        // hold_exp releases: whichever commits first wins.
        set.spawn(async move {
            let outcome = store
                .settle(charge(&format!("c5_{i}"), 30, 1, T0 + 10))
                .await?;
            Ok::<_, store::StoreError>(matches!(outcome, SettleOutcome::Settled(_)))
        });
        if i % 5 == 0 {
            let store = Arc::clone(&stores[(i + 1) % 2]);
            set.spawn(async move { Ok(store.release_expired(T0 + 10).await? > 1_000) });
        }
    }
    while let Some(answer) = set.join_next().await {
        answer??;
    }
    let mut settled = 0;
    for i in 0..30 {
        let held = stores[0].hold(&format!("c5_{i}")).await?.ok_or("no hold")?;
        match held.status {
            HoldStatus::Settled => settled += 1,
            HoldStatus::Expired => {}
            other => return Err(format!("hold {i} ended {other:?}").into()),
        }
    }
    assert_eq!(
        money(&*stores[1], "bdl_c5").await?,
        (3000 - 30 * settled, 0, 0)
    );
    Ok(())
}

/// Two instances maturing purchases at once credit each exactly once;
/// two imports of one return record it once.
async fn maturity_and_return_races(stores: &[Arc<dyn AuthorityStore>; 2]) -> TestResult {
    funded(&*stores[0], "bdl_c6", Currency::Eur, 0).await?;
    for i in 0..20 {
        let bought = stores[0].purchase(purchase("bdl_c6", &format!("pur_c6_{i:02}"), 100, 10));
        assert!(bought.await?);
    }
    assert_eq!(money(&*stores[0], "bdl_c6").await?, (200, 1800, 0));
    stores[0]
        .claim_collection("col_c6", "sepa", Currency::Eur, T0 + 1)
        .await?;
    stores[1]
        .collection_written("col_c6", T0 + 500, T0 + 1)
        .await?;
    let mut set = JoinSet::new();
    for i in 0..6 {
        let store = Arc::clone(&stores[i % 2]);
        set.spawn(async move { store.mature_purchases(T0 + 500).await });
    }
    let mut matured = 0;
    while let Some(answer) = set.join_next().await {
        matured += answer??;
    }
    assert_eq!(matured, 20);
    assert_eq!(money(&*stores[1], "bdl_c6").await?, (2000, 0, 0));
    let mut set = JoinSet::new();
    for i in 0..6 {
        let store = Arc::clone(&stores[i % 2]);
        set.spawn(async move { store.record_return("pur_c6_00", "AM04", T0 + 600).await });
    }
    let mut recorded = 0;
    while let Some(answer) = set.join_next().await {
        match answer?? {
            ReturnOutcome::Recorded { loss, .. } => {
                assert_eq!(loss, 0);
                recorded += 1;
            }
            ReturnOutcome::AlreadyReturned => {}
            ReturnOutcome::Unknown => return Err("return unknown".into()),
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(money(&*stores[1], "bdl_c6").await?, (1900, 0, 0));
    Ok(())
}

#[tokio::test]
async fn sqlite_in_memory_conforms() -> TestResult {
    let store = SqliteAuthorityStore::open_in_memory().await?;
    conformance(&store).await
}

#[tokio::test]
async fn sqlite_file_conforms_and_reopens() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bank.sqlite");
    let location = path.to_str().ok_or("path")?;
    let store = store::open(location).await?;
    conformance(&*store).await?;
    drop(store);
    // Everything is on disk, and migrating again is a no-op.
    let again = store::open(location).await?;
    assert_eq!(
        again.hold("j1").await?.ok_or("lost")?.status,
        HoldStatus::Settled
    );
    assert_eq!(again.losses().await?, vec![(Currency::Eur, 250)]);
    Ok(())
}

#[tokio::test]
async fn open_in_memory_by_location() -> TestResult {
    let store = store::open(":memory:").await?;
    assert!(store.bundle("bdl_x").await?.is_none());
    assert!(store::open("").await.is_err());
    assert!(store::open("sqlite://").await.is_err());
    let Err(refused) = store::open("mysql://root:pw@db/bank").await else {
        return Err("mysql accepted".into());
    };
    assert!(!refused.to_string().contains("pw@"), "{refused}");
    // `sqlite://path`, as the facilitator's store setting spells it.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ledger.sqlite");
    let location = format!("sqlite://{}", path.to_str().ok_or("path")?);
    store::open(&location).await?;
    assert!(path.exists(), "sqlite:// not stripped");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_handles_race() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bank.sqlite");
    let a = SqliteAuthorityStore::open(&path).await?;
    let b = SqliteAuthorityStore::open(&path).await?;
    concurrency(Arc::new(a), Arc::new(b)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conforms_and_two_instances_race() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let url = cluster.create_database("bank_conformance").await?;
    let store = store::open(&url).await?;
    conformance(&*store).await?;

    let url = cluster.create_database("bank_race").await?;
    let a = PgAuthorityStore::connect(&url).await?;
    let b = PgAuthorityStore::connect(&url).await?;
    concurrency(Arc::new(a), Arc::new(b)).await
}

#[tokio::test]
async fn postgres_errors_hide_the_password() -> TestResult {
    let Err(error) =
        store::open("postgres://bank:hunter2secret@127.0.0.1:1/bank?connect_timeout=2").await
    else {
        return Err("connected to nothing".into());
    };
    let text = format!("{error} {error:?}");
    assert!(!text.contains("hunter2secret"), "{text}");
    Ok(())
}
