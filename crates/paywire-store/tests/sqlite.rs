//! SQLite behaviour: off the runtime, pragmas, two handles on one file,
//! migrations.

use std::error::Error;
use std::sync::mpsc;
use std::time::Duration;

use paywire_store::rusqlite::{self, TransactionBehavior};
use paywire_store::sqlite::{SqliteHandle, SqliteOptions};
use paywire_store::{Migration, Migrations, StoreError};

type TestResult = Result<(), Box<dyn Error>>;

#[tokio::test] // a current-thread runtime: one thread for every task
async fn work_runs_off_the_runtime_thread() -> TestResult {
    let handle = SqliteHandle::open_in_memory().await?;
    let (go, wait) = mpsc::channel::<()>();
    // The closure blocks until a task on the runtime has run. Were it run on
    // the runtime's only thread, that task could never run and it would
    // give up after the timeout.
    let blocked = handle.call(move |_| Ok(wait.recv_timeout(Duration::from_secs(10)).is_ok()));
    let ticker = tokio::spawn(async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        go.send(()).is_ok()
    });
    assert!(
        blocked.await?,
        "the runtime did not run while the query blocked"
    );
    assert!(ticker.await?);
    Ok(())
}

#[tokio::test]
async fn a_file_is_opened_with_wal_busy_timeout_and_foreign_keys() -> TestResult {
    let dir = tempfile::tempdir()?;
    let options = SqliteOptions::default().with_busy_timeout(Duration::from_millis(1234));
    let handle = SqliteHandle::open_with(dir.path().join("db.sqlite"), options).await?;
    let (mode, busy, keys, sync) = handle
        .call(|c| {
            let text = |sql: &str| c.query_row(sql, [], |r| r.get::<_, String>(0));
            let number = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
            Ok((
                text("PRAGMA journal_mode")?,
                number("PRAGMA busy_timeout")?,
                number("PRAGMA foreign_keys")?,
                number("PRAGMA synchronous")?,
            ))
        })
        .await?;
    assert_eq!(mode, "wal");
    assert_eq!(busy, 1234);
    assert_eq!(keys, 1);
    assert_eq!(sync, 1, "synchronous is not NORMAL");
    assert_eq!(handle.path(), Some(dir.path().join("db.sqlite").as_path()));
    Ok(())
}

/// The connection's `cache_size` (negative: KiB).
async fn cache_size(handle: &SqliteHandle) -> Result<i64, StoreError> {
    handle
        .call(|c| c.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0)))
        .await
}

#[tokio::test]
async fn the_page_cache_is_256_kib_by_default_and_configurable() -> TestResult {
    let dir = tempfile::tempdir()?;
    // SQLite's own default would read -2000 (2,000 KiB).
    let file = SqliteHandle::open(dir.path().join("a.sqlite")).await?;
    assert_eq!(cache_size(&file).await?, -256);
    assert_eq!(
        cache_size(&SqliteHandle::open_in_memory().await?).await?,
        -256
    );
    let options = SqliteOptions::default().with_page_cache_kib(4096);
    let larger = SqliteHandle::open_with(dir.path().join("b.sqlite"), options).await?;
    assert_eq!(cache_size(&larger).await?, -4096);
    // Beyond i32 SQLite would read 0, and 0 as its own default: clamped.
    let options = SqliteOptions::default().with_page_cache_kib(u32::MAX);
    let huge = SqliteHandle::open_with(dir.path().join("c.sqlite"), options).await?;
    assert_eq!(cache_size(&huge).await?, -i64::from(i32::MAX));
    let options = SqliteOptions::default().with_page_cache_kib(0);
    let zero = SqliteHandle::open_with(dir.path().join("d.sqlite"), options).await?;
    assert_eq!(cache_size(&zero).await?, -1);
    Ok(())
}

