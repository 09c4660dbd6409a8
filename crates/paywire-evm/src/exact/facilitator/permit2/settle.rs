//! Settlement and crash lookup of Permit2 payments on the shared engine:
//! one lock per Permit2 (owner, nonce), a re-run waits for the transaction
//! already under way, the proxy call is sent from the signer the method
//! needs, and the receipt's exact `Transfer` event is the truth.

use std::time::Instant;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use paywire_core::{
    ChainId, PaymentPayload, PaymentRequirements, SchemeError, SettleResponse, SettlementLookup,
    SettlementObserver,
};
use serde_json::json;

use super::super::method::Settlement;
use super::super::resume::{InFlight, Revived};
use super::super::{ChainState, ExactEvmFacilitator, Rejection, chain_error, failure, reject};
use super::{Permit2Outcome, Permit2Verified, Phase, Proxy, Sponsor, permit2_key, settle_calldata};
use crate::Eip155ChainId;
use crate::contracts::IPermit2;
use crate::exact::inflight::{Attempt, Broadcast};
use crate::permit2::{PERMIT2_ADDRESS, Permit2Payload};
use crate::reasons;
use crate::signer::EvmSigner;

impl ExactEvmFacilitator {
    /// Settles a Permit2 payment through `proxy`, reporting each broadcast
    /// to `observer` first. `upto` settles `requirements.amount` (zero:
    /// nothing is sent).
    pub(crate) async fn permit2_settle(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        proxy: Proxy,
        observer: &dyn SettlementObserver,
    ) -> Result<SettleResponse, SchemeError> {
        let network = &requirements.network;
        let chain = network.eip155_id().and_then(|id| self.chains.get(&id));
        let parsed = Permit2Payload::from_json(&payload.payload).ok();
        // Serialise settles of one Permit2 nonce (any token, either proxy).
        let _guard = match (chain, &parsed) {
            (Some(chain), Some(parsed)) => {
                let key = permit2_key(&parsed.permit2_authorization);
                Some(chain.authorizations.lock(key).await)
            }
            _ => None,
        };
        let deadline = Instant::now() + self.receipt_timeout;
        if let (Some(chain), Some(parsed)) = (chain, &parsed)
            && let Some(answer) = self
                .permit2_resume(chain, parsed, requirements, proxy, deadline, observer)
                .await?
        {
            return Ok(answer);
        }
        let verified = match self
            .permit2_check(payload, requirements, proxy, Phase::Settle)
            .await?
        {
            Ok(verified) => verified,
            Err(rejection) => {
                return self
                    .permit2_refused(rejection, payload, requirements, proxy)
                    .await;
            }
        };
        let auth = &verified.payload.permit2_authorization;
        let outcome = Permit2Outcome {
            chain: verified.chain,
            network,
            key: permit2_key(auth),
            payer: auth.from,
            asset: verified.asset,
            pay_to: auth.witness.to,
            amount: verified.amount,
            proxy,
            authorization: auth.clone(),
        };
        if verified.amount.is_zero() {
            // Nothing used, nothing charged: no transaction (the facilitator's
            // ledger still counts the authorization as spent).
            return Ok(outcome.settled_without_transaction());
        }
        let sent = match self
            .permit2_broadcast(&verified, deadline, observer)
            .await?
        {
            Ok(sent) => sent,
            Err(rejection) => return Ok(failure(network, rejection, String::new())),
        };
        self.await_outcome(&outcome, sent.hash, Some(&sent.raw), deadline)
            .await
    }

