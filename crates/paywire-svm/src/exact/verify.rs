//! The sponsor acceptance policy's static rules: what a facilitator checks
//! in a payment transaction before it would ever sign it as fee payer, with
//! no chain access (lookup tables are resolved and the mint read before,
//! by the caller). Each rule is one function returning the reason it
//! refuses with; [`check`] runs them in order.

use paywire_core::ErrorReason;
use solana_address::Address;
use solana_message::VersionedMessage;
use solana_message::compiled_instruction::CompiledInstruction;
use solana_transaction::versioned::VersionedTransaction;

use crate::keys::verify_signature;
use crate::reasons;
use crate::tx::{
    self, ATA_PROGRAM, COMPUTE_BUDGET_PROGRAM, CREATE_IDEMPOTENT, LIGHTHOUSE_PROGRAM, MEMO_PROGRAM,
    SET_COMPUTE_UNIT_LIMIT, SET_COMPUTE_UNIT_PRICE, SYSTEM_PROGRAM, TransferChecked,
};

/// Most instructions a payment may hold: limit, price, transfer and four
/// Memo or Lighthouse instructions (the specification's static path), plus
/// one ATA creation when the operator allows it.
pub const MAX_INSTRUCTIONS: usize = 7;

/// What the facilitator accepts, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// Most compute units a payment may ask for.
    pub max_compute_units: u32,
    /// Highest compute unit price, in micro-lamports per unit.
    pub max_compute_unit_price: u64,
    /// Whether one `CreateIdempotent` of payTo's token account, funded by
    /// the fee payer, is accepted.
    pub create_destination_ata: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_compute_units: 400_000,
            max_compute_unit_price: 5_000_000,
            create_destination_ata: false,
        }
    }
}

/// What the transaction must pay, from the requirements and the mint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Expected {
    /// `extra.feePayer`.
    pub fee_payer: Address,
    /// The mint (`asset`).
    pub mint: Address,
    /// The mint's token program, as read from its account.
    pub token_program: Address,
    /// The mint's decimals.
    pub decimals: u8,
    /// The merchant (`payTo`).
    pub pay_to: Address,
    /// The required amount, exactly.
    pub amount: u64,
    /// `extra.memo`, when set.
    pub memo: Option<String>,
}

/// A refusal: the reason code and a human-readable detail.
pub type Refusal = (ErrorReason, String);

fn refuse(reason: ErrorReason, detail: impl Into<String>) -> Refusal {
    (reason, detail.into())
}

/// What a transaction that passed every static rule pays.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The transfer.
    pub transfer: TransferChecked,
    /// Whether it creates payTo's token account.
    pub creates_destination: bool,
}

/// One instruction, identified by program and discriminator.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    ComputeLimit(u32),
    ComputePrice(u64),
    OtherComputeBudget,
    Transfer(TransferChecked),
    Memo(Vec<u8>),
    Lighthouse,
    CreateAta,
    Unknown(Address),
}

/// Every account of `message`: static keys, then the lookup tables'
/// writable and then readonly addresses (`loaded`, as the runtime orders
/// them).
pub fn account_list(message: &VersionedMessage, loaded: &[Address]) -> Vec<Address> {
    let mut all = message.static_account_keys().to_vec();
    all.extend_from_slice(loaded);
    all
}

