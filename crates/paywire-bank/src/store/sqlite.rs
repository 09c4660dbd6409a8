//! The ledger in SQLite: one file (or memory) behind a [`SqliteHandle`]
//! (one connection on its own thread, WAL, `busy_timeout`). Every
//! read-modify-write runs in a `BEGIN IMMEDIATE` transaction, so several
//! handles (or processes) on one file run each operation one after the
//! other. Schema: paywire-store migrations, component `bank`, tables
//! `bank_*`.

use std::path::Path;

use paywire_store::rusqlite::{
    self, Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params,
};
use paywire_store::sqlite::SqliteHandle;
use paywire_store::{Migration, Migrations};

use super::{
    AuthorityStore, AuthorizeOutcome, Bundle, BundleStatus, CollectionEntry, Hold, HoldStatus,
    Mandate, NewBundle, NewHold, NewPurchase, PayoutCharge, RETURNED_DEBIT, ReturnOutcome,
    SettleCharge, SettleOutcome, StoreError, StoreFuture, currency_from_db, digest_from_db,
    from_db, from_db_opt, in_range, take_back, to_db, to_db_opt,
};
use crate::money::Currency;

// 1: bundles, credentials, holds (with their idempotency bindings),
// mandates and purchases.
const V1: &str = r"
CREATE TABLE bank_bundles (
    id            TEXT PRIMARY KEY NOT NULL,
    currency      TEXT NOT NULL,
    balance       INTEGER NOT NULL CHECK (balance >= 0),
    pending       INTEGER NOT NULL CHECK (pending >= 0),
    held          INTEGER NOT NULL CHECK (held >= 0),
    status        TEXT NOT NULL,
    frozen_reason TEXT,
    expires_at    INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE bank_credentials (
    digest     BLOB PRIMARY KEY NOT NULL,
    bundle_id  TEXT NOT NULL REFERENCES bank_bundles(id),
    created_at INTEGER NOT NULL
);
CREATE TABLE bank_holds (
    jti             TEXT PRIMARY KEY NOT NULL,
    bundle_id       TEXT NOT NULL REFERENCES bank_bundles(id),
    idempotency_key TEXT NOT NULL,
    params_digest   BLOB NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount >= 0),
    currency        TEXT NOT NULL,
    audience        TEXT NOT NULL,
    attestation     TEXT NOT NULL,
    hold_exp        INTEGER NOT NULL,
    status          TEXT NOT NULL,
    charged         INTEGER,
    settle_digest   BLOB,
    balance_after   INTEGER,
    settled_at      INTEGER,
    payout_batch    TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (bundle_id, idempotency_key)
);
CREATE INDEX bank_holds_open ON bank_holds(hold_exp) WHERE status = 'open';
CREATE INDEX bank_holds_unpaid ON bank_holds(currency, settled_at)
    WHERE status = 'settled' AND payout_batch IS NULL;
CREATE TABLE bank_mandates (
    id          TEXT PRIMARY KEY NOT NULL,
    bundle_id   TEXT NOT NULL REFERENCES bank_bundles(id),
    rail        TEXT NOT NULL,
    details     TEXT NOT NULL,
    off_session INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE bank_purchases (
    id               TEXT PRIMARY KEY NOT NULL,
    bundle_id        TEXT NOT NULL REFERENCES bank_bundles(id),
    mandate_id       TEXT NOT NULL REFERENCES bank_mandates(id),
    credits          INTEGER NOT NULL,
    price            INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    pending          INTEGER NOT NULL CHECK (pending >= 0),
    spendable_at     INTEGER NOT NULL,
    collection_batch TEXT,
    collected_at     INTEGER,
    collection_written_at INTEGER,
    returned_at      INTEGER,
    return_reason    TEXT,
    recovered        INTEGER,
    loss             INTEGER,
    created_at       INTEGER NOT NULL
);
CREATE INDEX bank_purchases_uncollected ON bank_purchases(currency)
    WHERE collection_batch IS NULL;
CREATE INDEX bank_purchases_batch ON bank_purchases(collection_batch);
";

/// The bank ledger's SQLite migrations (component `bank`).
const MIGRATIONS: Migrations = Migrations::new("bank", &[Migration::new(1, "ledger", V1)]);

const BUNDLE_COLUMNS: &str = "id, currency, balance, pending, held, status, frozen_reason, \
                              expires_at, created_at";
const HOLD_COLUMNS: &str = "jti, bundle_id, amount, currency, audience, hold_exp, status, \
                            charged, settle_digest, balance_after, settled_at";

/// A failure inside a closure: SQLite's, or a decoding one.
enum Fail {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(error)
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<paywire_store::StoreError> for Fail {
    fn from(error: paywire_store::StoreError) -> Self {
        Self::Store(error.into())
    }
}

impl From<Fail> for StoreError {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Sql(error) => StoreError::Database(format!("sqlite: {error}")),
            Fail::Store(error) => error,
        }
    }
}