/// Runs a migration that records the `cache_size` it ran with, and returns
/// that.
async fn cache_size_during_migration(
    handle: &SqliteHandle,
    component: &'static str,
) -> Result<i64, Box<dyn Error>> {
    const RECORDS_CACHE: &[Migration] = &[
        Migration::new(
            1,
            "seen table",
            "CREATE TABLE IF NOT EXISTS seen (component TEXT, cache_size INTEGER)",
        ),
        Migration::new(
            2,
            "records cache",
            "INSERT INTO seen SELECT NULL, cache_size FROM pragma_cache_size()",
        ),
    ];
    handle
        .migrate(&Migrations::new(component, RECORDS_CACHE))
        .await?;
    Ok(handle
        .call(|c| {
            c.query_row(
                "SELECT cache_size FROM seen ORDER BY rowid DESC LIMIT 1",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .await?)
}

#[tokio::test]
async fn migrations_run_with_at_least_sqlites_default_cache_and_restore_the_connections()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let small = SqliteHandle::open(dir.path().join("small.sqlite")).await?;
    assert_eq!(cache_size_during_migration(&small, "a").await?, -2000);
    assert_eq!(cache_size(&small).await?, -256, "cache size not restored");
    // A larger cache is never made smaller for migrations.
    let options = SqliteOptions::default().with_page_cache_kib(8192);
    let large = SqliteHandle::open_with(dir.path().join("large.sqlite"), options).await?;
    assert_eq!(cache_size_during_migration(&large, "a").await?, -8192);
    assert_eq!(cache_size(&large).await?, -8192);
    // A page count set on purpose is kept.
    large
        .call(|c| c.execute_batch("PRAGMA cache_size = 100"))
        .await?;
    assert_eq!(cache_size_during_migration(&large, "b").await?, 100);
    assert_eq!(cache_size(&large).await?, 100);
    // Restored after a failed migration too.
    const BROKEN: &[Migration] = &[Migration::new(1, "typo", "CREATE TABEL x (id INTEGER)")];
    let failed = small.migrate(&Migrations::new("broken", BROKEN)).await;
    assert!(
        matches!(failed, Err(StoreError::Migration { version: 1, .. })),
        "{failed:?}"
    );
    assert_eq!(cache_size(&small).await?, -256, "cache size not restored");
    Ok(())
}

#[tokio::test]
async fn busy_timeout_waits_for_another_writer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db.sqlite");
    let holder = SqliteHandle::open(&path).await?;
    holder
        .call(|c| {
            c.execute_batch(
                "CREATE TABLE t (n INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (0);",
            )
        })
        .await?;
    // No patience: the write lock is taken, so this fails at once.
    let hasty = SqliteHandle::open_with(
        &path,
        SqliteOptions::default().with_busy_timeout(Duration::ZERO),
    )
    .await?;
    let refused = hasty
        .call(|c| c.execute("INSERT INTO t VALUES (1)", []))
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("locked")),
        "{refused:?}"
    );
    // The default waits, and succeeds once the holder commits.
    let patient = SqliteHandle::open(&path).await?;
    let write = tokio::spawn(async move {
        patient
            .call(|c| c.execute("INSERT INTO t VALUES (2)", []))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!write.is_finished(), "the write did not wait for the lock");
    holder.call(|c| c.execute_batch("COMMIT")).await?;
    assert_eq!(write.await??, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_write_one_file_concurrently() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db.sqlite");
    let a = SqliteHandle::open(&path).await?;
    let b = SqliteHandle::open(&path).await?;
    a.call(|c| c.execute_batch("CREATE TABLE log (n INTEGER); CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0);"))
        .await?;
    let writer = |handle: SqliteHandle| async move {
        for n in 0..100 {
            handle
                .call(move |c| c.execute("INSERT INTO log VALUES (?1)", [n]))
                .await?;
            // Read-modify-write, the documented way: BEGIN IMMEDIATE.
            handle
                .call(|c| {
                    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let n: i64 = tx.query_row("SELECT n FROM counter", [], |r| r.get(0))?;
                    tx.execute("UPDATE counter SET n = ?1", [n + 1])?;
                    tx.commit()
                })
                .await?;
        }
        Ok::<(), StoreError>(())
    };
    let (first, second) = tokio::join!(tokio::spawn(writer(a.clone())), tokio::spawn(writer(b)));
    first??;
    second??;
    let (rows, counter) = a
        .call(|c| {
            Ok((
                c.query_row("SELECT count(*) FROM log", [], |r| r.get::<_, i64>(0))?,
                c.query_row("SELECT n FROM counter", [], |r| r.get::<_, i64>(0))?,
            ))
        })
        .await?;
    assert_eq!((rows, counter), (200, 200));
    Ok(())
}

#[derive(Debug)]
enum AppError {
    Store(StoreError),
    Rejected(i64),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

#[tokio::test]
async fn closures_may_return_their_own_errors_and_panics_are_contained() -> TestResult {
    let handle = SqliteHandle::open_in_memory().await?;
    let rejected = handle
        .call_and_then(|c| {
            let n: i64 = c
                .query_row("SELECT 7", [], |r| r.get(0))
                .map_err(|e| AppError::Store(e.into()))?;
            Err::<(), _>(AppError::Rejected(n))
        })
        .await;
    assert!(
        matches!(rejected, Err(AppError::Rejected(7))),
        "{rejected:?}"
    );
    let panicked = handle
        .call(|_| -> rusqlite::Result<()> { panic!("boom") })
        .await;
    assert!(
        matches!(panicked, Err(StoreError::Worker(ref m)) if m.contains("boom")),
        "{panicked:?}"
    );
    // The handle still works.
    assert_eq!(
        handle
            .call(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await?,
        1
    );
    handle.close().await?;
    assert!(matches!(
        handle.call(|_| Ok(())).await,
        Err(StoreError::Worker(_))
    ));
    // The worker's own failure reaches the closure's error type through From.
    match handle.call_and_then(|_| Ok::<(), AppError>(())).await {
        Err(AppError::Store(StoreError::Worker(message))) => assert!(message.contains("closed")),
        other => panic!("expected a closed worker, got {other:?}"),
    }
    Ok(())
}

const TWO: &[Migration] = &[
    Migration::new(
        1,
        "widgets",
        "CREATE TABLE widgets (id INTEGER PRIMARY KEY)",
    ),
    Migration::new(
        2,
        "gadgets",
        "CREATE TABLE gadgets (id INTEGER PRIMARY KEY)",
    ),
];
const THREE: &[Migration] = &[
    Migration::new(
        1,
        "widgets",
        "CREATE TABLE widgets (id INTEGER PRIMARY KEY)",
    ),
    Migration::new(
        2,
        "gadgets",
        "CREATE TABLE gadgets (id INTEGER PRIMARY KEY)",
    ),
    Migration::new(
        3,
        "sprockets",
        "CREATE TABLE sprockets (id INTEGER PRIMARY KEY)",
    ),
];

#[tokio::test]
async fn migrations_apply_once_and_refuse_a_newer_schema() -> TestResult {
    let handle = SqliteHandle::open_in_memory().await?;
    let first = handle.migrate(&Migrations::new("test", TWO)).await?;
    assert_eq!((first.from, first.to, first.applied), (0, 2, vec![1, 2]));
    let again = handle.migrate(&Migrations::new("test", TWO)).await?;
    assert!(again.applied.is_empty());
    assert_eq!(
        handle
            .migrate(&Migrations::new("test", THREE))
            .await?
            .applied,
        vec![3]
    );
    match handle.migrate(&Migrations::new("test", TWO)).await {
        Err(StoreError::SchemaTooNew {
            component,
            database,
            code,
        }) => {
            assert_eq!((component.as_str(), database, code), ("test", 3, 2));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    const BROKEN: &[Migration] = &[
        Migration::new(1, "ok", "CREATE TABLE kept_out (id INTEGER)"),
        Migration::new(2, "typo", "CREATE TABEL x (id INTEGER)"),
    ];
    let failed = handle.migrate(&Migrations::new("broken", BROKEN)).await;
    assert!(
        matches!(failed, Err(StoreError::Migration { version: 2, .. })),
        "{failed:?}"
    );
    let leaked: i64 = handle
        .call(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'kept_out'",
                [],
                |r| r.get(0),
            )
        })
        .await?;
    assert_eq!(leaked, 0, "migration 1 was committed without 2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_one_file_together_migrate_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db.sqlite");
    let mut runs = Vec::new();
    for _ in 0..4 {
        let handle = SqliteHandle::open(&path).await?;
        runs.push(tokio::spawn(async move {
            handle.migrate(&Migrations::new("race", THREE)).await
        }));
    }
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await??.applied);
    }
    applied.sort_unstable();
    assert_eq!(applied, vec![1, 2, 3]);
    Ok(())
}

#[tokio::test]
async fn an_existing_schema_is_adopted_at_its_legacy_version() -> TestResult {
    let handle = SqliteHandle::open_in_memory().await?;
    // A store that recorded its schema in user_version (the SQLite ledger).
    handle
        .call(|c| c.execute_batch("CREATE TABLE widgets (id INTEGER PRIMARY KEY); CREATE TABLE gadgets (id INTEGER PRIMARY KEY); PRAGMA user_version = 2;"))
        .await?;
    let legacy = Migrations::new("ledger", THREE)
        .with_legacy_version("SELECT user_version FROM pragma_user_version");
    let report = handle.migrate(&legacy).await?;
    assert_eq!((report.from, report.applied), (2, vec![3]));
    // A legacy query on a table that does not exist means version 0.
    let other = SqliteHandle::open_in_memory().await?;
    let missing =
        Migrations::new("x", TWO).with_legacy_version("SELECT max(version) FROM old_versions");
    assert_eq!(other.migrate(&missing).await?.applied, vec![1, 2]);
    Ok(())
}
