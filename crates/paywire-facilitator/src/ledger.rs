//! The settlement ledger: one row per settlement attempt key (fingerprint),
//! persisted in SQLite. It records which caller was told each outcome (so a
//! replay can be refused and an idempotent retry answered without touching
//! the chain), binds `payment-identifier` ids to the first payload seen and
//! transactions to the one payload they pay for, and keeps an audit
//! trail (states `received → submitted → confirmed | failed | pending`) that
//! recovery jobs can scan with [`Ledger::unresolved`].
//!
//! [`Ledger`] is a cheap handle on a [`LedgerStore`]: [`SqliteStore`] (the
//! default, one file) or [`crate::postgres::PostgresStore`] (several
//! facilitator instances sharing one database; its [`LedgerStore::lock`]
//! takes a Postgres advisory lock so that a settlement is run by one process
//! at a time).

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use paywire_core::{FacilitatorRequest, PaymentRequirements, SettleResponse};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run.
const MIGRATIONS: &[&str] = &[
    // 1: settlements and payment-identifier bindings.
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
    // 2: the request itself, so that recovery can re-run the settlement.
    r#"
ALTER TABLE settlements ADD COLUMN request TEXT;
"#,
    // 3: who was told each outcome, and which payload each settled
    // transaction belongs to. Rows that already had an outcome were answered
    // under the old rules: they count as delivered (to an unnamed caller), so
    // that a replay of them is refused too.
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
    // 4: transactions are claimed before their broadcast: claim those that
    // were out (submitted, pending) at the upgrade.
    r#"
INSERT OR IGNORE INTO settled_transactions (transaction_hash, fingerprint, created_at)
SELECT transaction_hash, fingerprint, updated_at FROM settlements
 WHERE state IN ('submitted', 'pending') AND transaction_hash IS NOT NULL
 ORDER BY created_at;
"#,
    // 5: the retention purge finds settlements that failed before sending,
    // and old payment-identifier bindings, by age.
    r#"
CREATE INDEX settlements_unsent_failures ON settlements(updated_at)
 WHERE state = 'failed' AND transaction_hash IS NULL;
CREATE INDEX payment_ids_created ON payment_ids(created_at);
"#,
];

/// The columns a [`SettlementRecord`] is read from, in [`RawRow`] order
/// (the same names in the SQLite and the PostgreSQL table).
pub(crate) const RECORD_COLUMNS: &str = "fingerprint, network, payment_id, state, \
    transaction_hash, response, last_error, attempts, created_at, updated_at, request, \
    delivered_state, delivered_to, delivered_payment_id, delivered_at";

/// A ledger failure (database I/O or corruption).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite reported an error.
    #[error("ledger database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error (or the connection failed).
    #[error("ledger database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A stored response could not be decoded.
    #[error("ledger holds an undecodable response: {0}")]
    Corrupt(String),
    /// The blocking task running the query failed.
    #[error("ledger task failed: {0}")]
    Task(String),
    /// Another process held a settlement's lock for longer than a settle
    /// may wait for it.
    #[error("the settlement is busy in another process (waited {0:?})")]
    LockTimeout(std::time::Duration),
}

/// Where a settlement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementState {
    /// Accepted by the facilitator; the scheme has been (or is being) called.
    /// Found at rest, it means the process stopped mid-settlement or the
    /// scheme failed with an infrastructure error.
    Received,
    /// A transaction is signed and about to be (or was) broadcast; its hash
    /// is recorded before it is sent.
    Submitted,
    /// Settled on chain.
    Confirmed,
    /// Settlement failed (the response says why).
    Failed,
    /// A transaction was sent but its outcome is not known yet.
    Pending,
}

