//! Gas sponsoring for Permit2 payers who have not approved Permit2 yet,
//! when the chain's configuration turns it on (both are off by default):
//!
//! - `eip2612GasSponsoring`: the payer signed an EIP-2612 permit for
//!   Permit2; the proxy's `settleWithPermit` submits it and settles in one
//!   transaction, paid by the facilitator.
//! - `erc20ApprovalGasSponsoring`: the payer signed its own
//!   `approve(Permit2, amount)` transaction; the facilitator funds the
//!   payer's gas when it lacks it (capped), broadcasts the approval, waits
//!   for it, then settles.
//!
//! The second flow is NOT atomic: a plain node has no bundles, so between
//! the funding and the approval the payer can spend the funding (replace
//! its approval at the same nonce, or send the ETH away). What that can
//! cost is bounded three ways: the funding covers at most the approval's
//! gas limit (capped by `max_sponsored_approval_gas`) at today's fee (an
//! approval offering more than twice the node's gas price plus a tip is
//! refused), never more than `max_approval_funding_wei`; and only an
//! unlimited approval (`U256::MAX`, what the official client signs) is
//! sponsored, so a payer gets it once per token, not once per payment.
//! Between the approval and the settlement the payer can also move its
//! tokens away, so the settlement is simulated again once the approval has
//! landed, and nothing more is sent when it would fail. Operators who
//! cannot accept the residual cost leave the extension off.

use std::time::Instant;

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolStruct};
use paywire_core::{AtomicAmount, ErrorReason, Extensions, SchemeError};
use serde::Deserialize;

use super::super::verify::{Answers, Halt, Step};
use super::super::{
    ChainState, ExactEvmFacilitator, Rejection, chain_error, reject, revert_message,
};
use super::{Permit2Verified, Proxy, Target, exact_permit, upto_permit};
use crate::contracts::{IErc20, Permit, exact_permit2_proxy, upto_permit2_proxy};
use crate::exact::eip712_domain;
use crate::permit2::{EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING, PERMIT2_ADDRESS};
use crate::reasons;
use crate::rpc::{RpcError, decode_bytes, pending_call_params};
use paywire_core::SettlementObserver;

/// `extensions.eip2612GasSponsoring.info` of a payment.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PermitInfo {
    from: Address,
    asset: Address,
    spender: Address,
    amount: AtomicAmount,
    nonce: AtomicAmount,
    deadline: AtomicAmount,
    signature: Bytes,
    #[serde(rename = "version")]
    _version: String,
}

/// `extensions.erc20ApprovalGasSponsoring.info` of a payment.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApprovalInfo {
    from: Address,
    asset: Address,
    spender: Address,
    amount: AtomicAmount,
    signed_transaction: Bytes,
    #[serde(rename = "version")]
    _version: String,
}

/// How a payer without an allowance to Permit2 gets one.
pub(in super::super) enum Sponsor {
    /// The proxy's `settleWithPermit` call replaces `settle`.
    Permit(Vec<u8>),
    /// The payer's own approval transaction goes first.
    Approval(Approval),
}

/// A checked approval transaction of the payer.
pub(in super::super) struct Approval {
    /// Its signed bytes.
    raw: Bytes,
    hash: B256,
    /// Native currency sent to the payer first (zero: it can pay).
    funding: U256,
}

/// The EIP-2612 permit's `(v, r, s)`.
fn split(signature: &[u8]) -> Option<(u8, B256, B256)> {
    if signature.len() != 65 {
        return None;
    }
    let v = match signature[64] {
        v @ (0 | 1) => v + 27,
        v => v,
    };
    Some((
        v,
        B256::from_slice(&signature[..32]),
        B256::from_slice(&signature[32..64]),
    ))
}

