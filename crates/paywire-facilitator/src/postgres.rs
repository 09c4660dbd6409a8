//! The PostgreSQL ledger store, for several facilitator instances sharing
//! one database (store URL `postgres://user[:password]@host[:port]/db`; no
//! TLS: run it on a private network or through a local proxy).
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
//!   process's settlement locks share one lock session (a second
//!   connection): settlements in flight cost no database connections, and a
//!   crashed process releases its locks with its session. A lock whose
//!   session died is no longer held ([`crate::store::HeldLock`]), and the
//!   settlement broadcasts nothing.
//!
//! The schema is created and migrated on connect, under an advisory lock so
//! that instances starting together do not race.

use std::sync::Arc;
use std::time::Duration;

use paywire_core::{FacilitatorRequest, SettleResponse};
use tokio_postgres::{Client, Config, NoTls, Row};

use crate::store::{
    Delivery, HeldLock, LedgerError, LedgerStore, PURGE_BATCH, PaymentIdClaim, RECORD_COLUMNS,
    RawRow, SettlementRecord, SettlementState, StoreFuture, StoreLock, UNSENT_FAILURE, decode_row,
    now, stored_response,
};

/// Advisory lock class of settlement locks (the object id is
/// `hashtext(key)`; a hash collision only serialises two unrelated
/// settlements).
const SETTLEMENT_LOCK_CLASS: i32 = 4020;
/// Advisory lock class of the schema migration lock.
const MIGRATION_LOCK_CLASS: i32 = 4021;

/// The longest a settlement waits for its lock while another process holds
/// it (that process runs the same payment: a settle, with its receipt wait).
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

/// The first pause between attempts to take a held lock; it doubles up to
/// [`LOCK_POLL_MAX`].
const LOCK_POLL_MIN: Duration = Duration::from_millis(20);
const LOCK_POLL_MAX: Duration = Duration::from_millis(250);

/// Schema migrations, applied in order; `x402_schema_migrations` records them.
const MIGRATIONS: &[&str] = &[
    // 1: settlements (with the request, for recovery) and payment-identifier bindings.
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
    // 2: who was told each outcome, and which payload each settled
    // transaction belongs to. Rows that already had an outcome were answered
    // under the old rules: they count as delivered (to an unnamed caller), so
    // that a replay of them is refused too.
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
    // 3: transactions are claimed before their broadcast: claim those that
    // were out (submitted, pending) at the upgrade.
    r#"
INSERT INTO x402_settled_transactions (transaction_hash, fingerprint, created_at)
SELECT DISTINCT ON (transaction_hash) transaction_hash, fingerprint, updated_at
  FROM x402_settlements
 WHERE state IN ('submitted', 'pending') AND transaction_hash IS NOT NULL
 ORDER BY transaction_hash, created_at
ON CONFLICT (transaction_hash) DO NOTHING;
"#,
    // 4: the retention purge finds settlements that failed before sending,
    // and old payment-identifier bindings, by age.
    r#"
CREATE INDEX x402_settlements_unsent_failures ON x402_settlements(updated_at)
 WHERE state = 'failed' AND transaction_hash IS NULL;
CREATE INDEX x402_payment_ids_created ON x402_payment_ids(created_at);
"#,
];

const COLUMNS: &str = RECORD_COLUMNS;

/// The PostgreSQL store: one shared connection for queries and one for the
/// settlement locks (each re-opened if it drops).
pub struct PostgresStore {
    config: Config,
    client: tokio::sync::Mutex<Arc<Client>>,
    lock_session: tokio::sync::Mutex<Option<Arc<Client>>>,
}

/// One settlement's advisory lock, held on the store's lock session and
/// released (`pg_advisory_unlock`) when dropped.
struct AdvisoryLock {
    session: Arc<Client>,
    key: String,
}

impl HeldLock for AdvisoryLock {
    fn is_held(&self) -> bool {
        // Session locks go only with an explicit unlock or the session.
        !self.session.is_closed()
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let session = Arc::clone(&self.session);
        let key = std::mem::take(&mut self.key);
        // Without a runtime the process is ending: the session goes with it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let unlocked = session
                    .execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))",
                        &[&SETTLEMENT_LOCK_CLASS, &key],
                    )
                    .await;
                if let Err(error) = unlocked
                    && !session.is_closed()
                {
                    tracing::warn!(%error, "could not release a settlement lock");
                }
            });
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the config: it may hold a password.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

