//! The catalog in PostgreSQL (feature `postgres`), on `paywire-store`'s pool.

use paywire_store::postgres::{PgConfig, PgPool};
use paywire_store::{Migration, Migrations, StoreError};

use super::{
    Catalog, CatalogError, CatalogFuture, DiscoveredResource, decode, merged_row, sort_fresh_first,
};

/// A catalog in PostgreSQL, shared by several facilitator instances.
///
/// Queries run on pooled connections ([`PgPool`]: TLS per the URL's
/// `sslmode`/`sslrootcert`, reconnect after a database restart, statement
/// caching), so a slow query holds up only its own connection. An upsert
/// merges under a transaction-scoped advisory lock on the entry's key, so two
/// instances cataloging the same resource at once lose nothing.
#[derive(Clone)]
pub struct PostgresCatalog {
    pool: PgPool,
}

impl std::fmt::Debug for PostgresCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's own Debug prints usage, never the password.
        f.debug_struct("PostgresCatalog")
            .field("pool", &self.pool)
            .finish()
    }
}

/// Advisory lock class of catalog upserts (object id `hashtext(key)`), the
/// one earlier releases took, so old and new instances exclude each other.
const CATALOG_LOCK_CLASS: i32 = 4022;

/// The catalog's schema. Version 1 is exactly the schema earlier releases
/// created without bookkeeping, so it adopts their databases as they are.
const MIGRATIONS: Migrations = Migrations::new(
    "bazaar",
    &[Migration::new(
        1,
        "resources",
        "CREATE TABLE IF NOT EXISTS x402_bazaar_resources (
             key          TEXT PRIMARY KEY,
             entry        TEXT NOT NULL,
             last_updated BIGINT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS x402_bazaar_resources_fresh
             ON x402_bazaar_resources (last_updated DESC);",
    )],
);

const SELECT_ALL: &str = "SELECT entry FROM x402_bazaar_resources ORDER BY last_updated DESC, key";
const LOCK_KEY: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";
const SELECT_ONE: &str = "SELECT entry FROM x402_bazaar_resources WHERE key = $1";
const UPSERT: &str =
    "INSERT INTO x402_bazaar_resources (key, entry, last_updated) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO UPDATE SET entry = EXCLUDED.entry, last_updated = EXCLUDED.last_updated";

fn pg(error: paywire_store::tokio_postgres::Error) -> CatalogError {
    StoreError::Postgres(error).into()
}

impl PostgresCatalog {
    /// Opens a pool for `url` (`postgres://user[:password]@host[:port]/db`,
    /// with `sslmode`, `sslrootcert` and the pool parameters
    /// `paywire-store` documents) and brings the schema up to date.
    ///
    /// Fails when the database cannot be reached or records a newer catalog
    /// schema than this build knows.
    pub async fn connect(url: &str) -> Result<Self, CatalogError> {
        let mut config = PgConfig::from_url(url)?;
        config
            .options_mut()
            .application_name
            .get_or_insert_with(|| "paywire-bazaar".to_owned());
        let pool = PgPool::open(config).await?;
        Self::from_pool(pool).await
    }

    /// The catalog on an existing pool (e.g. the ledger's, when the catalog
    /// lives in the ledger's database), bringing the schema up to date.
    pub async fn from_pool(pool: PgPool) -> Result<Self, CatalogError> {
        let report = pool.migrate(&MIGRATIONS).await?;
        if !report.applied.is_empty() {
            tracing::info!(
                from = report.from,
                to = report.to,
                "bazaar catalog schema migrated"
            );
        }
        Ok(Self { pool })
    }

    /// The pool the catalog runs on (for metrics, or to share).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn read_all(&self) -> Result<Vec<DiscoveredResource>, CatalogError> {
        let rows = self.pool.query(SELECT_ALL, &[]).await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            entries.push(decode(&row.try_get::<_, String>(0).map_err(pg)?)?);
        }
        sort_fresh_first(&mut entries);
        Ok(entries)
    }

    async fn merge(&self, entry: DiscoveredResource) -> Result<(), CatalogError> {
        let mut connection = self.pool.get().await?;
        let transaction = connection.transaction().await.map_err(pg)?;
        let key = entry.key();
        let lock = transaction.prepare_cached(LOCK_KEY).await.map_err(pg)?;
        transaction
            .execute(&lock, &[&CATALOG_LOCK_CLASS, &key])
            .await
            .map_err(pg)?;
        let select = transaction.prepare_cached(SELECT_ONE).await.map_err(pg)?;
        let existing: Option<String> =
            match transaction.query_opt(&select, &[&key]).await.map_err(pg)? {
                Some(row) => Some(row.try_get(0).map_err(pg)?),
                None => None,
            };
        let (text, updated) = merged_row(existing.as_deref(), entry)?;
        let upsert = transaction.prepare_cached(UPSERT).await.map_err(pg)?;
        transaction
            .execute(&upsert, &[&key, &text, &updated])
            .await
            .map_err(pg)?;
        transaction.commit().await.map_err(pg)
    }
}

impl Catalog for PostgresCatalog {
    fn all(&self) -> CatalogFuture<'_, Vec<DiscoveredResource>> {
        Box::pin(self.read_all())
    }

    fn upsert(&self, entry: DiscoveredResource) -> CatalogFuture<'_, ()> {
        Box::pin(self.merge(entry))
    }
}