/// The proxy's `settleWithPermit` calldata.
fn settle_with_permit(
    proxy: Proxy,
    target: &Target<'_>,
    amount: U256,
    info: &PermitInfo,
    (v, r, s): (u8, B256, B256),
) -> Vec<u8> {
    let auth = &target.payload.permit2_authorization;
    let signature = target.payload.signature.clone();
    let (value, deadline) = (info.amount.as_u256(), info.deadline.as_u256());
    match proxy {
        Proxy::Exact => exact_permit2_proxy::settleWithPermitCall {
            permit2612: exact_permit2_proxy::EIP2612Permit {
                value,
                deadline,
                r,
                s,
                v,
            },
            permit: exact_permit(auth),
            owner: auth.from,
            witness: exact_permit2_proxy::Witness {
                to: auth.witness.to,
                validAfter: auth.witness.valid_after.as_u256(),
            },
            signature,
        }
        .abi_encode(),
        Proxy::Upto => upto_permit2_proxy::settleWithPermitCall {
            permit2612: upto_permit2_proxy::EIP2612Permit {
                value,
                deadline,
                r,
                s,
                v,
            },
            permit: upto_permit(auth),
            amount,
            owner: auth.from,
            witness: upto_permit2_proxy::Witness {
                to: auth.witness.to,
                facilitator: auth.witness.facilitator.unwrap_or_default(),
                validAfter: auth.witness.valid_after.as_u256(),
            },
            signature,
        }
        .abi_encode(),
    }
}

/// The permit's fields against the payment: the payer's, for this token, to
/// Permit2, for at least the permitted amount, valid until at least
/// `deadline`; its `(v, r, s)`.
fn permit_fields(target: &Target<'_>, info: &PermitInfo, deadline: U256) -> Step<(u8, B256, B256)> {
    let auth = &target.payload.permit2_authorization;
    let payer = auth.from;
    if info.from != payer {
        return refuse(
            reasons::EIP2612_FROM_MISMATCH,
            format!("permit is from {}", info.from),
            payer,
        );
    }
    if info.asset != target.asset {
        return refuse(
            reasons::EIP2612_ASSET_MISMATCH,
            format!("permit is for {}", info.asset),
            payer,
        );
    }
    if info.spender != PERMIT2_ADDRESS {
        return refuse(
            reasons::EIP2612_SPENDER_NOT_PERMIT2,
            format!("permit spender is {}", info.spender),
            payer,
        );
    }
    if info.amount < auth.permitted.amount {
        return refuse(
            reasons::EIP2612_AMOUNT_MISMATCH,
            "the permit allows less than the payment",
            payer,
        );
    }
    if info.deadline.as_u256() < deadline {
        return refuse(
            reasons::EIP2612_DEADLINE_EXPIRED,
            "the permit has expired",
            payer,
        );
    }
    let Some(vrs) = split(&info.signature) else {
        return refuse(
            reasons::EIP2612_INVALID_FORMAT,
            "the permit signature is not 65 bytes",
            payer,
        );
    };
    Ok(vrs)
}

fn refuse<T>(reason: ErrorReason, message: impl Into<String>, payer: Address) -> Step<T> {
    Err(reject(reason, message, Some(payer)).into())
}

impl ExactEvmFacilitator {
    /// How the payer of `target`, whose allowance to Permit2 is short, gets
    /// one: a sponsoring extension this chain accepts and the payment
    /// carries, checked; otherwise `permit2_allowance_required`.
    pub(super) async fn sponsorship(
        &self,
        target: &Target<'_>,
        extensions: Option<&Extensions>,
        proxy: Proxy,
        amount: U256,
        simulator: Address,
    ) -> Step<Sponsor> {
        let config = &target.chain.config;
        let payer = target.payload.permit2_authorization.from;
        if config.eip2612_gas_sponsoring
            && let Some(info) =
                extensions.and_then(|e| e.info_as::<PermitInfo>(EIP2612_GAS_SPONSORING))
        {
            let Ok(info) = info else {
                return refuse(
                    reasons::EIP2612_INVALID_FORMAT,
                    "eip2612GasSponsoring info is malformed",
                    payer,
                );
            };
            return self
                .check_permit(target, proxy, amount, simulator, &info)
                .await;
        }
        if config.erc20_approval_gas_sponsoring
            && let Some(info) =
                extensions.and_then(|e| e.info_as::<ApprovalInfo>(ERC20_APPROVAL_GAS_SPONSORING))
        {
            let Ok(info) = info else {
                return refuse(
                    reasons::ERC20_APPROVAL_INVALID_FORMAT,
                    "erc20ApprovalGasSponsoring info is malformed",
                    payer,
                );
            };
            return self.check_approval(target, &info).await;
        }
        let message = format!(
            "the payer's allowance to Permit2 is below {amount} and no accepted gas-sponsoring extension is present"
        );
        refuse(reasons::PERMIT2_ALLOWANCE, message, payer)
    }

