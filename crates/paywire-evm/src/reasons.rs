//! The `eip155` plugin's error reasons: the specification's EVM codes and
//! the TypeScript SDK's spellings of conditions the specification names no
//! code for. Generic codes are [`ErrorReason`]'s own constants.

use paywire_core::ErrorReason;

/// The authorization is not valid yet (`validAfter` in the future).
pub const VALID_AFTER: ErrorReason =
    ErrorReason::from_static("invalid_exact_evm_payload_authorization_valid_after");
/// The authorization has expired or expires within the safety buffer.
pub const VALID_BEFORE: ErrorReason =
    ErrorReason::from_static("invalid_exact_evm_payload_authorization_valid_before");
/// The signed value differs from the required amount.
pub const VALUE_MISMATCH: ErrorReason =
    ErrorReason::from_static("invalid_exact_evm_payload_authorization_value_mismatch");
/// The signature does not authorise the transfer.
pub const SIGNATURE: ErrorReason = ErrorReason::from_static("invalid_exact_evm_payload_signature");
/// The payer is a smart wallet that is not deployed, and the facilitator
/// does not deploy it (the official SDKs' spelling).
pub const UNDEPLOYED_SMART_WALLET: ErrorReason =
    ErrorReason::from_static("invalid_exact_evm_payload_undeployed_smart_wallet");
/// The signed recipient is not the required `payTo`.
pub const RECIPIENT_MISMATCH: ErrorReason =
    ErrorReason::from_static("invalid_exact_evm_payload_recipient_mismatch");
/// The authorization nonce was already used on chain (the TypeScript SDK's
/// spelling; the specification names no code for it).
pub const NONCE_USED: ErrorReason =
    ErrorReason::from_static("invalid_exact_evm_nonce_already_used");
/// Simulating the transfer failed (TypeScript SDK spelling).
pub const SIMULATION_FAILED: ErrorReason =
    ErrorReason::from_static("invalid_exact_evm_transaction_simulation_failed");
/// The payer's Permit2 allowance is too low.
pub const PERMIT2_ALLOWANCE_REQUIRED: ErrorReason =
    ErrorReason::from_static("PERMIT2_ALLOWANCE_REQUIRED");
/// The `upto` settlement amount exceeds the signed maximum.
pub const UPTO_SETTLEMENT_EXCEEDS_AMOUNT: ErrorReason =
    ErrorReason::from_static("invalid_upto_evm_payload_settlement_exceeds_amount");

/// Every code above.
pub const ALL: &[ErrorReason] = &[
    VALID_AFTER,
    VALID_BEFORE,
    VALUE_MISMATCH,
    SIGNATURE,
    UNDEPLOYED_SMART_WALLET,
    RECIPIENT_MISMATCH,
    NONCE_USED,
    SIMULATION_FAILED,
    PERMIT2_ALLOWANCE_REQUIRED,
    UPTO_SETTLEMENT_EXCEEDS_AMOUNT,
];

/// Other implementations' spellings of the same conditions (the TypeScript
/// SDK 2.27's EVM codes), mapped to ours.
const ALIASES: &[(&str, ErrorReason)] = &[
    ("invalid_exact_evm_signature", SIGNATURE),
    ("invalid_exact_evm_recipient_mismatch", RECIPIENT_MISMATCH),
    (
        "invalid_exact_evm_insufficient_balance",
        ErrorReason::INSUFFICIENT_FUNDS,
    ),
    (
        "invalid_exact_evm_payload_authorization_nonce_used",
        NONCE_USED,
    ),
    (
        "invalid_exact_evm_payload_simulation_failed",
        SIMULATION_FAILED,
    ),
];

/// `reason` in our spelling, when another implementation spelled it
/// differently (compare reasons received from other facilitators through it).
pub fn canonical(reason: &ErrorReason) -> ErrorReason {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == reason.as_str())
        .map_or_else(|| reason.clone(), |(_, ours)| ours.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_evm_code_of_the_specification_is_named() {
        let list = include_str!("../../paywire-core/tests/vectors/error-reasons.txt");
        for code in list.lines().filter_map(|l| l.split('\t').next()) {
            let code = code.trim();
            if code.contains("_evm_") || code.starts_with("PERMIT2_") {
                assert!(
                    ALL.iter().any(|known| known.as_str() == code),
                    "{code} has no constant"
                );
            }
        }
    }

    #[test]
    fn typescript_spellings_map_to_ours() {
        assert_eq!(
            canonical(&ErrorReason::from_wire("invalid_exact_evm_signature")),
            SIGNATURE
        );
        assert_eq!(
            canonical(&ErrorReason::from_wire(
                "invalid_exact_evm_insufficient_balance"
            )),
            ErrorReason::INSUFFICIENT_FUNDS
        );
        assert_eq!(canonical(&NONCE_USED), NONCE_USED);
        for (alias, _) in ALIASES {
            assert_ne!(canonical(&ErrorReason::from_wire(alias)).as_str(), *alias);
        }
    }
}
