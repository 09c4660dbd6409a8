//! The payer's side of the Permit2 allowance: reading it, the one-time
//! `approve(Permit2, amount)` transaction (sent by the payer, or signed for
//! a facilitator that sponsors its gas), and the EIP-2612 permit that
//! replaces it on tokens that implement EIP-2612.

use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_sol_types::{Eip712Domain, SolCall, SolStruct};
use paywire_core::SchemeError;
use serde_json::{Value, json};

use super::PERMIT2_ADDRESS;
use crate::rpc::{RpcClient, RpcError, call_params, decode_bytes};
use crate::signer::EvmSigner;

/// The ERC-20 calls and EIP-2612 message of the approval paths.
use crate::contracts::{IErc20, Permit};

/// Gas limit of a signed `approve` (a first approval writes one storage
/// slot and logs `Approval`: about 46k on common tokens; the TypeScript SDK
/// uses the same bound, so sponsoring facilitators accept it).
pub const APPROVE_GAS_LIMIT: u64 = 70_000;

/// Version of the `info` objects this client writes for both sponsoring
/// extensions.
const INFO_VERSION: &str = "1";

/// How long [`approve_permit2`] waits for its transaction to be mined.
const APPROVE_RECEIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// `approve(PERMIT2_ADDRESS, amount)` calldata.
pub fn approve_permit2_calldata(amount: U256) -> Bytes {
    IErc20::approveCall {
        spender: PERMIT2_ADDRESS,
        amount,
    }
    .abi_encode()
    .into()
}

/// The allowance `owner` gave the Permit2 contract on `token`, read from a
/// node that must serve `chain_id` (checked in the same round trip).
pub async fn permit2_allowance(
    rpc: &RpcClient,
    chain_id: u64,
    token: Address,
    owner: Address,
) -> Result<U256, RpcError> {
    let call = IErc20::allowanceCall {
        owner,
        spender: PERMIT2_ADDRESS,
    }
    .abi_encode();
    let bytes = checked_call(rpc, chain_id, token, &call).await?;
    IErc20::allowanceCall::abi_decode_returns(&bytes).map_err(|e| RpcError::Decode(e.to_string()))
}

/// One `eth_call`, batched with `eth_chainId` so that a node serving
/// another chain is refused rather than believed.
async fn checked_call(
    rpc: &RpcClient,
    chain_id: u64,
    to: Address,
    data: &[u8],
) -> Result<Bytes, RpcError> {
    let mut answers = rpc
        .batch(vec![
            ("eth_chainId", json!([])),
            ("eth_call", call_params(None, to, data)),
        ])
        .await?
        .into_iter();
    let mut next = || {
        answers
            .next()
            .unwrap_or_else(|| Err(RpcError::Decode("short batch answer".into())))
    };
    let (chain, output) = (next(), next());
    let chain: U256 =
        serde_json::from_value(chain?).map_err(|e| RpcError::Decode(e.to_string()))?;
    if chain != U256::from(chain_id) {
        return Err(RpcError::Decode(format!(
            "the node serves chain {chain}, not {chain_id}"
        )));
    }
    decode_bytes(output)
}

/// What an EIP-2612 permit for the Permit2 contract is signed over.
#[derive(Debug, Clone)]
pub(crate) struct PermitRequest<'a> {
    pub(crate) chain_id: u64,
    pub(crate) token: Address,
    /// The token's EIP-712 domain name and version.
    pub(crate) name: &'a str,
    pub(crate) version: &'a str,
    pub(crate) value: U256,
    pub(crate) deadline: U256,
}

