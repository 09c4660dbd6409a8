//! SQLite off the async runtime (feature `sqlite`).
//!
//! A [`SqliteHandle`] owns one connection on a dedicated thread
//! ([async-sqlite](https://docs.rs/async-sqlite)); [`SqliteHandle::call`]
//! queues a closure to that thread and awaits its result, so a slow query or
//! a wait for another process's write lock never blocks a runtime worker.
//! Calls on one handle run one at a time, in order. A closure that panics is
//! reported as [`StoreError::Worker`] (an open transaction is rolled back)
//! and the handle keeps working.
//!
//! Every connection is opened with `busy_timeout` (default 5 s; set first, so
//! that switching to WAL waits for another process too), `journal_mode=WAL`
//! for files, `synchronous=NORMAL` (durable across application crashes under
//! WAL; a power loss may drop the last transactions), `foreign_keys=ON` and a
//! page cache of [`DEFAULT_PAGE_CACHE_KIB`] (SQLite's own default is 2 MB per
//! connection).
//!
//! Several handles (processes) may share one file. A read-modify-write must
//! begin with `BEGIN IMMEDIATE`
//! (`connection.transaction_with_behavior(TransactionBehavior::Immediate)`):
//! a deferred transaction that reads and then writes cannot wait for the
//! write lock and fails with "database is locked".

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_sqlite::{Client, ClientBuilder};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::migrate::{VERSIONS_TABLE, now, stored_version};
use crate::{MigrationReport, Migrations, StoreError};

/// The page cache a file database's connection keeps for its main schema
/// unless told otherwise, in KiB. (An in-memory database keeps every page
/// whatever this says.)
///
/// SQLite's own default (2,000 KiB) was the largest single part of a small
/// service's heap: the facilitator's two connections (ledger and catalog)
/// filled 1.3 MiB of it under the load tool's standard run. A page this cache
/// drops is read again from the file on its next use, which the operating
/// system's page cache usually answers without a disk access; at 1,000,000
/// settlements (a 2.4 GB file the host kept cached) the ledger's calls were no
/// slower (BENCHMARKS.md, "Memory: SQLite's page cache").
pub const DEFAULT_PAGE_CACHE_KIB: u32 = 256;

/// The smallest page cache migrations run with, in KiB: SQLite's own default,
/// what they ran with before connections kept less. A migration that rewrites
/// a large table or builds an index over it spills less (and sorts more in
/// memory) than with 256 KiB, and no more memory is at stake than before.
/// Pages are allocated only as they are read, so a small database's
/// migrations cost nothing extra; the connection's own size is restored
/// afterwards.
const MIGRATION_PAGE_CACHE_KIB: i64 = 2_000;

/// Settings applied when a connection opens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How long a statement waits for another connection's lock before
    /// failing with "database is locked" (default 5 s).
    pub busy_timeout: Duration,
    /// The most memory the connection's page cache may hold for the main
    /// schema of a file database, in KiB (default [`DEFAULT_PAGE_CACHE_KIB`];
    /// SQLite keeps at least ten pages whatever this says; 0 counts as 1 and
    /// values above `i32::MAX` as `i32::MAX`). Migrations run with at least
    /// 2,000 KiB.
    pub page_cache_kib: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            page_cache_kib: DEFAULT_PAGE_CACHE_KIB,
        }
    }
}

impl SqliteOptions {
    /// Sets [`SqliteOptions::busy_timeout`].
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`SqliteOptions::page_cache_kib`].
    pub fn with_page_cache_kib(mut self, kib: u32) -> Self {
        self.page_cache_kib = kib;
        self
    }
}

/// One SQLite connection on its own thread. Cheap to clone (clones share the
/// connection and its queue).
#[derive(Clone)]
pub struct SqliteHandle {
    client: Client,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SqliteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHandle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteHandle {
    /// Opens (creating if needed) the database file at `path` with default
    /// options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens the database file at `path`.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let client = ClientBuilder::new()
            .path(&path)
            .open()
            .await
            .map_err(worker_error)?;
        let handle = Self {
            client,
            path: Some(path),
        };
        handle.configure(options).await?;
        Ok(handle)
    }

