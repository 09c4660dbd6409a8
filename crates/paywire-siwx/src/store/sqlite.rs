//! The SQLite store (feature `sqlite`).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use paywire_core::BoxFuture;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Entitlement, EntitlementStore, IssuedNonce, NonceState, NonceStore, StoreError, from_sql,
    nonce_state, normalize_address, to_sql,
};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self(error.to_string())
    }
}

/// SQLite-backed store (the default for persistent deployments). Safe to
/// share between processes: consumption runs in `IMMEDIATE` transactions.
pub struct SqliteStore {
    db: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::with_connection(Connection::open(path)?)
    }

    /// A database held in memory.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(db: Connection) -> Result<Self, StoreError> {
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS siwx_nonces (
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
        )?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.db
            .lock()
            .map_err(|_| StoreError("sqlite store lock poisoned".into()))
    }

    fn nonce_state(
        db: &Connection,
        nonce: &str,
        uri: &str,
        now: u64,
    ) -> Result<NonceState, StoreError> {
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
}

impl NonceStore for SqliteStore {
    fn issue_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let db = self.lock()?;
            db.execute(
                "DELETE FROM siwx_nonces WHERE expires_at <= ?1",
                params![to_sql(now)],
            )?;
            db.execute(
                "INSERT INTO siwx_nonces (nonce, uri, expires_at) VALUES (?1, ?2, ?3)",
                params![nonce, uri, to_sql(expires_at)],
            )?;
            Ok(())
        })
    }

    fn check_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>> {
        Box::pin(async move { Self::nonce_state(&*self.lock()?, nonce, uri, now) })
    }

    fn consume_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>> {
        Box::pin(async move {
            let db = self.lock()?;
            let changed = db.execute(
                "UPDATE siwx_nonces SET used = 1
                 WHERE nonce = ?1 AND uri = ?2 AND used = 0 AND expires_at > ?3",
                params![nonce, uri, to_sql(now)],
            )?;
            if changed == 1 {
                return Ok(NonceState::Valid);
            }
            match Self::nonce_state(&db, nonce, uri, now)? {
                // Lost a race between the UPDATE and the SELECT: it is used now.
                NonceState::Valid => Ok(NonceState::Used),
                other => Ok(other),
            }
        })
    }

    fn purge_nonces(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let db = self.lock()?;
            let removed = db.execute(
                "DELETE FROM siwx_nonces WHERE expires_at <= ?1",
                params![to_sql(now)],
            )?;
            db.execute(
                "DELETE FROM siwx_revoked_sessions WHERE expires_at <= ?1",
                params![to_sql(now)],
            )?;
            Ok(removed as u64)
        })
    }
}

impl EntitlementStore for SqliteStore {
    fn grant<'a>(&'a self, entitlement: &'a Entitlement) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.lock()?.execute(
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
        })
    }

    fn check<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<Entitlement>, StoreError>> {
        Box::pin(async move {
            let address = normalize_address(network, address);
            let mut db = self.lock()?;
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
                *n -= 1;
            }
            tx.commit()?;
            Ok(Some(Entitlement {
                address,
                network: network.to_owned(),
                scope: scope.to_owned(),
                granted_at: from_sql(granted_at),
                expires_at: expires_at.map(from_sql),
                remaining_uses,
            }))
        })
    }

    fn revoke<'a>(
        &'a self,
        address: &'a str,
        network: &'a str,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let removed = self.lock()?.execute(
                "DELETE FROM siwx_entitlements WHERE address = ?1 AND network = ?2 AND scope = ?3",
                params![normalize_address(network, address), network, scope],
            )?;
            Ok(removed as u64)
        })
    }

    fn revoke_session<'a>(
        &'a self,
        token_id: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.lock()?.execute(
                "INSERT OR REPLACE INTO siwx_revoked_sessions (token_id, expires_at) VALUES (?1, ?2)",
                params![token_id, to_sql(expires_at)],
            )?;
            Ok(())
        })
    }

    fn is_session_revoked<'a>(
        &'a self,
        token_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let found: Option<i64> = self
                .lock()?
                .query_row(
                    "SELECT 1 FROM siwx_revoked_sessions WHERE token_id = ?1",
                    params![token_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(found.is_some())
        })
    }
}
