//! # paywire-facilitator
//!
//! An x402 v2 facilitator service that knows no chain: the chain plugins a
//! composition root registers (e.g. `paywire_evm::EvmPlugin`) settle, each
//! from its own `[[chains]]` tables.
//!
//! - [`settlement`]: the settlement state machine as a
//!   [`paywire_core::Facilitator`] decorator ([`LedgeredFacilitator`]):
//!   ledger, replay refusal, delivery records, recovery and the reconciler;
//! - [`ledger`]: the settlement ledger behind a store trait: SQLite by
//!   default ([`SqliteStore`]), [`PostgresStore`] for several instances
//!   sharing one database;
//! - [`server`]: the HTTP API (`POST /verify`, `POST /settle`,
//!   `GET /supported`, `/health`, `/ready`, `/metrics`, bazaar discovery), a
//!   thin layer over the state machine;
//! - [`config`]: the TOML configuration with `${ENV_VAR}` substitution;
//! - [`metrics`]: Prometheus counters and a settle latency histogram;
//! - [`ops`]: API keys and rate limits;
//! - replay refusal: a settle of a payload whose outcome was already
//!   delivered fails (`success: false`) unless it is an idempotent retry
//!   within `idempotent_retry_window_seconds`: by the same API key when the
//!   answer went to one, else with the same payment identifier.
//!
//! ```no_run
//! # async fn demo(plugins: paywire_core::PluginRegistry) -> Result<(), paywire_facilitator::SetupError> {
//! let config = paywire_facilitator::FacilitatorConfig::load("facilitator.toml".as_ref())?;
//! paywire_facilitator::run(config, &plugins).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod ledger;
pub mod metrics;
pub mod ops;
pub mod postgres;
pub mod server;
pub mod settlement;
mod setup;
pub mod sqlite;
pub mod store;
mod wire;

pub use config::{ChainTable, ConfigError, FacilitatorConfig, example_config};
pub use error::{ApiError, SetupError};
pub use ledger::{
    Delivery, Ledger, LedgerError, LedgerStore, PoolStatus, SettlementRecord, SettlementState,
    SqliteStore, StoreLock,
};
pub use ops::{ApiKeys, Endpoint};
pub use paywire_core::RuntimeConfig;
pub use postgres::PostgresStore;
pub use server::{AppState, CallerKey, router};
pub use settlement::recovery::{LedgerObserver, ReconcileReport};
pub use settlement::{
    Caller, LedgeredFacilitator, REPLAY_REFUSAL_MESSAGE, REPLAY_REFUSAL_PREFIX, SettlementError,
};
pub use setup::{ChainParts, build, chain_parts, run, serve, shutdown_signal};
