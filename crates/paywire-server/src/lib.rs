//! # paywire-server
//!
//! Resource-server side of the x402 v2 payment protocol. Knows no chain:
//! scheme servers come from plugins (`ChainPlugin::server`) or are
//! registered directly.
//!
//! - [`PaymentGate`] ([`gate`]): the transport-neutral payment pipeline —
//!   route and price → 402, or decode → match `accepted` → verify → reserve
//!   → run the handler (held back) → settle (or settle first) → receipt,
//!   serving the reply only after an explicit `success: true` settlement.
//!   Transports (HTTP, MCP) are adapters over it.
//! - [`PaymentLayer`] / [`PaymentService`]: the HTTP adapter, a tower layer
//!   usable with `axum::Router::layer`.
//! - [`Route`], [`PaymentOption`], [`PriceSpec`], [`PayToSpec`]: per-route
//!   configuration with fixed or dynamic prices and pay-to roles.
//! - [`Usage`], [`MissingUsage`]: usage-based prices (`upto`): the handler
//!   reports what a request used and the gate settles that, at most the
//!   authorized maximum.
//! - [`PaymentHooks`]: observation points, `grant_access` / `check_access`
//!   (serve without payment) and extensions added to every 402.
//! - [`ReservationStore`] / [`InMemoryReservationStore`]: atomic single use of
//!   a payment across concurrent requests; a payment whose settlement outcome
//!   is unknown (facilitator timeout, `pending`) is kept so that a retry with
//!   the same payload gets what was paid for once settlement is final.
//! - [`SqliteReservationStore`]: the same, shared between processes on one
//!   host and persisted across restarts; [`PostgresReservationStore`] for
//!   several instances behind a load balancer.
//! - [`HttpFacilitator`] and [`FacilitatorRouter`]: remote facilitators and
//!   preference-ordered routing with failover.
//! - [`normalize_path`]: the one path normalization used to price and to
//!   forward a request (dot segments, percent-encoding, `//`); paths that
//!   cannot be normalized safely are refused with 400.
//!
//! The no-code reverse proxy (`paywire gateway`) is the `paywire-gateway`
//! crate.

#![forbid(unsafe_code)]

mod config;
mod context;
mod error;
mod extensions;
pub mod gate;
mod hooks;
mod http_facilitator;
pub mod layer;
mod path;
mod paywall;
mod postgres;
mod proof;
mod reservation;
mod response_cache;
mod responses;
mod router;
mod settlement;
mod sqlite;
mod usage;

pub use config::{
    DynamicPayTo, DynamicPrice, PayTo, PayToResolver, PayToSpec, PaymentOption, PendingPolicy,
    PriceSpec, Route, RoutePattern, SettleMode, money,
};
pub use context::RequestContext;
pub use error::{ConfigError, PricingError};
pub use gate::{
    DEFAULT_MAX_PAID_RESPONSE_BYTES, DEFAULT_MAX_PAID_RESPONSE_BYTES_IN_FLIGHT, PaymentGate,
    PaymentGateBuilder,
};
pub use hooks::{AccessDecision, HookVerdict, NoHooks, PaymentFailure, PaymentHooks};
pub use http_facilitator::{
    DEFAULT_FACILITATOR_TIMEOUT, HttpFacilitator, HttpFacilitatorBuilder, request_not_sent,
};
pub use layer::{PaymentLayer, PaymentLayerBuilder, PaymentService};
pub use path::{MAX_PATH_BYTES, NormalizedPath, PathError, normalize_path};
pub use postgres::PostgresReservationStore;
pub use reservation::{
    InMemoryReservationStore, PayloadFingerprint, ReservationError, ReservationKey,
    ReservationStore, ReserveOutcome,
};
pub use router::FacilitatorRouter;
pub use sqlite::SqliteReservationStore;
pub use usage::{MissingUsage, Usage, UsageError};
