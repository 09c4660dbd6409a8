//! The SQLite store: off the async runtime, adoption of a wave-1 file,
//! newer schemas refused.

use std::sync::mpsc;
use std::time::Duration;

use paywire_siwx::{AccessPolicy, EntitlementStore, NonceState, NonceStore, SqliteStore};
use paywire_store::rusqlite::{Connection, TransactionBehavior};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const X: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
const NET: &str = "eip155:8453";

#[tokio::test] // current-thread runtime: one thread runs every task
async fn store_work_runs_off_the_runtime_thread() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("siwx.db");
    let store = SqliteStore::open(&path).await?;

    // Another process holds the write lock until a task on this runtime
    // has run (or 3 s have passed). Were the store's write run on the
    // runtime's only thread, waiting for the lock would stop that task.
    let (go, wait) = mpsc::channel::<()>();
    let (locked_tx, locked) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || -> Result<bool, String> {
        let mut other = Connection::open(&path).map_err(|e| e.to_string())?;
        let tx = other
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        let _ = locked_tx.send(());
        let released_by_the_runtime = wait.recv_timeout(Duration::from_secs(3)).is_ok();
        tx.commit().map_err(|e| e.to_string())?;
        Ok(released_by_the_runtime)
    });
    locked.recv_timeout(Duration::from_secs(5))?;
    let ticker = tokio::spawn(async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        go.send(()).is_ok()
    });
    store
        .grant(&AccessPolicy::PayOnce.entitlement(X, NET, "api", 0))
        .await?;
    assert!(ticker.await?);
    let released = holder.join().map_err(|_| "holder panicked")??;
    assert!(
        released,
        "the runtime stood still while the store waited for the lock"
    );
    assert!(store.check(X, NET, "api", 1).await?.is_some());
    Ok(())
}

/// The file as releases before paywire-store created it (their SQL).
const WAVE_1_SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
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
    );
    INSERT INTO siwx_nonces (nonce, uri, expires_at) VALUES ('old', 'https://api/x', 1000);
    INSERT INTO siwx_entitlements (address, network, scope, granted_at, expires_at, remaining_uses)
        VALUES ('0x857b06519e91e3a54538791bdbb0e22373e36b66', 'eip155:8453', 'api', 0, NULL, 2);
    INSERT INTO siwx_revoked_sessions (token_id, expires_at) VALUES ('revoked', 5000);";

fn recorded_version(path: &std::path::Path) -> Result<Option<i64>, Box<dyn std::error::Error>> {
    let db = Connection::open(path)?;
    let mut statement =
        db.prepare("SELECT version FROM paywire_schema_versions WHERE component = 'siwx'")?;
    let mut rows = statement.query([])?;
    Ok(match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    })
}

#[tokio::test]
async fn a_wave_1_file_is_adopted_with_its_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("siwx.db");
    Connection::open(&path)?.execute_batch(WAVE_1_SCHEMA)?;

    let store = SqliteStore::open(&path).await?;
    assert_eq!(recorded_version(&path)?, Some(1));
    assert_eq!(
        store.consume_nonce("old", "https://api/x", 1).await?,
        NonceState::Valid
    );
    let kept = store
        .check(X, NET, "api", 1)
        .await?
        .ok_or("entitlement lost")?;
    assert_eq!(kept.remaining_uses, Some(1));
    assert!(store.is_session_revoked("revoked").await?);
    Ok(())
}

#[tokio::test]
async fn a_newer_siwx_schema_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("siwx.db");
    drop(SqliteStore::open(&path).await?);
    Connection::open(&path)?.execute(
        "UPDATE paywire_schema_versions SET version = 7 WHERE component = 'siwx'",
        [],
    )?;
    match SqliteStore::open(&path).await {
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains("`siwx`") && text.contains("version 7"),
                "unclear refusal: {text}"
            );
        }
        Ok(_) => panic!("a store opened a newer schema"),
    }
    Ok(())
}
