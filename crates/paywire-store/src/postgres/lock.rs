//! Session advisory locks held on a pooled connection.

use std::time::Duration;

use super::{PgConnection, PgPool};
use crate::StoreError;

/// Namespace of the migration lock (`pg_advisory_xact_lock(namespace, 0)`;
/// "payw" in ASCII). Components pick other namespaces for their own locks
/// (the ledger uses 4020, the catalog 4022).
pub const MIGRATION_LOCK_NAMESPACE: i32 = 0x7061_7977;

const POLL_MIN: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(250);

/// An advisory lock key: PostgreSQL's two-integer form `(namespace, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockKey {
    namespace: i32,
    id: LockId,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LockId {
    Number(i32),
    /// Hashed by the server with `hashtext`: the same lock as a caller that
    /// takes `pg_advisory_lock(namespace, hashtext(text))` itself.
    Text(String),
}

impl LockKey {
    /// The key `(namespace, id)`.
    pub fn new(namespace: i32, id: i32) -> Self {
        Self {
            namespace,
            id: LockId::Number(id),
        }
    }

    /// The key `(namespace, hashtext(text))`, hashed by the server (so it is
    /// the lock earlier releases took for the same text). Two texts whose
    /// hashes collide share a lock: that serialises, never breaks, them.
    pub fn text(namespace: i32, text: impl Into<String>) -> Self {
        Self {
            namespace,
            id: LockId::Text(text.into()),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> i32 {
        self.namespace
    }

    /// Runs `pg_try_advisory_lock` (`unlock == false`) or
    /// `pg_advisory_unlock` on `connection`; returns its boolean.
    async fn call(&self, connection: &PgConnection, unlock: bool) -> Result<bool, StoreError> {
        let function = if unlock {
            "pg_advisory_unlock"
        } else {
            "pg_try_advisory_lock"
        };
        let row = match &self.id {
            LockId::Number(id) => {
                let sql = format!("SELECT {function}($1::int4, $2::int4)");
                let statement = connection.prepare_cached(&sql).await?;
                connection
                    .query_one(&statement, &[&self.namespace, id])
                    .await?
            }
            LockId::Text(text) => {
                let sql = format!("SELECT {function}($1::int4, hashtext($2))");
                let statement = connection.prepare_cached(&sql).await?;
                connection
                    .query_one(&statement, &[&self.namespace, text])
                    .await?
            }
        };
        Ok(row.try_get(0)?)
    }
}

/// A held session advisory lock. Its connection stays out of the pool while
/// the guard lives. Dropping it unlocks (in a spawned task) and returns the
/// connection to the pool; if unlocking fails, or there is no runtime, the
/// connection is closed instead, which ends the session and so the lock.
#[derive(Debug)]
pub struct AdvisoryLock {
    connection: Option<PgConnection>,
    key: LockKey,
}

impl AdvisoryLock {
    /// Whether the lock is still held: false once its connection closed
    /// (server restart, `pg_terminate_backend`, network loss), since a
    /// session lock goes with its session. Work that needs the lock must stop.
    pub fn is_held(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|connection| !connection.is_closed())
    }

    /// The key.
    pub fn key(&self) -> &LockKey {
        &self.key
    }

    /// Unlocks now and reports failure (the connection is then discarded,
    /// which releases the lock with the session).
    pub async fn release(mut self) -> Result<(), StoreError> {
        match self.connection.take() {
            Some(connection) => unlock(connection, &self.key).await,
            None => Ok(()),
        }
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        let key = self.key.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = unlock(connection, &key).await {
                        tracing::warn!(%error, "advisory unlock failed; its connection was closed");
                    }
                });
            }
            // The process is ending: closing the session releases the lock.
            Err(_) => discard(connection),
        }
    }
}

/// Unlocks `key` on `connection` and returns the connection to the pool;
/// discards it when the unlock fails or finds the lock not held.
async fn unlock(connection: PgConnection, key: &LockKey) -> Result<(), StoreError> {
    if connection.is_closed() {
        discard(connection);
        return Ok(());
    }
    match key.call(&connection, true).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            discard(connection);
            Err(StoreError::Pool(
                "the advisory lock was not held by its session at unlock".into(),
            ))
        }
        Err(error) => {
            discard(connection);
            Err(error)
        }
    }
}

/// Takes `connection` out of the pool for good and closes it.
fn discard(connection: PgConnection) {
    drop(deadpool_postgres::Object::take(connection));
}

/// A connection on which a lock call is in flight: if the call is abandoned
/// (error, or the caller's future dropped) the lock may have been taken, so
/// the connection is discarded rather than returned to the pool.
struct InFlight(Option<PgConnection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            discard(connection);
        }
    }
}

pub(super) async fn try_lock(
    pool: &PgPool,
    key: &LockKey,
) -> Result<Option<AdvisoryLock>, StoreError> {
    let mut in_flight = InFlight(Some(pool.get().await?));
    let taken = match in_flight.0.as_ref() {
        Some(connection) => key.call(connection, false).await?,
        None => false,
    };
    let connection = in_flight.0.take();
    Ok(if taken {
        Some(AdvisoryLock {
            connection,
            key: key.clone(),
        })
    } else {
        // Not taken: the connection goes back to the pool (dropped here).
        None
    })
}

pub(super) async fn lock(
    pool: &PgPool,
    key: &LockKey,
    wait: Duration,
) -> Result<AdvisoryLock, StoreError> {
    let started = tokio::time::Instant::now();
    let mut pause = POLL_MIN;
    loop {
        if let Some(lock) = try_lock(pool, key).await? {
            return Ok(lock);
        }
        let waited = started.elapsed();
        if waited >= wait {
            return Err(StoreError::LockTimeout(wait));
        }
        tokio::time::sleep(pause.min(wait.saturating_sub(waited))).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}
