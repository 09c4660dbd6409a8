//! The nonce and entitlement stores in PostgreSQL, for several server
//! instances behind a load balancer (a nonce issued by one instance can be
//! consumed, once, by any other).
//!
//! Connections come from a [`PgPool`] (paywire-store): TLS as the URL's
//! `sslmode`/`sslrootcert` say, pool settings (`pool_max_size`,
//! `pool_acquire_timeout`) from the URL too, broken connections replaced
//! after a database restart, statements prepared once per connection. The
//! schema is the `siwx` component of paywire-store's migrations.

use paywire_core::BoxFuture;
use paywire_store::postgres::PgPool;
use paywire_store::{Migration, Migrations};

use crate::store::{
    Entitlement, EntitlementStore, IssuedNonce, NonceState, NonceStore, StoreError, from_sql,
    nonce_state, normalize_address, to_sql,
};

/// The `siwx` schema. Version 1 is the schema of the releases before
/// paywire-store, all `IF NOT EXISTS`: a database they created is adopted
/// as it is.
const MIGRATIONS: Migrations = Migrations::new(
    "siwx",
    &[Migration::new(
        1,
        "nonces, entitlements, revoked sessions",
        "CREATE TABLE IF NOT EXISTS siwx_nonces (
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
         );",
    )],
);

/// [`NonceStore`] and [`EntitlementStore`] in PostgreSQL. Consuming a nonce
/// and counting a use are single conditional `UPDATE`s, atomic across every
/// connection and instance.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // PgPool's Debug shows usage only, never the password.
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL with paywire-store's TLS and
    /// pool parameters), and creates or upgrades the tables. Fails if the
    /// database holds a newer `siwx` schema than this build knows.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::with_pool(PgPool::connect(url).await?).await
    }

    /// Uses an open pool (shared with other components of the process), and
    /// creates or upgrades the tables.
    pub async fn with_pool(pool: PgPool) -> Result<Self, StoreError> {
        pool.migrate(&MIGRATIONS).await?;
        Ok(Self { pool })
    }

    /// The pool (for its status in metrics).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn nonce_state(
        &self,
        nonce: &str,
        uri: &str,
        now: u64,
    ) -> Result<NonceState, StoreError> {
        let row = self
            .pool
            .query_opt(
                "SELECT uri, expires_at, used FROM siwx_nonces WHERE nonce = $1",
                &[&nonce],
            )
            .await?;
        let issued = match row {
            Some(r) => Some(IssuedNonce {
                uri: r.try_get(0)?,
                expires_at: from_sql(r.try_get(1)?),
                used: r.try_get(2)?,
            }),
            None => None,
        };
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
            self.pool
                .execute(
                    "INSERT INTO siwx_nonces (nonce, uri, expires_at) VALUES ($1, $2, $3)",
                    &[&nonce, &uri, &to_sql(expires_at)],
                )
                .await?;
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
                .pool
                .execute(
                    "UPDATE siwx_nonces SET used = TRUE
                     WHERE nonce = $1 AND uri = $2 AND NOT used AND expires_at > $3",
                    &[&nonce, &uri, &to_sql(now)],
                )
                .await?;
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
                .pool
                .execute(
                    "DELETE FROM siwx_nonces WHERE expires_at <= $1",
                    &[&to_sql(now)],
                )
                .await?;
            self.pool
                .execute(
                    "DELETE FROM siwx_revoked_sessions WHERE expires_at <= $1",
                    &[&to_sql(now)],
                )
                .await?;
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
            self.pool
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
                .await?;
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
                .pool
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
                .await?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(Entitlement {
                address,
                network: network.to_owned(),
                scope: scope.to_owned(),
                granted_at: from_sql(r.try_get(0)?),
                expires_at: r.try_get::<_, Option<i64>>(1)?.map(from_sql),
                remaining_uses: r
                    .try_get::<_, Option<i32>>(2)?
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
            self.pool
                .execute(
                    "DELETE FROM siwx_entitlements WHERE address = $1 AND network = $2 AND scope = $3",
                    &[&normalize_address(network, address), &network, &scope],
                )
                .await
                .map_err(StoreError::from)
        })
    }

    fn revoke_session<'a>(
        &'a self,
        token_id: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.pool
                .execute(
                    "INSERT INTO siwx_revoked_sessions (token_id, expires_at) VALUES ($1, $2)
                     ON CONFLICT (token_id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                    &[&token_id, &to_sql(expires_at)],
                )
                .await?;
            Ok(())
        })
    }

    fn is_session_revoked<'a>(
        &'a self,
        token_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let row = self
                .pool
                .query_opt(
                    "SELECT 1 FROM siwx_revoked_sessions WHERE token_id = $1",
                    &[&token_id],
                )
                .await?;
            Ok(row.is_some())
        })
    }
}