type Done<T> = Result<T, Fail>;

/// The SQLite ledger. Cheap to clone; queries run on the handle's thread.
#[derive(Clone)]
pub struct SqliteAuthorityStore {
    db: SqliteHandle,
}

impl std::fmt::Debug for SqliteAuthorityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAuthorityStore")
            .finish_non_exhaustive()
    }
}

impl SqliteAuthorityStore {
    /// Opens (creating if needed) the ledger file at `path` and migrates it.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::with_handle(SqliteHandle::open(path).await?).await
    }

    /// An in-memory ledger (tests, demos): gone with the store.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        Self::with_handle(SqliteHandle::open_in_memory().await?).await
    }

    /// A ledger over an open handle, migrated.
    pub async fn with_handle(db: SqliteHandle) -> Result<Self, StoreError> {
        db.migrate(&MIGRATIONS).await?;
        Ok(Self { db })
    }

    /// Runs `work` in a `BEGIN IMMEDIATE` transaction on the handle's
    /// thread, committed when it answers `Ok`, rolled back otherwise.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Done<T> + Send + 'static,
        T: Send + 'static,
    {
        self.db
            .call_and_then(move |connection: &mut Connection| {
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = work(&tx)?;
                tx.commit()?;
                Ok(value)
            })
            .await
            .map_err(|fail: Fail| fail.into())
    }

    /// Runs a read on the handle's thread.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Done<T> + Send + 'static,
        T: Send + 'static,
    {
        self.db
            .call_and_then(move |connection: &mut Connection| work(connection))
            .await
            .map_err(|fail: Fail| fail.into())
    }
}

/// A bundle row (selected with [`BUNDLE_COLUMNS`]), raw.
type BundleRow = (
    String,
    String,
    i64,
    i64,
    i64,
    String,
    Option<String>,
    Option<i64>,
    i64,
);

fn bundle_row(row: &Row<'_>) -> rusqlite::Result<BundleRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn decode_bundle(raw: BundleRow) -> Result<Bundle, StoreError> {
    let (id, currency, balance, pending, held, status, frozen_reason, expires_at, created_at) = raw;
    Ok(Bundle {
        id,
        currency: currency_from_db(&currency)?,
        balance: from_db(balance, "balance")?,
        pending: from_db(pending, "pending")?,
        held: from_db(held, "held")?,
        status: BundleStatus::from_db(&status)?,
        frozen_reason,
        expires_at: from_db_opt(expires_at, "expires_at")?,
        created_at: from_db(created_at, "created_at")?,
    })
}

fn read_bundle(connection: &Connection, id: &str) -> Done<Option<Bundle>> {
    let raw = connection
        .query_row(
            &format!("SELECT {BUNDLE_COLUMNS} FROM bank_bundles WHERE id = ?1"),
            params![id],
            bundle_row,
        )
        .optional()?;
    Ok(raw.map(decode_bundle).transpose()?)
}

/// A hold row (selected with [`HOLD_COLUMNS`]), raw.
struct HoldRow {
    jti: String,
    bundle_id: String,
    amount: i64,
    currency: String,
    audience: String,
    hold_exp: i64,
    status: String,
    charged: Option<i64>,
    settle_digest: Option<Vec<u8>>,
    balance_after: Option<i64>,
    settled_at: Option<i64>,
}

fn hold_row(row: &Row<'_>) -> rusqlite::Result<HoldRow> {
    Ok(HoldRow {
        jti: row.get(0)?,
        bundle_id: row.get(1)?,
        amount: row.get(2)?,
        currency: row.get(3)?,
        audience: row.get(4)?,
        hold_exp: row.get(5)?,
        status: row.get(6)?,
        charged: row.get(7)?,
        settle_digest: row.get(8)?,
        balance_after: row.get(9)?,
        settled_at: row.get(10)?,
    })
}