    /// The EIP-2612 permit: the payer's, for this token, to Permit2, for at
    /// least the permitted amount, unexpired, signed under the token's
    /// domain with its current nonce; then the simulated `settleWithPermit`.
    async fn check_permit(
        &self,
        target: &Target<'_>,
        proxy: Proxy,
        amount: U256,
        simulator: Address,
        info: &PermitInfo,
    ) -> Step<Sponsor> {
        let payer = target.payload.permit2_authorization.from;
        let deadline = U256::from(self.now()) + U256::from(self.valid_before_buffer);
        let vrs = permit_fields(target, info, deadline)?;
        let chain = target.chain;
        let (name, version) = self.domain_of(chain, target.asset).await?;
        let domain = eip712_domain(&name, &version, chain.config.network.chain_id, target.asset);
        let permit = Permit {
            owner: payer,
            spender: PERMIT2_ADDRESS,
            value: info.amount.as_u256(),
            nonce: info.nonce.as_u256(),
            deadline: info.deadline.as_u256(),
        };
        let digest = permit.eip712_signing_hash(&domain);
        if crate::ecrecover::recover_address(&info.signature, &digest) != Some(payer) {
            return refuse(
                reasons::PERMIT2_INVALID_SIGNATURE,
                "the EIP-2612 permit is not signed by the payer",
                payer,
            );
        }
        let calldata = settle_with_permit(proxy, target, amount, info, vrs);
        let nonces = IErc20::noncesCall { owner: payer }.abi_encode();
        let calls = vec![
            ("eth_call", pending_call_params(None, target.asset, &nonces)),
            (
                "eth_call",
                pending_call_params(Some(simulator), proxy.address(), &calldata),
            ),
        ];
        let answers = chain.config.rpc.batch(calls).await.map_err(chain_error)?;
        let mut answers = Answers(answers.into_iter());
        let nonce = super::read_u256(answers.next(), "nonces")?;
        if nonce != info.nonce.as_u256() {
            let message = format!(
                "the permit's nonce {} is not the token's {nonce}",
                info.nonce
            );
            return refuse(reasons::PERMIT2_SIMULATION_FAILED, message, payer);
        }
        match answers.next() {
            Ok(_) => Ok(Sponsor::Permit(calldata)),
            Err(error @ RpcError::Node { .. }) => {
                let message = format!(
                    "settleWithPermit simulation reverted: {}",
                    revert_message(&error)
                );
                refuse(reasons::PERMIT2_SIMULATION_FAILED, message, payer)
            }
            Err(error) => Err(chain_error(error).into()),
        }
    }

    /// The payer's signed approval: an EIP-1559 or legacy transaction
    /// `approve(Permit2, U256::MAX)` on this token, signed by the payer for
    /// this chain at its current nonce, within the gas and fee caps,
    /// succeeding when simulated; and the funding its gas needs, within the
    /// funding cap.
    async fn check_approval(&self, target: &Target<'_>, info: &ApprovalInfo) -> Step<Sponsor> {
        let payer = target.payload.permit2_authorization.from;
        if info.from != payer {
            return refuse(
                reasons::ERC20_APPROVAL_FROM_MISMATCH,
                format!("approval is from {}", info.from),
                payer,
            );
        }
        if info.asset != target.asset {
            return refuse(
                reasons::ERC20_APPROVAL_ASSET_MISMATCH,
                format!("approval is for {}", info.asset),
                payer,
            );
        }
        if info.spender != PERMIT2_ADDRESS {
            return refuse(
                reasons::ERC20_APPROVAL_SPENDER_NOT_PERMIT2,
                format!("approval spender is {}", info.spender),
                payer,
            );
        }
        let Ok(tx) = TxEnvelope::decode_2718(&mut info.signed_transaction.as_ref()) else {
            return refuse(
                reasons::ERC20_APPROVAL_PARSE_FAILED,
                "the signed transaction cannot be decoded",
                payer,
            );
        };
        if !matches!(tx, TxEnvelope::Eip1559(_) | TxEnvelope::Legacy(_)) {
            // Other types carry what a sponsored approval has no use for
            // (blobs, access lists, EIP-7702 delegations of the payer's
            // account) and that fees and checks here do not account for.
            let message = format!(
                "the approval is a type {} transaction; only EIP-1559 (type 2) and legacy ones are sponsored",
                u8::from(tx.tx_type())
            );
            return refuse(reasons::ERC20_APPROVAL_FAILED, message, payer);
        }
        if tx.recover_signer().ok() != Some(payer) {
            return refuse(
                reasons::ERC20_APPROVAL_SIGNER_MISMATCH,
                "the approval is not signed by the payer",
                payer,
            );
        }
        if tx.to() != Some(target.asset) {
            return refuse(
                reasons::ERC20_APPROVAL_WRONG_TARGET,
                "the approval does not call the token",
                payer,
            );
        }
        let expected = IErc20::approveCall {
            spender: PERMIT2_ADDRESS,
            amount: info.amount.as_u256(),
        };
        if tx.input().as_ref() != expected.abi_encode() || !tx.value().is_zero() {
            let message = "the transaction is not approve(Permit2, amount) without value";
            return refuse(reasons::ERC20_APPROVAL_INVALID_CALLDATA, message, payer);
        }
        if info.amount.as_u256() != U256::MAX {
            // A bounded approval would run out and be sponsored again: only
            // an unlimited one, sponsored once per payer and token.
            let message = format!(
                "the approval is for {}; only an unlimited approval (2^256 - 1) is sponsored",
                info.amount
            );
            return refuse(reasons::ERC20_APPROVAL_INVALID_CALLDATA, message, payer);
        }
        let funding = self.approval_funding(target.chain, payer, &tx).await?;
        Ok(Sponsor::Approval(Approval {
            raw: info.signed_transaction.clone(),
            hash: *tx.tx_hash(),
            funding,
        }))
    }

