//! The ledger in PostgreSQL, for several authority instances sharing one
//! database (URL `postgres://user[:password]@host[:port]/db` with
//! paywire-store's `sslmode`, `sslrootcert` and pool parameters).
//!
//! Each operation is one transaction (READ COMMITTED). Races between
//! instances are settled by row locks taken in one order (hold or purchase
//! rows, then their bundle's): `authorize` locks its bundle row
//! (`SELECT … FOR UPDATE`) before it reads the idempotency binding, so two
//! calls with one key run one after the other and the second sees the
//! first's binding; the unique constraints on `(bundle_id,
//! idempotency_key)` and `jti` back that up. Claims (`claim_collection`,
//! `claim_payout`) are single guarded `UPDATE … WHERE batch IS NULL
//! RETURNING`, which PostgreSQL re-checks on rows another transaction
//! claimed meanwhile, so each row lands in exactly one batch. A transaction
//! that loses a race (serialization failure, deadlock, a key inserted
//! concurrently) is retried a bounded number of times.

use std::future::Future;

use paywire_store::postgres::PgPool;
use paywire_store::tokio_postgres::error::SqlState;
use paywire_store::tokio_postgres::{self, Row, Transaction};
use paywire_store::{Migration, Migrations};

use super::{
    AuthorityStore, AuthorizeOutcome, Bundle, BundleStatus, CollectionEntry, Hold, HoldStatus,
    Mandate, NewBundle, NewHold, NewPurchase, PayoutCharge, RETRIES, RETURNED_DEBIT, ReturnOutcome,
    SettleCharge, SettleOutcome, StoreError, StoreFuture, currency_from_db, digest_from_db,
    from_db, from_db_opt, in_range, take_back, to_db, to_db_opt,
};
use crate::money::Currency;

