//! The PostgreSQL ledger store, for several facilitator instances sharing
//! one database (store URL `postgres://user[:password]@host[:port]/db`, with
//! paywire-store's `sslmode`, `sslrootcert` and pool parameters).
//!
//! Connections come from a [`PgPool`] (TLS, reconnect after a database
//! restart, statement cache: see paywire-store); the store opens none itself.
//!
//! Atomicity across processes:
//!
//! - every state change is one statement (`INSERT ... ON CONFLICT`, guarded
//!   `UPDATE`), so concurrent writers never lose an update;
//! - `payment-identifier` ids are claimed with `INSERT ... ON CONFLICT DO
//!   NOTHING` and read back: the first payload to reach the database wins;
//! - its [`lock`](crate::store::LedgerStore::lock) takes a session advisory lock
//!   (`pg_try_advisory_lock(4020, hashtext(key))`, polled while another
//!   process holds it, for at most [`LOCK_WAIT`]) held for the whole
//!   settlement (ledger read, scheme call, outcome write) and released when
//!   the guard drops. The key is what the payment spends (the scheme's
//!   spend key, else the payload's fingerprint). So two processes given the
//!   same payment, however spelled, run it one after the other, and the
//!   second answers from the ledger or finds it executed on chain. All of one
//!   store's settlement locks share one [`LockSession`] (one connection,
//!   outside the pool's count): settlements in flight cost no database
//!   connections, and a crashed process releases its locks with its session.
//!   A lock whose session died is no longer held ([`crate::store::HeldLock`]),
//!   and the settlement broadcasts nothing; the next lock takes a new session.
//!
//! The schema is migrated on connect (paywire-store migrations, component
//! `ledger`), under the store's migration lock so that instances starting
//! together do not race; a database whose ledger schema is newer than this
//! build is refused. Databases migrated by earlier releases (which counted
//! their versions in `x402_schema_migrations`) are adopted at that version.

use std::time::Duration;

use paywire_core::{FacilitatorRequest, SettleResponse};
use paywire_store::postgres::{LockKey, LockSession, PgConfig, PgPool, SessionLock};
use paywire_store::tokio_postgres::{self, Row};
use paywire_store::{Migration, Migrations};

use crate::store::{
    Delivery, HeldLock, LedgerError, LedgerStore, PURGE_BATCH, PaymentIdClaim, RawRow,
    SettlementRecord, SettlementState, StoreFuture, StoreLock, decode_row, now, stored_response,
};

/// Advisory lock namespace of settlement locks (the object id is
/// `hashtext(key)`; a hash collision only serialises two unrelated
/// settlements). Earlier releases take the same locks.
const SETTLEMENT_LOCK_CLASS: i32 = 4020;

/// `application_name` of the ledger's connections when the URL names none.
const APPLICATION_NAME: &str = "paywire-facilitator";

/// The longest a settlement waits for its lock while another process holds
/// it (that process runs the same payment: a settle, with its receipt wait).
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

