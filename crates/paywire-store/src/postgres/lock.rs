//! Session advisory locks: each on its own pooled connection
//! ([`AdvisoryLock`]), or many on one shared connection ([`LockSession`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_postgres::ClientWrapper;

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
    async fn call(&self, connection: &ClientWrapper, unlock: bool) -> Result<bool, StoreError> {
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
    /// which releases the lock with the session). Given up on before it
    /// finishes, it discards the connection too: never back to the pool
    /// with the lock still held.
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
    // Discarded unless the unlock completes: this future may be dropped at
    // the await, with the lock still held on the connection.
    let mut in_flight = InFlight(Some(connection));
    let unlocked = match in_flight.0.as_ref() {
        Some(connection) => key.call(connection, true).await,
        None => Ok(false),
    };
    match unlocked {
        Ok(true) => {
            // Unlocked: the connection goes back to the pool.
            drop(in_flight.0.take());
            Ok(())
        }
        Ok(false) => Err(StoreError::Pool(
            "the advisory lock was not held by its session at unlock".into(),
        )),
        Err(error) => Err(error),
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
    poll(wait, || try_lock(pool, key)).await
}

/// Calls `attempt` until it takes the lock, pausing 20 ms doubling to 250 ms
/// in between, for at most `wait`.
async fn poll<T, F, Fut>(wait: Duration, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, StoreError>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = POLL_MIN;
    loop {
        if let Some(lock) = attempt().await? {
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

// ------------------------------------------------------------ lock sessions

/// Many session advisory locks on one connection (see
/// [`PgPool::lock_session`]).
///
/// The session takes one connection from the pool the first time it locks
/// and keeps it, out of the pool's count (so queries never wait behind it),
/// for every lock after: a thousand locks held at once cost one connection.
/// When that connection breaks (database restart, `pg_terminate_backend`,
/// network loss) its locks are gone: their guards report
/// [`SessionLock::is_held`] false, and the next lock takes a fresh
/// connection from the pool.
///
/// PostgreSQL session locks are re-entrant: the same session may take a key
/// it already holds. The session therefore remembers the keys it holds and
/// refuses a second guard for one of them (`try_lock` answers `None`, `lock`
/// waits), so two guards of one process exclude each other as guards of two
/// processes do.
///
/// Cheap to clone: clones share the connection and the held keys.
#[derive(Clone)]
pub struct LockSession {
    slot: Arc<Slot>,
}

/// The pool and the session currently used for new locks.
struct Slot {
    pool: PgPool,
    current: Mutex<Option<Arc<Session>>>,
}

/// One connection and the keys locked (or being locked) on it.
struct Session {
    client: ClientWrapper,
    held: Mutex<HashSet<LockKey>>,
    /// No new locks here: its lock state is uncertain, or it is ending. It
    /// closes when its last guard is gone.
    retired: AtomicBool,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The sets stay consistent at every await-free step: a panic elsewhere
    // leaves nothing half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    fn usable(&self) -> bool {
        !self.retired.load(Ordering::Acquire) && !self.client.is_closed()
    }

    fn forget(&self, key: &LockKey) {
        locked(&self.held).remove(key);
    }
}

impl Slot {
    /// The session for new locks: the current one, or a fresh connection
    /// from the pool when there is none or it broke.
    async fn session(&self) -> Result<Arc<Session>, StoreError> {
        if let Some(session) = self.usable() {
            return Ok(session);
        }
        let connection = self.pool.get().await?;
        let mut current = locked(&self.current);
        if let Some(session) = current.as_ref().filter(|s| s.usable()) {
            // Another caller replaced it meanwhile; ours goes back to the pool.
            return Ok(Arc::clone(session));
        }
        if current.is_some() {
            tracing::warn!("advisory lock session lost; continuing on a new connection");
        }
        let session = Arc::new(Session {
            client: deadpool_postgres::Object::take(connection),
            held: Mutex::new(HashSet::new()),
            retired: AtomicBool::new(false),
        });
        *current = Some(Arc::clone(&session));
        Ok(session)
    }

    fn usable(&self) -> Option<Arc<Session>> {
        locked(&self.current)
            .as_ref()
            .filter(|session| session.usable())
            .cloned()
    }

    /// Takes no new locks on `session`; it closes once its guards are gone.
    fn retire(&self, session: &Arc<Session>) {
        session.retired.store(true, Ordering::Release);
        let mut current = locked(&self.current);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, session)) {
            *current = None;
        }
    }
}

impl LockSession {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            slot: Arc::new(Slot {
                pool,
                current: Mutex::new(None),
            }),
        }
    }

    /// Takes `key` if it is free: `None` when another session holds it, or
    /// a guard of this session does. Never waits for the lock.
    pub async fn try_lock(&self, key: &LockKey) -> Result<Option<SessionLock>, StoreError> {
        let session = self.slot.session().await?;
        match self.try_on(&session, key).await {
            // The connection died since it was last used: once more on a
            // new one (the lock went with the old session anyway).
            Err(StoreError::Postgres(error)) if error.is_closed() => {
                let session = self.slot.session().await?;
                self.try_on(&session, key).await
            }
            other => other,
        }
    }

    /// Takes `key`, polling while another session or another guard of this
    /// one holds it (20 ms doubling to 250 ms), for at most `wait`; then
    /// [`StoreError::LockTimeout`].
    pub async fn lock(&self, key: &LockKey, wait: Duration) -> Result<SessionLock, StoreError> {
        poll(wait, || self.try_lock(key)).await
    }

    async fn try_on(
        &self,
        session: &Arc<Session>,
        key: &LockKey,
    ) -> Result<Option<SessionLock>, StoreError> {
        if !locked(&session.held).insert(key.clone()) {
            return Ok(None);
        }
        let mut attempt = Attempt {
            slot: Arc::clone(&self.slot),
            session: Some(Arc::clone(session)),
            key,
        };
        let taken = key.call(&session.client, false).await;
        attempt.session = None;
        match taken {
            Ok(true) => Ok(Some(SessionLock {
                slot: Arc::clone(&self.slot),
                session: Some(Arc::clone(session)),
                key: key.clone(),
            })),
            Ok(false) => {
                session.forget(key);
                Ok(None)
            }
            Err(error) => {
                // Whether the server took the lock is unknown: no new locks
                // on this session, which ends with its last guard.
                self.slot.retire(session);
                session.forget(key);
                Err(error)
            }
        }
    }

    /// Whether the session has a live connection now (no I/O; false before
    /// the first lock).
    pub fn is_connected(&self) -> bool {
        self.slot.usable().is_some()
    }
}

