//! A [`ReservationStore`] in PostgreSQL: shared by every instance of a
//! resource server behind a load balancer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paywire_core::{AtomicAmount, BoxFuture};
use paywire_store::postgres::{Param, PgPool};
use paywire_store::tokio_postgres::Row;
use paywire_store::tokio_postgres::error::SqlState;
use paywire_store::{Migration, Migrations, StoreError};

use crate::reservation::{
    PayloadFingerprint, ReservationError, ReservationKey, ReservationStore, ReserveOutcome,
    Transition, parse_charge, transition,
};

const RESERVED: i16 = 0;
const CONSUMED: i16 = 1;
/// Settlement outcome unknown, nobody holds it.
const UNKNOWN: i16 = 2;
/// Settlement outcome unknown, a retry holds it until `held_until_ms`.
const RESUMING: i16 = 3;

/// The schema, component `reservations`. Version 1 is what earlier releases
/// created on connecting (table, then the two unknown-outcome columns), all
/// `IF NOT EXISTS`, so a database of those releases is adopted as it is. It
/// also takes the advisory lock those releases took around their schema
/// statements, so that an older instance starting during a rolling upgrade
/// does not race this one on `CREATE TABLE`. Version 2 adds the charge
/// (decimal atomic units) an unknown settlement of a usage-based payment
/// asked for (NULL in rows written before).
const MIGRATIONS: Migrations = Migrations::new(
    "reservations",
    &[
        Migration::new(
            1,
            "reservations",
            "SELECT pg_advisory_xact_lock(2017473026);
             CREATE TABLE IF NOT EXISTS x402_reservations (
                 key BYTEA PRIMARY KEY,
                 state SMALLINT NOT NULL,
                 expires_ms BIGINT NOT NULL
             );
             ALTER TABLE x402_reservations
                 ADD COLUMN IF NOT EXISTS fingerprint BYTEA,
                 ADD COLUMN IF NOT EXISTS held_until_ms BIGINT;",
        ),
        Migration::new(
            2,
            "unknown charges",
            "ALTER TABLE x402_reservations ADD COLUMN IF NOT EXISTS charge TEXT;",
        ),
    ],
);

/// PostgreSQL-backed [`ReservationStore`] with the semantics of
/// [`crate::InMemoryReservationStore`]: reservations expire after
/// `reservation_ttl`, settled keys and keys with an unknown settlement outcome
/// are kept for `retention`.
///
/// Reserving is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE free or
/// resumable` statement, atomic per key across every connection: two instances
/// can never both hold one payment.
///
/// Connections come from a [`PgPool`] (paywire-store): TLS as the URL's
/// `sslmode`/`sslrootcert` say, `pool_max_size` connections at most, and a
/// connection the database dropped (a restart) is replaced at the next
/// operation, so the store recovers by itself. A statement is run again
/// while the database restarts (taking a payment for 5 s, recording an
/// outcome for 30 s) only when it certainly did not run: no connection, not
/// prepared, or rolled back by a shutting-down server (SQLSTATE `57P01`-`57P03`,
/// class `08`). A connection that closed without an answer is not retried,
/// since the statement may have committed: the operation fails (a payment is
/// refused, never served unpaid). The schema is migrated (component
/// `reservations`) when connecting; a database whose schema is newer than
/// this build is refused.
#[derive(Debug, Clone)]
pub struct PostgresReservationStore {
    pool: PgPool,
    reservation_ttl: Duration,
    retention: Duration,
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

/// The default lifetime of a reservation nobody settled or released.
const RESERVATION_TTL: Duration = Duration::from_secs(600);
/// The default lifetime of settled keys and unknown outcomes.
const RETENTION: Duration = Duration::from_secs(24 * 3600);

impl PostgresReservationStore {
    /// Connects to `url` with the default lifetimes (reservations 10 min,
    /// consumed keys 24 h), migrating the schema. `url` takes
    /// paywire-store's parameters besides the usual ones:
    /// `postgres://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&pool_max_size=16`.
    pub async fn connect(url: &str) -> Result<Self, ReservationError> {
        Self::connect_with(url, RESERVATION_TTL, RETENTION).await
    }

    /// Connects with explicit lifetimes.
    pub async fn connect_with(
        url: &str,
        reservation_ttl: Duration,
        retention: Duration,
    ) -> Result<Self, ReservationError> {
        let pool = PgPool::connect(url).await.map_err(store_error)?;
        Self::with_pool(pool, reservation_ttl, retention).await
    }

    /// A store on an existing pool (shared with other components of the
    /// process), migrating the schema.
    pub async fn with_pool(
        pool: PgPool,
        reservation_ttl: Duration,
        retention: Duration,
    ) -> Result<Self, ReservationError> {
        pool.migrate(&MIGRATIONS).await.map_err(store_error)?;
        Ok(Self {
            pool,
            reservation_ttl,
            retention,
        })
    }

