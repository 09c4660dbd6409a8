//! What became of an `exact` EIP-3009 payment on chain, read without
//! sending anything (`SchemeFacilitator::lookup_settlement`): a facilitator
//! restarting after a broadcast, or rechecking a `pending` settlement, must
//! learn that the transaction landed even once the authorization's time
//! window has passed (re-verifying would then refuse it as expired).

use crate::reasons;
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use paywire_core::{ChainId, PaymentRequirements, SettleResponse, SettlementLookup};
use serde_json::json;

use super::payload::{Authorization, ExactEvmPayload};
use crate::contracts::IEip3009Token;
use crate::rpc::{Receipt, RpcClient, RpcError};

/// The chain's view of one authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainView {
    /// Executed exactly as signed by this (known) transaction.
    Executed(B256),
    /// Its nonce is used, by a transaction not known here: the caller looks
    /// for the execution in the token's logs.
    UsedElsewhere,
    /// Unused, and still executable.
    Open,
    /// Unused, and expired: the latest block is past `validBefore`.
    Expired,
}

/// Whether `payload` pays exactly what `requirements` ask (recipient, amount,
/// asset); the chain's view is only reported for such payloads.
pub(crate) fn pays(
    payload: &ExactEvmPayload,
    requirements: &PaymentRequirements,
    asset: Address,
) -> bool {
    let auth = &payload.authorization;
    requirements.pay_to.parse::<Address>().ok() == Some(auth.to)
        && requirements.asset.parse::<Address>().ok() == Some(asset)
        && auth.value == requirements.amount
}

/// Reads the chain's view of `payload` on token `asset`; `known` is the
/// transaction the facilitator recorded before broadcasting it.
pub(crate) async fn read(
    rpc: &RpcClient,
    asset: Address,
    payload: &ExactEvmPayload,
    known: Option<B256>,
) -> Result<ChainView, RpcError> {
    let auth = &payload.authorization;
    if let Some(hash) = known
        && let Some(receipt) = rpc.receipt(hash).await?
        && executes(&receipt, asset, auth)
    {
        return Ok(ChainView::Executed(hash));
    }
    let call = IEip3009Token::authorizationStateCall {
        authorizer: auth.from,
        nonce: auth.nonce,
    }
    .abi_encode();
    let answer = rpc.call(None, asset, &call).await?;
    let used = IEip3009Token::authorizationStateCall::abi_decode_returns(&answer)
        .map_err(|e| RpcError::Decode(format!("authorizationState: {e}")))?;
    if used {
        return Ok(ChainView::UsedElsewhere);
    }
    #[derive(serde::Deserialize)]
    struct Block {
        timestamp: U256,
    }
    let latest: Block = rpc
        .request("eth_getBlockByNumber", json!(["latest", false]))
        .await?;
    // Later blocks are not older than the latest: past `validBefore` now,
    // the token refuses the authorization forever.
    Ok(if latest.timestamp >= auth.valid_before.as_u256() {
        ChainView::Expired
    } else {
        ChainView::Open
    })
}

/// Whether `receipt` is a successful execution of `auth` on `asset`: the
/// token consumed its nonce and moved exactly its value to its recipient.
fn executes(receipt: &Receipt, asset: Address, auth: &Authorization) -> bool {
    let emitted = |topics: &[B256]| {
        receipt
            .logs
            .iter()
            .filter(|log| log.address == asset)
            .find(|log| log.topics == topics)
            .map(|log| log.data.as_ref())
    };
    let consumed = emitted(&[
        IEip3009Token::AuthorizationUsed::SIGNATURE_HASH,
        auth.from.into_word(),
        auth.nonce,
    ])
    .is_some();
    let moved = emitted(&[
        IEip3009Token::Transfer::SIGNATURE_HASH,
        auth.from.into_word(),
        auth.to.into_word(),
    ])
    .is_some_and(|data| data.len() == 32 && U256::from_be_slice(data) == auth.value.as_u256());
    receipt.succeeded() && consumed && moved
}

