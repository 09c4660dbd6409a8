//! # paywire-client
//!
//! Pay for x402-protected resources:
//!
//! - [`X402Client`]: registered wallets (one [`paywire_core::SchemeClient`] per
//!   scheme and network pattern), a declarative [`SelectionPolicy`] ("prefer
//!   Solana, avoid mainnet, only USDC, at most $0.05"), the cheapest eligible
//!   option by value, a persisted [`Budget`], and hooks;
//! - [`flow`]: the payment flow over any transport ([`PaymentTransport`],
//!   run by [`X402Client::pay_through`]): offer, policy, budget, signature,
//!   re-sends of the same payment, receipt;
//! - with the `reqwest` feature (default), its HTTP adapters:
//!   [`X402Client::send`] for a plain `reqwest::Client`, and
//!   [`X402Middleware`] for `reqwest-middleware` stacks.
//!
//! A retried paid request reuses the same signed payment (and its
//! `payment-identifier` id): never a second signature for one request. Once
//! a signed payment has been sent, the budget counts it until it is settled
//! or a [`SpendProbe`] proves it unspent, whatever the server answered.

#![forbid(unsafe_code)]

mod budget;
mod client;
pub mod flow;
#[cfg(feature = "reqwest")]
mod http;
#[cfg(feature = "reqwest")]
mod middleware;
mod policy;
#[cfg(feature = "reqwest")]
mod redirect;
#[cfg(test)]
mod testing;

pub use budget::{Budget, BudgetError, BudgetRule, BudgetScope, Reconciliation, Reservation};
pub use client::{
    ClientError, DEFAULT_MAX_402_BODY, PaymentHooks, PaymentOutcome, PaymentStatus,
    PreparedPayment, X402Client, X402ClientBuilder, random_id,
};
pub use flow::{
    AnswerFields, AnswerStatus, Credential, Delivered, Hop, PaymentTransport, SignInProvider,
    TransportError,
};
#[cfg(feature = "reqwest")]
pub use http::payment_required_from;
#[cfg(feature = "reqwest")]
pub use middleware::X402Middleware;
pub use paywire_core::{SpendProbe, SpendState};
pub use policy::{
    AssetCatalog, AssetInfo, Catalogs, DEFAULT_MAX_TIMEOUT_SECONDS, Exclusion, PriceCap, Selection,
    SelectionPolicy, StaticCatalog, Verdict,
};
