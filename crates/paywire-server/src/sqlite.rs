//! A [`ReservationStore`] in a SQLite file: shared by several processes (or
//! several layers) on one host and persisted across restarts.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paywire_core::BoxFuture;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::reservation::{
    PayloadFingerprint, ReservationError, ReservationKey, ReservationStore, ReserveOutcome,
    Transition, transition,
};

const RESERVED: i64 = 0;
const CONSUMED: i64 = 1;
/// Settlement outcome unknown, nobody holds it.
const UNKNOWN: i64 = 2;
/// Settlement outcome unknown, a retry holds it until `held_until_ms`.
const RESUMING: i64 = 3;

/// How many reservations between two purges of expired rows.
const PURGE_EVERY: u64 = 1024;

/// SQLite-backed [`ReservationStore`] with the same semantics as
/// [`crate::InMemoryReservationStore`]: reservations expire after
/// `reservation_ttl`, settled keys and keys with an unknown settlement outcome
/// are kept for `retention`. Expiry uses wall-clock time so that it survives
/// restarts.
///
/// Tables created by earlier versions (without the `fingerprint` and
/// `held_until_ms` columns) are migrated when the store is opened.
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

/// Creates the table, or adds the columns that earlier versions lacked. Runs
/// under SQLite's write lock, so processes opening the file together do not
/// race.
fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS x402_reservations (
             key BLOB PRIMARY KEY NOT NULL,
             state INTEGER NOT NULL,
             expires_ms INTEGER NOT NULL,
             fingerprint BLOB,
             held_until_ms INTEGER
         ) WITHOUT ROWID;",
    )?;
    let columns: Vec<String> = tx
        .prepare("SELECT name FROM pragma_table_info('x402_reservations')")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (column, kind) in [("fingerprint", "BLOB"), ("held_until_ms", "INTEGER")] {
        if !columns.iter().any(|c| c == column) {
            tx.execute_batch(&format!(
                "ALTER TABLE x402_reservations ADD COLUMN {column} {kind};"
            ))?;
        }
    }
    tx.commit()
}

/// The live row of `key`: (state, fingerprint, held_until_ms).
type Row = (i64, Option<Vec<u8>>, Option<i64>);

fn live_row(tx: &rusqlite::Transaction<'_>, key: &[u8], now: i64) -> rusqlite::Result<Option<Row>> {
    tx.query_row(
        "SELECT state, fingerprint, held_until_ms FROM x402_reservations
         WHERE key = ?1 AND expires_ms > ?2",
        params![key, now],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .optional()
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
        let mut connection = Connection::open(path).map_err(store_error)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(store_error)?;
        migrate(&mut connection).map_err(store_error)?;
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
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<ReserveOutcome, ReservationError>> {
        let (key, fingerprint) = (key.0, fingerprint.0);
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
            let outcome = match live_row(&tx, &key, now)? {
                None => {
                    tx.execute(
                        "INSERT OR REPLACE INTO x402_reservations
                             (key, state, expires_ms, fingerprint, held_until_ms)
                         VALUES (?1, ?2, ?3, ?4, NULL)",
                        params![
                            &key[..],
                            RESERVED,
                            now.saturating_add(ttl),
                            &fingerprint[..]
                        ],
                    )?;
                    ReserveOutcome::Reserved
                }
                Some((state, recorded, held_until)) => {
                    let held = state == RESERVED
                        || (state == RESUMING && held_until.is_some_and(|until| until > now));
                    let same_payload = recorded.as_deref() == Some(&fingerprint[..]);
                    let unknown = state == UNKNOWN || state == RESUMING;
                    match transition(same_payload, unknown, held) {
                        Transition::Refuse(outcome) => outcome,
                        Transition::Resume => {
                            tx.execute(
                                "UPDATE x402_reservations SET state = ?2, held_until_ms = ?3
                                 WHERE key = ?1",
                                params![&key[..], RESUMING, now.saturating_add(ttl)],
                            )?;
                            ReserveOutcome::Resumed
                        }
                    }
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
                "DELETE FROM x402_reservations WHERE key = ?1 AND state IN (?2, ?3)",
                params![&key[..], RESERVED, RESUMING],
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
                "INSERT INTO x402_reservations (key, state, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE
                     SET state = excluded.state, expires_ms = excluded.expires_ms,
                         held_until_ms = NULL",
                params![&key[..], CONSUMED, now_ms().saturating_add(retention)],
            )?;
            Ok(())
        }))
    }

    fn mark_unknown<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        let (key, fingerprint) = (key.0, fingerprint.0);
        let retention = ms(self.retention);
        Box::pin(self.with(move |connection| {
            let now = now_ms();
            connection.execute(
                "INSERT INTO x402_reservations
                     (key, state, expires_ms, fingerprint, held_until_ms)
                 VALUES (?1, ?2, ?3, ?4, NULL)
                 ON CONFLICT (key) DO UPDATE
                     SET state = excluded.state, expires_ms = excluded.expires_ms,
                         fingerprint = excluded.fingerprint, held_until_ms = NULL
                     WHERE x402_reservations.state <> ?5 OR x402_reservations.expires_ms <= ?6",
                params![
                    &key[..],
                    UNKNOWN,
                    now.saturating_add(retention),
                    &fingerprint[..],
                    CONSUMED,
                    now
                ],
            )?;
            Ok(())
        }))
    }

    fn is_unknown<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<bool, ReservationError>> {
        let (key, fingerprint) = (key.0, fingerprint.0);
        Box::pin(self.with(move |connection| {
            connection
                .query_row(
                    "SELECT 1 FROM x402_reservations
                     WHERE key = ?1 AND state IN (?2, ?3) AND fingerprint = ?4
                         AND expires_ms > ?5",
                    params![&key[..], UNKNOWN, RESUMING, &fingerprint[..], now_ms()],
                    |_| Ok(()),
                )
                .optional()
                .map(|row| row.is_some())
        }))
    }
}
