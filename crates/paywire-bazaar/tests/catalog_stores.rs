//! The persistent catalogs on `paywire-store`: PostgreSQL through the pool
//! (reconnect, concurrency, TLS, schema adoption and refusal) and SQLite off
//! the async runtime. Throwaway clusters come from paywire-testkit.

use std::error::Error;
use std::time::{Duration, Instant};

use paywire_bazaar::{Catalog, DiscoveredResource, PostgresCatalog, SqliteCatalog};
use paywire_store::postgres::PgPool;
use paywire_store::rusqlite;
use paywire_testkit::postgres::{PgCluster, PgClusterOptions};
use serde_json::json;

type TestResult = Result<(), Box<dyn Error>>;

/// A bound on waits that must not happen at all; only reached on failure.
const PATIENCE: Duration = Duration::from_secs(10);

fn entry(url: &str, network: &str, updated: u64) -> DiscoveredResource {
    DiscoveredResource {
        resource: url.into(),
        kind: "http".into(),
        x402_version: 2,
        accepts: vec![
            serde_json::from_value(json!({
                "scheme": "exact", "network": network, "amount": "1000",
                "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60
            }))
            .unwrap_or_else(|e| panic!("requirements: {e}")),
        ],
        last_updated: updated,
        extensions: Some(json!({"bazaar": {"info": {"input": {"type": "http", "method": "GET"}}}})),
        metadata: Some(json!({"description": "weather"})),
    }
}

async fn urls(catalog: &dyn Catalog) -> Result<Vec<String>, Box<dyn Error>> {
    Ok(catalog
        .all()
        .await?
        .into_iter()
        .map(|e| e.resource)
        .collect())
}

async fn cluster(options: PgClusterOptions) -> Result<Option<PgCluster>, Box<dyn Error>> {
    Ok(PgCluster::start_with_or_skip(options).await?)
}

/// The version `paywire_schema_versions` records for the catalog.
async fn pg_schema_version(pool: &PgPool) -> Result<i64, Box<dyn Error>> {
    Ok(pool
        .query_one(
            "SELECT version::int8 FROM paywire_schema_versions WHERE component = 'bazaar'",
            &[],
        )
        .await?
        .try_get(0)?)
}

// ------------------------------------------------------------- PostgreSQL

#[tokio::test]
async fn postgres_catalog_serves_again_after_a_database_restart() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let catalog = PostgresCatalog::connect(&format!("{}?pool_max_size=2", cluster.url())).await?;
    catalog
        .upsert(entry("https://a.example/x", "eip155:8453", 1))
        .await?;
    // Both pooled connections open and idle: the restart cuts them all.
    let (a, b) = tokio::join!(catalog.all(), catalog.all());
    a?;
    b?;
    assert_eq!(catalog.pool().status().size, 2);

    cluster.restart().await?;

    // The same catalog object, no retry: its first queries after the
    // restart succeed on fresh connections.
    assert_eq!(urls(&catalog).await?, ["https://a.example/x"]);
    catalog
        .upsert(entry("https://b.example/y", "eip155:8453", 2))
        .await?;
    assert_eq!(
        urls(&catalog).await?,
        ["https://b.example/y", "https://a.example/x"]
    );
    Ok(())
}