fn decode_hold(raw: HoldRow) -> Result<Hold, StoreError> {
    Ok(Hold {
        jti: raw.jti,
        bundle_id: raw.bundle_id,
        amount: from_db(raw.amount, "amount")?,
        currency: currency_from_db(&raw.currency)?,
        audience: raw.audience,
        hold_exp: from_db(raw.hold_exp, "hold_exp")?,
        status: HoldStatus::from_db(&raw.status)?,
        charged: from_db_opt(raw.charged, "charged")?,
        settle_digest: raw
            .settle_digest
            .as_deref()
            .map(digest_from_db)
            .transpose()?,
        balance_after: from_db_opt(raw.balance_after, "balance_after")?,
        settled_at: from_db_opt(raw.settled_at, "settled_at")?,
    })
}

fn read_hold(connection: &Connection, jti: &str) -> Done<Option<Hold>> {
    let raw = connection
        .query_row(
            &format!("SELECT {HOLD_COLUMNS} FROM bank_holds WHERE jti = ?1"),
            params![jti],
            hold_row,
        )
        .optional()?;
    Ok(raw.map(decode_hold).transpose()?)
}

/// Ends an open hold as `status` (expired or revoked), its amount back to
/// the bundle's balance.
fn release(tx: &Transaction<'_>, hold: &Hold, status: HoldStatus, now: u64) -> Done<()> {
    let amount = to_db(hold.amount)?;
    tx.execute(
        "UPDATE bank_bundles SET held = held - ?1, balance = balance + ?1, updated_at = ?2
          WHERE id = ?3",
        params![amount, to_db(now)?, hold.bundle_id],
    )?;
    tx.execute(
        "UPDATE bank_holds SET status = ?1, updated_at = ?2 WHERE jti = ?3 AND status = 'open'",
        params![status.as_db(), to_db(now)?, hold.jti],
    )?;
    Ok(())
}

