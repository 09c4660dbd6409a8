//! The PostgreSQL migration runner (see [`crate::migrate`]).

use tokio_postgres::error::SqlState;

use super::{MIGRATION_LOCK_NAMESPACE, PgPool};
use crate::migrate::{VERSIONS_TABLE, now, stored_version};
use crate::{MigrationReport, Migrations, StoreError};

pub(super) async fn run(
    pool: &PgPool,
    migrations: &Migrations,
) -> Result<MigrationReport, StoreError> {
    migrations.validate()?;
    let component = migrations.component();
    let mut connection = pool.get().await?;
    let mut tx = connection.transaction().await?;
    // One lock for every component: it also covers creating the table.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1::int4, 0)",
        &[&MIGRATION_LOCK_NAMESPACE],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (
             component  TEXT PRIMARY KEY,
             version    BIGINT NOT NULL,
             applied_at BIGINT NOT NULL
         )"
    ))
    .await?;
    let recorded = tx
        .query_opt(
            &format!("SELECT version FROM {VERSIONS_TABLE} WHERE component = $1"),
            &[&component],
        )
        .await?
        .map(|row| row.try_get::<_, i64>(0))
        .transpose()?;
    let from = match (recorded, migrations.legacy_version()) {
        (Some(version), _) => stored_version(version),
        (None, Some(query)) => legacy_version(&mut tx, query).await?,
        (None, None) => 0,
    };
    let pending = migrations.pending(from)?;
    for migration in pending {
        tx.batch_execute(migration.sql)
            .await
            .map_err(|e| migrations.failed(migration, e.into()))?;
        tracing::info!(
            component,
            version = migration.version,
            name = migration.name,
            "postgres schema migrated"
        );
    }
    let to = pending.last().map_or(from, |m| m.version);
    if recorded.is_none() || !pending.is_empty() {
        tx.execute(
            &format!(
                "INSERT INTO {VERSIONS_TABLE} (component, version, applied_at) VALUES ($1, $2, $3)
                 ON CONFLICT (component) DO UPDATE
                 SET version = EXCLUDED.version, applied_at = EXCLUDED.applied_at"
            ),
            &[&component, &i64::from(to), &now()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(MigrationReport {
        component: component.to_owned(),
        from,
        to,
        applied: pending.iter().map(|m| m.version).collect(),
    })
}

/// Runs the legacy-version query in a savepoint: a missing table means no
/// legacy schema (0).
async fn legacy_version(
    tx: &mut deadpool_postgres::Transaction<'_>,
    query: &str,
) -> Result<u32, StoreError> {
    let savepoint = tx.savepoint("paywire_legacy_version").await?;
    match savepoint.query_one(query, &[]).await {
        Ok(row) => {
            let version = match row.try_get::<_, i64>(0) {
                Ok(version) => version,
                Err(_) => i64::from(row.try_get::<_, i32>(0)?),
            };
            savepoint.commit().await?;
            Ok(stored_version(version))
        }
        Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => {
            savepoint.rollback().await?;
            Ok(0)
        }
        Err(error) => Err(error.into()),
    }
}
