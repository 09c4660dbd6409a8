//! Building and running the service from a [`FacilitatorConfig`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use paywire_core::LocalFacilitator;
use paywire_core::extensions::{BAZAAR, PAYMENT_IDENTIFIER};
use paywire_evm::exact::{CounterfactualWallets, EvmChainConfig, ExactEvmFacilitator};
use paywire_evm::rpc::RpcClient;
use paywire_evm::{EvmSigner, LocalSigner};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{FacilitatorConfig, StoreLocation, StoreUrl};
use crate::error::SetupError;
use crate::ledger::Ledger;
use crate::ops::Endpoint;
use crate::recovery::spawn_reconciler;
use crate::server::{AppState, ChainProbe, router};

/// Opens the ledger and builds the facilitator (the `exact` EVM scheme on
/// every configured chain, `payment-identifier` declared, the bazaar catalog
/// when enabled). Does not contact
/// the chains: an unreachable RPC shows in `/ready`, not as a startup error.
pub async fn build(config: &FacilitatorConfig) -> Result<AppState, SetupError> {
    if config.chains.is_empty() {
        return Err(crate::config::ConfigError::Invalid {
            field: "chains".into(),
            message: "no [[chains]] configured".into(),
        }
        .into());
    }
    let ledger = match config.store_location()? {
        StoreLocation::Sqlite(path) => Ledger::open(&path).await?,
        StoreLocation::Postgres(url) => Ledger::connect_postgres(url.expose()).await?,
    };
    tracing::info!(store = ledger.kind(), "settlement ledger opened");
    let api_keys = config.api_keys()?;
    if config.fault_injection.crash_after_broadcast {
        tracing::warn!(
            "FAULT INJECTION ENABLED: the process aborts after every settlement broadcast (test-only setting)"
        );
    }
    let mut builder = ExactEvmFacilitator::builder()
        .valid_before_buffer(Duration::from_secs(config.valid_before_buffer_seconds))
        .receipt_timeout(config.receipt_timeout())
        .rebroadcast_interval(Duration::from_secs(
            config.rebroadcast_interval_seconds.max(1),
        ))
        .crash_after_broadcast(config.fault_injection.crash_after_broadcast);
    let mut probes = Vec::with_capacity(config.chains.len());
    for index in 0..config.chains.len() {
        let chain = config.resolve_chain(index)?;
        let network = chain.network.chain.to_string();
        let rpc = RpcClient::new(
            chain
                .rpc_urls
                .iter()
                .map(|u| u.expose().to_owned())
                .collect(),
            Duration::from_secs(config.rpc_timeout_seconds),
        )
        .map_err(|e| SetupError::Chain {
            network: network.clone(),
            message: e.to_string(),
        })?;
        let rpc = Arc::new(rpc);
        let mut signers: Vec<Arc<dyn EvmSigner>> = Vec::new();
        for (n, key) in chain.signer_private_keys.iter().enumerate() {
            // Never echo the key (or the parser's view of it) in the error.
            let signer =
                LocalSigner::from_hex(key.expose().trim()).map_err(|_| SetupError::Chain {
                    network: network.clone(),
                    message: format!("signer_private_keys[{n}] is not a valid hex private key"),
                })?;
            tracing::info!(%network, signer = %signer.address(), "settlement signer loaded");
            signers.push(Arc::new(signer));
        }
        probes.push(ChainProbe {
            network: chain.network.chain.clone(),
            chain_id: chain.network.chain_id,
            rpc: Arc::clone(&rpc),
            signers: signers.iter().map(|s| s.address()).collect(),
        });
        let mut evm = EvmChainConfig::new(chain.network, rpc, signers);
        evm.gas_limit = chain.gas_limit;
        evm.max_fee_per_gas = chain.max_fee_per_gas;
        evm.max_priority_fee_per_gas = chain.max_priority_fee_per_gas;
        evm.counterfactual_wallets = chain.counterfactual_wallets;
        evm.max_wallet_deployment_gas = chain.max_wallet_deployment_gas;
        evm.log_range_blocks = chain.log_range_blocks;
        evm.reconcile_lookback = chain.reconcile_lookback;
        if chain.counterfactual_wallets == CounterfactualWallets::Deploy
            && !api_keys.protects(Endpoint::Settle)
        {
            tracing::warn!(%network,
                "counterfactual wallet deployments are on while /settle needs no API key: anyone can make this facilitator pay for deployments (up to max_wallet_deployment_gas each)");
        }
        builder = builder.chain(evm);
    }
    let exact = builder.build().map_err(|e| SetupError::Chain {
        network: "*".into(),
        message: e.to_string(),
    })?;
    let mut facilitator = LocalFacilitator::new();
    facilitator.register(Arc::new(exact));
    facilitator.declare_extension(PAYMENT_IDENTIFIER);
    let catalog = open_catalog(config).await?;
    if catalog.is_some() {
        facilitator.declare_extension(BAZAAR);
    }
    let mut state = AppState::new(Arc::new(facilitator), ledger)
        .with_body_limit(config.body_limit_bytes)
        .with_pending_recheck_after(config.receipt_timeout())
        .with_idempotent_retry_window(Duration::from_secs(config.idempotent_retry_window_seconds))
        .with_max_concurrent_settlements(config.max_concurrent_settlements)
        .with_unsent_failure_retention(
            Some(config.recovery.purge_unsent_failures_after_seconds)
                .filter(|&seconds| seconds > 0)
                .map(Duration::from_secs),
        )
        .with_probes(probes)
        .with_api_keys(api_keys)
        .with_rate_limits(
            config.rate_limit.per_ip_per_minute,
            config.rate_limit.per_payer_per_minute,
        )
        .with_reconciler(
            Duration::from_secs(config.recovery.interval_seconds),
            Duration::from_secs(config.recovery.min_age_seconds),
        );
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

/// Serves the API on `listener` (with the background reconciler) until
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
    let (interval, min_age) = state.reconciler_settings();
    let reconciler =
        (!interval.is_zero()).then(|| spawn_reconciler(state.clone(), interval, min_age, stop_rx));
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
    state.drain().await;
    tracing::info!("all settlements finished; stopped");
    served?;
    Ok(())
}

/// Builds the service from `config`, listens on `config.listen` and serves
/// until Ctrl-C / SIGTERM.
pub async fn run(config: FacilitatorConfig) -> Result<(), SetupError> {
    let state = build(&config).await?;
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

/// The bazaar catalog the configuration asks for, if any.
async fn open_catalog(
    config: &FacilitatorConfig,
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
            paywire_bazaar::SqliteCatalog::open(store.strip_prefix("sqlite://").unwrap_or(store))
                .map_err(failed)?,
        ),
        (None, StoreLocation::Sqlite(path)) => {
            Arc::new(paywire_bazaar::SqliteCatalog::open(&path).map_err(failed)?)
        }
        (None, StoreLocation::Postgres(url)) => Arc::new(
            paywire_bazaar::PostgresCatalog::connect(url.expose())
                .await
                .map_err(failed)?,
        ),
    };
    tracing::info!("bazaar catalog opened");
    Ok(Some(catalog))
}
