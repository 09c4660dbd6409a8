//! PostgreSQL behaviour against throwaway clusters (paywire-testkit).

use std::error::Error;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::Poll;
use std::time::Duration;

use paywire_store::postgres::{LockKey, PgConfig, PgOptions, PgPool, SslMode};
use paywire_store::{Migration, Migrations, StoreError};
use paywire_testkit::postgres::{PgCluster, PgClusterOptions};

type TestResult = Result<(), Box<dyn Error>>;

async fn cluster(options: PgClusterOptions) -> Result<Option<PgCluster>, Box<dyn Error>> {
    Ok(PgCluster::start_with_or_skip(options).await?)
}

/// `postgres://postgres@HOST:PORT/x402?QUERY`.
fn url(cluster: &PgCluster, host: &str, query: &str) -> String {
    format!("postgres://postgres@{host}:{}/x402?{query}", cluster.port())
}

fn ca(cluster: &PgCluster) -> String {
    cluster
        .ca_file()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

async fn uses_tls(pool: &PgPool) -> Result<bool, StoreError> {
    pool.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await?
    .try_get(0)
    .map_err(StoreError::from)
}

// ---------------------------------------------------------------- TLS

#[tokio::test]
async fn verify_full_with_the_kit_ca_connects_over_tls() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::hostssl_only()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca(&cluster)),
    ))
    .await?;
    assert!(uses_tls(&pool).await?, "the connection is not encrypted");
    assert_eq!(pool.ssl_mode(), SslMode::VerifyFull);
    Ok(())
}

#[tokio::test]
async fn an_unverifiable_certificate_is_refused_in_every_mode() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::tls()).await? else {
        return Ok(());
    };
    let other = cluster
        .untrusted_ca_file()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let result = PgPool::connect(&url(
            &cluster,
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ))
        .await;
        let error = result
            .err()
            .ok_or(format!("{mode} accepted a certificate of another CA"))?;
        assert!(
            error.to_string().contains("UnknownIssuer"),
            "{mode}: unexpected error {error}"
        );
    }
    // Without a CA file the system roots apply, which do not hold the kit's CA:
    // the default mode (prefer) does not fall back to an unverified certificate.
    let refused = PgPool::connect(&url(&cluster, "127.0.0.1", "")).await;
    let error = refused
        .err()
        .ok_or("prefer accepted an unverified certificate")?;
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    Ok(())
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::tls()).await? else {
        return Ok(());
    };
    // Reach the server at 127.0.0.1 under a name its certificate does not hold.
    let wrong_name = |mode: &str| {
        url(
            &cluster,
            "db.invalid",
            &format!(
                "hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}",
                ca(&cluster)
            ),
        )
    };
    for mode in ["verify-full", "require"] {
        let error = PgPool::connect(&wrong_name(mode))
            .await
            .err()
            .ok_or(format!("{mode} accepted a certificate for another name"))?;
        assert!(
            error.to_string().contains("not valid for name"),
            "{mode}: {error}"
        );
    }
    let pool = PgPool::connect(&wrong_name("verify-ca")).await?;
    assert!(uses_tls(&pool).await?);
    Ok(())
}

#[tokio::test]
async fn plaintext_is_refused_by_a_hostssl_only_server() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::hostssl_only()).await? else {
        return Ok(());
    };
    let refused = PgPool::connect(&url(&cluster, "127.0.0.1", "sslmode=disable")).await;
    assert!(
        matches!(refused, Err(StoreError::Postgres(_))),
        "plaintext connected: {refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_default_mode_keeps_plaintext_servers_working() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(cluster.url()).await?;
    assert_eq!(pool.ssl_mode(), SslMode::Prefer);
    assert!(!uses_tls(&pool).await?);
    Ok(())
}

// ---------------------------------------------------------------- pool

#[tokio::test]
async fn the_pool_survives_a_database_restart() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(&format!("{}?pool_max_size=2", cluster.url())).await?;
    // Fill the pool with idle connections the restart will cut.
    let (a, b) = (pool.get().await?, pool.get().await?);
    drop((a, b));
    assert_eq!(pool.status().size, 2);
    cluster.restart().await?;
    // No retry: the first operation after the restart succeeds.
    let one: i32 = pool.query_one("SELECT 1", &[]).await?.try_get(0)?;
    assert_eq!(one, 1);
    let both = tokio::join!(
        pool.query_one("SELECT 2", &[]),
        pool.query_one("SELECT 3", &[])
    );
    both.0?;
    both.1?;
    Ok(())
}

