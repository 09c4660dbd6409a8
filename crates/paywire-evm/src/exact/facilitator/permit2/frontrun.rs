//! Finding another transaction's execution of an `exact` Permit2 payment.
//!
//! Anyone holding the payload may call the exact proxy with it (a mempool
//! copier, the resource server itself). When that call lands first, the
//! payer was charged and the payee paid, but our verification then finds
//! the Permit2 nonce used, or our own transaction reverts. Permit2 emits no
//! event per nonce, so the candidates are the token's `Transfer(owner,
//! payTo)` logs in the searched range; a candidate counts only when its
//! transaction called the exact proxy directly with every signed field of
//! this payment and succeeded with the exact transfer. A call through
//! another contract (a multicall) is not recognised. `upto` needs none of
//! this: only the witness's facilitator can settle it.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{SolCall, SolValue};

use super::super::{ChainState, ExactEvmFacilitator, chain_error, has_transfer_log};
use super::{Proxy, exact_permit2_proxy};
use crate::contracts::IPermit2;
use crate::exact::reconcile::LogSearch;
use crate::permit2::{EXACT_PERMIT2_PROXY, PERMIT2_ADDRESS, Permit2Authorization};
use crate::rpc::RpcError;
use paywire_core::SchemeError;

/// A Permit2 payment looked for on chain: what was signed, and what the
/// requirements say it pays.
pub(in crate::exact::facilitator) struct Sought<'a> {
    pub(in crate::exact::facilitator) authorization: &'a Permit2Authorization,
    pub(in crate::exact::facilitator) asset: Address,
    pub(in crate::exact::facilitator) pay_to: Address,
    pub(in crate::exact::facilitator) amount: U256,
}

impl Sought<'_> {
    /// The search-cache key: Permit2's address (no token's), the owner, and
    /// a hash of the nonce, token and payee the search filters on, but not
    /// of the other signed fields. A Permit2 nonce executes once, so payloads
    /// that differ only in amount or deadline share one search (a caller
    /// varying them cannot make the facilitator search again); a cached
    /// transaction is checked against each payload's own fields.
    fn cache_key(&self) -> (Address, Address, B256) {
        let auth = self.authorization;
        let searched = (auth.nonce, self.asset, self.pay_to);
        (PERMIT2_ADDRESS, auth.from, keccak256(searched.abi_encode()))
    }
}

impl ExactEvmFacilitator {
    /// The transaction that executed `sought` through the exact proxy
    /// (front-run, or an earlier settlement), when one did within the
    /// reconcile lookback. `nonce_used`: the caller saw the Permit2 nonce
    /// used, so a fruitless search stays fruitless and is remembered.
    pub(in crate::exact::facilitator) async fn find_permit2_execution(
        &self,
        chain: &ChainState,
        proxy: Proxy,
        sought: &Sought<'_>,
        nonce_used: bool,
    ) -> Result<Option<B256>, SchemeError> {
        let auth = sought.authorization;
        let pays = auth.permitted.token == sought.asset
            && auth.witness.to == sought.pay_to
            && auth.permitted.amount.as_u256() == sought.amount;
        if proxy != Proxy::Exact || !pays || sought.amount.is_zero() {
            return Ok(None);
        }
        let key = sought.cache_key();
        if let Some(found) = chain.searches.cached(&key) {
            return match found {
                Some(hash)
                    if executes(&chain.config.rpc, hash, sought)
                        .await
                        .map_err(chain_error)? =>
                {
                    Ok(Some(hash))
                }
                _ => Ok(None),
            };
        }
        let search = LogSearch {
            rpc: &chain.config.rpc,
            asset: sought.asset,
            range_blocks: &chain.log_range,
            lookback_seconds: chain.config.reconcile_lookback.as_secs(),
            cache: &chain.searches,
        };
        let valid_after = u64::try_from(auth.witness.valid_after.as_u256()).unwrap_or(u64::MAX);
        let found = newest_execution(&search, sought, valid_after)
            .await
            .map_err(chain_error)?;
        if found.is_some() || nonce_used {
            chain.searches.remember(key, found);
        }
        if let Some(hash) = found {
            tracing::info!(%hash, "Permit2 payment found executed on chain");
        } else {
            tracing::info!(payer = %auth.from, "no execution of this Permit2 payment found");
        }
        Ok(found)
    }

    /// Whether bit `nonce` of `owner`'s Permit2 nonce bitmap is set (latest).
    pub(in crate::exact::facilitator) async fn permit2_nonce_used(
        &self,
        chain: &ChainState,
        auth: &Permit2Authorization,
    ) -> Result<bool, SchemeError> {
        let call = IPermit2::nonceBitmapCall {
            owner: auth.from,
            wordPos: auth.nonce >> 8usize,
        };
        let word = chain
            .config
            .rpc
            .call(None, PERMIT2_ADDRESS, &call.abi_encode())
            .await
            .map_err(chain_error)?;
        let word = <U256 as SolValue>::abi_decode(&word)
            .map_err(|e| SchemeError::Chain(format!("nonceBitmap unreadable: {e}")))?;
        Ok(super::nonce_used(word, auth.nonce))
    }
}

/// Most candidate transactions examined: each costs node calls, and a busy
/// payer–payee pair may have many transfers in the searched range.
const CANDIDATES: usize = 64;

