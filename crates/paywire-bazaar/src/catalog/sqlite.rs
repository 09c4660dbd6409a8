//! The catalog in a SQLite file (feature `sqlite`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Catalog, CatalogError, CatalogFuture, DiscoveredResource, decode, merged_row, sort_fresh_first,
};

/// A catalog in a SQLite file, kept across restarts. Its queries run on
/// tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    connection: Arc<Mutex<Connection>>,
}

fn sql(error: rusqlite::Error) -> CatalogError {
    CatalogError(error.to_string())
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog in the SQLite file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CatalogError> {
        let connection = Connection::open(path).map_err(sql)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS bazaar_resources (
                     key TEXT PRIMARY KEY,
                     entry TEXT NOT NULL,
                     last_updated INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS bazaar_resources_fresh
                     ON bazaar_resources (last_updated DESC);",
            )
            .map_err(sql)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn with_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, CatalogError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut guard = match connection.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            work(&mut guard)
        })
        .await
        .map_err(|e| CatalogError(format!("catalog task: {e}")))?
    }
}

impl Catalog for SqliteCatalog {
    fn all(&self) -> CatalogFuture<'_, Vec<DiscoveredResource>> {
        Box::pin(self.with_connection(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT entry FROM bazaar_resources ORDER BY last_updated DESC, key",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(sql)?;
            let mut entries = Vec::new();
            for row in rows {
                entries.push(decode(&row.map_err(sql)?)?);
            }
            sort_fresh_first(&mut entries);
            Ok(entries)
        }))
    }

    fn upsert(&self, entry: DiscoveredResource) -> CatalogFuture<'_, ()> {
        Box::pin(self.with_connection(move |connection| {
            // IMMEDIATE: a read-then-write transaction that starts deferred
            // fails at once ("database is locked", no busy wait) when another
            // connection to the file, e.g. the facilitator's ledger, wrote
            // in between; taking the write lock first makes it wait instead.
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let key = entry.key();
            let existing: Option<String> = transaction
                .query_row(
                    "SELECT entry FROM bazaar_resources WHERE key = ?1",
                    params![key],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            let (text, updated) = merged_row(existing.as_deref(), entry)?;
            transaction
                .execute(
                    "INSERT INTO bazaar_resources (key, entry, last_updated) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET entry = excluded.entry, last_updated = excluded.last_updated",
                    params![key, text, updated],
                )
                .map_err(sql)?;
            transaction.commit().map_err(sql)
        }))
    }
}
