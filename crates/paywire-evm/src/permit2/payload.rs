//! The `payload` object of a Permit2 payment and its EIP-712 digest.
//!
//! Both x402 proxies use the same `PermitWitnessTransferFrom` message; only
//! the witness differs: `exact` binds `(to, validAfter)`, `upto` binds
//! `(to, facilitator, validAfter)`. One wire type carries both, the
//! `facilitator` member being present exactly for `upto`.

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use paywire_core::{AtomicAmount, JsonObject};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PERMIT2_ADDRESS;

/// EIP-712 types of the `exact` proxy's witness transfer.
mod exact_types {
    #![allow(missing_docs)]
    alloy_sol_types::sol! {
        struct TokenPermissions {
            address token;
            uint256 amount;
        }
        struct Witness {
            address to;
            uint256 validAfter;
        }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

/// EIP-712 types of the `upto` proxy's witness transfer.
mod upto_types {
    #![allow(missing_docs)]
    alloy_sol_types::sol! {
        struct TokenPermissions {
            address token;
            uint256 amount;
        }
        struct Witness {
            address to;
            address facilitator;
            uint256 validAfter;
        }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

/// The token and (maximum) amount a Permit2 signature allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPermissions {
    /// The ERC-20 token.
    #[serde(serialize_with = "checksummed")]
    pub token: Address,
    /// Amount in atomic units (`exact`: the price; `upto`: the maximum).
    pub amount: AtomicAmount,
}

/// The witness the proxy checks: where the funds go, from when, and (for
/// `upto`) which facilitator may settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Witness {
    /// Recipient (`payTo`).
    #[serde(serialize_with = "checksummed")]
    pub to: Address,
    /// The only facilitator allowed to settle (`upto` only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "checksummed_option"
    )]
    pub facilitator: Option<Address>,
    /// Unix time from which the transfer is valid.
    pub valid_after: AtomicAmount,
}

/// The signed `permitWitnessTransferFrom` parameters, as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Authorization {
    /// Payer (the Permit2 `owner`).
    #[serde(serialize_with = "checksummed")]
    pub from: Address,
    /// Token and amount.
    pub permitted: TokenPermissions,
    /// The x402 proxy allowed to spend.
    #[serde(serialize_with = "checksummed")]
    pub spender: Address,
    /// Permit2 unordered nonce: decimal on the wire (a `0x` hex spelling is
    /// read too).
    #[serde(serialize_with = "decimal", deserialize_with = "decimal_or_hex")]
    pub nonce: U256,
    /// Unix time after which the signature is void.
    pub deadline: AtomicAmount,
    /// Recipient binding.
    pub witness: Witness,
}

/// The scheme-specific `payload` of a Permit2 payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Payload {
    /// Hex signature (65 bytes for an EOA; longer for smart wallets).
    pub signature: Bytes,
    /// The signed parameters.
    pub permit2_authorization: Permit2Authorization,
}

impl Permit2Payload {
    /// Reads the payload from a `PaymentPayload.payload` object.
    pub fn from_json(object: &JsonObject) -> Result<Self, serde_json::Error> {
        Self::deserialize(serde_json::Value::Object(object.clone()))
    }

    /// Converts into a `PaymentPayload.payload` object.
    pub fn to_json(&self) -> JsonObject {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => JsonObject::new(),
        }
    }
}

impl Permit2Authorization {
    /// The digest the payer signs on chain `chain_id`: the `upto` message when
    /// the witness names a facilitator, the `exact` one otherwise.
    pub fn signing_hash(&self, chain_id: u64) -> B256 {
        let domain = permit2_domain(chain_id);
        match self.witness.facilitator {
            Some(facilitator) => self.upto_message(facilitator).eip712_signing_hash(&domain),
            None => self.exact_message().eip712_signing_hash(&domain),
        }
    }

    fn exact_message(&self) -> exact_types::PermitWitnessTransferFrom {
        exact_types::PermitWitnessTransferFrom {
            permitted: exact_types::TokenPermissions {
                token: self.permitted.token,
                amount: self.permitted.amount.as_u256(),
            },
            spender: self.spender,
            nonce: self.nonce,
            deadline: self.deadline.as_u256(),
            witness: exact_types::Witness {
                to: self.witness.to,
                validAfter: self.witness.valid_after.as_u256(),
            },
        }
    }