    /// Settlement of a payment that verification refused: nothing is sent.
    /// An `exact` payment whose nonce is used, or whose deadline passed
    /// with its nonce used, is first looked for on chain: when another
    /// transaction executed this very payment (front-run), the payer was
    /// charged and the answer says so, with that transaction. Only a payment
    /// its payer signed is looked for (the search reads many blocks): the
    /// nonce refusal comes after the signature check (ECDSA or EIP-1271),
    /// the deadline's before it, so there only an ECDSA signature counts.
    async fn permit2_refused(
        &self,
        rejection: Rejection,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        proxy: Proxy,
    ) -> Result<SettleResponse, SchemeError> {
        let network = &requirements.network;
        let chain = network.eip155_id().and_then(|id| self.chains.get(&id));
        let parsed = Permit2Payload::from_json(&payload.payload).ok();
        if proxy == Proxy::Exact
            && let (Some(chain), Some(parsed)) = (chain, &parsed)
            && let Some(outcome) = paid_by(chain, network, parsed, requirements, proxy)
        {
            let search = if rejection.reason == proxy.replay_reason() {
                true
            } else if rejection.reason == reasons::PERMIT2_DEADLINE_EXPIRED {
                self.permit2_payer(payload, requirements).is_some()
                    && self
                        .permit2_nonce_used(chain, &parsed.permit2_authorization)
                        .await?
            } else {
                false
            };
            if search && let Some(hash) = outcome.executed_elsewhere(self, true).await? {
                return Ok(outcome.settled(hash));
            }
        }
        Ok(failure(network, rejection, String::new()))
    }

