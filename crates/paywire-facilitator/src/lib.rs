//! # paywire-facilitator
//!
//! An x402 v2 facilitator service:
//!
//! - [`server`]: the HTTP API (`POST /verify`, `POST /settle`,
//!   `GET /supported`, `/health`, `/ready`, `/metrics`) around any
//!   [`paywire_core::Facilitator`];
//! - [`config`]: the TOML configuration with `${ENV_VAR}` substitution;
//! - [`ledger`]: the settlement ledger (idempotency, audit trail,
//!   `payment-identifier` binding) behind a store trait: SQLite by default,
//!   [`postgres`] for several instances sharing one database;
//! - [`metrics`]: Prometheus counters and a settle latency histogram;
//! - [`recovery`]: hashes recorded before broadcast, and reconciliation of
//!   unfinished settlements at startup and in the background;
//! - [`ops`]: API keys and rate limits;
//! - replay refusal: a settle of a payload whose outcome was already
//!   delivered fails (`success: false`) unless it is an idempotent retry
//!   within `idempotent_retry_window_seconds`: by the same API key when the
//!   answer went to one, else with the same payment identifier.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paywire_facilitator::SetupError> {
//! let config = paywire_facilitator::FacilitatorConfig::load("facilitator.toml".as_ref())?;
//! paywire_facilitator::run(config).await
//! # }
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod ledger;
pub mod metrics;
pub mod ops;
pub mod postgres;
pub mod recovery;
pub mod server;
mod settlement;
mod setup;
mod wire;

pub use config::{ConfigError, FacilitatorConfig, example_config};
pub use error::{ApiError, SetupError};
pub use ledger::{
    Delivery, Ledger, LedgerError, LedgerStore, SettlementRecord, SettlementState, SqliteStore,
    StoreLock,
};
pub use ops::{ApiKeys, Endpoint};
pub use postgres::PostgresStore;
pub use recovery::{LedgerObserver, ReconcileReport};
pub use server::{AppState, CallerKey, ChainProbe, router};
pub use settlement::{REPLAY_REFUSAL_MESSAGE, REPLAY_REFUSAL_PREFIX};
pub use setup::{build, run, serve, shutdown_signal};
