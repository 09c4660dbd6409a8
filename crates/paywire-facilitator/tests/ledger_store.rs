//! The PostgreSQL ledger through the facilitator's configuration: TLS URLs,
//! pool parameters, and the refusal to start on a newer schema.

use paywire_facilitator::config::StoreLocation;
use paywire_facilitator::{FacilitatorConfig, LedgerError, SetupError};
use paywire_store::StoreError;
use paywire_store::postgres::PgPool;
use paywire_testkit::postgres::{PgCluster, PgClusterOptions};
use paywire_testkit::stack::{SIGNER_KEY_VARIABLE, config_text, plugins};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A facilitator configuration with its ledger at `store` (no chain is
/// contacted at build) and the bazaar off.
fn config(store: &str) -> Result<FacilitatorConfig, Box<dyn std::error::Error>> {
    config_with_bazaar(store, false)
}

/// The same, with the bazaar catalog on its default store (the ledger's).
fn config_with_bazaar(
    store: &str,
    bazaar: bool,
) -> Result<FacilitatorConfig, Box<dyn std::error::Error>> {
    let mut text = config_text(
        "base",
        "http://127.0.0.1:1",
        None,
        std::path::Path::new(store),
    );
    text.push_str(&format!("\n[bazaar]\nenabled = {bazaar}\n"));
    let key = format!("0x{}", "11".repeat(32));
    Ok(FacilitatorConfig::parse_with_env(&text, |name| {
        (name == SIGNER_KEY_VARIABLE).then(|| key.clone())
    })?)
}

/// `postgres://postgres:PASSWORD@127.0.0.1:PORT/x402?QUERY` (trust
/// authentication ignores the password).
fn url(cluster: &PgCluster, query: &str) -> String {
    format!(
        "postgres://postgres:Hunter2Secret@127.0.0.1:{}/x402?{query}",
        cluster.port()
    )
}

#[test]
fn store_urls_take_tls_and_pool_parameters() -> TestResult {
    let accepted = config(
        "postgres://x402:Hunter2Secret@db.internal:5432/x402?sslmode=verify-full\
         &sslrootcert=/etc/paywire/db-ca.pem&pool_max_size=4&pool_acquire_timeout=2.5",
    )?;
    assert!(matches!(
        accepted.store_location()?,
        StoreLocation::Postgres(_)
    ));
    for bad in [
        "postgres://x402:Hunter2Secret@db/x402?sslmode=allow",
        "postgres://x402:Hunter2Secret@db/x402?pool_max_size=many",
        "postgres://x402:Hunter2Secret@db:notaport/x402",
    ] {
        let error = config(bad)
            .map_err(|e| e.to_string())
            .and_then(|c| c.store_location().map_err(|e| e.to_string()))
            .err()
            .ok_or(format!("{bad} was accepted"))?;
        assert!(error.contains("store"), "{error}");
        assert!(!error.contains("Hunter2Secret"), "{error}");
    }
    Ok(())
}

#[tokio::test]
async fn a_verify_full_ledger_url_works_through_the_configuration() -> TestResult {
    let Some(cluster) = PgCluster::start_with_or_skip(PgClusterOptions::hostssl_only()).await?
    else {
        return Ok(());
    };
    let ca = cluster.ca_file().ok_or("the TLS cluster has no CA")?;
    let store = url(
        &cluster,
        &format!(
            "sslmode=verify-full&sslrootcert={}&pool_max_size=3",
            ca.display()
        ),
    );
    // The server refuses plaintext: building at all proves TLS; pg_stat_ssl
    // shows it. The bazaar catalog, in the ledger's database by default,
    // shares the ledger's pool and so its TLS settings.
    let state = paywire_facilitator::build(&config_with_bazaar(&store, true)?, &plugins()).await?;
    let observer = PgPool::connect(&store).await?;
    let encrypted: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.application_name = 'paywire-facilitator' AND s.ssl",
            &[],
        )
        .await?
        .try_get(0)?;
    assert!(encrypted >= 1, "no encrypted ledger connection");
    let catalog_connections: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'paywire-bazaar'",
            &[],
        )
        .await?
        .try_get(0)?;
    assert_eq!(
        catalog_connections, 0,
        "the catalog opened a pool of its own"
    );
    let catalog_version: i64 = observer
        .query_one(
            "SELECT version FROM paywire_schema_versions WHERE component = 'bazaar'",
            &[],
        )
        .await?
        .try_get(0)?;
    assert_eq!(
        catalog_version, 1,
        "the catalog was not set up in the ledger's database"
    );
    drop(state);

    // A CA that signed nothing of this server: refused at start, and the
    // error names no password.
    let other = cluster.untrusted_ca_file().ok_or("no second CA")?;
    let wrong = url(
        &cluster,
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    );
    let error = paywire_facilitator::build(&config(&wrong)?, &plugins())
        .await
        .err()
        .ok_or("an unverifiable certificate was accepted")?;
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("UnknownIssuer"), "{shown}");
    assert!(!shown.contains("Hunter2Secret"), "{shown}");
    Ok(())
}

#[tokio::test]
async fn a_newer_ledger_schema_stops_the_facilitator_at_start() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let store = url(&cluster, "");
    drop(paywire_facilitator::build(&config(&store)?, &plugins()).await?);
    PgPool::connect(&store)
        .await?
        .execute(
            "UPDATE paywire_schema_versions SET version = version + 1 WHERE component = 'ledger'",
            &[],
        )
        .await?;
    let error = paywire_facilitator::build(&config(&store)?, &plugins())
        .await
        .err()
        .ok_or("the facilitator started on a newer schema")?;
    assert!(
        matches!(
            error,
            SetupError::Ledger(LedgerError::Store(StoreError::SchemaTooNew { .. }))
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("newer than the"),
        "unclear error: {error}"
    );
    Ok(())
}
