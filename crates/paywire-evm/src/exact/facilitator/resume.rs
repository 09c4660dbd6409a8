//! Settlements that run again while an earlier transaction of theirs may
//! still land, and transfers in flight counted against the payer's balance
//! (see `crate::exact::inflight`).

use crate::Eip155ChainId;
use crate::reasons;
use std::time::Instant;

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use paywire_core::{
    ErrorReason, PaymentPayload, PaymentRequirements, SchemeError, SettleResponse,
    SettlementObserver,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    ChainState, ExactEvmFacilitator, Outcome, Rejection, Verified, already_known, chain_error,
    executed_payload, failure, reject, sign_transaction,
};
use crate::contracts::IEip3009Token;
use crate::exact::inflight::{Attempt, AuthorizationKey};
use crate::exact::lookup::pays;
use crate::exact::payload::ExactEvmPayload;
use crate::rpc::{Receipt, RpcError, Transaction, call_params, decode_bytes};

/// A transfer about to be broadcast, checked against the payer's balance
/// and its transfers in flight.
pub(super) struct InFlight {
    /// The token it moves.
    pub token: Address,
    /// Whose balance pays it.
    pub payer: Address,
    /// Its own authorization's key (not counted as in flight).
    pub key: AuthorizationKey,
    /// What it moves.
    pub value: U256,
}

/// What the node says about an earlier settlement transaction.
enum Status {
    /// Mined, with this receipt.
    Mined(Receipt),
    /// Waiting in the node's pool.
    Pooled,
    /// Unknown to the node, its nonce still unused: it may come back.
    Unknown,
    /// Unknown to the node, and its sender's nonce was used by another
    /// transaction: it can never land.
    Dropped,
}

/// What became of an earlier settlement transaction once acted on.
pub(super) enum Revived {
    /// It can never land (forgotten): settle anew.
    Gone,
    /// Transaction `0` was mined, with this receipt.
    Mined(B256, Receipt),
    /// Wait for transaction `0`, sending its signed bytes (when this process
    /// has them) again meanwhile.
    Waiting(B256, Option<Vec<u8>>),
}

/// A fee raised enough for nodes to accept a replacement at the same nonce
/// (they ask for 10 % more; 12.5 % leaves a margin).
fn bump(fee: u128) -> u128 {
    fee.saturating_add(fee / 8).saturating_add(1)
}

/// `tx` with both fees raised for a replacement and the fee cap at least
/// what the network asks now, within the chain's caps; `None` when the caps
/// leave no room.
fn replacement_fees(
    tx: &TxEip1559,
    gas_price: u128,
    max_fee_cap: u128,
    priority_cap: u128,
) -> Option<TxEip1559> {
    let priority = bump(tx.max_priority_fee_per_gas).max(gas_price.min(priority_cap));
    let max_fee = bump(tx.max_fee_per_gas)
        .max(gas_price.saturating_mul(2).saturating_add(priority))
        .min(max_fee_cap);
    if priority > priority_cap || max_fee < bump(tx.max_fee_per_gas) || priority > max_fee {
        return None;
    }
    Some(TxEip1559 {
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: priority,
        ..tx.clone()
    })
}

fn decode<T: DeserializeOwned>(answer: Option<Result<Value, RpcError>>) -> Result<T, SchemeError> {
    let value = answer
        .unwrap_or_else(|| Err(RpcError::Decode("short batch".into())))
        .map_err(chain_error)?;
    serde_json::from_value(value).map_err(|e| SchemeError::Chain(e.to_string()))
}

