//! # paywire-client
//!
//! Pay for x402-protected HTTP resources:
//!
//! - [`X402Client`]: registered wallets (one [`paywire_core::SchemeClient`] per
//!   scheme and network pattern), a declarative [`SelectionPolicy`] ("prefer
//!   Solana, avoid mainnet, only USDC, at most $0.05"), the cheapest eligible
//!   option by value, a persisted [`Budget`], and hooks;
//! - [`X402Client::send`] for a plain `reqwest::Client`, and
//!   [`X402Middleware`] for `reqwest-middleware` stacks.
//!
//! A retried paid request reuses the same signed payment (and its
//! `payment-identifier` id): never a second signature for one request. Once
//! a signed payment has been sent, the budget counts it until it is settled
//! or a [`SpendProbe`] proves it unspent, whatever the server answered.

#![warn(missing_docs)]

mod budget;
mod client;
mod middleware;
mod policy;
mod redirect;
mod spend;

pub use budget::{Budget, BudgetError, BudgetRule, BudgetScope, Reconciliation, Reservation};
pub use client::{
    ClientError, DEFAULT_MAX_402_BODY, PaymentHooks, PaymentOutcome, PaymentStatus,
    PreparedPayment, SignInProvider, X402Client, X402ClientBuilder, payment_required_from,
    random_id,
};
pub use middleware::X402Middleware;
pub use policy::{
    AssetCatalog, AssetInfo, Catalogs, DEFAULT_MAX_TIMEOUT_SECONDS, Exclusion, PriceCap, Selection,
    SelectionPolicy, StaticCatalog, Verdict,
};
pub use spend::{SpendProbe, SpendState};