    /// A private in-memory database (for tests; gone when the last clone drops).
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let client = ClientBuilder::new().open().await.map_err(worker_error)?;
        let handle = Self { client, path: None };
        handle.configure(SqliteOptions::default()).await?;
        Ok(handle)
    }

    async fn configure(&self, options: SqliteOptions) -> Result<(), StoreError> {
        let file = self.path.is_some();
        self.call(move |connection| {
            connection.busy_timeout(options.busy_timeout)?;
            if file {
                let mode: String =
                    connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(mode, "sqlite refused WAL mode");
                }
            }
            // SQLite reads a cache_size beyond i32 as 0, and 0 as its own
            // default at the next schema change: neither is what was asked.
            let kib = options.page_cache_kib.clamp(1, i32::MAX.unsigned_abs());
            connection.execute_batch(&format!(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; {}",
                cache_size_pragma(-i64::from(kib))
            ))
        })
        .await
    }

    /// The file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `work` on the connection's thread and returns its result.
    pub async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.client.conn_mut(work).await.map_err(worker_error)
    }

    /// Like [`SqliteHandle::call`], for closures with their own error type
    /// (a store's error, which converts from [`StoreError`] for the worker's
    /// own failures).
    pub async fn call_and_then<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.client
            .conn_mut_and_then(move |connection| work(connection).map_err(Outcome::Caller))
            .await
            .map_err(|outcome| match outcome {
                Outcome::Caller(error) => error,
                Outcome::Worker(error) => E::from(worker_error(error)),
            })
    }

    /// Applies `migrations` (see [`crate::migrate`]) in a `BEGIN IMMEDIATE`
    /// transaction, so processes opening the file together run one after
    /// the other.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<MigrationReport, StoreError> {
        let migrations = *migrations;
        migrations.validate()?;
        let kept: i64 = self
            .call(|connection| connection.query_row("PRAGMA cache_size", [], |row| row.get(0)))
            .await?;
        let during = migration_cache_size(kept);
        self.call(move |connection| connection.execute_batch(&cache_size_pragma(during)))
            .await?;
        let report = self
            .call_and_then(move |connection| run_migrations(connection, &migrations))
            .await;
        // A call of its own, so that it runs whatever the migrations did (a
        // panicking one included: the handle keeps working after it).
        let restored = self
            .call(move |connection| connection.execute_batch(&cache_size_pragma(kept)))
            .await;
        let report = report?;
        restored?;
        Ok(report)
    }

    /// Closes the connection; later calls fail with [`StoreError::Worker`].
    pub async fn close(&self) -> Result<(), StoreError> {
        self.client.close().await.map_err(worker_error)
    }
}

/// Sets the page cache to `value` as SQLite reads it: negative, a size in
/// KiB; positive, a page count.
fn cache_size_pragma(value: i64) -> String {
    format!("PRAGMA cache_size = {value};")
}

/// The `cache_size` migrations run with, given the connection's: at least
/// [`MIGRATION_PAGE_CACHE_KIB`] when it is a size in KiB (negative); a page
/// count (positive) was set on purpose and is kept.
fn migration_cache_size(kept: i64) -> i64 {
    if kept < 0 {
        kept.min(-MIGRATION_PAGE_CACHE_KIB)
    } else {
        kept
    }
}

/// A closure's own error, or the worker's.
enum Outcome<E> {
    Caller(E),
    Worker(async_sqlite::Error),
}

impl<E> From<rusqlite::Error> for Outcome<E> {
    fn from(error: rusqlite::Error) -> Self {
        Self::Worker(async_sqlite::Error::Rusqlite(error))
    }
}

impl<E> From<async_sqlite::Error> for Outcome<E> {
    fn from(error: async_sqlite::Error) -> Self {
        Self::Worker(error)
    }
}

fn worker_error(error: async_sqlite::Error) -> StoreError {
    match error {
        async_sqlite::Error::Rusqlite(error) => StoreError::Sqlite(error),
        other => StoreError::Worker(other.to_string()),
    }
}

fn run_migrations(
    connection: &mut Connection,
    migrations: &Migrations,
) -> Result<MigrationReport, StoreError> {
    let component = migrations.component();
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (
             component  TEXT PRIMARY KEY NOT NULL,
             version    INTEGER NOT NULL,
             applied_at INTEGER NOT NULL
         )"
    ))?;
    let recorded: Option<i64> = tx
        .query_row(
            &format!("SELECT version FROM {VERSIONS_TABLE} WHERE component = ?1"),
            [component],
            |row| row.get(0),
        )
        .optional()?;
    let from = match (recorded, migrations.legacy_version()) {
        (Some(version), _) => stored_version(version),
        (None, Some(query)) => legacy_version(&tx, query)?,
        (None, None) => 0,
    };
    let pending = migrations.pending(from)?;
    for migration in pending {
        tx.execute_batch(migration.sql)
            .map_err(|e| migrations.failed(migration, e.into()))?;
        tracing::info!(
            component,
            version = migration.version,
            name = migration.name,
            "sqlite schema migrated"
        );
    }
    let to = pending.last().map_or(from, |m| m.version);
    if recorded.is_none() || !pending.is_empty() {
        tx.execute(
            &format!(
                "INSERT INTO {VERSIONS_TABLE} (component, version, applied_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (component) DO UPDATE
                 SET version = excluded.version, applied_at = excluded.applied_at"
            ),
            rusqlite::params![component, i64::from(to), now()],
        )?;
    }
    tx.commit()?;
    Ok(MigrationReport {
        component: component.to_owned(),
        from,
        to,
        applied: pending.iter().map(|m| m.version).collect(),
    })
}

/// The legacy-version query's answer; 0 when a table it reads is missing.
fn legacy_version(connection: &Connection, query: &str) -> Result<u32, StoreError> {
    match connection.query_row(query, [], |row| row.get::<_, i64>(0)) {
        Ok(version) => Ok(stored_version(version)),
        Err(rusqlite::Error::SqliteFailure(_, Some(message)))
            if message.starts_with("no such table") =>
        {
            Ok(0)
        }
        Err(error) => Err(error.into()),
    }
}
