//! Verification of an `exact` EIP-3009 payment, in named steps: the
//! requirements must be served here, the signed terms must match them, the
//! signed message is rebuilt, and the chain has the last word (one simulation
//! on the happy path; the reads that name a failure's reason only when the
//! simulation fails).

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use paywire_core::{
    ErrorReason, PaymentPayload, PaymentRequirements, SchemeError, SchemeFacilitator, X402_VERSION,
};
use serde_json::Value;

use super::{
    ChainState, Checked, CounterfactualWallets, Deployment, EvmChainConfig, ExactEvmFacilitator,
    Rejection, Verified, chain_error, ecdsa_signer_matches, reject, revert_message,
};
use crate::Eip155ChainId;
use crate::contracts::{ERC1271_MAGIC_VALUE, IEip3009Token, IErc1271};
use crate::eip6492;
use crate::exact::SCHEME;
use crate::exact::payload::{Authorization, ExactEvmPayload, eip712_domain, signing_hash};
use crate::reasons;
use crate::rpc::{RpcError, call_params, create_call_params, decode_bytes, pending_call_params};

/// Why verification stopped before the end: the payment is refused, or the
/// chain could not be asked.
pub(super) enum Halt {
    Refused(Rejection),
    Failed(SchemeError),
}

impl From<Rejection> for Halt {
    fn from(rejection: Rejection) -> Self {
        Self::Refused(rejection)
    }
}

impl From<SchemeError> for Halt {
    fn from(error: SchemeError) -> Self {
        Self::Failed(error)
    }
}

/// The outcome of one verification step.
pub(super) type Step<T> = Result<T, Halt>;

/// One JSON-RPC answer of a batch.
pub(super) type Answer = Result<Value, RpcError>;

/// The answers of a batch, in order; a short batch reads as an error.
pub(super) struct Answers(pub(super) std::vec::IntoIter<Answer>);

impl Answers {
    pub(super) fn next(&mut self) -> Answer {
        self.0
            .next()
            .unwrap_or(Err(RpcError::Decode("short batch".into())))
    }
}

/// The chain, token and recipient of a payment this facilitator serves.
struct Target<'a> {
    chain: &'a ChainState,
    asset: Address,
    pay_to: Address,
}

/// The message the payer signed and the transfer that executes it.
struct Signed {
    digest: B256,
    /// The EIP-6492 wrapper of a wallet that may not be deployed yet.
    counterfactual: Option<eip6492::Counterfactual>,
    /// The payload as it will be executed (an EIP-6492 wrapper removed).
    executed: ExactEvmPayload,
    calldata: Vec<u8>,
}

/// What the chain said about a payment.
struct Reads {
    /// Why the simulated transfer reverted (`None`: it went through, or it
    /// cannot run before the wallet's deployment).
    simulation_error: Option<RpcError>,
    /// The authorization's state and the payer's balance, when they were read.
    state: Option<(Answer, Answer)>,
    /// The deployment of the payer's counterfactual wallet, when needed.
    deploy: Option<Deployment>,
}

/// The reads of the authorization's state and of the payer's balance, at
/// `pending`: a transfer of this payer (or of this authorization) waiting in
/// the node's pool already counts, so nothing is sent that its mining would
/// revert.
fn state_calls(asset: Address, auth: &Authorization) -> Vec<(&'static str, Value)> {
    let used = IEip3009Token::authorizationStateCall {
        authorizer: auth.from,
        nonce: auth.nonce,
    };
    let balance = IEip3009Token::balanceOfCall { account: auth.from };
    vec![
        (
            "eth_call",
            pending_call_params(None, asset, &used.abi_encode()),
        ),
        (
            "eth_call",
            pending_call_params(None, asset, &balance.abi_encode()),
        ),
    ]
}

