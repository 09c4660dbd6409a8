//! PostgreSQL through a pool (feature `postgres`).
//!
//! [`PgPool`] hands out pooled connections (deadpool-postgres over
//! tokio-postgres) encrypted with rustls according to [`SslMode`]. A
//! connection the server or the network dropped is replaced by the pool: with
//! the default [`Recycling::Verified`] every checkout runs an empty query
//! first, so after a database restart the next operation gets a fresh
//! connection without the caller doing anything. Operations are **not**
//! retried: a query in flight when the server goes away fails with
//! [`StoreError::Postgres`], and only the caller knows whether repeating it is
//! safe.
//!
//! Queries go through [`PgPool::query`] and friends, which prepare each
//! statement once per connection (`prepare_cached`); inside a transaction use
//! [`PgConnection::transaction`] and the transaction's `prepare_cached`.
//!
//! Advisory locks ([`PgPool::lock`], [`PgPool::try_lock`]) are session locks
//! on a pooled connection that stays out of the pool while the
//! [`AdvisoryLock`] guard lives. A [`LockSession`] ([`PgPool::lock_session`])
//! carries many locks on one connection instead.

mod config;
mod lock;
mod migrate;
mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

pub use config::{
    MAX_POOL_SIZE, PARAM_POOL_ACQUIRE_TIMEOUT, PARAM_POOL_MAX_SIZE, PARAM_POOL_RECYCLING, PgConfig,
    PgOptions, Recycling, SslMode,
};
pub use lock::{AdvisoryLock, LockKey, LockSession, MIGRATION_LOCK_NAMESPACE, SessionLock};

use crate::{MigrationReport, Migrations, StoreError};

/// A pooled connection: derefs to a tokio-postgres client with
/// `prepare_cached`; back to the pool when dropped.
pub type PgConnection = deadpool_postgres::Object;

/// A statement parameter.
pub type Param<'a> = &'a (dyn ToSql + Sync);

/// A pool of PostgreSQL connections. Cheap to clone (clones share the pool):
/// several components of one process may share one.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
    acquire_timeout: Duration,
    connect_timeout: Duration,
    ssl_mode: SslMode,
}

/// Pool usage, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The most connections the pool opens.
    pub max_size: usize,
    /// Connections open now (in use or idle).
    pub size: usize,
    /// Idle connections ready to be handed out.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl PgPool {
    /// Parses `url` (see [`PgConfig::from_url`]) and opens the pool.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(PgConfig::from_url(url)?).await
    }

    /// Opens the pool and checks that one connection can be made (so a
    /// wrong URL, password or certificate fails at start, not at the first
    /// payment).
    pub async fn open(config: PgConfig) -> Result<Self, StoreError> {
        let pool = Self::open_lazy(&config)?;
        drop(pool.get().await?);
        tracing::debug!(ssl_mode = %pool.ssl_mode, max_size = config.options().max_size, "postgres pool open");
        Ok(pool)
    }

    /// Builds the pool without connecting: the first operation connects.
    pub fn open_lazy(config: &PgConfig) -> Result<Self, StoreError> {
        let options = config.options();
        if options.max_size > MAX_POOL_SIZE {
            return Err(StoreError::Config(format!(
                "the pool size must be at most {MAX_POOL_SIZE}"
            )));
        }
        let connector = tls::connector(config.ssl_mode(), config.root_cert())?;
        let recycling_method = match options.recycling {
            Recycling::Verified => RecyclingMethod::Verified,
            Recycling::Fast => RecyclingMethod::Fast,
        };
        let pg = config.connection_config();
        let connect_timeout = pg
            .get_connect_timeout()
            .copied()
            .unwrap_or(options.connect_timeout);
        let manager = Manager::from_config(pg, connector, ManagerConfig { recycling_method });
        let pool = Pool::builder(manager)
            .max_size(options.max_size.max(1))
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Self {
            pool,
            acquire_timeout: options.acquire_timeout,
            connect_timeout,
            ssl_mode: config.ssl_mode(),
        })
    }

    /// A connection from the pool (waiting at most the acquire timeout).
    pub async fn get(&self) -> Result<PgConnection, StoreError> {
        self.pool.get().await.map_err(|e| self.pool_error(e))
    }

    fn pool_error(&self, error: PoolError) -> StoreError {
        match error {
            PoolError::Backend(error) => StoreError::Postgres(error),
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                StoreError::PoolTimeout(self.acquire_timeout)
            }
            PoolError::Timeout(_) => StoreError::Pool(format!(
                "connecting to the database took longer than {:?}",
                self.connect_timeout
            )),
            other => StoreError::Pool(other.to_string()),
        }
    }

    /// Runs `sql` (prepared once per connection) and returns its rows.
    pub async fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let connection = self.get().await?;
        let statement = connection.prepare_cached(sql).await?;
        Ok(connection.query(&statement, params).await?)
    }

    /// Runs `sql` and returns its one row (an error if there are none or several).
    pub async fn query_one(&self, sql: &str, params: &[Param<'_>]) -> Result<Row, StoreError> {
        let connection = self.get().await?;
        let statement = connection.prepare_cached(sql).await?;
        Ok(connection.query_one(&statement, params).await?)
    }

    /// Runs `sql` and returns its row, if any (an error if several).
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        let connection = self.get().await?;
        let statement = connection.prepare_cached(sql).await?;
        Ok(connection.query_opt(&statement, params).await?)
    }

    /// Runs `sql` and returns how many rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let connection = self.get().await?;
        let statement = connection.prepare_cached(sql).await?;
        Ok(connection.execute(&statement, params).await?)
    }

    /// Applies `migrations` (see [`crate::migrate`]) under a transaction-level
    /// advisory lock ([`MIGRATION_LOCK_NAMESPACE`]).
    pub async fn migrate(&self, migrations: &Migrations) -> Result<MigrationReport, StoreError> {
        migrate::run(self, migrations).await
    }

    /// Takes the session advisory lock `key` if it is free; `None` when
    /// another session holds it. Never waits for the lock.
    pub async fn try_lock(&self, key: &LockKey) -> Result<Option<AdvisoryLock>, StoreError> {
        lock::try_lock(self, key).await
    }

    /// Takes the session advisory lock `key`, polling while another session
    /// holds it (20 ms doubling to 250 ms, no pooled connection held between
    /// attempts), for at most `wait`; then [`StoreError::LockTimeout`].
    pub async fn lock(&self, key: &LockKey, wait: Duration) -> Result<AdvisoryLock, StoreError> {
        lock::lock(self, key, wait).await
    }

    /// A session for many advisory locks on one connection (see
    /// [`LockSession`]): for callers that hold many locks at once, or hold
    /// them long (a settlement waiting for its receipt), where one pooled
    /// connection per lock would cap concurrency at the pool size. Connects
    /// at its first lock.
    pub fn lock_session(&self) -> LockSession {
        LockSession::new(self.clone())
    }

    /// Pool usage now (no I/O).
    pub fn status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }

    /// The TLS mode connections use.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// Closes the pool: idle connections close now, connections in use when
    /// they come back; later operations fail.
    pub fn close(&self) {
        self.pool.close();
    }
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's configuration holds the password: show usage only.
        f.debug_struct("PgPool")
            .field("ssl_mode", &self.ssl_mode)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