/// The old catalog ran every query on one connection behind a mutex: an
/// upsert waiting for another instance's lock on its resource held up every
/// listing of the catalog. On the pool it holds up only itself.
#[tokio::test]
async fn an_upsert_waiting_for_a_lock_holds_up_no_other_query() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let catalog = PostgresCatalog::connect(cluster.url()).await?;
    // Another instance is merging https://a.example/x right now.
    let other_instance = PgPool::connect(cluster.url()).await?;
    let mut connection = other_instance.get().await?;
    let merging = connection.transaction().await?;
    merging
        .execute(
            "SELECT pg_advisory_xact_lock(4022, hashtext($1))",
            &[&"https://a.example/x"],
        )
        .await?;

    let waiting = tokio::spawn({
        let catalog = catalog.clone();
        async move {
            catalog
                .upsert(entry("https://a.example/x", "eip155:8453", 1))
                .await
        }
    });
    let started = Instant::now();
    while other_instance
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            &[],
        )
        .await?
        .try_get::<_, i64>(0)?
        == 0
    {
        assert!(
            started.elapsed() < PATIENCE,
            "the upsert never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // While it waits, the catalog lists and merges other resources.
    let listed = tokio::time::timeout(PATIENCE, catalog.all()).await??;
    assert!(listed.is_empty());
    tokio::time::timeout(
        PATIENCE,
        catalog.upsert(entry("https://b.example/y", "eip155:8453", 2)),
    )
    .await??;
    assert!(
        !waiting.is_finished(),
        "the upsert did not wait for the lock"
    );

    merging.commit().await?;
    tokio::time::timeout(PATIENCE, waiting).await???;
    assert_eq!(
        urls(&catalog).await?,
        ["https://b.example/y", "https://a.example/x"]
    );
    Ok(())
}

/// N listings that each take 0.3 s in the database finish together in about
/// 0.3 s on the pool; one connection behind a mutex needs at least N × 0.3 s
/// (2.4 s), because the sleeps happen on the server and cannot overlap on one
/// session. The bound, half of that, is far from both outcomes: it only
/// fails if the listings serialise or if opening and running them costs more
/// than 0.9 s beyond the sleep on a busy machine. This checks a behaviour
/// (queries overlap), not speed.
#[tokio::test]
async fn catalog_queries_run_concurrently_on_the_pool() -> TestResult {
    const N: u32 = 8;
    const SLEEP: Duration = Duration::from_millis(300);
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let catalog = PostgresCatalog::connect(&format!("{}?pool_max_size={N}", cluster.url())).await?;
    catalog
        .upsert(entry("https://a.example/x", "eip155:8453", 1))
        .await?;
    // Every read of the table now sleeps 0.3 s per row on the server.
    catalog
        .pool()
        .get()
        .await?
        .batch_execute(
            "CREATE FUNCTION paywire_test_slow() RETURNS boolean LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM pg_sleep(0.3); RETURN true; END $$;
             ALTER TABLE x402_bazaar_resources RENAME TO x402_bazaar_resources_data;
             CREATE VIEW x402_bazaar_resources AS
                 SELECT * FROM x402_bazaar_resources_data WHERE paywire_test_slow();",
        )
        .await?;

    let run_all = || async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..N {
            let catalog = catalog.clone();
            tasks.spawn(async move { catalog.all().await });
        }
        let mut listed = 0;
        while let Some(result) = tasks.join_next().await {
            listed += result??.len();
        }
        Ok::<_, Box<dyn Error>>(listed)
    };
    // The first round opens the pool's connections; the second is measured.
    run_all().await?;
    let started = Instant::now();
    assert_eq!(run_all().await?, 8);
    let elapsed = started.elapsed();

    assert!(elapsed >= SLEEP, "the slow view did not slow the listing");
    assert!(
        elapsed < SLEEP * N / 2,
        "{N} listings of {SLEEP:?} each took {elapsed:?}: they did not overlap"
    );
    Ok(())
}

#[tokio::test]
async fn postgres_catalog_over_verified_tls() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::hostssl_only()).await? else {
        return Ok(());
    };
    let url = |ca: Option<&std::path::Path>| {
        format!(
            "postgres://postgres@127.0.0.1:{}/x402?sslmode=verify-full&sslrootcert={}",
            cluster.port(),
            ca.map(|p| p.display().to_string()).unwrap_or_default()
        )
    };
    let catalog = PostgresCatalog::connect(&url(cluster.ca_file())).await?;
    catalog
        .upsert(entry("https://a.example/x", "eip155:8453", 1))
        .await?;
    assert_eq!(urls(&catalog).await?, ["https://a.example/x"]);
    let encrypted: bool = catalog
        .pool()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .try_get(0)?;
    assert!(encrypted, "the catalog's session is not encrypted");

    // Verification is real: a CA that signed nothing here is refused.
    let refused = PostgresCatalog::connect(&url(cluster.untrusted_ca_file())).await;
    assert!(refused.is_err(), "a certificate of another CA was accepted");
    Ok(())
}

#[tokio::test]
async fn postgres_catalog_adopts_a_wave_one_database() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    // The schema exactly as the catalog created it before paywire-store,
    // with no bookkeeping row, and one entry in it.
    let raw = PgPool::connect(cluster.url()).await?;
    raw.get()
        .await?
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS x402_bazaar_resources (
                 key          TEXT PRIMARY KEY,
                 entry        TEXT NOT NULL,
                 last_updated BIGINT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS x402_bazaar_resources_fresh
                 ON x402_bazaar_resources (last_updated DESC);",
        )
        .await?;
    let old = entry("https://old.example/x", "eip155:8453", 5);
    raw.execute(
        "INSERT INTO x402_bazaar_resources (key, entry, last_updated) VALUES ($1, $2, 5)",
        &[&old.key(), &serde_json::to_string(&old)?],
    )
    .await?;

    let catalog = PostgresCatalog::connect(cluster.url()).await?;
    assert_eq!(catalog.all().await?, [old]);
    assert_eq!(pg_schema_version(&raw).await?, 1);
    // The adopted entry merges like any other.
    catalog
        .upsert(entry("https://old.example/x", "eip155:84532", 6))
        .await?;
    assert_eq!(catalog.all().await?[0].accepts.len(), 2);
    Ok(())
}

