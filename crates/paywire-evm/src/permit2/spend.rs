//! What the paying client's spend probe reads for a Permit2 payment
//! (`exact` with Permit2, and `upto`): the owner's bit in the Permit2
//! contract's unordered-nonce bitmap, and what a named settlement
//! transaction moved under the payment's authorization.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use paywire_core::PaymentPayload;

use super::{
    EXACT_PERMIT2_PROXY, PERMIT2_ADDRESS, PERMIT2_METHOD, Permit2Payload, UPTO_PERMIT2_PROXY,
};
use crate::contracts::{IErc20, exact_permit2_proxy, upto_permit2_proxy};
use crate::rpc::{Receipt, Transaction};

mod abi {
    #![allow(missing_docs)]
    alloy_sol_types::sol! {
        interface IPermit2Nonces {
            function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
        }
    }
}

use abi::IPermit2Nonces;

/// One Permit2 authorization whose nonce the probe looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Permit2Nonce {
    owner: Address,
    nonce: U256,
    /// The signed deadline: the proxy refuses the transfer after it.
    pub(crate) deadline: U256,
}

impl Permit2Nonce {
    /// The Permit2 authorization of `payload`, when it is an `exact` Permit2
    /// payment or an `upto` one.
    pub(crate) fn of(payload: &PaymentPayload) -> Option<Self> {
        let accepted = &payload.accepted;
        let permit2 = match accepted.scheme.as_str() {
            "exact" => accepted.extra_str("assetTransferMethod") == Some(PERMIT2_METHOD),
            "upto" => true,
            _ => false,
        };
        if !permit2 {
            return None;
        }
        let signed = Permit2Payload::from_json(&payload.payload).ok()?;
        let authorization = signed.permit2_authorization;
        Some(Self {
            owner: authorization.from,
            nonce: authorization.nonce,
            deadline: authorization.deadline.as_u256(),
        })
    }

    /// The `eth_call` target and data: the bitmap word holding the nonce.
    pub(crate) fn call(&self) -> (Address, Vec<u8>) {
        let call = IPermit2Nonces::nonceBitmapCall {
            owner: self.owner,
            wordPos: self.nonce >> 8,
        };
        (PERMIT2_ADDRESS, call.abi_encode())
    }

    /// Whether the word `output` has the nonce's bit set (the nonce used).
    pub(crate) fn used(&self, output: &[u8]) -> Result<bool, alloy_sol_types::Error> {
        let word = IPermit2Nonces::nonceBitmapCall::abi_decode_returns(output)?;
        let bit = self.nonce & U256::from(0xffu8);
        Ok(word.bit(bit.to::<usize>()))
    }
}

/// What a settlement transaction of one Permit2 payment must carry: the
/// proxy it calls and the signed terms its calldata repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Permit2Settlement {
    /// The scheme's proxy (`upto` or `exact`), the only spender the payment
    /// signed for.
    proxy: Address,
    /// `upto`: the proxy takes a separate settled `amount`.
    upto: bool,
    owner: Address,
    nonce: U256,
    token: Address,
    pay_to: Address,
    permitted: U256,
}

/// The arguments of a proxy's `settle` or `settleWithPermit` call that
/// identify the authorization and the amount moved.
struct SettleArgs {
    token: Address,
    permitted: U256,
    nonce: U256,
    owner: Address,
    to: Address,
    amount: U256,
}

impl Permit2Settlement {
    /// The settlement terms of `payload`, when it is an `upto` payment or an
    /// `exact` Permit2 one whose signed spender is the scheme's proxy.
    pub(crate) fn of(payload: &PaymentPayload) -> Option<Self> {
        let accepted = &payload.accepted;
        let (proxy, upto) = match accepted.scheme.as_str() {
            "upto" => (UPTO_PERMIT2_PROXY, true),
            "exact" if accepted.extra_str("assetTransferMethod") == Some(PERMIT2_METHOD) => {
                (EXACT_PERMIT2_PROXY, false)
            }
            _ => return None,
        };
        let authorization = Permit2Payload::from_json(&payload.payload)
            .ok()?
            .permit2_authorization;
        if authorization.spender != proxy {
            return None;
        }
        Some(Self {
            proxy,
            upto,
            owner: authorization.from,
            nonce: authorization.nonce,
            token: authorization.permitted.token,
            pay_to: authorization.witness.to,
            permitted: authorization.permitted.amount.as_u256(),
        })
    }

