//! The `reservations` setting: in memory, a SQLite file, or PostgreSQL.

use std::sync::Arc;

use paywire_server::{PostgresReservationStore, ReservationStore, SqliteReservationStore};

use crate::GatewayError;

/// What a `reservations` value names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'a> {
    Memory,
    Sqlite(&'a str),
    Postgres(&'a str),
}

fn target(setting: Option<&str>) -> Target<'_> {
    match setting.map(str::trim) {
        None | Some("") => Target::Memory,
        Some(value) if is_postgres(value) => Target::Postgres(value),
        Some(path) => Target::Sqlite(path),
    }
}

fn is_postgres(value: &str) -> bool {
    let lower = value.get(..13).unwrap_or(value).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// Opens the store `setting` names (`None`: the layer's in-memory default).
pub(crate) async fn open(
    setting: Option<&str>,
) -> Result<Option<Arc<dyn ReservationStore>>, GatewayError> {
    match target(setting) {
        Target::Postgres(url) => {
            let store = PostgresReservationStore::connect(url)
                .await
                .map_err(|e| failed(url, &e.to_string()))?;
            Ok(Some(Arc::new(store)))
        }
        // Opened on the store's own thread: the runtime is not blocked.
        Target::Sqlite(path) => {
            let store = SqliteReservationStore::open_async(path)
                .await
                .map_err(|e| GatewayError::Reservations(format!("{path}: {e}")))?;
            Ok(Some(Arc::new(store)))
        }
        Target::Memory => Ok(None),
    }
}

/// Like [`open`], for SQLite and memory only: a PostgreSQL URL is refused.
pub(crate) fn open_sync(
    setting: Option<&str>,
) -> Result<Option<Arc<dyn ReservationStore>>, GatewayError> {
    match target(setting) {
        Target::Memory => Ok(None),
        Target::Sqlite(path) => {
            let store = SqliteReservationStore::open(path)
                .map_err(|e| GatewayError::Reservations(format!("{path}: {e}")))?;
            Ok(Some(Arc::new(store)))
        }
        Target::Postgres(url) => Err(GatewayError::Reservations(format!(
            "{}: a PostgreSQL store is opened by Gateway::connect (async), not here",
            redact(url)
        ))),
    }
}

/// The setting for logs: the SQLite path, or the URL without credentials.
pub(crate) fn describe(setting: Option<&str>) -> String {
    match target(setting) {
        Target::Memory => "memory".to_owned(),
        Target::Sqlite(path) => path.to_owned(),
        Target::Postgres(url) => redact(url),
    }
}

fn failed(url: &str, error: &str) -> GatewayError {
    // The driver's messages do not quote the URL; scrub the password anyway.
    let error = match password(url) {
        Some(secret) => error.replace(secret, "***"),
        None => error.to_owned(),
    };
    GatewayError::Reservations(format!("{}: {error}", redact(url)))
}

/// `scheme://host:port/database`: no user, password or query (which may
/// carry `password=`).
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    format!("{scheme}://{hosts}/{database}")
}

fn password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (user_info, _) = authority.rsplit_once('@')?;
    let (_, secret) = user_info.split_once(':')?;
    (!secret.is_empty()).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_names_memory_sqlite_or_postgres() {
        assert_eq!(target(None), Target::Memory);
        assert_eq!(target(Some(" ")), Target::Memory);
        assert_eq!(
            target(Some("/var/r.sqlite")),
            Target::Sqlite("/var/r.sqlite")
        );
        assert_eq!(
            target(Some("postgres://u@h/db")),
            Target::Postgres("postgres://u@h/db")
        );
        assert_eq!(
            target(Some("PostgreSQL://u@h/db")),
            Target::Postgres("PostgreSQL://u@h/db")
        );
    }

    #[test]
    fn credentials_never_appear_in_descriptions_or_errors() {
        let url = "postgres://paywire:s3cret@db.internal:5432/pay?password=s3cret";
        assert_eq!(describe(Some(url)), "postgres://db.internal:5432/pay");
        let error = failed(url, "password authentication failed (s3cret)").to_string();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(error.contains("db.internal:5432/pay"), "{error}");
        let refused = open_sync(Some(url)).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| !e.contains("s3cret") && !e.contains("paywire:")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_postgres_url_opens_a_shared_store() {
        let cluster = match paywire_testkit::postgres::PgCluster::start_or_skip().await {
            Ok(Some(cluster)) => cluster,
            Ok(None) => return,
            Err(error) => panic!("{error}"),
        };
        let first = open(Some(cluster.url())).await.unwrap().unwrap();
        let second = open(Some(cluster.url())).await.unwrap().unwrap();
        let key = paywire_server::ReservationKey([7; 32]);
        let fingerprint = paywire_server::PayloadFingerprint([1; 32]);
        assert_eq!(
            first.reserve(&key, &fingerprint).await.unwrap(),
            paywire_server::ReserveOutcome::Reserved
        );
        // Another instance (its own connection) sees the first one's hold.
        assert_eq!(
            second.reserve(&key, &fingerprint).await.unwrap(),
            paywire_server::ReserveOutcome::InUse
        );
    }
}
