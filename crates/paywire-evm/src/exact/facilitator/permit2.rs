//! The Permit2 transfer method: `exact` with `assetTransferMethod:
//! "permit2"` (the `x402ExactPermit2Proxy`) and `upto` (the
//! `x402UptoPermit2Proxy`), on the same engine as EIP-3009 (signers, nonces,
//! sending, receipts, attempts; see `method`).
//!
//! Verification runs the offline checks in the TypeScript SDK's order (so
//! the same payload gets the same reason code), then the signature (ECDSA,
//! else EIP-1271), then one batch of reads at `pending`: Permit2's and the
//! proxy's code, the Permit2 nonce bit, the payer's allowance to Permit2 and
//! balance, and the simulated proxy call from the signer that will send it.

use super::method::Settlement;
use super::verify::{Answer, Answers, Halt, Step};
use super::{
    ChainState, ExactEvmFacilitator, Rejection, chain_error, ecdsa_signer_matches,
    has_transfer_log, reject, revert_message,
};
use crate::Eip155ChainId;
use crate::contracts::{
    ERC1271_MAGIC_VALUE, IErc20, IErc1271, IPermit2, exact_permit2_proxy, upto_permit2_proxy,
};
use crate::eip6492;
use crate::exact::inflight::AuthorizationKey;
use crate::permit2::{
    EXACT_PERMIT2_PROXY, PERMIT2_ADDRESS, Permit2Authorization, Permit2Payload, UPTO_PERMIT2_PROXY,
};
use crate::reasons;
use crate::rpc::{Receipt, RpcError, call_params, decode_bytes, pending_call_params};
use crate::signer::EvmSigner;
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use paywire_core::{
    BoxFuture, ChainId, ErrorReason, PaymentPayload, PaymentRequirements, SchemeError,
    SettleResponse, VerifyResponse, X402_VERSION,
};

mod frontrun;
mod settle;
mod sponsor;

pub(super) use sponsor::Sponsor;

/// The x402 proxy a Permit2 payment goes through, which is also its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proxy {
    /// `exact`: the signed amount is the amount.
    Exact,
    /// `upto`: the signed amount is a maximum, and only the witness's
    /// facilitator may settle.
    Upto,
}

impl Proxy {
    /// The canonical proxy contract (the signature's spender).
    pub(crate) fn address(self) -> Address {
        match self {
            Self::Exact => EXACT_PERMIT2_PROXY,
            Self::Upto => UPTO_PERMIT2_PROXY,
        }
    }

    /// The scheme it serves.
    pub(crate) fn scheme(self) -> &'static str {
        match self {
            Self::Exact => crate::exact::SCHEME,
            Self::Upto => crate::permit2::UPTO_SCHEME,
        }
    }

    /// Why a used Permit2 nonce is refused: the scheme's replay reason.
    pub(crate) fn replay_reason(self) -> ErrorReason {
        match self {
            Self::Exact => reasons::NONCE_USED,
            Self::Upto => reasons::PERMIT2_INVALID_NONCE,
        }
    }
}

/// Verification or settlement: `upto` reads `requirements.amount` as the
/// signed maximum at verification and as the amount to charge at settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `/verify`.
    Verify,
    /// `/settle` (re-verification before sending).
    Settle,
}

/// A Permit2 payment that passed every check.
pub(super) struct Permit2Verified<'a> {
    pub(super) chain: &'a ChainState,
    pub(super) proxy: Proxy,
    pub(super) payload: Permit2Payload,
    pub(super) asset: Address,
    /// What the settlement moves (`upto`: the amount charged, maybe zero).
    pub(super) amount: U256,
    /// The signer that must send it (`upto`: the witness's facilitator);
    /// `None`: any.
    pub(super) sender: Option<usize>,
    /// The proxy's `settle` call.
    pub(super) calldata: Vec<u8>,
    /// How a payer without an allowance to Permit2 gets one.
    pub(super) sponsor: Option<Sponsor>,
}