/// Refuses an authorization already used, or not covered by the payer's balance.
fn judge_state(
    (used, balance): (Answer, Answer),
    auth: &Authorization,
    payer: Option<Address>,
) -> Step<()> {
    let used = decode_bytes(used)
        .ok()
        .and_then(|b| IEip3009Token::authorizationStateCall::abi_decode_returns(&b).ok())
        .ok_or_else(|| SchemeError::Chain("authorizationState unreadable".into()))?;
    if used {
        return Err(reject(
            reasons::NONCE_USED,
            "authorization nonce already used",
            payer,
        )
        .into());
    }
    let balance = decode_bytes(balance)
        .ok()
        .and_then(|b| IEip3009Token::balanceOfCall::abi_decode_returns(&b).ok())
        .ok_or_else(|| SchemeError::Chain("balanceOf unreadable".into()))?;
    if balance < auth.value.as_u256() {
        return Err(reject(
            ErrorReason::INSUFFICIENT_FUNDS,
            format!("balance {balance} is below {}", auth.value),
            payer,
        )
        .into());
    }
    Ok(())
}

/// The deployment of an undeployed counterfactual wallet, when this chain
/// allows deployments and the estimate fits the gas cap; otherwise why not.
/// `estimate` is the answer to `eth_estimateGas` of the factory call (asked
/// only when deployments are on).
pub(super) fn deployment(
    config: &EvmChainConfig,
    wrapped: &eip6492::Counterfactual,
    estimate: Option<Answer>,
) -> Result<Deployment, String> {
    let Some(estimate) = estimate else {
        return Err(
            "the payer's wallet is not deployed and this facilitator does not deploy counterfactual (EIP-6492) wallets"
                .into(),
        );
    };
    let estimate = estimate
        .ok()
        .and_then(|value| serde_json::from_value::<U256>(value).ok())
        .and_then(|gas| u64::try_from(gas).ok())
        .ok_or("the deployment of the payer's counterfactual wallet fails")?;
    // A margin over the estimate: state can change before inclusion.
    let gas_limit = estimate.saturating_add(estimate / 5);
    if gas_limit > config.max_wallet_deployment_gas {
        return Err(format!(
            "deploying the payer's wallet needs {gas_limit} gas, above this facilitator's cap of {}",
            config.max_wallet_deployment_gas
        ));
    }
    Ok(Deployment {
        factory: wrapped.factory,
        calldata: wrapped.factory_calldata.clone(),
        gas_limit,
    })
}

impl ExactEvmFacilitator {
    /// Verifies a payment: `Ok(Err(_))` refuses it, `Err(_)` means the
    /// chain could not be asked.
    pub(super) async fn check<'a>(
        &'a self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Checked<'a> {
        match self.verify_steps(payload, requirements).await {
            Ok(verified) => Ok(Ok(verified)),
            Err(Halt::Refused(rejection)) => Ok(Err(rejection)),
            Err(Halt::Failed(error)) => Err(error),
        }
    }

    async fn verify_steps<'a>(
        &'a self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Step<Verified<'a>> {
        let target = self.served_target(payload, requirements)?;
        if payload.payload.contains_key("permit2Authorization") {
            let message = "the payload is a Permit2 authorization but the requirements ask for EIP-3009 (extra.assetTransferMethod is not \"permit2\")";
            return Err(reject(ErrorReason::INVALID_PAYLOAD, message, None).into());
        }
        let exact = ExactEvmPayload::from_json(&payload.payload)
            .map_err(|e| reject(ErrorReason::INVALID_PAYLOAD, format!("payload: {e}"), None))?;
        self.check_signed_terms(&exact, payload, requirements, target.pay_to)?;
        let signed = self.signed_transfer(&target, &exact).await?;
        let reads = self.read_chain(&target, &exact, &signed).await?;
        let payer = Some(exact.authorization.from);
        if let Some(state) = reads.state {
            judge_state(state, &exact.authorization, payer)?;
        }
        if let Some(error) = reads.simulation_error {
            return Err(reject(
                reasons::SIMULATION_FAILED,
                format!("simulation reverted: {}", revert_message(&error)),
                payer,
            )
            .into());
        }
        Ok(Verified {
            chain: target.chain,
            asset: target.asset,
            payload: signed.executed,
            calldata: signed.calldata,
            deploy: reads.deploy,
        })
    }

