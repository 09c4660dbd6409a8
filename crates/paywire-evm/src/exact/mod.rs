//! The `exact` scheme on EVM chains, EIP-3009 (`transferWithAuthorization`)
//! asset transfer method.

mod client;
mod facilitator;
pub(crate) mod inflight;
mod lookup;
mod payload;
mod receipts;
mod reconcile;
mod server;
mod spend;

pub use client::{ExactEvmClient, NonceSource};
pub use facilitator::{
    CounterfactualWallets, EvmChainConfig, ExactEvmFacilitator, ExactEvmFacilitatorBuilder,
};
pub(crate) use facilitator::{Proxy, facilitator_parts, permit2_spend_key};
pub use payload::{Authorization, ExactEvmPayload, eip712_domain, signing_hash};
pub use server::ExactEvmServer;
pub use spend::ExactEvmSpendProbe;

/// Scheme identifier.
pub const SCHEME: &str = "exact";

/// Clock returning Unix seconds; injectable so tests can move time.
pub type Clock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    })
}