#[tokio::test]
async fn status_counts_connections_and_waiters_and_waits_are_bounded() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let config = PgConfig::from_url(cluster.url())?.with_options(
        PgOptions::default()
            .with_max_size(2)
            .with_acquire_timeout(Duration::from_millis(300)),
    );
    let pool = PgPool::open(config).await?;
    let held = (pool.get().await?, pool.get().await?);
    let status = pool.status();
    assert_eq!((status.max_size, status.size, status.available), (2, 2, 0));
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    let mut waiting = 0;
    for _ in 0..50 {
        waiting = pool.status().waiting;
        if waiting == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(waiting, 1);
    assert!(matches!(waiter.await?, Err(StoreError::PoolTimeout(_))));
    drop(held);
    assert_eq!(pool.status().available, 2);
    Ok(())
}

#[tokio::test]
async fn queries_are_prepared_once_per_connection() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(&format!("{}?pool_max_size=1", cluster.url())).await?;
    for n in 0..3_i32 {
        let row = pool.query_one("SELECT $1::int4 + 40", &[&n]).await?;
        assert_eq!(row.try_get::<_, i32>(0)?, 40 + n);
    }
    let prepared: i64 = pool
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int4 + 40'",
            &[],
        )
        .await?
        .try_get(0)?;
    assert_eq!(prepared, 1, "the statement was not cached");
    Ok(())
}

#[tokio::test]
async fn no_password_in_debug_or_errors() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    // Trust authentication ignores the password: the pool opens.
    let with_password = cluster
        .url()
        .replace("postgres@", "postgres:Hunter2Secret@");
    let pool = PgPool::connect(&with_password).await?;
    let config = PgConfig::from_url(&with_password)?;
    assert!(!format!("{pool:?} {config:?}").contains("Hunter2Secret"));
    // A port nobody listens on: the error names no password either.
    let dead = with_password.replace(&format!(":{}/", cluster.port()), ":1/");
    let error = PgPool::connect(&dead)
        .await
        .err()
        .ok_or("port 1 answered")?;
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("Hunter2Secret"), "{shown}");
    Ok(())
}

// ---------------------------------------------------------------- migrations

const TWO: &[Migration] = &[
    Migration::new(1, "widgets", "CREATE TABLE widgets (id BIGINT PRIMARY KEY)"),
    Migration::new(2, "gadgets", "CREATE TABLE gadgets (id BIGINT PRIMARY KEY)"),
];
const THREE: &[Migration] = &[
    Migration::new(1, "widgets", "CREATE TABLE widgets (id BIGINT PRIMARY KEY)"),
    Migration::new(2, "gadgets", "CREATE TABLE gadgets (id BIGINT PRIMARY KEY)"),
    Migration::new(
        3,
        "sprockets",
        "CREATE TABLE sprockets (id BIGINT PRIMARY KEY)",
    ),
];

async fn recorded(pool: &PgPool, component: &str) -> Result<Option<i64>, StoreError> {
    Ok(pool
        .query_opt(
            "SELECT version FROM paywire_schema_versions WHERE component = $1",
            &[&component],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

#[tokio::test]
async fn migrations_apply_once_in_order() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(cluster.url()).await?;
    let first = pool.migrate(&Migrations::new("test", TWO)).await?;
    assert_eq!((first.from, first.to, first.applied), (0, 2, vec![1, 2]));
    pool.execute("INSERT INTO gadgets VALUES (1)", &[]).await?;
    // The statements are not idempotent: a second run must apply nothing.
    let again = pool.migrate(&Migrations::new("test", TWO)).await?;
    assert_eq!((again.from, again.to), (2, 2));
    assert!(again.applied.is_empty());
    let more = pool.migrate(&Migrations::new("test", THREE)).await?;
    assert_eq!(more.applied, vec![3]);
    assert_eq!(recorded(&pool, "test").await?, Some(3));
    // Another component has its own sequence in the same table.
    const OTHER: &[Migration] = &[Migration::new(1, "t", "CREATE TABLE other_t (id INT)")];
    let other = pool.migrate(&Migrations::new("other", OTHER)).await?;
    assert_eq!(other.applied, vec![1]);
    assert_eq!(recorded(&pool, "test").await?, Some(3));
    Ok(())
}

#[tokio::test]
async fn instances_starting_together_migrate_once() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let mut runs = Vec::new();
    for _ in 0..4 {
        let pool = PgPool::connect(cluster.url()).await?;
        runs.push(tokio::spawn(async move {
            pool.migrate(&Migrations::new("race", THREE)).await
        }));
    }
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await??.applied);
    }
    applied.sort_unstable();
    assert_eq!(applied, vec![1, 2, 3], "each migration ran exactly once");
    Ok(())
}