/// The chain, token, recipient and parsed payload of a Permit2 payment this
/// facilitator serves, with the digest its payer signed.
struct Target<'a> {
    chain: &'a ChainState,
    asset: Address,
    pay_to: Address,
    payload: Permit2Payload,
    digest: B256,
    /// Whether an ECDSA signature by `from` proves the payer.
    proven: bool,
}

/// `(Permit2, owner, nonce)`: Permit2 nonces belong to the owner across
/// every token, so one key covers `exact` and `upto` and all tokens.
pub(super) fn permit2_key(auth: &Permit2Authorization) -> AuthorizationKey {
    (PERMIT2_ADDRESS, auth.from, B256::from(auth.nonce))
}

/// The spend key of a Permit2 payment: `eip155:<chain>:<permit2>:<owner>:<nonce>`.
pub(crate) fn spend_key(
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
) -> Option<String> {
    let chain = requirements.network.eip155_id()?;
    let permit2 = Permit2Payload::from_json(&payload.payload).ok()?;
    let auth = &permit2.permit2_authorization;
    Some(format!(
        "eip155:{chain}:{PERMIT2_ADDRESS:#x}:{:#x}:{:#x}",
        auth.from,
        B256::from(auth.nonce)
    ))
}

/// The proxy's `settle` calldata moving `amount` (an EIP-6492 wrapper, which
/// the proxy cannot use, is refused before this).
pub(super) fn settle_calldata(proxy: Proxy, payload: &Permit2Payload, amount: U256) -> Vec<u8> {
    let auth = &payload.permit2_authorization;
    let signature = payload.signature.clone();
    match proxy {
        Proxy::Exact => exact_permit2_proxy::settleCall {
            permit: exact_permit(auth),
            owner: auth.from,
            witness: exact_permit2_proxy::Witness {
                to: auth.witness.to,
                validAfter: auth.witness.valid_after.as_u256(),
            },
            signature,
        }
        .abi_encode(),
        Proxy::Upto => upto_permit2_proxy::settleCall {
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

pub(super) fn exact_permit(auth: &Permit2Authorization) -> exact_permit2_proxy::PermitTransferFrom {
    exact_permit2_proxy::PermitTransferFrom {
        permitted: exact_permit2_proxy::TokenPermissions {
            token: auth.permitted.token,
            amount: auth.permitted.amount.as_u256(),
        },
        nonce: auth.nonce,
        deadline: auth.deadline.as_u256(),
    }
}

pub(super) fn upto_permit(auth: &Permit2Authorization) -> upto_permit2_proxy::PermitTransferFrom {
    upto_permit2_proxy::PermitTransferFrom {
        permitted: upto_permit2_proxy::TokenPermissions {
            token: auth.permitted.token,
            amount: auth.permitted.amount.as_u256(),
        },
        nonce: auth.nonce,
        deadline: auth.deadline.as_u256(),
    }
}

/// Whether bit `nonce` of Permit2's unordered-nonce bitmap word is set.
fn nonce_used(word: U256, nonce: U256) -> bool {
    let bit = nonce.as_limbs()[0] & 0xff;
    word.bit(usize::try_from(bit).unwrap_or_default())
}

fn read_u256(answer: Answer, what: &str) -> Result<U256, SchemeError> {
    decode_bytes(answer)
        .ok()
        .and_then(|b| <U256 as alloy_sol_types::SolValue>::abi_decode(&b).ok())
        .ok_or_else(|| SchemeError::Chain(format!("{what} unreadable")))
}

impl ExactEvmFacilitator {
    /// `/verify` of a Permit2 payment through `proxy`.
    pub(crate) async fn permit2_verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        proxy: Proxy,
    ) -> Result<VerifyResponse, SchemeError> {
        Ok(
            match self
                .permit2_check(payload, requirements, proxy, Phase::Verify)
                .await?
            {
                Ok(verified) => {
                    VerifyResponse::valid(verified.payload.permit2_authorization.from.to_string())
                }
                Err(rejection) => VerifyResponse::invalid(
                    rejection.reason,
                    rejection.payer.map(|p| p.to_string()),
                )
                .with_message(rejection.message),
            },
        )
    }

    /// `permit2Authorization.from`, when an ECDSA signature by it over the
    /// Permit2 digest proves it (checked offline).
    pub(crate) fn permit2_payer(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<String> {
        let chain = self.chains.get(&requirements.network.eip155_id()?)?;
        let permit2 = Permit2Payload::from_json(&payload.payload).ok()?;
        let auth = &permit2.permit2_authorization;
        let digest = auth.signing_hash(chain.config.network.chain_id);
        ecdsa_signer_matches(&permit2.signature, &digest, auth.from)
            .then(|| auth.from.to_string().to_ascii_lowercase())
    }

    /// Verifies a Permit2 payment through `proxy`: `Ok(Err(_))` refuses it.
    pub(super) async fn permit2_check<'a>(
        &'a self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        proxy: Proxy,
        phase: Phase,
    ) -> Result<Result<Permit2Verified<'a>, Rejection>, SchemeError> {
        match self
            .permit2_steps(payload, requirements, proxy, phase)
            .await
        {
            Ok(verified) => Ok(Ok(verified)),
            Err(Halt::Refused(rejection)) => Ok(Err(rejection)),
            Err(Halt::Failed(error)) => Err(error),
        }
    }

    async fn permit2_steps<'a>(
        &'a self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        proxy: Proxy,
        phase: Phase,
    ) -> Step<Permit2Verified<'a>> {
        let target = self.permit2_target(payload, requirements, proxy, phase)?;
        let (amount, sender) = self.permit2_terms(&target, requirements, proxy, phase)?;
        let calldata = settle_calldata(proxy, &target.payload, amount);
        let extensions = payload.extensions.as_ref();
        let sponsor = self
            .permit2_reads(&target, extensions, proxy, amount, sender, &calldata)
            .await?;
        Ok(Permit2Verified {
            chain: target.chain,
            proxy,
            payload: target.payload,
            asset: target.asset,
            amount,
            sender,
            calldata,
            sponsor,
        })
    }

    /// The served chain, asset and recipient, and the parsed payload, whose
    /// `accepted` copy must be the server's requirements.
    fn permit2_target<'a>(
        &'a self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        proxy: Proxy,
        phase: Phase,
    ) -> Step<Target<'a>> {
        let chain = self.permit2_chain(payload, requirements, proxy)?;
        let invalid = |message: &str| -> Halt {
            reject(ErrorReason::INVALID_PAYMENT_REQUIREMENTS, message, None).into()
        };
        let asset = requirements
            .asset
            .parse::<Address>()
            .map_err(|_| invalid("asset is not an address"))?;
        let pay_to = requirements
            .pay_to
            .parse::<Address>()
            .map_err(|_| invalid("payTo is not an address"))?;
        // Only `upto` settles zero (nothing is sent); anything else asking
        // for zero is no payment.
        if requirements.amount.is_zero() && !(proxy == Proxy::Upto && phase == Phase::Settle) {
            return Err(invalid("amount must be positive"));
        }
        if chain.config.network.asset(asset).is_none() {
            let network = &requirements.network;
            let message = format!("asset {asset} is not accepted on {network}");
            return Err(reject(ErrorReason::UNSUPPORTED_ASSET, message, None).into());
        }
        if !payload.payload.contains_key("permit2Authorization")
            && payload.payload.contains_key("authorization")
        {
            return Err(invalid(
                "the requirements ask for the permit2 transfer method but the payload is an EIP-3009 authorization",
            ));
        }
        let permit2 = Permit2Payload::from_json(&payload.payload)
            .map_err(|e| reject(ErrorReason::INVALID_PAYLOAD, format!("payload: {e}"), None))?;
        let auth = &permit2.permit2_authorization;
        if auth.witness.facilitator.is_some() != (proxy == Proxy::Upto) {
            let message = match proxy {
                Proxy::Upto => "an upto witness must name the facilitator",
                Proxy::Exact => "an exact witness names no facilitator",
            };
            return Err(reject(ErrorReason::INVALID_PAYLOAD, message, None).into());
        }
        // The client's copy of the requirements must be the server's; at an
        // `upto` settlement its amount is the signed maximum, whatever is
        // charged.
        let accepted = &payload.accepted;
        let accepted_amount = match (proxy, phase) {
            (Proxy::Upto, Phase::Settle) => auth.permitted.amount,
            _ => requirements.amount,
        };
        let accepted_matches = accepted.asset.parse::<Address>().ok() == Some(asset)
            && accepted.pay_to.parse::<Address>().ok() == Some(pay_to)
            && accepted.amount == accepted_amount;
        if !accepted_matches {
            return Err(invalid(
                "accepted requirements differ from the server's (asset, payTo or amount)",
            ));
        }
        let digest = auth.signing_hash(chain.config.network.chain_id);
        let proven = ecdsa_signer_matches(&permit2.signature, &digest, auth.from);
        Ok(Target {
            chain,
            asset,
            pay_to,
            payload: permit2,
            digest,
            proven,
        })
    }

    /// The chain of a payment whose version, scheme and network this
    /// facilitator serves.
    fn permit2_chain(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        proxy: Proxy,
    ) -> Step<&ChainState> {
        if payload.x402_version != X402_VERSION {
            let message = "x402Version must be 2";
            return Err(reject(ErrorReason::INVALID_X402_VERSION, message, None).into());
        }
        let scheme = proxy.scheme();
        if requirements.scheme != scheme || payload.accepted.scheme != scheme {
            let reason = match proxy {
                Proxy::Exact => ErrorReason::INVALID_SCHEME,
                Proxy::Upto => reasons::UPTO_INVALID_SCHEME,
            };
            return Err(reject(reason, format!("scheme must be {scheme}"), None).into());
        }
        if payload.accepted.network != requirements.network {
            let reason = match proxy {
                Proxy::Exact => ErrorReason::INVALID_NETWORK,
                Proxy::Upto => reasons::UPTO_NETWORK_MISMATCH,
            };
            let message = "payload network differs from requirements";
            return Err(reject(reason, message, None).into());
        }
        requirements
            .network
            .eip155_id()
            .and_then(|id| self.chains.get(&id))
            .ok_or_else(|| {
                let network = &requirements.network;
                let message = format!("network {network} is not served by this facilitator");
                reject(ErrorReason::INVALID_NETWORK, message, None).into()
            })
    }

    /// The signed terms against the requirements, in the TypeScript SDK's
    /// order: spender, recipient, (`upto`) facilitator, deadline (with the
    /// same safety buffer as EIP-3009's `validBefore`), `validAfter`,
    /// amount, token. The amount to move and the signer that must send.
    fn permit2_terms(
        &self,
        target: &Target<'_>,
        requirements: &PaymentRequirements,
        proxy: Proxy,
        phase: Phase,
    ) -> Result<(U256, Option<usize>), Rejection> {
        let auth = &target.payload.permit2_authorization;
        // Anyone can copy an old payload: only a proven payer is named.
        let payer = target.proven.then_some(auth.from);
        let refuse = |reason: ErrorReason, message: String| Err(reject(reason, message, payer));
        if auth.spender != proxy.address() {
            let message = format!(
                "spender {} is not the {} proxy",
                auth.spender,
                proxy.scheme()
            );
            return refuse(reasons::PERMIT2_INVALID_SPENDER, message);
        }
        if auth.witness.to != target.pay_to {
            let message = format!(
                "witness pays {} but payTo is {}",
                auth.witness.to, target.pay_to
            );
            return refuse(reasons::PERMIT2_RECIPIENT_MISMATCH, message);
        }
        let sender = match auth.witness.facilitator {
            None => None,
            Some(facilitator) => {
                let slots = &target.chain.slots;
                let Some(slot) = slots.iter().position(|s| s.signer.address() == facilitator)
                else {
                    let message = format!("witness facilitator {facilitator} is not a signer here");
                    return refuse(reasons::UPTO_FACILITATOR_MISMATCH, message);
                };
                Some(slot)
            }
        };
        let now = U256::from((self.clock)());
        if auth.deadline.as_u256() < now + U256::from(self.valid_before_buffer) {
            let buffer = self.valid_before_buffer;
            return refuse(
                reasons::PERMIT2_DEADLINE_EXPIRED,
                format!("deadline is less than {buffer} s away"),
            );
        }
        if auth.witness.valid_after.as_u256() > now {
            return refuse(
                reasons::PERMIT2_NOT_YET_VALID,
                "witness validAfter is in the future".into(),
            );
        }
        let (permitted, required) = (auth.permitted.amount, requirements.amount);
        if proxy == Proxy::Upto && phase == Phase::Settle {
            if required > permitted {
                let message = format!("settling {required} exceeds the signed maximum {permitted}");
                return refuse(reasons::UPTO_SETTLEMENT_EXCEEDS_AMOUNT, message);
            }
        } else if permitted != required || permitted.is_zero() {
            let message = format!("permitted amount {permitted} differs from amount {required}");
            return refuse(reasons::PERMIT2_AMOUNT_MISMATCH, message);
        }
        if auth.permitted.token != target.asset {
            let message = format!(
                "permitted token {} is not the asset {}",
                auth.permitted.token, target.asset
            );
            return refuse(reasons::PERMIT2_TOKEN_MISMATCH, message);
        }
        if !target.proven && eip6492::is_wrapped(&target.payload.signature) {
            let message = "counterfactual (EIP-6492) wallets cannot pay through Permit2 here";
            return refuse(reasons::PERMIT2_INVALID_SIGNATURE, message.into());
        }
        Ok((required.as_u256(), sender))
    }

    /// One batch of reads at `pending`, judged in order: signature (a
    /// contract wallet's EIP-1271 answer), contracts deployed, nonce unused,
    /// allowance to Permit2 (or a gas-sponsoring extension standing in for
    /// it), balance, simulation.
    async fn permit2_reads(
        &self,
        target: &Target<'_>,
        extensions: Option<&paywire_core::Extensions>,
        proxy: Proxy,
        amount: U256,
        sender: Option<usize>,
        calldata: &[u8],
    ) -> Step<Option<Sponsor>> {
        let payer = Some(target.payload.permit2_authorization.from);
        let simulator = target.chain.slots[sender.unwrap_or(0)].signer.address();
        let calls = read_calls(target, proxy, simulator, calldata);
        let answers = target.chain.config.rpc.batch(calls).await;
        let mut answers = Answers(answers.map_err(chain_error)?.into_iter());
        let prerequisites = [answers.next(), answers.next(), answers.next()];
        let (allowance, balance, simulation) = (answers.next(), answers.next(), answers.next());
        let signature = (!target.proven).then(|| answers.next());
        judge_prerequisites(target, proxy, prerequisites, signature)?;
        if amount.is_zero() {
            // An `upto` settlement of nothing sends nothing.
            return Ok(None);
        }
        let sponsor = if read_u256(allowance, "allowance")? < amount {
            let sponsor = self
                .sponsorship(target, extensions, proxy, amount, simulator)
                .await?;
            Some(sponsor)
        } else {
            None
        };
        let balance = read_u256(balance, "balanceOf")?;
        if balance < amount {
            let message = format!("balance {balance} is below {amount}");
            return Err(reject(reasons::PERMIT2_INSUFFICIENT_BALANCE, message, payer).into());
        }
        if sponsor.is_some() {
            // The plain simulation fails for want of the allowance the
            // sponsored step provides; the sponsorship was checked instead.
            return Ok(sponsor);
        }
        match simulation {
            Ok(_) => Ok(None),
            Err(error @ RpcError::Node { .. }) => {
                let message = format!("simulation reverted: {}", revert_message(&error));
                Err(reject(reasons::PERMIT2_SIMULATION_FAILED, message, payer).into())
            }
            Err(error) => Err(chain_error(error).into()),
        }
    }
}