// 1: bundles, credentials, holds (with their idempotency bindings),
// mandates and purchases.
const V1: &str = r"
CREATE TABLE IF NOT EXISTS bank_bundles (
    id            TEXT PRIMARY KEY,
    currency      TEXT NOT NULL,
    balance       BIGINT NOT NULL CHECK (balance >= 0),
    pending       BIGINT NOT NULL CHECK (pending >= 0),
    held          BIGINT NOT NULL CHECK (held >= 0),
    status        TEXT NOT NULL,
    frozen_reason TEXT,
    expires_at    BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS bank_credentials (
    digest     BYTEA PRIMARY KEY,
    bundle_id  TEXT NOT NULL REFERENCES bank_bundles(id),
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS bank_holds (
    jti             TEXT PRIMARY KEY,
    bundle_id       TEXT NOT NULL REFERENCES bank_bundles(id),
    idempotency_key TEXT NOT NULL,
    params_digest   BYTEA NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount >= 0),
    currency        TEXT NOT NULL,
    audience        TEXT NOT NULL,
    attestation     TEXT NOT NULL,
    hold_exp        BIGINT NOT NULL,
    status          TEXT NOT NULL,
    charged         BIGINT,
    settle_digest   BYTEA,
    balance_after   BIGINT,
    settled_at      BIGINT,
    payout_batch    TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (bundle_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS bank_holds_open ON bank_holds(hold_exp) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS bank_holds_unpaid ON bank_holds(currency, settled_at)
    WHERE status = 'settled' AND payout_batch IS NULL;
CREATE TABLE IF NOT EXISTS bank_mandates (
    id          TEXT PRIMARY KEY,
    bundle_id   TEXT NOT NULL REFERENCES bank_bundles(id),
    rail        TEXT NOT NULL,
    details     TEXT NOT NULL,
    off_session BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS bank_purchases (
    id               TEXT PRIMARY KEY,
    bundle_id        TEXT NOT NULL REFERENCES bank_bundles(id),
    mandate_id       TEXT NOT NULL REFERENCES bank_mandates(id),
    credits          BIGINT NOT NULL,
    price            BIGINT NOT NULL,
    currency         TEXT NOT NULL,
    pending          BIGINT NOT NULL CHECK (pending >= 0),
    spendable_at     BIGINT NOT NULL,
    collection_batch TEXT,
    collected_at     BIGINT,
    collection_written_at BIGINT,
    returned_at      BIGINT,
    return_reason    TEXT,
    recovered        BIGINT,
    loss             BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS bank_purchases_uncollected ON bank_purchases(currency)
    WHERE collection_batch IS NULL;
CREATE INDEX IF NOT EXISTS bank_purchases_batch ON bank_purchases(collection_batch);
";

/// The bank ledger's PostgreSQL migrations (component `bank`).
const MIGRATIONS: Migrations = Migrations::new("bank", &[Migration::new(1, "ledger", V1)]);

const BUNDLE_COLUMNS: &str = "id, currency, balance, pending, held, status, frozen_reason, \
                              expires_at, created_at";
const HOLD_COLUMNS: &str = "jti, bundle_id, amount, currency, audience, hold_exp, status, \
                            charged, settle_digest, balance_after, settled_at";

/// A failure inside a transaction: the database's (kept whole so that
/// races can be told apart and retried), or a decoding one.
enum Fail {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Pg(error)
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<paywire_store::StoreError> for Fail {
    fn from(error: paywire_store::StoreError) -> Self {
        match error {
            paywire_store::StoreError::Postgres(error) => Self::Pg(error),
            other => Self::Store(other.into()),
        }
    }
}

impl From<Fail> for StoreError {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Pg(error) => paywire_store::StoreError::Postgres(error).into(),
            Fail::Store(error) => error,
        }
    }
}

impl Fail {
    /// Whether running the transaction again may succeed: it lost a race
    /// (serialization failure or deadlock; with `unique`, also a unique key
    /// another transaction inserted meanwhile, which the next run reads).
    fn is_race(&self, unique: bool) -> bool {
        let Self::Pg(error) = self else {
            return false;
        };
        error.code().is_some_and(|code| {
            *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || (unique && *code == SqlState::UNIQUE_VIOLATION)
        })
    }
}

type Done<T> = Result<T, Fail>;

/// The PostgreSQL ledger. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgAuthorityStore {
    pool: PgPool,
}

impl std::fmt::Debug for PgAuthorityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAuthorityStore").finish_non_exhaustive()
    }
}

/// Runs one operation's transaction until it commits, retrying it (at most
/// [`RETRIES`] times) when it lost a race ([`Fail::is_race`]; `unique`: a
/// unique violation counts as one).
macro_rules! retried {
    ($store:expr, |$tx:ident| $body:expr) => {
        retried!($store, false, |$tx| $body)
    };
    ($store:expr, $unique:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            let result: Done<_> = async {
                let mut connection = $store.pool.get().await?;
                let $tx = connection.transaction().await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(fail) if fail.is_race($unique) && attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, "bank ledger transaction lost a race; retrying");
                }
                other => break other.map_err(StoreError::from),
            }
        }
    }};
}

impl PgAuthorityStore {
    /// Connects to the database at `url` and migrates it.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::with_pool(PgPool::connect(url).await?).await
    }

    /// A ledger over an open pool, migrated.
    pub async fn with_pool(pool: PgPool) -> Result<Self, StoreError> {
        pool.migrate(&MIGRATIONS).await?;
        Ok(Self { pool })
    }

    /// Runs a read outside any explicit transaction.
    async fn read<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(PgPool) -> Fut,
        Fut: Future<Output = Done<T>>,
    {
        work(self.pool.clone()).await.map_err(StoreError::from)
    }
}