#[tokio::test]
async fn a_newer_schema_is_refused() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(cluster.url()).await?;
    pool.migrate(&Migrations::new("ledger", THREE)).await?;
    let refused = pool.migrate(&Migrations::new("ledger", TWO)).await;
    match refused {
        Err(StoreError::SchemaTooNew {
            component,
            database,
            code,
        }) => assert_eq!((component.as_str(), database, code), ("ledger", 3, 2)),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(recorded(&pool, "ledger").await?, Some(3));
    Ok(())
}

#[tokio::test]
async fn a_failing_migration_leaves_the_database_as_it_was() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(cluster.url()).await?;
    const BROKEN: &[Migration] = &[
        Migration::new(1, "widgets", "CREATE TABLE widgets (id BIGINT PRIMARY KEY)"),
        Migration::new(2, "typo", "CREATE TABEL gadgets (id BIGINT)"),
    ];
    let failed = pool.migrate(&Migrations::new("broken", BROKEN)).await;
    assert!(
        matches!(failed, Err(StoreError::Migration { version: 2, .. })),
        "{failed:?}"
    );
    let widgets: Option<String> = pool
        .query_one("SELECT to_regclass('widgets')::text", &[])
        .await?
        .try_get(0)?;
    assert_eq!(widgets, None, "migration 1 was committed without 2");
    // Even the bookkeeping table went with the rolled-back transaction.
    let bookkeeping: Option<String> = pool
        .query_one("SELECT to_regclass('paywire_schema_versions')::text", &[])
        .await?
        .try_get(0)?;
    assert_eq!(bookkeeping, None);
    Ok(())
}

#[tokio::test]
async fn databases_from_before_the_bookkeeping_are_adopted() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(cluster.url()).await?;
    // A wave-1 store: its table, with data, and no bookkeeping row.
    pool.execute("CREATE TABLE kv (k TEXT PRIMARY KEY)", &[])
        .await?;
    pool.execute("INSERT INTO kv VALUES ('kept')", &[]).await?;
    const IDEMPOTENT: &[Migration] = &[
        Migration::new(
            1,
            "kv",
            "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY)",
        ),
        Migration::new(2, "kv v", "ALTER TABLE kv ADD COLUMN IF NOT EXISTS v TEXT"),
    ];
    let report = pool.migrate(&Migrations::new("kv", IDEMPOTENT)).await?;
    assert_eq!(report.applied, vec![1, 2]);
    let kept: i64 = pool
        .query_one("SELECT count(*) FROM kv", &[])
        .await?
        .try_get(0)?;
    assert_eq!(kept, 1);

    // A store that kept its own version table: adopted at its version.
    pool.execute("CREATE TABLE old_versions (version BIGINT)", &[])
        .await?;
    pool.execute("INSERT INTO old_versions VALUES (1), (2)", &[])
        .await?;
    pool.execute("CREATE TABLE widgets (id BIGINT)", &[])
        .await?;
    pool.execute("CREATE TABLE gadgets (id BIGINT)", &[])
        .await?;
    let legacy = Migrations::new("legacy", THREE)
        .with_legacy_version("SELECT COALESCE(MAX(version), 0) FROM old_versions");
    let report = pool.migrate(&legacy).await?;
    assert_eq!((report.from, report.applied), (2, vec![3]));
    // Without the legacy table the version is 0: everything runs.
    let fresh = PgPool::connect(&cluster.create_database("fresh").await?).await?;
    let report = fresh.migrate(&legacy).await?;
    assert_eq!((report.from, report.applied), (0, vec![1, 2, 3]));
    Ok(())
}

// ---------------------------------------------------------------- locks

const NS: i32 = 7001;

