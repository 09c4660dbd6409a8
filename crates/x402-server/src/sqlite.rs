//! A [`ReservationStore`] in a SQLite file: shared by several processes (or
//! several layers) on one host and persisted across restarts.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use x402_core::BoxFuture;

use crate::reservation::{ReservationError, ReservationKey, ReservationStore, ReserveOutcome};

const RESERVED: i64 = 0;
const CONSUMED: i64 = 1;

/// How many reservations between two purges of expired rows.
const PURGE_EVERY: u64 = 1024;

/// SQLite-backed [`ReservationStore`] with the same semantics as
/// [`crate::InMemoryReservationStore`]: reservations expire after
/// `reservation_ttl`, consumed keys are kept for `retention`. Expiry uses
/// wall-clock time so that it survives restarts.
///
/// `reserve` runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's
/// write lock before reading: two connections (processes) can never both
/// reserve one key.
#[derive(Debug, Clone)]
pub struct SqliteReservationStore {
    connection: Arc<Mutex<Connection>>,
    reservation_ttl: Duration,
    retention: Duration,
    reserves: Arc<AtomicU64>,
}

fn store_error(error: impl std::fmt::Display) -> ReservationError {
    ReservationError(error.to_string())
}

fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl SqliteReservationStore {
    /// Opens (creating if needed) the store at `path` with the default
    /// lifetimes (reservations 10 min, consumed keys 24 h).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReservationError> {
        Self::open_with(
            path,
            Duration::from_secs(600),
            Duration::from_secs(24 * 3600),
        )
    }

    /// Opens the store with explicit lifetimes.
    pub fn open_with(
        path: impl AsRef<Path>,
        reservation_ttl: Duration,
        retention: Duration,
    ) -> Result<Self, ReservationError> {
        let connection = Connection::open(path).map_err(store_error)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(store_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS x402_reservations (
                     key BLOB PRIMARY KEY NOT NULL,
                     state INTEGER NOT NULL,
                     expires_ms INTEGER NOT NULL
                 ) WITHOUT ROWID;",
            )
            .map_err(store_error)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            reservation_ttl,
            retention,
            reserves: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ReservationError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut guard = connection.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(store_error)?
        .map_err(store_error)
    }
}

impl ReservationStore for SqliteReservationStore {
    fn reserve<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<ReserveOutcome, ReservationError>> {
        let key = key.0;
        let ttl = ms(self.reservation_ttl);
        let purge = self
            .reserves
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PURGE_EVERY);
        Box::pin(self.with(move |connection| {
            let now = now_ms();
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if purge {
                tx.execute(
                    "DELETE FROM x402_reservations WHERE expires_ms <= ?1",
                    params![now],
                )?;
            }
            let existing: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT state, expires_ms FROM x402_reservations WHERE key = ?1",
                    params![&key[..]],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let outcome = match existing {
                Some((RESERVED, expires)) if expires > now => ReserveOutcome::InUse,
                Some((_, expires)) if expires > now => ReserveOutcome::Consumed,
                _ => {
                    tx.execute(
                        "INSERT OR REPLACE INTO x402_reservations (key, state, expires_ms)
                         VALUES (?1, ?2, ?3)",
                        params![&key[..], RESERVED, now.saturating_add(ttl)],
                    )?;
                    ReserveOutcome::Reserved
                }
            };
            tx.commit()?;
            Ok(outcome)
        }))
    }

    fn release<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        let key = key.0;
        Box::pin(self.with(move |connection| {
            connection.execute(
                "DELETE FROM x402_reservations WHERE key = ?1 AND state = ?2",
                params![&key[..], RESERVED],
            )?;
            Ok(())
        }))
    }

    fn consume<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        let key = key.0;
        let retention = ms(self.retention);
        Box::pin(self.with(move |connection| {
            connection.execute(
                "INSERT OR REPLACE INTO x402_reservations (key, state, expires_ms)
                 VALUES (?1, ?2, ?3)",
                params![&key[..], CONSUMED, now_ms().saturating_add(retention)],
            )?;
            Ok(())
        }))
    }
}
