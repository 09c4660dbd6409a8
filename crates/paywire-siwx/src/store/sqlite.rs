//! The SQLite store (feature `sqlite`).
//!
//! The connection lives on paywire-store's [`SqliteHandle`] thread: a write
//! waiting for another process's lock (or for `fsync`) never blocks an async
//! runtime worker. The file is opened in WAL mode with a 5 s
//! `busy_timeout`; the schema is the `siwx` component of paywire-store's
//! migrations.

use std::path::Path;

use paywire_core::BoxFuture;
use paywire_store::rusqlite::{self, Connection, OptionalExtension, TransactionBehavior, params};
use paywire_store::sqlite::SqliteHandle;
use paywire_store::{Migration, Migrations};

use super::{
    Entitlement, EntitlementStore, IssuedNonce, NonceState, NonceStore, StoreError, from_sql,
    nonce_state, normalize_address, to_sql,
};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self(error.to_string())
    }
}

/// The `siwx` schema. Version 1 is the schema of the releases before
/// paywire-store, all `IF NOT EXISTS`: a file they created is adopted as it
/// is.
const MIGRATIONS: Migrations = Migrations::new(
    "siwx",
    &[Migration::new(
        1,
        "nonces, entitlements, revoked sessions",
        "CREATE TABLE IF NOT EXISTS siwx_nonces (
             nonce TEXT PRIMARY KEY,
             uri TEXT NOT NULL,
             expires_at INTEGER NOT NULL,
             used INTEGER NOT NULL DEFAULT 0
         );
         CREATE INDEX IF NOT EXISTS siwx_nonces_by_expiry ON siwx_nonces (expires_at);
         CREATE TABLE IF NOT EXISTS siwx_entitlements (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             address TEXT NOT NULL,
             network TEXT NOT NULL,
             scope TEXT NOT NULL,
             granted_at INTEGER NOT NULL,
             expires_at INTEGER,
             remaining_uses INTEGER
         );
         CREATE INDEX IF NOT EXISTS siwx_entitlements_by_holder
             ON siwx_entitlements (address, network, scope);
         CREATE TABLE IF NOT EXISTS siwx_revoked_sessions (
             token_id TEXT PRIMARY KEY,
             expires_at INTEGER NOT NULL
         );",
    )],
);

/// SQLite-backed store (the default for persistent deployments). Safe to
/// share between processes: consumption runs in `IMMEDIATE` transactions.
/// Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct SqliteStore {
    db: SqliteHandle,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.path())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, and creates
    /// or upgrades the tables. Fails if the file holds a newer `siwx`
    /// schema than this build knows.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::with_handle(SqliteHandle::open(path).await?).await
    }

    /// A database held in memory.
    pub async fn in_memory() -> Result<Self, StoreError> {
        Self::with_handle(SqliteHandle::open_in_memory().await?).await
    }

    /// Uses an open handle (a file shared with other components), and
    /// creates or upgrades the tables.
    pub async fn with_handle(db: SqliteHandle) -> Result<Self, StoreError> {
        db.migrate(&MIGRATIONS).await?;
        Ok(Self { db })
    }

    /// Runs `work` on the connection's thread.
    async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.db.call_and_then(work).await
    }
}

