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

/// The Permit2 signature names another spender than the scheme's proxy
/// (TypeScript SDK spelling, as every `permit2_*` code below).
pub const PERMIT2_INVALID_SPENDER: ErrorReason =
    ErrorReason::from_static("invalid_permit2_spender");
/// The Permit2 witness pays someone other than `payTo`.
pub const PERMIT2_RECIPIENT_MISMATCH: ErrorReason =
    ErrorReason::from_static("invalid_permit2_recipient_mismatch");
/// The Permit2 deadline has passed or falls within the safety buffer.
pub const PERMIT2_DEADLINE_EXPIRED: ErrorReason =
    ErrorReason::from_static("permit2_deadline_expired");
/// The Permit2 witness's `validAfter` is in the future.
pub const PERMIT2_NOT_YET_VALID: ErrorReason = ErrorReason::from_static("permit2_not_yet_valid");
/// The permitted amount differs from the required amount.
pub const PERMIT2_AMOUNT_MISMATCH: ErrorReason =
    ErrorReason::from_static("permit2_amount_mismatch");
/// The permitted token is not the required asset.
pub const PERMIT2_TOKEN_MISMATCH: ErrorReason = ErrorReason::from_static("permit2_token_mismatch");
/// The Permit2 signature is not the payer's.
pub const PERMIT2_INVALID_SIGNATURE: ErrorReason =
    ErrorReason::from_static("invalid_permit2_signature");
/// The payer has not approved Permit2 for the amount (the TypeScript SDK's
/// spelling of the specification's `PERMIT2_ALLOWANCE_REQUIRED`, which is
/// read as an alias).
pub const PERMIT2_ALLOWANCE: ErrorReason = ErrorReason::from_static("permit2_allowance_required");
/// Simulating the proxy's settlement failed.
pub const PERMIT2_SIMULATION_FAILED: ErrorReason =
    ErrorReason::from_static("permit2_simulation_failed");
/// The payer's balance does not cover the Permit2 payment.
pub const PERMIT2_INSUFFICIENT_BALANCE: ErrorReason =
    ErrorReason::from_static("permit2_insufficient_balance");
/// Permit2 or the x402 proxy has no code on this chain.
pub const PERMIT2_PROXY_NOT_DEPLOYED: ErrorReason =
    ErrorReason::from_static("permit2_proxy_not_deployed");
/// The Permit2 nonce is already used.
pub const PERMIT2_INVALID_NONCE: ErrorReason = ErrorReason::from_static("permit2_invalid_nonce");
/// The `upto` witness names a facilitator that is not one of our signers.
pub const UPTO_FACILITATOR_MISMATCH: ErrorReason =
    ErrorReason::from_static("upto_facilitator_mismatch");
/// The `upto` payload or settlement is for another scheme.
pub const UPTO_INVALID_SCHEME: ErrorReason = ErrorReason::from_static("invalid_upto_evm_scheme");
/// The `upto` payload names another network than the requirements.
pub const UPTO_NETWORK_MISMATCH: ErrorReason =
    ErrorReason::from_static("invalid_upto_evm_network_mismatch");
/// The EIP-2612 sponsoring extension is malformed.
pub const EIP2612_INVALID_FORMAT: ErrorReason =
    ErrorReason::from_static("invalid_eip2612_extension_format");
/// The EIP-2612 permit is signed for another owner than the payer.
pub const EIP2612_FROM_MISMATCH: ErrorReason = ErrorReason::from_static("eip2612_from_mismatch");
/// The EIP-2612 permit is for another token.
pub const EIP2612_ASSET_MISMATCH: ErrorReason = ErrorReason::from_static("eip2612_asset_mismatch");
/// The EIP-2612 permit's spender is not Permit2.
pub const EIP2612_SPENDER_NOT_PERMIT2: ErrorReason =
    ErrorReason::from_static("eip2612_spender_not_permit2");
/// The EIP-2612 permit has expired.
pub const EIP2612_DEADLINE_EXPIRED: ErrorReason =
    ErrorReason::from_static("eip2612_deadline_expired");