/// Signs an EIP-2612 permit letting the Permit2 contract spend `value` of
/// the signer's tokens, with the owner's current token nonce, and returns
/// the `eip2612GasSponsoring` info object.
pub(crate) async fn sign_eip2612_permit<S: EvmSigner + ?Sized>(
    signer: &S,
    rpc: &RpcClient,
    request: &PermitRequest<'_>,
) -> Result<Value, SchemeError> {
    let owner = signer.address();
    let call = IErc20::noncesCall { owner }.abi_encode();
    let nonce = checked_call(rpc, request.chain_id, request.token, &call)
        .await
        .and_then(|bytes| {
            IErc20::noncesCall::abi_decode_returns(&bytes)
                .map_err(|e| RpcError::Decode(e.to_string()))
        })
        .map_err(|e| chain_error("reading the token's EIP-2612 nonce", &e))?;
    let permit = Permit {
        owner,
        spender: PERMIT2_ADDRESS,
        value: request.value,
        nonce,
        deadline: request.deadline,
    };
    let domain = Eip712Domain::new(
        Some(request.name.to_owned().into()),
        Some(request.version.to_owned().into()),
        Some(U256::from(request.chain_id)),
        Some(request.token),
        None,
    );
    let signature = signer
        .sign_hash(&permit.eip712_signing_hash(&domain))
        .await
        .map_err(|e| SchemeError::Signing(e.to_string()))?;
    Ok(json!({
        "from": owner.to_checksum(None),
        "asset": request.token.to_checksum(None),
        "spender": PERMIT2_ADDRESS.to_checksum(None),
        "amount": request.value.to_string(),
        "nonce": nonce.to_string(),
        "deadline": request.deadline.to_string(),
        "signature": Bytes::from(signature.as_bytes()),
        "version": INFO_VERSION,
    }))
}

/// A signed EIP-1559 `approve(Permit2, amount)` transaction of the payer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedApproval {
    /// The transaction hash.
    pub hash: B256,
    /// The EIP-2718 encoding to broadcast.
    pub raw: Bytes,
    /// The transaction itself (nonce, fees, gas limit).
    pub tx: TxEip1559,
}

/// Signs `approve(PERMIT2_ADDRESS, amount)` on `token` from `signer`, with
/// the signer's pending nonce, fees from the node and [`APPROVE_GAS_LIMIT`].
/// Nothing is sent.
pub async fn sign_approve_permit2<S: EvmSigner + ?Sized>(
    signer: &S,
    rpc: &RpcClient,
    chain_id: u64,
    token: Address,
    amount: U256,
) -> Result<SignedApproval, SchemeError> {
    let owner = signer.address();
    let node_chain = rpc
        .chain_id()
        .await
        .map_err(|e| chain_error("reading the chain id", &e))?;
    if node_chain != chain_id {
        return Err(SchemeError::Chain(format!(
            "the node serves chain {node_chain}, not {chain_id}"
        )));
    }
    let nonce = rpc
        .pending_nonce(owner)
        .await
        .map_err(|e| chain_error("reading the payer's nonce", &e))?;
    let (max_fee_per_gas, max_priority_fee_per_gas) = fees(rpc).await?;
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: APPROVE_GAS_LIMIT,
        max_fee_per_gas,
        max_priority_fee_per_gas,
        to: TxKind::Call(token),
        value: U256::ZERO,
        access_list: Default::default(),
        input: approve_permit2_calldata(amount),
    };
    let signature = signer
        .sign_hash(&tx.signature_hash())
        .await
        .map_err(|e| SchemeError::Signing(e.to_string()))?;
    let envelope = TxEnvelope::from(tx.clone().into_signed(signature));
    Ok(SignedApproval {
        hash: *envelope.tx_hash(),
        raw: envelope.encoded_2718().into(),
        tx,
    })
}

/// Fee caps for a transaction mined soon: twice the latest base fee plus
/// the node's suggested tip (the gas price on nodes without EIP-1559 data).
async fn fees(rpc: &RpcClient) -> Result<(u128, u128), SchemeError> {
    let answers = rpc
        .batch(vec![
            ("eth_getBlockByNumber", json!(["latest", false])),
            ("eth_maxPriorityFeePerGas", json!([])),
        ])
        .await
        .map_err(|e| chain_error("reading fees", &e))?;
    let quantity = |value: Option<&Result<Value, RpcError>>, key: Option<&str>| {
        let value = value?.as_ref().ok()?;
        let value = key.map_or(Some(value), |key| value.get(key))?;
        let number: U256 = serde_json::from_value(value.clone()).ok()?;
        u128::try_from(number).ok()
    };
    let base_fee = quantity(answers.first(), Some("baseFeePerGas"));
    let tip = quantity(answers.get(1), None);
    if let (Some(base_fee), Some(tip)) = (base_fee, tip) {
        return Ok((base_fee.saturating_mul(2).saturating_add(tip), tip));
    }
    let price = rpc
        .gas_price()
        .await
        .map_err(|e| chain_error("reading the gas price", &e))?;
    Ok((price, price))
}