fn classify(ix: &CompiledInstruction, accounts: &[Address]) -> Result<Kind, Refusal> {
    let key = |i: u8| {
        accounts
            .get(usize::from(i))
            .copied()
            .ok_or_else(|| refuse(reasons::UNDECODABLE, "account index out of range"))
    };
    let program = key(ix.program_id_index)?;
    let data = ix.data.as_slice();
    Ok(if program == COMPUTE_BUDGET_PROGRAM {
        match data {
            [SET_COMPUTE_UNIT_LIMIT, a, b, c, d] => {
                Kind::ComputeLimit(u32::from_le_bytes([*a, *b, *c, *d]))
            }
            [SET_COMPUTE_UNIT_PRICE, rest @ ..] if rest.len() == 8 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(rest);
                Kind::ComputePrice(u64::from_le_bytes(bytes))
            }
            _ => Kind::OtherComputeBudget,
        }
    } else if tx::is_token_program(&program) && data.first() == Some(&tx::TRANSFER_CHECKED) {
        let (amount, decimals) = TransferChecked::parse_data(data)
            .ok_or_else(|| refuse(reasons::NO_TRANSFER, "malformed TransferChecked data"))?;
        let [source, mint, destination, authority] = ix.accounts[..] else {
            return Err(refuse(
                reasons::NO_TRANSFER,
                "TransferChecked needs exactly four accounts",
            ));
        };
        Kind::Transfer(TransferChecked {
            token_program: program,
            source: key(source)?,
            mint: key(mint)?,
            destination: key(destination)?,
            authority: key(authority)?,
            amount,
            decimals,
        })
    } else if program == MEMO_PROGRAM {
        Kind::Memo(data.to_vec())
    } else if program == LIGHTHOUSE_PROGRAM {
        Kind::Lighthouse
    } else if program == ATA_PROGRAM {
        Kind::CreateAta
    } else {
        Kind::Unknown(program)
    })
}

/// Runs every static rule; `ours` are the facilitator's signers on the
/// network, `loaded` the lookup tables' addresses (resolved by the caller).
pub fn check(
    transaction: &VersionedTransaction,
    loaded: &[Address],
    expected: &Expected,
    policy: &Policy,
    ours: &[Address],
) -> Result<Accepted, Refusal> {
    let message = &transaction.message;
    let accounts = account_list(message, loaded);
    check_signers(message, expected, ours)?;
    let kinds = message
        .instructions()
        .iter()
        .map(|ix| classify(ix, &accounts))
        .collect::<Result<Vec<_>, _>>()?;
    let creates_destination = check_instruction_set(&kinds, policy)?;
    check_fee_payer_isolation(message, &accounts, &kinds, expected, ours)?;
    check_compute_budget(&kinds, policy)?;
    let transfer = check_transfer(&kinds, expected, ours, &accounts)?;
    check_memo(&kinds, expected)?;
    check_client_signature(transaction, &transfer)?;
    Ok(Accepted {
        transfer,
        creates_destination,
    })
}

/// Exactly two required signers: the fee payer (ours, and the one the
/// requirements name) first, then the client, who is none of ours.
fn check_signers(
    message: &VersionedMessage,
    expected: &Expected,
    ours: &[Address],
) -> Result<(), Refusal> {
    let keys = message.static_account_keys();
    if !ours.contains(&expected.fee_payer) {
        return Err(refuse(
            reasons::FEE_PAYER_NOT_MANAGED,
            "extra.feePayer is not ours",
        ));
    }
    if keys.first() != Some(&expected.fee_payer) {
        return Err(refuse(
            reasons::FEE_PAYER_NOT_MANAGED,
            "the transaction's fee payer is not extra.feePayer",
        ));
    }
    if message.header().num_required_signatures != 2 {
        return Err(refuse(
            reasons::SIGNATURE,
            "exactly two signers are required: the fee payer and the client",
        ));
    }
    if keys.get(1).is_some_and(|client| ours.contains(client)) {
        return Err(refuse(
            reasons::FEE_PAYER_TRANSFERRING,
            "a facilitator signer signs as the client",
        ));
    }
    Ok(())
}