fn decode_bundle(row: &Row) -> Done<Bundle> {
    Ok(Bundle {
        id: row.try_get(0)?,
        currency: currency_from_db(row.try_get(1)?)?,
        balance: from_db(row.try_get(2)?, "balance")?,
        pending: from_db(row.try_get(3)?, "pending")?,
        held: from_db(row.try_get(4)?, "held")?,
        status: BundleStatus::from_db(row.try_get(5)?)?,
        frozen_reason: row.try_get(6)?,
        expires_at: from_db_opt(row.try_get(7)?, "expires_at")?,
        created_at: from_db(row.try_get(8)?, "created_at")?,
    })
}

fn decode_hold(row: &Row) -> Done<Hold> {
    let settle_digest: Option<&[u8]> = row.try_get(8)?;
    Ok(Hold {
        jti: row.try_get(0)?,
        bundle_id: row.try_get(1)?,
        amount: from_db(row.try_get(2)?, "amount")?,
        currency: currency_from_db(row.try_get(3)?)?,
        audience: row.try_get(4)?,
        hold_exp: from_db(row.try_get(5)?, "hold_exp")?,
        status: HoldStatus::from_db(row.try_get(6)?)?,
        charged: from_db_opt(row.try_get(7)?, "charged")?,
        settle_digest: settle_digest.map(digest_from_db).transpose()?,
        balance_after: from_db_opt(row.try_get(9)?, "balance_after")?,
        settled_at: from_db_opt(row.try_get(10)?, "settled_at")?,
    })
}

fn decode_mandate(row: &Row, at: usize) -> Done<Mandate> {
    Ok(Mandate {
        id: row.try_get(at)?,
        bundle_id: row.try_get(at + 1)?,
        rail: row.try_get(at + 2)?,
        details: row.try_get(at + 3)?,
        off_session: row.try_get(at + 4)?,
        created_at: from_db(row.try_get(at + 5)?, "created_at")?,
    })
}

/// The bundle row, locked for the rest of the transaction.
async fn lock_bundle(tx: &Transaction<'_>, id: &str) -> Done<Option<Bundle>> {
    let sql = format!("SELECT {BUNDLE_COLUMNS} FROM bank_bundles WHERE id = $1 FOR UPDATE");
    tx.query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(decode_bundle)
        .transpose()
}

/// The hold row, locked for the rest of the transaction.
async fn lock_hold(tx: &Transaction<'_>, jti: &str) -> Done<Option<Hold>> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM bank_holds WHERE jti = $1 FOR UPDATE");
    tx.query_opt(&sql, &[&jti])
        .await?
        .as_ref()
        .map(decode_hold)
        .transpose()
}

/// Ends an open hold (locked by the caller) as `status`, its amount back to
/// the bundle's balance.
async fn release(tx: &Transaction<'_>, hold: &Hold, status: HoldStatus, now: u64) -> Done<()> {
    let (amount, now) = (to_db(hold.amount)?, to_db(now)?);
    tx.execute(
        "UPDATE bank_bundles SET held = held - $1, balance = balance + $1, updated_at = $2
          WHERE id = $3",
        &[&amount, &now, &hold.bundle_id],
    )
    .await?;
    tx.execute(
        "UPDATE bank_holds SET status = $1, updated_at = $2 WHERE jti = $3 AND status = 'open'",
        &[&status.as_db(), &now, &hold.jti],
    )
    .await?;
    Ok(())
}

