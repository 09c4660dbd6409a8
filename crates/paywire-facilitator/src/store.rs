//! What a settlement ledger stores and the interface of its backends: the
//! state of each settlement, who was told its outcome, the claims binding
//! payment identifiers and transactions to one payload, and the store-level
//! settlement lock. The SQLite ([`crate::sqlite`]) and PostgreSQL
//! ([`crate::postgres`]) backends implement [`LedgerStore`];
//! [`crate::ledger::Ledger`] is the handle the state machine uses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use paywire_core::{FacilitatorRequest, SettleResponse};
use paywire_store::StoreError;
use paywire_store::{rusqlite, tokio_postgres};
use serde_json::Value;

/// The columns a [`SettlementRecord`] is read from, in [`RawRow`] order
/// (the same names in the SQLite and the PostgreSQL table).
pub(crate) const RECORD_COLUMNS: &str = "fingerprint, network, payment_id, state, \
    transaction_hash, response, last_error, attempts, created_at, updated_at, request, \
    delivered_state, delivered_to, delivered_payment_id, delivered_at";

/// Rows deleted per statement by [`Ledger::purge_unsent_failures`](crate::ledger::Ledger::purge_unsent_failures), so that
/// a large purge never holds the database for long.
pub(crate) const PURGE_BATCH: i64 = 1_000;

/// Which settlements [`Ledger::purge_unsent_failures`](crate::ledger::Ledger::purge_unsent_failures) deletes, before its
/// age cutoff (the same column names in both stores).
pub(crate) const UNSENT_FAILURE: &str = "state = 'failed' AND transaction_hash IS NULL \
    AND (delivered_state IS NULL OR delivered_state <> 'confirmed')";

/// A ledger failure (database I/O or corruption).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// SQLite reported an error.
    #[error("ledger database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error (or the connection failed).
    #[error("ledger database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The storage layer failed otherwise: configuration (URL, TLS), the
    /// pool (no connection free in time), the SQLite worker, or migrations
    /// (among them a database whose ledger schema is newer than this build).
    #[error("ledger database error: {0}")]
    Store(StoreError),
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

impl From<StoreError> for LedgerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Postgres(error) => Self::Postgres(error),
            StoreError::Sqlite(error) => Self::Sqlite(error),
            StoreError::LockTimeout(waited) => Self::LockTimeout(waited),
            other => Self::Store(other),
        }
    }
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

/// Counts per stored state name as a store's `GROUP BY state` gives them;
/// names this version does not know are left out.
pub(crate) fn parse_state_counts(rows: Vec<(String, i64)>) -> Vec<(SettlementState, u64)> {
    rows.into_iter()
        .filter_map(|(state, count)| {
            Some((SettlementState::parse(&state)?, u64::try_from(count).ok()?))
        })
        .collect()
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct SettlementRecord {
    /// Settlement key (see [`fingerprint`](crate::ledger::fingerprint)).
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

/// The answer one `/settle` caller received (see [`Ledger::mark_delivered`](crate::ledger::Ledger::mark_delivered)).
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
#[non_exhaustive]
pub enum PaymentIdClaim {
    /// The id (transaction) is now, or already was, bound to this fingerprint.
    Bound,
    /// The id (transaction) is bound to another payload.
    Conflict {
        /// The fingerprint it was first bound to.
        fingerprint: String,
    },
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
    /// See [`Ledger::mark_received`](crate::ledger::Ledger::mark_received).
    fn mark_received<'a>(
        &'a self,
        fingerprint: &'a str,
        request: &'a FacilitatorRequest,
        payment_id: Option<&'a str>,
    ) -> StoreFuture<'a, ()>;
    /// See [`Ledger::mark_submitted`](crate::ledger::Ledger::mark_submitted).
    fn mark_submitted<'a>(
        &'a self,
        fingerprint: &'a str,
        transaction: &'a str,
    ) -> StoreFuture<'a, ()>;
    /// See [`Ledger::record_outcome`](crate::ledger::Ledger::record_outcome).
    fn record_outcome<'a>(
        &'a self,
        fingerprint: &'a str,
        response: &'a SettleResponse,
    ) -> StoreFuture<'a, SettlementState>;
    /// See [`Ledger::record_error`](crate::ledger::Ledger::record_error).
    fn record_error<'a>(&'a self, fingerprint: &'a str, error: &'a str) -> StoreFuture<'a, ()>;
    /// See [`Ledger::mark_delivered`](crate::ledger::Ledger::mark_delivered).
    fn mark_delivered<'a>(
        &'a self,
        fingerprint: &'a str,
        delivery: &'a Delivery,
    ) -> StoreFuture<'a, ()>;
    /// See [`Ledger::claim_transaction`](crate::ledger::Ledger::claim_transaction).
    fn claim_transaction<'a>(
        &'a self,
        transaction: &'a str,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, PaymentIdClaim>;
    /// See [`Ledger::claim_and_mark_submitted`](crate::ledger::Ledger::claim_and_mark_submitted).
    /// The default makes the two writes one after the other; a store that
    /// can should make them one transaction (one round trip on the
    /// broadcast's critical path).
    fn claim_and_mark_submitted<'a>(
        &'a self,
        transaction: &'a str,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, PaymentIdClaim> {
        Box::pin(async move {
            let claim = self.claim_transaction(transaction, fingerprint).await?;
            if claim == PaymentIdClaim::Bound {
                self.mark_submitted(fingerprint, transaction).await?;
            }
            Ok(claim)
        })
    }
    /// See [`Ledger::purge_unsent_failures`](crate::ledger::Ledger::purge_unsent_failures).
    fn purge_unsent_failures(&self, before: i64) -> StoreFuture<'_, u64>;
    /// Takes the store-wide lock of the settlements keyed `key` (what they
    /// spend: the scheme's spend key, else the payload's fingerprint), on
    /// top of the process-local one: for stores shared by several
    /// processes, so that a payment is settled by one of them at a time. It
    /// only excludes other processes (within one, the caller serialises
    /// settlements of the same key first). The default is no lock.
    fn lock<'a>(&'a self, key: &'a str) -> StoreFuture<'a, StoreLock> {
        let _ = key;
        Box::pin(async { Ok(StoreLock::none()) })
    }
    /// A short name for logs (`sqlite`, `postgres`).
    fn kind(&self) -> &'static str;
    /// How many records are in each state, for `/metrics` (one query over
    /// the state index). The default, for a store that cannot count
    /// cheaply, is `None`.
    fn state_counts(&self) -> StoreFuture<'_, Option<Vec<(SettlementState, u64)>>> {
        Box::pin(async { Ok(None) })
    }
    /// The use of the store's connection pool, for `/metrics`; `None` (the
    /// default) for a store without one.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }
}

/// How a store's connection pool is used (exported as
/// `paywire_db_pool_connections{state}` and `paywire_db_pool_waiting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStatus {
    /// Connections open now (idle or in use).
    pub size: usize,
    /// Open connections idle now.
    pub available: usize,
    /// Tasks waiting for a connection.
    pub waiting: usize,
    /// The most connections the pool opens.
    pub max: usize,
}

impl PoolStatus {
    /// A pool of at most `max` connections, `size` of them open and
    /// `available` of those idle, with `waiting` tasks waiting.
    pub fn new(size: usize, available: usize, waiting: usize, max: usize) -> Self {
        Self {
            size,
            available,
            waiting,
            max,
        }
    }
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
