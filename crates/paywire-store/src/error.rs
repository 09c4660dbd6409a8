//! The one error type of the crate.

/// A storage failure. Its `Display` and `Debug` never contain a password:
/// configuration errors name the offending parameter, not the URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The connection URL or an option is invalid.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// TLS could not be set up (root certificates, CA file).
    #[error("database TLS setup failed: {0}")]
    Tls(String),
    /// PostgreSQL reported an error, or a connection failed. The message
    /// carries the cause (tokio-postgres alone says only "db error" or
    /// "error performing TLS handshake").
    #[cfg(feature = "postgres")]
    #[error("postgres: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No pooled connection became free within the acquire timeout.
    #[error("no database connection free within {0:?} (pool exhausted)")]
    PoolTimeout(std::time::Duration),
    /// The pool could not hand out a connection for another reason.
    #[error("database pool: {0}")]
    Pool(String),
    /// An advisory lock stayed held by another session for longer than the
    /// caller was willing to wait.
    #[error("advisory lock still held elsewhere after {0:?}")]
    LockTimeout(std::time::Duration),
    /// SQLite reported an error.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The SQLite worker thread is gone (handle closed) or a closure panicked.
    #[error("sqlite worker: {0}")]
    Worker(String),
    /// The database records a newer schema for `component` than this build
    /// knows: an older binary must not write to a schema it does not know.
    #[error(
        "the database schema of `{component}` is at version {database}, newer than the \
         {code} this build knows; run a newer release (or restore the older database)"
    )]
    SchemaTooNew {
        /// The component (`ledger`, `reservations`, ...).
        component: String,
        /// The version recorded in the database.
        database: u32,
        /// The newest version this build ships.
        code: u32,
    },
    /// A component's migration list is malformed (a programming error).
    #[error("migrations of `{component}` are invalid: {reason}")]
    InvalidMigrations {
        /// The component.
        component: String,
        /// What is wrong.
        reason: String,
    },
    /// One migration failed; nothing of the run was committed.
    #[error("migration {version} ({name}) of `{component}` failed: {source}")]
    Migration {
        /// The component.
        component: String,
        /// The failing migration's version.
        version: u32,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: Box<StoreError>,
    },
}

/// `error: cause: cause...`, each level once (a level whose text already
/// ends with its cause's is not repeated).
#[cfg(feature = "postgres")]
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let shown = next.to_string();
        if !text.ends_with(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        cause = next.source();
    }
    text
}

/// `Result` with [`StoreError`].
pub type StoreResult<T> = Result<T, StoreError>;