async fn authorize(tx: &Transaction<'_>, hold: &NewHold) -> Done<AuthorizeOutcome> {
    in_range(&[hold.amount, hold.hold_exp, hold.now])?;
    // The bundle lock first: a concurrent call with the same key waits
    // here, then sees this one's binding.
    let bundle = lock_bundle(tx, &hold.bundle_id).await?;
    let bound = tx
        .query_opt(
            "SELECT params_digest, attestation FROM bank_holds
              WHERE bundle_id = $1 AND idempotency_key = $2",
            &[&hold.bundle_id, &hold.idempotency_key],
        )
        .await?;
    if let Some(row) = bound {
        let digest: &[u8] = row.try_get(0)?;
        return Ok(if digest == hold.params_digest {
            AuthorizeOutcome::Replayed {
                attestation: row.try_get(1)?,
            }
        } else {
            AuthorizeOutcome::Conflict
        });
    }
    let Some(bundle) = bundle else {
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
    let (amount, now) = (to_db(hold.amount)?, to_db(hold.now)?);
    tx.execute(
        "INSERT INTO bank_holds (jti, bundle_id, idempotency_key, params_digest, amount,
             currency, audience, attestation, hold_exp, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', $10, $10)",
        &[
            &hold.jti,
            &hold.bundle_id,
            &hold.idempotency_key,
            &&hold.params_digest[..],
            &amount,
            &hold.currency.code(),
            &hold.audience,
            &hold.attestation,
            &to_db(hold.hold_exp)?,
            &now,
        ],
    )
    .await?;
    let changed = tx
        .execute(
            "UPDATE bank_bundles SET balance = balance - $1, held = held + $1, updated_at = $2
              WHERE id = $3 AND balance >= $1",
            &[&amount, &now, &hold.bundle_id],
        )
        .await?;
    if changed != 1 {
        // Cannot happen under the row lock; refuse rather than mint.
        return Err(StoreError::Corrupt("bundle balance changed under its lock".into()).into());
    }
    Ok(AuthorizeOutcome::Created)
}

async fn settle(tx: &Transaction<'_>, charge: &SettleCharge) -> Done<SettleOutcome> {
    in_range(&[charge.charge, charge.now])?;
    let Some(hold) = lock_hold(tx, &charge.jti).await? else {
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
            release(tx, &hold, HoldStatus::Expired, charge.now).await?;
            Ok(SettleOutcome::HoldExpired)
        }
        HoldStatus::Open if charge.charge > hold.amount => Ok(SettleOutcome::OverHold),
        HoldStatus::Open => {
            let now = to_db(charge.now)?;
            let row = tx
                .query_one(
                    "UPDATE bank_bundles SET held = held - $1, balance = balance + $2,
                            updated_at = $3
                      WHERE id = $4 RETURNING balance",
                    &[
                        &to_db(hold.amount)?,
                        &to_db(hold.amount - charge.charge)?,
                        &now,
                        &hold.bundle_id,
                    ],
                )
                .await?;
            let balance_after: i64 = row.try_get(0)?;
            let sql = format!(
                "UPDATE bank_holds SET status = 'settled', charged = $1, settle_digest = $2,
                        balance_after = $3, settled_at = $4, updated_at = $4
                  WHERE jti = $5 RETURNING {HOLD_COLUMNS}"
            );
            let row = tx
                .query_one(
                    &sql,
                    &[
                        &to_db(charge.charge)?,
                        &&charge.params_digest[..],
                        &balance_after,
                        &now,
                        &hold.jti,
                    ],
                )
                .await?;
            Ok(SettleOutcome::Settled(decode_hold(&row)?))
        }
    }
}

async fn release_expired(tx: &Transaction<'_>, now: u64) -> Done<u64> {
    let sql = format!(
        "SELECT {HOLD_COLUMNS} FROM bank_holds WHERE status = 'open' AND hold_exp <= $1
          ORDER BY jti FOR UPDATE"
    );
    let rows = tx.query(&sql, &[&to_db(now)?]).await?;
    let mut released = 0;
    for row in &rows {
        let hold = decode_hold(row)?;
        // Locked rows another transaction settled meanwhile drop out of
        // the WHERE clause when re-checked, so every row here is open.
        release(tx, &hold, HoldStatus::Expired, now).await?;
        released += 1;
    }
    Ok(released)
}

