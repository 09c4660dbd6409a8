//! The seam between the settlement engine and the asset transfer methods.
//!
//! The engine (per-chain signers and their nonces, sending, re-broadcast,
//! receipt waiting, `pending` answers, the observer's `before_broadcast`,
//! the attempts that a re-run waits for) knows nothing of how a payment
//! moves tokens. What does depend on the method (which payload it reads,
//! which contract the settlement calls with which calldata, what a receipt
//! must show, what identifies the spent authorization) sits behind
//! [`Settlement`], implemented by EIP-3009 (`transferWithAuthorization` on
//! the token) and by Permit2 (the x402 proxies of `exact` and `upto`).

use alloy_primitives::{Address, B256};
use paywire_core::{BoxFuture, ChainId, PaymentRequirements, SchemeError, SettleResponse};

use super::{ChainState, ExactEvmFacilitator, Outcome, Proxy};
use crate::exact::inflight::AuthorizationKey;
use crate::rpc::Receipt;

/// The asset transfer method of a payment: which half reads, checks and
/// settles it (parsing, rules, simulation, settlement call, "already
/// spent?" read, spend key, crash lookup), over the shared engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransferMethod {
    /// EIP-3009 `transferWithAuthorization` on the token (`verify`,
    /// `lookup`, `resume`, `reconcile`).
    Eip3009,
    /// Permit2 `permitWitnessTransferFrom` through an x402 proxy (`permit2`).
    Permit2(Proxy),
}

impl TransferMethod {
    /// The method `exact` requirements ask for: Permit2 when
    /// `extra.assetTransferMethod` is `"permit2"`, else EIP-3009 (whose
    /// checks refuse any other value).
    pub(super) fn of_exact(requirements: &PaymentRequirements) -> Self {
        match requirements.extra_str("assetTransferMethod") {
            Some(crate::permit2::PERMIT2_METHOD) => Self::Permit2(Proxy::Exact),
            _ => Self::Eip3009,
        }
    }
}

/// One payment under settlement, as the engine drives it.
pub(super) trait Settlement: Sync {
    /// The chain it settles on.
    fn chain(&self) -> &ChainState;

    /// Its network, for answers.
    fn network(&self) -> &ChainId;

    /// What it spends (its attempts and its lock are keyed on it).
    fn key(&self) -> AuthorizationKey;

    /// Who pays.
    fn payer(&self) -> Address;

    /// The settlement's answer from its transaction's mined receipt: the
    /// receipt alone is no proof, the token's exact `Transfer` event is.
    fn judge<'a>(
        &'a self,
        engine: &'a ExactEvmFacilitator,
        hash: B256,
        receipt: &'a Receipt,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>>;
}

/// EIP-3009: the token's `transferWithAuthorization`.
impl Settlement for Outcome<'_> {
    fn chain(&self) -> &ChainState {
        self.chain
    }

    fn network(&self) -> &ChainId {
        self.network
    }

    fn key(&self) -> AuthorizationKey {
        Outcome::key(self)
    }

    fn payer(&self) -> Address {
        self.payload.authorization.from
    }

    fn judge<'a>(
        &'a self,
        engine: &'a ExactEvmFacilitator,
        hash: B256,
        receipt: &'a Receipt,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        Box::pin(engine.judge_receipt(self, hash, receipt))
    }
}