    /// The connection pool (for its usage in metrics).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// How long an operation keeps trying while the database is unreachable.
/// Recording what became of a payment (settled, unknown outcome, released)
/// waits out a restart or failover: losing that record would strand a paid
/// payment. Taking a payment gives up sooner and the request is refused.
#[derive(Debug, Clone, Copy)]
enum Patience {
    Request,
    Record,
    /// A record whose statement gives the same row however often it runs:
    /// also repeated after a connection closed without an answer.
    IdempotentRecord,
}

impl Patience {
    fn limit(self) -> Duration {
        match self {
            Self::Request => Duration::from_secs(5),
            Self::Record | Self::IdempotentRecord => Duration::from_secs(30),
        }
    }
}

/// Whether a failed attempt certainly did not change the database, so that
/// running the statement again is the same as running it once.
fn safe_to_retry(error: &StoreError) -> bool {
    match error {
        // No connection (refused, server starting or shutting down): nothing
        // was sent. A full pool already made the caller wait.
        StoreError::Postgres(error) => error
            .code()
            .is_none_or(|code| code.code().starts_with("08") || code.code().starts_with("57P")),
        StoreError::Pool(_) => true,
        _ => false,
    }
}

/// Whether the server answered the statement itself with "connection
/// exception" or "operator intervention" (`pg_ctl restart`, failover): the
/// statement was rolled back. A connection that closed without an answer is
/// not retried: the statement may have committed.
fn aborted_by_server(error: &paywire_store::tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        code == &SqlState::ADMIN_SHUTDOWN
            || code == &SqlState::CRASH_SHUTDOWN
            || code == &SqlState::CANNOT_CONNECT_NOW
            || code.code().starts_with("08")
    })
}