impl ExactEvmFacilitator {
    /// A settlement that runs again while this authorization's earlier
    /// transaction may still land: its outcome once mined, else `pending`
    /// with it (sent again, or replaced at its nonce when under-priced),
    /// never a second transaction. `None`: there is no earlier transaction,
    /// or it provably never lands, and the settlement proceeds as new.
    pub(super) async fn resume_attempt(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        deadline: Instant,
        observer: &dyn SettlementObserver,
    ) -> Result<Option<SettleResponse>, SchemeError> {
        let network = &requirements.network;
        let chain = network.eip155_id().and_then(|id| self.chains.get(&id));
        let asset = requirements.asset.parse::<Address>();
        let exact = ExactEvmPayload::from_json(&payload.payload);
        let (Some(chain), Ok(asset), Ok(exact)) = (chain, asset, exact) else {
            return Ok(None);
        };
        let auth = &exact.authorization;
        let key = (asset, auth.from, auth.nonce);
        let Some(attempt) = chain.attempts.get(&key) else {
            return Ok(None);
        };
        if !pays(&exact, requirements, asset) {
            // Refused by verification, as before.
            return Ok(None);
        }
        let executed = executed_payload(&exact);
        if executed.transfer_calldata() != attempt.calldata {
            // Another authorization (or signature) for this nonce: the
            // transaction under way makes it fail. Nothing proved the payer.
            let rejection = reject(
                reasons::NONCE_USED,
                "the authorization's nonce is used by a settlement transaction not confirmed yet",
                None,
            );
            return Ok(Some(failure(network, rejection, String::new())));
        }
        let outcome = Outcome {
            chain,
            asset,
            payload: &executed,
            network,
        };
        match self.revive(chain, key, &attempt, observer).await? {
            Revived::Gone => Ok(None),
            Revived::Mined(hash, receipt) => {
                chain.attempts.forget(&key, hash);
                self.judge_receipt(&outcome, hash, &receipt).await.map(Some)
            }
            Revived::Waiting(hash, raw) => self
                .await_outcome(&outcome, hash, raw.as_deref(), deadline)
                .await
                .map(Some),
        }
    }

    /// Where `attempt` stands, acted on: a transaction the node dropped is
    /// sent again (or, learned from the ledger, given up after a grace
    /// period), one under-priced is replaced.
    pub(super) async fn revive(
        &self,
        chain: &ChainState,
        key: AuthorizationKey,
        attempt: &Attempt,
        observer: &dyn SettlementObserver,
    ) -> Result<Revived, SchemeError> {
        let hash = attempt.hash;
        let mut force_replacement = false;
        match self.attempt_status(chain, attempt).await? {
            Status::Mined(receipt) => return Ok(Revived::Mined(hash, receipt)),
            Status::Dropped => {
                tracing::info!(%hash, "earlier settlement transaction dropped (its nonce was used by another); settling anew");
                chain.attempts.forget(&key, hash);
                return Ok(Revived::Gone);
            }
            Status::Pooled => {
                if attempt.unknown_since.is_some() {
                    chain
                        .attempts
                        .update(&key, hash, |a| a.unknown_since = None);
                }
            }
            Status::Unknown => {
                if let Some(signed) = &attempt.signed {
                    match chain.config.rpc.send_raw_transaction(&signed.raw).await {
                        Ok(_) => {
                            tracing::warn!(%hash, "earlier settlement transaction was dropped by the node; sent it again");
                        }
                        Err(error @ RpcError::Node { .. }) => {
                            let message = error
                                .node_message()
                                .unwrap_or_default()
                                .to_ascii_lowercase();
                            // "nonce too low": mined or replaced meanwhile, which
                            // the receipt poll or the next run tells apart.
                            force_replacement =
                                !(already_known(&message) || message.contains("nonce too low"));
                        }
                        Err(error) => return Err(chain_error(error)),
                    }
                } else {
                    let since = chain
                        .attempts
                        .update(&key, hash, |a| {
                            a.unknown_since.get_or_insert_with(Instant::now);
                        })
                        .and_then(|a| a.unknown_since)
                        .unwrap_or_else(Instant::now);
                    if since.elapsed() >= self.dropped_after {
                        tracing::warn!(%hash, "earlier settlement transaction unknown to the node for too long; settling anew");
                        chain.attempts.forget(&key, hash);
                        return Ok(Revived::Gone);
                    }
                }
            }
        }
        let (hash, raw) = self
            .replace_if_stuck(chain, key, attempt, force_replacement, observer)
            .await?;
        Ok(Revived::Waiting(hash, raw))
    }

    /// The node's view of `attempt`, in one round trip.
    async fn attempt_status(
        &self,
        chain: &ChainState,
        attempt: &Attempt,
    ) -> Result<Status, SchemeError> {
        let hash = attempt.hash;
        let mut answers = chain
            .config
            .rpc
            .batch(vec![
                ("eth_getTransactionReceipt", json!([hash])),
                ("eth_getTransactionByHash", json!([hash])),
                ("eth_getTransactionCount", json!([attempt.sender, "latest"])),
            ])
            .await
            .map_err(chain_error)?
            .into_iter();
        if let Some(receipt) = decode::<Option<Receipt>>(answers.next())? {
            return Ok(Status::Mined(receipt));
        }
        if decode::<Option<Transaction>>(answers.next())?.is_some() {
            return Ok(Status::Pooled);
        }
        let used: U256 = decode(answers.next())?;
        Ok(if used > U256::from(attempt.nonce) {
            Status::Dropped
        } else {
            Status::Unknown
        })
    }

