//! A [`ReservationStore`] in a SQLite file: shared by several processes (or
//! several layers) on one host and persisted across restarts.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paywire_core::{AtomicAmount, BoxFuture};
use paywire_store::rusqlite::{self, Connection, OptionalExtension, TransactionBehavior, params};
use paywire_store::sqlite::{SqliteHandle, SqliteOptions};
use paywire_store::{Migration, Migrations};

use crate::reservation::{
    PayloadFingerprint, ReservationError, ReservationKey, ReservationStore, ReserveOutcome,
    Transition, parse_charge, transition,
};

const RESERVED: i64 = 0;
const CONSUMED: i64 = 1;
/// Settlement outcome unknown, nobody holds it.
const UNKNOWN: i64 = 2;
/// Settlement outcome unknown, a retry holds it until `held_until_ms`.
const RESUMING: i64 = 3;

/// How many reservations between two purges of expired rows.
const PURGE_EVERY: u64 = 1024;

/// How long a statement waits for another process's write lock (as before
/// this store moved onto paywire-store).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, component `reservations`: the table as the first releases
/// created it, then the two columns of unknown settlement outcomes, then
/// the charge (decimal atomic units) an unknown settlement of a usage-based
/// payment asked for (NULL in rows written before).
///
/// SQLite cannot add a column only if it is missing, so a file written
/// before the bookkeeping table existed is placed by its columns: no table
/// is version 0, the three-column table version 1, the five-column table
/// (releases that added the columns on opening) version 2.
const MIGRATIONS: Migrations = Migrations::new(
    "reservations",
    &[
        Migration::new(
            1,
            "reservations",
            "CREATE TABLE IF NOT EXISTS x402_reservations (
                 key BLOB PRIMARY KEY NOT NULL,
                 state INTEGER NOT NULL,
                 expires_ms INTEGER NOT NULL
             ) WITHOUT ROWID;",
        ),
        Migration::new(
            2,
            "unknown outcomes",
            "ALTER TABLE x402_reservations ADD COLUMN fingerprint BLOB;
             ALTER TABLE x402_reservations ADD COLUMN held_until_ms INTEGER;",
        ),
        Migration::new(
            3,
            "unknown charges",
            "ALTER TABLE x402_reservations ADD COLUMN charge TEXT;",
        ),
    ],
)
.with_legacy_version(
    "SELECT CASE
         WHEN (SELECT count(*) FROM pragma_table_info('x402_reservations')
               WHERE name IN ('fingerprint', 'held_until_ms')) = 2 THEN 2
         WHEN EXISTS (SELECT 1 FROM pragma_table_info('x402_reservations')) THEN 1
         ELSE 0
     END",
);

/// SQLite-backed [`ReservationStore`] with the same semantics as
/// [`crate::InMemoryReservationStore`]: reservations expire after
/// `reservation_ttl`, settled keys and keys with an unknown settlement outcome
/// are kept for `retention`. Expiry uses wall-clock time so that it survives
/// restarts.
///
/// The connection lives on its own thread (paywire-store's [`SqliteHandle`]:
/// WAL, `busy_timeout` 10 s), so waiting for another process's write lock
/// never blocks the async runtime. The schema is migrated (component
/// `reservations`) when the store opens; files of earlier releases are
/// adopted in place, a file whose schema is newer than this build is refused.
///
/// `reserve` runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's
/// write lock before reading: two connections (processes) can never both
/// reserve one key.
#[derive(Debug, Clone)]
pub struct SqliteReservationStore {
    db: SqliteHandle,
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

/// The default lifetime of a reservation nobody settled or released.
const RESERVATION_TTL: Duration = Duration::from_secs(600);
/// The default lifetime of settled keys and unknown outcomes.
const RETENTION: Duration = Duration::from_secs(24 * 3600);

impl SqliteReservationStore {
    /// Opens (creating if needed) the store at `path` with the default
    /// lifetimes (reservations 10 min, consumed keys 24 h).
    ///
    /// Blocks the calling thread until the file is open and migrated (the
    /// work itself runs on the store's thread); async code should prefer
    /// [`SqliteReservationStore::open_async`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReservationError> {
        Self::open_with(path, RESERVATION_TTL, RETENTION)
    }