impl SettlementState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Submitted => "submitted",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::Pending => "pending",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "received" => Self::Received,
            "submitted" => Self::Submitted,
            "confirmed" => Self::Confirmed,
            "failed" => Self::Failed,
            "pending" => Self::Pending,
            _ => return None,
        })
    }

    /// The state a scheme's answer puts a settlement in.
    pub fn of(response: &SettleResponse) -> Self {
        if response.success {
            Self::Confirmed
        } else if response.is_pending() {
            Self::Pending
        } else {
            Self::Failed
        }
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct SettlementRecord {
    /// Settlement key (see [`fingerprint`]).
    pub fingerprint: String,
    /// CAIP-2 network.
    pub network: String,
    /// `payment-identifier` id, if the client sent one.
    pub payment_id: Option<String>,
    /// Current state.
    pub state: SettlementState,
    /// Transaction hash, once known.
    pub transaction: Option<String>,
    /// The last settle response.
    pub response: Option<SettleResponse>,
    /// The last infrastructure error, if any.
    pub last_error: Option<String>,
    /// The `/settle` request (absent for rows written before it was stored).
    pub request: Option<FacilitatorRequest>,
    /// How many times the scheme was called for this key.
    pub attempts: u32,
    /// Who was last told an outcome of this settlement, and which (`None`:
    /// nobody received one, e.g. every caller hung up before the answer).
    pub delivery: Option<Delivery>,
    /// Unix time of creation.
    pub created_at: u64,
    /// Unix time of the last change.
    pub updated_at: u64,
}

/// The answer one `/settle` caller received (see [`Ledger::mark_delivered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The state the answer reported: `confirmed`, `pending` or `failed`
    /// (an error answer counts as `failed`).
    pub state: SettlementState,
    /// The id of the API key the caller presented (never the key itself).
    pub caller: Option<String>,
    /// The `payment-identifier` id the delivered request carried.
    pub payment_id: Option<String>,
    /// Unix time of the delivery.
    pub at: u64,
}

impl Delivery {
    /// Whether the caller can be recognised when it retries (it presented an
    /// API key or a payment identifier).
    pub fn identified(&self) -> bool {
        self.caller.is_some() || self.payment_id.is_some()
    }
}

/// Result of binding a `payment-identifier` id, or a settled transaction,
/// to a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentIdClaim {
    /// The id (transaction) is now, or already was, bound to this fingerprint.
    Bound,
    /// The id (transaction) is bound to another payload.
    Conflict {
        /// The fingerprint it was first bound to.
        fingerprint: String,
    },
}

/// SHA-256 (hex) of the canonical JSON (keys sorted, no whitespace) of the
/// scheme payload and the requirements: identical payments map to the same
/// key however their JSON members were ordered.
pub fn fingerprint(
    payload: &paywire_core::JsonObject,
    requirements: &PaymentRequirements,
) -> String {
    let mut text = String::new();
    text.push_str("{\"payload\":");
    canonical(&Value::Object(payload.clone()), &mut text);
    text.push_str(",\"requirements\":");
    // Serialising our own wire type cannot fail (string keys only).
    let requirements = serde_json::to_value(requirements).unwrap_or(Value::Null);
    canonical(&requirements, &mut text);
    text.push('}');
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (n, key) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(item) = map.get(key) {
                    canonical(item, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The JSON a response is stored as: its wire form, except that a failure
/// keeps the transaction it names in memory (a broadcast that failed on
/// chain, which makes the failure final), which the wire never carries.
pub(crate) fn stored_response(response: &SettleResponse) -> Result<String, LedgerError> {
    let corrupt = |e: serde_json::Error| LedgerError::Corrupt(e.to_string());
    let mut value = serde_json::to_value(response).map_err(corrupt)?;
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "transaction".to_owned(),
            Value::String(response.transaction.clone()),
        );
    }
    serde_json::to_string(&value).map_err(corrupt)
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// A boxed future returned by [`LedgerStore`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send + 'a>>;

/// A store-level lock that is released when dropped.
pub trait HeldLock: Send + Sync {
    /// Whether the lock is still held: a lock tied to a database session is
    /// lost with the session, and a settlement must not broadcast then.
    fn is_held(&self) -> bool;
}

/// Holds a store-level settlement lock until dropped (see [`LedgerStore::lock`]).
pub struct StoreLock(Option<Arc<dyn HeldLock>>);

impl StoreLock {
    /// No lock beyond the process-local one (single-process stores).
    pub fn none() -> Self {
        Self(None)
    }

    /// A lock released when `held` is dropped.
    pub fn holding(held: impl HeldLock + 'static) -> Self {
        Self(Some(Arc::new(held)))
    }

    /// Whether the lock is still held (always, for [`StoreLock::none`]).
    pub fn is_held(&self) -> bool {
        self.0.as_ref().is_none_or(|held| held.is_held())
    }

    /// A check of [`StoreLock::is_held`] that outlives this borrow (the
    /// lock itself is released when this `StoreLock` drops).
    pub(crate) fn watch(&self) -> LockWatch {
        LockWatch(self.0.as_ref().map(Arc::downgrade))
    }
}

/// Tells whether a [`StoreLock`] is still held, without holding it.
#[derive(Clone, Default)]
pub(crate) struct LockWatch(Option<std::sync::Weak<dyn HeldLock>>);

impl LockWatch {
    /// Held: no store lock was needed, or it is alive and still held.
    pub(crate) fn is_held(&self) -> bool {
        match &self.0 {
            None => true,
            Some(weak) => weak.upgrade().is_some_and(|held| held.is_held()),
        }
    }
}

impl std::fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreLock").field(&self.0.is_some()).finish()
    }
}

