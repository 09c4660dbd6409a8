//! What the paying client's spend probe reads for a Permit2 payment
//! (`exact` with Permit2, and `upto`): the owner's bit in the Permit2
//! contract's unordered-nonce bitmap.

use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use paywire_core::PaymentPayload;

use super::{PERMIT2_ADDRESS, PERMIT2_METHOD, Permit2Payload};

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
}
