//! The PostgreSQL stores: shared by two instances, TLS, reconnect after a
//! database restart, adoption of a wave-1 database, newer schemas refused.

use std::sync::Arc;
use std::time::Duration;

use paywire_siwx::postgres::PostgresStore;
use paywire_siwx::{AccessPolicy, EntitlementStore, NonceState, NonceStore};
use paywire_store::postgres::PgPool;
use paywire_testkit::postgres::{PgCluster, PgClusterOptions};

const X: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
const Y: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const NET: &str = "eip155:8453";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_and_entitlements_are_shared_and_single_use() {
    let Some(cluster) = PgCluster::start_or_skip().await.expect("postgres") else {
        return;
    };
    let a = PostgresStore::connect(cluster.url()).await.expect("a");
    let b = Arc::new(PostgresStore::connect(cluster.url()).await.expect("b"));

    // A nonce issued by one instance is consumed once, by any instance.
    a.issue_nonce("n1", "https://api/x", 0, 1_000)
        .await
        .expect("issue");
    assert!(
        a.issue_nonce("n1", "https://api/x", 0, 1_000)
            .await
            .is_err(),
        "unique"
    );
    assert_eq!(
        b.check_nonce("n1", "https://api/x", 10)
            .await
            .expect("check"),
        NonceState::Valid
    );
    assert_eq!(
        b.check_nonce("n1", "https://api/y", 10)
            .await
            .expect("check"),
        NonceState::WrongResource
    );
    assert_eq!(
        b.check_nonce("n2", "https://api/x", 10)
            .await
            .expect("check"),
        NonceState::Unknown
    );
    assert_eq!(
        b.check_nonce("n1", "https://api/x", 1_000)
            .await
            .expect("check"),
        NonceState::Expired
    );
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.consume_nonce("n1", "https://api/x", 10).await })
        })
        .collect();
    let mut valid = 0;
    for racer in racers {
        if racer.await.expect("task").expect("consume") == NonceState::Valid {
            valid += 1;
        }
    }
    assert_eq!(valid, 1, "exactly one concurrent consumer wins");
    assert_eq!(
        a.consume_nonce("n1", "https://api/x", 10)
            .await
            .expect("consume"),
        NonceState::Used
    );
    assert_eq!(a.purge_nonces(2_000).await.expect("purge"), 1);

    // Entitlements: X's pass is X's only, ends on time; uses are counted once.
    let pass = AccessPolicy::Pass { duration_ms: 100 }.entitlement(X, NET, "api", 1_000);
    a.grant(&pass).await.expect("grant");
    assert!(
        b.check(&X.to_lowercase(), NET, "api", 1_050)
            .await
            .expect("check")
            .is_some()
    );
    assert!(
        b.check(Y, NET, "api", 1_050)
            .await
            .expect("check")
            .is_none(),
        "not Y's"
    );
    assert!(
        b.check(X, "eip155:1", "api", 1_050)
            .await
            .expect("check")
            .is_none(),
        "not another network"
    );
    assert!(
        b.check(X, NET, "api", 1_100)
            .await
            .expect("check")
            .is_none(),
        "expired"
    );
    a.grant(&AccessPolicy::Uses(2).entitlement(Y, NET, "api", 0))
        .await
        .expect("grant");
    assert_eq!(
        b.check(Y, NET, "api", 5)
            .await
            .expect("check")
            .and_then(|e| e.remaining_uses),
        Some(1)
    );
    assert_eq!(
        a.check(Y, NET, "api", 5)
            .await
            .expect("check")
            .and_then(|e| e.remaining_uses),
        Some(0)
    );
    assert!(
        b.check(Y, NET, "api", 5).await.expect("check").is_none(),
        "uses spent"
    );
    a.grant(&AccessPolicy::PayOnce.entitlement(Y, NET, "api", 0))
        .await
        .expect("grant");
    assert!(b.check(Y, NET, "api", 5).await.expect("check").is_some());
    assert_eq!(a.revoke(Y, NET, "api").await.expect("revoke"), 2);
    assert!(
        b.check(Y, NET, "api", 5).await.expect("check").is_none(),
        "revoked"
    );

    b.revoke_session("token-1", 5_000)
        .await
        .expect("revoke session");
    assert!(a.is_session_revoked("token-1").await.expect("revoked?"));
    assert!(!a.is_session_revoked("token-2").await.expect("revoked?"));
}

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn cluster(
    options: PgClusterOptions,
) -> Result<Option<PgCluster>, Box<dyn std::error::Error>> {
    Ok(PgCluster::start_with_or_skip(options).await?)
}