impl std::fmt::Debug for LockSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self
            .slot
            .usable()
            .map_or(0, |session| locked(&session.held).len());
        f.debug_struct("LockSession")
            .field("connected", &self.is_connected())
            .field("held", &held)
            .finish_non_exhaustive()
    }
}

/// A lock attempt in flight. Dropped armed (the caller's future was dropped
/// mid-call), the server may have taken the lock with nobody to release it:
/// unlock it in the background before the key is free again in this session.
struct Attempt<'a> {
    slot: Arc<Slot>,
    session: Option<Arc<Session>>,
    key: &'a LockKey,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let (slot, key) = (Arc::clone(&self.slot), self.key.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    // "Not held" is a fine answer here: the attempt may not
                    // have reached the server.
                    if key.call(&session.client, true).await.is_err() {
                        slot.retire(&session);
                    }
                    session.forget(&key);
                });
            }
            Err(_) => slot.retire(&session),
        }
    }
}

/// A lock held on a [`LockSession`]. Dropping it unlocks (in a spawned
/// task) through the session; the key is free in this process again once
/// the unlock is done. If unlocking fails, or there is no runtime, the
/// session takes no new locks and closes with its last guard, which
/// releases the lock.
pub struct SessionLock {
    slot: Arc<Slot>,
    session: Option<Arc<Session>>,
    key: LockKey,
}

impl SessionLock {
    /// Whether the lock is still held: false once the session's connection
    /// closed (server restart, `pg_terminate_backend`, network loss). Work
    /// that needs the lock must stop.
    pub fn is_held(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|session| !session.client.is_closed())
    }

    /// The key.
    pub fn key(&self) -> &LockKey {
        &self.key
    }

    /// Unlocks now and reports failure (the session then takes no new locks
    /// and closes with its last guard, which releases the lock). Given up on
    /// before it finishes, the guard's drop unlocks in the background.
    pub async fn release(mut self) -> Result<(), StoreError> {
        let Some(session) = self.session.clone() else {
            return Ok(());
        };
        // The guard keeps the session until the unlock is done: dropped at
        // the await, `Drop` unlocks again (a second unlock finding the lock
        // gone retires the session, which is safe), and forgets the key.
        let unlocked = session_unlock(&self.slot, &session, &self.key).await;
        self.session = None;
        unlocked
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let (slot, key) = (Arc::clone(&self.slot), self.key.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = session_unlock(&slot, &session, &key).await {
                        tracing::warn!(%error, "advisory unlock failed; its session is retired");
                    }
                });
            }
            // The process is ending: closing the session releases the lock.
            Err(_) => slot.retire(&session),
        }
    }
}

impl std::fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLock")
            .field("key", &self.key)
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

async fn session_unlock(
    slot: &Slot,
    session: &Arc<Session>,
    key: &LockKey,
) -> Result<(), StoreError> {
    if session.client.is_closed() {
        session.forget(key);
        return Ok(());
    }
    let unlocked = key.call(&session.client, true).await;
    if !matches!(unlocked, Ok(true)) {
        slot.retire(session);
    }
    session.forget(key);
    match unlocked {
        Ok(true) => Ok(()),
        Ok(false) => Err(StoreError::Pool(
            "the advisory lock was not held by its session at unlock".into(),
        )),
        Err(error) => Err(error),
    }
}