fn nonce_row(db: &Connection, nonce: &str, uri: &str, now: u64) -> Result<NonceState, StoreError> {
    let row: Option<(String, i64, bool)> = db
        .query_row(
            "SELECT uri, expires_at, used FROM siwx_nonces WHERE nonce = ?1",
            params![nonce],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(nonce_state(
        row.map(|(uri, expires_at, used)| IssuedNonce {
            uri,
            expires_at: from_sql(expires_at),
            used,
        })
        .as_ref(),
        uri,
        now,
    ))
}

fn consume(db: &Connection, nonce: &str, uri: &str, now: u64) -> Result<NonceState, StoreError> {
    let changed = db.execute(
        "UPDATE siwx_nonces SET used = 1
         WHERE nonce = ?1 AND uri = ?2 AND used = 0 AND expires_at > ?3",
        params![nonce, uri, to_sql(now)],
    )?;
    if changed == 1 {
        return Ok(NonceState::Valid);
    }
    match nonce_row(db, nonce, uri, now)? {
        // Lost a race (another process) between the UPDATE and the SELECT.
        NonceState::Valid => Ok(NonceState::Used),
        other => Ok(other),
    }
}

/// Picks the preferred live entitlement and takes one use of it, in one
/// immediate transaction (other processes sharing the file wait).
fn take_entitlement(
    db: &mut Connection,
    address: String,
    network: String,
    scope: String,
    now: u64,
) -> Result<Option<Entitlement>, StoreError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<(i64, i64, Option<i64>, Option<u32>)> = tx
        .query_row(
            "SELECT id, granted_at, expires_at, remaining_uses FROM siwx_entitlements
             WHERE address = ?1 AND network = ?2 AND scope = ?3
               AND (expires_at IS NULL OR expires_at > ?4)
               AND (remaining_uses IS NULL OR remaining_uses > 0)
             ORDER BY remaining_uses IS NOT NULL, expires_at IS NOT NULL,
                      expires_at DESC, id
             LIMIT 1",
            params![address, network, scope, to_sql(now)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((id, granted_at, expires_at, mut remaining_uses)) = row else {
        return Ok(None);
    };
    if let Some(n) = remaining_uses.as_mut() {
        tx.execute(
            "UPDATE siwx_entitlements SET remaining_uses = remaining_uses - 1 WHERE id = ?1",
            params![id],
        )?;
        *n = n.saturating_sub(1);
    }
    tx.commit()?;
    Ok(Some(Entitlement {
        address,
        network,
        scope,
        granted_at: from_sql(granted_at),
        expires_at: expires_at.map(from_sql),
        remaining_uses,
    }))
}

impl NonceStore for SqliteStore {
    fn issue_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (nonce, uri) = (nonce.to_owned(), uri.to_owned());
        Box::pin(self.call(move |db| {
            db.execute(
                "DELETE FROM siwx_nonces WHERE expires_at <= ?1",
                params![to_sql(now)],
            )?;
            db.execute(
                "INSERT INTO siwx_nonces (nonce, uri, expires_at) VALUES (?1, ?2, ?3)",
                params![nonce, uri, to_sql(expires_at)],
            )?;
            Ok(())
        }))
    }

    fn check_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>> {
        let (nonce, uri) = (nonce.to_owned(), uri.to_owned());
        Box::pin(self.call(move |db| nonce_row(db, &nonce, &uri, now)))
    }

    fn consume_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>> {
        let (nonce, uri) = (nonce.to_owned(), uri.to_owned());
        Box::pin(self.call(move |db| consume(db, &nonce, &uri, now)))
    }

    fn purge_nonces(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.call(move |db| {
            let removed = db.execute(
                "DELETE FROM siwx_nonces WHERE expires_at <= ?1",
                params![to_sql(now)],
            )?;
            db.execute(
                "DELETE FROM siwx_revoked_sessions WHERE expires_at <= ?1",
                params![to_sql(now)],
            )?;
            Ok(removed as u64)
        }))
    }
}

impl EntitlementStore for SqliteStore {
    fn grant<'a>(&'a self, entitlement: &'a Entitlement) -> BoxFuture<'a, Result<(), StoreError>> {
        let entitlement = entitlement.clone();
        Box::pin(self.call(move |db| {
            db.execute(
                "INSERT INTO siwx_entitlements
                     (address, network, scope, granted_at, expires_at, remaining_uses)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    normalize_address(&entitlement.network, &entitlement.address),
                    entitlement.network,
                    entitlement.scope,
                    to_sql(entitlement.granted_at),
                    entitlement.expires_at.map(to_sql),
                    entitlement.remaining_uses,
                ],
            )?;
            Ok(())
        }))
    }

    fn check<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<Entitlement>, StoreError>> {
        let address = normalize_address(network, address);
        let (network, scope) = (network.to_owned(), scope.to_owned());
        Box::pin(self.call(move |db| take_entitlement(db, address, network, scope, now)))
    }

    fn revoke<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let address = normalize_address(network, address);
        let (network, scope) = (network.to_owned(), scope.to_owned());
        Box::pin(self.call(move |db| {
            let removed = db.execute(
                "DELETE FROM siwx_entitlements WHERE address = ?1 AND network = ?2 AND scope = ?3",
                params![address, network, scope],
            )?;
            Ok(removed as u64)
        }))
    }

    fn revoke_session<'a>(
        &'a self,
        token_id: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let token_id = token_id.to_owned();
        Box::pin(self.call(move |db| {
            db.execute(
                "INSERT OR REPLACE INTO siwx_revoked_sessions (token_id, expires_at) VALUES (?1, ?2)",
                params![token_id, to_sql(expires_at)],
            )?;
            Ok(())
        }))
    }

    fn is_session_revoked<'a>(
        &'a self,
        token_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let token_id = token_id.to_owned();
        Box::pin(self.call(move |db| {
            let found: Option<i64> = db
                .query_row(
                    "SELECT 1 FROM siwx_revoked_sessions WHERE token_id = ?1",
                    params![token_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(found.is_some())
        }))
    }
}
