//! A [`ReservationStore`] in PostgreSQL: shared by every instance of a
//! resource server behind a load balancer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};
use x402_core::BoxFuture;

use crate::reservation::{ReservationError, ReservationKey, ReservationStore, ReserveOutcome};

const RESERVED: i16 = 0;
const CONSUMED: i16 = 1;

/// Advisory lock taken while creating the table, so that instances starting
/// together do not race on `CREATE TABLE`.
const MIGRATION_LOCK: i64 = 0x7840_3202;

/// PostgreSQL-backed [`ReservationStore`] with the semantics of
/// [`crate::InMemoryReservationStore`]: reservations expire after
/// `reservation_ttl`, consumed keys are kept for `retention`.
///
/// Reserving is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`
/// statement, atomic per key across every connection: two instances can never
/// both reserve one payment. The connection is not TLS-encrypted (`NoTls`);
/// keep the database on a private network.
#[derive(Clone)]
pub struct PostgresReservationStore {
    client: Arc<Client>,
    reservation_ttl: Duration,
    retention: Duration,
}

impl std::fmt::Debug for PostgresReservationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReservationStore")
            .field("reservation_ttl", &self.reservation_ttl)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
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

impl PostgresReservationStore {
    /// Connects to `url` (`postgres://user@host:port/db`) with the default
    /// lifetimes (reservations 10 min, consumed keys 24 h), creating the
    /// table if needed.
    pub async fn connect(url: &str) -> Result<Self, ReservationError> {
        Self::connect_with(
            url,
            Duration::from_secs(600),
            Duration::from_secs(24 * 3600),
        )
        .await
    }

    /// Connects with explicit lifetimes.
    pub async fn connect_with(
        url: &str,
        reservation_ttl: Duration,
        retention: Duration,
    ) -> Result<Self, ReservationError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(store_error)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::error!(%error, "reservation database connection closed");
            }
        });
        client
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
                 CREATE TABLE IF NOT EXISTS x402_reservations (
                     key BYTEA PRIMARY KEY,
                     state SMALLINT NOT NULL,
                     expires_ms BIGINT NOT NULL
                 );
                 COMMIT;"
            ))
            .await
            .map_err(store_error)?;
        Ok(Self {
            client: Arc::new(client),
            reservation_ttl,
            retention,
        })
    }
}

impl ReservationStore for PostgresReservationStore {
    fn reserve<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<ReserveOutcome, ReservationError>> {
        Box::pin(async move {
            let now = now_ms();
            let expires = now.saturating_add(ms(self.reservation_ttl));
            let inserted = self
                .client
                .query_opt(
                    "INSERT INTO x402_reservations (key, state, expires_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE
                         SET state = EXCLUDED.state, expires_ms = EXCLUDED.expires_ms
                         WHERE x402_reservations.expires_ms <= $4
                     RETURNING key",
                    &[&&key.0[..], &RESERVED, &expires, &now],
                )
                .await
                .map_err(store_error)?;
            if inserted.is_some() {
                return Ok(ReserveOutcome::Reserved);
            }
            let row = self
                .client
                .query_opt(
                    "SELECT state FROM x402_reservations WHERE key = $1",
                    &[&&key.0[..]],
                )
                .await
                .map_err(store_error)?;
            Ok(match row.map(|r| r.get::<_, i16>(0)) {
                Some(CONSUMED) => ReserveOutcome::Consumed,
                // Reserved by someone else (or released since: still busy now).
                _ => ReserveOutcome::InUse,
            })
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        Box::pin(async move {
            self.client
                .execute(
                    "DELETE FROM x402_reservations WHERE key = $1 AND state = $2",
                    &[&&key.0[..], &RESERVED],
                )
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn consume<'a>(
        &'a self,
        key: &'a ReservationKey,
    ) -> BoxFuture<'a, Result<(), ReservationError>> {
        Box::pin(async move {
            let expires = now_ms().saturating_add(ms(self.retention));
            self.client
                .execute(
                    "INSERT INTO x402_reservations (key, state, expires_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE
                         SET state = EXCLUDED.state, expires_ms = EXCLUDED.expires_ms",
                    &[&&key.0[..], &CONSUMED, &expires],
                )
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }
}
