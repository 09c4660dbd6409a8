//! The catalog in a SQLite file (feature `sqlite`), on `paywire-store`'s
//! SQLite handle.

use std::path::Path;

use paywire_store::rusqlite::{self, Connection, OptionalExtension, TransactionBehavior, params};
use paywire_store::sqlite::SqliteHandle;
use paywire_store::{Migration, Migrations};

use super::{
    Catalog, CatalogError, CatalogFuture, DiscoveredResource, decode, merged_row, sort_fresh_first,
};

/// A catalog in a SQLite file, kept across restarts. Its work runs on the
/// handle's own thread ([`SqliteHandle`]: WAL, `busy_timeout`), never on an
/// async worker, so a wait for another process's write lock stalls no
/// runtime thread.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    db: SqliteHandle,
}

/// The catalog's schema. Version 1 is exactly the schema earlier releases
/// created without bookkeeping, so it adopts their files as they are.
const MIGRATIONS: Migrations = Migrations::new(
    "bazaar",
    &[Migration::new(
        1,
        "resources",
        "CREATE TABLE IF NOT EXISTS bazaar_resources (
             key TEXT PRIMARY KEY,
             entry TEXT NOT NULL,
             last_updated INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS bazaar_resources_fresh
             ON bazaar_resources (last_updated DESC);",
    )],
);

fn sql(error: rusqlite::Error) -> CatalogError {
    CatalogError(error.to_string())
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog in the SQLite file at `path`
    /// and brings its schema up to date; fails if the file records a newer
    /// catalog schema than this build knows.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, CatalogError> {
        Self::from_handle(SqliteHandle::open(path).await?).await
    }

    /// The catalog on an open handle (e.g. one shared with the ledger when
    /// both live in one file), bringing the schema up to date.
    pub async fn from_handle(db: SqliteHandle) -> Result<Self, CatalogError> {
        let report = db.migrate(&MIGRATIONS).await?;
        if !report.applied.is_empty() {
            tracing::info!(
                from = report.from,
                to = report.to,
                "bazaar catalog schema migrated"
            );
        }
        Ok(Self { db })
    }

    /// The handle the catalog runs on.
    pub fn handle(&self) -> &SqliteHandle {
        &self.db
    }
}

fn read_all(connection: &mut Connection) -> Result<Vec<DiscoveredResource>, CatalogError> {
    let mut statement = connection
        .prepare_cached("SELECT entry FROM bazaar_resources ORDER BY last_updated DESC, key")
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
}

fn merge(connection: &mut Connection, entry: DiscoveredResource) -> Result<(), CatalogError> {
    // IMMEDIATE: a read-then-write transaction that starts deferred fails at
    // once ("database is locked", no busy wait) when another connection to
    // the file, e.g. the facilitator's ledger, wrote in between; taking the
    // write lock first makes it wait instead.
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
}

impl Catalog for SqliteCatalog {
    fn all(&self) -> CatalogFuture<'_, Vec<DiscoveredResource>> {
        Box::pin(self.db.call_and_then(read_all))
    }

    fn upsert(&self, entry: DiscoveredResource) -> CatalogFuture<'_, ()> {
        Box::pin(
            self.db
                .call_and_then(move |connection| merge(connection, entry)),
        )
    }
}
