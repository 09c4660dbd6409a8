//! Versioned schema migrations, shared by both backends.
//!
//! Every component (`ledger`, `reservations`, `siwx`, `bazaar`, ...) has its
//! own version sequence `1, 2, 3, ...`, recorded in one bookkeeping table per
//! database, [`VERSIONS_TABLE`] (`component` primary key, `version`,
//! `applied_at` in Unix seconds). A run:
//!
//! 1. takes the migration lock (PostgreSQL: a transaction-level advisory
//!    lock; SQLite: `BEGIN IMMEDIATE`), so instances starting together run
//!    one after the other and the second finds nothing to do;
//! 2. reads the component's recorded version (0 without a row; see
//!    [`Migrations::with_legacy_version`] for stores that kept their own
//!    bookkeeping before);
//! 3. refuses with [`StoreError::SchemaTooNew`] when that is newer than the
//!    newest migration of the list;
//! 4. applies the missing migrations in order and records the new version;
//!    all in one transaction: a failing migration leaves the database as it
//!    was.
//!
//! **Adopting a database written before this crate.** Such a database has
//! the tables but no bookkeeping row, so version 1 runs against it. Write
//! version 1 of a store that already existed so that it is a no-op against
//! the schema it replaces (`CREATE TABLE IF NOT EXISTS`, `CREATE INDEX IF NOT
//! EXISTS`, on PostgreSQL `ADD COLUMN IF NOT EXISTS`). Where that is not
//! possible (SQLite has no `ADD COLUMN IF NOT EXISTS`; a store that recorded
//! its own versions and ran data migrations once), give the list a
//! legacy-version query instead.
//!
//! The SQL of a migration differs between backends (types, `BIGSERIAL` vs
//! `INTEGER PRIMARY KEY`), so a store keeps one list per backend, under the
//! same component name.

use crate::StoreError;

/// The bookkeeping table: one row per component.
pub const VERSIONS_TABLE: &str = "paywire_schema_versions";

/// One schema step: `sql` (one or more statements) takes a component's
/// schema from `version - 1` to `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The version this migration brings the schema to (1, 2, 3, ...).
    pub version: u32,
    /// A short name for logs and errors (`"settlements"`, `"delivery columns"`).
    pub name: &'static str,
    /// The statements, run as one batch inside the migration transaction.
    pub sql: &'static str,
}

impl Migration {
    /// A migration to `version`.
    pub const fn new(version: u32, name: &'static str, sql: &'static str) -> Self {
        Self { version, name, sql }
    }
}

/// One component's migration list for one backend.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    component: &'static str,
    list: &'static [Migration],
    legacy_version: Option<&'static str>,
}

impl Migrations {
    /// The migrations of `component`, versions `1..=n` in order.
    pub const fn new(component: &'static str, list: &'static [Migration]) -> Self {
        Self {
            component,
            list,
            legacy_version: None,
        }
    }

    /// For a store that existed before this crate and cannot make its
    /// version 1 a no-op: `query` returns one row with one integer column,
    /// the version the database's existing schema corresponds to (0: none).
    /// It runs only when the bookkeeping table has no row for the component,
    /// inside the migration transaction. If it fails because a table it
    /// reads does not exist (no legacy schema), the version is 0.
    ///
    /// Examples: the ledger's own `SELECT COALESCE(MAX(version), 0) FROM
    /// x402_schema_migrations`; on SQLite `SELECT user_version FROM
    /// pragma_user_version`.
    pub const fn with_legacy_version(mut self, query: &'static str) -> Self {
        self.legacy_version = Some(query);
        self
    }

    /// The component name.
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// The migrations, in order.
    pub fn list(&self) -> &'static [Migration] {
        self.list
    }

    /// The legacy-version query, if any.
    pub fn legacy_version(&self) -> Option<&'static str> {
        self.legacy_version
    }

    /// The newest version of the list (0 for an empty list).
    pub fn newest(&self) -> u32 {
        self.list.last().map_or(0, |m| m.version)
    }

    /// Checks that the versions are `1..=n` in order and the component name
    /// is non-empty.
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |reason: String| StoreError::InvalidMigrations {
            component: self.component.to_owned(),
            reason,
        };
        if self.component.trim().is_empty() {
            return Err(invalid("empty component name".into()));
        }
        for (index, migration) in self.list.iter().enumerate() {
            let expected = u32::try_from(index + 1).unwrap_or(u32::MAX);
            if migration.version != expected {
                return Err(invalid(format!(
                    "migration #{} has version {}, expected {expected} (versions are 1, 2, 3, ...)",
                    index + 1,
                    migration.version
                )));
            }
        }
        Ok(())
    }

    /// What to run against a database at `recorded`: the pending
    /// migrations, or [`StoreError::SchemaTooNew`].
    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    pub(crate) fn pending(&self, recorded: u32) -> Result<&'static [Migration], StoreError> {
        let newest = self.newest();
        if recorded > newest {
            return Err(StoreError::SchemaTooNew {
                component: self.component.to_owned(),
                database: recorded,
                code: newest,
            });
        }
        let done = usize::try_from(recorded).unwrap_or(usize::MAX);
        Ok(self.list.get(done..).unwrap_or_default())
    }

    /// Wraps a failure of `migration`.
    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    pub(crate) fn failed(&self, migration: &Migration, source: StoreError) -> StoreError {
        StoreError::Migration {
            component: self.component.to_owned(),
            version: migration.version,
            name: migration.name.to_owned(),
            source: Box::new(source),
        }
    }
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// The component.
    pub component: String,
    /// The version found (after legacy adoption), before the run.
    pub from: u32,
    /// The version after the run.
    pub to: u32,
    /// The versions applied by this run (empty: nothing to do).
    pub applied: Vec<u32>,
}

/// Unix seconds, for `applied_at`.
#[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// A stored version as `u32` (a negative or huge value is corruption, read
/// as "newer than anything": refused).
#[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
pub(crate) fn stored_version(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &[Migration] = &[
        Migration::new(1, "one", "SELECT 1"),
        Migration::new(2, "two", "SELECT 2"),
    ];

    #[test]
    fn pending_and_too_new() {
        let migrations = Migrations::new("c", TWO);
        assert_eq!(migrations.pending(0).map(<[_]>::len).ok(), Some(2));
        assert_eq!(migrations.pending(1).map(|p| p[0].version).ok(), Some(2));
        assert_eq!(migrations.pending(2).map(<[_]>::len).ok(), Some(0));
        assert!(matches!(
            migrations.pending(3),
            Err(StoreError::SchemaTooNew {
                database: 3,
                code: 2,
                ..
            })
        ));
    }

    #[test]
    fn versions_must_count_from_one() {
        assert!(Migrations::new("c", TWO).validate().is_ok());
        const GAP: &[Migration] = &[
            Migration::new(1, "one", "SELECT 1"),
            Migration::new(3, "three", "SELECT 3"),
        ];
        assert!(matches!(
            Migrations::new("c", GAP).validate(),
            Err(StoreError::InvalidMigrations { .. })
        ));
        assert!(Migrations::new(" ", TWO).validate().is_err());
    }
}