#[tokio::test]
async fn locks_exclude_each_other_and_dropping_releases() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let a = PgPool::connect(cluster.url()).await?;
    let b = PgPool::connect(cluster.url()).await?;
    let held = a
        .try_lock(&LockKey::text(NS, "payment"))
        .await?
        .ok_or("not taken")?;
    assert!(held.is_held());
    assert!(b.try_lock(&LockKey::text(NS, "payment")).await?.is_none());
    assert!(
        a.try_lock(&LockKey::text(NS, "payment")).await?.is_none(),
        "re-entered from the pool"
    );
    assert!(b.try_lock(&LockKey::text(NS, "other")).await?.is_some());
    // The same lock a caller takes by hand (the wave-1 ledger's form).
    let by_hand: bool = b
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext('payment'))",
            &[&NS],
        )
        .await?
        .try_get(0)?;
    assert!(!by_hand);
    let waited = b
        .lock(&LockKey::text(NS, "payment"), Duration::from_millis(200))
        .await;
    assert!(
        matches!(waited, Err(StoreError::LockTimeout(_))),
        "{waited:?}"
    );
    let waiter = tokio::spawn({
        let b = b.clone();
        async move {
            b.lock(&LockKey::text(NS, "payment"), Duration::from_secs(10))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    drop(held);
    let taken = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert!(taken.is_held());
    taken.release().await?;
    assert!(a.try_lock(&LockKey::text(NS, "payment")).await?.is_some());
    Ok(())
}

#[tokio::test]
async fn a_released_lock_returns_its_connection_to_the_pool() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(&format!("{}?pool_max_size=1", cluster.url())).await?;
    let pid = |pool: PgPool| async move {
        Ok::<i32, StoreError>(
            pool.query_one("SELECT pg_backend_pid()", &[])
                .await?
                .try_get(0)?,
        )
    };
    let before = pid(pool.clone()).await?;
    let lock = pool
        .try_lock(&LockKey::new(NS, 1))
        .await?
        .ok_or("not taken")?;
    lock.release().await?;
    assert_eq!(
        pid(pool.clone()).await?,
        before,
        "the connection was not reused"
    );
    let held: i64 = pool
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .await?
        .try_get(0)?;
    assert_eq!(held, 0, "the pooled connection still holds the lock");
    Ok(())
}

#[tokio::test]
async fn many_locks_never_exceed_the_pool() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let config = PgConfig::from_url(cluster.url())?.with_options(
        PgOptions::default()
            .with_max_size(4)
            .with_acquire_timeout(Duration::from_secs(30))
            .with_application_name("paywire-store-locks"),
    );
    let pool = PgPool::open(config).await?;
    let observer = PgPool::connect(cluster.url()).await?;
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicI64::new(0));
    let sampler = tokio::spawn({
        let (done, most) = (Arc::clone(&done), Arc::clone(&most));
        async move {
            while !done.load(Ordering::Relaxed) {
                let open: i64 = observer
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE application_name = 'paywire-store-locks'",
                        &[],
                    )
                    .await?
                    .try_get(0)?;
                most.fetch_max(open, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<(), StoreError>(())
        }
    });
    let mut tasks = Vec::new();
    for n in 0..24 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let lock = pool
                .lock(&LockKey::new(NS, n), Duration::from_secs(30))
                .await?;
            tokio::time::sleep(Duration::from_millis(30)).await;
            let held = lock.is_held();
            lock.release().await?;
            Ok::<bool, StoreError>(held)
        }));
    }
    for task in tasks {
        assert!(task.await??, "a lock was lost while held");
    }
    done.store(true, Ordering::Relaxed);
    sampler.await??;
    let most = most.load(Ordering::Relaxed);
    assert!(
        (1..=4).contains(&most),
        "{most} connections for a pool of 4"
    );
    assert!(pool.status().size <= 4);
    Ok(())
}

#[tokio::test]
async fn a_lock_whose_session_is_killed_is_not_held() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(cluster.url()).await?;
    let lock = pool
        .try_lock(&LockKey::new(NS, 42))
        .await?
        .ok_or("not taken")?;
    assert!(lock.is_held());
    let killed: i64 = pool
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND classid::bigint = $1 AND objid::bigint = 42",
            &[&i64::from(NS)],
        )
        .await?
        .try_get(0)?;
    assert_eq!(killed, 1);
    for _ in 0..250 {
        if !lock.is_held() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !lock.is_held(),
        "a lock whose session died still counts as held"
    );
    drop(lock);
    // The key is free again and the pool keeps serving.
    let again = pool.try_lock(&LockKey::new(NS, 42)).await?;
    assert!(again.is_some_and(|lock| lock.is_held()));
    Ok(())
}