async fn purchase(tx: &Transaction<'_>, purchase: &NewPurchase) -> Done<bool> {
    in_range(&[
        purchase.credits,
        purchase.price,
        purchase.spendable_now,
        purchase.spendable_at,
    ])?;
    let Some(bundle) = lock_bundle(tx, &purchase.bundle_id).await? else {
        return Ok(false);
    };
    let mandate = tx
        .query_opt(
            "SELECT bundle_id FROM bank_mandates WHERE id = $1",
            &[&purchase.mandate_id],
        )
        .await?;
    let mandate_bundle: Option<String> = mandate.map(|row| row.try_get(0)).transpose()?;
    if bundle.status == BundleStatus::Frozen
        || bundle.currency != purchase.currency
        || mandate_bundle.as_deref() != Some(purchase.bundle_id.as_str())
    {
        return Ok(false);
    }
    let now_spendable = purchase.spendable_now.min(purchase.credits);
    let pending = to_db(purchase.credits - now_spendable)?;
    let now = to_db(purchase.now)?;
    tx.execute(
        "INSERT INTO bank_purchases (id, bundle_id, mandate_id, credits, price, currency,
             pending, spendable_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &purchase.id,
            &purchase.bundle_id,
            &purchase.mandate_id,
            &to_db(purchase.credits)?,
            &to_db(purchase.price)?,
            &purchase.currency.code(),
            &pending,
            &to_db(purchase.spendable_at)?,
            &now,
        ],
    )
    .await?;
    tx.execute(
        "UPDATE bank_bundles SET balance = balance + $1, pending = pending + $2, updated_at = $3
          WHERE id = $4",
        &[&to_db(now_spendable)?, &pending, &now, &purchase.bundle_id],
    )
    .await?;
    Ok(true)
}

async fn mature(tx: &Transaction<'_>, now: u64) -> Done<u64> {
    let now = to_db(now)?;
    let rows = tx
        .query(
            "SELECT id, bundle_id, pending FROM bank_purchases
              WHERE pending > 0 AND spendable_at <= $1 AND returned_at IS NULL
                AND collection_written_at IS NOT NULL
              ORDER BY id FOR UPDATE",
            &[&now],
        )
        .await?;
    for row in &rows {
        let (id, bundle_id, pending): (&str, &str, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        tx.execute(
            "UPDATE bank_bundles SET pending = pending - $1, balance = balance + $1,
                    updated_at = $2 WHERE id = $3",
            &[&pending, &now, &bundle_id],
        )
        .await?;
        tx.execute(
            "UPDATE bank_purchases SET pending = 0 WHERE id = $1",
            &[&id],
        )
        .await?;
    }
    Ok(rows.len() as u64)
}

async fn collection_written(
    tx: &Transaction<'_>,
    batch_id: &str,
    spendable_at: u64,
    now: u64,
) -> Done<u64> {
    let marked = tx
        .execute(
            "UPDATE bank_purchases SET collection_written_at = $2,
                    spendable_at = GREATEST(spendable_at, $3)
              WHERE collection_batch = $1 AND collection_written_at IS NULL",
            &[&batch_id, &to_db(now)?, &to_db(spendable_at)?],
        )
        .await?;
    Ok(marked)
}

async fn claim_collection(
    tx: &Transaction<'_>,
    batch_id: &str,
    rail: &str,
    currency: Currency,
    now: u64,
) -> Done<Vec<CollectionEntry>> {
    let rows = tx
        .query(
            "UPDATE bank_purchases p SET collection_batch = $1, collected_at = $4
               FROM bank_mandates m
              WHERE m.id = p.mandate_id AND m.rail = $2 AND p.currency = $3
                AND p.collection_batch IS NULL AND p.returned_at IS NULL
          RETURNING p.id, p.bundle_id, p.price, p.currency, p.created_at,
                    m.id, m.bundle_id, m.rail, m.details, m.off_session, m.created_at",
            &[&batch_id, &rail, &currency.code(), &to_db(now)?],
        )
        .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        let created_at: i64 = row.try_get(4)?;
        let entry = CollectionEntry {
            purchase_id: row.try_get(0)?,
            bundle_id: row.try_get(1)?,
            price: from_db(row.try_get(2)?, "price")?,
            currency: currency_from_db(row.try_get(3)?)?,
            mandate: decode_mandate(row, 5)?,
        };
        entries.push((created_at, entry));
    }
    entries.sort_by(|a, b| (a.0, &a.1.purchase_id).cmp(&(b.0, &b.1.purchase_id)));
    Ok(entries.into_iter().map(|(_, entry)| entry).collect())
}