/// Signs the approval for a sponsoring facilitator (`approve(Permit2, MAX)`,
/// as the TypeScript client does) and returns the
/// `erc20ApprovalGasSponsoring` info object.
pub(crate) async fn sponsored_approval_info<S: EvmSigner + ?Sized>(
    signer: &S,
    rpc: &RpcClient,
    chain_id: u64,
    token: Address,
) -> Result<Value, SchemeError> {
    let signed = sign_approve_permit2(signer, rpc, chain_id, token, U256::MAX).await?;
    Ok(json!({
        "from": signer.address().to_checksum(None),
        "asset": token.to_checksum(None),
        "spender": PERMIT2_ADDRESS.to_checksum(None),
        "amount": U256::MAX.to_string(),
        "signedTransaction": signed.raw,
        "version": INFO_VERSION,
    }))
}

/// Sends the payer's own one-time `approve(Permit2, amount)` on `token`
/// (the payer pays the gas) and waits until it is mined; returns the
/// transaction hash. Use `U256::MAX` to approve once for good.
pub async fn approve_permit2<S: EvmSigner + ?Sized>(
    signer: &S,
    rpc: &RpcClient,
    chain_id: u64,
    token: Address,
    amount: U256,
) -> Result<B256, SchemeError> {
    let signed = sign_approve_permit2(signer, rpc, chain_id, token, amount).await?;
    let hash = rpc
        .send_raw_transaction(&signed.raw)
        .await
        .map_err(|e| chain_error("sending the approval", &e))?;
    let started = tokio::time::Instant::now();
    loop {
        match rpc.receipt(hash).await {
            Ok(Some(receipt)) if receipt.succeeded() => return Ok(hash),
            Ok(Some(_)) => {
                return Err(SchemeError::Chain(format!(
                    "the approval transaction {hash} reverted"
                )));
            }
            Ok(None) | Err(RpcError::Transport(_)) => {}
            Err(error) => return Err(chain_error("reading the approval receipt", &error)),
        }
        if started.elapsed() >= APPROVE_RECEIPT_TIMEOUT {
            return Err(SchemeError::Chain(format!(
                "the approval transaction {hash} was not mined within {}s",
                APPROVE_RECEIPT_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A chain error naming what failed and the node's own message (e.g.
/// "insufficient funds"), never transport details: they name the endpoint,
/// whose URL may carry a provider key.
fn chain_error(what: &str, error: &RpcError) -> SchemeError {
    match error.node_message() {
        Some(message) => SchemeError::Chain(format!("{what}: {}: {message}", error.summary())),
        None => SchemeError::Chain(format!("{what}: {}", error.summary())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permit_type_is_eip2612s() {
        let permit = Permit {
            owner: Address::ZERO,
            spender: Address::ZERO,
            value: U256::ZERO,
            nonce: U256::ZERO,
            deadline: U256::ZERO,
        };
        assert_eq!(
            permit.eip712_type_hash(),
            alloy_primitives::keccak256(
                "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
            )
        );
    }

    #[test]
    fn approve_calldata_names_permit2() {
        let data = approve_permit2_calldata(U256::MAX);
        // approve(address,uint256)
        assert_eq!(data[..4], [0x09, 0x5e, 0xa7, 0xb3]);
        let call = IErc20::approveCall::abi_decode(&data).unwrap();
        assert_eq!(call.spender, PERMIT2_ADDRESS);
        assert_eq!(call.amount, U256::MAX);
    }
}