/// Abandoning [`AdvisoryLock::release`] midway (a caller's timeout, a
/// `select!` branch losing) must not put a connection that still holds the
/// lock back into the pool: the unlock statement is prepared first on that
/// connection, and if the future is dropped while the prepare is in flight
/// the connection returns to the pool with the session lock held, so every
/// other instance is shut out of that key for as long as the pooled
/// connection lives (and a later `try_lock` of the key on it re-enters,
/// leaving the lock held after that guard's unlock too). `release` holds
/// the connection in a guard that discards it unless the unlock completed.
#[tokio::test]
async fn an_abandoned_release_does_not_leak_the_lock_into_the_pool() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let pool = PgPool::connect(&format!("{}?pool_max_size=1", cluster.url())).await?;
    let other = PgPool::connect(cluster.url()).await?;
    let key = LockKey::new(NS, 77);
    let lock = pool.try_lock(&key).await?.ok_or("not taken")?;
    // Polled once (the unlock's prepare is sent), then dropped: what a
    // timeout or a `select!` does to it.
    let mut release = Box::pin(lock.release());
    let first = std::future::poll_fn(|context| Poll::Ready(release.as_mut().poll(context))).await;
    assert!(first.is_pending(), "release finished within its first poll");
    drop(release);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let free = other.try_lock(&key).await?;
    let idle_holder: i64 = other
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid::bigint = 77",
            &[],
        )
        .await?
        .try_get(0)?;
    assert!(
        free.is_some(),
        "the lock is still held by a pooled connection ({idle_holder} holder(s), pool {:?})",
        pool.status()
    );
    Ok(())
}

// ---------------------------------------------------------------- prefer

/// A one-connection fake server that answers the TLS request with `N` (an
/// attacker on the path hiding the real server's TLS offer) and then asks
/// for the password in clear text. Returns what the client sent as its
/// password, if it sent one.
async fn tls_stripping_server() -> std::io::Result<(u16, tokio::task::JoinHandle<Option<String>>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.ok()?;
        let mut ssl_request = [0_u8; 8];
        socket.read_exact(&mut ssl_request).await.ok()?;
        socket.write_all(b"N").await.ok()?;
        let length = usize::try_from(socket.read_u32().await.ok()?).ok()?;
        let mut startup = vec![0_u8; length.checked_sub(4)?];
        socket.read_exact(&mut startup).await.ok()?;
        // AuthenticationCleartextPassword.
        socket
            .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])
            .await
            .ok()?;
        if socket.read_u8().await.ok()? != b'p' {
            return None;
        }
        let length = usize::try_from(socket.read_u32().await.ok()?).ok()?;
        let mut password = vec![0_u8; length.checked_sub(4)?];
        socket.read_exact(&mut password).await.ok()?;
        Some(
            String::from_utf8_lossy(&password)
                .trim_end_matches('\0')
                .to_owned(),
        )
    });
    Ok((port, task))
}

/// The README's warning about `prefer` is literal: an attacker on the path
/// who hides the server's TLS offer is sent the password in clear text.
/// `require` (and the verify modes) never send it.
#[tokio::test]
async fn prefer_hands_the_password_to_a_tls_stripping_attacker_and_require_does_not() -> TestResult
{
    let (port, server) = tls_stripping_server().await?;
    let url = format!("postgres://app:Hunter2Secret@127.0.0.1:{port}/pay?connect_timeout=5");
    assert!(
        PgPool::connect(&format!("{url}&sslmode=require"))
            .await
            .is_err()
    );
    server.abort();
    assert_eq!(
        server.await.ok().flatten(),
        None,
        "require sent the password"
    );

    let (port, server) = tls_stripping_server().await?;
    let url = format!("postgres://app:Hunter2Secret@127.0.0.1:{port}/pay?connect_timeout=5");
    assert!(PgPool::connect(&url).await.is_err());
    assert_eq!(
        server.await?.as_deref(),
        Some("Hunter2Secret"),
        "prefer (the default) no longer falls back to plaintext: update the README"
    );
    Ok(())
}