    /// The amount transaction `hash` moved under this authorization, given
    /// the transaction and its receipt as the node reported them; `None`
    /// unless everything agrees: mined and successful, a direct call of the
    /// scheme's proxy settling this owner's nonce for this token and
    /// recipient, and the token's matching `Transfer` log.
    pub(crate) fn amount_moved(
        &self,
        hash: B256,
        transaction: &Transaction,
        receipt: &Receipt,
    ) -> Option<U256> {
        if receipt.transaction_hash != hash
            || !receipt.succeeded()
            || receipt.block_number.is_none()
            || transaction.to != Some(self.proxy)
        {
            return None;
        }
        let args = self.decode(&transaction.input)?;
        let same = args.owner == self.owner
            && args.nonce == self.nonce
            && args.token == self.token
            && args.permitted == self.permitted
            && args.to == self.pay_to
            && args.amount <= self.permitted;
        if !same || !self.transferred(receipt, args.amount) {
            return None;
        }
        Some(args.amount)
    }

    /// The proxy call's arguments, for either entry point of the proxy.
    fn decode(&self, input: &[u8]) -> Option<SettleArgs> {
        let selector: [u8; 4] = input.get(..4)?.try_into().ok()?;
        if self.upto {
            use upto_permit2_proxy::{settleCall, settleWithPermitCall};
            let (permit, amount, owner, witness) = match selector {
                settleCall::SELECTOR => {
                    let call = settleCall::abi_decode(input).ok()?;
                    (call.permit, call.amount, call.owner, call.witness)
                }
                settleWithPermitCall::SELECTOR => {
                    let call = settleWithPermitCall::abi_decode(input).ok()?;
                    (call.permit, call.amount, call.owner, call.witness)
                }
                _ => return None,
            };
            return Some(SettleArgs {
                token: permit.permitted.token,
                permitted: permit.permitted.amount,
                nonce: permit.nonce,
                owner,
                to: witness.to,
                amount,
            });
        }
        use exact_permit2_proxy::{settleCall, settleWithPermitCall};
        let (permit, owner, witness) = match selector {
            settleCall::SELECTOR => {
                let call = settleCall::abi_decode(input).ok()?;
                (call.permit, call.owner, call.witness)
            }
            settleWithPermitCall::SELECTOR => {
                let call = settleWithPermitCall::abi_decode(input).ok()?;
                (call.permit, call.owner, call.witness)
            }
            _ => return None,
        };
        Some(SettleArgs {
            token: permit.permitted.token,
            permitted: permit.permitted.amount,
            nonce: permit.nonce,
            owner,
            to: witness.to,
            amount: permit.permitted.amount,
        })
    }

