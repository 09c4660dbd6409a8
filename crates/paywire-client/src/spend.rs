//! Asking the chain whether a signed authorization was spent, so that the
//! budget can stop counting an authorization that can no longer move funds.

use paywire_core::{BoxFuture, PaymentPayload};

/// What the chain says about the authorization inside a payment payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendState {
    /// Executed on chain: the payment was settled.
    Spent,
    /// Not executed, and it never can be any more: its validity window has
    /// closed and the chain reports it unused.
    Unspent,
    /// Not decided: still valid and unused, a payload this probe does not
    /// know, or the chain could not be read. The budget keeps counting it.
    Unknown,
}

/// A chain-specific check of payment payloads (one implementation per
/// scheme family, e.g. `paywire_evm::exact::ExactEvmSpendProbe` for EIP-3009).
///
/// The budget only releases an authorization on [`SpendState::Unspent`], so
/// an implementation must answer it only when the authorization can provably
/// never be executed; when in doubt it answers [`SpendState::Unknown`].
pub trait SpendProbe: Send + Sync {
    /// Whether `payload`'s authorization was spent.
    fn probe<'a>(&'a self, payload: &'a PaymentPayload) -> BoxFuture<'a, SpendState>;
}
