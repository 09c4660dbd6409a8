//! Solana transaction pieces: the program ids this crate knows, the
//! instructions of an `exact` payment built by hand (their layouts are a
//! few bytes each), associated token account derivation, and the wire codec
//! of a payment transaction (base64 of a legacy or v0 transaction).

use std::str::FromStr;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use solana_address::Address;
use solana_instruction::{AccountMeta, Instruction};
use solana_message::VersionedMessage;
use solana_transaction::versioned::VersionedTransaction;

/// The SPL Token program.
pub const TOKEN_PROGRAM: Address =
    Address::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
/// The Token-2022 program.
pub const TOKEN_2022_PROGRAM: Address =
    Address::from_str_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
/// The associated token account program.
pub const ATA_PROGRAM: Address =
    Address::from_str_const("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");
/// The compute budget program.
pub const COMPUTE_BUDGET_PROGRAM: Address =
    Address::from_str_const("ComputeBudget111111111111111111111111111111");
/// The SPL Memo program (v2).
pub const MEMO_PROGRAM: Address =
    Address::from_str_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
/// Lighthouse, whose assertion instructions wallets (Phantom, Solflare) add.
pub const LIGHTHOUSE_PROGRAM: Address =
    Address::from_str_const("L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95");
/// The system program (ATA creation needs it).
pub const SYSTEM_PROGRAM: Address = Address::from_str_const("11111111111111111111111111111111");

/// `SetComputeUnitLimit` discriminator of the compute budget program.
pub const SET_COMPUTE_UNIT_LIMIT: u8 = 2;
/// `SetComputeUnitPrice` discriminator of the compute budget program.
pub const SET_COMPUTE_UNIT_PRICE: u8 = 3;
/// `TransferChecked` discriminator of both token programs.
pub const TRANSFER_CHECKED: u8 = 12;
/// `CreateIdempotent` discriminator of the associated token account program.
pub const CREATE_IDEMPOTENT: u8 = 1;

/// Largest serialized transaction the network accepts (IPv6 MTU minus headers).
pub const MAX_TRANSACTION_BYTES: usize = 1232;

/// Parses a base58 address; `None` when it is not 32 bytes of base58.
pub fn parse_address(text: &str) -> Option<Address> {
    Address::from_str(text.trim()).ok()
}

/// Whether `program` is one of the two token programs.
pub fn is_token_program(program: &Address) -> bool {
    *program == TOKEN_PROGRAM || *program == TOKEN_2022_PROGRAM
}

/// The associated token account of `owner` for `mint` under `token_program`.
pub fn associated_token_address(
    owner: &Address,
    mint: &Address,
    token_program: &Address,
) -> Address {
    Address::find_program_address(
        &[owner.as_ref(), token_program.as_ref(), mint.as_ref()],
        &ATA_PROGRAM,
    )
    .0
}

/// `SetComputeUnitLimit(units)`.
pub fn set_compute_unit_limit(units: u32) -> Instruction {
    let mut data = vec![SET_COMPUTE_UNIT_LIMIT];
    data.extend_from_slice(&units.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM, &data, Vec::new())
}

/// `SetComputeUnitPrice(micro_lamports)` (per compute unit).
pub fn set_compute_unit_price(micro_lamports: u64) -> Instruction {
    let mut data = vec![SET_COMPUTE_UNIT_PRICE];
    data.extend_from_slice(&micro_lamports.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM, &data, Vec::new())
}

/// The accounts and amount of one `TransferChecked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferChecked {
    /// Token program executing it.
    pub token_program: Address,
    /// Source token account.
    pub source: Address,
    /// The mint.
    pub mint: Address,
    /// Destination token account.
    pub destination: Address,
    /// The source's owner or delegate, who signs.
    pub authority: Address,
    /// Atomic amount.
    pub amount: u64,
    /// The mint's decimals, as the instruction states them.
    pub decimals: u8,
}

impl TransferChecked {
    /// The instruction.
    pub fn instruction(&self) -> Instruction {
        let mut data = vec![TRANSFER_CHECKED];
        data.extend_from_slice(&self.amount.to_le_bytes());
        data.push(self.decimals);
        Instruction::new_with_bytes(
            self.token_program,
            &data,
            vec![
                AccountMeta::new(self.source, false),
                AccountMeta::new_readonly(self.mint, false),
                AccountMeta::new(self.destination, false),
                AccountMeta::new_readonly(self.authority, true),
            ],
        )
    }

    /// Amount and decimals from instruction data (`[12, u64 le, u8]`).
    pub fn parse_data(data: &[u8]) -> Option<(u64, u8)> {
        let [TRANSFER_CHECKED, rest @ ..] = data else {
            return None;
        };
        let [a0, a1, a2, a3, a4, a5, a6, a7, decimals] = *rest else {
            return None;
        };
        Some((
            u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            decimals,
        ))
    }
}

/// A Memo instruction carrying `text`, with no signer accounts.
pub fn memo(text: &str) -> Instruction {
    Instruction::new_with_bytes(MEMO_PROGRAM, text.as_bytes(), Vec::new())
}