fn authorize(tx: &Transaction<'_>, hold: &NewHold) -> Done<AuthorizeOutcome> {
    in_range(&[hold.amount, hold.hold_exp, hold.now])?;
    let bound: Option<(Vec<u8>, String)> = tx
        .query_row(
            "SELECT params_digest, attestation FROM bank_holds
              WHERE bundle_id = ?1 AND idempotency_key = ?2",
            params![hold.bundle_id, hold.idempotency_key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((digest, attestation)) = bound {
        return Ok(if digest == hold.params_digest {
            AuthorizeOutcome::Replayed { attestation }
        } else {
            AuthorizeOutcome::Conflict
        });
    }
    let Some(bundle) = read_bundle(tx, &hold.bundle_id)? else {
        return Ok(AuthorizeOutcome::NotFound);
    };
    if bundle.status == BundleStatus::Frozen {
        return Ok(AuthorizeOutcome::Frozen);
    }
    if bundle.currency != hold.currency {
        return Ok(AuthorizeOutcome::CurrencyMismatch);
    }
    if bundle.balance < hold.amount {
        return Ok(AuthorizeOutcome::Insufficient {
            balance: bundle.balance,
        });
    }
    let now = to_db(hold.now)?;
    tx.execute(
        "INSERT INTO bank_holds (jti, bundle_id, idempotency_key, params_digest, amount,
             currency, audience, attestation, hold_exp, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'open', ?10, ?10)",
        params![
            hold.jti,
            hold.bundle_id,
            hold.idempotency_key,
            &hold.params_digest[..],
            to_db(hold.amount)?,
            hold.currency.code(),
            hold.audience,
            hold.attestation,
            to_db(hold.hold_exp)?,
            now,
        ],
    )?;
    tx.execute(
        "UPDATE bank_bundles SET balance = balance - ?1, held = held + ?1, updated_at = ?2
          WHERE id = ?3",
        params![to_db(hold.amount)?, now, hold.bundle_id],
    )?;
    Ok(AuthorizeOutcome::Created)
}

fn settle(tx: &Transaction<'_>, charge: &SettleCharge) -> Done<SettleOutcome> {
    in_range(&[charge.charge, charge.now])?;
    let Some(hold) = read_hold(tx, &charge.jti)? else {
        return Ok(SettleOutcome::Unknown);
    };
    match hold.status {
        HoldStatus::Settled if hold.settle_digest == Some(charge.params_digest) => {
            Ok(SettleOutcome::Repeated(hold))
        }
        HoldStatus::Settled => Ok(SettleOutcome::Conflict),
        HoldStatus::Expired => Ok(SettleOutcome::HoldExpired),
        HoldStatus::Revoked => Ok(SettleOutcome::Revoked),
        HoldStatus::Open if charge.now >= hold.hold_exp => {
            release(tx, &hold, HoldStatus::Expired, charge.now)?;
            Ok(SettleOutcome::HoldExpired)
        }
        HoldStatus::Open if charge.charge > hold.amount => Ok(SettleOutcome::OverHold),
        HoldStatus::Open => {
            let now = to_db(charge.now)?;
            let balance_after: i64 = tx.query_row(
                "UPDATE bank_bundles SET held = held - ?1, balance = balance + ?2, updated_at = ?3
                  WHERE id = ?4 RETURNING balance",
                params![
                    to_db(hold.amount)?,
                    to_db(hold.amount - charge.charge)?,
                    now,
                    hold.bundle_id
                ],
                |row| row.get(0),
            )?;
            tx.execute(
                "UPDATE bank_holds SET status = 'settled', charged = ?1, settle_digest = ?2,
                        balance_after = ?3, settled_at = ?4, updated_at = ?4
                  WHERE jti = ?5",
                params![
                    to_db(charge.charge)?,
                    &charge.params_digest[..],
                    balance_after,
                    now,
                    hold.jti
                ],
            )?;
            let settled = read_hold(tx, &hold.jti)?
                .ok_or_else(|| StoreError::Corrupt("settled hold vanished".into()))?;
            Ok(SettleOutcome::Settled(settled))
        }
    }
}

fn release_expired(tx: &Transaction<'_>, now: u64) -> Done<u64> {
    let raws = {
        let mut statement = tx.prepare(&format!(
            "SELECT {HOLD_COLUMNS} FROM bank_holds WHERE status = 'open' AND hold_exp <= ?1
              ORDER BY jti"
        ))?;
        statement
            .query_map(params![to_db(now)?], hold_row)?
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut released = 0;
    for raw in raws {
        release(tx, &decode_hold(raw)?, HoldStatus::Expired, now)?;
        released += 1;
    }
    Ok(released)
}

fn purchase(tx: &Transaction<'_>, purchase: &NewPurchase) -> Done<bool> {
    in_range(&[
        purchase.credits,
        purchase.price,
        purchase.spendable_now,
        purchase.spendable_at,
    ])?;
    let Some(bundle) = read_bundle(tx, &purchase.bundle_id)? else {
        return Ok(false);
    };
    let mandate_bundle: Option<String> = tx
        .query_row(
            "SELECT bundle_id FROM bank_mandates WHERE id = ?1",
            params![purchase.mandate_id],
            |row| row.get(0),
        )
        .optional()?;
    if bundle.status == BundleStatus::Frozen
        || bundle.currency != purchase.currency
        || mandate_bundle.as_deref() != Some(purchase.bundle_id.as_str())
    {
        return Ok(false);
    }
    let now_spendable = purchase.spendable_now.min(purchase.credits);
    let pending = purchase.credits - now_spendable;
    tx.execute(
        "INSERT INTO bank_purchases (id, bundle_id, mandate_id, credits, price, currency,
             pending, spendable_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            purchase.id,
            purchase.bundle_id,
            purchase.mandate_id,
            to_db(purchase.credits)?,
            to_db(purchase.price)?,
            purchase.currency.code(),
            to_db(pending)?,
            to_db(purchase.spendable_at)?,
            to_db(purchase.now)?,
        ],
    )?;
    tx.execute(
        "UPDATE bank_bundles SET balance = balance + ?1, pending = pending + ?2, updated_at = ?3
          WHERE id = ?4",
        params![
            to_db(now_spendable)?,
            to_db(pending)?,
            to_db(purchase.now)?,
            purchase.bundle_id
        ],
    )?;
    Ok(true)
}

fn mature(tx: &Transaction<'_>, now: u64) -> Done<u64> {
    let due: Vec<(String, String, i64)> = {
        let mut statement = tx.prepare(
            "SELECT id, bundle_id, pending FROM bank_purchases
              WHERE pending > 0 AND spendable_at <= ?1 AND returned_at IS NULL
                AND collection_written_at IS NOT NULL ORDER BY id",
        )?;
        statement
            .query_map(params![to_db(now)?], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?
    };
    for (id, bundle_id, pending) in &due {
        tx.execute(
            "UPDATE bank_bundles SET pending = pending - ?1, balance = balance + ?1,
                    updated_at = ?2 WHERE id = ?3",
            params![pending, to_db(now)?, bundle_id],
        )?;
        tx.execute(
            "UPDATE bank_purchases SET pending = 0 WHERE id = ?1",
            params![id],
        )?;
    }
    Ok(due.len() as u64)
}

fn mandate_from(
    row: &Row<'_>,
    at: usize,
) -> rusqlite::Result<(String, String, String, String, bool, i64)> {
    Ok((
        row.get(at)?,
        row.get(at + 1)?,
        row.get(at + 2)?,
        row.get(at + 3)?,
        row.get(at + 4)?,
        row.get(at + 5)?,
    ))
}

fn decode_mandate(raw: (String, String, String, String, bool, i64)) -> Result<Mandate, StoreError> {
    let (id, bundle_id, rail, details, off_session, created_at) = raw;
    Ok(Mandate {
        id,
        bundle_id,
        rail,
        details,
        off_session,
        created_at: from_db(created_at, "created_at")?,
    })
}

fn collection_written(
    tx: &Transaction<'_>,
    batch_id: &str,
    spendable_at: u64,
    now: u64,
) -> Done<u64> {
    let marked = tx.execute(
        "UPDATE bank_purchases SET collection_written_at = ?2,
                spendable_at = MAX(spendable_at, ?3)
          WHERE collection_batch = ?1 AND collection_written_at IS NULL",
        params![batch_id, to_db(now)?, to_db(spendable_at)?],
    )?;
    Ok(u64::try_from(marked).unwrap_or(u64::MAX))
}

fn claim_collection(
    tx: &Transaction<'_>,
    batch_id: &str,
    rail: &str,
    currency: Currency,
    now: u64,
) -> Done<Vec<CollectionEntry>> {
    let raws = {
        let mut statement = tx.prepare(
            "SELECT p.id, p.bundle_id, p.price, p.currency,
                    m.id, m.bundle_id, m.rail, m.details, m.off_session, m.created_at
               FROM bank_purchases p JOIN bank_mandates m ON m.id = p.mandate_id
              WHERE m.rail = ?1 AND p.currency = ?2 AND p.collection_batch IS NULL
                AND p.returned_at IS NULL
              ORDER BY p.created_at, p.id",
        )?;
        statement
            .query_map(params![rail, currency.code()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    mandate_from(row, 4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut entries = Vec::with_capacity(raws.len());
    for (purchase_id, bundle_id, price, code, mandate) in raws {
        tx.execute(
            "UPDATE bank_purchases SET collection_batch = ?1, collected_at = ?2 WHERE id = ?3",
            params![batch_id, to_db(now)?, purchase_id],
        )?;
        entries.push(CollectionEntry {
            purchase_id,
            bundle_id,
            price: from_db(price, "price")?,
            currency: currency_from_db(&code)?,
            mandate: decode_mandate(mandate)?,
        });
    }
    Ok(entries)
}

/// A returnable purchase: bundle, credits, price, pending, claimed, returned.
type PurchaseRow = (String, i64, i64, i64, Option<String>, Option<i64>);

fn record_return(
    tx: &Transaction<'_>,
    purchase_id: &str,
    reason: &str,
    now: u64,
) -> Done<ReturnOutcome> {
    let row: Option<PurchaseRow> = tx
        .query_row(
            "SELECT bundle_id, credits, price, pending, collection_batch, returned_at
               FROM bank_purchases WHERE id = ?1",
            params![purchase_id],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            },
        )
        .optional()?;
    let Some((bundle_id, credits, price, pending, batch, returned_at)) = row else {
        return Ok(ReturnOutcome::Unknown);
    };
    if batch.is_none() {
        return Ok(ReturnOutcome::Unknown);
    }
    if returned_at.is_some() {
        return Ok(ReturnOutcome::AlreadyReturned);
    }
    let bundle = read_bundle(tx, &bundle_id)?
        .ok_or_else(|| StoreError::Corrupt("purchase of an unknown bundle".into()))?;
    let take = take_back(
        from_db(credits, "credits")?,
        from_db(pending, "pending")?,
        bundle.pending,
        bundle.balance,
    );
    let now = to_db(now)?;
    tx.execute(
        "UPDATE bank_bundles SET pending = pending - ?1, balance = balance - ?2,
                status = 'frozen', frozen_reason = COALESCE(frozen_reason, ?3), updated_at = ?4
          WHERE id = ?5",
        params![
            to_db(take.from_pending)?,
            to_db(take.from_balance)?,
            RETURNED_DEBIT,
            now,
            bundle_id
        ],
    )?;
    tx.execute(
        "UPDATE bank_purchases SET pending = 0, returned_at = ?1, return_reason = ?2,
                recovered = ?3, loss = ?4 WHERE id = ?5",
        params![
            now,
            reason,
            to_db(take.from_pending + take.from_balance)?,
            to_db(take.loss)?,
            purchase_id
        ],
    )?;
    tracing::warn!(
        bundle = %bundle_id,
        purchase = %purchase_id,
        recovered = take.from_pending + take.from_balance,
        loss = take.loss,
        "returned debit: bundle frozen"
    );
    Ok(ReturnOutcome::Recorded {
        bundle_id,
        returned: from_db(price, "price")?,
        loss: take.loss,
    })
}

fn claim_payout(
    tx: &Transaction<'_>,
    batch_id: &str,
    currency: Currency,
    cutoff: u64,
) -> Done<Vec<PayoutCharge>> {
    let raws: Vec<(String, String, i64, i64)> = {
        let mut statement = tx.prepare(
            "SELECT jti, audience, charged, settled_at FROM bank_holds
              WHERE status = 'settled' AND payout_batch IS NULL AND charged > 0
                AND currency = ?1 AND settled_at <= ?2
              ORDER BY settled_at, jti",
        )?;
        statement
            .query_map(params![currency.code(), to_db(cutoff)?], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut charges = Vec::with_capacity(raws.len());
    for (jti, audience, charged, settled_at) in raws {
        tx.execute(
            "UPDATE bank_holds SET payout_batch = ?1 WHERE jti = ?2",
            params![batch_id, jti],
        )?;
        charges.push(PayoutCharge {
            jti,
            audience,
            charged: from_db(charged, "charged")?,
            currency,
            settled_at: from_db(settled_at, "settled_at")?,
        });
    }
    Ok(charges)
}

impl AuthorityStore for SqliteAuthorityStore {
    fn create_bundle(&self, bundle: NewBundle) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            let now = to_db(bundle.now)?;
            tx.execute(
                "INSERT INTO bank_bundles (id, currency, balance, pending, held, status,
                     expires_at, created_at, updated_at)
                 VALUES (?1, ?2, 0, 0, 0, 'active', ?3, ?4, ?4)",
                params![
                    bundle.id,
                    bundle.currency.code(),
                    to_db_opt(bundle.expires_at)?,
                    now
                ],
            )?;
            tx.execute(
                "INSERT INTO bank_credentials (digest, bundle_id, created_at) VALUES (?1, ?2, ?3)",
                params![&bundle.credential_digest[..], bundle.id, now],
            )?;
            Ok(())
        }))
    }

    fn bundle_by_credential(&self, digest: [u8; 32]) -> StoreFuture<'_, Option<Bundle>> {
        Box::pin(self.read(move |connection| {
            let id: Option<String> = connection
                .query_row(
                    "SELECT bundle_id FROM bank_credentials WHERE digest = ?1",
                    params![&digest[..]],
                    |row| row.get(0),
                )
                .optional()?;
            match id {
                Some(id) => read_bundle(connection, &id),
                None => Ok(None),
            }
        }))
    }

    fn bundle(&self, id: &str) -> StoreFuture<'_, Option<Bundle>> {
        let id = id.to_owned();
        Box::pin(self.read(move |connection| read_bundle(connection, &id)))
    }

    fn authorize(&self, hold: NewHold) -> StoreFuture<'_, AuthorizeOutcome> {
        Box::pin(self.write(move |tx| authorize(tx, &hold)))
    }

    fn hold(&self, jti: &str) -> StoreFuture<'_, Option<Hold>> {
        let jti = jti.to_owned();
        Box::pin(self.read(move |connection| read_hold(connection, &jti)))
    }

    fn settle(&self, charge: SettleCharge) -> StoreFuture<'_, SettleOutcome> {
        Box::pin(self.write(move |tx| settle(tx, &charge)))
    }

    fn release_expired(&self, now: u64) -> StoreFuture<'_, u64> {
        Box::pin(self.write(move |tx| release_expired(tx, now)))
    }

    fn revoke(&self, jti: &str, now: u64) -> StoreFuture<'_, bool> {
        let jti = jti.to_owned();
        Box::pin(self.write(move |tx| match read_hold(tx, &jti)? {
            Some(hold) if hold.status == HoldStatus::Open => {
                release(tx, &hold, HoldStatus::Revoked, now)?;
                Ok(true)
            }
            _ => Ok(false),
        }))
    }

    fn freeze(&self, bundle_id: &str, reason: &str, now: u64) -> StoreFuture<'_, bool> {
        let (bundle_id, reason) = (bundle_id.to_owned(), reason.to_owned());
        Box::pin(self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE bank_bundles SET status = 'frozen',
                        frozen_reason = CASE WHEN status = 'frozen' THEN frozen_reason ELSE ?1 END,
                        updated_at = ?2
                  WHERE id = ?3",
                params![reason, to_db(now)?, bundle_id],
            )?;
            Ok(changed > 0)
        }))
    }

    fn save_mandate(&self, mandate: Mandate) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            tx.execute(
                "INSERT INTO bank_mandates (id, bundle_id, rail, details, off_session, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    mandate.id,
                    mandate.bundle_id,
                    mandate.rail,
                    mandate.details,
                    mandate.off_session,
                    to_db(mandate.created_at)?
                ],
            )?;
            Ok(())
        }))
    }

    fn mandate(&self, id: &str) -> StoreFuture<'_, Option<Mandate>> {
        let id = id.to_owned();
        Box::pin(self.read(move |connection| {
            let raw = connection
                .query_row(
                    "SELECT id, bundle_id, rail, details, off_session, created_at
                       FROM bank_mandates WHERE id = ?1",
                    params![id],
                    |row| mandate_from(row, 0),
                )
                .optional()?;
            Ok(raw.map(decode_mandate).transpose()?)
        }))
    }

    fn purchase(&self, new: NewPurchase) -> StoreFuture<'_, bool> {
        Box::pin(self.write(move |tx| purchase(tx, &new)))
    }

    fn mature_purchases(&self, now: u64) -> StoreFuture<'_, u64> {
        Box::pin(self.write(move |tx| mature(tx, now)))
    }

    fn claim_collection(
        &self,
        batch_id: &str,
        rail: &str,
        currency: Currency,
        now: u64,
    ) -> StoreFuture<'_, Vec<CollectionEntry>> {
        let (batch_id, rail) = (batch_id.to_owned(), rail.to_owned());
        Box::pin(self.write(move |tx| claim_collection(tx, &batch_id, &rail, currency, now)))
    }

    fn collection_written(
        &self,
        batch_id: &str,
        spendable_at: u64,
        now: u64,
    ) -> StoreFuture<'_, u64> {
        let batch_id = batch_id.to_owned();
        Box::pin(self.write(move |tx| collection_written(tx, &batch_id, spendable_at, now)))
    }

    fn record_return(
        &self,
        purchase_id: &str,
        reason: &str,
        now: u64,
    ) -> StoreFuture<'_, ReturnOutcome> {
        let (purchase_id, reason) = (purchase_id.to_owned(), reason.to_owned());
        Box::pin(self.write(move |tx| record_return(tx, &purchase_id, &reason, now)))
    }

    fn claim_payout(
        &self,
        batch_id: &str,
        currency: Currency,
        cutoff: u64,
        _now: u64,
    ) -> StoreFuture<'_, Vec<PayoutCharge>> {
        let batch_id = batch_id.to_owned();
        Box::pin(self.write(move |tx| claim_payout(tx, &batch_id, currency, cutoff)))
    }

    fn losses(&self) -> StoreFuture<'_, Vec<(Currency, u64)>> {
        Box::pin(self.read(|connection| {
            let rows: Vec<(String, i64)> = {
                let mut statement = connection.prepare(
                    "SELECT currency, SUM(loss) FROM bank_purchases
                      WHERE returned_at IS NOT NULL GROUP BY currency HAVING SUM(loss) > 0
                      ORDER BY currency",
                )?;
                statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?
            };
            let mut losses = Vec::with_capacity(rows.len());
            for (code, loss) in rows {
                losses.push((currency_from_db(&code)?, from_db(loss, "loss")?));
            }
            Ok(losses)
        }))
    }
}
