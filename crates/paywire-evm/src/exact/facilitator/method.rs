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
use paywire_core::{BoxFuture, ChainId, SchemeError, SettleResponse};

use super::{ChainState, ExactEvmFacilitator, Outcome};
use crate::exact::inflight::AuthorizationKey;
use crate::rpc::Receipt;

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