/// The batch [`ExactEvmFacilitator::permit2_reads`] judges: Permit2's and
/// the proxy's code, the nonce's bitmap word, the allowance to Permit2, the
/// balance, the simulated proxy call from `simulator`, and (a signature
/// that is not the payer's ECDSA one) the payer's EIP-1271 answer.
fn read_calls(
    target: &Target<'_>,
    proxy: Proxy,
    simulator: Address,
    calldata: &[u8],
) -> Vec<(&'static str, serde_json::Value)> {
    let auth = &target.payload.permit2_authorization;
    let word = IPermit2::nonceBitmapCall {
        owner: auth.from,
        wordPos: auth.nonce >> 8usize,
    }
    .abi_encode();
    let allowance = IErc20::allowanceCall {
        owner: auth.from,
        spender: PERMIT2_ADDRESS,
    }
    .abi_encode();
    let balance = IErc20::balanceOfCall { account: auth.from }.abi_encode();
    let (asset, to) = (target.asset, proxy.address());
    let mut calls = vec![
        (
            "eth_getCode",
            serde_json::json!([PERMIT2_ADDRESS, "latest"]),
        ),
        ("eth_getCode", serde_json::json!([to, "latest"])),
        (
            "eth_call",
            pending_call_params(None, PERMIT2_ADDRESS, &word),
        ),
        ("eth_call", pending_call_params(None, asset, &allowance)),
        ("eth_call", pending_call_params(None, asset, &balance)),
        (
            "eth_call",
            pending_call_params(Some(simulator), to, calldata),
        ),
    ];
    if !target.proven {
        let call = IErc1271::isValidSignatureCall {
            hash: target.digest,
            signature: target.payload.signature.clone(),
        };
        calls.push(("eth_call", call_params(None, auth.from, &call.abi_encode())));
    }
    calls
}