    /// Replaces `attempt` at its nonce with higher fees when the network now
    /// asks more than it offers (or, `force`, the node refused its bytes),
    /// within the chain's fee caps; the transaction to wait for and its
    /// signed bytes.
    async fn replace_if_stuck(
        &self,
        chain: &ChainState,
        key: AuthorizationKey,
        attempt: &Attempt,
        force: bool,
        observer: &dyn SettlementObserver,
    ) -> Result<(B256, Option<Vec<u8>>), SchemeError> {
        let Some(signed) = attempt.signed.clone() else {
            return Ok((attempt.hash, None));
        };
        let config = &chain.config;
        // Fresh, not the per-second cache: the price that made it stuck may
        // be a second old.
        let gas_price = config.rpc.gas_price().await.map_err(chain_error)?;
        if !force && gas_price <= signed.tx.max_fee_per_gas {
            return Ok((signed.hash, Some(signed.raw)));
        }
        let fees = replacement_fees(
            &signed.tx,
            gas_price,
            config.max_fee_per_gas,
            config.max_priority_fee_per_gas,
        );
        let Some(tx) = fees else {
            tracing::warn!(hash = %signed.hash, gas_price,
                "settlement transaction under-priced; the fee caps leave no room to replace it");
            return Ok((signed.hash, Some(signed.raw)));
        };
        // No new nonce is allocated meanwhile. The replacement reuses an older
        // nonce, so its place among the signer's queued sends does not matter.
        let _nonces = chain.slots[signed.slot].line.nonces.lock().await;
        let replacement = sign_transaction(chain, signed.slot, tx).await?;
        let network = &config.network.chain;
        let record = |hash: B256| async move {
            observer
                .before_broadcast(network, &hash.to_string())
                .await
                .map_err(|e| SchemeError::Chain(format!("settlement not recorded, not sent: {e}")))
        };
        record(replacement.hash).await?;
        match config.rpc.send_raw_transaction(&replacement.raw).await {
            Err(error @ RpcError::Node { .. })
                if !already_known(
                    &error
                        .node_message()
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                ) =>
            {
                tracing::warn!(hash = %signed.hash, %error, "fee replacement refused; waiting for the transaction as it is");
                // The ledger names the transaction that may land.
                record(signed.hash).await?;
                return Ok((signed.hash, Some(signed.raw)));
            }
            // Accepted, already known, or unanswered (then it may be pooled,
            // and the ledger already names it).
            _ => {}
        }
        tracing::info!(old = %signed.hash, new = %replacement.hash, gas_price,
            "under-priced settlement transaction replaced at the same nonce");
        chain.attempts.update(&key, signed.hash, |a| {
            a.hash = replacement.hash;
            a.signed = Some(replacement.clone());
            a.unknown_since = None;
        });
        Ok((replacement.hash, Some(replacement.raw)))
    }

    /// Refuses (`insufficient_funds`) a transfer the payer's balance does not
    /// cover together with its transfers in flight: see [`Self::uncovered`].
    /// The caller holds the payer's lock.
    pub(super) async fn uncovered_by_balance(
        &self,
        verified: &Verified<'_>,
    ) -> Result<Option<Rejection>, SchemeError> {
        let auth = &verified.payload.authorization;
        let transfer = InFlight {
            token: verified.asset,
            payer: auth.from,
            key: (verified.asset, auth.from, auth.nonce),
            value: auth.value.as_u256(),
        };
        self.uncovered(verified.chain, &transfer, ErrorReason::INSUFFICIENT_FUNDS)
            .await
    }