/// A settlement ledger backend. Every method is one atomic step of the
/// state machine described in the module documentation.
pub trait LedgerStore: Send + Sync + 'static {
    /// The record for `fingerprint`, if any.
    fn get<'a>(&'a self, fingerprint: &'a str) -> StoreFuture<'a, Option<SettlementRecord>>;
    /// Records in `received`, `submitted` or `pending`, oldest change first.
    fn unresolved(&self) -> StoreFuture<'_, Vec<SettlementRecord>>;
    /// The record whose transaction hash is `transaction`, if any.
    fn find_by_transaction<'a>(
        &'a self,
        transaction: &'a str,
    ) -> StoreFuture<'a, Option<SettlementRecord>>;
    /// The fingerprint `id` is bound to, if any.
    fn payment_id_binding<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<String>>;
    /// Binds `id` to `fingerprint` unless already bound (atomically).
    fn claim_payment_id<'a>(
        &'a self,
        id: &'a str,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, PaymentIdClaim>;
    /// See [`Ledger::mark_received`].
    fn mark_received<'a>(
        &'a self,
        fingerprint: &'a str,
        request: &'a FacilitatorRequest,
        payment_id: Option<&'a str>,
    ) -> StoreFuture<'a, ()>;
    /// See [`Ledger::mark_submitted`].
    fn mark_submitted<'a>(
        &'a self,
        fingerprint: &'a str,
        transaction: &'a str,
    ) -> StoreFuture<'a, ()>;
    /// See [`Ledger::record_outcome`].
    fn record_outcome<'a>(
        &'a self,
        fingerprint: &'a str,
        response: &'a SettleResponse,
    ) -> StoreFuture<'a, SettlementState>;
    /// See [`Ledger::record_error`].
    fn record_error<'a>(&'a self, fingerprint: &'a str, error: &'a str) -> StoreFuture<'a, ()>;
    /// See [`Ledger::mark_delivered`].
    fn mark_delivered<'a>(
        &'a self,
        fingerprint: &'a str,
        delivery: &'a Delivery,
    ) -> StoreFuture<'a, ()>;
    /// See [`Ledger::claim_transaction`].
    fn claim_transaction<'a>(
        &'a self,
        transaction: &'a str,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, PaymentIdClaim>;
    /// See [`Ledger::purge_unsent_failures`].
    fn purge_unsent_failures(&self, before: i64) -> StoreFuture<'_, u64>;
    /// Takes the store-wide lock of one settlement, on top of the
    /// process-local one: for stores shared by several processes, so that a
    /// payment is settled by one of them at a time. It only excludes other
    /// processes (within one, the caller serialises settlements of the same
    /// fingerprint first). The default is no lock.
    fn lock<'a>(&'a self, fingerprint: &'a str) -> StoreFuture<'a, StoreLock> {
        let _ = fingerprint;
        Box::pin(async { Ok(StoreLock::none()) })
    }
    /// A short name for logs (`sqlite`, `postgres`).
    fn kind(&self) -> &'static str;
}