/// A contract wallet's signature (its EIP-1271 answer, when asked), then
/// Permit2 and the proxy deployed, then the Permit2 nonce unused.
fn judge_prerequisites(
    target: &Target<'_>,
    proxy: Proxy,
    [permit2_code, proxy_code, word]: [Answer; 3],
    signature: Option<Answer>,
) -> Step<()> {
    let auth = &target.payload.permit2_authorization;
    let payer = Some(auth.from);
    if let Some(answer) = signature {
        let valid = decode_bytes(answer)
            .ok()
            .and_then(|b| IErc1271::isValidSignatureCall::abi_decode_returns(&b).ok())
            .is_some_and(|magic| magic.0 == ERC1271_MAGIC_VALUE);
        if !valid {
            let message = "signature is neither an ECDSA signature by `from` nor approved by its EIP-1271 wallet";
            return Err(reject(reasons::PERMIT2_INVALID_SIGNATURE, message, None).into());
        }
    }
    for (code, contract) in [
        (permit2_code, PERMIT2_ADDRESS),
        (proxy_code, proxy.address()),
    ] {
        if decode_bytes(code).map_err(chain_error)?.is_empty() {
            let message = format!("no contract at {contract} on this chain");
            return Err(reject(reasons::PERMIT2_PROXY_NOT_DEPLOYED, message, payer).into());
        }
    }
    if nonce_used(read_u256(word, "nonceBitmap")?, auth.nonce) {
        let message = "the Permit2 nonce is already used";
        return Err(reject(proxy.replay_reason(), message, payer).into());
    }
    Ok(())
}