    /// [`SqliteReservationStore::open`] with explicit lifetimes.
    pub fn open_with(
        path: impl AsRef<Path>,
        reservation_ttl: Duration,
        retention: Duration,
    ) -> Result<Self, ReservationError> {
        let path = path.as_ref();
        wait_on_own_thread(Self::open_async_with(path, reservation_ttl, retention))
    }

    /// Opens (creating if needed) the store at `path` with the default
    /// lifetimes, without blocking the caller.
    pub async fn open_async(path: impl AsRef<Path>) -> Result<Self, ReservationError> {
        Self::open_async_with(path, RESERVATION_TTL, RETENTION).await
    }

    /// [`SqliteReservationStore::open_async`] with explicit lifetimes.
    pub async fn open_async_with(
        path: impl AsRef<Path>,
        reservation_ttl: Duration,
        retention: Duration,
    ) -> Result<Self, ReservationError> {
        let options = SqliteOptions::default().with_busy_timeout(BUSY_TIMEOUT);
        let db = SqliteHandle::open_with(path, options)
            .await
            .map_err(store_error)?;
        Self::with_handle(db, reservation_ttl, retention).await
    }

    /// A store on an open handle (shared with other components of the
    /// process), migrating the schema.
    pub async fn with_handle(
        db: SqliteHandle,
        reservation_ttl: Duration,
        retention: Duration,
    ) -> Result<Self, ReservationError> {
        db.migrate(&MIGRATIONS).await.map_err(store_error)?;
        Ok(Self {
            db,
            reservation_ttl,
            retention,
            reserves: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ReservationError> {
        self.db.call(f).await.map_err(store_error)
    }
}

/// Runs `work` to completion on a short-lived thread of its own, so that a
/// synchronous constructor works both outside a runtime and inside one
/// (where starting a nested runtime on the caller's thread would panic).
/// The SQLite handle it builds is not tied to that thread's runtime.
fn wait_on_own_thread<T: Send>(
    work: impl Future<Output = Result<T, ReservationError>> + Send,
) -> Result<T, ReservationError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .map_err(store_error)?
                    .block_on(work)
            })
            .join()
            .unwrap_or_else(|_| Err(store_error("opening the SQLite store panicked")))
    })
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
        self.mark_unknown_with_charge(key, fingerprint, None)
    }

    fn mark_unknown_with_charge<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
        charge: Option<AtomicAmount>,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        let (key, fingerprint) = (key.0, fingerprint.0);
        let charge = charge.map(|amount| amount.to_string());
        let retention = ms(self.retention);
        Box::pin(self.with(move |connection| {
            let now = now_ms();
            // Without a new charge, the one recorded for this very payload
            // (the attempt a retry resumed) stays.
            connection.execute(
                "INSERT INTO x402_reservations
                     (key, state, expires_ms, fingerprint, held_until_ms, charge)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?7)
                 ON CONFLICT (key) DO UPDATE
                     SET state = excluded.state, expires_ms = excluded.expires_ms,
                         fingerprint = excluded.fingerprint, held_until_ms = NULL,
                         charge = CASE
                             WHEN excluded.charge IS NOT NULL THEN excluded.charge
                             WHEN x402_reservations.fingerprint = excluded.fingerprint
                                 AND x402_reservations.expires_ms > ?6
                                 THEN x402_reservations.charge
                         END
                     WHERE x402_reservations.state <> ?5 OR x402_reservations.expires_ms <= ?6",
                params![
                    &key[..],
                    UNKNOWN,
                    now.saturating_add(retention),
                    &fingerprint[..],
                    CONSUMED,
                    now,
                    charge
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

    fn unknown_charge<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<Option<AtomicAmount>, ReservationError>> {
        let (key, fingerprint) = (key.0, fingerprint.0);
        let read = self.with(move |connection| {
            connection
                .query_row(
                    "SELECT charge FROM x402_reservations
                     WHERE key = ?1 AND state IN (?2, ?3) AND fingerprint = ?4
                         AND expires_ms > ?5",
                    params![&key[..], UNKNOWN, RESUMING, &fingerprint[..], now_ms()],
                    |row| row.get::<_, Option<String>>(0),
                )
                .optional()
                .map(Option::flatten)
        });
        Box::pin(async move { parse_charge(read.await?) })
    }
}