/// The settlement ledger: a cheap handle on a [`LedgerStore`].
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn LedgerStore>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("store", &self.store.kind())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger on any store.
    pub fn from_store(store: Arc<dyn LedgerStore>) -> Self {
        Self { store }
    }

    /// Opens (creating if needed) a SQLite database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        Ok(Self::from_store(Arc::new(SqliteStore::open(path).await?)))
    }

    /// An in-memory SQLite ledger (tests, ephemeral deployments).
    pub async fn in_memory() -> Result<Self, LedgerError> {
        Ok(Self::from_store(Arc::new(SqliteStore::in_memory().await?)))
    }

    /// Connects to a PostgreSQL database (`postgres://user@host:port/db`) and
    /// applies migrations.
    pub async fn connect_postgres(url: &str) -> Result<Self, LedgerError> {
        Ok(Self::from_store(Arc::new(
            crate::postgres::PostgresStore::connect(url).await?,
        )))
    }

    /// The backend's short name (`sqlite`, `postgres`).
    pub fn kind(&self) -> &'static str {
        self.store.kind()
    }

    /// The record for `fingerprint`, if any.
    pub async fn get(&self, fingerprint: &str) -> Result<Option<SettlementRecord>, LedgerError> {
        self.store.get(fingerprint).await
    }

    /// Records that do not have a final outcome (`received`, `submitted`,
    /// `pending`): the work list of a recovery job.
    pub async fn unresolved(&self) -> Result<Vec<SettlementRecord>, LedgerError> {
        self.store.unresolved().await
    }

    /// The record whose transaction hash is `transaction`, if any: the one
    /// the transaction is claimed by when several name it (a re-spelled
    /// payload refused as a replay keeps the transaction it was refused for).
    pub async fn find_by_transaction(
        &self,
        transaction: &str,
    ) -> Result<Option<SettlementRecord>, LedgerError> {
        self.store.find_by_transaction(transaction).await
    }

    /// The fingerprint `id` is bound to, if any.
    pub async fn payment_id_binding(&self, id: &str) -> Result<Option<String>, LedgerError> {
        self.store.payment_id_binding(id).await
    }

    /// Binds `id` to `fingerprint` unless it is already bound (atomically).
    pub async fn claim_payment_id(
        &self,
        id: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.store.claim_payment_id(id, fingerprint).await
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
        self.store
            .mark_received(fingerprint, request, payment_id)
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
        self.store.mark_submitted(fingerprint, transaction).await
    }

    /// Stores the scheme's answer and the state it implies.
    pub async fn record_outcome(
        &self,
        fingerprint: &str,
        response: &SettleResponse,
    ) -> Result<SettlementState, LedgerError> {
        self.store.record_outcome(fingerprint, response).await
    }

    /// Stores an infrastructure error; the record stays `received` so that a
    /// retry calls the scheme again (on-chain idempotency makes that safe).
    pub async fn record_error(&self, fingerprint: &str, error: &str) -> Result<(), LedgerError> {
        self.store.record_error(fingerprint, error).await
    }

    /// Records that `delivery` (a caller, the state it was told) received
    /// an answer for `fingerprint`: the replay rules key on it.
    pub async fn mark_delivered(
        &self,
        fingerprint: &str,
        delivery: &Delivery,
    ) -> Result<(), LedgerError> {
        self.store.mark_delivered(fingerprint, delivery).await
    }

    /// Binds `transaction` to `fingerprint` unless it is already bound
    /// (atomically, across processes sharing the store): one on-chain payment
    /// answers success to one payload only, however it was re-spelled. A
    /// transaction this facilitator sends is claimed before its broadcast;
    /// one found on chain (sent by someone else) when an answer first names it.
    pub async fn claim_transaction(
        &self,
        transaction: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.store.claim_transaction(transaction, fingerprint).await
    }

    /// Takes the store-wide lock of one settlement (see [`LedgerStore::lock`]).
    pub async fn lock(&self, fingerprint: &str) -> Result<StoreLock, LedgerError> {
        self.store.lock(fingerprint).await
    }

    /// Deletes the settlements that failed before any transaction was sent
    /// (no transaction hash recorded, never answered success) and last
    /// changed before unix time `before`, and the payment-identifier
    /// bindings older than that whose settlement is gone. Returns how many
    /// settlements were deleted.
    ///
    /// Nothing the replay guard needs goes: a refusal before sending may be
    /// retried anyway, and every row that names a transaction (confirmed,
    /// reverted, pending, submitted) and every transaction claim is kept.
    pub async fn purge_unsent_failures(&self, before: u64) -> Result<u64, LedgerError> {
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        self.store.purge_unsent_failures(before).await
    }
}

/// Rows deleted per statement by [`Ledger::purge_unsent_failures`], so that
/// a large purge never holds the database for long.
pub(crate) const PURGE_BATCH: i64 = 1_000;

/// Which settlements [`Ledger::purge_unsent_failures`] deletes, before its
/// age cutoff (the same column names in both stores).
pub(crate) const UNSENT_FAILURE: &str = "state = 'failed' AND transaction_hash IS NULL \
    AND (delivered_state IS NULL OR delivered_state <> 'confirmed')";