impl PostgresReservationStore {
    /// Runs `sql` once: `Err((error, retry))`, where `retry` says whether the
    /// statement certainly did not run (no connection, not prepared, or
    /// rolled back by a shutting-down server).
    async fn attempt(
        &self,
        sql: &str,
        params: &[Param<'_>],
        idempotent: bool,
    ) -> Result<Vec<Row>, (StoreError, bool)> {
        let connection = self.pool.get().await.map_err(|e| {
            let retry = safe_to_retry(&e);
            (e, retry)
        })?;
        // Preparing runs nothing: a failure for lack of a connection is safe to repeat.
        let statement = connection.prepare_cached(sql).await.map_err(|e| {
            let retry = e.is_closed() || aborted_by_server(&e);
            (StoreError::from(e), retry)
        })?;
        connection.query(&statement, params).await.map_err(|e| {
            let retry = aborted_by_server(&e) || (idempotent && e.is_closed());
            (StoreError::from(e), retry)
        })
    }

    /// Runs `sql`, again while the database is unreachable (a restart) for
    /// at most `patience`, but only when the failed attempt certainly did
    /// not run: the statements are not all idempotent.
    async fn query(
        &self,
        patience: Patience,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, ReservationError> {
        let deadline = tokio::time::Instant::now() + patience.limit();
        let mut pause = Duration::from_millis(50);
        loop {
            let idempotent = matches!(patience, Patience::IdempotentRecord);
            match self.attempt(sql, params, idempotent).await {
                Ok(rows) => return Ok(rows),
                Err((error, true)) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(%error, "reservation database unavailable; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err((error, _)) => return Err(store_error(error)),
            }
        }
    }
}

impl PostgresReservationStore {
    /// Why `reserve` could not take `key`, from its current row.
    async fn refusal(
        &self,
        key: &ReservationKey,
        fingerprint: &PayloadFingerprint,
    ) -> Result<ReserveOutcome, ReservationError> {
        let now = now_ms();
        let row = self
            .query(
                Patience::Request,
                "SELECT state, fingerprint, held_until_ms FROM x402_reservations
                 WHERE key = $1 AND expires_ms > $2",
                &[&&key.0[..], &now],
            )
            .await?
            .into_iter()
            .next();
        // Gone since the insert attempt (released): still busy a moment ago.
        let Some(row) = row else {
            return Ok(ReserveOutcome::InUse);
        };
        let state: i16 = row.get(0);
        let recorded: Option<Vec<u8>> = row.get(1);
        let held_until: Option<i64> = row.get(2);
        let unknown = state == UNKNOWN || state == RESUMING;
        let held = state == RESERVED || (state == RESUMING && held_until.is_some_and(|t| t > now));
        let same_payload = recorded.as_deref() == Some(&fingerprint.0[..]);
        Ok(match transition(same_payload, unknown, held) {
            Transition::Refuse(outcome) => outcome,
            // It became resumable after the insert attempt: busy a moment ago.
            Transition::Resume => ReserveOutcome::InUse,
        })
    }
}

impl ReservationStore for PostgresReservationStore {
    fn reserve<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<ReserveOutcome, ReservationError>> {
        Box::pin(async move {
            let now = now_ms();
            let expires = now.saturating_add(ms(self.reservation_ttl));
            // A free (or expired) row becomes RESERVED; an unknown row of this
            // payload that nobody holds becomes RESUMING, keeping its retention.
            let taken = self
                .query(
                    Patience::Request,
                    "INSERT INTO x402_reservations AS r
                         (key, state, expires_ms, fingerprint, held_until_ms)
                     VALUES ($1, $2, $3, $4, NULL)
                     ON CONFLICT (key) DO UPDATE SET
                         state = CASE WHEN r.expires_ms <= $5 THEN $2 ELSE $6 END,
                         expires_ms = CASE WHEN r.expires_ms <= $5
                             THEN EXCLUDED.expires_ms ELSE r.expires_ms END,
                         fingerprint = EXCLUDED.fingerprint,
                         held_until_ms = CASE WHEN r.expires_ms <= $5 THEN NULL ELSE $3 END,
                         charge = CASE WHEN r.expires_ms <= $5 THEN NULL ELSE r.charge END
                     WHERE r.expires_ms <= $5
                        OR (r.fingerprint = EXCLUDED.fingerprint
                            AND (r.state = $7 OR (r.state = $6 AND r.held_until_ms <= $5)))
                     RETURNING state",
                    &[
                        &&key.0[..],
                        &RESERVED,
                        &expires,
                        &&fingerprint.0[..],
                        &now,
                        &RESUMING,
                        &UNKNOWN,
                    ],
                )
                .await?
                .into_iter()
                .next();
            match taken.map(|row| row.get::<_, i16>(0)) {
                Some(RESERVED) => Ok(ReserveOutcome::Reserved),
                Some(_) => Ok(ReserveOutcome::Resumed),
                None => self.refusal(key, fingerprint).await,
            }
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        Box::pin(async move {
            self.query(
                Patience::Record,
                "DELETE FROM x402_reservations WHERE key = $1 AND state IN ($2, $3)",
                &[&&key.0[..], &RESERVED, &RESUMING],
            )
            .await?;
            Ok(())
        })
    }

    fn consume<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        Box::pin(async move {
            let expires = now_ms().saturating_add(ms(self.retention));
            self.query(
                Patience::Record,
                "INSERT INTO x402_reservations (key, state, expires_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE
                         SET state = EXCLUDED.state, expires_ms = EXCLUDED.expires_ms,
                             held_until_ms = NULL",
                &[&&key.0[..], &CONSUMED, &expires],
            )
            .await?;
            Ok(())
        })
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
        Box::pin(async move {
            let now = now_ms();
            let expires = now.saturating_add(ms(self.retention));
            let charge = charge.map(|amount| amount.to_string());
            // Without a new charge, the one recorded for this very payload
            // (the attempt a retry resumed) stays.
            // Running it twice gives the same row: a write cut off by a
            // restart is simply repeated.
            self.query(
                Patience::IdempotentRecord,
                "INSERT INTO x402_reservations AS r
                         (key, state, expires_ms, fingerprint, held_until_ms, charge)
                     VALUES ($1, $2, $3, $4, NULL, $7)
                     ON CONFLICT (key) DO UPDATE
                         SET state = EXCLUDED.state, expires_ms = EXCLUDED.expires_ms,
                             fingerprint = EXCLUDED.fingerprint, held_until_ms = NULL,
                             charge = CASE
                                 WHEN EXCLUDED.charge IS NOT NULL THEN EXCLUDED.charge
                                 WHEN r.fingerprint = EXCLUDED.fingerprint
                                     AND r.expires_ms > $6 THEN r.charge
                             END
                         WHERE r.state <> $5 OR r.expires_ms <= $6",
                &[
                    &&key.0[..],
                    &UNKNOWN,
                    &expires,
                    &&fingerprint.0[..],
                    &CONSUMED,
                    &now,
                    &charge,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn is_unknown<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<bool, ReservationError>> {
        Box::pin(async move {
            let row = self
                .query(
                    Patience::Request,
                    "SELECT 1 FROM x402_reservations
                     WHERE key = $1 AND state IN ($2, $3) AND fingerprint = $4
                         AND expires_ms > $5",
                    &[
                        &&key.0[..],
                        &UNKNOWN,
                        &RESUMING,
                        &&fingerprint.0[..],
                        &now_ms(),
                    ],
                )
                .await?;
            Ok(!row.is_empty())
        })
    }

    fn unknown_charge<'a>(
        &'a self,
        key: &'a ReservationKey,
        fingerprint: &'a PayloadFingerprint,
    ) -> BoxFuture<'a, Result<Option<AtomicAmount>, ReservationError>> {
        Box::pin(async move {
            let rows = self
                .query(
                    Patience::Request,
                    "SELECT charge FROM x402_reservations
                     WHERE key = $1 AND state IN ($2, $3) AND fingerprint = $4
                         AND expires_ms > $5",
                    &[
                        &&key.0[..],
                        &UNKNOWN,
                        &RESUMING,
                        &&fingerprint.0[..],
                        &now_ms(),
                    ],
                )
                .await?;
            let charge = rows.first().and_then(|row| row.get::<_, Option<String>>(0));
            parse_charge(charge)
        })
    }
}
