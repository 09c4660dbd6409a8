//! Building and running the service from a [`FacilitatorConfig`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use paywire_core::extensions::{BAZAAR, PAYMENT_IDENTIFIER};
use paywire_core::{ChainProbe, LocalFacilitator, PluginEndpoint, PluginError, PluginRegistry};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{FacilitatorConfig, StoreLocation, StoreUrl};
use crate::error::SetupError;
use crate::ledger::Ledger;
use crate::ops::Endpoint;
use crate::server::{AppState, router};
use crate::settlement::recovery::spawn_reconciler;

/// The schemes and probes of every chain plugin the configuration's
/// `[[chains]]` tables name, with the declared extensions, ready to serve.
pub struct ChainParts {
    /// Every plugin's scheme facilitators, registered.
    pub facilitator: LocalFacilitator,
    /// Readiness and signer-balance probes, one per chain.
    pub probes: Vec<Arc<dyn ChainProbe>>,
    /// HTTP endpoints the plugins serve from the facilitator.
    pub endpoints: Vec<Arc<dyn PluginEndpoint>>,
}

impl std::fmt::Debug for ChainParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainParts")
            .field("probes", &self.probes.len())
            .finish_non_exhaustive()
    }
}

/// Routes the `[[chains]]` tables to the registered plugins (by the
/// namespace of their `network`) and builds each plugin's facilitator side.
/// Contacts no chain; every error names the table (`chains[2]`) and quotes
/// no secret.
pub async fn chain_parts(
    config: &FacilitatorConfig,
    plugins: &PluginRegistry,
) -> Result<ChainParts, SetupError> {
    if config.chains.is_empty() {
        return Err(crate::config::ConfigError::Invalid {
            field: "chains".into(),
            message: "no [[chains]] configured".into(),
        }
        .into());
    }
    let tables = config.chains.iter().map(|t| t.expose().clone()).collect();
    let routed = plugins
        .route_entries(tables, chain_at)
        .map_err(|error| name_the_table(config, plugins, error))?;
    let api_keys = config.api_keys()?;
    let mut facilitator = LocalFacilitator::new();
    let mut probes = Vec::new();
    let mut endpoints = Vec::new();
    for (plugin, entries) in routed {
        if entries.is_empty() {
            continue;
        }
        let mut plugin_config = paywire_core::FacilitatorConfig::default();
        plugin_config.entries = entries;
        plugin_config.settings = config.settlement_settings();
        plugin_config.settle_authenticated = api_keys.protects(Endpoint::Settle);
        plugin_config.api_key_ids = api_keys.ids();
        plugin_config.ledger = Some(ledger_location(config)?);
        let parts = plugin.facilitator(&plugin_config).await?;
        for scheme in parts.schemes {
            facilitator.register(scheme);
        }
        probes.extend(parts.probes);
        endpoints.extend(parts.endpoints);
        for extension in parts.extensions {
            facilitator.declare_extension(extension);
        }
    }
    Ok(ChainParts {
        facilitator,
        probes,
        endpoints,
    })
}

/// The ledger's location for plugins keeping state beside it
/// (`None`-equivalent for memory is the literal `:memory:`).
fn ledger_location(config: &FacilitatorConfig) -> Result<paywire_core::Secret, SetupError> {
    Ok(match config.store_location()? {
        StoreLocation::Sqlite(path) => paywire_core::Secret::new(path.display().to_string()),
        StoreLocation::Postgres(url) => paywire_core::Secret::new(url.expose()),
    })
}

/// Where `[[chains]]` table `index` is, in errors.
fn chain_at(index: usize) -> String {
    format!("chains[{index}]")
}

/// A routing error naming the first table whose network no plugin serves.
fn name_the_table(
    config: &FacilitatorConfig,
    plugins: &PluginRegistry,
    error: PluginError,
) -> SetupError {
    let PluginError::NoPlugin(network, _) = &error else {
        return error.into();
    };
    let resolves_to_it = |table: &crate::config::ChainTable| {
        table
            .network()
            .and_then(|name| plugins.networks().resolve(name).ok())
            .is_some_and(|id| id == *network)
    };
    match config.chains.iter().position(resolves_to_it) {
        Some(index) => {
            PluginError::config(format!("{}.network", chain_at(index)), error.to_string()).into()
        }
        None => error.into(),
    }
}

