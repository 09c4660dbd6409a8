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
    /// payment, exactly as the facilitator sends it: the `(v, r, s)` form for
    /// a 65-byte signature (every EIP-3009 token knows it) and the `bytes`
    /// form (EIP-1271 capable tokens such as FiatTokenV2_2) for anything else.
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