/// Retries `attempt` for up to 10 s (a store that never reconnects fails).
async fn within_bounded_retries<T, F, Fut>(mut attempt: F) -> Result<T, paywire_siwx::StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, paywire_siwx::StoreError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_serves_again_after_a_database_restart() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let store = PostgresStore::connect(&format!("{}?pool_max_size=3", cluster.url())).await?;
    store
        .issue_nonce("before", "https://api/x", 0, 1_000)
        .await?;
    store
        .grant(&AccessPolicy::PayOnce.entitlement(X, NET, "api", 0))
        .await?;
    // Several pooled connections, all of them cut by the restart.
    let (a, b, c) = tokio::join!(
        store.check_nonce("before", "https://api/x", 1),
        store.is_session_revoked("t"),
        store.check(X, NET, "api", 1),
    );
    assert_eq!(a?, NonceState::Valid);
    assert!(!b?);
    assert!(c?.is_some());

    cluster.restart().await?;

    // The same store value, not rebuilt: it reads and writes again.
    let state =
        within_bounded_retries(|| store.consume_nonce("before", "https://api/x", 2)).await?;
    assert_eq!(
        state,
        NonceState::Valid,
        "the nonce issued before the restart"
    );
    store
        .issue_nonce("after", "https://api/x", 0, 1_000)
        .await?;
    assert!(store.check(X, NET, "api", 3).await?.is_some());
    let (a, b) = tokio::join!(
        store.check_nonce("after", "https://api/x", 3),
        store.check_nonce("before", "https://api/x", 3),
    );
    assert_eq!((a?, b?), (NonceState::Valid, NonceState::Used));
    Ok(())
}

#[tokio::test]
async fn verify_full_against_the_kit_ca_is_encrypted() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::hostssl_only()).await? else {
        return Ok(());
    };
    let ca = cluster.ca_file().ok_or("a TLS cluster has a CA")?;
    let url = format!(
        "postgres://postgres@localhost:{}/x402?sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        ca.display()
    );
    let store = PostgresStore::connect(&url).await?;
    store.issue_nonce("n", "https://api/x", 0, 1_000).await?;
    assert_eq!(
        store.consume_nonce("n", "https://api/x", 1).await?,
        NonceState::Valid
    );
    let encrypted: bool = store
        .pool()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .try_get(0)?;
    assert!(encrypted, "the store's session is not encrypted");

    // A CA that signed nothing of this server's is refused.
    let untrusted = cluster.untrusted_ca_file().ok_or("a second CA")?;
    let refused = PostgresStore::connect(&format!(
        "postgres://postgres@localhost:{}/x402?sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        untrusted.display()
    ))
    .await;
    assert!(
        refused.is_err(),
        "connected with an unverifiable certificate"
    );
    Ok(())
}

/// The schema as releases before paywire-store created it (their SQL).
const WAVE_1_SCHEMA: &str = "
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
    INSERT INTO siwx_nonces (nonce, uri, expires_at) VALUES ('old', 'https://api/x', 1000);
    INSERT INTO siwx_entitlements (address, network, scope, granted_at, expires_at, remaining_uses)
        VALUES ('0x857b06519e91e3a54538791bdbb0e22373e36b66', 'eip155:8453', 'api', 0, NULL, 2);
    INSERT INTO siwx_revoked_sessions (token_id, expires_at) VALUES ('revoked', 5000);";

async fn recorded_version(pool: &PgPool) -> Result<Option<i32>, Box<dyn std::error::Error>> {
    Ok(pool
        .query_opt(
            "SELECT version::INT FROM paywire_schema_versions WHERE component = 'siwx'",
            &[],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

#[tokio::test]
async fn a_wave_1_database_is_adopted_with_its_data() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let raw = PgPool::connect(cluster.url()).await?;
    raw.get().await?.batch_execute(WAVE_1_SCHEMA).await?;
    let bookkeeping: Option<String> = raw
        .query_one("SELECT to_regclass('paywire_schema_versions')::TEXT", &[])
        .await?
        .try_get(0)?;
    assert_eq!(bookkeeping, None, "no bookkeeping yet");

    let store = PostgresStore::connect(cluster.url()).await?;
    assert_eq!(recorded_version(&raw).await?, Some(1));
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
    // New rows still get ids after the adopted ones.
    store
        .grant(&AccessPolicy::Uses(1).entitlement(Y, NET, "api", 0))
        .await?;
    assert!(store.check(Y, NET, "api", 1).await?.is_some());
    Ok(())
}

#[tokio::test]
async fn a_newer_siwx_schema_is_refused() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let store = PostgresStore::connect(cluster.url()).await?;
    store
        .pool()
        .execute(
            "UPDATE paywire_schema_versions SET version = 7 WHERE component = 'siwx'",
            &[],
        )
        .await?;
    match PostgresStore::connect(cluster.url()).await {
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains("`siwx`") && text.contains("version 7"),
                "unclear refusal: {text}"
            );
        }
        Ok(_) => panic!("a store started against a newer schema"),
    }
    Ok(())
}

#[tokio::test]
async fn debug_and_errors_show_no_password() -> TestResult {
    let Some(cluster) = cluster(PgClusterOptions::default()).await? else {
        return Ok(());
    };
    let secret = "s3cret-Passw0rd";
    // The kit's cluster trusts local clients: the password is never asked
    // for, but the store holds it.
    let store = PostgresStore::connect(&format!(
        "postgres://postgres:{secret}@127.0.0.1:{}/x402",
        cluster.port()
    ))
    .await?;
    assert!(!format!("{store:?}").contains(secret), "{store:?}");
    // A wrong host: the error must not echo the URL's password.
    let url = format!("postgres://postgres:{secret}@127.0.0.1:1/x402?connect_timeout=2");
    let error = PostgresStore::connect(&url)
        .await
        .err()
        .ok_or("connected to port 1")?;
    assert!(!error.to_string().contains(secret), "{error}");
    assert!(!format!("{error:?}").contains(secret), "{error:?}");
    Ok(())
}