/// The SQLite store. Cheap to clone; queries run on Tokio's blocking pool.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
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
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || Connection::open(path))
            .await
            .map_err(|e| LedgerError::Task(e.to_string()))??;
        Self::init(conn).await
    }

    /// An in-memory ledger (tests, ephemeral deployments).
    pub async fn in_memory() -> Result<Self, LedgerError> {
        Self::init(Connection::open_in_memory()?).await
    }

    async fn init(conn: Connection) -> Result<Self, LedgerError> {
        let ledger = Self {
            conn: Arc::new(Mutex::new(conn)),
        };
        ledger
            .with(|conn| {
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                // WAL is unavailable for in-memory databases; ignore the answer.
                let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
                conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
                let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                let applied = usize::try_from(version).unwrap_or(0);
                for (n, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
                    let tx = conn.transaction()?;
                    tx.execute_batch(migration)?;
                    tx.pragma_update(
                        None,
                        "user_version",
                        i64::try_from(n + 1).unwrap_or(i64::MAX),
                    )?;
                    tx.commit()?;
                    tracing::info!(version = n + 1, "ledger schema migrated");
                }
                Ok(())
            })
            .await?;
        Ok(ledger)
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| LedgerError::Task("ledger lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| LedgerError::Task(e.to_string()))?
    }

    /// The record for `fingerprint`, if any.
    pub async fn get(&self, fingerprint: &str) -> Result<Option<SettlementRecord>, LedgerError> {
        let fingerprint = fingerprint.to_owned();
        self.with(move |conn| {
            let row = conn
                .query_row(
                    &format!("SELECT {RECORD_COLUMNS} FROM settlements WHERE fingerprint = ?1"),
                    params![fingerprint],
                    raw_row,
                )
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
                .query_row(
                    &format!(
                        "SELECT {RECORD_COLUMNS} FROM settlements WHERE transaction_hash = ?1
                         ORDER BY COALESCE(fingerprint = (SELECT fingerprint FROM settled_transactions
                                                          WHERE transaction_hash = ?1), 0) DESC,
                                  updated_at DESC
                         LIMIT 1"
                    ),
                    params![transaction],
                    raw_row,
                )
                .optional()?;
            row.map(decode_row).transpose()
        })
        .await
    }

    /// Records that do not have a final outcome (`received`, `submitted`,
    /// `pending`): the work list of a recovery job.
    pub async fn unresolved(&self) -> Result<Vec<SettlementRecord>, LedgerError> {
        self.with(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM settlements
                 WHERE state IN ('received', 'submitted', 'pending') ORDER BY updated_at"
            ))?;
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
                .query_row(
                    "SELECT fingerprint FROM payment_ids WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
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
            ClaimTable::PaymentIds => (
                "INSERT OR IGNORE INTO payment_ids (id, fingerprint, created_at) VALUES (?1, ?2, ?3)",
                "SELECT fingerprint FROM payment_ids WHERE id = ?1",
            ),
            ClaimTable::SettledTransactions => (
                "INSERT OR IGNORE INTO settled_transactions (transaction_hash, fingerprint, created_at)
                 VALUES (?1, ?2, ?3)",
                "SELECT fingerprint FROM settled_transactions WHERE transaction_hash = ?1",
            ),
        };
        self.with(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(insert, params![key, fingerprint, now()])?;
            let bound: String = tx.query_row(select, params![key], |r| r.get(0))?;
            tx.commit()?;
            Ok(if bound == fingerprint {
                PaymentIdClaim::Bound
            } else {
                PaymentIdClaim::Conflict { fingerprint: bound }
            })
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
                "UPDATE settlements SET delivered_state = ?2, delivered_to = ?3,
                        delivered_payment_id = ?4, delivered_at = ?5
                 WHERE fingerprint = ?1",
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
                "INSERT INTO settlements (fingerprint, network, payment_id, state, attempts, created_at, updated_at, request)
                 VALUES (?1, ?2, ?3, 'received', 1, ?4, ?4, ?5)
                 ON CONFLICT (fingerprint) DO UPDATE SET
                    state = CASE WHEN settlements.state IN ('submitted', 'pending')
                                 THEN settlements.state ELSE 'received' END,
                    payment_id = COALESCE(settlements.payment_id, excluded.payment_id),
                    request = COALESCE(settlements.request, excluded.request),
                    attempts = settlements.attempts + 1,
                    updated_at = excluded.updated_at",
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
                "UPDATE settlements SET state = 'submitted', transaction_hash = ?2, updated_at = ?3
                 WHERE fingerprint = ?1",
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
                "UPDATE settlements SET state = ?2, transaction_hash = COALESCE(?3, transaction_hash),
                        response = ?4, last_error = NULL, updated_at = ?5
                 WHERE fingerprint = ?1",
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
            conn.execute(
                "UPDATE settlements SET last_error = ?2, updated_at = ?3 WHERE fingerprint = ?1",
                params![fingerprint, error, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// See [`Ledger::purge_unsent_failures`]: one batch per blocking call,
    /// so that other queries get the connection in between.
    pub async fn purge_unsent_failures(&self, before: i64) -> Result<u64, LedgerError> {
        let mut deleted = 0u64;
        loop {
            let batch = self
                .with(move |conn| {
                    Ok(conn.execute(
                        &format!(
                            "DELETE FROM settlements WHERE rowid IN (
                                SELECT rowid FROM settlements
                                 WHERE {UNSENT_FAILURE} AND updated_at < ?1 LIMIT ?2)"
                        ),
                        params![before, PURGE_BATCH],
                    )?)
                })
                .await?;
            deleted += u64::try_from(batch).unwrap_or(0);
            if i64::try_from(batch).unwrap_or(0) < PURGE_BATCH {
                break;
            }
        }
        loop {
            let batch = self
                .with(move |conn| {
                    Ok(conn.execute(
                        "DELETE FROM payment_ids WHERE rowid IN (
                            SELECT rowid FROM payment_ids
                             WHERE created_at < ?1
                               AND NOT EXISTS (SELECT 1 FROM settlements
                                                WHERE settlements.fingerprint = payment_ids.fingerprint)
                             LIMIT ?2)",
                        params![before, PURGE_BATCH],
                    )?)
                })
                .await?;
            if i64::try_from(batch).unwrap_or(0) < PURGE_BATCH {
                break;
            }
        }
        Ok(deleted)
    }
}

/// The table a claim binds into.
#[derive(Debug, Clone, Copy)]
enum ClaimTable {
    PaymentIds,
    SettledTransactions,
}

/// One row as stored, columns in [`RECORD_COLUMNS`] order.
pub(crate) struct RawRow {
    pub(crate) fingerprint: String,
    pub(crate) network: String,
    pub(crate) payment_id: Option<String>,
    pub(crate) state: String,
    pub(crate) transaction: Option<String>,
    pub(crate) response: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) attempts: i64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) request: Option<String>,
    pub(crate) delivered_state: Option<String>,
    pub(crate) delivered_to: Option<String>,
    pub(crate) delivered_payment_id: Option<String>,
    pub(crate) delivered_at: Option<i64>,
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