    /// Refuses (with `reason`) `transfer` when the payer's balance does not
    /// cover it together with the payer's other transfers of the token in
    /// flight (broadcast, not mined), EIP-3009 and Permit2 alike: each would
    /// pass its own simulation, and all but the first would revert at the
    /// facilitator's expense. The caller holds the (token, payer) lock.
    pub(super) async fn uncovered(
        &self,
        chain: &ChainState,
        transfer: &InFlight,
        reason: ErrorReason,
    ) -> Result<Option<Rejection>, SchemeError> {
        let others = chain.attempts.in_flight(
            (transfer.token, transfer.payer),
            &transfer.key,
            (self.clock)(),
        );
        if others.is_empty() {
            return Ok(None);
        }
        let balance_call = IEip3009Token::balanceOfCall {
            account: transfer.payer,
        }
        .abi_encode();
        let mut calls: Vec<(&str, Value)> = others
            .iter()
            .map(|(_, hash, _)| ("eth_getTransactionReceipt", json!([hash])))
            .collect();
        calls.push(("eth_call", call_params(None, transfer.token, &balance_call)));
        let mut answers = chain.config.rpc.batch(calls).await.map_err(chain_error)?;
        let balance = answers
            .pop()
            .and_then(|answer| decode_bytes(answer).ok())
            .and_then(|b| IEip3009Token::balanceOfCall::abi_decode_returns(&b).ok())
            .ok_or_else(|| SchemeError::Chain("balanceOf unreadable".into()))?;
        // A mined transfer is in the balance already (and no longer in
        // flight); one whose receipt could not be read counts as in flight.
        let mut unmined = U256::ZERO;
        for ((other, hash, value), receipt) in others.iter().zip(&answers) {
            if matches!(receipt, Ok(r) if !r.is_null()) {
                chain.attempts.forget(other, *hash);
            } else {
                unmined = unmined.saturating_add(*value);
            }
        }
        if balance >= unmined.saturating_add(transfer.value) {
            return Ok(None);
        }
        Ok(Some(reject(
            reason,
            format!(
                "balance {balance} does not cover this payment and the payer's transfers in flight ({unmined})"
            ),
            Some(transfer.payer),
        )))
    }

    /// Remembers transaction `hash`, which the facilitator's ledger names for
    /// `exact`, when the node holds it unmined: the settlement's next run
    /// waits for it instead of signing another.
    pub(super) async fn remember_pending(
        &self,
        chain: &ChainState,
        asset: Address,
        exact: &ExactEvmPayload,
        hash: B256,
    ) -> Result<(), SchemeError> {
        let auth = &exact.authorization;
        let key = (asset, auth.from, auth.nonce);
        if chain.attempts.get(&key).is_some() {
            return Ok(());
        }
        let transaction = chain
            .config
            .rpc
            .transaction(hash)
            .await
            .map_err(chain_error)?;
        let calldata = executed_payload(exact).transfer_calldata();
        let Some(transaction) = transaction.filter(|t| {
            t.block_number.is_none() && t.to == Some(asset) && t.input.as_ref() == calldata
        }) else {
            return Ok(());
        };
        let nonce = transaction.nonce.and_then(|n| u64::try_from(n).ok());
        let (Some(sender), Some(nonce)) = (transaction.from, nonce) else {
            return Ok(());
        };
        let attempt = Attempt {
            calldata,
            token: asset,
            value: auth.value.as_u256(),
            valid_before: u64::try_from(auth.valid_before.as_u256()).unwrap_or(u64::MAX),
            hash,
            sender,
            nonce,
            signed: None,
            unknown_since: None,
        };
        chain.attempts.record(key, attempt, (self.clock)());
        tracing::info!(%hash, "an earlier settlement transaction is pending; re-runs wait for it");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(max_fee: u128, priority: u128) -> TxEip1559 {
        TxEip1559 {
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority,
            ..TxEip1559::default()
        }
    }

    #[test]
    fn replacements_raise_both_fees_within_the_caps() {
        let old = tx(1_000, 100);
        let new = replacement_fees(&old, 2_000, 10_000, 200).unwrap_or_else(|| panic!("room"));
        assert!(new.max_fee_per_gas >= 4_100, "what the network asks now");
        assert!(new.max_priority_fee_per_gas >= 113);
        assert!(new.max_fee_per_gas <= 10_000);
        // The fee cap leaves less than the bump nodes require.
        assert!(replacement_fees(&old, 2_000, 1_100, 200).is_none());
        // The tip is already at its cap.
        assert!(replacement_fees(&tx(1_000, 200), 2_000, 10_000, 200).is_none());
    }
}
