//! The catalog in PostgreSQL (feature `postgres`).

use super::{
    Catalog, CatalogError, CatalogFuture, DiscoveredResource, decode, merged_row, sort_fresh_first,
};

/// A catalog in PostgreSQL, shared by several facilitator instances (URL
/// `postgres://user[:password]@host[:port]/db`, no TLS). An upsert merges
/// under a transaction-scoped advisory lock on the entry's key, so two
/// instances cataloging the same resource at once lose nothing.
pub struct PostgresCatalog {
    config: tokio_postgres::Config,
    client: tokio::sync::Mutex<tokio_postgres::Client>,
}

impl std::fmt::Debug for PostgresCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the config: it may hold a password.
        f.debug_struct("PostgresCatalog").finish_non_exhaustive()
    }
}

/// Advisory lock class of catalog upserts (object id `hashtext(key)`).
const CATALOG_LOCK_CLASS: i32 = 4022;

fn pg(error: tokio_postgres::Error) -> CatalogError {
    CatalogError(error.to_string())
}

async fn pg_open(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, CatalogError> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(pg)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "postgres catalog connection closed");
        }
    });
    Ok(client)
}

impl PostgresCatalog {
    /// Connects and creates the table if needed.
    pub async fn connect(url: &str) -> Result<Self, CatalogError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(pg)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("paywire-bazaar");
        }
        let client = pg_open(&config).await?;
        client
            .batch_execute(&format!(
                "SELECT pg_advisory_lock({CATALOG_LOCK_CLASS}, 0);
                 CREATE TABLE IF NOT EXISTS x402_bazaar_resources (
                     key          TEXT PRIMARY KEY,
                     entry        TEXT NOT NULL,
                     last_updated BIGINT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS x402_bazaar_resources_fresh
                     ON x402_bazaar_resources (last_updated DESC);
                 SELECT pg_advisory_unlock({CATALOG_LOCK_CLASS}, 0);"
            ))
            .await
            .map_err(pg)?;
        Ok(Self {
            config,
            client: tokio::sync::Mutex::new(client),
        })
    }

    async fn client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, tokio_postgres::Client>, CatalogError> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            tracing::warn!("postgres catalog connection lost; reconnecting");
            *client = pg_open(&self.config).await?;
        }
        Ok(client)
    }
}

impl Catalog for PostgresCatalog {
    fn all(&self) -> CatalogFuture<'_, Vec<DiscoveredResource>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT entry FROM x402_bazaar_resources ORDER BY last_updated DESC, key",
                    &[],
                )
                .await
                .map_err(pg)?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in rows {
                entries.push(decode(&row.try_get::<_, String>(0).map_err(pg)?)?);
            }
            sort_fresh_first(&mut entries);
            Ok(entries)
        })
    }

    fn upsert(&self, entry: DiscoveredResource) -> CatalogFuture<'_, ()> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(pg)?;
            let key = entry.key();
            transaction
                .execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    &[&CATALOG_LOCK_CLASS, &key],
                )
                .await
                .map_err(pg)?;
            let existing = transaction
                .query_opt(
                    "SELECT entry FROM x402_bazaar_resources WHERE key = $1",
                    &[&key],
                )
                .await
                .map_err(pg)?;
            let existing: Option<String> = match existing {
                Some(row) => Some(row.try_get(0).map_err(pg)?),
                None => None,
            };
            let (text, updated) = merged_row(existing.as_deref(), entry)?;
            transaction
                .execute(
                    "INSERT INTO x402_bazaar_resources (key, entry, last_updated) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE SET entry = EXCLUDED.entry, last_updated = EXCLUDED.last_updated",
                    &[&key, &text, &updated],
                )
                .await
                .map_err(pg)?;
            transaction.commit().await.map_err(pg)
        })
    }
}