// 1: settlements (with the request, for recovery) and payment-identifier bindings.
const V1: &str = r#"
CREATE TABLE x402_settlements (
    fingerprint      TEXT PRIMARY KEY,
    network          TEXT NOT NULL,
    payment_id       TEXT,
    state            TEXT NOT NULL,
    transaction_hash TEXT,
    response         TEXT,
    last_error       TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    request          TEXT
);
CREATE INDEX x402_settlements_state ON x402_settlements(state);
CREATE INDEX x402_settlements_transaction ON x402_settlements(transaction_hash);
CREATE TABLE x402_payment_ids (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
"#;

// 2: who was told each outcome, and which payload each settled
// transaction belongs to. Rows that already had an outcome were answered
// under the old rules: they count as delivered (to an unnamed caller), so
// that a replay of them is refused too.
const V2: &str = r#"
ALTER TABLE x402_settlements ADD COLUMN delivered_state TEXT;
ALTER TABLE x402_settlements ADD COLUMN delivered_to TEXT;
ALTER TABLE x402_settlements ADD COLUMN delivered_payment_id TEXT;
ALTER TABLE x402_settlements ADD COLUMN delivered_at BIGINT;
UPDATE x402_settlements
   SET delivered_state = state, delivered_payment_id = payment_id, delivered_at = updated_at
 WHERE state IN ('confirmed', 'failed', 'pending');
CREATE TABLE x402_settled_transactions (
    transaction_hash TEXT PRIMARY KEY,
    fingerprint      TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
INSERT INTO x402_settled_transactions (transaction_hash, fingerprint, created_at)
SELECT DISTINCT ON (transaction_hash) transaction_hash, fingerprint, updated_at
  FROM x402_settlements
 WHERE state = 'confirmed' AND transaction_hash IS NOT NULL
 ORDER BY transaction_hash, created_at
ON CONFLICT (transaction_hash) DO NOTHING;
"#;

// 3: transactions are claimed before their broadcast: claim those that
// were out (submitted, pending) at the upgrade.
const V3: &str = r#"
INSERT INTO x402_settled_transactions (transaction_hash, fingerprint, created_at)
SELECT DISTINCT ON (transaction_hash) transaction_hash, fingerprint, updated_at
  FROM x402_settlements
 WHERE state IN ('submitted', 'pending') AND transaction_hash IS NOT NULL
 ORDER BY transaction_hash, created_at
ON CONFLICT (transaction_hash) DO NOTHING;
"#;

// 4: the retention purge finds settlements that failed before sending,
// and old payment-identifier bindings, by age.
const V4: &str = r#"
CREATE INDEX x402_settlements_unsent_failures ON x402_settlements(updated_at)
 WHERE state = 'failed' AND transaction_hash IS NULL;
CREATE INDEX x402_payment_ids_created ON x402_payment_ids(created_at);
"#;

// 5: the retention purge deletes a purged settlement's bindings with it
// (by fingerprint), and looks for bindings that never got a settlement only
// among those created since its last run (the cursor), instead of visiting
// every old binding at every run. `IF NOT EXISTS`: an operator may build
// the index beforehand without blocking writes (`CREATE INDEX CONCURRENTLY`).
const V5: &str = r#"
CREATE INDEX IF NOT EXISTS x402_payment_ids_fingerprint ON x402_payment_ids(fingerprint);
CREATE TABLE x402_ledger_cursors (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
"#;

/// Ledger schema migrations (component `ledger`). Versions 1 to 4 are the
/// schema earlier releases built and counted in `x402_schema_migrations`;
/// never edit one, add the next.
const MIGRATIONS: Migrations = Migrations::new(
    "ledger",
    &[
        Migration::new(1, "settlements", V1),
        Migration::new(2, "deliveries and settled transactions", V2),
        Migration::new(3, "claims of transactions out", V3),
        Migration::new(4, "retention indexes", V4),
        Migration::new(5, "bounded retention purge", V5),
    ],
)
// Earlier releases recorded their own versions (and ran data migrations
// once): adopt such a database where it stands.
.with_legacy_version("SELECT COALESCE(MAX(version), 0)::BIGINT FROM x402_schema_migrations");

/// The ledger's statements, one item each, so that the store and
/// [`ledger_statements`] (the query-plan tests) use the same text.
mod sql {
    use crate::store::{RECORD_COLUMNS as COLUMNS, UNSENT_FAILURE};

    pub(super) const STATE_COUNTS: &str =
        "SELECT state, COUNT(*) FROM x402_settlements GROUP BY state";

    pub(super) fn get() -> String {
        format!("SELECT {COLUMNS} FROM x402_settlements WHERE fingerprint = $1")
    }

    pub(super) fn unresolved() -> String {
        format!(
            "SELECT {COLUMNS} FROM x402_settlements
             WHERE state IN ('received', 'submitted', 'pending') ORDER BY updated_at"
        )
    }

    pub(super) fn find_by_transaction() -> String {
        format!(
            "SELECT {COLUMNS} FROM x402_settlements WHERE transaction_hash = $1
             ORDER BY COALESCE(fingerprint = (SELECT fingerprint FROM x402_settled_transactions
                                              WHERE transaction_hash = $1), false) DESC,
                      updated_at DESC
             LIMIT 1"
        )
    }

    pub(super) const PAYMENT_ID_BINDING: &str =
        "SELECT fingerprint FROM x402_payment_ids WHERE id = $1";

    pub(super) const CLAIM_PAYMENT_ID: &str =
        "INSERT INTO x402_payment_ids (id, fingerprint, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING";

    pub(super) const TRANSACTION_BINDING: &str =
        "SELECT fingerprint FROM x402_settled_transactions WHERE transaction_hash = $1";

    pub(super) const CLAIM_TRANSACTION: &str =
        "INSERT INTO x402_settled_transactions (transaction_hash, fingerprint, created_at)
         VALUES ($1, $2, $3) ON CONFLICT (transaction_hash) DO NOTHING";

    pub(super) const MARK_DELIVERED: &str =
        "UPDATE x402_settlements SET delivered_state = $2, delivered_to = $3,
                delivered_payment_id = $4, delivered_at = $5
         WHERE fingerprint = $1";

    pub(super) const MARK_RECEIVED: &str = "INSERT INTO x402_settlements
            (fingerprint, network, payment_id, state, attempts, created_at, updated_at, request)
         VALUES ($1, $2, $3, 'received', 1, $4, $4, $5)
         ON CONFLICT (fingerprint) DO UPDATE SET
            state = CASE WHEN x402_settlements.state IN ('submitted', 'pending')
                         THEN x402_settlements.state ELSE 'received' END,
            payment_id = COALESCE(x402_settlements.payment_id, EXCLUDED.payment_id),
            request = COALESCE(x402_settlements.request, EXCLUDED.request),
            attempts = x402_settlements.attempts + 1,
            updated_at = EXCLUDED.updated_at";

    pub(super) const MARK_SUBMITTED: &str =
        "UPDATE x402_settlements SET state = 'submitted', transaction_hash = $2, updated_at = $3
         WHERE fingerprint = $1";

    pub(super) const RECORD_OUTCOME: &str = "UPDATE x402_settlements SET state = $2,
                transaction_hash = COALESCE($3, transaction_hash),
                response = $4, last_error = NULL, updated_at = $5
         WHERE fingerprint = $1";

    pub(super) const RECORD_ERROR: &str =
        "UPDATE x402_settlements SET last_error = $2, updated_at = $3 WHERE fingerprint = $1";

    /// Deletes a batch of settlements that failed before sending and
    /// their payment-identifier bindings; answers how many settlements went.
    pub(super) fn purge_unsent_failures() -> String {
        format!(
            "WITH gone AS (
                DELETE FROM x402_settlements WHERE fingerprint IN (
                    SELECT fingerprint FROM x402_settlements
                     WHERE {UNSENT_FAILURE} AND updated_at < $1 LIMIT $2)
                RETURNING fingerprint),
             unbound AS (
                DELETE FROM x402_payment_ids
                 WHERE fingerprint IN (SELECT fingerprint FROM gone))
             SELECT COUNT(*)::BIGINT FROM gone"
        )
    }

    pub(super) const ORPHAN_CURSOR: &str =
        "SELECT value FROM x402_ledger_cursors WHERE name = 'orphan_payment_ids'";

    pub(super) const PURGE_ORPHAN_PAYMENT_IDS: &str = "DELETE FROM x402_payment_ids WHERE id IN (
            SELECT id FROM x402_payment_ids p
             WHERE p.created_at >= $1 AND p.created_at < $2
               AND NOT EXISTS (SELECT 1 FROM x402_settlements s
                                WHERE s.fingerprint = p.fingerprint)
             LIMIT $3)";

    pub(super) const ADVANCE_ORPHAN_CURSOR: &str =
        "INSERT INTO x402_ledger_cursors (name, value) VALUES ('orphan_payment_ids', $1)
         ON CONFLICT (name) DO UPDATE
            SET value = GREATEST(x402_ledger_cursors.value, EXCLUDED.value)";
}

/// Every statement the PostgreSQL ledger runs, by the name of the store
/// call that runs it (as [`crate::sqlite::ledger_statements`]; the
/// settlement lock is an advisory lock, no table). For the query-plan
/// regression tests (`tests/ledger_plans.rs`) only.
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

/// The PostgreSQL store: pooled connections for queries, one lock session
/// for the settlement locks.
pub struct PostgresStore {
    pool: PgPool,
    locks: LockSession,
}

impl HeldLock for SessionLock {
    fn is_held(&self) -> bool {
        SessionLock::is_held(self)
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // PgPool prints no password.
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool)
            .field("locks", &self.locks)
            .finish()
    }
}