    /// Whether the receipt holds the token's `Transfer(owner, payTo, amount)`.
    fn transferred(&self, receipt: &Receipt, amount: U256) -> bool {
        receipt.logs.iter().any(|log| {
            log.address == self.token
                && log.topics.len() == 3
                && log.topics[0] == IErc20::Transfer::SIGNATURE_HASH
                && log.topics[1] == self.owner.into_word()
                && log.topics[2] == self.pay_to.into_word()
                && log.data.len() == 32
                && U256::from_be_slice(&log.data) == amount
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(value: U256) -> Permit2Nonce {
        Permit2Nonce {
            owner: Address::repeat_byte(1),
            nonce: value,
            deadline: U256::ZERO,
        }
    }

    #[test]
    fn the_word_and_bit_are_the_nonces_high_and_low_bits() {
        let value = (U256::from(5u8) << 8) | U256::from(3u8);
        let probe = nonce(value);
        let (to, data) = probe.call();
        assert_eq!(to, PERMIT2_ADDRESS);
        let call = IPermit2Nonces::nonceBitmapCall::abi_decode(&data).unwrap();
        assert_eq!(call.wordPos, U256::from(5u8));
        let word = |bits: U256| bits.to_be_bytes::<32>().to_vec();
        assert!(probe.used(&word(U256::from(0b1000u8))).unwrap());
        assert!(!probe.used(&word(U256::from(0b0100u8))).unwrap());
        let top = nonce(U256::MAX);
        assert_eq!(
            IPermit2Nonces::nonceBitmapCall::abi_decode(&top.call().1)
                .unwrap()
                .wordPos,
            U256::MAX >> 8
        );
        assert!(top.used(&word(U256::from(1u8) << 255)).unwrap());
        assert!(!top.used(&word(U256::MAX >> 1)).unwrap());
        assert!(probe.used(&[1, 2]).is_err());
    }

    fn settlement() -> Permit2Settlement {
        Permit2Settlement {
            proxy: UPTO_PERMIT2_PROXY,
            upto: true,
            owner: Address::repeat_byte(1),
            nonce: U256::from(77u8),
            token: Address::repeat_byte(2),
            pay_to: Address::repeat_byte(3),
            permitted: U256::from(1_000u16),
        }
    }

    fn upto_settle(s: &Permit2Settlement, owner: Address, nonce: U256, amount: U256) -> Vec<u8> {
        use upto_permit2_proxy as p;
        p::settleCall {
            permit: p::PermitTransferFrom {
                permitted: p::TokenPermissions {
                    token: s.token,
                    amount: s.permitted,
                },
                nonce,
                deadline: U256::from(9u8),
            },
            amount,
            owner,
            witness: p::Witness {
                to: s.pay_to,
                facilitator: Address::repeat_byte(9),
                validAfter: U256::ZERO,
            },
            signature: vec![0u8; 65].into(),
        }
        .abi_encode()
    }

    fn transfer(s: &Permit2Settlement, amount: U256) -> crate::rpc::Log {
        crate::rpc::Log {
            address: s.token,
            topics: vec![
                IErc20::Transfer::SIGNATURE_HASH,
                s.owner.into_word(),
                s.pay_to.into_word(),
            ],
            data: amount.to_be_bytes::<32>().to_vec().into(),
            transaction_hash: None,
            block_number: None,
        }
    }

    fn mined(hash: B256, status: u8, logs: Vec<crate::rpc::Log>) -> Receipt {
        Receipt {
            transaction_hash: hash,
            status: Some(U256::from(status)),
            block_number: Some(U256::from(5u8)),
            gas_used: None,
            logs,
        }
    }

    fn call(to: Address, input: Vec<u8>) -> Transaction {
        Transaction {
            to: Some(to),
            input: input.into(),
            from: None,
            nonce: None,
            block_number: Some(U256::from(5u8)),
        }
    }

    /// Each check of a settlement transaction: removing any of them lets a
    /// server name a transaction that does not prove its claim.
    #[test]
    fn a_settlement_counts_only_when_everything_matches() {
        let s = settlement();
        let hash = B256::repeat_byte(7);
        let amount = U256::from(400u16);
        let input = upto_settle(&s, s.owner, s.nonce, amount);
        let good = mined(hash, 1, vec![transfer(&s, amount)]);
        let tx = call(UPTO_PERMIT2_PROXY, input.clone());
        assert_eq!(s.amount_moved(hash, &tx, &good), Some(amount));

        // Another transaction's receipt, a revert, a missing or other log.
        assert_eq!(s.amount_moved(B256::repeat_byte(8), &tx, &good), None);
        let reverted = mined(hash, 0, vec![transfer(&s, amount)]);
        assert_eq!(s.amount_moved(hash, &tx, &reverted), None);
        assert_eq!(s.amount_moved(hash, &tx, &mined(hash, 1, vec![])), None);
        let other = mined(hash, 1, vec![transfer(&s, U256::from(399u16))]);
        assert_eq!(s.amount_moved(hash, &tx, &other), None);
        // Another contract, another owner or nonce, garbage calldata.
        let elsewhere = call(EXACT_PERMIT2_PROXY, input.clone());
        assert_eq!(s.amount_moved(hash, &elsewhere, &good), None);
        let stranger = upto_settle(&s, Address::repeat_byte(4), s.nonce, amount);
        assert_eq!(
            s.amount_moved(hash, &call(UPTO_PERMIT2_PROXY, stranger), &good),
            None
        );
        let reused = upto_settle(&s, s.owner, s.nonce + U256::from(1u8), amount);
        assert_eq!(
            s.amount_moved(hash, &call(UPTO_PERMIT2_PROXY, reused), &good),
            None
        );
        assert_eq!(
            s.amount_moved(hash, &call(UPTO_PERMIT2_PROXY, input[..4].to_vec()), &good),
            None
        );
        // More than permitted never counts as proven.
        let over = U256::from(1_001u16);
        let too_much = call(UPTO_PERMIT2_PROXY, upto_settle(&s, s.owner, s.nonce, over));
        assert_eq!(
            s.amount_moved(hash, &too_much, &mined(hash, 1, vec![transfer(&s, over)])),
            None
        );
    }
}