/// Opens the ledger and builds the facilitator: each `[[chains]]` table's
/// plugin gives its schemes and probes (see [`chain_parts`]),
/// `payment-identifier` is declared, and the bazaar catalog is kept when
/// enabled. Does not contact the chains: an unreachable RPC shows in
/// `/ready`, not as a startup error.
pub async fn build(
    config: &FacilitatorConfig,
    plugins: &PluginRegistry,
) -> Result<AppState, SetupError> {
    let ChainParts {
        mut facilitator,
        probes,
        endpoints,
    } = chain_parts(config, plugins).await?;
    let (ledger, ledger_pool) = open_ledger(config).await?;
    tracing::info!(store = ledger.kind(), "settlement ledger opened");
    if config.fault_injection.crash_after_broadcast {
        tracing::warn!(
            "FAULT INJECTION ENABLED: the process aborts after every settlement broadcast (test-only setting)"
        );
    }
    facilitator.declare_extension(PAYMENT_IDENTIFIER);
    let catalog = open_catalog(config, ledger_pool).await?;
    if catalog.is_some() {
        facilitator.declare_extension(BAZAAR);
    }
    let mut state = configured_state(config, Arc::new(facilitator), ledger)?
        .with_probes(probes)
        .with_endpoints(endpoints)?;
    if let Some(catalog) = catalog {
        if config.bazaar.confirm_private_addresses {
            tracing::warn!(
                "bazaar: origins on private and loopback addresses are fetched \
                 (confirm_private_addresses); use this on devnets only"
            );
        }
        let confirmer = paywire_bazaar::OriginConfirmer::new(config.bazaar.confirm_config())
            .map_err(|e| SetupError::Catalog(e.to_string()))?;
        state = state.with_catalog(catalog, confirmer);
    }
    // Startup recovery: finish what a previous process left open. Failures
    // (e.g. the RPC is down) are logged; the background task retries.
    let report = state.reconcile_all().await?;
    if report.examined > 0 {
        tracing::info!(?report, "startup reconciliation");
    }
    Ok(state)
}

/// The HTTP state with the configuration's settlement and operations
/// settings.
fn configured_state(
    config: &FacilitatorConfig,
    facilitator: Arc<dyn paywire_core::Facilitator>,
    ledger: Ledger,
) -> Result<AppState, SetupError> {
    let retention = Some(config.recovery.purge_unsent_failures_after_seconds)
        .filter(|&seconds| seconds > 0)
        .map(Duration::from_secs);
    Ok(AppState::new(facilitator, ledger)
        .with_body_limit(config.body_limit_bytes)
        .with_pending_recheck_after(config.receipt_timeout())
        .with_idempotent_retry_window(Duration::from_secs(config.idempotent_retry_window_seconds))
        .with_max_concurrent_settlements(config.max_concurrent_settlements)
        .with_unsent_failure_retention(retention)
        .with_api_keys(config.api_keys()?)
        .with_rate_limiters(
            config.rate_limit.per_ip_limiter(),
            config.rate_limit.per_payer_limiter(),
        )
        .with_reconciler(
            Duration::from_secs(config.recovery.interval_seconds),
            Duration::from_secs(config.recovery.min_age_seconds),
        ))
}

/// Serves the API on `listener` (with the background reconciler and the
/// rate limits' housekeeping) until
/// `shutdown` completes, then stops accepting, lets in-flight requests
/// answer, stops the reconciler and waits for every settlement still
/// running (even those whose client hung up).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SetupError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let housekeeping = state.spawn_rate_limit_housekeeping(stop_rx.clone());
    let (interval, min_age) = state.reconciler_settings();
    let settlements = state.settlements().clone();
    let reconciler =
        (!interval.is_zero()).then(|| spawn_reconciler(settlements, interval, min_age, stop_rx));
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let stop = Arc::clone(&stop_tx);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
    let _ = stop_tx.send(true);
    if let Some(reconciler) = reconciler {
        let _ = reconciler.await;
    }
    if let Some(housekeeping) = housekeeping {
        let _ = housekeeping.await;
    }
    state.drain().await;
    tracing::info!("all settlements finished; stopped");
    served?;
    Ok(())
}