fn raw_row(row: &Row) -> Result<RawRow, tokio_postgres::Error> {
    Ok(RawRow {
        fingerprint: row.try_get(0)?,
        network: row.try_get(1)?,
        payment_id: row.try_get(2)?,
        state: row.try_get(3)?,
        transaction: row.try_get(4)?,
        response: row.try_get(5)?,
        last_error: row.try_get(6)?,
        attempts: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
        request: row.try_get(10)?,
        delivered_state: row.try_get(11)?,
        delivered_to: row.try_get(12)?,
        delivered_payment_id: row.try_get(13)?,
        delivered_at: row.try_get(14)?,
    })
}

fn decode(row: &Row) -> Result<SettlementRecord, LedgerError> {
    decode_row(raw_row(row)?)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, LedgerError> {
    serde_json::to_string(value).map_err(|e| LedgerError::Corrupt(e.to_string()))
}

impl PostgresStore {
    /// Connects to `url` (see [`PgConfig::from_url`]: `sslmode`,
    /// `sslrootcert`, `pool_max_size`, `pool_acquire_timeout`, ...) and
    /// applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        let config = PgConfig::from_url(url)?;
        let options = config
            .options()
            .clone()
            .with_application_name(APPLICATION_NAME);
        Self::from_pool(PgPool::open(config.with_options(options)).await?).await
    }

    /// The ledger on an open pool (which other components of the process
    /// may share); applies pending migrations.
    pub async fn from_pool(pool: PgPool) -> Result<Self, LedgerError> {
        let report = pool.migrate(&MIGRATIONS).await?;
        if !report.applied.is_empty() {
            tracing::info!(
                from = report.from,
                to = report.to,
                "postgres ledger schema migrated"
            );
        }
        Ok(Self {
            locks: pool.lock_session(),
            pool,
        })
    }

    /// The pool the ledger's queries use (to share it, or for metrics).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn get(&self, fingerprint: &str) -> Result<Option<SettlementRecord>, LedgerError> {
        let row = self.pool.query_opt(&sql::get(), &[&fingerprint]).await?;
        row.as_ref().map(decode).transpose()
    }

    async fn unresolved(&self) -> Result<Vec<SettlementRecord>, LedgerError> {
        let rows = self.pool.query(&sql::unresolved(), &[]).await?;
        rows.iter().map(decode).collect()
    }

    async fn find_by_transaction(
        &self,
        transaction: &str,
    ) -> Result<Option<SettlementRecord>, LedgerError> {
        let row = self
            .pool
            .query_opt(&sql::find_by_transaction(), &[&transaction])
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn payment_id_binding(&self, id: &str) -> Result<Option<String>, LedgerError> {
        let row = self.pool.query_opt(sql::PAYMENT_ID_BINDING, &[&id]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn claim_payment_id(
        &self,
        id: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.claim(
            sql::CLAIM_PAYMENT_ID,
            sql::PAYMENT_ID_BINDING,
            id,
            fingerprint,
        )
        .await
    }

    async fn claim_transaction(
        &self,
        transaction: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.claim(
            sql::CLAIM_TRANSACTION,
            sql::TRANSACTION_BINDING,
            transaction,
            fingerprint,
        )
        .await
    }

    /// Inserts `(key, fingerprint)` unless `key` is bound, then reads the
    /// binding back. ON CONFLICT waits for a concurrent insert of the same
    /// key to commit, so the read sees whichever binding won.
    async fn claim(
        &self,
        insert: &str,
        select: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        // One connection, so the read follows the insert's commit.
        let connection = self.pool.get().await?;
        let insert = connection.prepare_cached(insert).await?;
        let select = connection.prepare_cached(select).await?;
        connection
            .execute(&insert, &[&key, &fingerprint, &now()])
            .await?;
        let bound: String = connection.query_one(&select, &[&key]).await?.try_get(0)?;
        Ok(if bound == fingerprint {
            PaymentIdClaim::Bound
        } else {
            PaymentIdClaim::Conflict { fingerprint: bound }
        })
    }

    /// The claim and the `submitted` mark in one transaction: one commit
    /// (one WAL flush) on the broadcast's critical path instead of two.
    async fn claim_and_mark_submitted(
        &self,
        transaction: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        let mut connection = self.pool.get().await?;
        let tx = connection.transaction().await?;
        let claim = tx.prepare_cached(sql::CLAIM_TRANSACTION).await?;
        let binding = tx.prepare_cached(sql::TRANSACTION_BINDING).await?;
        let mark = tx.prepare_cached(sql::MARK_SUBMITTED).await?;
        tx.execute(&claim, &[&transaction, &fingerprint, &now()])
            .await?;
        let bound: String = tx.query_one(&binding, &[&transaction]).await?.try_get(0)?;
        if bound != fingerprint {
            return Ok(PaymentIdClaim::Conflict { fingerprint: bound });
        }
        let changed = tx
            .execute(&mark, &[&fingerprint, &transaction, &now()])
            .await?;
        if changed != 1 {
            // Dropping `tx` rolls the claim back too.
            return Err(LedgerError::Corrupt(format!(
                "no settlement {fingerprint} to mark submitted"
            )));
        }
        tx.commit().await?;
        Ok(PaymentIdClaim::Bound)
    }

    async fn mark_delivered(
        &self,
        fingerprint: &str,
        delivery: &Delivery,
    ) -> Result<(), LedgerError> {
        let at = i64::try_from(delivery.at).unwrap_or(i64::MAX);
        self.pool
            .execute(
                sql::MARK_DELIVERED,
                &[
                    &fingerprint,
                    &delivery.state.as_str(),
                    &delivery.caller,
                    &delivery.payment_id,
                    &at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn mark_received(
        &self,
        fingerprint: &str,
        request: &FacilitatorRequest,
        payment_id: Option<&str>,
    ) -> Result<(), LedgerError> {
        let network = request.payment_requirements.network.to_string();
        let request = to_json(request)?;
        self.pool
            .execute(
                sql::MARK_RECEIVED,
                &[&fingerprint, &network, &payment_id, &now(), &request],
            )
            .await?;
        Ok(())
    }

    async fn mark_submitted(
        &self,
        fingerprint: &str,
        transaction: &str,
    ) -> Result<(), LedgerError> {
        let changed = self
            .pool
            .execute(sql::MARK_SUBMITTED, &[&fingerprint, &transaction, &now()])
            .await?;
        if changed == 1 {
            Ok(())
        } else {
            Err(LedgerError::Corrupt(format!(
                "no settlement {fingerprint} to mark submitted"
            )))
        }
    }

    async fn record_outcome(
        &self,
        fingerprint: &str,
        response: &SettleResponse,
    ) -> Result<SettlementState, LedgerError> {
        let state = SettlementState::of(response);
        let json = stored_response(response)?;
        let transaction = Some(response.transaction.as_str()).filter(|t| !t.is_empty());
        self.pool
            .execute(
                sql::RECORD_OUTCOME,
                &[&fingerprint, &state.as_str(), &transaction, &json, &now()],
            )
            .await?;
        Ok(state)
    }

    async fn record_error(&self, fingerprint: &str, error: &str) -> Result<(), LedgerError> {
        self.pool
            .execute(sql::RECORD_ERROR, &[&fingerprint, &error, &now()])
            .await?;
        Ok(())
    }

    /// Takes the cross-process lock of one settlement on the lock session,
    /// polling while another process holds it, for at most [`LOCK_WAIT`].
    /// Never blocks the session: the other locks it carries keep working.
    async fn lock(&self, key: &str) -> Result<StoreLock, LedgerError> {
        let key = LockKey::text(SETTLEMENT_LOCK_CLASS, key);
        Ok(StoreLock::holding(self.locks.lock(&key, LOCK_WAIT).await?))
    }

    async fn purge_unsent_failures(&self, before: i64) -> Result<u64, LedgerError> {
        let mut deleted = 0u64;
        loop {
            let batch: i64 = self
                .pool
                .query_one(&sql::purge_unsent_failures(), &[&before, &PURGE_BATCH])
                .await?
                .try_get(0)?;
            deleted += u64::try_from(batch).unwrap_or(0);
            if batch < PURGE_BATCH {
                break;
            }
        }
        let since: i64 = match self.pool.query_opt(sql::ORPHAN_CURSOR, &[]).await? {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        loop {
            let batch = self
                .pool
                .execute(
                    sql::PURGE_ORPHAN_PAYMENT_IDS,
                    &[&since, &before, &PURGE_BATCH],
                )
                .await?;
            if i64::try_from(batch).unwrap_or(0) < PURGE_BATCH {
                break;
            }
        }
        self.pool
            .execute(sql::ADVANCE_ORPHAN_CURSOR, &[&before])
            .await?;
        Ok(deleted)
    }
}

impl LedgerStore for PostgresStore {
    fn get<'a>(&'a self, fingerprint: &'a str) -> StoreFuture<'a, Option<SettlementRecord>> {
        Box::pin(PostgresStore::get(self, fingerprint))
    }
    fn unresolved(&self) -> StoreFuture<'_, Vec<SettlementRecord>> {
        Box::pin(PostgresStore::unresolved(self))
    }
    fn find_by_transaction<'a>(
        &'a self,
        transaction: &'a str,
    ) -> StoreFuture<'a, Option<SettlementRecord>> {
        Box::pin(PostgresStore::find_by_transaction(self, transaction))
    }
    fn payment_id_binding<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(PostgresStore::payment_id_binding(self, id))
    }
    fn claim_payment_id<'a>(
        &'a self,
        id: &'a str,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, PaymentIdClaim> {
        Box::pin(PostgresStore::claim_payment_id(self, id, fingerprint))
    }
    fn mark_received<'a>(
        &'a self,
        fingerprint: &'a str,
        request: &'a FacilitatorRequest,
        payment_id: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(PostgresStore::mark_received(
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
        Box::pin(PostgresStore::mark_submitted(
            self,
            fingerprint,
            transaction,
        ))
    }
    fn record_outcome<'a>(
        &'a self,
        fingerprint: &'a str,
        response: &'a SettleResponse,
    ) -> StoreFuture<'a, SettlementState> {
        Box::pin(PostgresStore::record_outcome(self, fingerprint, response))
    }
    fn record_error<'a>(&'a self, fingerprint: &'a str, error: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(PostgresStore::record_error(self, fingerprint, error))
    }
    fn mark_delivered<'a>(
        &'a self,
        fingerprint: &'a str,
        delivery: &'a Delivery,
    ) -> StoreFuture<'a, ()> {
        Box::pin(PostgresStore::mark_delivered(self, fingerprint, delivery))
    }
    fn claim_transaction<'a>(
        &'a self,
        transaction: &'a str,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, PaymentIdClaim> {
        Box::pin(PostgresStore::claim_transaction(
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
        Box::pin(PostgresStore::claim_and_mark_submitted(
            self,
            transaction,
            fingerprint,
        ))
    }
    fn lock<'a>(&'a self, key: &'a str) -> StoreFuture<'a, StoreLock> {
        Box::pin(PostgresStore::lock(self, key))
    }
    fn purge_unsent_failures(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(PostgresStore::purge_unsent_failures(self, before))
    }
    fn kind(&self) -> &'static str {
        "postgres"
    }
    /// The query pool's use now (no I/O); the lock session's connection is
    /// outside the pool and not counted.
    fn pool_status(&self) -> Option<crate::store::PoolStatus> {
        let status = self.pool.status();
        Some(crate::store::PoolStatus::new(
            status.size,
            status.available,
            status.waiting,
            status.max_size,
        ))
    }
    fn state_counts(&self) -> StoreFuture<'_, Option<Vec<(SettlementState, u64)>>> {
        Box::pin(async move {
            let rows = self.pool.query(sql::STATE_COUNTS, &[]).await?;
            let counts = rows
                .iter()
                .map(|row| Ok((row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?)))
                .collect::<Result<Vec<_>, LedgerError>>()?;
            Ok(Some(crate::store::parse_state_counts(counts)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::ledger::Ledger;
    use crate::ledger::tests::{purge_checks, state_machine_checks};
    use paywire_testkit::postgres::PgCluster;

    #[tokio::test]
    async fn postgres_state_machine_and_payment_ids() -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        let ledger = Ledger::connect_postgres(cluster.url()).await?;
        assert_eq!(ledger.kind(), "postgres");
        state_machine_checks(&ledger).await?;
        // A second instance on the same database applies no migration twice
        // and sees the same rows.
        let other = Ledger::connect_postgres(cluster.url()).await?;
        assert_eq!(
            other.get("f1").await?.map(|r| r.state),
            Some(SettlementState::Confirmed)
        );
        assert_eq!(
            other.claim_payment_id("id", "f2").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "f1".into()
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn postgres_purge_deletes_only_old_unsent_failures()
    -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        purge_checks(&Ledger::connect_postgres(cluster.url()).await?).await?;
        Ok(())
    }

    /// The schema steps earlier releases ran, as they ran them (with their
    /// own `x402_schema_migrations` bookkeeping): a copy, so that these tests
    /// keep building the old databases whatever becomes of the migrations.
    const OLD_MIGRATIONS: [&str; 4] = [
        r#"
CREATE TABLE x402_settlements (
    fingerprint      TEXT PRIMARY KEY,
    network          TEXT NOT NULL,
    payment_id       TEXT,
    state            TEXT NOT NULL,
    transaction_hash TEXT,
    response         TEXT,
    last_error       TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    request          TEXT
);
CREATE INDEX x402_settlements_state ON x402_settlements(state);
CREATE INDEX x402_settlements_transaction ON x402_settlements(transaction_hash);
CREATE TABLE x402_payment_ids (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
"#,
        r#"
ALTER TABLE x402_settlements ADD COLUMN delivered_state TEXT;
ALTER TABLE x402_settlements ADD COLUMN delivered_to TEXT;
ALTER TABLE x402_settlements ADD COLUMN delivered_payment_id TEXT;
ALTER TABLE x402_settlements ADD COLUMN delivered_at BIGINT;
UPDATE x402_settlements
   SET delivered_state = state, delivered_payment_id = payment_id, delivered_at = updated_at
 WHERE state IN ('confirmed', 'failed', 'pending');
CREATE TABLE x402_settled_transactions (
    transaction_hash TEXT PRIMARY KEY,
    fingerprint      TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
INSERT INTO x402_settled_transactions (transaction_hash, fingerprint, created_at)
SELECT DISTINCT ON (transaction_hash) transaction_hash, fingerprint, updated_at
  FROM x402_settlements
 WHERE state = 'confirmed' AND transaction_hash IS NOT NULL
 ORDER BY transaction_hash, created_at
ON CONFLICT (transaction_hash) DO NOTHING;
"#,
        r#"
INSERT INTO x402_settled_transactions (transaction_hash, fingerprint, created_at)
SELECT DISTINCT ON (transaction_hash) transaction_hash, fingerprint, updated_at
  FROM x402_settlements
 WHERE state IN ('submitted', 'pending') AND transaction_hash IS NOT NULL
 ORDER BY transaction_hash, created_at
ON CONFLICT (transaction_hash) DO NOTHING;
"#,
        r#"
CREATE INDEX x402_settlements_unsent_failures ON x402_settlements(updated_at)
 WHERE state = 'failed' AND transaction_hash IS NULL;
CREATE INDEX x402_payment_ids_created ON x402_payment_ids(created_at);
"#,
    ];

    /// A database as an earlier release at `version` left it.
    async fn old_database(
        cluster: &PgCluster,
        version: usize,
        rows: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let connection = observer(cluster).await?.get().await?;
        connection
            .batch_execute(
                "CREATE TABLE x402_schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
        for (n, sql) in OLD_MIGRATIONS.iter().take(version).enumerate() {
            connection.batch_execute(sql).await?;
            let n = i64::try_from(n + 1)?;
            connection
                .execute(
                    "INSERT INTO x402_schema_migrations (version, applied_at) VALUES ($1, 0)",
                    &[&n],
                )
                .await?;
        }
        connection.batch_execute(rows).await?;
        Ok(())
    }

    /// A pool for looking at the database (not the ledger's).
    async fn observer(cluster: &PgCluster) -> Result<PgPool, Box<dyn std::error::Error>> {
        Ok(PgPool::connect(cluster.url()).await?)
    }

    async fn ledger_version(pool: &PgPool) -> Result<Option<i64>, Box<dyn std::error::Error>> {
        Ok(pool
            .query_opt(
                "SELECT version FROM paywire_schema_versions WHERE component = 'ledger'",
                &[],
            )
            .await?
            .map(|row| row.try_get(0))
            .transpose()?)
    }

    /// Connections the cluster has open for `application_name`.
    async fn connections(cluster: &PgCluster) -> Result<i64, Box<dyn std::error::Error>> {
        let row = observer(cluster)
            .await?
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'paywire-facilitator'",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    #[tokio::test]
    async fn settlement_locks_cost_no_connection_each() -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        let store = Arc::new(PostgresStore::connect(cluster.url()).await?);
        // More settlements in flight than the server takes connections.
        let mut held = Vec::new();
        for n in 0..300 {
            held.push(store.lock(&format!("fingerprint-{n}")).await?);
        }
        assert!(held.iter().all(StoreLock::is_held));
        let open = connections(&cluster).await?;
        assert!(open <= 2, "{open} connections for 300 locks");
        // They exclude another process, and are released when dropped.
        let other = PostgresStore::connect(cluster.url()).await?;
        let blocked = tokio::time::timeout(Duration::from_millis(300), other.lock("fingerprint-7"));
        assert!(blocked.await.is_err(), "the lock was not exclusive");
        drop(held);
        let taken = tokio::time::timeout(Duration::from_secs(5), other.lock("fingerprint-7"));
        assert!(taken.await??.is_held());
        Ok(())
    }

    #[tokio::test]
    async fn a_lock_dies_with_its_session() -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        let store = PostgresStore::connect(cluster.url()).await?;
        let lock = store.lock("fp").await?;
        assert!(lock.is_held());
        // The database ends the lock session (restart, failover, admin).
        observer(&cluster)
            .await?
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks
                  WHERE locktype = 'advisory' AND classid::bigint = $1",
                &[&i64::from(SETTLEMENT_LOCK_CLASS)],
            )
            .await?;
        let started = Instant::now();
        while lock.is_held() && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !lock.is_held(),
            "a lock whose session died still counts as held"
        );
        // The store opens a new session for the next lock.
        let again = tokio::time::timeout(Duration::from_secs(5), store.lock("fp")).await??;
        assert!(again.is_held());
        Ok(())
    }

    #[tokio::test]
    async fn postgres_rows_answered_before_the_upgrade_count_as_delivered()
    -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        // A database at schema version 1, with one settled row.
        old_database(
            &cluster,
            1,
            "INSERT INTO x402_settlements (fingerprint, network, payment_id, state,
                 transaction_hash, attempts, created_at, updated_at)
             VALUES ('settled', 'eip155:1', NULL, 'confirmed', '0xabc', 1, 5, 7),
                    ('out', 'eip155:1', NULL, 'pending', '0xdef', 1, 5, 7);",
        )
        .await?;
        let ledger = Ledger::connect_postgres(cluster.url()).await?;
        assert_eq!(ledger_version(&observer(&cluster).await?).await?, Some(5));
        let settled = ledger.get("settled").await?.ok_or("missing")?;
        assert_eq!(
            settled.delivery.map(|d| (d.state, d.caller, d.at)),
            Some((SettlementState::Confirmed, None, 7))
        );
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
    async fn advisory_lock_excludes_across_connections() -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        let a = PostgresStore::connect(cluster.url()).await?;
        let b = PostgresStore::connect(cluster.url()).await?;
        let held = a.lock("fp").await?;
        // Another key is free.
        let other = tokio::time::timeout(Duration::from_secs(5), b.lock("other")).await??;
        drop(other);
        // The same key waits until the holder lets go.
        let started = Instant::now();
        let waiter = tokio::spawn(async move { b.lock("fp").await.map(|_| started.elapsed()) });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "the lock was not exclusive");
        drop(held);
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_database_of_an_earlier_release_is_adopted_with_its_data()
    -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        old_database(
            &cluster,
            4,
            "INSERT INTO x402_settlements (fingerprint, network, payment_id, state,
                 transaction_hash, attempts, created_at, updated_at, delivered_state, delivered_at)
             VALUES ('kept', 'eip155:1', 'pay-1', 'confirmed', '0xabc', 1, 5, 7, 'confirmed', 7);
             INSERT INTO x402_payment_ids VALUES ('pay-1', 'kept', 5);
             INSERT INTO x402_settled_transactions VALUES ('0xabc', 'kept', 7);",
        )
        .await?;
        // Version 1 is not idempotent (CREATE TABLE): had it run again, the
        // connect would fail.
        let ledger = Ledger::connect_postgres(cluster.url()).await?;
        let kept = ledger.get("kept").await?.ok_or("the row is gone")?;
        assert_eq!(kept.state, SettlementState::Confirmed);
        assert_eq!(
            ledger.payment_id_binding("pay-1").await?,
            Some("kept".into())
        );
        assert_eq!(
            ledger.claim_transaction("0xabc", "other").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "kept".into()
            }
        );
        let observer = observer(&cluster).await?;
        assert_eq!(ledger_version(&observer).await?, Some(5));
        // A second start finds its own bookkeeping.
        Ledger::connect_postgres(cluster.url()).await?;
        assert_eq!(ledger_version(&observer).await?, Some(5));
        Ok(())
    }

    #[tokio::test]
    async fn a_fresh_database_gets_every_version() -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        let store = PostgresStore::connect(cluster.url()).await?;
        assert_eq!(ledger_version(store.pool()).await?, Some(5));
        let indexes: i64 = store
            .pool()
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname IN
                   ('x402_settlements_unsent_failures', 'x402_payment_ids_created')",
                &[],
            )
            .await?
            .try_get(0)?;
        assert_eq!(indexes, 2);
        assert!(LedgerStore::pool_status(&store).is_some_and(|status| status.size >= 1));
        Ok(())
    }

    #[tokio::test]
    async fn a_newer_ledger_schema_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        drop(Ledger::connect_postgres(cluster.url()).await?);
        observer(&cluster)
            .await?
            .execute(
                "UPDATE paywire_schema_versions SET version = 6 WHERE component = 'ledger'",
                &[],
            )
            .await?;
        let refused = Ledger::connect_postgres(cluster.url()).await;
        let error = refused.err().ok_or("a newer schema was accepted")?;
        assert!(
            matches!(
                &error,
                LedgerError::Store(paywire_store::StoreError::SchemaTooNew {
                    database: 6,
                    code: 5,
                    ..
                })
            ),
            "{error:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_ledger_keeps_working_after_a_database_restart()
    -> Result<(), Box<dyn std::error::Error>> {
        let Some(cluster) = PgCluster::start_or_skip().await? else {
            return Ok(());
        };
        let ledger = Ledger::connect_postgres(cluster.url()).await?;
        let request = crate::ledger::tests::request();
        ledger.mark_received("before", &request, None).await?;
        let lock = ledger.lock("before").await?;
        assert!(lock.is_held());
        cluster.restart().await?;
        // The lock went with its session; nothing is rebuilt, and the first
        // operations after the restart succeed.
        let started = Instant::now();
        while lock.is_held() && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!lock.is_held(), "a lock of a dead session counts as held");
        drop(lock);
        let before = ledger.get("before").await?.ok_or("the row is gone")?;
        assert_eq!(before.state, SettlementState::Received);
        ledger.mark_received("after", &request, Some("id")).await?;
        assert_eq!(
            ledger.claim_payment_id("id", "after").await?,
            PaymentIdClaim::Bound
        );
        let again = tokio::time::timeout(Duration::from_secs(10), ledger.lock("before")).await??;
        assert!(again.is_held());
        Ok(())
    }
}
