//! The `payload` object of an EIP-3009 `exact` payment and its EIP-712 hash.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{Eip712Domain, SolCall, SolStruct};
use paywire_core::{AtomicAmount, JsonObject};
use serde::{Deserialize, Serialize};

use crate::contracts::{IEip3009Token, TransferWithAuthorization};

/// EIP-3009 authorization parameters, as carried on the wire (numbers as
/// decimal strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// Payer.
    #[serde(serialize_with = "checksummed")]
    pub from: Address,
    /// Recipient.
    #[serde(serialize_with = "checksummed")]
    pub to: Address,
    /// Amount in atomic units.
    pub value: AtomicAmount,
    /// Unix time from which the authorization is valid.
    pub valid_after: AtomicAmount,
    /// Unix time until which the authorization is valid.
    pub valid_before: AtomicAmount,
    /// Random 32-byte nonce.
    pub nonce: B256,
}

/// Writes an address in its EIP-55 checksummed form, as viem does.
fn checksummed<S: serde::Serializer>(address: &Address, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&address.to_checksum(None))
}

/// The scheme-specific `payload` of an `exact` EIP-3009 payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactEvmPayload {
    /// The signed parameters.
    pub authorization: Authorization,
    /// Hex signature (65 bytes for an EOA; longer for smart wallets).
    pub signature: alloy_primitives::Bytes,
}

impl ExactEvmPayload {
    /// Reads the payload from a `PaymentPayload.payload` object.
    pub fn from_json(object: &JsonObject) -> Result<Self, serde_json::Error> {
        Self::deserialize(serde_json::Value::Object(object.clone()))
    }

    /// Calldata of the `transferWithAuthorization` call that settles this
    /// payment, as the facilitator builds it: the `(v, r, s)` form for a
    /// 65-byte signature (every EIP-3009 token knows it) and the `bytes` form
    /// (EIP-1271 capable tokens such as FiatTokenV2_2) for anything else. The
    /// signature is used as it is: the facilitator first removes an EIP-6492
    /// wrapper (a counterfactual wallet's deployment data) from it.
    pub fn transfer_calldata(&self) -> Vec<u8> {
        let auth = &self.authorization;
        let signature = &self.signature;
        if let Ok(raw) = <&[u8; 65]>::try_from(signature.as_ref()) {
            // Some signers write the recovery id as 0/1; the token expects 27/28.
            let v = match raw[64] {
                v @ (0 | 1) => v + 27,
                v => v,
            };
            IEip3009Token::transferWithAuthorization_0Call {
                from: auth.from,
                to: auth.to,
                value: auth.value.as_u256(),
                validAfter: auth.valid_after.as_u256(),
                validBefore: auth.valid_before.as_u256(),
                nonce: auth.nonce,
                v,
                r: B256::from_slice(&raw[..32]),
                s: B256::from_slice(&raw[32..64]),
            }
            .abi_encode()
        } else {
            IEip3009Token::transferWithAuthorization_1Call {
                from: auth.from,
                to: auth.to,
                value: auth.value.as_u256(),
                validAfter: auth.valid_after.as_u256(),
                validBefore: auth.valid_before.as_u256(),
                nonce: auth.nonce,
                signature: signature.clone(),
            }
            .abi_encode()
        }
    }

    /// Converts into a `PaymentPayload.payload` object.
    pub fn to_json(&self) -> JsonObject {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => JsonObject::new(),
        }
    }
}

impl Authorization {
    /// The EIP-712 struct that is signed.
    pub fn to_message(&self) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value.as_u256(),
            validAfter: self.valid_after.as_u256(),
            validBefore: self.valid_before.as_u256(),
            nonce: self.nonce,
        }
    }
}

/// The EIP-712 domain of an EIP-3009 token.
pub fn eip712_domain(name: &str, version: &str, chain_id: u64, token: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(name.to_owned().into()),
        Some(version.to_owned().into()),
        Some(U256::from(chain_id)),
        Some(token),
        None,
    )
}

/// The digest the payer signs for `authorization` under `domain`.
pub fn signing_hash(authorization: &Authorization, domain: &Eip712Domain) -> B256 {
    authorization.to_message().eip712_signing_hash(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)`.
    const VRS_SELECTOR: [u8; 4] = [0xe3, 0xee, 0x16, 0x0e];
    /// `transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)`.
    const BYTES_SELECTOR: [u8; 4] = [0xcf, 0x09, 0x29, 0x95];

    fn payload(signature: Vec<u8>) -> ExactEvmPayload {
        ExactEvmPayload {
            authorization: Authorization {
                from: Address::repeat_byte(0x11),
                to: Address::repeat_byte(0x22),
                value: 1_000u64.into(),
                valid_after: 5u64.into(),
                valid_before: 6u64.into(),
                nonce: B256::repeat_byte(0x33),
            },
            signature: signature.into(),
        }
    }

    #[test]
    fn a_65_byte_signature_is_sent_as_v_r_s_with_v_normalised() {
        for (written, sent) in [(0u8, 27u8), (1, 28), (27, 27), (28, 28)] {
            let mut signature = vec![0xaa; 32];
            signature.extend([0xbb; 32]);
            signature.push(written);
            let calldata = payload(signature).transfer_calldata();
            assert_eq!(calldata[..4], VRS_SELECTOR);
            let call =
                IEip3009Token::transferWithAuthorization_0Call::abi_decode(&calldata).unwrap();
            assert_eq!(call.v, sent, "v written as {written}");
            assert_eq!(call.r, B256::repeat_byte(0xaa));
            assert_eq!(call.s, B256::repeat_byte(0xbb));
            assert_eq!(call.from, Address::repeat_byte(0x11));
            assert_eq!(call.to, Address::repeat_byte(0x22));
            assert_eq!(call.value, U256::from(1_000));
            assert_eq!(call.validAfter, U256::from(5));
            assert_eq!(call.validBefore, U256::from(6));
            assert_eq!(call.nonce, B256::repeat_byte(0x33));
        }
    }

    #[test]
    fn any_other_signature_is_sent_whole_in_the_bytes_form() {
        for length in [64, 66, 200] {
            let signature = vec![0x44; length];
            let calldata = payload(signature.clone()).transfer_calldata();
            assert_eq!(calldata[..4], BYTES_SELECTOR);
            let call =
                IEip3009Token::transferWithAuthorization_1Call::abi_decode(&calldata).unwrap();
            assert_eq!(call.signature.as_ref(), signature.as_slice());
            assert_eq!(call.nonce, B256::repeat_byte(0x33));
        }
    }
}
