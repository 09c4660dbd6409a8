//! The nonce and entitlement stores in PostgreSQL, for several server
//! instances behind a load balancer (a nonce issued by one instance can be
//! consumed, once, by any other).

use std::sync::Arc;

use paywire_core::BoxFuture;
use tokio_postgres::{Client, NoTls};

use crate::store::{
    Entitlement, EntitlementStore, IssuedNonce, NonceState, NonceStore, StoreError, from_sql,
    nonce_state, normalize_address, to_sql,
};

/// Advisory lock held while creating the tables, so that instances starting
/// together do not race on `CREATE TABLE`.
const MIGRATION_LOCK: i64 = 0x7840_5157;

fn pg(error: tokio_postgres::Error) -> StoreError {
    StoreError(error.to_string())
}

/// [`NonceStore`] and [`EntitlementStore`] in PostgreSQL. Consuming a nonce
/// and counting a use are single conditional `UPDATE`s, atomic across every
/// connection. The connection is not TLS-encrypted (`NoTls`): keep the
/// database on a private network.
#[derive(Clone)]
pub struct PostgresStore {
    client: Arc<Client>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` and creates the tables if needed.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(pg)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::error!(%error, "sign-in-with-x database connection closed");
            }
        });
        client
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
                 CREATE TABLE IF NOT EXISTS siwx_nonces (
                     nonce TEXT PRIMARY KEY,
                     uri TEXT NOT NULL,
                     expires_at BIGINT NOT NULL,
                     used BOOLEAN NOT NULL DEFAULT FALSE
                 );
                 CREATE INDEX IF NOT EXISTS siwx_nonces_by_expiry ON siwx_nonces (expires_at);
                 CREATE TABLE IF NOT EXISTS siwx_entitlements (
                     id BIGSERIAL PRIMARY KEY,
                     address TEXT NOT NULL,
                     network TEXT NOT NULL,
                     scope TEXT NOT NULL,
                     granted_at BIGINT NOT NULL,
                     expires_at BIGINT,
                     remaining_uses INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS siwx_entitlements_by_holder
                     ON siwx_entitlements (address, network, scope);
                 CREATE TABLE IF NOT EXISTS siwx_revoked_sessions (
                     token_id TEXT PRIMARY KEY,
                     expires_at BIGINT NOT NULL
                 );
                 COMMIT;"
            ))
            .await
            .map_err(pg)?;
        Ok(Self {
            client: Arc::new(client),
        })
    }

    async fn nonce_state(
        &self,
        nonce: &str,
        uri: &str,
        now: u64,
    ) -> Result<NonceState, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT uri, expires_at, used FROM siwx_nonces WHERE nonce = $1",
                &[&nonce],
            )
            .await
            .map_err(pg)?;
        let issued = row.map(|r| IssuedNonce {
            uri: r.get(0),
            expires_at: from_sql(r.get(1)),
            used: r.get(2),
        });
        Ok(nonce_state(issued.as_ref(), uri, now))
    }
}

impl NonceStore for PostgresStore {
    fn issue_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        _now: u64,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.client
                .execute(
                    "INSERT INTO siwx_nonces (nonce, uri, expires_at) VALUES ($1, $2, $3)",
                    &[&nonce, &uri, &to_sql(expires_at)],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn check_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>> {
        Box::pin(self.nonce_state(nonce, uri, now))
    }

    fn consume_nonce<'a>(
        &'a self,
        nonce: &'a str,
        uri: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<NonceState, StoreError>> {
        Box::pin(async move {
            let changed = self
                .client
                .execute(
                    "UPDATE siwx_nonces SET used = TRUE
                     WHERE nonce = $1 AND uri = $2 AND NOT used AND expires_at > $3",
                    &[&nonce, &uri, &to_sql(now)],
                )
                .await
                .map_err(pg)?;
            if changed == 1 {
                return Ok(NonceState::Valid);
            }
            Ok(match self.nonce_state(nonce, uri, now).await? {
                // Lost a race between the UPDATE and the SELECT: it is used now.
                NonceState::Valid => NonceState::Used,
                other => other,
            })
        })
    }

    fn purge_nonces(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let removed = self
                .client
                .execute(
                    "DELETE FROM siwx_nonces WHERE expires_at <= $1",
                    &[&to_sql(now)],
                )
                .await
                .map_err(pg)?;
            self.client
                .execute(
                    "DELETE FROM siwx_revoked_sessions WHERE expires_at <= $1",
                    &[&to_sql(now)],
                )
                .await
                .map_err(pg)?;
            Ok(removed)
        })
    }
}

impl EntitlementStore for PostgresStore {
    fn grant<'a>(&'a self, entitlement: &'a Entitlement) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let uses = entitlement
                .remaining_uses
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
            self.client
                .execute(
                    "INSERT INTO siwx_entitlements
                         (address, network, scope, granted_at, expires_at, remaining_uses)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &normalize_address(&entitlement.network, &entitlement.address),
                        &entitlement.network,
                        &entitlement.scope,
                        &to_sql(entitlement.granted_at),
                        &entitlement.expires_at.map(to_sql),
                        &uses,
                    ],
                )
                .await
                .map_err(pg)?;
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
            // Pick the preferred live entitlement and, if it counts uses,
            // take one, in one statement: concurrent checks cannot both spend
            // the last use.
            let row = self
                .client
                .query_opt(
                    "WITH chosen AS (
                         SELECT id FROM siwx_entitlements
                         WHERE address = $1 AND network = $2 AND scope = $3
                           AND (expires_at IS NULL OR expires_at > $4)
                           AND (remaining_uses IS NULL OR remaining_uses > 0)
                         ORDER BY remaining_uses IS NOT NULL, expires_at IS NOT NULL,
                                  expires_at DESC, id
                         LIMIT 1
                         FOR UPDATE SKIP LOCKED
                     )
                     UPDATE siwx_entitlements e
                     SET remaining_uses = CASE WHEN e.remaining_uses IS NULL THEN NULL
                                               ELSE e.remaining_uses - 1 END
                     FROM chosen WHERE e.id = chosen.id
                     RETURNING e.granted_at, e.expires_at, e.remaining_uses",
                    &[&address, &network, &scope, &to_sql(now)],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| Entitlement {
                address,
                network: network.to_owned(),
                scope: scope.to_owned(),
                granted_at: from_sql(r.get(0)),
                expires_at: r.get::<_, Option<i64>>(1).map(from_sql),
                remaining_uses: r
                    .get::<_, Option<i32>>(2)
                    .map(|n| u32::try_from(n).unwrap_or(0)),
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
            self.client
                .execute(
                    "DELETE FROM siwx_entitlements WHERE address = $1 AND network = $2 AND scope = $3",
                    &[&normalize_address(network, address), &network, &scope],
                )
                .await
                .map_err(pg)
        })
    }

    fn revoke_session<'a>(
        &'a self,
        token_id: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.client
                .execute(
                    "INSERT INTO siwx_revoked_sessions (token_id, expires_at) VALUES ($1, $2)
                     ON CONFLICT (token_id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                    &[&token_id, &to_sql(expires_at)],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn is_session_revoked<'a>(
        &'a self,
        token_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let row = self
                .client
                .query_opt(
                    "SELECT 1 FROM siwx_revoked_sessions WHERE token_id = $1",
                    &[&token_id],
                )
                .await
                .map_err(pg)?;
            Ok(row.is_some())
        })
    }
}