/// The newest transfer of `sought`'s owner to its payee in the searched
/// range that executed `sought` (at most [`CANDIDATES`] examined).
async fn newest_execution(
    search: &LogSearch<'_>,
    sought: &Sought<'_>,
    valid_after: u64,
) -> Result<Option<B256>, RpcError> {
    let owner = sought.authorization.from;
    let mut transfers = search.transfers(owner, sought.pay_to, valid_after).await?;
    let mut seen: Vec<B256> = Vec::new();
    while let Some(hashes) = transfers.next_chunk().await? {
        for hash in hashes {
            if seen.contains(&hash) {
                continue;
            }
            if seen.len() >= CANDIDATES {
                tracing::warn!(payer = %owner, "too many transfers to examine; not reconciled");
                return Ok(None);
            }
            seen.push(hash);
            if executes(search.rpc, hash, sought).await? {
                return Ok(Some(hash));
            }
        }
    }
    Ok(None)
}

/// Whether transaction `hash` called the exact proxy with `sought` and
/// succeeded with its exact transfer.
async fn executes(
    rpc: &crate::rpc::RpcClient,
    hash: B256,
    sought: &Sought<'_>,
) -> Result<bool, RpcError> {
    let Some(transaction) = rpc.transaction(hash).await? else {
        return Ok(false);
    };
    if transaction.to != Some(EXACT_PERMIT2_PROXY) || !calls_payment(&transaction.input, sought) {
        return Ok(false);
    }
    let auth = sought.authorization;
    Ok(rpc.receipt(hash).await?.is_some_and(|receipt| {
        receipt.succeeded()
            && has_transfer_log(
                &receipt,
                sought.asset,
                auth.from,
                sought.pay_to,
                sought.amount,
            )
    }))
}

/// Whether `input` is the exact proxy's `settle` or `settleWithPermit` of
/// exactly `sought` (every signed field). The signature bytes are not
/// compared: Permit2 accepted a signature of the owner over these fields.
fn calls_payment(input: &[u8], sought: &Sought<'_>) -> bool {
    let (permit, owner, witness) =
        if let Ok(call) = exact_permit2_proxy::settleCall::abi_decode(input) {
            (call.permit, call.owner, call.witness)
        } else if let Ok(call) = exact_permit2_proxy::settleWithPermitCall::abi_decode(input) {
            (call.permit, call.owner, call.witness)
        } else {
            return false;
        };
    let auth = sought.authorization;
    (
        owner,
        permit.permitted.token,
        permit.permitted.amount,
        permit.nonce,
        permit.deadline,
        witness.to,
        witness.validAfter,
    ) == (
        auth.from,
        sought.asset,
        sought.amount,
        auth.nonce,
        auth.deadline.as_u256(),
        sought.pay_to,
        auth.witness.valid_after.as_u256(),
    ) && auth.permitted.token == sought.asset
        && auth.witness.to == sought.pay_to
}

#[cfg(test)]
mod tests {
    use super::super::{Proxy, settle_calldata};
    use super::*;
    use crate::permit2::Permit2Payload;

    fn payload() -> Permit2Payload {
        serde_json::from_value(serde_json::json!({
            "signature": format!("0x{}", "11".repeat(65)),
            "permit2Authorization": {
                "from": Address::repeat_byte(1),
                "permitted": {"token": Address::repeat_byte(2), "amount": "10000"},
                "spender": EXACT_PERMIT2_PROXY,
                "nonce": "77",
                "deadline": "2000000000",
                "witness": {"to": Address::repeat_byte(3), "validAfter": "0"},
            },
        }))
        .unwrap_or_else(|_| unreachable!())
    }

    /// Another payment reusing the nonce (any signed field different) is
    /// not this one; the same fields with other signature bytes are.
    #[test]
    fn only_this_payment_matches() {
        let payload = payload();
        let auth = &payload.permit2_authorization;
        let sought = Sought {
            authorization: auth,
            asset: Address::repeat_byte(2),
            pay_to: Address::repeat_byte(3),
            amount: U256::from(10_000u64),
        };
        let amount = sought.amount;
        assert!(calls_payment(
            &settle_calldata(Proxy::Exact, &payload, amount),
            &sought
        ));
        let mut resigned = payload.clone();
        resigned.signature = vec![0x22; 65].into();
        assert!(calls_payment(
            &settle_calldata(Proxy::Exact, &resigned, amount),
            &sought
        ));
        let spoils: [fn(&mut Permit2Payload); 5] = [
            |p| p.permit2_authorization.witness.to = Address::repeat_byte(9),
            |p| p.permit2_authorization.deadline = 2_000_000_001u64.into(),
            |p| p.permit2_authorization.witness.valid_after = 1u64.into(),
            |p| p.permit2_authorization.nonce = U256::from(78u64),
            |p| p.permit2_authorization.from = Address::repeat_byte(8),
        ];
        for spoil in spoils {
            let mut other = payload.clone();
            spoil(&mut other);
            assert!(!calls_payment(
                &settle_calldata(Proxy::Exact, &other, amount),
                &sought
            ));
        }
        let mut cheaper = payload.clone();
        cheaper.permit2_authorization.permitted.amount = 9_999u64.into();
        assert!(!calls_payment(
            &settle_calldata(Proxy::Exact, &cheaper, amount),
            &sought
        ));
        assert!(!calls_payment(&[0xde, 0xad], &sought));
    }
}