    fn upto_message(&self, facilitator: Address) -> upto_types::PermitWitnessTransferFrom {
        upto_types::PermitWitnessTransferFrom {
            permitted: upto_types::TokenPermissions {
                token: self.permitted.token,
                amount: self.permitted.amount.as_u256(),
            },
            spender: self.spender,
            nonce: self.nonce,
            deadline: self.deadline.as_u256(),
            witness: upto_types::Witness {
                to: self.witness.to,
                facilitator,
                validAfter: self.witness.valid_after.as_u256(),
            },
        }
    }
}

/// The EIP-712 domain of the canonical Permit2 contract on `chain_id` (name
/// `Permit2`, no version).
pub fn permit2_domain(chain_id: u64) -> Eip712Domain {
    Eip712Domain::new(
        Some("Permit2".into()),
        None,
        Some(U256::from(chain_id)),
        Some(PERMIT2_ADDRESS),
        None,
    )
}

/// Writes an address in its EIP-55 checksummed form, as viem does.
fn checksummed<S: Serializer>(address: &Address, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&address.to_checksum(None))
}

// serde's `serialize_with` hands over `&Option<_>`.
#[allow(clippy::ref_option)]
fn checksummed_option<S: Serializer>(
    address: &Option<Address>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match address {
        Some(address) => checksummed(address, serializer),
        None => serializer.serialize_none(),
    }
}

fn decimal<S: Serializer>(value: &U256, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// A uint256 as a canonical decimal string or a `0x` hex string of at most 64
/// digits; anything else (signs, spaces, leading zeros, numbers) is refused.
fn decimal_or_hex<'de, D: Deserializer<'de>>(deserializer: D) -> Result<U256, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(deserializer)?;
    if let Some(hex) = text.strip_prefix("0x") {
        let valid =
            !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        return valid
            .then(|| U256::from_str_radix(hex, 16).ok())
            .flatten()
            .ok_or_else(|| D::Error::custom("nonce is not a 0x hex uint256"));
    }
    text.parse::<AtomicAmount>()
        .map(|amount| amount.as_u256())
        .map_err(|_| D::Error::custom("nonce is not a canonical decimal uint256"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(facilitator: Option<Address>) -> Permit2Authorization {
        Permit2Authorization {
            from: Address::repeat_byte(1),
            permitted: TokenPermissions {
                token: Address::repeat_byte(2),
                amount: "10000".parse().unwrap_or_else(|_| unreachable!()),
            },
            spender: super::super::EXACT_PERMIT2_PROXY,
            nonce: U256::from(7u64),
            deadline: "1740672154".parse().unwrap_or_else(|_| unreachable!()),
            witness: Witness {
                to: Address::repeat_byte(3),
                facilitator,
                valid_after: "0".parse().unwrap_or_else(|_| unreachable!()),
            },
        }
    }

    #[test]
    fn type_strings_are_the_proxies_witness_types() {
        use alloy_sol_types::SolStruct;
        let exact = authorization(None).exact_message();
        assert_eq!(
            exact.eip712_type_hash(),
            alloy_primitives::keccak256(
                "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
            )
        );
        let upto = authorization(None).upto_message(Address::repeat_byte(4));
        assert_eq!(
            upto.eip712_type_hash(),
            alloy_primitives::keccak256(
                "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)"
            )
        );
    }

    #[test]
    fn the_facilitator_member_selects_the_upto_message() {
        let exact = authorization(None).signing_hash(31337);
        let upto = authorization(Some(Address::repeat_byte(4))).signing_hash(31337);
        assert_ne!(exact, upto);
    }

    #[test]
    fn wire_form_round_trips_and_nonce_reads_hex() -> Result<(), serde_json::Error> {
        let payload = Permit2Payload {
            signature: Bytes::from(vec![0xab; 65]),
            permit2_authorization: authorization(None),
        };
        let json = payload.to_json();
        assert_eq!(json["permit2Authorization"]["nonce"], "7");
        assert!(
            json["permit2Authorization"]["witness"]
                .get("facilitator")
                .is_none()
        );
        assert_eq!(Permit2Payload::from_json(&json)?, payload);
        let mut hex = json.clone();
        hex["permit2Authorization"]["nonce"] = "0x07".into();
        assert_eq!(Permit2Payload::from_json(&hex)?, payload);
        for bad in ["", "0x", "-1", "07", " 7", "0xzz"] {
            let mut wrong = json.clone();
            wrong["permit2Authorization"]["nonce"] = bad.into();
            assert!(
                Permit2Payload::from_json(&wrong).is_err(),
                "{bad:?} was read"
            );
        }
        Ok(())
    }
}
