//! The facilitator side of `upto` on EVM chains: a second front-end over
//! the `exact` facilitator's engine (the same chains, signers and nonce
//! managers), settling through the `x402UptoPermit2Proxy`.
//!
//! At verification `requirements.amount` is the signed maximum; at
//! settlement it is the amount actually charged (at most the maximum, maybe
//! zero). A zero settlement sends nothing and still spends the
//! authorization: a second settlement of it, whatever the amount, is a
//! replay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use paywire_core::{
    BoxFuture, ChainId, ErrorReason, JsonObject, NoObserver, PaymentPayload, PaymentRequirements,
    SchemeError, SchemeFacilitator, SettleResponse, SettlementLookup, SettlementObserver,
    VerifyResponse,
};

use crate::exact::inflight::KeyedLocks;
use crate::exact::{ExactEvmFacilitator, Proxy, permit2_spend_key};
use crate::reasons;

/// Scheme identifier of usage-based payments.
pub const UPTO_SCHEME: &str = "upto";

/// Verifies and settles `upto` Permit2 payments on the chains of an
/// [`ExactEvmFacilitator`], sharing its signers.
pub struct UptoEvmFacilitator {
    engine: Arc<ExactEvmFacilitator>,
    /// Authorizations settled for zero (nothing went on chain, so their
    /// Permit2 nonce is still open there), by spend key, with their deadline.
    zero_settled: Mutex<HashMap<String, u64>>,
    /// One lock per spend key around a whole settlement, so the zero
    /// settlements above are checked and recorded atomically.
    settling: KeyedLocks<String>,
}

impl UptoEvmFacilitator {
    /// The `upto` front-end of `engine`.
    pub fn new(engine: Arc<ExactEvmFacilitator>) -> Self {
        Self {
            engine,
            zero_settled: Mutex::new(HashMap::new()),
            settling: KeyedLocks::default(),
        }
    }

    fn zero_settled(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.zero_settled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a zero settlement of `key`, forgetting those whose deadline
    /// passed (their signature can no longer be executed anyway).
    fn record_zero(&self, key: String, deadline: u64) {
        let now = self.engine.now();
        let mut settled = self.zero_settled();
        settled.retain(|_, until| *until >= now);
        settled.insert(key, deadline);
    }

    async fn settle_once(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        observer: &dyn SettlementObserver,
    ) -> Result<SettleResponse, SchemeError> {
        let key = permit2_spend_key(payload, requirements);
        let _guard = match &key {
            Some(key) => Some(self.settling.lock(key.clone()).await),
            None => None,
        };
        if let Some(key) = &key
            && self.zero_settled().contains_key(key)
        {
            let message = "this authorization was already settled (for zero)";
            return Ok(SettleResponse::failed(
                requirements.network.clone(),
                self.replay_reason(),
                None,
                "",
            )
            .with_message(message));
        }
        let response = self
            .engine
            .permit2_settle(payload, requirements, Proxy::Upto, observer)
            .await?;
        if response.success
            && response.transaction.is_empty()
            && let Some(key) = key
        {
            let deadline = crate::permit2::Permit2Payload::from_json(&payload.payload)
                .ok()
                .and_then(|p| u64::try_from(p.permit2_authorization.deadline.as_u256()).ok())
                .unwrap_or(u64::MAX);
            self.record_zero(key, deadline);
        }
        Ok(response)
    }
}

impl SchemeFacilitator for UptoEvmFacilitator {
    fn scheme(&self) -> &str {
        UPTO_SCHEME
    }

    fn networks(&self) -> Vec<ChainId> {
        self.engine.networks()
    }

    /// `{"facilitatorAddress": …}`: the chain's first settlement signer
    /// (checksummed), which clients bind into the witness.
    fn kind_extra(&self, network: &ChainId) -> Option<JsonObject> {
        let first = self.engine.signers(network).into_iter().next()?;
        let mut extra = JsonObject::new();
        extra.insert("facilitatorAddress".into(), first.into());
        Some(extra)
    }

    fn signers(&self, network: &ChainId) -> Vec<String> {
        self.engine.signers(network)
    }

    fn verify<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<VerifyResponse, SchemeError>> {
        Box::pin(
            self.engine
                .permit2_verify(payload, requirements, Proxy::Upto),
        )
    }

    fn settle<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        self.settle_observed(payload, requirements, &NoObserver)
    }

    /// `eip155:<chain>:<permit2>:<owner>:<nonce>`: Permit2 nonces belong to
    /// the owner across tokens, and `exact` Permit2 payments share them.
    fn spend_key(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<String> {
        permit2_spend_key(payload, requirements)
    }

    fn replay_reason(&self) -> ErrorReason {
        reasons::PERMIT2_INVALID_NONCE
    }

    fn authenticated_payer(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<String> {
        self.engine.permit2_payer(payload, requirements)
    }

    fn lookup_settlement<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        known_transaction: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SettlementLookup>, SchemeError>> {
        Box::pin(
            self.engine
                .permit2_lookup(payload, requirements, Proxy::Upto, known_transaction),
        )
    }

    fn settle_observed<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        observer: &'a dyn SettlementObserver,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        Box::pin(self.settle_once(payload, requirements, observer))
    }
}