/// A Permit2 settlement transaction, judged on its receipt.
pub(super) struct Permit2Outcome<'a> {
    pub(super) chain: &'a ChainState,
    pub(super) network: &'a ChainId,
    pub(super) key: AuthorizationKey,
    pub(super) payer: Address,
    pub(super) asset: Address,
    pub(super) pay_to: Address,
    pub(super) amount: U256,
    pub(super) proxy: Proxy,
    /// What the payer signed (to recognise another transaction's execution).
    pub(super) authorization: Permit2Authorization,
}

impl Permit2Outcome<'_> {
    fn sought(&self) -> frontrun::Sought<'_> {
        frontrun::Sought {
            authorization: &self.authorization,
            asset: self.asset,
            pay_to: self.pay_to,
            amount: self.amount,
        }
    }

    /// Another transaction that executed this payment (front-run), looked
    /// for when the nonce is found used or our transaction reverted.
    async fn executed_elsewhere(
        &self,
        engine: &ExactEvmFacilitator,
        nonce_used: bool,
    ) -> Result<Option<B256>, SchemeError> {
        engine
            .find_permit2_execution(self.chain, self.proxy, &self.sought(), nonce_used)
            .await
    }

    fn proves(&self, receipt: &Receipt) -> bool {
        receipt.succeeded()
            && has_transfer_log(receipt, self.asset, self.payer, self.pay_to, self.amount)
    }

    fn settled(&self, hash: B256) -> SettleResponse {
        let payer = Some(self.payer.to_string());
        let mut response = SettleResponse::settled(self.network.clone(), hash.to_string(), payer);
        response.amount = Some(self.amount.into());
        response
    }
}