    /// The chain of a payment whose version, scheme, network and transfer
    /// method this facilitator serves.
    fn served_chain(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Step<&ChainState> {
        let accepted = &payload.accepted;
        if payload.x402_version != X402_VERSION {
            let message = "x402Version must be 2";
            return Err(reject(ErrorReason::INVALID_X402_VERSION, message, None).into());
        }
        if requirements.scheme != SCHEME || accepted.scheme != SCHEME {
            return Err(reject(ErrorReason::INVALID_SCHEME, "scheme must be exact", None).into());
        }
        if accepted.network != requirements.network {
            let message = "payload network differs from requirements";
            return Err(reject(ErrorReason::INVALID_NETWORK, message, None).into());
        }
        let Some(chain) = requirements
            .network
            .eip155_id()
            .and_then(|id| self.chains.get(&id))
        else {
            let network = &requirements.network;
            let message = format!("network {network} is not served by this facilitator");
            return Err(reject(ErrorReason::INVALID_NETWORK, message, None).into());
        };
        match requirements.extra_str("assetTransferMethod") {
            None | Some("eip3009") => Ok(chain),
            Some(other) => {
                let message = format!("asset transfer method {other:?} is not supported");
                Err(reject(ErrorReason::INVALID_PAYMENT_REQUIREMENTS, message, None).into())
            }
        }
    }

    /// The token and recipient of a payment on a served chain: a positive
    /// amount of an accepted asset, the client's `accepted` copy equal to
    /// the server's requirements.
    fn served_target<'a>(
        &'a self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Step<Target<'a>> {
        let chain = self.served_chain(payload, requirements)?;
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
        if requirements.amount.is_zero() {
            // A zero-value transfer pays nobody and would cost the
            // facilitator gas: never a payment.
            return Err(invalid("amount must be positive for the exact scheme"));
        }
        if chain.config.network.asset(asset).is_none() {
            let network = &requirements.network;
            let message = format!("asset {asset} is not accepted on {network}");
            return Err(reject(ErrorReason::UNSUPPORTED_ASSET, message, None).into());
        }
        // The client's copy of the requirements must be the server's.
        let accepted = &payload.accepted;
        let accepted_matches = accepted.asset.parse::<Address>().ok() == Some(asset)
            && accepted.pay_to.parse::<Address>().ok() == Some(pay_to)
            && accepted.amount == requirements.amount;
        if !accepted_matches {
            return Err(invalid(
                "accepted requirements differ from the server's (asset, payTo or amount)",
            ));
        }
        Ok(Target {
            chain,
            asset,
            pay_to,
        })
    }

    /// [`Self::check_terms`]; a refusal names the payer only when an ECDSA
    /// signature proves it, checked offline: anyone can copy (from, nonce)
    /// of an old transfer.
    fn check_signed_terms(
        &self,
        exact: &ExactEvmPayload,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        pay_to: Address,
    ) -> Step<()> {
        let auth = &exact.authorization;
        if let Err(mut rejection) = self.check_terms(auth, requirements, pay_to) {
            rejection.payer = self
                .authenticated_payer(payload, requirements)
                .map(|_| auth.from);
            return Err(rejection.into());
        }
        Ok(())
    }

    /// The signed authorization against the server's requirements: recipient,
    /// exact (non-zero) value, and a validity window covering now plus the
    /// safety buffer. A refusal names no payer: nothing proved who signed.
    fn check_terms(
        &self,
        auth: &Authorization,
        requirements: &PaymentRequirements,
        pay_to: Address,
    ) -> Result<(), Rejection> {
        let payer = None;
        // Every comparison below is against the signed authorization and the
        // server's requirements, never against the client's `accepted` copy.
        if auth.to != pay_to {
            return Err(reject(
                reasons::RECIPIENT_MISMATCH,
                format!("authorization pays {} but payTo is {pay_to}", auth.to),
                payer,
            ));
        }
        if auth.value.is_zero() || auth.value != requirements.amount {
            return Err(reject(
                reasons::VALUE_MISMATCH,
                format!(
                    "authorization value {} differs from amount {}",
                    auth.value, requirements.amount
                ),
                payer,
            ));
        }
        let now = U256::from((self.clock)());
        if auth.valid_after.as_u256() > now {
            return Err(reject(
                reasons::VALID_AFTER,
                "authorization is not valid yet",
                payer,
            ));
        }
        if auth.valid_before.as_u256() < now + U256::from(self.valid_before_buffer) {
            return Err(reject(
                reasons::VALID_BEFORE,
                format!(
                    "authorization expires in less than {} s",
                    self.valid_before_buffer
                ),
                payer,
            ));
        }
        Ok(())
    }

    /// The EIP-712 digest the payer signed (the token's own domain) and the
    /// transfer executing the authorization.
    async fn signed_transfer(&self, target: &Target<'_>, exact: &ExactEvmPayload) -> Step<Signed> {
        let (chain, asset) = (target.chain, target.asset);
        let (name, version) = self.domain_of(chain, asset).await?;
        let domain = eip712_domain(&name, &version, chain.config.network.chain_id, asset);
        let digest = signing_hash(&exact.authorization, &domain);
        let counterfactual = eip6492::unwrap(&exact.signature);
        if counterfactual.is_none() && eip6492::is_wrapped(&exact.signature) {
            return Err(reject(reasons::SIGNATURE, "malformed EIP-6492 signature", None).into());
        }
        let executed = match &counterfactual {
            Some(wrapped) => ExactEvmPayload {
                authorization: exact.authorization.clone(),
                signature: wrapped.inner_signature.clone(),
            },
            None => exact.clone(),
        };
        let calldata = executed.transfer_calldata();
        Ok(Signed {
            digest,
            counterfactual,
            executed,
            calldata,
        })
    }

    /// Simulates the transfer (the token checks the signature, ECDSA or
    /// EIP-1271, the nonce and the balance itself, so a simulation that
    /// succeeds proves them all: the happy path costs one node call and no
    /// elliptic-curve work here). A counterfactual wallet's validation goes
    /// into the same batch; the reads that name a failure's reason follow
    /// only when the simulation fails.
    async fn read_chain(
        &self,
        target: &Target<'_>,
        exact: &ExactEvmPayload,
        signed: &Signed,
    ) -> Step<Reads> {
        let config = &target.chain.config;
        let deploys = config.counterfactual_wallets == CounterfactualWallets::Deploy;
        let calls = first_calls(target, exact, signed, deploys);
        let answers = config.rpc.batch(calls).await.map_err(chain_error)?;
        let mut answers = Answers(answers.into_iter());
        let simulation = answers.next();
        let (mut state, mut deploy) = (None, None);
        if let Some(wrapped) = &signed.counterfactual {
            state = Some((answers.next(), answers.next()));
            let payer = Some(exact.authorization.from);
            deploy = check_counterfactual(config, wrapped, &mut answers, deploys, payer)?;
        }
        // An undeployed wallet cannot be simulated before its deployment (the
        // validator call above stood in for the signature check).
        let simulation_error = match simulation {
            Ok(_) => None,
            Err(_) if deploy.is_some() => None,
            Err(error @ RpcError::Node { .. }) => Some(error),
            Err(error) => return Err(chain_error(error).into()),
        };
        if state.is_none() && simulation_error.is_some() {
            state = Some(self.diagnose(target, exact, signed).await?);
        }
        Ok(Reads {
            simulation_error,
            state,
            deploy,
        })
    }

    /// After a failed simulation: the reads naming the failed check,
    /// signature first (an ECDSA signature by `from`, or else a deployed
    /// contract wallet's EIP-1271 answer), then the authorization's state
    /// and the payer's balance.
    async fn diagnose(
        &self,
        target: &Target<'_>,
        exact: &ExactEvmPayload,
        signed: &Signed,
    ) -> Step<(Answer, Answer)> {
        let auth = &exact.authorization;
        let is_eoa_signature = ecdsa_signer_matches(&exact.signature, &signed.digest, auth.from);
        let mut calls = state_calls(target.asset, auth);
        if !is_eoa_signature {
            let call = IErc1271::isValidSignatureCall {
                hash: signed.digest,
                signature: exact.signature.clone(),
            };
            calls.push(("eth_call", call_params(None, auth.from, &call.abi_encode())));
        }
        let rpc = &target.chain.config.rpc;
        let answers = rpc.batch(calls).await.map_err(chain_error)?;
        let mut answers = Answers(answers.into_iter());
        let state = (answers.next(), answers.next());
        if !is_eoa_signature {
            let valid_1271 = decode_bytes(answers.next())
                .ok()
                .and_then(|b| IErc1271::isValidSignatureCall::abi_decode_returns(&b).ok())
                .is_some_and(|magic| magic.0 == ERC1271_MAGIC_VALUE);
            if !valid_1271 {
                let message = "signature does not authorise this transfer (neither ECDSA by `from` nor EIP-1271)";
                return Err(reject(reasons::SIGNATURE, message, None).into());
            }
        }
        Ok(state)
    }
}

/// The first batch: the simulated transfer (read at `pending`, from the
/// first settlement signer), and for a counterfactual wallet its state
/// reads, its code, its EIP-6492 validation and (when deployments are on)
/// the deployment's gas estimate.
fn first_calls(
    target: &Target<'_>,
    exact: &ExactEvmPayload,
    signed: &Signed,
    deploys: bool,
) -> Vec<(&'static str, Value)> {
    let auth = &exact.authorization;
    let simulator = target.chain.slots[0].signer.address();
    let mut calls = vec![(
        "eth_call",
        pending_call_params(Some(simulator), target.asset, &signed.calldata),
    )];
    if let Some(wrapped) = &signed.counterfactual {
        calls.extend(state_calls(target.asset, auth));
        calls.push(("eth_getCode", serde_json::json!([auth.from, "latest"])));
        let validation = eip6492::validation_calldata(auth.from, signed.digest, &exact.signature);
        calls.push(("eth_call", create_call_params(&validation)));
        if deploys {
            calls.push((
                "eth_estimateGas",
                serde_json::json!([{
                    "from": simulator,
                    "to": wrapped.factory,
                    "data": wrapped.factory_calldata,
                }]),
            ));
        }
    }
    calls
}

/// A counterfactual wallet's answers: its EIP-6492 signature must validate;
/// an undeployed wallet needs a deployment this facilitator makes (or the
/// payment is refused).
fn check_counterfactual(
    config: &EvmChainConfig,
    wrapped: &eip6492::Counterfactual,
    answers: &mut Answers,
    deploys: bool,
    payer: Option<Address>,
) -> Step<Option<Deployment>> {
    let code = decode_bytes(answers.next()).map_err(chain_error)?;
    let valid = decode_bytes(answers.next()).is_ok_and(|answer| answer.as_ref() == [1u8]);
    if !valid {
        let message = "EIP-6492 signature does not validate for `from`";
        return Err(reject(reasons::SIGNATURE, message, None).into());
    }
    if !code.is_empty() {
        return Ok(None);
    }
    let estimate = deploys.then(|| answers.next());
    match deployment(config, wrapped, estimate) {
        Ok(planned) => Ok(Some(planned)),
        Err(message) => Err(reject(reasons::UNDEPLOYED_SMART_WALLET, message, payer).into()),
    }
}