async fn open(config: &Config) -> Result<Client, LedgerError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "postgres ledger connection closed");
        }
    });
    Ok(client)
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
    /// Connects to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        let mut config: Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("paywire-facilitator");
        }
        let mut client = open(&config).await?;
        migrate(&mut client).await?;
        Ok(Self {
            config,
            client: tokio::sync::Mutex::new(Arc::new(client)),
            lock_session: tokio::sync::Mutex::new(None),
        })
    }

    async fn client(&self) -> Result<Arc<Client>, LedgerError> {
        let mut current = self.client.lock().await;
        if current.is_closed() {
            tracing::warn!("postgres ledger connection lost; reconnecting");
            *current = Arc::new(open(&self.config).await?);
        }
        Ok(Arc::clone(&current))
    }

    async fn get(&self, fingerprint: &str) -> Result<Option<SettlementRecord>, LedgerError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM x402_settlements WHERE fingerprint = $1"),
                &[&fingerprint],
            )
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn unresolved(&self) -> Result<Vec<SettlementRecord>, LedgerError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM x402_settlements
                     WHERE state IN ('received', 'submitted', 'pending') ORDER BY updated_at"
                ),
                &[],
            )
            .await?;
        rows.iter().map(decode).collect()
    }

    async fn find_by_transaction(
        &self,
        transaction: &str,
    ) -> Result<Option<SettlementRecord>, LedgerError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM x402_settlements WHERE transaction_hash = $1
                     ORDER BY COALESCE(fingerprint = (SELECT fingerprint FROM x402_settled_transactions
                                                      WHERE transaction_hash = $1), false) DESC,
                              updated_at DESC
                     LIMIT 1"
                ),
                &[&transaction],
            )
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn payment_id_binding(&self, id: &str) -> Result<Option<String>, LedgerError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT fingerprint FROM x402_payment_ids WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn claim_payment_id(
        &self,
        id: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.claim(
            "INSERT INTO x402_payment_ids (id, fingerprint, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
            "SELECT fingerprint FROM x402_payment_ids WHERE id = $1",
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
            "INSERT INTO x402_settled_transactions (transaction_hash, fingerprint, created_at)
             VALUES ($1, $2, $3) ON CONFLICT (transaction_hash) DO NOTHING",
            "SELECT fingerprint FROM x402_settled_transactions WHERE transaction_hash = $1",
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
        let client = self.client().await?;
        client
            .execute(insert, &[&key, &fingerprint, &now()])
            .await?;
        let bound: String = client.query_one(select, &[&key]).await?.try_get(0)?;
        Ok(if bound == fingerprint {
            PaymentIdClaim::Bound
        } else {
            PaymentIdClaim::Conflict { fingerprint: bound }
        })
    }

    async fn mark_delivered(
        &self,
        fingerprint: &str,
        delivery: &Delivery,
    ) -> Result<(), LedgerError> {
        let client = self.client().await?;
        let at = i64::try_from(delivery.at).unwrap_or(i64::MAX);
        client
            .execute(
                "UPDATE x402_settlements SET delivered_state = $2, delivered_to = $3,
                        delivered_payment_id = $4, delivered_at = $5
                 WHERE fingerprint = $1",
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
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO x402_settlements
                    (fingerprint, network, payment_id, state, attempts, created_at, updated_at, request)
                 VALUES ($1, $2, $3, 'received', 1, $4, $4, $5)
                 ON CONFLICT (fingerprint) DO UPDATE SET
                    state = CASE WHEN x402_settlements.state IN ('submitted', 'pending')
                                 THEN x402_settlements.state ELSE 'received' END,
                    payment_id = COALESCE(x402_settlements.payment_id, EXCLUDED.payment_id),
                    request = COALESCE(x402_settlements.request, EXCLUDED.request),
                    attempts = x402_settlements.attempts + 1,
                    updated_at = EXCLUDED.updated_at",
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
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE x402_settlements SET state = 'submitted', transaction_hash = $2, updated_at = $3
                 WHERE fingerprint = $1",
                &[&fingerprint, &transaction, &now()],
            )
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
        let client = self.client().await?;
        client
            .execute(
                "UPDATE x402_settlements SET state = $2,
                        transaction_hash = COALESCE($3, transaction_hash),
                        response = $4, last_error = NULL, updated_at = $5
                 WHERE fingerprint = $1",
                &[&fingerprint, &state.as_str(), &transaction, &json, &now()],
            )
            .await?;
        Ok(state)
    }

    async fn record_error(&self, fingerprint: &str, error: &str) -> Result<(), LedgerError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE x402_settlements SET last_error = $2, updated_at = $3 WHERE fingerprint = $1",
                &[&fingerprint, &error, &now()],
            )
            .await?;
        Ok(())
    }

    /// The session holding this process's settlement locks, re-opened if
    /// it dropped (its locks went with it).
    async fn lock_session(&self) -> Result<Arc<Client>, LedgerError> {
        let mut current = self.lock_session.lock().await;
        if let Some(session) = current.as_ref()
            && !session.is_closed()
        {
            return Ok(Arc::clone(session));
        }
        let session = Arc::new(open(&self.config).await?);
        *current = Some(Arc::clone(&session));
        Ok(session)
    }

    /// Takes the cross-process lock of one settlement on the lock session,
    /// polling while another process holds it, for at most [`LOCK_WAIT`].
    /// Never blocks the session: the other locks it carries keep working.
    async fn lock(&self, key: &str) -> Result<StoreLock, LedgerError> {
        let started = tokio::time::Instant::now();
        let mut pause = LOCK_POLL_MIN;
        loop {
            let session = self.lock_session().await?;
            let taken: bool = session
                .query_one(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    &[&SETTLEMENT_LOCK_CLASS, &key],
                )
                .await?
                .try_get(0)?;
            if taken {
                return Ok(StoreLock::holding(AdvisoryLock {
                    session,
                    key: key.to_owned(),
                }));
            }
            if started.elapsed() >= LOCK_WAIT {
                return Err(LedgerError::LockTimeout(LOCK_WAIT));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LOCK_POLL_MAX);
        }
    }

    async fn purge_unsent_failures(&self, before: i64) -> Result<u64, LedgerError> {
        let client = self.client().await?;
        let mut deleted = 0;
        loop {
            let batch = client
                .execute(
                    &format!(
                        "DELETE FROM x402_settlements WHERE fingerprint IN (
                            SELECT fingerprint FROM x402_settlements
                             WHERE {UNSENT_FAILURE} AND updated_at < $1 LIMIT $2)"
                    ),
                    &[&before, &PURGE_BATCH],
                )
                .await?;
            deleted += batch;
            if i64::try_from(batch).unwrap_or(0) < PURGE_BATCH {
                break;
            }
        }
        loop {
            let batch = client
                .execute(
                    "DELETE FROM x402_payment_ids WHERE id IN (
                        SELECT id FROM x402_payment_ids p
                         WHERE p.created_at < $1
                           AND NOT EXISTS (SELECT 1 FROM x402_settlements s
                                            WHERE s.fingerprint = p.fingerprint)
                         LIMIT $2)",
                    &[&before, &PURGE_BATCH],
                )
                .await?;
            if i64::try_from(batch).unwrap_or(0) < PURGE_BATCH {
                break;
            }
        }
        Ok(deleted)
    }
}