/// Builds the service from `config` with `plugins`, listens on
/// `config.listen` and serves until Ctrl-C / SIGTERM.
pub async fn run(config: FacilitatorConfig, plugins: &PluginRegistry) -> Result<(), SetupError> {
    let state = build(&config, plugins).await?;
    let listener = TcpListener::bind(config.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "paywire facilitator listening");
    serve(listener, state, shutdown_signal()).await
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// The ledger the configuration names, and its PostgreSQL pool (if any), which
/// the bazaar catalog shares when it lives in the ledger's database.
async fn open_ledger(
    config: &FacilitatorConfig,
) -> Result<(Ledger, Option<paywire_store::postgres::PgPool>), SetupError> {
    Ok(match config.store_location()? {
        StoreLocation::Sqlite(path) => (
            Ledger::from_store(Arc::new(sqlite_ledger(&path, config).await?)),
            None,
        ),
        StoreLocation::Postgres(url) => {
            let store = crate::PostgresStore::connect(url.expose()).await?;
            let pool = store.pool().clone();
            (Ledger::from_store(Arc::new(store)), Some(pool))
        }
    })
}

/// The ledger in the SQLite file at `path`, opened with the configuration's
/// connection settings.
async fn sqlite_ledger(
    path: &std::path::Path,
    config: &FacilitatorConfig,
) -> Result<crate::SqliteStore, crate::LedgerError> {
    crate::SqliteStore::open_with(path, config.sqlite_options()).await
}

/// The bazaar catalog in the SQLite file at `path`, opened with the
/// configuration's connection settings.
async fn sqlite_catalog(
    path: impl AsRef<std::path::Path>,
    config: &FacilitatorConfig,
) -> Result<paywire_bazaar::SqliteCatalog, paywire_bazaar::CatalogError> {
    let handle = paywire_store::sqlite::SqliteHandle::open_with(path, config.sqlite_options())
        .await
        .map_err(paywire_bazaar::CatalogError::from)?;
    paywire_bazaar::SqliteCatalog::from_handle(handle).await
}

/// The bazaar catalog the configuration asks for, if any.
async fn open_catalog(
    config: &FacilitatorConfig,
    ledger_pool: Option<paywire_store::postgres::PgPool>,
) -> Result<Option<Arc<dyn paywire_bazaar::Catalog>>, SetupError> {
    if !config.bazaar.enabled {
        return Ok(None);
    }
    let failed = |e: paywire_bazaar::CatalogError| SetupError::Catalog(e.to_string());
    let is_postgres = |s: &str| s.starts_with("postgres://") || s.starts_with("postgresql://");
    let store = config.bazaar.store.as_ref().map(StoreUrl::expose);
    let catalog: Arc<dyn paywire_bazaar::Catalog> = match (store, config.store_location()?) {
        (Some("memory"), _) => Arc::new(paywire_bazaar::MemoryCatalog::new()),
        (Some(store), _) if is_postgres(store) => Arc::new(
            paywire_bazaar::PostgresCatalog::connect(store)
                .await
                .map_err(failed)?,
        ),
        (Some(store), _) => Arc::new(
            sqlite_catalog(store.strip_prefix("sqlite://").unwrap_or(store), config)
                .await
                .map_err(failed)?,
        ),
        (None, StoreLocation::Sqlite(path)) => {
            Arc::new(sqlite_catalog(&path, config).await.map_err(failed)?)
        }
        // In the ledger's database: one pool for both (one connection budget).
        (None, StoreLocation::Postgres(url)) => Arc::new(
            match ledger_pool {
                Some(pool) => paywire_bazaar::PostgresCatalog::from_pool(pool).await,
                None => paywire_bazaar::PostgresCatalog::connect(url.expose()).await,
            }
            .map_err(failed)?,
        ),
    };
    tracing::info!("bazaar catalog opened");
    Ok(Some(catalog))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration's page cache reaches the ledger's and the catalog's
    /// connections (the paths `open_ledger` and `open_catalog` take for SQLite).
    #[tokio::test]
    async fn sqlite_ledger_and_catalog_take_the_configured_page_cache()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("ledger.sqlite");
        let config = FacilitatorConfig::parse_with_env(
            &format!(
                "store = \"{}\"\nsqlite_page_cache_kib = 1024\n",
                file.display()
            ),
            |_| None,
        )?;
        let ledger = sqlite_ledger(&file, &config).await?;
        assert_eq!(ledger.cache_size().await?, -1024);
        let catalog = sqlite_catalog(&file, &config).await?;
        let size = catalog
            .handle()
            .call(|c| c.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0)))
            .await?;
        assert_eq!(size, -1024);
        Ok(())
    }
}