/// Only compute budget, one transfer, Memo, Lighthouse and (when allowed)
/// one ATA creation; at most [`MAX_INSTRUCTIONS`] (+1 for the creation).
/// Returns whether the ATA creation is present.
fn check_instruction_set(kinds: &[Kind], policy: &Policy) -> Result<bool, Refusal> {
    let creations = kinds.iter().filter(|k| **k == Kind::CreateAta).count();
    if creations > usize::from(policy.create_destination_ata) {
        return Err(refuse(
            reasons::CREATE_ATA,
            "creating token accounts is not accepted here",
        ));
    }
    if kinds.len() - creations > MAX_INSTRUCTIONS || kinds.is_empty() {
        return Err(refuse(
            reasons::INSTRUCTIONS_LENGTH,
            format!("{} instructions (at most {MAX_INSTRUCTIONS})", kinds.len()),
        ));
    }
    if let Some(Kind::Unknown(program)) = kinds.iter().find(|k| matches!(k, Kind::Unknown(_))) {
        return Err(refuse(
            reasons::UNKNOWN_INSTRUCTION,
            format!("program {program} is not allowed"),
        ));
    }
    Ok(creations == 1)
}

/// None of our signers is a program, or an account of any instruction,
/// except the fee payer as funder of the one allowed ATA creation, which
/// must then be exactly `CreateIdempotent(fee payer, ATA(payTo), payTo,
/// mint, system, token program)`.
fn check_fee_payer_isolation(
    message: &VersionedMessage,
    accounts: &[Address],
    kinds: &[Kind],
    expected: &Expected,
    ours: &[Address],
) -> Result<(), Refusal> {
    for (ix, kind) in message.instructions().iter().zip(kinds) {
        if *kind == Kind::CreateAta {
            check_ata_creation(ix, accounts, expected)?;
            continue;
        }
        let touched = std::iter::once(ix.program_id_index).chain(ix.accounts.iter().copied());
        for index in touched {
            if accounts
                .get(usize::from(index))
                .is_some_and(|a| ours.contains(a))
            {
                return Err(refuse(
                    reasons::FEE_PAYER_TRANSFERRING,
                    "a facilitator signer appears in an instruction",
                ));
            }
        }
    }
    Ok(())
}

fn check_ata_creation(
    ix: &CompiledInstruction,
    accounts: &[Address],
    expected: &Expected,
) -> Result<(), Refusal> {
    let wanted = [
        expected.fee_payer,
        tx::associated_token_address(&expected.pay_to, &expected.mint, &expected.token_program),
        expected.pay_to,
        expected.mint,
        SYSTEM_PROGRAM,
        expected.token_program,
    ];
    let given: Vec<Option<&Address>> = ix
        .accounts
        .iter()
        .map(|i| accounts.get(usize::from(*i)))
        .collect();
    let same = given.len() == wanted.len() && given.iter().zip(&wanted).all(|(g, w)| *g == Some(w));
    if !same || ix.data != [CREATE_IDEMPOTENT] {
        return Err(refuse(
            reasons::CREATE_ATA,
            "only CreateIdempotent of payTo's token account is accepted",
        ));
    }
    Ok(())
}

/// At most one limit (under the cap), at most one price (under the cap),
/// no other compute budget instruction.
fn check_compute_budget(kinds: &[Kind], policy: &Policy) -> Result<(), Refusal> {
    let limits: Vec<u32> = kinds
        .iter()
        .filter_map(|k| {
            if let Kind::ComputeLimit(u) = k {
                Some(*u)
            } else {
                None
            }
        })
        .collect();
    let prices: Vec<u64> = kinds
        .iter()
        .filter_map(|k| {
            if let Kind::ComputePrice(p) = k {
                Some(*p)
            } else {
                None
            }
        })
        .collect();
    if kinds.contains(&Kind::OtherComputeBudget) {
        return Err(refuse(
            reasons::COMPUTE_PRICE,
            "unsupported compute budget instruction",
        ));
    }
    if limits.len() > 1 || limits.iter().any(|u| *u > policy.max_compute_units) {
        return Err(refuse(
            reasons::COMPUTE_LIMIT,
            format!(
                "at most one compute unit limit, at most {}",
                policy.max_compute_units
            ),
        ));
    }
    if prices.len() > 1 {
        return Err(refuse(
            reasons::COMPUTE_PRICE,
            "more than one compute unit price",
        ));
    }
    if prices.iter().any(|p| *p > policy.max_compute_unit_price) {
        return Err(refuse(
            reasons::COMPUTE_PRICE_TOO_HIGH,
            format!(
                "compute unit price above {} micro-lamports",
                policy.max_compute_unit_price
            ),
        ));
    }
    Ok(())
}