/// `CreateIdempotent` of `owner`'s associated token account for `mint`,
/// paid by `funder`.
pub fn create_ata_idempotent(
    funder: &Address,
    owner: &Address,
    mint: &Address,
    token_program: &Address,
) -> Instruction {
    Instruction::new_with_bytes(
        ATA_PROGRAM,
        &[CREATE_IDEMPOTENT],
        vec![
            AccountMeta::new(*funder, true),
            AccountMeta::new(associated_token_address(owner, mint, token_program), false),
            AccountMeta::new_readonly(*owner, false),
            AccountMeta::new_readonly(*mint, false),
            AccountMeta::new_readonly(SYSTEM_PROGRAM, false),
            AccountMeta::new_readonly(*token_program, false),
        ],
    )
}

/// Why a payment transaction could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than a Solana transaction can be.
    #[error("the transaction is larger than {MAX_TRANSACTION_BYTES} bytes")]
    TooLarge,
    /// Not base64.
    #[error("the transaction is not base64")]
    Base64,
    /// Not a transaction in the wire format, or with bytes left over.
    #[error("the transaction bytes are malformed")]
    Malformed,
    /// A message version other than legacy and v0.
    #[error("unsupported transaction message version")]
    Version,
    /// Indexes out of range, signature count not matching the header.
    #[error("the transaction is not well formed: {0}")]
    Sanitize(String),
}

/// Decodes a base64 payment transaction. Only legacy and v0 messages are
/// accepted, the encoding must be canonical (re-encoding gives the same
/// bytes: one transaction has one spelling), and the signature count must
/// match the header.
pub fn decode_transaction(text: &str) -> Result<VersionedTransaction, DecodeError> {
    // Base64 grows 4/3; refuse oversize text before decoding it.
    if text.len() > MAX_TRANSACTION_BYTES.div_ceil(3) * 4 {
        return Err(DecodeError::TooLarge);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| DecodeError::Base64)?;
    if bytes.len() > MAX_TRANSACTION_BYTES {
        return Err(DecodeError::TooLarge);
    }
    let transaction: VersionedTransaction =
        wincode::deserialize(&bytes).map_err(|_| DecodeError::Malformed)?;
    if matches!(transaction.message, VersionedMessage::V1(_)) {
        return Err(DecodeError::Version);
    }
    if wincode::serialize(&transaction).ok().as_deref() != Some(bytes.as_slice()) {
        return Err(DecodeError::Malformed);
    }
    transaction
        .sanitize()
        .map_err(|e| DecodeError::Sanitize(e.to_string()))?;
    Ok(transaction)
}

/// The wire bytes of `transaction`.
pub fn transaction_bytes(transaction: &VersionedTransaction) -> Vec<u8> {
    // Serializing an in-memory transaction into a vector cannot fail.
    wincode::serialize(transaction).unwrap_or_default()
}

/// Base64 of the wire bytes of `transaction`.
pub fn encode_transaction(transaction: &VersionedTransaction) -> String {
    base64::engine::general_purpose::STANDARD.encode(transaction_bytes(transaction))
}

/// The bytes every signature of `message` signs.
pub fn message_bytes(message: &VersionedMessage) -> Vec<u8> {
    message.serialize()
}

/// SHA-256 of the message bytes, hex: the identity of one payment
/// transaction whatever its signatures (the de-duplication key).
pub fn message_hash(message: &VersionedMessage) -> String {
    Sha256::digest(message_bytes(message))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The USDC account of `3h1z…p5UG`, a vector other SDKs test against
    /// (Solana.Swift's `AssociatedTokenProgramTests`).
    #[test]
    fn ata_derivation_matches_a_known_vector() {
        let owner = parse_address("3h1zGmCwsRJnVk5BuRNMLsPaQu1y2aqXqXDWYCgrp5UG").unwrap();
        let mint = parse_address("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v").unwrap();
        let ata = associated_token_address(&owner, &mint, &TOKEN_PROGRAM);
        assert_eq!(ata.to_string(), KNOWN_ATA);
        assert_ne!(
            associated_token_address(&owner, &mint, &TOKEN_2022_PROGRAM),
            ata
        );
    }

    const KNOWN_ATA: &str = "3uetDDizgTtadDHZzyy9BqxrjQcozMEkxzbKhfZF4tG3";

    #[test]
    fn transfer_checked_data_round_trips() {
        let transfer = TransferChecked {
            token_program: TOKEN_PROGRAM,
            source: Address::new_from_array([1; 32]),
            mint: Address::new_from_array([2; 32]),
            destination: Address::new_from_array([3; 32]),
            authority: Address::new_from_array([4; 32]),
            amount: 1_234_567,
            decimals: 6,
        };
        let ix = transfer.instruction();
        assert_eq!(ix.data.len(), 10);
        assert_eq!(TransferChecked::parse_data(&ix.data), Some((1_234_567, 6)));
        assert_eq!(TransferChecked::parse_data(&ix.data[..9]), None);
        assert_eq!(set_compute_unit_limit(7).data, [2, 7, 0, 0, 0]);
        assert_eq!(set_compute_unit_price(1).data, [3, 1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn malformed_transactions_are_refused_without_panic() {
        for text in ["", "!!", "AAAA", "gAAA", &"A".repeat(4000)] {
            assert!(decode_transaction(text).is_err(), "{text}");
        }
    }
}