/// The EIP-2612 permit allows less than the payment.
pub const EIP2612_AMOUNT_MISMATCH: ErrorReason =
    ErrorReason::from_static("permit2_2612_amount_mismatch");
/// The sponsored ERC-20 approval extension is malformed.
pub const ERC20_APPROVAL_INVALID_FORMAT: ErrorReason =
    ErrorReason::from_static("invalid_erc20_approval_extension_format");
/// The sponsored approval is not the payer's.
pub const ERC20_APPROVAL_FROM_MISMATCH: ErrorReason =
    ErrorReason::from_static("erc20_approval_from_mismatch");
/// The sponsored approval is for another token.
pub const ERC20_APPROVAL_ASSET_MISMATCH: ErrorReason =
    ErrorReason::from_static("erc20_approval_asset_mismatch");
/// The sponsored approval's spender is not Permit2.
pub const ERC20_APPROVAL_SPENDER_NOT_PERMIT2: ErrorReason =
    ErrorReason::from_static("erc20_approval_spender_not_permit2");
/// The signed approval transaction calls another contract than the token.
pub const ERC20_APPROVAL_WRONG_TARGET: ErrorReason =
    ErrorReason::from_static("erc20_approval_tx_wrong_target");
/// The signed approval transaction is not `approve(Permit2, amount)`.
pub const ERC20_APPROVAL_INVALID_CALLDATA: ErrorReason =
    ErrorReason::from_static("erc20_approval_tx_invalid_calldata");
/// The signed approval transaction is signed by someone other than the payer.
pub const ERC20_APPROVAL_SIGNER_MISMATCH: ErrorReason =
    ErrorReason::from_static("erc20_approval_tx_signer_mismatch");
/// The signed approval transaction cannot be decoded.
pub const ERC20_APPROVAL_PARSE_FAILED: ErrorReason =
    ErrorReason::from_static("erc20_approval_tx_parse_failed");
/// The approval transaction failed or broke this facilitator's limits.
pub const ERC20_APPROVAL_FAILED: ErrorReason = ErrorReason::from_static("erc20_approval_tx_failed");

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
    PERMIT2_INVALID_SPENDER,
    PERMIT2_RECIPIENT_MISMATCH,
    PERMIT2_DEADLINE_EXPIRED,
    PERMIT2_NOT_YET_VALID,
    PERMIT2_AMOUNT_MISMATCH,
    PERMIT2_TOKEN_MISMATCH,
    PERMIT2_INVALID_SIGNATURE,
    PERMIT2_ALLOWANCE,
    PERMIT2_SIMULATION_FAILED,
    PERMIT2_INSUFFICIENT_BALANCE,
    PERMIT2_PROXY_NOT_DEPLOYED,
    PERMIT2_INVALID_NONCE,
    UPTO_FACILITATOR_MISMATCH,
    UPTO_INVALID_SCHEME,
    UPTO_NETWORK_MISMATCH,
    EIP2612_INVALID_FORMAT,
    EIP2612_FROM_MISMATCH,
    EIP2612_ASSET_MISMATCH,
    EIP2612_SPENDER_NOT_PERMIT2,
    EIP2612_DEADLINE_EXPIRED,
    EIP2612_AMOUNT_MISMATCH,
    ERC20_APPROVAL_INVALID_FORMAT,
    ERC20_APPROVAL_FROM_MISMATCH,
    ERC20_APPROVAL_ASSET_MISMATCH,
    ERC20_APPROVAL_SPENDER_NOT_PERMIT2,
    ERC20_APPROVAL_WRONG_TARGET,
    ERC20_APPROVAL_INVALID_CALLDATA,
    ERC20_APPROVAL_SIGNER_MISMATCH,
    ERC20_APPROVAL_PARSE_FAILED,
    ERC20_APPROVAL_FAILED,
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
    ("PERMIT2_ALLOWANCE_REQUIRED", PERMIT2_ALLOWANCE),
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