/// Exactly one `TransferChecked`, under the mint's program, of the asset,
/// to payTo's token account, of exactly the amount, with the mint's
/// decimals, authorised by the client (none of ours), from a source that is
/// none of ours.
fn check_transfer(
    kinds: &[Kind],
    expected: &Expected,
    ours: &[Address],
    accounts: &[Address],
) -> Result<TransferChecked, Refusal> {
    let mut transfers = kinds.iter().filter_map(|k| match k {
        Kind::Transfer(t) => Some(*t),
        _ => None,
    });
    let (Some(transfer), None) = (transfers.next(), transfers.next()) else {
        return Err(refuse(
            reasons::NO_TRANSFER,
            "exactly one TransferChecked is required",
        ));
    };
    if transfer.mint != expected.mint || transfer.token_program != expected.token_program {
        return Err(refuse(
            reasons::MINT_MISMATCH,
            "the transfer is not of the asset",
        ));
    }
    let destination =
        tx::associated_token_address(&expected.pay_to, &expected.mint, &expected.token_program);
    if transfer.destination != destination {
        return Err(refuse(
            reasons::RECIPIENT_MISMATCH,
            "the transfer is not to payTo's token account",
        ));
    }
    if transfer.amount != expected.amount {
        return Err(refuse(
            reasons::AMOUNT_MISMATCH,
            format!(
                "the transfer moves {}, {} is required",
                transfer.amount, expected.amount
            ),
        ));
    }
    if transfer.decimals != expected.decimals {
        return Err(refuse(
            reasons::MINT_MISMATCH,
            "the transfer's decimals are not the mint's",
        ));
    }
    let our_accounts = ours.iter().flat_map(|signer| {
        [
            *signer,
            tx::associated_token_address(signer, &expected.mint, &expected.token_program),
        ]
    });
    if ours.contains(&transfer.authority) || our_accounts.into_iter().any(|a| a == transfer.source)
    {
        return Err(refuse(
            reasons::FEE_PAYER_TRANSFERRING,
            "the transfer spends a facilitator's funds",
        ));
    }
    if accounts.get(1) != Some(&transfer.authority) {
        return Err(refuse(
            reasons::SIGNATURE,
            "the transfer's authority is not the client signer",
        ));
    }
    Ok(transfer)
}

/// With `extra.memo`, exactly one Memo instruction, carrying it.
fn check_memo(kinds: &[Kind], expected: &Expected) -> Result<(), Refusal> {
    let Some(memo) = &expected.memo else {
        return Ok(());
    };
    let memos: Vec<&Vec<u8>> = kinds
        .iter()
        .filter_map(|k| if let Kind::Memo(d) = k { Some(d) } else { None })
        .collect();
    match memos.as_slice() {
        [only] if only.as_slice() == memo.as_bytes() => Ok(()),
        [_] => Err(refuse(reasons::MEMO_MISMATCH, "the memo is not extra.memo")),
        _ => Err(refuse(reasons::MEMO_COUNT, "exactly one memo is required")),
    }
}

/// The client's signature (the transfer's authority, signer #1) verifies
/// over the message.
fn check_client_signature(
    transaction: &VersionedTransaction,
    transfer: &TransferChecked,
) -> Result<(), Refusal> {
    let message = tx::message_bytes(&transaction.message);
    let valid = transaction
        .signatures
        .get(1)
        .is_some_and(|signature| verify_signature(&transfer.authority, &message, signature));
    if valid {
        Ok(())
    } else {
        Err(refuse(
            reasons::SIGNATURE,
            "the client's signature is invalid",
        ))
    }
}