    /// Sends the proxy call from the signer the payment needs and records
    /// the attempt, under the payer's lock; a payment the payer's balance
    /// does not cover together with its transfers of the token in flight is
    /// refused (`permit2_insufficient_balance`) before anything is sent.
    async fn permit2_broadcast(
        &self,
        verified: &Permit2Verified<'_>,
        deadline: Instant,
        observer: &dyn SettlementObserver,
    ) -> Result<Result<Broadcast, Rejection>, SchemeError> {
        let chain = verified.chain;
        let auth = &verified.payload.permit2_authorization;
        // The same lock and in-flight count as EIP-3009 transfers of this
        // token: a payer's concurrent payments, by either method, are not
        // broadcast beyond its balance (the sponsored approval neither).
        let _payer = chain.payers.lock((verified.asset, auth.from)).await;
        let transfer = InFlight {
            token: verified.asset,
            payer: auth.from,
            key: permit2_key(auth),
            value: verified.amount,
        };
        if let Some(rejection) = self
            .uncovered(chain, &transfer, reasons::PERMIT2_INSUFFICIENT_BALANCE)
            .await?
        {
            return Ok(Err(rejection));
        }
        let calldata = match &verified.sponsor {
            Some(Sponsor::Permit(with_permit)) => with_permit.as_slice(),
            Some(Sponsor::Approval(approval)) => {
                let sender = verified.sender;
                if let Err(rejection) = self
                    .run_approval(chain, approval, sender, auth.from, deadline, observer)
                    .await?
                {
                    return Ok(Err(rejection));
                }
                // The plain simulation could not run before the allowance
                // existed: it runs now, and a failure sends nothing more.
                if let Err(rejection) = self.recheck_settlement(verified).await? {
                    tracing::info!(payer = %auth.from, reason = %rejection.reason, "the settlement fails after the sponsored approval; not sent");
                    return Ok(Err(rejection));
                }
                verified.calldata.as_slice()
            }
            None => verified.calldata.as_slice(),
        };
        let call = (verified.proxy.address(), calldata, chain.config.gas_limit);
        let sent = match self
            .send_from(
                chain,
                verified.sender,
                call,
                U256::ZERO,
                auth.from,
                observer,
            )
            .await?
        {
            Ok(sent) => sent,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let attempt = Attempt {
            calldata: verified.calldata.clone(),
            token: verified.asset,
            value: verified.amount,
            valid_before: u64::try_from(auth.deadline.as_u256()).unwrap_or(u64::MAX),
            hash: sent.hash,
            sender: chain.slots[sent.slot].signer.address(),
            nonce: sent.tx.nonce,
            signed: Some(sent.clone()),
            unknown_since: None,
        };
        chain
            .attempts
            .record(permit2_key(auth), attempt, (self.clock)());
        Ok(Ok(sent))
    }

    /// A settlement that runs again while a transaction for this Permit2
    /// nonce may still land: its outcome, or `pending` with it; never a
    /// second transaction. `None`: nothing under way, settle as new.
    async fn permit2_resume(
        &self,
        chain: &ChainState,
        parsed: &Permit2Payload,
        requirements: &PaymentRequirements,
        proxy: Proxy,
        deadline: Instant,
        observer: &dyn SettlementObserver,
    ) -> Result<Option<SettleResponse>, SchemeError> {
        let key = permit2_key(&parsed.permit2_authorization);
        let Some(attempt) = chain.attempts.get(&key) else {
            return Ok(None);
        };
        let Some(outcome) = paid_by(chain, &requirements.network, parsed, requirements, proxy)
        else {
            // Refused by verification, as before.
            return Ok(None);
        };
        if settle_calldata(proxy, parsed, outcome.amount) != attempt.calldata {
            // Another payment (or amount) for this nonce: the transaction
            // under way makes it fail. Nothing proved the payer.
            let message = "the Permit2 nonce is used by a settlement transaction not confirmed yet";
            let rejection = reject(proxy.replay_reason(), message, None);
            return Ok(Some(failure(
                &requirements.network,
                rejection,
                String::new(),
            )));
        }
        match self.revive(chain, key, &attempt, observer).await? {
            Revived::Gone => Ok(None),
            Revived::Mined(hash, receipt) => {
                chain.attempts.forget(&key, hash);
                outcome.judge(self, hash, &receipt).await.map(Some)
            }
            Revived::Waiting(hash, raw) => self
                .await_outcome(&outcome, hash, raw.as_deref(), deadline)
                .await
                .map(Some),
        }
    }

    /// What became of a Permit2 payment, read without sending anything:
    /// the recorded transaction's receipt, else the nonce bit and the
    /// deadline against the latest block.
    pub(crate) async fn permit2_lookup(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        proxy: Proxy,
        known: Option<&str>,
    ) -> Result<Option<SettlementLookup>, SchemeError> {
        let network = &requirements.network;
        let chain = network.eip155_id().and_then(|id| self.chains.get(&id));
        let parsed = Permit2Payload::from_json(&payload.payload).ok();
        let (Some(chain), Some(parsed)) = (chain, parsed) else {
            return Ok(None);
        };
        let Some(outcome) = paid_by(chain, network, &parsed, requirements, proxy) else {
            return Ok(None);
        };
        if outcome.amount.is_zero() {
            return Ok(None);
        }
        let rpc = &chain.config.rpc;
        let known = known.and_then(|hash| hash.parse::<B256>().ok());
        if let Some(hash) = known
            && let Some(receipt) = rpc.receipt(hash).await.map_err(chain_error)?
            && outcome.proves(&receipt)
        {
            chain.attempts.forget_all(&outcome.key);
            return Ok(Some(SettlementLookup::Settled(outcome.settled(hash))));
        }
        let auth = &parsed.permit2_authorization;
        let word = IPermit2::nonceBitmapCall {
            owner: auth.from,
            wordPos: auth.nonce >> 8usize,
        };
        let answers = rpc
            .batch(vec![
                (
                    "eth_call",
                    crate::rpc::call_params(None, PERMIT2_ADDRESS, &word.abi_encode()),
                ),
                ("eth_getBlockByNumber", json!(["latest", false])),
            ])
            .await
            .map_err(chain_error)?;
        let mut answers = super::Answers(answers.into_iter());
        let word = super::read_u256(answers.next(), "nonceBitmap")?;
        let latest = answers
            .next()
            .ok()
            .and_then(|block| block.get("timestamp").cloned())
            .and_then(|t| serde_json::from_value::<U256>(t).ok())
            .ok_or_else(|| SchemeError::Chain("latest block unreadable".into()))?;
        let payer = Some(auth.from.to_string());
        let unsettleable = |reason, message: &str| {
            chain.attempts.forget_all(&outcome.key);
            let failed = SettleResponse::failed(network.clone(), reason, payer.clone(), "");
            Ok(Some(SettlementLookup::Unsettleable(
                failed.with_message(message),
            )))
        };
        if super::nonce_used(word, auth.nonce) {
            // Executed by someone else's transaction (front-run): settled.
            if self.permit2_payer(payload, requirements).is_some()
                && let Some(hash) = outcome.executed_elsewhere(self, true).await?
            {
                chain.attempts.forget_all(&outcome.key);
                return Ok(Some(SettlementLookup::Settled(outcome.settled(hash))));
            }
            let message = "the Permit2 nonce was used without executing this payment";
            return unsettleable(proxy.replay_reason(), message);
        }
        if latest >= auth.deadline.as_u256() {
            let message = "the Permit2 signature expired before it was executed";
            return unsettleable(reasons::PERMIT2_DEADLINE_EXPIRED, message);
        }
        if let Some(hash) = known {
            self.remember_permit2_pending(chain, &outcome, proxy, &parsed, hash)
                .await?;
        }
        Ok(Some(SettlementLookup::Open))
    }

    /// Remembers transaction `hash` (named by the facilitator's ledger) when
    /// the node holds it unmined with this payment's proxy call: the next
    /// run waits for it instead of signing another.
    async fn remember_permit2_pending(
        &self,
        chain: &ChainState,
        outcome: &Permit2Outcome<'_>,
        proxy: Proxy,
        parsed: &Permit2Payload,
        hash: B256,
    ) -> Result<(), SchemeError> {
        if chain.attempts.get(&outcome.key).is_some() {
            return Ok(());
        }
        let calldata = settle_calldata(proxy, parsed, outcome.amount);
        let transaction = chain
            .config
            .rpc
            .transaction(hash)
            .await
            .map_err(chain_error)?;
        let Some(transaction) = transaction.filter(|t| {
            t.block_number.is_none()
                && t.to == Some(proxy.address())
                && t.input.as_ref() == calldata
        }) else {
            return Ok(());
        };
        let nonce = transaction.nonce.and_then(|n| u64::try_from(n).ok());
        let (Some(sender), Some(nonce)) = (transaction.from, nonce) else {
            return Ok(());
        };
        let deadline = parsed.permit2_authorization.deadline.as_u256();
        let attempt = Attempt {
            calldata,
            token: outcome.asset,
            value: outcome.amount,
            valid_before: u64::try_from(deadline).unwrap_or(u64::MAX),
            hash,
            sender,
            nonce,
            signed: None,
            unknown_since: None,
        };
        chain.attempts.record(outcome.key, attempt, (self.clock)());
        tracing::info!(%hash, "an earlier Permit2 settlement is pending; re-runs wait for it");
        Ok(())
    }
}

/// The settlement `parsed` makes for `requirements`, when it pays exactly
/// them: the recipient and token, and the amount (`exact`: the signed one;
/// `upto`: at most the signed maximum).
fn paid_by<'a>(
    chain: &'a ChainState,
    network: &'a ChainId,
    parsed: &Permit2Payload,
    requirements: &PaymentRequirements,
    proxy: Proxy,
) -> Option<Permit2Outcome<'a>> {
    let auth = &parsed.permit2_authorization;
    let asset = requirements.asset.parse::<Address>().ok()?;
    let pay_to = requirements.pay_to.parse::<Address>().ok()?;
    let amount = requirements.amount;
    let amount_ok = match proxy {
        Proxy::Exact => amount == auth.permitted.amount,
        Proxy::Upto => amount <= auth.permitted.amount,
    };
    (amount_ok && auth.witness.to == pay_to && auth.permitted.token == asset).then(|| {
        Permit2Outcome {
            chain,
            network,
            key: permit2_key(auth),
            payer: auth.from,
            asset,
            pay_to,
            amount: amount.as_u256(),
            proxy,
            authorization: auth.clone(),
        }
    })
}

impl Permit2Outcome<'_> {
    /// `upto` with nothing to charge: success, no transaction, amount 0.
    fn settled_without_transaction(&self) -> SettleResponse {
        let payer = Some(self.payer.to_string());
        let mut response = SettleResponse::settled(self.network.clone(), String::new(), payer);
        response.amount = Some(U256::ZERO.into());
        response
    }
}
