//! Machine-readable reasons a payment is invalid or a settlement failed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! error_reasons {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal, )*) => {
        /// An `invalidReason` / `errorReason` code. Known codes are variants;
        /// anything else received on the wire is kept verbatim in
        /// [`ErrorReason::Other`] so that it round-trips unchanged.
        #[derive(Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorReason {
            $( $(#[$doc])* $variant, )*
            /// A code this version does not know.
            Other(String),
        }

        impl ErrorReason {
            /// Every known code, for documentation and tests.
            pub const KNOWN: &'static [ErrorReason] = &[ $( ErrorReason::$variant, )* ];

            /// The wire spelling of the code.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )*
                    Self::Other(text) => text,
                }
            }

            /// Maps a wire spelling back to a code (unknown spellings become
            /// [`ErrorReason::Other`]). Spellings used by other
            /// implementations for the same condition are recognised too.
            pub fn from_wire(text: &str) -> Self {
                match text {
                    $( $text => Self::$variant, )*
                    other => match ALIASES.iter().find(|(alias, _)| *alias == other) {
                        Some((_, canonical)) => Self::from_wire(canonical),
                        None => Self::Other(other.to_owned()),
                    },
                }
            }
        }
    };
}

error_reasons! {
    /// The payer's balance is below the amount.
    InsufficientFunds => "insufficient_funds",
    /// The authorization is not valid yet (`validAfter` in the future).
    InvalidExactEvmPayloadAuthorizationValidAfter => "invalid_exact_evm_payload_authorization_valid_after",
    /// The authorization has expired or expires within the safety buffer.
    InvalidExactEvmPayloadAuthorizationValidBefore => "invalid_exact_evm_payload_authorization_valid_before",
    /// The signed value differs from the required amount.
    InvalidExactEvmPayloadAuthorizationValueMismatch => "invalid_exact_evm_payload_authorization_value_mismatch",
    /// The signature does not authorise the transfer.
    InvalidExactEvmPayloadSignature => "invalid_exact_evm_payload_signature",
    /// The payer is a counterfactual (EIP-6492) smart wallet that is not
    /// deployed, and the facilitator does not deploy it (spelled as the
    /// official SDKs do).
    InvalidExactEvmPayloadUndeployedSmartWallet => "invalid_exact_evm_payload_undeployed_smart_wallet",
    /// The signed recipient is not the required `payTo`.
    InvalidExactEvmPayloadRecipientMismatch => "invalid_exact_evm_payload_recipient_mismatch",
    /// The authorization nonce was already used on chain (spelled as the
    /// TypeScript SDK does; the specification names no code for it).
    InvalidExactEvmPayloadAuthorizationNonceUsed => "invalid_exact_evm_nonce_already_used",
    /// Simulating the transfer failed (TypeScript SDK spelling).
    InvalidExactEvmPayloadSimulationFailed => "invalid_exact_evm_transaction_simulation_failed",
    /// The Permit2 allowance of the payer is too low.
    Permit2AllowanceRequired => "PERMIT2_ALLOWANCE_REQUIRED",
    /// The `upto` settlement amount exceeds the signed maximum.
    InvalidUptoEvmPayloadSettlementExceedsAmount => "invalid_upto_evm_payload_settlement_exceeds_amount",
    /// The Solana transaction could not be decoded.
    InvalidExactSvmPayloadTransaction => "invalid_exact_svm_payload_transaction",
    /// The Solana transaction's instructions are not the allowed layout.
    InvalidExactSvmPayloadTransactionInstructions => "invalid_exact_svm_payload_transaction_instructions",
    /// The Solana transfer amount differs from the required amount.
    InvalidExactSvmPayloadTransactionAmountMismatch => "invalid_exact_svm_payload_transaction_amount_mismatch",
    /// The Solana transfer goes to the wrong account or mint.
    InvalidExactSvmPayloadTransactionRecipientMismatch => "invalid_exact_svm_payload_transaction_recipient_mismatch",
    /// The Solana fee payer would be touched by an instruction.
    InvalidExactSvmPayloadTransactionFeePayerIncluded => "invalid_exact_svm_payload_transaction_fee_payer_included",
    /// Simulating the Solana transaction failed.
    InvalidExactSvmPayloadTransactionSimulationFailed => "invalid_exact_svm_payload_transaction_simulation_failed",
    /// The same Solana transaction was already submitted for settlement.
    DuplicateSettlement => "duplicate_settlement",
    /// A Solana smart-wallet transaction uses address lookup tables that cannot be resolved.
    SmartWalletAltResolutionNotAvailable => "smart_wallet_alt_resolution_not_available",
    /// A Solana smart-wallet transaction calls a program that is not allowed.
    SmartWalletProgramNotAllowed => "smart_wallet_program_not_allowed",
    /// The network is not supported or does not match.
    InvalidNetwork => "invalid_network",
    /// The payload is malformed.
    InvalidPayload => "invalid_payload",
    /// The requirements are malformed or do not match the payload.
    InvalidPaymentRequirements => "invalid_payment_requirements",
    /// The scheme is not valid for this request.
    InvalidScheme => "invalid_scheme",
    /// The scheme is not supported by the facilitator.
    UnsupportedScheme => "unsupported_scheme",
    /// The protocol version is not supported.
    InvalidX402Version => "invalid_x402_version",
    /// The transaction failed or was rejected on chain.
    InvalidTransactionState => "invalid_transaction_state",
    /// The transaction was sent but not yet confirmed; it may still land.
    /// Spelled as the TypeScript SDK does, whose servers retry on it.
    TransactionPending => "settlement_pending",
    /// The asset is not accepted by this facilitator.
    UnsupportedAsset => "unsupported_asset",
    /// The payment identifier was reused with a different payload.
    PaymentIdentifierConflict => "payment_identifier_conflict",
    /// The payment identifier extension is required but missing.
    PaymentIdentifierRequired => "payment_identifier_required",
    /// An unexpected internal error during verification.
    UnexpectedVerifyError => "unexpected_verify_error",
    /// An unexpected internal error during settlement.
    UnexpectedSettleError => "unexpected_settle_error",
}