/// The lookup answer for `view`, `executed` being the transaction found to
/// have executed the authorization (known, or found in the token's logs).
pub(crate) fn answer(
    network: &ChainId,
    payload: &ExactEvmPayload,
    view: ChainView,
    executed: Option<B256>,
) -> SettlementLookup {
    let auth = &payload.authorization;
    let payer = Some(auth.from.to_string());
    if let Some(hash) = executed {
        let mut settled = SettleResponse::settled(network.clone(), hash.to_string(), payer);
        settled.amount = Some(auth.value);
        return SettlementLookup::Settled(settled);
    }
    let (reason, message) = match view {
        ChainView::Open | ChainView::Executed(_) => return SettlementLookup::Open,
        ChainView::UsedElsewhere => (
            reasons::NONCE_USED,
            "the authorization's nonce was used without executing this payment",
        ),
        ChainView::Expired => (
            reasons::VALID_BEFORE,
            "the authorization expired before it was executed",
        ),
    };
    SettlementLookup::Unsettleable(
        SettleResponse::failed(network.clone(), reason, payer, "").with_message(message),
    )
}

#[cfg(test)]
mod tests {
    use alloy_primitives::Bytes;

    use super::*;
    use crate::Eip155ChainId;
    use crate::rpc::Log;

    fn auth() -> Authorization {
        Authorization {
            from: Address::repeat_byte(1),
            to: Address::repeat_byte(2),
            value: 10_000u64.into(),
            valid_after: 0u64.into(),
            valid_before: 100u64.into(),
            nonce: B256::repeat_byte(7),
        }
    }

    fn log(address: Address, topics: Vec<B256>, value: Option<u64>) -> Log {
        Log {
            address,
            topics,
            data: value.map_or_else(Bytes::new, |v| {
                Bytes::copy_from_slice(&U256::from(v).to_be_bytes::<32>())
            }),
            transaction_hash: None,
            block_number: None,
        }
    }

    fn receipt(status: u64, logs: Vec<Log>) -> Receipt {
        serde_json::from_value::<Receipt>(json!({
            "transactionHash": B256::repeat_byte(9),
            "status": format!("0x{status:x}"),
            "logs": [],
        }))
        .map_or_else(
            |e| panic!("receipt: {e}"),
            |mut receipt| {
                receipt.logs = logs;
                receipt
            },
        )
    }

    #[test]
    fn answers_per_view() {
        let network = ChainId::eip155(1);
        let payload = ExactEvmPayload {
            authorization: auth(),
            signature: Bytes::new(),
        };
        let hash = B256::repeat_byte(3);
        for view in [ChainView::Executed(hash), ChainView::UsedElsewhere] {
            match answer(&network, &payload, view, Some(hash)) {
                SettlementLookup::Settled(settled) => {
                    assert!(settled.success);
                    assert_eq!(settled.transaction, hash.to_string());
                    assert_eq!(settled.amount, Some(10_000u64.into()));
                }
                other => panic!("{view:?}: {other:?}"),
            }
        }
        assert_eq!(
            answer(&network, &payload, ChainView::Open, None),
            SettlementLookup::Open
        );
        for (view, reason) in [
            (ChainView::UsedElsewhere, reasons::NONCE_USED),
            (ChainView::Expired, reasons::VALID_BEFORE),
        ] {
            match answer(&network, &payload, view, None) {
                SettlementLookup::Unsettleable(failed) => {
                    assert!(!failed.success);
                    assert_eq!(failed.error_reason, Some(reason));
                    assert_eq!(failed.transaction, "");
                }
                other => panic!("{view:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn execution_needs_the_nonce_and_the_exact_transfer() {
        let token = Address::repeat_byte(5);
        let a = auth();
        let used = log(
            token,
            vec![
                IEip3009Token::AuthorizationUsed::SIGNATURE_HASH,
                a.from.into_word(),
                a.nonce,
            ],
            None,
        );
        let transfer = |value| {
            log(
                token,
                vec![
                    IEip3009Token::Transfer::SIGNATURE_HASH,
                    a.from.into_word(),
                    a.to.into_word(),
                ],
                Some(value),
            )
        };
        assert!(executes(
            &receipt(1, vec![used.clone(), transfer(10_000)]),
            token,
            &a
        ));
        assert!(!executes(
            &receipt(0, vec![used.clone(), transfer(10_000)]),
            token,
            &a
        ));
        assert!(!executes(&receipt(1, vec![transfer(10_000)]), token, &a));
        assert!(!executes(
            &receipt(1, vec![used.clone(), transfer(9_999)]),
            token,
            &a
        ));
        assert!(!executes(
            &receipt(1, vec![used, transfer(10_000)]),
            Address::repeat_byte(6),
            &a
        ));
    }
}