fn parse_state(state: &str) -> Result<SettlementState, LedgerError> {
    SettlementState::parse(state)
        .ok_or_else(|| LedgerError::Corrupt(format!("unknown state {state:?}")))
}

pub(crate) fn decode_row(raw: RawRow) -> Result<SettlementRecord, LedgerError> {
    let RawRow {
        fingerprint,
        network,
        payment_id,
        state,
        transaction,
        response,
        last_error,
        attempts,
        created_at: created,
        updated_at: updated,
        request,
        delivered_state,
        delivered_to,
        delivered_payment_id,
        delivered_at,
    } = raw;
    let state = parse_state(&state)?;
    let delivery = delivered_state
        .map(|delivered| -> Result<Delivery, LedgerError> {
            Ok(Delivery {
                state: parse_state(&delivered)?,
                caller: delivered_to,
                payment_id: delivered_payment_id,
                at: delivered_at
                    .and_then(|at| u64::try_from(at).ok())
                    .unwrap_or(0),
            })
        })
        .transpose()?;
    let response = response
        .map(|json| serde_json::from_str::<SettleResponse>(&json))
        .transpose()
        .map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    let request = request
        .map(|json| serde_json::from_str::<FacilitatorRequest>(&json))
        .transpose()
        .map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    Ok(SettlementRecord {
        fingerprint,
        network,
        payment_id,
        state,
        transaction,
        response,
        last_error,
        request,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        delivery,
        created_at: u64::try_from(created).unwrap_or(0),
        updated_at: u64::try_from(updated).unwrap_or(0),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use paywire_core::{ChainId, ErrorReason};
    use serde_json::json;

    pub(crate) fn requirements() -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:1", "amount": "1", "asset": "0xa",
            "payTo": "0xb", "maxTimeoutSeconds": 5
        }))
        .expect("valid requirements")
    }

    pub(crate) fn request() -> FacilitatorRequest {
        serde_json::from_value(json!({
            "x402Version": 2,
            "paymentPayload": {
                "x402Version": 2,
                "payload": {"signature": "0x01"},
                "accepted": serde_json::to_value(requirements()).unwrap_or_default(),
            },
            "paymentRequirements": serde_json::to_value(requirements()).unwrap_or_default(),
        }))
        .expect("valid request")
    }

    #[test]
    fn fingerprint_ignores_member_order() {
        let a: paywire_core::JsonObject =
            serde_json::from_value(json!({"x": 1, "y": {"b": [1, 2], "a": "s"}})).expect("obj");
        let b: paywire_core::JsonObject =
            serde_json::from_value(json!({"y": {"a": "s", "b": [1, 2]}, "x": 1})).expect("obj");
        let c: paywire_core::JsonObject =
            serde_json::from_value(json!({"y": {"a": "s", "b": [2, 1]}, "x": 1})).expect("obj");
        assert_eq!(
            fingerprint(&a, &requirements()),
            fingerprint(&b, &requirements())
        );
        assert_ne!(
            fingerprint(&a, &requirements()),
            fingerprint(&c, &requirements())
        );
        assert_eq!(fingerprint(&a, &requirements()).len(), 64);
    }

    #[tokio::test]
    async fn state_machine_and_payment_ids() -> Result<(), LedgerError> {
        state_machine_checks(&Ledger::in_memory().await?).await
    }

    /// The store-independent checks (also run against Postgres).
    pub(crate) async fn state_machine_checks(ledger: &Ledger) -> Result<(), LedgerError> {
        assert!(ledger.get("f1").await?.is_none());
        ledger.mark_received("f1", &request(), Some("id")).await?;
        let record = ledger
            .get("f1")
            .await?
            .ok_or(LedgerError::Task("missing".into()))?;
        assert_eq!(record.state, SettlementState::Received);
        assert_eq!(record.network, "eip155:1");
        assert_eq!(record.request, Some(request()));
        assert_eq!(ledger.unresolved().await?.len(), 1);

        ledger.mark_submitted("f1", "0x1").await?;
        // A retry does not forget that a transaction may be out.
        ledger.mark_received("f1", &request(), None).await?;
        let record = ledger
            .get("f1")
            .await?
            .ok_or(LedgerError::Task("missing".into()))?;
        assert_eq!(record.state, SettlementState::Submitted);
        assert_eq!(record.transaction.as_deref(), Some("0x1"));
        assert!(ledger.mark_submitted("nope", "0x2").await.is_err());

        let pending = SettleResponse::failed(
            ChainId::parse("eip155:1").unwrap(),
            ErrorReason::TRANSACTION_PENDING,
            None,
            "0x1",
        );
        assert_eq!(
            ledger.record_outcome("f1", &pending).await?,
            SettlementState::Pending
        );
        let settled = SettleResponse::settled(ChainId::parse("eip155:1").unwrap(), "0x1", None);
        ledger.mark_received("f1", &request(), None).await?;
        assert_eq!(
            ledger.record_outcome("f1", &settled).await?,
            SettlementState::Confirmed
        );
        let record = ledger
            .get("f1")
            .await?
            .ok_or(LedgerError::Task("missing".into()))?;
        assert_eq!(record.attempts, 3);
        assert_eq!(record.payment_id.as_deref(), Some("id"));
        assert_eq!(record.transaction.as_deref(), Some("0x1"));
        assert_eq!(record.response, Some(settled));
        assert!(ledger.unresolved().await?.is_empty());

        assert_eq!(
            ledger.claim_payment_id("id", "f1").await?,
            PaymentIdClaim::Bound
        );
        assert_eq!(
            ledger.claim_payment_id("id", "f1").await?,
            PaymentIdClaim::Bound
        );
        assert_eq!(
            ledger.claim_payment_id("id", "f2").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "f1".into()
            }
        );
        assert_eq!(
            ledger.payment_id_binding("id").await?.as_deref(),
            Some("f1")
        );
        assert_eq!(
            ledger
                .find_by_transaction("0x1")
                .await?
                .map(|r| r.fingerprint),
            Some("f1".to_owned())
        );
        assert!(ledger.find_by_transaction("0x2").await?.is_none());

        // Who was told what.
        assert_eq!(record.delivery, None);
        let delivery = Delivery {
            state: SettlementState::Confirmed,
            caller: Some("shop-a".into()),
            payment_id: Some("id".into()),
            at: 1234,
        };
        ledger.mark_delivered("f1", &delivery).await?;
        let record = ledger
            .get("f1")
            .await?
            .ok_or(LedgerError::Task("missing".into()))?;
        assert_eq!(record.delivery, Some(delivery));
        // One settled transaction, one payload.
        assert_eq!(
            ledger.claim_transaction("0x1", "f1").await?,
            PaymentIdClaim::Bound
        );
        assert_eq!(
            ledger.claim_transaction("0x1", "f1").await?,
            PaymentIdClaim::Bound
        );
        assert_eq!(
            ledger.claim_transaction("0x1", "f2").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "f1".into()
            }
        );
        // Another payload refused for that transaction names it too; the
        // transaction still leads to the payload that claimed it.
        ledger.mark_received("f2", &request(), None).await?;
        let refused = SettleResponse::failed(
            ChainId::parse("eip155:1").unwrap(),
            ErrorReason::from_static("invalid_exact_evm_nonce_already_used"),
            None,
            "0x1",
        );
        ledger.record_outcome("f2", &refused).await?;
        assert_eq!(
            ledger
                .find_by_transaction("0x1")
                .await?
                .map(|r| r.fingerprint),
            Some("f1".to_owned())
        );
        // A failure keeps the transaction it names in the ledger (it makes
        // the failure final), though the wire never carries it.
        let reverted = SettleResponse::failed(
            ChainId::parse("eip155:1").unwrap(),
            ErrorReason::INVALID_TRANSACTION_STATE,
            None,
            "0x3",
        );
        ledger.mark_received("f3", &request(), None).await?;
        ledger.record_outcome("f3", &reverted).await?;
        let record = ledger
            .get("f3")
            .await?
            .ok_or(LedgerError::Task("missing".into()))?;
        assert_eq!(record.response.map(|r| r.transaction), Some("0x3".into()));
        Ok(())
    }

    #[tokio::test]
    async fn purge_deletes_only_old_unsent_failures() -> Result<(), LedgerError> {
        purge_checks(&Ledger::in_memory().await?).await
    }

    /// What the retention purge deletes and keeps (also run against Postgres).
    pub(crate) async fn purge_checks(ledger: &Ledger) -> Result<(), LedgerError> {
        let network = ChainId::parse("eip155:1").unwrap();
        let refused =
            SettleResponse::failed(network.clone(), ErrorReason::INSUFFICIENT_FUNDS, None, "");
        let reverted = SettleResponse::failed(
            network.clone(),
            ErrorReason::INVALID_TRANSACTION_STATE,
            None,
            "0xr",
        );
        let settled = SettleResponse::settled(network.clone(), "0xs", None);
        let pending =
            SettleResponse::failed(network, ErrorReason::TRANSACTION_PENDING, None, "0xp");
        for (key, outcome) in [
            ("unsent", Some(&refused)),
            ("reverted", Some(&reverted)),
            ("settled", Some(&settled)),
            ("pending", Some(&pending)),
            ("received", None),
        ] {
            ledger
                .mark_received(key, &request(), Some(&format!("pay_id_of_{key}_0000")))
                .await?;
            if let Some(outcome) = outcome {
                ledger.record_outcome(key, outcome).await?;
            }
            ledger
                .claim_payment_id(&format!("pay_id_of_{key}_0000"), key)
                .await?;
        }
        // Refused, then retried and settled: it names a transaction.
        ledger.mark_received("retried", &request(), None).await?;
        ledger.record_outcome("retried", &refused).await?;
        ledger.mark_submitted("retried", "0xt").await?;
        ledger.record_outcome("retried", &refused).await?;
        ledger
            .claim_payment_id("pay_orphan_00000000", "never-written")
            .await?;
        ledger.claim_transaction("0xs", "settled").await?;

        // Nothing is old enough yet.
        let now = u64::try_from(now()).unwrap_or(0);
        assert_eq!(
            ledger.purge_unsent_failures(now.saturating_sub(60)).await?,
            0
        );
        assert!(ledger.get("unsent").await?.is_some());
        // Everything is, from an hour on.
        assert_eq!(ledger.purge_unsent_failures(now + 3600).await?, 1);
        assert!(ledger.get("unsent").await?.is_none());
        assert_eq!(
            ledger.payment_id_binding("pay_id_of_unsent_0000").await?,
            None
        );
        assert_eq!(
            ledger.payment_id_binding("pay_orphan_00000000").await?,
            None
        );
        for kept in ["reverted", "settled", "pending", "received"] {
            assert!(ledger.get(kept).await?.is_some(), "{kept} was purged");
            let id = format!("pay_id_of_{kept}_0000");
            assert_eq!(ledger.payment_id_binding(&id).await?.as_deref(), Some(kept));
        }
        assert!(ledger.get("retried").await?.is_some(), "retried was purged");
        assert_eq!(
            ledger.claim_transaction("0xs", "other").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "settled".into()
            }
        );
        assert_eq!(ledger.purge_unsent_failures(now + 3600).await?, 0);
        Ok(())
    }

    #[tokio::test]
    async fn rows_answered_before_the_upgrade_count_as_delivered()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("v2.sqlite");
        {
            let conn = Connection::open(&path)?;
            conn.execute_batch(MIGRATIONS[0])?;
            conn.execute_batch(MIGRATIONS[1])?;
            conn.pragma_update(None, "user_version", 2)?;
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
            let conn = Connection::open(&path)?;
            conn.execute_batch(MIGRATIONS[0])?;
            conn.pragma_update(None, "user_version", 1)?;
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
}
