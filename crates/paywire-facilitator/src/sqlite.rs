//! The SQLite ledger store: one file (or memory) behind a
//! [`SqliteHandle`] (one connection on its own thread, WAL, `busy_timeout`),
//! so no query runs on an async worker. Schema migrations are paywire-store's
//! (component `ledger`); a file migrated by an earlier release (which counted
//! its versions in `PRAGMA user_version`) is adopted at that version.

use std::path::Path;

use paywire_core::{FacilitatorRequest, SettleResponse};
use paywire_store::rusqlite::{self, Connection, OptionalExtension, TransactionBehavior, params};
use paywire_store::sqlite::{SqliteHandle, SqliteOptions};
use paywire_store::{Migration, Migrations};

use crate::store::{
    Delivery, LedgerError, LedgerStore, PURGE_BATCH, PaymentIdClaim, RawRow, SettlementRecord,
    SettlementState, StoreFuture, decode_row, now, stored_response,
};

// 1: settlements and payment-identifier bindings.
const V1: &str = r#"
CREATE TABLE settlements (
    fingerprint  TEXT PRIMARY KEY,
    network      TEXT NOT NULL,
    payment_id   TEXT,
    state        TEXT NOT NULL,
    transaction_hash TEXT,
    response     TEXT,
    last_error   TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX settlements_state ON settlements(state);
CREATE TABLE payment_ids (
    id           TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
"#;

// 2: the request itself, so that recovery can re-run the settlement.
const V2: &str = r#"
ALTER TABLE settlements ADD COLUMN request TEXT;
"#;

// 3: who was told each outcome, and which payload each settled
// transaction belongs to. Rows that already had an outcome were answered
// under the old rules: they count as delivered (to an unnamed caller), so
// that a replay of them is refused too.
const V3: &str = r#"
ALTER TABLE settlements ADD COLUMN delivered_state TEXT;
ALTER TABLE settlements ADD COLUMN delivered_to TEXT;
ALTER TABLE settlements ADD COLUMN delivered_payment_id TEXT;
ALTER TABLE settlements ADD COLUMN delivered_at INTEGER;
UPDATE settlements
   SET delivered_state = state, delivered_payment_id = payment_id, delivered_at = updated_at
 WHERE state IN ('confirmed', 'failed', 'pending');
CREATE TABLE settled_transactions (
    transaction_hash TEXT PRIMARY KEY,
    fingerprint      TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
INSERT OR IGNORE INTO settled_transactions (transaction_hash, fingerprint, created_at)
SELECT transaction_hash, fingerprint, updated_at FROM settlements
 WHERE state = 'confirmed' AND transaction_hash IS NOT NULL
 ORDER BY created_at;
"#;

// 4: transactions are claimed before their broadcast: claim those that
// were out (submitted, pending) at the upgrade.
const V4: &str = r#"
INSERT OR IGNORE INTO settled_transactions (transaction_hash, fingerprint, created_at)
SELECT transaction_hash, fingerprint, updated_at FROM settlements
 WHERE state IN ('submitted', 'pending') AND transaction_hash IS NOT NULL
 ORDER BY created_at;
"#;

// 5: the retention purge finds settlements that failed before sending,
// and old payment-identifier bindings, by age.
const V5: &str = r#"
CREATE INDEX settlements_unsent_failures ON settlements(updated_at)
 WHERE state = 'failed' AND transaction_hash IS NULL;
CREATE INDEX payment_ids_created ON payment_ids(created_at);
"#;

// 6: a settlement's lookup by its transaction (`find_by_transaction`) read
// the whole table: index it, as the PostgreSQL ledger always has.
const V6: &str = r#"
CREATE INDEX settlements_transaction ON settlements(transaction_hash);
"#;

// 7: the retention purge deletes a purged settlement's bindings with it
// (by fingerprint), and looks for bindings that never got a settlement only
// among those created since its last run (the cursor), instead of visiting
// every old binding at every run.
const V7: &str = r#"
CREATE INDEX payment_ids_fingerprint ON payment_ids(fingerprint);
CREATE TABLE ledger_cursors (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#;

/// Ledger schema migrations (component `ledger`). Versions 1 to 5 are the
/// schema earlier releases built and counted in `PRAGMA user_version`; never
/// edit one, add the next.
const MIGRATIONS: Migrations = Migrations::new(
    "ledger",
    &[
        Migration::new(1, "settlements", V1),
        Migration::new(2, "requests", V2),
        Migration::new(3, "deliveries and settled transactions", V3),
        Migration::new(4, "claims of transactions out", V4),
        Migration::new(5, "retention indexes", V5),
        Migration::new(6, "transaction index", V6),
        Migration::new(7, "bounded retention purge", V7),
    ],
)
// SQLite has no ADD COLUMN IF NOT EXISTS, so version 1 cannot be a no-op
// on an old file: adopt it at the version it recorded.
.with_legacy_version("SELECT user_version FROM pragma_user_version");

/// The ledger's statements, one item each, so that the store and
/// [`ledger_statements`] (the query-plan tests) use the same text.
mod sql {
    use crate::store::{RECORD_COLUMNS, UNSENT_FAILURE};

    pub(super) const STATE_COUNTS: &str = "SELECT state, COUNT(*) FROM settlements GROUP BY state";

    pub(super) fn get() -> String {
        format!("SELECT {RECORD_COLUMNS} FROM settlements WHERE fingerprint = ?1")
    }

    pub(super) fn find_by_transaction() -> String {
        format!(
            "SELECT {RECORD_COLUMNS} FROM settlements WHERE transaction_hash = ?1
             ORDER BY COALESCE(fingerprint = (SELECT fingerprint FROM settled_transactions
                                              WHERE transaction_hash = ?1), 0) DESC,
                      updated_at DESC
             LIMIT 1"
        )
    }

    pub(super) fn unresolved() -> String {
        format!(
            "SELECT {RECORD_COLUMNS} FROM settlements
             WHERE state IN ('received', 'submitted', 'pending') ORDER BY updated_at"
        )
    }

    pub(super) const PAYMENT_ID_BINDING: &str = "SELECT fingerprint FROM payment_ids WHERE id = ?1";

    pub(super) const CLAIM_PAYMENT_ID: &str =
        "INSERT OR IGNORE INTO payment_ids (id, fingerprint, created_at) VALUES (?1, ?2, ?3)";

    pub(super) const TRANSACTION_BINDING: &str =
        "SELECT fingerprint FROM settled_transactions WHERE transaction_hash = ?1";

    pub(super) const CLAIM_TRANSACTION: &str =
        "INSERT OR IGNORE INTO settled_transactions (transaction_hash, fingerprint, created_at)
         VALUES (?1, ?2, ?3)";

    pub(super) const MARK_DELIVERED: &str =
        "UPDATE settlements SET delivered_state = ?2, delivered_to = ?3,
                delivered_payment_id = ?4, delivered_at = ?5
         WHERE fingerprint = ?1";

    pub(super) const MARK_RECEIVED: &str =
        "INSERT INTO settlements (fingerprint, network, payment_id, state, attempts, created_at, updated_at, request)
         VALUES (?1, ?2, ?3, 'received', 1, ?4, ?4, ?5)
         ON CONFLICT (fingerprint) DO UPDATE SET
            state = CASE WHEN settlements.state IN ('submitted', 'pending')
                         THEN settlements.state ELSE 'received' END,
            payment_id = COALESCE(settlements.payment_id, excluded.payment_id),
            request = COALESCE(settlements.request, excluded.request),
            attempts = settlements.attempts + 1,
            updated_at = excluded.updated_at";

    pub(super) const MARK_SUBMITTED: &str =
        "UPDATE settlements SET state = 'submitted', transaction_hash = ?2, updated_at = ?3
         WHERE fingerprint = ?1";

    pub(super) const RECORD_OUTCOME: &str =
        "UPDATE settlements SET state = ?2, transaction_hash = COALESCE(?3, transaction_hash),
                response = ?4, last_error = NULL, updated_at = ?5
         WHERE fingerprint = ?1";

    pub(super) const RECORD_ERROR: &str =
        "UPDATE settlements SET last_error = ?2, updated_at = ?3 WHERE fingerprint = ?1";

    pub(super) fn purge_unsent_failures() -> String {
        format!(
            "DELETE FROM settlements WHERE rowid IN (
                SELECT rowid FROM settlements
                 WHERE {UNSENT_FAILURE} AND updated_at < ?1 LIMIT ?2)
             RETURNING fingerprint"
        )
    }

    pub(super) const UNBIND_PURGED: &str = "DELETE FROM payment_ids WHERE fingerprint = ?1";

    pub(super) const ORPHAN_CURSOR: &str =
        "SELECT value FROM ledger_cursors WHERE name = 'orphan_payment_ids'";

    pub(super) const PURGE_ORPHAN_PAYMENT_IDS: &str = "DELETE FROM payment_ids WHERE rowid IN (
            SELECT rowid FROM payment_ids
             WHERE created_at >= ?1 AND created_at < ?2
               AND NOT EXISTS (SELECT 1 FROM settlements
                                WHERE settlements.fingerprint = payment_ids.fingerprint)
             LIMIT ?3)";

    pub(super) const ADVANCE_ORPHAN_CURSOR: &str =
        "INSERT INTO ledger_cursors (name, value) VALUES ('orphan_payment_ids', ?1)
         ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)";
}

/// Every statement the SQLite ledger runs, by the name of the store call
/// that runs it: the `/settle` path (`get`, `payment_id_binding`, the
/// claims, the marks, `record_outcome`, `record_error`), the periodic jobs
/// (`unresolved` for recovery, the purge, `state_counts` for `/metrics`) and
/// the lookup `find_by_transaction`. For the query-plan regression tests
/// (`tests/ledger_plans.rs`) only.
#[doc(hidden)]
pub fn ledger_statements() -> Vec<(&'static str, String)> {
    vec![
        ("get", sql::get()),
        ("payment_id_binding", sql::PAYMENT_ID_BINDING.to_owned()),
        ("claim_payment_id", sql::CLAIM_PAYMENT_ID.to_owned()),
        ("transaction_binding", sql::TRANSACTION_BINDING.to_owned()),
        ("claim_transaction", sql::CLAIM_TRANSACTION.to_owned()),
        ("mark_received", sql::MARK_RECEIVED.to_owned()),
        ("mark_submitted", sql::MARK_SUBMITTED.to_owned()),
        ("record_outcome", sql::RECORD_OUTCOME.to_owned()),
        ("record_error", sql::RECORD_ERROR.to_owned()),
        ("mark_delivered", sql::MARK_DELIVERED.to_owned()),
        ("find_by_transaction", sql::find_by_transaction()),
        ("unresolved", sql::unresolved()),
        ("purge_unsent_failures", sql::purge_unsent_failures()),
        ("unbind_purged", sql::UNBIND_PURGED.to_owned()),
        ("orphan_cursor", sql::ORPHAN_CURSOR.to_owned()),
        (
            "purge_orphan_payment_ids",
            sql::PURGE_ORPHAN_PAYMENT_IDS.to_owned(),
        ),
        (
            "advance_orphan_cursor",
            sql::ADVANCE_ORPHAN_CURSOR.to_owned(),
        ),
        ("state_counts", sql::STATE_COUNTS.to_owned()),
    ]
}

/// The SQLite store. Cheap to clone; queries run on the handle's thread.
#[derive(Clone)]
pub struct SqliteStore {
    db: SqliteHandle,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl LedgerStore for SqliteStore {
    fn get<'a>(&'a self, fingerprint: &'a str) -> StoreFuture<'a, Option<SettlementRecord>> {
        Box::pin(SqliteStore::get(self, fingerprint))
    }
    fn unresolved(&self) -> StoreFuture<'_, Vec<SettlementRecord>> {
        Box::pin(SqliteStore::unresolved(self))
    }
    fn state_counts(&self) -> StoreFuture<'_, Option<Vec<(SettlementState, u64)>>> {
        Box::pin(async move {
            let counts = self
                .with(|conn| {
                    let mut statement = conn.prepare(sql::STATE_COUNTS)?;
                    let rows = statement
                        .query_map([], |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(rows)
                })
                .await?;
            Ok(Some(crate::store::parse_state_counts(counts)))
        })
    }
    fn find_by_transaction<'a>(
        &'a self,
        transaction: &'a str,
    ) -> StoreFuture<'a, Option<SettlementRecord>> {
        Box::pin(SqliteStore::find_by_transaction(self, transaction))
    }
    fn payment_id_binding<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(SqliteStore::payment_id_binding(self, id))
    }
    fn claim_payment_id<'a>(
        &'a self,
        id: &'a str,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, PaymentIdClaim> {
        Box::pin(SqliteStore::claim_payment_id(self, id, fingerprint))
    }
    fn mark_received<'a>(
        &'a self,
        fingerprint: &'a str,
        request: &'a FacilitatorRequest,
        payment_id: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(SqliteStore::mark_received(
            self,
            fingerprint,
            request,
            payment_id,
        ))
    }
    fn mark_submitted<'a>(
        &'a self,
        fingerprint: &'a str,
        transaction: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(SqliteStore::mark_submitted(self, fingerprint, transaction))
    }
    fn record_outcome<'a>(
        &'a self,
        fingerprint: &'a str,
        response: &'a SettleResponse,
    ) -> StoreFuture<'a, SettlementState> {
        Box::pin(SqliteStore::record_outcome(self, fingerprint, response))
    }
    fn record_error<'a>(&'a self, fingerprint: &'a str, error: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(SqliteStore::record_error(self, fingerprint, error))
    }
    fn mark_delivered<'a>(
        &'a self,
        fingerprint: &'a str,
        delivery: &'a Delivery,
    ) -> StoreFuture<'a, ()> {
        Box::pin(SqliteStore::mark_delivered(self, fingerprint, delivery))
    }
    fn claim_transaction<'a>(
        &'a self,
        transaction: &'a str,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, PaymentIdClaim> {
        Box::pin(SqliteStore::claim_transaction(
            self,
            transaction,
            fingerprint,
        ))
    }
    fn claim_and_mark_submitted<'a>(
        &'a self,
        transaction: &'a str,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, PaymentIdClaim> {
        Box::pin(SqliteStore::claim_and_mark_submitted(
            self,
            transaction,
            fingerprint,
        ))
    }
    fn purge_unsent_failures(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(SqliteStore::purge_unsent_failures(self, before))
    }
    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// [`SqliteStore::open`] with these connection settings (the page cache).
    pub async fn open_with(path: &Path, options: SqliteOptions) -> Result<Self, LedgerError> {
        Self::init(SqliteHandle::open_with(path, options).await?).await
    }

    /// An in-memory ledger (tests, ephemeral deployments).
    pub async fn in_memory() -> Result<Self, LedgerError> {
        Self::init(SqliteHandle::open_in_memory().await?).await
    }

    /// The connection's `PRAGMA cache_size` (negative: KiB), for tests of
    /// the wiring.
    #[cfg(test)]
    pub(crate) async fn cache_size(&self) -> Result<i64, LedgerError> {
        Ok(self
            .db
            .call(|c| c.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0)))
            .await?)
    }

    async fn init(db: SqliteHandle) -> Result<Self, LedgerError> {
        let report = db.migrate(&MIGRATIONS).await?;
        if !report.applied.is_empty() {
            tracing::info!(from = report.from, to = report.to, "ledger schema migrated");
        }
        Ok(Self { db })
    }

    /// Runs `f` on the connection's thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.db.call_and_then(f).await
    }

    /// The record for `fingerprint`, if any.
    pub async fn get(&self, fingerprint: &str) -> Result<Option<SettlementRecord>, LedgerError> {
        let fingerprint = fingerprint.to_owned();
        self.with(move |conn| {
            let row = conn
                .query_row(&sql::get(), params![fingerprint], raw_row)
                .optional()?;
            row.map(decode_row).transpose()
        })
        .await
    }

    /// The record whose transaction hash is `transaction`, if any.
    pub async fn find_by_transaction(
        &self,
        transaction: &str,
    ) -> Result<Option<SettlementRecord>, LedgerError> {
        let transaction = transaction.to_owned();
        self.with(move |conn| {
            let row = conn
                .query_row(&sql::find_by_transaction(), params![transaction], raw_row)
                .optional()?;
            row.map(decode_row).transpose()
        })
        .await
    }

    /// Records that do not have a final outcome (`received`, `submitted`,
    /// `pending`): the work list of a recovery job.
    pub async fn unresolved(&self) -> Result<Vec<SettlementRecord>, LedgerError> {
        self.with(|conn| {
            let mut statement = conn.prepare(&sql::unresolved())?;
            let rows = statement
                .query_map([], raw_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(decode_row).collect()
        })
        .await
    }

    /// The fingerprint `id` is bound to, if any.
    pub async fn payment_id_binding(&self, id: &str) -> Result<Option<String>, LedgerError> {
        let id = id.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row(sql::PAYMENT_ID_BINDING, params![id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// Binds `id` to `fingerprint` unless it is already bound (atomically).
    pub async fn claim_payment_id(
        &self,
        id: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.claim(ClaimTable::PaymentIds, id, fingerprint).await
    }

    /// Binds the settled `transaction` to `fingerprint` unless it is
    /// already bound (atomically).
    pub async fn claim_transaction(
        &self,
        transaction: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.claim(ClaimTable::SettledTransactions, transaction, fingerprint)
            .await
    }

    async fn claim(
        &self,
        table: ClaimTable,
        key: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        let (key, fingerprint) = (key.to_owned(), fingerprint.to_owned());
        let (insert, select) = match table {
            ClaimTable::PaymentIds => (sql::CLAIM_PAYMENT_ID, sql::PAYMENT_ID_BINDING),
            ClaimTable::SettledTransactions => (sql::CLAIM_TRANSACTION, sql::TRANSACTION_BINDING),
        };
        self.with(move |conn| {
            // Write-locked from the start: the read-back must see the winner.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let claim = claim_in(&tx, insert, select, &key, &fingerprint)?;
            tx.commit()?;
            Ok(claim)
        })
        .await
    }

    /// Claims `transaction` for `fingerprint` and, if the claim holds, marks
    /// the settlement `submitted` with it: one transaction, one trip to the
    /// connection's thread (this is on the broadcast's critical path).
    pub async fn claim_and_mark_submitted(
        &self,
        transaction: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        let (transaction, fingerprint) = (transaction.to_owned(), fingerprint.to_owned());
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let claim = claim_in(
                &tx,
                sql::CLAIM_TRANSACTION,
                sql::TRANSACTION_BINDING,
                &transaction,
                &fingerprint,
            )?;
            if claim == PaymentIdClaim::Bound {
                let changed = tx.execute(
                    sql::MARK_SUBMITTED,
                    params![fingerprint, transaction, now()],
                )?;
                if changed != 1 {
                    // Dropping `tx` rolls the claim back too.
                    return Err(LedgerError::Corrupt(format!(
                        "no settlement {fingerprint} to mark submitted"
                    )));
                }
            }
            tx.commit()?;
            Ok(claim)
        })
        .await
    }

    /// Records who received an answer for `fingerprint`, and which.
    pub async fn mark_delivered(
        &self,
        fingerprint: &str,
        delivery: &Delivery,
    ) -> Result<(), LedgerError> {
        let fingerprint = fingerprint.to_owned();
        let delivery = delivery.clone();
        self.with(move |conn| {
            conn.execute(
                sql::MARK_DELIVERED,
                params![
                    fingerprint,
                    delivery.state.as_str(),
                    delivery.caller,
                    delivery.payment_id,
                    i64::try_from(delivery.at).unwrap_or(i64::MAX)
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Records (or re-records) that the scheme is about to be called, with
    /// the request (so that recovery can re-run it). A row already
    /// `submitted` or `pending` keeps that state: a transaction may be out.
    pub async fn mark_received(
        &self,
        fingerprint: &str,
        request: &FacilitatorRequest,
        payment_id: Option<&str>,
    ) -> Result<(), LedgerError> {
        let network = request.payment_requirements.network.to_string();
        let request =
            serde_json::to_string(request).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        let fingerprint = fingerprint.to_owned();
        let payment_id = payment_id.map(str::to_owned);
        self.with(move |conn| {
            let at = now();
            conn.execute(
                sql::MARK_RECEIVED,
                params![fingerprint, network, payment_id, at, request],
            )?;
            Ok(())
        })
        .await
    }

    /// Records that transaction `transaction` is about to be broadcast for
    /// `fingerprint` (state `submitted`). Written before the broadcast: if
    /// this fails, nothing is sent.
    pub async fn mark_submitted(
        &self,
        fingerprint: &str,
        transaction: &str,
    ) -> Result<(), LedgerError> {
        let (fingerprint, transaction) = (fingerprint.to_owned(), transaction.to_owned());
        self.with(move |conn| {
            let changed = conn.execute(
                sql::MARK_SUBMITTED,
                params![fingerprint, transaction, now()],
            )?;
            if changed == 1 {
                Ok(())
            } else {
                Err(LedgerError::Corrupt(format!(
                    "no settlement {fingerprint} to mark submitted"
                )))
            }
        })
        .await
    }

    /// Stores the scheme's answer and the state it implies.
    pub async fn record_outcome(
        &self,
        fingerprint: &str,
        response: &SettleResponse,
    ) -> Result<SettlementState, LedgerError> {
        let state = SettlementState::of(response);
        let json = stored_response(response)?;
        let transaction = Some(response.transaction.clone()).filter(|t| !t.is_empty());
        let fingerprint = fingerprint.to_owned();
        self.with(move |conn| {
            conn.execute(
                sql::RECORD_OUTCOME,
                params![fingerprint, state.as_str(), transaction, json, now()],
            )?;
            Ok(())
        })
        .await?;
        Ok(state)
    }

    /// Stores an infrastructure error; the record stays `received` so that a
    /// retry calls the scheme again (on-chain idempotency makes that safe).
    pub async fn record_error(&self, fingerprint: &str, error: &str) -> Result<(), LedgerError> {
        let (fingerprint, error) = (fingerprint.to_owned(), error.to_owned());
        self.with(move |conn| {
            conn.execute(sql::RECORD_ERROR, params![fingerprint, error, now()])?;
            Ok(())
        })
        .await
    }

    /// See [`Ledger::purge_unsent_failures`](crate::ledger::Ledger::purge_unsent_failures):
    /// one batch per blocking call, so that other queries get the
    /// connection in between.
    pub async fn purge_unsent_failures(&self, before: i64) -> Result<u64, LedgerError> {
        let mut deleted = 0u64;
        loop {
            let batch = self
                .with(move |conn| purge_unsent_batch(conn, before))
                .await?;
            deleted += batch;
            if i64::try_from(batch).unwrap_or(0) < PURGE_BATCH {
                break;
            }
        }
        let since: i64 = self
            .with(|conn| {
                Ok(conn
                    .query_row(sql::ORPHAN_CURSOR, [], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0))
            })
            .await?;
        loop {
            let batch = self
                .with(move |conn| {
                    Ok(conn.execute(
                        sql::PURGE_ORPHAN_PAYMENT_IDS,
                        params![since, before, PURGE_BATCH],
                    )?)
                })
                .await?;
            if i64::try_from(batch).unwrap_or(0) < PURGE_BATCH {
                break;
            }
        }
        self.with(move |conn| Ok(conn.execute(sql::ADVANCE_ORPHAN_CURSOR, params![before])?))
            .await?;
        Ok(deleted)
    }
}

/// Inserts `(key, fingerprint)` with `insert` unless `key` is bound, then
/// reads the binding back with `select`, inside the caller's write
/// transaction.
fn claim_in(
    tx: &rusqlite::Transaction<'_>,
    insert: &str,
    select: &str,
    key: &str,
    fingerprint: &str,
) -> Result<PaymentIdClaim, LedgerError> {
    tx.execute(insert, params![key, fingerprint, now()])?;
    let bound: String = tx.query_row(select, params![key], |r| r.get(0))?;
    Ok(if bound == fingerprint {
        PaymentIdClaim::Bound
    } else {
        PaymentIdClaim::Conflict { fingerprint: bound }
    })
}

/// Deletes one batch of settlements that failed before sending and last
/// changed before `before`, with their payment-identifier bindings, in one
/// transaction: how many settlements went.
fn purge_unsent_batch(conn: &mut Connection, before: i64) -> Result<u64, LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let purged = {
        let mut statement = tx.prepare(&sql::purge_unsent_failures())?;
        let rows = statement.query_map(params![before, PURGE_BATCH], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    {
        let mut unbind = tx.prepare_cached(sql::UNBIND_PURGED)?;
        for fingerprint in &purged {
            unbind.execute(params![fingerprint])?;
        }
    }
    tx.commit()?;
    Ok(u64::try_from(purged.len()).unwrap_or(u64::MAX))
}

/// The table a claim binds into.
#[derive(Debug, Clone, Copy)]
enum ClaimTable {
    PaymentIds,
    SettledTransactions,
}

fn raw_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        fingerprint: row.get(0)?,
        network: row.get(1)?,
        payment_id: row.get(2)?,
        state: row.get(3)?,
        transaction: row.get(4)?,
        response: row.get(5)?,
        last_error: row.get(6)?,
        attempts: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
        request: row.get(10)?,
        delivered_state: row.get(11)?,
        delivered_to: row.get(12)?,
        delivered_payment_id: row.get(13)?,
        delivered_at: row.get(14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use crate::ledger::tests::request;

    /// The schema steps earlier releases ran (recording each in `PRAGMA
    /// user_version`): a copy, so that these tests keep building the old
    /// files whatever becomes of the migrations.
    const OLD_MIGRATIONS: [&str; 5] = [
        r#"
CREATE TABLE settlements (
    fingerprint  TEXT PRIMARY KEY,
    network      TEXT NOT NULL,
    payment_id   TEXT,
    state        TEXT NOT NULL,
    transaction_hash TEXT,
    response     TEXT,
    last_error   TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX settlements_state ON settlements(state);
CREATE TABLE payment_ids (
    id           TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
"#,
        r#"
ALTER TABLE settlements ADD COLUMN request TEXT;
"#,
        r#"
ALTER TABLE settlements ADD COLUMN delivered_state TEXT;
ALTER TABLE settlements ADD COLUMN delivered_to TEXT;
ALTER TABLE settlements ADD COLUMN delivered_payment_id TEXT;
ALTER TABLE settlements ADD COLUMN delivered_at INTEGER;
UPDATE settlements
   SET delivered_state = state, delivered_payment_id = payment_id, delivered_at = updated_at
 WHERE state IN ('confirmed', 'failed', 'pending');
CREATE TABLE settled_transactions (
    transaction_hash TEXT PRIMARY KEY,
    fingerprint      TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
INSERT OR IGNORE INTO settled_transactions (transaction_hash, fingerprint, created_at)
SELECT transaction_hash, fingerprint, updated_at FROM settlements
 WHERE state = 'confirmed' AND transaction_hash IS NOT NULL
 ORDER BY created_at;
"#,
        r#"
INSERT OR IGNORE INTO settled_transactions (transaction_hash, fingerprint, created_at)
SELECT transaction_hash, fingerprint, updated_at FROM settlements
 WHERE state IN ('submitted', 'pending') AND transaction_hash IS NOT NULL
 ORDER BY created_at;
"#,
        r#"
CREATE INDEX settlements_unsent_failures ON settlements(updated_at)
 WHERE state = 'failed' AND transaction_hash IS NULL;
CREATE INDEX payment_ids_created ON payment_ids(created_at);
"#,
    ];

    /// A file as an earlier release at `version` left it.
    fn old_file(path: &Path, version: usize) -> Result<Connection, Box<dyn std::error::Error>> {
        let conn = Connection::open(path)?;
        for sql in OLD_MIGRATIONS.iter().take(version) {
            conn.execute_batch(sql)?;
        }
        conn.pragma_update(None, "user_version", i64::try_from(version)?)?;
        Ok(conn)
    }

    fn ledger_version(path: &Path) -> Result<Option<i64>, Box<dyn std::error::Error>> {
        Ok(Connection::open(path)?
            .query_row(
                "SELECT version FROM paywire_schema_versions WHERE component = 'ledger'",
                [],
                |row| row.get(0),
            )
            .optional()?)
    }

    #[tokio::test]
    async fn the_ledger_connection_takes_the_configured_page_cache()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let default = SqliteStore::open(&dir.path().join("a.sqlite")).await?;
        assert_eq!(default.cache_size().await?, -256);
        let options = SqliteOptions::default().with_page_cache_kib(8192);
        let set = SqliteStore::open_with(&dir.path().join("b.sqlite"), options).await?;
        assert_eq!(set.cache_size().await?, -8192);
        Ok(())
    }

    #[tokio::test]
    async fn rows_answered_before_the_upgrade_count_as_delivered()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("v2.sqlite");
        {
            let conn = old_file(&path, 2)?;
            conn.execute(
                "INSERT INTO settlements (fingerprint, network, payment_id, state, transaction_hash,
                                          attempts, created_at, updated_at)
                 VALUES ('settled', 'eip155:1', 'pay_id', 'confirmed', '0xabc', 1, 5, 7),
                        ('open', 'eip155:1', NULL, 'received', NULL, 1, 5, 7),
                        ('out', 'eip155:1', NULL, 'pending', '0xdef', 1, 5, 7)",
                [],
            )?;
        }
        let ledger = Ledger::open(&path).await?;
        let settled = ledger.get("settled").await?.ok_or("missing")?;
        assert_eq!(
            settled.delivery,
            Some(Delivery {
                state: SettlementState::Confirmed,
                caller: None,
                payment_id: Some("pay_id".into()),
                at: 7,
            })
        );
        assert_eq!(ledger.get("open").await?.ok_or("missing")?.delivery, None);
        assert_eq!(
            ledger.claim_transaction("0xabc", "other").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "settled".into()
            }
        );
        // A transaction out at the upgrade is claimed by its settlement.
        assert_eq!(
            ledger.claim_transaction("0xdef", "other").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "out".into()
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn migrates_a_version_one_database() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("old.sqlite");
        {
            let conn = old_file(&path, 1)?;
            conn.execute(
                "INSERT INTO settlements (fingerprint, network, state, attempts, created_at, updated_at)
                 VALUES ('old', 'eip155:1', 'received', 1, 0, 0)",
                [],
            )?;
        }
        let ledger = Ledger::open(&path).await?;
        let old = ledger.get("old").await?.ok_or("missing")?;
        assert_eq!(old.request, None);
        ledger.mark_received("old", &request(), None).await?;
        assert_eq!(
            ledger.get("old").await?.ok_or("missing")?.request,
            Some(request())
        );
        drop(ledger);
        // Re-opening applies nothing twice.
        let ledger = Ledger::open(&path).await?;
        assert_eq!(ledger.unresolved().await?.len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_file_of_an_earlier_release_is_adopted_with_its_data()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("v5.sqlite");
        old_file(&path, 5)?.execute_batch(
            "INSERT INTO settlements (fingerprint, network, payment_id, state, transaction_hash,
                                      attempts, created_at, updated_at)
             VALUES ('kept', 'eip155:1', 'pay-1', 'confirmed', '0xabc', 1, 5, 7);
             INSERT INTO payment_ids VALUES ('pay-1', 'kept', 5);",
        )?;
        // Version 1 is not idempotent (CREATE TABLE): had it run again, the
        // open would fail.
        let ledger = Ledger::open(&path).await?;
        assert_eq!(
            ledger.get("kept").await?.map(|r| r.state),
            Some(SettlementState::Confirmed)
        );
        assert_eq!(
            ledger.payment_id_binding("pay-1").await?,
            Some("kept".into())
        );
        assert_eq!(ledger_version(&path)?, Some(7));
        drop(ledger);
        Ledger::open(&path).await?;
        assert_eq!(ledger_version(&path)?, Some(7));
        Ok(())
    }

    #[tokio::test]
    async fn a_newer_ledger_schema_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("new.sqlite");
        drop(Ledger::open(&path).await?);
        Connection::open(&path)?.execute(
            "UPDATE paywire_schema_versions SET version = 8 WHERE component = 'ledger'",
            [],
        )?;
        let error = Ledger::open(&path).await.err().ok_or("accepted")?;
        assert!(
            matches!(
                &error,
                LedgerError::Store(paywire_store::StoreError::SchemaTooNew {
                    database: 8,
                    code: 7,
                    ..
                })
            ),
            "{error:?}"
        );
        Ok(())
    }

    /// A write waiting for another process's lock (busy_timeout) leaves the
    /// runtime free: on a single-threaded runtime a timer keeps firing
    /// meanwhile, which it could not if the wait ran on the runtime's thread.
    #[test]
    fn a_write_waiting_for_the_database_does_not_block_the_runtime()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("busy.sqlite");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        runtime.block_on(async {
            let ledger = Ledger::open(&path).await?;
            // Another process holds the write lock for 600 ms.
            let other = Connection::open(&path)?;
            other.execute_batch("BEGIN IMMEDIATE")?;
            let holder = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(600));
                other.execute_batch("COMMIT")
            });
            let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let ticker = tokio::spawn({
                let ticks = std::sync::Arc::clone(&ticks);
                async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
            let started = std::time::Instant::now();
            ledger.mark_received("busy", &request(), None).await?;
            let waited = started.elapsed();
            ticker.abort();
            holder.join().map_err(|_| "holder panicked")??;
            assert!(
                waited >= std::time::Duration::from_millis(400),
                "{waited:?}"
            );
            let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                ticks >= 10,
                "the runtime stalled: {ticks} ticks in {waited:?}"
            );
            assert!(ledger.get("busy").await?.is_some());
            Ok::<_, Box<dyn std::error::Error>>(())
        })
    }
}
