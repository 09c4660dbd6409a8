//! The `solana` plugin's error reasons, spelled as the TypeScript SDK
//! (`@x402/svm` 2.x) and the specification spell them, so that servers and
//! clients of other implementations recognise them.

use paywire_core::ErrorReason;

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident = $code:literal;)*) => {
        $($(#[$doc])* pub const $name: ErrorReason = ErrorReason::from_static($code);)*
        /// Every code above.
        pub const ALL: &[ErrorReason] = &[$($name),*];
    };
}

reasons! {
    /// `extra.feePayer` is missing from the requirements.
    MISSING_FEE_PAYER = "invalid_exact_svm_payload_missing_fee_payer";
    /// `extra.feePayer` is not a signer of this facilitator on the network.
    FEE_PAYER_NOT_MANAGED = "invalid_exact_svm_fee_payer_not_managed_by_facilitator";
    /// The transaction could not be decoded.
    UNDECODABLE = "invalid_exact_svm_payload_transaction_could_not_be_decoded";
    /// Too many, too few, or unknown instructions.
    INSTRUCTIONS_LENGTH = "invalid_exact_svm_payload_transaction_instructions_length";
    /// The compute unit limit is missing, repeated or malformed, or another
    /// compute budget instruction is present.
    COMPUTE_LIMIT = "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction";
    /// The compute unit limit is over the cap.
    COMPUTE_LIMIT_TOO_HIGH =
        "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction_too_high";
    /// The compute unit price is missing, repeated or malformed.
    COMPUTE_PRICE = "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction";
    /// The compute unit price is above the facilitator's cap.
    COMPUTE_PRICE_TOO_HIGH =
        "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high";
    /// No (or more than one) `TransferChecked`.
    NO_TRANSFER = "invalid_exact_svm_payload_no_transfer_instruction";
    /// The fee payer is referenced by an instruction, or is the transfer's
    /// authority or source, or signs as something else.
    FEE_PAYER_TRANSFERRING = "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds";
    /// The transfer's mint is not the required asset.
    MINT_MISMATCH = "invalid_exact_svm_payload_mint_mismatch";
    /// The transfer's destination is not payTo's associated token account.
    RECIPIENT_MISMATCH = "invalid_exact_svm_payload_recipient_mismatch";
    /// The transfer amount is not the required amount.
    AMOUNT_MISMATCH = "invalid_exact_svm_payload_amount_mismatch";
    /// An instruction of a program that is not allowed.
    UNKNOWN_INSTRUCTION = "invalid_exact_svm_payload_unknown_optional_instruction";
    /// `extra.memo` is set and not exactly one Memo instruction carries it.
    MEMO_COUNT = "invalid_exact_svm_payload_memo_count";
    /// The Memo instruction does not carry `extra.memo`.
    MEMO_MISMATCH = "invalid_exact_svm_payload_memo_mismatch";
    /// Simulating the transaction failed.
    SIMULATION_FAILED = "invalid_exact_svm_transaction_simulation_failed";
    /// The address lookup tables could not be resolved (specification).
    ALT_RESOLUTION = "smart_wallet_alt_resolution_not_available";
    /// A required signature is missing or invalid.
    SIGNATURE = "invalid_exact_svm_payload_signature_invalid";
    /// The transaction requires signers beyond the fee payer and the client.
    EXCESSIVE_SIGNERS = "invalid_exact_svm_payload_excessive_signers";
    /// The transaction's fee payer (account 0) is not `extra.feePayer`.
    FEE_PAYER_MISMATCH = "invalid_exact_svm_fee_payer_mismatch";
    /// The recent blockhash has expired.
    BLOCKHASH_EXPIRED = "invalid_exact_svm_payload_transaction_blockhash_expired";
    /// The mint is not a token mint, or has an extension the facilitator refuses.
    MINT_NOT_ACCEPTED = "invalid_exact_svm_payload_mint_not_accepted";
    /// payTo's token account does not exist and is not created.
    RECEIVER_ATA_NOT_FOUND = "invalid_exact_svm_payload_transaction_receiver_ata_not_found";
    /// An ATA creation instruction that is not the allowed one.
    CREATE_ATA = "invalid_exact_svm_payload_transaction_create_ata_instruction";
    /// The transaction failed on chain.
    TRANSACTION_FAILED = "invalid_exact_svm_transaction_failed";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_the_spec_alt_code_is_named() {
        let mut codes: Vec<&str> = ALL.iter().map(ErrorReason::as_str).collect();
        codes.sort_unstable();
        let count = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), count);
        let list = include_str!("../../paywire-core/tests/vectors/error-reasons.txt");
        assert!(list.contains(ALT_RESOLUTION.as_str()));
    }
}