    /// The chain-dependent checks of an approval transaction (chain id,
    /// nonce, gas and fee caps, a successful simulation) and the native
    /// currency the payer lacks to pay for it.
    async fn approval_funding(
        &self,
        chain: &ChainState,
        payer: Address,
        tx: &TxEnvelope,
    ) -> Step<U256> {
        let config = &chain.config;
        let fail = |message: String| -> Step<U256> {
            refuse(reasons::ERC20_APPROVAL_FAILED, message, payer)
        };
        if tx.chain_id() != Some(config.network.chain_id) {
            return fail("the approval is signed for another chain".into());
        }
        if tx.gas_limit() > config.max_sponsored_approval_gas {
            let cap = config.max_sponsored_approval_gas;
            return fail(format!(
                "the approval's gas limit {} is above this facilitator's cap of {cap}",
                tx.gas_limit()
            ));
        }
        if tx.max_fee_per_gas() > config.max_fee_per_gas {
            return fail("the approval's fee cap is above this facilitator's".into());
        }
        let call = serde_json::json!([{"from": payer, "to": tx.to(), "data": tx.input(), "gas": format!("0x{:x}", tx.gas_limit())}, "pending"]);
        let calls = vec![
            ("eth_gasPrice", serde_json::json!([])),
            (
                "eth_getTransactionCount",
                serde_json::json!([payer, "pending"]),
            ),
            ("eth_getBalance", serde_json::json!([payer, "pending"])),
            ("eth_call", call),
        ];
        let answers = config.rpc.batch(calls).await.map_err(chain_error)?;
        let mut answers = Answers(answers.into_iter());
        let read = |answer: Result<serde_json::Value, RpcError>, what: &str| {
            answer
                .ok()
                .and_then(|v| serde_json::from_value::<U256>(v).ok())
                .ok_or_else(|| Halt::Failed(SchemeError::Chain(format!("{what} unreadable"))))
        };
        let price = read(answers.next(), "gas price")?;
        let price = u128::try_from(price).unwrap_or(u128::MAX);
        let fee_bound = price
            .saturating_mul(2)
            .saturating_add(price.min(config.max_priority_fee_per_gas));
        if tx.max_fee_per_gas() > fee_bound {
            // The payer picks the fee the funding pays for: only today's.
            return fail(format!(
                "the approval offers {} wei per gas, above twice the network's price {price} plus a tip ({fee_bound})",
                tx.max_fee_per_gas()
            ));
        }
        let nonce = read(answers.next(), "nonce")?;
        let balance = read(answers.next(), "balance")?;
        if nonce != U256::from(tx.nonce()) {
            return fail(format!(
                "the approval uses nonce {} but the payer's is {nonce}",
                tx.nonce()
            ));
        }
        if let Err(error) = decode_bytes(answers.next()) {
            return fail(format!(
                "the approval fails when simulated: {}",
                revert_message(&error)
            ));
        }
        let fee = tx.max_fee_per_gas().min(fee_bound);
        let cost = U256::from(tx.gas_limit()).saturating_mul(U256::from(fee));
        let deficit = cost.saturating_sub(balance);
        if deficit > U256::from(config.max_approval_funding_wei) {
            return fail(format!(
                "the payer lacks {deficit} wei for the approval's gas, above this facilitator's funding cap"
            ));
        }
        Ok(deficit)
    }