async fn record_return(
    tx: &Transaction<'_>,
    purchase_id: &str,
    reason: &str,
    now: u64,
) -> Done<ReturnOutcome> {
    let Some(row) = tx
        .query_opt(
            "SELECT bundle_id, credits, price, pending, collection_batch, returned_at
               FROM bank_purchases WHERE id = $1 FOR UPDATE",
            &[&purchase_id],
        )
        .await?
    else {
        return Ok(ReturnOutcome::Unknown);
    };
    let batch: Option<&str> = row.try_get(4)?;
    let returned_at: Option<i64> = row.try_get(5)?;
    if batch.is_none() {
        return Ok(ReturnOutcome::Unknown);
    }
    if returned_at.is_some() {
        return Ok(ReturnOutcome::AlreadyReturned);
    }
    let bundle_id: String = row.try_get(0)?;
    let bundle = lock_bundle(tx, &bundle_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("purchase of an unknown bundle".into()))?;
    let take = take_back(
        from_db(row.try_get(1)?, "credits")?,
        from_db(row.try_get(3)?, "pending")?,
        bundle.pending,
        bundle.balance,
    );
    let now = to_db(now)?;
    tx.execute(
        "UPDATE bank_bundles SET pending = pending - $1, balance = balance - $2,
                status = 'frozen', frozen_reason = COALESCE(frozen_reason, $3), updated_at = $4
          WHERE id = $5",
        &[
            &to_db(take.from_pending)?,
            &to_db(take.from_balance)?,
            &RETURNED_DEBIT,
            &now,
            &bundle_id,
        ],
    )
    .await?;
    tx.execute(
        "UPDATE bank_purchases SET pending = 0, returned_at = $1, return_reason = $2,
                recovered = $3, loss = $4 WHERE id = $5",
        &[
            &now,
            &reason,
            &to_db(take.from_pending + take.from_balance)?,
            &to_db(take.loss)?,
            &purchase_id,
        ],
    )
    .await?;
    tracing::warn!(
        bundle = %bundle_id,
        purchase = %purchase_id,
        recovered = take.from_pending + take.from_balance,
        loss = take.loss,
        "returned debit: bundle frozen"
    );
    Ok(ReturnOutcome::Recorded {
        bundle_id,
        returned: from_db(row.try_get(2)?, "price")?,
        loss: take.loss,
    })
}

async fn claim_payout(
    tx: &Transaction<'_>,
    batch_id: &str,
    currency: Currency,
    cutoff: u64,
) -> Done<Vec<PayoutCharge>> {
    let rows = tx
        .query(
            "UPDATE bank_holds SET payout_batch = $1
              WHERE status = 'settled' AND payout_batch IS NULL AND charged > 0
                AND currency = $2 AND settled_at <= $3
          RETURNING jti, audience, charged, settled_at",
            &[&batch_id, &currency.code(), &to_db(cutoff)?],
        )
        .await?;
    let mut charges = Vec::with_capacity(rows.len());
    for row in &rows {
        charges.push(PayoutCharge {
            jti: row.try_get(0)?,
            audience: row.try_get(1)?,
            charged: from_db(row.try_get(2)?, "charged")?,
            currency,
            settled_at: from_db(row.try_get(3)?, "settled_at")?,
        });
    }
    charges.sort_by(|a, b| (a.settled_at, &a.jti).cmp(&(b.settled_at, &b.jti)));
    Ok(charges)
}