#[tokio::test]
async fn postgres_catalog_refuses_a_newer_schema() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let catalog = PostgresCatalog::connect(cluster.url()).await?;
    assert_eq!(pg_schema_version(catalog.pool()).await?, 1);
    catalog
        .pool()
        .execute(
            "UPDATE paywire_schema_versions SET version = 2 WHERE component = 'bazaar'",
            &[],
        )
        .await?;

    for refused in [
        PostgresCatalog::connect(cluster.url()).await,
        PostgresCatalog::from_pool(catalog.pool().clone()).await,
    ] {
        let error = refused
            .err()
            .ok_or("a catalog schema newer than the code was accepted")?
            .to_string();
        assert!(
            error.contains("`bazaar`") && error.contains("version 2"),
            "{error}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn postgres_catalog_shares_a_pool_and_hides_the_password() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    // Trust authentication ignores the password; it must show nowhere.
    let secret = "hunter2-catalog";
    let with_password = cluster
        .url()
        .replacen("postgres@", &format!("postgres:{secret}@"), 1);
    let pool = PgPool::connect(&with_password).await?;
    let catalog = PostgresCatalog::from_pool(pool.clone()).await?;
    catalog
        .upsert(entry("https://a.example/x", "eip155:8453", 1))
        .await?;
    // Another component of the process sees the catalog on the same pool.
    let count: i64 = pool
        .query_one("SELECT count(*) FROM x402_bazaar_resources", &[])
        .await?
        .try_get(0)?;
    assert_eq!(count, 1);
    assert!(!format!("{catalog:?}").contains(secret));

    let unreachable = format!("postgres://postgres:{secret}@127.0.0.1:1/x402?connect_timeout=2");
    let error = PostgresCatalog::connect(&unreachable)
        .await
        .err()
        .ok_or("connected to a closed port")?;
    assert!(!error.to_string().contains(secret), "{error}");
    assert!(!format!("{error:?}").contains(secret), "{error:?}");
    Ok(())
}

// ------------------------------------------------------------------ SQLite

#[tokio::test]
async fn sqlite_catalog_adopts_a_wave_one_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bazaar.sqlite");
    let old = entry("https://old.example/x", "eip155:8453", 5);
    {
        // The file exactly as the catalog created it before paywire-store.
        let connection = rusqlite::Connection::open(&path)?;
        connection.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS bazaar_resources (
                 key TEXT PRIMARY KEY,
                 entry TEXT NOT NULL,
                 last_updated INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS bazaar_resources_fresh
                 ON bazaar_resources (last_updated DESC);",
        )?;
        connection.execute(
            "INSERT INTO bazaar_resources (key, entry, last_updated) VALUES (?1, ?2, 5)",
            (old.key(), serde_json::to_string(&old)?),
        )?;
    }

    let catalog = SqliteCatalog::open(&path).await?;
    assert_eq!(catalog.all().await?, [old]);
    let version: i64 = catalog
        .handle()
        .call(|c| {
            c.query_row(
                "SELECT version FROM paywire_schema_versions WHERE component = 'bazaar'",
                [],
                |row| row.get(0),
            )
        })
        .await?;
    assert_eq!(version, 1);
    catalog
        .upsert(entry("https://old.example/x", "eip155:84532", 6))
        .await?;
    assert_eq!(catalog.all().await?[0].accepts.len(), 2);
    Ok(())
}

#[tokio::test]
async fn sqlite_catalog_refuses_a_newer_schema() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bazaar.sqlite");
    let catalog = SqliteCatalog::open(&path).await?;
    catalog
        .handle()
        .call(|c| {
            c.execute(
                "UPDATE paywire_schema_versions SET version = 2 WHERE component = 'bazaar'",
                [],
            )
        })
        .await?;
    let error = SqliteCatalog::open(&path)
        .await
        .err()
        .ok_or("a catalog schema newer than the code was accepted")?
        .to_string();
    assert!(
        error.contains("`bazaar`") && error.contains("version 2"),
        "{error}"
    );
    Ok(())
}

/// On a single-threaded runtime, an upsert that waits a second for another
/// process's write lock must leave the runtime free: a timer keeps ticking.
/// Run inline on the runtime's only thread, the wait would freeze it.
#[tokio::test(flavor = "current_thread")]
async fn sqlite_catalog_waits_for_locks_off_the_runtime() -> TestResult {
    const HOLD: Duration = Duration::from_millis(1000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bazaar.sqlite");
    let catalog = SqliteCatalog::open(&path).await?;

    // Another process holds the write lock for a second.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn({
        let path = path.clone();
        move || -> rusqlite::Result<()> {
            let mut connection = rusqlite::Connection::open(path)?;
            let tx =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let _ = locked_tx.send(());
            std::thread::sleep(HOLD);
            tx.commit()
        }
    });
    locked_rx.recv_timeout(PATIENCE)?;

    let ticker = tokio::spawn(async {
        let mut ticks = 0_u32;
        let mut interval = tokio::time::interval(Duration::from_millis(20));
        loop {
            interval.tick().await;
            ticks += 1;
            if ticks == 10 {
                return ticks;
            }
        }
    });
    let started = Instant::now();
    catalog
        .upsert(entry("https://a.example/x", "eip155:8453", 1))
        .await?;
    let waited = started.elapsed();
    assert!(
        waited >= HOLD / 2,
        "the upsert did not wait for the lock ({waited:?})"
    );
    // Ten ticks of 20 ms fit easily in the wait; inline, not one would.
    assert!(
        ticker.is_finished(),
        "the runtime stalled during the upsert"
    );
    ticker.await?;
    writer.join().map_err(|_| "writer panicked")??;
    assert_eq!(urls(&catalog).await?, ["https://a.example/x"]);
    Ok(())
}