async fn migrate(client: &mut Client) -> Result<(), LedgerError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, 0)",
        &[&MIGRATION_LOCK_CLASS],
    )
    .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS x402_schema_migrations (
            version    BIGINT PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )
    .await?;
    let applied: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM x402_schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let applied = usize::try_from(applied).unwrap_or(0);
    for (n, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(migration).await?;
        let version = i64::try_from(n + 1).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO x402_schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &now()],
        )
        .await?;
        tracing::info!(version, "postgres ledger schema migrated");
    }
    tx.commit().await?;
    Ok(())
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
    fn lock<'a>(&'a self, key: &'a str) -> StoreFuture<'a, StoreLock> {
        Box::pin(PostgresStore::lock(self, key))
    }
    fn purge_unsent_failures(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(PostgresStore::purge_unsent_failures(self, before))
    }
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn state_counts(&self) -> StoreFuture<'_, Option<Vec<(SettlementState, u64)>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT state, COUNT(*) FROM x402_settlements GROUP BY state",
                    &[],
                )
                .await?;
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

    /// Connections the cluster has open for `application_name`.
    async fn connections(cluster: &PgCluster) -> Result<i64, Box<dyn std::error::Error>> {
        let (client, connection) = cluster.url().parse::<Config>()?.connect(NoTls).await?;
        tokio::spawn(connection);
        let row = client
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
        let (client, connection) = cluster.url().parse::<Config>()?.connect(NoTls).await?;
        tokio::spawn(connection);
        client
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
        {
            // A database at schema version 1, with one settled row.
            let (client, connection) = cluster.url().parse::<Config>()?.connect(NoTls).await?;
            let connection = tokio::spawn(connection);
            client
                .batch_execute(&format!(
                    "CREATE TABLE x402_schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
                     INSERT INTO x402_schema_migrations VALUES (1, 0);
                     {}
                     INSERT INTO x402_settlements (fingerprint, network, payment_id, state,
                         transaction_hash, attempts, created_at, updated_at)
                     VALUES ('settled', 'eip155:1', NULL, 'confirmed', '0xabc', 1, 5, 7),
                            ('out', 'eip155:1', NULL, 'pending', '0xdef', 1, 5, 7);",
                    MIGRATIONS[0]
                ))
                .await?;
            drop(client);
            connection.await??;
        }
        let ledger = Ledger::connect_postgres(cluster.url()).await?;
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
}