    /// Before settling a sponsored approval: funds the payer's gas (when
    /// needed) from the settling signer, broadcasts the payer's approval and
    /// waits for both. `Err`: why the settlement cannot go on (nothing of
    /// the payment was sent).
    pub(super) async fn run_approval(
        &self,
        chain: &ChainState,
        approval: &Approval,
        sender: Option<usize>,
        payer: Address,
        deadline: Instant,
        observer: &dyn SettlementObserver,
    ) -> Result<Result<(), Rejection>, SchemeError> {
        let rpc = &chain.config.rpc;
        let failed = |message: String| {
            Ok(Err(reject(
                reasons::ERC20_APPROVAL_FAILED,
                message,
                Some(payer),
            )))
        };
        if !approval.funding.is_zero() {
            // Residual risk (see the module notes): the payer may spend this
            // before its approval lands; bounded by max_approval_funding_wei.
            let transfer = (payer, &[][..], 21_000);
            let sent = match self
                .send_from(chain, sender, transfer, approval.funding, payer, observer)
                .await?
            {
                Ok(sent) => sent,
                Err(rejection) => return Ok(Err(rejection)),
            };
            match self
                .wait_receipt(chain, sent.hash, Some(&sent.raw), deadline)
                .await?
            {
                Some(receipt) if receipt.succeeded() => {}
                _ => {
                    return failed(format!(
                        "funding the payer's gas was not confirmed ({})",
                        sent.hash
                    ));
                }
            }
            tracing::info!(%payer, funding = %approval.funding, "funded a payer's sponsored approval");
        }
        if let Err(error) = rpc.send_raw_transaction(&approval.raw).await {
            tracing::debug!(hash = %approval.hash, %error, "approval broadcast answered with an error; waiting for its receipt");
        }
        match self
            .wait_receipt(chain, approval.hash, Some(&approval.raw), deadline)
            .await?
        {
            Some(receipt) if receipt.succeeded() => Ok(Ok(())),
            Some(_) => failed(format!("the payer's approval {} reverted", approval.hash)),
            None => failed(format!(
                "the payer's approval {} was not confirmed in time",
                approval.hash
            )),
        }
    }

    /// After a sponsored approval landed, before the settlement is sent: the
    /// payer's balance and the proxy call simulated again from the signer
    /// that sends it (the payer may have moved its tokens or its allowance
    /// behind the approval). `Err`: why nothing more is sent.
    pub(super) async fn recheck_settlement(
        &self,
        verified: &Permit2Verified<'_>,
    ) -> Result<Result<(), Rejection>, SchemeError> {
        let chain = verified.chain;
        let payer = verified.payload.permit2_authorization.from;
        let simulator = chain.slots[verified.sender.unwrap_or(0)].signer.address();
        let balance = IErc20::balanceOfCall { account: payer }.abi_encode();
        let proxy = verified.proxy.address();
        let calls = vec![
            (
                "eth_call",
                pending_call_params(None, verified.asset, &balance),
            ),
            (
                "eth_call",
                pending_call_params(Some(simulator), proxy, &verified.calldata),
            ),
        ];
        let answers = chain.config.rpc.batch(calls).await.map_err(chain_error)?;
        let mut answers = Answers(answers.into_iter());
        let balance = super::read_u256(answers.next(), "balanceOf")?;
        if balance < verified.amount {
            let message = format!(
                "after the approval the payer's balance {balance} is below {}",
                verified.amount
            );
            let reason = reasons::PERMIT2_INSUFFICIENT_BALANCE;
            return Ok(Err(reject(reason, message, Some(payer))));
        }
        match answers.next() {
            Ok(_) => Ok(Ok(())),
            Err(error @ RpcError::Node { .. }) => {
                let message = format!(
                    "after the approval the settlement simulation reverted: {}",
                    revert_message(&error)
                );
                let reason = reasons::PERMIT2_SIMULATION_FAILED;
                Ok(Err(reject(reason, message, Some(payer))))
            }
            Err(error) => Err(chain_error(error)),
        }
    }
}