/// Other implementations' spellings of conditions we know, mapped to ours:
/// the TypeScript SDK 2.27 (its EVM codes), our own earlier pending spelling.
const ALIASES: &[(&str, &str)] = &[
    ("transaction_pending", "settlement_pending"),
    (
        "invalid_exact_evm_signature",
        "invalid_exact_evm_payload_signature",
    ),
    (
        "invalid_exact_evm_recipient_mismatch",
        "invalid_exact_evm_payload_recipient_mismatch",
    ),
    (
        "invalid_exact_evm_insufficient_balance",
        "insufficient_funds",
    ),
    (
        "invalid_exact_evm_payload_authorization_nonce_used",
        "invalid_exact_evm_nonce_already_used",
    ),
    (
        "invalid_exact_evm_payload_simulation_failed",
        "invalid_exact_evm_transaction_simulation_failed",
    ),
];

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorReason({})", self.as_str())
    }
}

impl Serialize for ErrorReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::from_wire(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_round_trip() {
        for reason in ErrorReason::KNOWN {
            let json = serde_json::to_string(reason).unwrap();
            let back: ErrorReason = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, reason);
            assert!(!matches!(back, ErrorReason::Other(_)), "{json} is known");
        }
        assert_eq!(
            serde_json::to_string(&ErrorReason::InsufficientFunds).unwrap(),
            "\"insufficient_funds\""
        );
    }

    #[test]
    fn other_spellings_are_recognised() {
        assert_eq!(
            ErrorReason::from_wire("transaction_pending"),
            ErrorReason::TransactionPending
        );
        assert_eq!(
            ErrorReason::TransactionPending.as_str(),
            "settlement_pending"
        );
        assert_eq!(
            ErrorReason::from_wire("invalid_exact_evm_signature"),
            ErrorReason::InvalidExactEvmPayloadSignature
        );
        assert_eq!(
            ErrorReason::from_wire("invalid_exact_evm_insufficient_balance"),
            ErrorReason::InsufficientFunds
        );
        for (alias, canonical) in ALIASES {
            assert!(
                !matches!(ErrorReason::from_wire(alias), ErrorReason::Other(_)),
                "{alias} -> {canonical} must resolve"
            );
        }
    }

    #[test]
    fn unknown_codes_are_preserved() {
        let reason: ErrorReason = serde_json::from_str("\"some_new_reason\"").unwrap();
        assert_eq!(reason, ErrorReason::Other("some_new_reason".into()));
        assert_eq!(
            serde_json::to_string(&reason).unwrap(),
            "\"some_new_reason\""
        );
    }
}