impl Settlement for Permit2Outcome<'_> {
    fn chain(&self) -> &ChainState {
        self.chain
    }

    fn network(&self) -> &ChainId {
        self.network
    }

    fn key(&self) -> AuthorizationKey {
        self.key
    }

    fn payer(&self) -> Address {
        self.payer
    }

    fn judge<'a>(
        &'a self,
        engine: &'a ExactEvmFacilitator,
        hash: B256,
        receipt: &'a Receipt,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        Box::pin(async move {
            if self.proves(receipt) {
                return Ok(self.settled(hash));
            }
            if !receipt.succeeded()
                && let Some(earlier) = self.executed_elsewhere(engine, false).await?
            {
                // Our transaction lost the race to another execution of this
                // very payment: the payer was charged once, by that one.
                tracing::info!(%hash, %earlier, "Permit2 payment executed by another transaction");
                return Ok(self.settled(earlier));
            }
            let message = if receipt.succeeded() {
                "transaction succeeded but did not transfer the exact amount to payTo"
            } else {
                "settlement transaction reverted"
            };
            Ok(SettleResponse::failed(
                self.network.clone(),
                ErrorReason::INVALID_TRANSACTION_STATE,
                Some(self.payer.to_string()),
                hash.to_string(),
            )
            .with_message(message))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxies' ABI as the TypeScript SDK 2.27 declares it
    /// (`x402ExactPermit2ProxyABI`, `x402UptoPermit2ProxyABI`).
    #[test]
    fn proxy_signatures_are_the_sdks() {
        assert_eq!(
            exact_permit2_proxy::settleCall::SIGNATURE,
            "settle(((address,uint256),uint256,uint256),address,(address,uint256),bytes)"
        );
        assert_eq!(
            exact_permit2_proxy::settleWithPermitCall::SIGNATURE,
            "settleWithPermit((uint256,uint256,bytes32,bytes32,uint8),((address,uint256),uint256,uint256),address,(address,uint256),bytes)"
        );
        assert_eq!(
            upto_permit2_proxy::settleCall::SIGNATURE,
            "settle(((address,uint256),uint256,uint256),uint256,address,(address,address,uint256),bytes)"
        );
        assert_eq!(
            upto_permit2_proxy::settleWithPermitCall::SIGNATURE,
            "settleWithPermit((uint256,uint256,bytes32,bytes32,uint8),((address,uint256),uint256,uint256),uint256,address,(address,address,uint256),bytes)"
        );
    }

    /// Permit2's unordered nonces: word `nonce >> 8`, bit `nonce & 0xff`.
    #[test]
    fn nonce_bits() {
        let nonce = (U256::from(3u64) << 8usize) | U256::from(200u64);
        assert!(nonce_used(U256::from(1u64) << 200usize, nonce));
        assert!(!nonce_used(U256::from(1u64) << 199usize, nonce));
        assert!(nonce_used(U256::MAX, U256::MAX));
        assert!(!nonce_used(U256::ZERO, U256::MAX));
        assert_eq!(nonce >> 8usize, U256::from(3u64));
    }
}