impl AuthorityStore for PgAuthorityStore {
    fn create_bundle(&self, bundle: NewBundle) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let now = to_db(bundle.now)?;
            let expires_at = to_db_opt(bundle.expires_at)?;
            let mut connection = self.pool.get().await?;
            let tx = connection.transaction().await.map_err(Fail::from)?;
            let work: Done<()> = async {
                tx.execute(
                    "INSERT INTO bank_bundles (id, currency, balance, pending, held, status,
                         expires_at, created_at, updated_at)
                     VALUES ($1, $2, 0, 0, 0, 'active', $3, $4, $4)",
                    &[&bundle.id, &bundle.currency.code(), &expires_at, &now],
                )
                .await?;
                tx.execute(
                    "INSERT INTO bank_credentials (digest, bundle_id, created_at)
                     VALUES ($1, $2, $3)",
                    &[&&bundle.credential_digest[..], &bundle.id, &now],
                )
                .await?;
                Ok(())
            }
            .await;
            work?;
            tx.commit().await.map_err(Fail::from)?;
            Ok(())
        })
    }

    fn bundle_by_credential(&self, digest: [u8; 32]) -> StoreFuture<'_, Option<Bundle>> {
        Box::pin(self.read(move |pool| async move {
            let sql = format!(
                "SELECT {BUNDLE_COLUMNS} FROM bank_bundles
                  WHERE id = (SELECT bundle_id FROM bank_credentials WHERE digest = $1)"
            );
            let row = pool.query_opt(&sql, &[&&digest[..]]).await?;
            row.as_ref().map(decode_bundle).transpose()
        }))
    }

    fn bundle(&self, id: &str) -> StoreFuture<'_, Option<Bundle>> {
        let id = id.to_owned();
        Box::pin(self.read(move |pool| async move {
            let sql = format!("SELECT {BUNDLE_COLUMNS} FROM bank_bundles WHERE id = $1");
            let row = pool.query_opt(&sql, &[&id]).await?;
            row.as_ref().map(decode_bundle).transpose()
        }))
    }

    fn authorize(&self, hold: NewHold) -> StoreFuture<'_, AuthorizeOutcome> {
        Box::pin(async move { retried!(self, true, |tx| authorize(&tx, &hold).await?) })
    }

    fn hold(&self, jti: &str) -> StoreFuture<'_, Option<Hold>> {
        let jti = jti.to_owned();
        Box::pin(self.read(move |pool| async move {
            let sql = format!("SELECT {HOLD_COLUMNS} FROM bank_holds WHERE jti = $1");
            let row = pool.query_opt(&sql, &[&jti]).await?;
            row.as_ref().map(decode_hold).transpose()
        }))
    }

    fn settle(&self, charge: SettleCharge) -> StoreFuture<'_, SettleOutcome> {
        Box::pin(async move { retried!(self, |tx| settle(&tx, &charge).await?) })
    }

    fn release_expired(&self, now: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move { retried!(self, |tx| release_expired(&tx, now).await?) })
    }

    fn revoke(&self, jti: &str, now: u64) -> StoreFuture<'_, bool> {
        let jti = jti.to_owned();
        Box::pin(async move {
            retried!(self, |tx| match lock_hold(&tx, &jti).await? {
                Some(hold) if hold.status == HoldStatus::Open => {
                    release(&tx, &hold, HoldStatus::Revoked, now).await?;
                    true
                }
                _ => false,
            })
        })
    }

    fn freeze(&self, bundle_id: &str, reason: &str, now: u64) -> StoreFuture<'_, bool> {
        let (bundle_id, reason) = (bundle_id.to_owned(), reason.to_owned());
        Box::pin(self.read(move |pool| async move {
            let changed = pool
                .execute(
                    "UPDATE bank_bundles SET status = 'frozen',
                            frozen_reason = CASE WHEN status = 'frozen' THEN frozen_reason
                                                 ELSE $1 END,
                            updated_at = $2
                      WHERE id = $3",
                    &[&reason, &to_db(now)?, &bundle_id],
                )
                .await?;
            Ok(changed > 0)
        }))
    }

    fn save_mandate(&self, mandate: Mandate) -> StoreFuture<'_, ()> {
        Box::pin(self.read(move |pool| async move {
            pool.execute(
                "INSERT INTO bank_mandates (id, bundle_id, rail, details, off_session, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &mandate.id,
                    &mandate.bundle_id,
                    &mandate.rail,
                    &mandate.details,
                    &mandate.off_session,
                    &to_db(mandate.created_at)?,
                ],
            )
            .await?;
            Ok(())
        }))
    }

    fn mandate(&self, id: &str) -> StoreFuture<'_, Option<Mandate>> {
        let id = id.to_owned();
        Box::pin(self.read(move |pool| async move {
            let row = pool
                .query_opt(
                    "SELECT id, bundle_id, rail, details, off_session, created_at
                       FROM bank_mandates WHERE id = $1",
                    &[&id],
                )
                .await?;
            row.as_ref().map(|row| decode_mandate(row, 0)).transpose()
        }))
    }

    fn purchase(&self, new: NewPurchase) -> StoreFuture<'_, bool> {
        Box::pin(async move { retried!(self, |tx| purchase(&tx, &new).await?) })
    }

    fn mature_purchases(&self, now: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move { retried!(self, |tx| mature(&tx, now).await?) })
    }

    fn claim_collection(
        &self,
        batch_id: &str,
        rail: &str,
        currency: Currency,
        now: u64,
    ) -> StoreFuture<'_, Vec<CollectionEntry>> {
        let (batch_id, rail) = (batch_id.to_owned(), rail.to_owned());
        Box::pin(async move {
            retried!(self, |tx| claim_collection(
                &tx, &batch_id, &rail, currency, now
            )
            .await?)
        })
    }

    fn collection_written(
        &self,
        batch_id: &str,
        spendable_at: u64,
        now: u64,
    ) -> StoreFuture<'_, u64> {
        let batch_id = batch_id.to_owned();
        Box::pin(async move {
            retried!(self, |tx| collection_written(
                &tx,
                &batch_id,
                spendable_at,
                now
            )
            .await?)
        })
    }

    fn record_return(
        &self,
        purchase_id: &str,
        reason: &str,
        now: u64,
    ) -> StoreFuture<'_, ReturnOutcome> {
        let (purchase_id, reason) = (purchase_id.to_owned(), reason.to_owned());
        Box::pin(async move {
            retried!(self, |tx| record_return(&tx, &purchase_id, &reason, now)
                .await?)
        })
    }

    fn claim_payout(
        &self,
        batch_id: &str,
        currency: Currency,
        cutoff: u64,
        _now: u64,
    ) -> StoreFuture<'_, Vec<PayoutCharge>> {
        let batch_id = batch_id.to_owned();
        Box::pin(async move {
            retried!(self, |tx| claim_payout(&tx, &batch_id, currency, cutoff)
                .await?)
        })
    }

    fn losses(&self) -> StoreFuture<'_, Vec<(Currency, u64)>> {
        Box::pin(self.read(|pool| async move {
            let rows = pool
                .query(
                    "SELECT currency, SUM(loss)::BIGINT FROM bank_purchases
                      WHERE returned_at IS NOT NULL GROUP BY currency HAVING SUM(loss) > 0
                      ORDER BY currency",
                    &[],
                )
                .await?;
            let mut losses = Vec::with_capacity(rows.len());
            for row in &rows {
                losses.push((
                    currency_from_db(row.try_get(0)?)?,
                    from_db(row.try_get(1)?, "loss")?,
                ));
            }
            Ok(losses)
        }))
    }
}
