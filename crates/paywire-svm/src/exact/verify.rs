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
    /// Highest priority fee (limit × price), in lamports: what one payment
    /// can cost the sponsor beyond the base fee.
    pub max_priority_fee_lamports: u64,
    /// Whether one `CreateIdempotent` of payTo's token account, funded by
    /// the fee payer, is accepted.
    pub create_destination_ata: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_compute_units: 400_000,
            max_compute_unit_price: 5_000_000,
            // 0.00005 SOL; the official client asks for 20 000 units at 1
            // micro-lamport (0.02 lamports).
            max_priority_fee_lamports: 50_000,
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

impl Expected {
    /// What a payment of `amount` of `mint` (under `token_program`, with
    /// `decimals`) to `pay_to`, sponsored by `fee_payer`, must hold; no memo
    /// is required until [`Expected::with_memo`].
    pub fn new(
        fee_payer: Address,
        mint: Address,
        token_program: Address,
        decimals: u8,
        pay_to: Address,
        amount: u64,
    ) -> Self {
        Self {
            fee_payer,
            mint,
            token_program,
            decimals,
            pay_to,
            amount,
            memo: None,
        }
    }

    /// Requires `memo` (the requirements' `extra.memo`).
    #[must_use]
    pub fn with_memo(mut self, memo: impl Into<String>) -> Self {
        self.memo = Some(memo.into());
        self
    }
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
    let accepted = check_after_precheck(transaction, loaded, expected, policy, ours)?;
    check_client_signature(transaction, &accepted.transfer)?;
    Ok(accepted)
}

/// [`check`] without the client's signature, for a transaction that passed
/// [`precheck`] (which verified it: the transfer's authority is signer #1),
/// so the facilitator runs one ed25519 verification, not two.
pub(crate) fn check_after_precheck(
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
    Ok(Accepted {
        transfer,
        creates_destination,
    })
}

/// The checks that need no chain access and no mint facts, run before any
/// node is asked anything (lookup tables, mint, simulation): the signers are
/// the fee payer (ours, `fee_payer`) and one client whose signature over the
/// message verifies. A stranger's transaction costs no RPC call.
pub fn precheck(
    transaction: &VersionedTransaction,
    fee_payer: &Address,
    ours: &[Address],
) -> Result<(), Refusal> {
    let message = &transaction.message;
    check_signer_set(message, fee_payer, ours)?;
    let client = message.static_account_keys().get(1);
    let signed = client
        .zip(transaction.signatures.get(1))
        .is_some_and(|(client, signature)| {
            verify_signature(client, &tx::message_bytes(message), signature)
        });
    if signed {
        Ok(())
    } else {
        Err(refuse(
            reasons::SIGNATURE,
            "the client's signature is invalid",
        ))
    }
}

/// Exactly two required signers: the fee payer (ours, and the one the
/// requirements name) first, then the client, who is none of ours.
fn check_signers(
    message: &VersionedMessage,
    expected: &Expected,
    ours: &[Address],
) -> Result<(), Refusal> {
    check_signer_set(message, &expected.fee_payer, ours)
}

fn check_signer_set(
    message: &VersionedMessage,
    fee_payer: &Address,
    ours: &[Address],
) -> Result<(), Refusal> {
    let keys = message.static_account_keys();
    if !ours.contains(fee_payer) {
        return Err(refuse(
            reasons::FEE_PAYER_NOT_MANAGED,
            "extra.feePayer is not ours",
        ));
    }
    if keys.first() != Some(fee_payer) {
        return Err(refuse(
            reasons::FEE_PAYER_MISMATCH,
            "the transaction's fee payer is not extra.feePayer",
        ));
    }
    match message.header().num_required_signatures {
        2 => {}
        0 | 1 => {
            return Err(refuse(
                reasons::SIGNATURE,
                "the client does not sign: two signers are required",
            ));
        }
        _ => {
            return Err(refuse(
                reasons::EXCESSIVE_SIGNERS,
                "exactly two signers are required: the fee payer and the client",
            ));
        }
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

/// Exactly one compute unit limit and one compute unit price (without a
/// limit the runtime grants up to 1.4 M units, three times a 400 k cap), each
/// under its cap, and their product, the priority fee the sponsor pays,
/// under the fee cap; no other compute budget instruction.
fn check_compute_budget(kinds: &[Kind], policy: &Policy) -> Result<(), Refusal> {
    if kinds.contains(&Kind::OtherComputeBudget) {
        return Err(refuse(
            reasons::COMPUTE_LIMIT,
            "unsupported compute budget instruction",
        ));
    }
    let Some(limit) = only(kinds, |k| match k {
        Kind::ComputeLimit(units) => Some(*units),
        _ => None,
    }) else {
        return Err(refuse(
            reasons::COMPUTE_LIMIT,
            "exactly one compute unit limit is required",
        ));
    };
    if limit > policy.max_compute_units {
        return Err(refuse(
            reasons::COMPUTE_LIMIT_TOO_HIGH,
            format!("compute unit limit above {}", policy.max_compute_units),
        ));
    }
    let Some(price) = only(kinds, |k| match k {
        Kind::ComputePrice(price) => Some(*price),
        _ => None,
    }) else {
        return Err(refuse(
            reasons::COMPUTE_PRICE,
            "exactly one compute unit price is required",
        ));
    };
    let fee = u128::from(limit) * u128::from(price);
    if price > policy.max_compute_unit_price
        || fee > u128::from(policy.max_priority_fee_lamports) * 1_000_000
    {
        return Err(refuse(
            reasons::COMPUTE_PRICE_TOO_HIGH,
            format!(
                "compute unit price above {} micro-lamports, or a priority fee above {} lamports",
                policy.max_compute_unit_price, policy.max_priority_fee_lamports
            ),
        ));
    }
    Ok(())
}

/// The one value `pick` finds among `kinds`; `None` for none or several.
fn only<T>(kinds: &[Kind], pick: impl Fn(&Kind) -> Option<T>) -> Option<T> {
    let mut found = kinds.iter().filter_map(pick);
    let first = found.next()?;
    found.next().is_none().then_some(first)
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

#[cfg(test)]
mod tests {
    use solana_hash::Hash;
    use solana_instruction::{AccountMeta, Instruction};
    use solana_message::v0::{self, MessageAddressTableLookup};
    use solana_signature::Signature;

    use super::*;
    use crate::exact::client::{PaymentPlan, build_payment};
    use crate::keys::SvmKeypair;
    use crate::tx::{TOKEN_2022_PROGRAM, TOKEN_PROGRAM, decode_transaction, encode_transaction};

    struct Fixture {
        payer: SvmKeypair,
        fee_payer: SvmKeypair,
        plan: PaymentPlan,
        expected: Expected,
        policy: Policy,
    }

    fn fixture() -> Fixture {
        let payer = SvmKeypair::from_seed(&[1; 32]);
        let fee_payer = SvmKeypair::from_seed(&[2; 32]);
        let plan = PaymentPlan {
            fee_payer: fee_payer.address(),
            mint: Address::new_from_array([6; 32]),
            token_program: TOKEN_PROGRAM,
            decimals: 6,
            pay_to: Address::new_from_array([5; 32]),
            amount: 10_000,
            memo: "00112233445566778899aabbccddeeff".into(),
            compute_units: 20_000,
            compute_unit_price: 1,
            blockhash: Hash::new_from_array([9; 32]),
        };
        let expected = Expected::new(
            plan.fee_payer,
            plan.mint,
            plan.token_program,
            plan.decimals,
            plan.pay_to,
            plan.amount,
        );
        Fixture {
            payer,
            fee_payer,
            plan,
            expected,
            policy: Policy::default(),
        }
    }

    impl Fixture {
        fn ours(&self) -> Vec<Address> {
            vec![self.fee_payer.address()]
        }

        fn check_plan(&self, plan: &PaymentPlan) -> Result<Accepted, Refusal> {
            let transaction = build_payment(plan, &self.payer).unwrap();
            check(
                &transaction,
                &[],
                &self.expected,
                &self.policy,
                &self.ours(),
            )
        }

        fn transfer(&self) -> TransferChecked {
            TransferChecked {
                token_program: self.plan.token_program,
                source: tx::associated_token_address(
                    &self.payer.address(),
                    &self.plan.mint,
                    &TOKEN_PROGRAM,
                ),
                mint: self.plan.mint,
                destination: tx::associated_token_address(
                    &self.plan.pay_to,
                    &self.plan.mint,
                    &TOKEN_PROGRAM,
                ),
                authority: self.payer.address(),
                amount: self.plan.amount,
                decimals: 6,
            }
        }

        /// The standard instructions with `extra` appended.
        fn standard_with(&self, extra: Vec<Instruction>) -> Vec<Instruction> {
            let mut instructions = vec![
                tx::set_compute_unit_limit(20_000),
                tx::set_compute_unit_price(1),
                self.transfer().instruction(),
            ];
            instructions.extend(extra);
            instructions
        }

        /// A v0 transaction of `instructions`, signed by the payer and `others`.
        fn signed(
            &self,
            instructions: &[Instruction],
            others: &[&SvmKeypair],
        ) -> VersionedTransaction {
            let message = v0::Message::try_compile(
                &self.fee_payer.address(),
                instructions,
                &[],
                self.plan.blockhash,
            )
            .unwrap();
            sign_all(VersionedMessage::V0(message), &self.payer, others)
        }

        fn check_instructions(&self, instructions: &[Instruction]) -> Result<Accepted, Refusal> {
            let transaction = self.signed(instructions, &[]);
            check(
                &transaction,
                &[],
                &self.expected,
                &self.policy,
                &self.ours(),
            )
        }
    }

    /// Signs every required signer slot but the fee payer's (#0).
    fn sign_all(
        message: VersionedMessage,
        payer: &SvmKeypair,
        others: &[&SvmKeypair],
    ) -> VersionedTransaction {
        let bytes = tx::message_bytes(&message);
        let keys = message.static_account_keys();
        let signers = usize::from(message.header().num_required_signatures);
        let signatures = (0..signers)
            .map(|i| {
                std::iter::once(payer)
                    .chain(others.iter().copied())
                    .find(|k| k.address() == keys[i])
                    .map_or_else(Signature::default, |k| k.sign(&bytes))
            })
            .collect();
        VersionedTransaction {
            signatures,
            message,
        }
    }

    fn reason(outcome: Result<Accepted, Refusal>) -> ErrorReason {
        outcome.err().map(|(reason, _)| reason).expect("refused")
    }

    #[test]
    fn the_clients_transaction_passes_and_round_trips() {
        let f = fixture();
        let transaction = build_payment(&f.plan, &f.payer).unwrap();
        let decoded = decode_transaction(&encode_transaction(&transaction)).unwrap();
        assert_eq!(decoded, transaction);
        let accepted = check(&decoded, &[], &f.expected, &f.policy, &f.ours()).unwrap();
        assert_eq!(accepted.transfer.authority, f.payer.address());
        assert!(!accepted.creates_destination);
        let mut bytes = tx::transaction_bytes(&transaction);
        bytes.push(0);
        let padded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        assert!(
            decode_transaction(&padded).is_err(),
            "trailing bytes are refused"
        );
    }

    #[test]
    fn amount_off_by_one_either_way_is_refused() {
        let f = fixture();
        for amount in [9_999, 10_001] {
            let plan = PaymentPlan {
                amount,
                ..f.plan.clone()
            };
            assert_eq!(reason(f.check_plan(&plan)), reasons::AMOUNT_MISMATCH);
        }
    }

    #[test]
    fn wrong_mint_program_or_decimals_is_refused() {
        let f = fixture();
        let plan = PaymentPlan {
            mint: Address::new_from_array([7; 32]),
            ..f.plan.clone()
        };
        assert_eq!(reason(f.check_plan(&plan)), reasons::MINT_MISMATCH);
        let plan = PaymentPlan {
            token_program: TOKEN_2022_PROGRAM,
            ..f.plan.clone()
        };
        assert_eq!(reason(f.check_plan(&plan)), reasons::MINT_MISMATCH);
        let plan = PaymentPlan {
            decimals: 9,
            ..f.plan.clone()
        };
        assert_eq!(reason(f.check_plan(&plan)), reasons::MINT_MISMATCH);
    }

    #[test]
    fn wrong_destination_is_refused() {
        let f = fixture();
        let plan = PaymentPlan {
            pay_to: Address::new_from_array([8; 32]),
            ..f.plan.clone()
        };
        assert_eq!(reason(f.check_plan(&plan)), reasons::RECIPIENT_MISMATCH);
    }

    #[test]
    fn compute_budget_over_the_caps_or_repeated_is_refused() {
        let f = fixture();
        let plan = PaymentPlan {
            compute_unit_price: 5_000_001,
            ..f.plan.clone()
        };
        assert_eq!(reason(f.check_plan(&plan)), reasons::COMPUTE_PRICE_TOO_HIGH);
        let plan = PaymentPlan {
            compute_units: 400_001,
            ..f.plan.clone()
        };
        assert_eq!(reason(f.check_plan(&plan)), reasons::COMPUTE_LIMIT_TOO_HIGH);
        let twice = f.standard_with(vec![tx::set_compute_unit_price(1)]);
        assert_eq!(reason(f.check_instructions(&twice)), reasons::COMPUTE_PRICE);
        let twice = f.standard_with(vec![tx::set_compute_unit_limit(1)]);
        assert_eq!(reason(f.check_instructions(&twice)), reasons::COMPUTE_LIMIT);
        let heap =
            Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM, &[1, 0, 0, 1, 0], Vec::new());
        assert_eq!(
            reason(f.check_instructions(&f.standard_with(vec![heap]))),
            reasons::COMPUTE_LIMIT
        );
    }

    /// Without a limit instruction the runtime grants up to 1.4 M units, so
    /// the cap on units (and the fee) would not hold.
    #[test]
    fn a_missing_compute_limit_or_price_is_refused() {
        let f = fixture();
        let mut no_limit = f.standard_with(vec![tx::memo("x")]);
        no_limit.remove(0);
        assert_eq!(
            reason(f.check_instructions(&no_limit)),
            reasons::COMPUTE_LIMIT
        );
        let mut no_price = f.standard_with(vec![tx::memo("x")]);
        no_price.remove(1);
        assert_eq!(
            reason(f.check_instructions(&no_price)),
            reasons::COMPUTE_PRICE
        );
    }

    /// Each cap alone allows 400 000 units at 5 lamports: 2 000 000
    /// lamports of priority fee for one payment. Their product is capped.
    #[test]
    fn a_priority_fee_over_the_cap_is_refused_though_each_factor_is_under_its_own() {
        let f = fixture();
        let plan = PaymentPlan {
            compute_units: 400_000,
            compute_unit_price: 5_000_000,
            ..f.plan.clone()
        };
        assert_eq!(reason(f.check_plan(&plan)), reasons::COMPUTE_PRICE_TOO_HIGH);
        let at_the_cap = PaymentPlan {
            compute_units: 50_000,
            compute_unit_price: 1_000_000,
            ..f.plan.clone()
        };
        assert!(f.check_plan(&at_the_cap).is_ok(), "50 000 lamports exactly");
    }

    #[test]
    fn no_transfer_or_two_transfers_are_refused() {
        let f = fixture();
        // The payer still signs (a memo), so only the missing transfer is wrong.
        let signed_memo = Instruction::new_with_bytes(
            MEMO_PROGRAM,
            b"x",
            vec![AccountMeta::new_readonly(f.payer.address(), true)],
        );
        let mut none = f.standard_with(vec![signed_memo]);
        none.remove(2);
        assert_eq!(reason(f.check_instructions(&none)), reasons::NO_TRANSFER);
        let two = f.standard_with(vec![f.transfer().instruction(), tx::memo("x")]);
        assert_eq!(reason(f.check_instructions(&two)), reasons::NO_TRANSFER);
    }

    /// A durable nonce (System `AdvanceNonceAccount` first) would make the
    /// transaction valid forever; the System program is not allowed at all.
    #[test]
    fn a_durable_nonce_instruction_is_refused() {
        let f = fixture();
        let nonce_account = Address::new_from_array([6; 32]);
        let advance = Instruction::new_with_bytes(
            SYSTEM_PROGRAM,
            &[4, 0, 0, 0],
            vec![
                AccountMeta::new(nonce_account, false),
                AccountMeta::new_readonly(Address::new_from_array([7; 32]), false),
                AccountMeta::new_readonly(f.payer.address(), true),
            ],
        );
        let mut instructions = vec![advance];
        instructions.extend(f.standard_with(vec![tx::memo("x")]));
        assert_eq!(
            reason(f.check_instructions(&instructions)),
            reasons::UNKNOWN_INSTRUCTION
        );
    }

    /// The transfer's source may be no token account of ours, even with the
    /// client as its authority (a delegate).
    #[test]
    fn a_transfer_from_our_token_account_is_refused() {
        let f = fixture();
        let mut transfer = f.transfer();
        transfer.source =
            tx::associated_token_address(&f.fee_payer.address(), &f.plan.mint, &TOKEN_PROGRAM);
        let mut instructions = f.standard_with(vec![tx::memo("x")]);
        instructions[2] = transfer.instruction();
        assert_eq!(
            reason(f.check_instructions(&instructions)),
            reasons::FEE_PAYER_TRANSFERRING
        );
    }

    /// The authority must be the client signer (#1), not another account
    /// that signs nothing.
    #[test]
    fn an_authority_other_than_the_client_signer_is_refused() {
        let f = fixture();
        let mut transfer = f.transfer();
        transfer.authority = Address::new_from_array([8; 32]);
        let mut instructions = f.standard_with(vec![
            // The payer signs something, so the transaction has two signers.
            Instruction::new_with_bytes(
                MEMO_PROGRAM,
                b"x",
                vec![AccountMeta::new_readonly(f.payer.address(), true)],
            ),
        ]);
        let mut unsigned = transfer.instruction();
        unsigned.accounts[3].is_signer = false;
        instructions[2] = unsigned;
        assert_eq!(
            reason(f.check_instructions(&instructions)),
            reasons::SIGNATURE
        );
    }

    /// The fee payer invoked as a program is refused like any other use.
    #[test]
    fn the_fee_payer_as_a_program_is_refused() {
        let f = fixture();
        let call = Instruction::new_with_bytes(f.fee_payer.address(), b"drain", Vec::new());
        let outcome = f.check_instructions(&f.standard_with(vec![call]));
        assert!(
            [
                reasons::FEE_PAYER_TRANSFERRING,
                reasons::UNKNOWN_INSTRUCTION
            ]
            .contains(&reason(outcome.clone())),
            "{outcome:?}"
        );
        assert!(outcome.is_err());
    }

    #[test]
    fn an_extra_instruction_of_another_program_is_refused() {
        let f = fixture();
        let system_transfer = Instruction::new_with_bytes(
            SYSTEM_PROGRAM,
            &[2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            vec![
                AccountMeta::new(f.payer.address(), true),
                AccountMeta::new(Address::new_from_array([4; 32]), false),
            ],
        );
        let outcome = f.check_instructions(&f.standard_with(vec![system_transfer]));
        assert_eq!(reason(outcome), reasons::UNKNOWN_INSTRUCTION);
        let many = f.standard_with((0..5).map(|i| tx::memo(&i.to_string())).collect());
        assert_eq!(
            reason(f.check_instructions(&many)),
            reasons::INSTRUCTIONS_LENGTH
        );
        let lighthouse = Instruction::new_with_bytes(LIGHTHOUSE_PROGRAM, &[0], Vec::new());
        assert!(
            f.check_instructions(&f.standard_with(vec![lighthouse]))
                .is_ok()
        );
    }

    /// Field lesson 17: the fee payer in any instruction's accounts, as
    /// the authority or as a program is refused.
    #[test]
    fn the_fee_payer_in_any_account_list_is_refused() {
        let f = fixture();
        let memo_with_fee_payer = Instruction::new_with_bytes(
            MEMO_PROGRAM,
            b"hi",
            vec![AccountMeta::new_readonly(f.fee_payer.address(), true)],
        );
        let outcome = f.check_instructions(&f.standard_with(vec![memo_with_fee_payer]));
        assert_eq!(reason(outcome), reasons::FEE_PAYER_TRANSFERRING);
        let mut transfer = f.transfer();
        transfer.authority = f.fee_payer.address();
        transfer.source =
            tx::associated_token_address(&f.fee_payer.address(), &f.plan.mint, &TOKEN_PROGRAM);
        let instructions = vec![
            tx::set_compute_unit_limit(20_000),
            transfer.instruction(),
            tx::memo("x"),
        ];
        let transaction = f.signed(&instructions, &[]);
        let outcome = check(&transaction, &[], &f.expected, &f.policy, &f.ours());
        assert!(outcome.is_err(), "the fee payer as the only signer");
        // Isolation alone (signers, compute budget and transfer all fine): a
        // Lighthouse instruction naming the fee payer as a writable account.
        let lighthouse = Instruction::new_with_bytes(
            LIGHTHOUSE_PROGRAM,
            &[0],
            vec![AccountMeta::new(f.fee_payer.address(), false)],
        );
        let outcome = f.check_instructions(&f.standard_with(vec![lighthouse]));
        assert_eq!(reason(outcome), reasons::FEE_PAYER_TRANSFERRING);
    }

    #[test]
    fn the_fee_payer_as_transfer_authority_is_refused() {
        let f = fixture();
        let mut transfer = f.transfer();
        transfer.authority = f.fee_payer.address();
        let mut instructions = f.standard_with(vec![tx::memo("x")]);
        instructions[2] = transfer.instruction();
        // The payer still signs: make it a required signer with a memo.
        instructions.push(Instruction::new_with_bytes(
            MEMO_PROGRAM,
            b"y",
            vec![AccountMeta::new_readonly(f.payer.address(), true)],
        ));
        let outcome = f.check_instructions(&instructions);
        assert_eq!(reason(outcome), reasons::FEE_PAYER_TRANSFERRING);
    }

    /// An address lookup table that loads the fee payer into an
    /// instruction is caught once the table is resolved.
    #[test]
    fn the_fee_payer_hidden_behind_a_lookup_table_is_refused() {
        let f = fixture();
        let mut transaction = build_payment(&f.plan, &f.payer).unwrap();
        let VersionedMessage::V0(message) = &mut transaction.message else {
            unreachable!("the client builds v0");
        };
        let loaded_index = u8::try_from(message.account_keys.len()).unwrap();
        message
            .address_table_lookups
            .push(MessageAddressTableLookup {
                account_key: Address::new_from_array([3; 32]),
                writable_indexes: vec![0],
                readonly_indexes: vec![],
            });
        let memo_index = message
            .account_keys
            .iter()
            .position(|k| *k == MEMO_PROGRAM)
            .unwrap();
        message.instructions.push(CompiledInstruction {
            program_id_index: u8::try_from(memo_index).unwrap(),
            accounts: vec![loaded_index],
            data: b"z".to_vec(),
        });
        let transaction = sign_all(transaction.message, &f.payer, &[]);
        let outcome = check(
            &transaction,
            &[f.fee_payer.address()],
            &f.expected,
            &f.policy,
            &f.ours(),
        );
        assert_eq!(reason(outcome), reasons::FEE_PAYER_TRANSFERRING);
    }

    #[test]
    fn a_third_required_signer_is_refused() {
        let f = fixture();
        let third = SvmKeypair::from_seed(&[3; 32]);
        let memo = Instruction::new_with_bytes(
            MEMO_PROGRAM,
            b"x",
            vec![AccountMeta::new_readonly(third.address(), true)],
        );
        let transaction = f.signed(&f.standard_with(vec![memo]), &[&third]);
        let outcome = check(&transaction, &[], &f.expected, &f.policy, &f.ours());
        assert_eq!(reason(outcome), reasons::EXCESSIVE_SIGNERS);
    }

    #[test]
    fn a_bad_client_signature_is_refused() {
        let f = fixture();
        let mut transaction = build_payment(&f.plan, &f.payer).unwrap();
        transaction.signatures[1] = SvmKeypair::from_seed(&[4; 32]).sign(b"other");
        let outcome = check(&transaction, &[], &f.expected, &f.policy, &f.ours());
        assert_eq!(reason(outcome), reasons::SIGNATURE);
    }

    #[test]
    fn a_fee_payer_that_is_not_ours_is_refused() {
        let f = fixture();
        let transaction = build_payment(&f.plan, &f.payer).unwrap();
        let others = [Address::new_from_array([4; 32])];
        let outcome = check(&transaction, &[], &f.expected, &f.policy, &others);
        assert_eq!(reason(outcome), reasons::FEE_PAYER_NOT_MANAGED);
        let mut expected = f.expected.clone();
        expected.fee_payer = others[0];
        let outcome = check(&transaction, &[], &expected, &f.policy, &others);
        assert_eq!(reason(outcome), reasons::FEE_PAYER_MISMATCH);
    }

    #[test]
    fn the_sellers_memo_is_enforced() {
        let mut f = fixture();
        f.expected = f.expected.clone().with_memo("invoice-42");
        assert_eq!(reason(f.check_plan(&f.plan)), reasons::MEMO_MISMATCH);
        let plan = PaymentPlan {
            memo: "invoice-42".into(),
            ..f.plan.clone()
        };
        assert!(f.check_plan(&plan).is_ok());
        let two = f.standard_with(vec![tx::memo("invoice-42"), tx::memo("invoice-42")]);
        assert_eq!(reason(f.check_instructions(&two)), reasons::MEMO_COUNT);
        let none = f.standard_with(vec![]);
        assert_eq!(reason(f.check_instructions(&none)), reasons::MEMO_COUNT);
    }

    #[test]
    fn creating_the_destination_account_only_when_configured_and_exact() {
        let mut f = fixture();
        let create = tx::create_ata_idempotent(
            &f.fee_payer.address(),
            &f.plan.pay_to,
            &f.plan.mint,
            &TOKEN_PROGRAM,
        );
        let with_create = f.standard_with(vec![create, tx::memo("x")]);
        assert_eq!(
            reason(f.check_instructions(&with_create)),
            reasons::CREATE_ATA
        );
        f.policy.create_destination_ata = true;
        assert!(
            f.check_instructions(&with_create)
                .unwrap()
                .creates_destination
        );
        let other_owner = tx::create_ata_idempotent(
            &f.fee_payer.address(),
            &Address::new_from_array([8; 32]),
            &f.plan.mint,
            &TOKEN_PROGRAM,
        );
        let wrong = f.standard_with(vec![other_owner, tx::memo("x")]);
        assert_eq!(reason(f.check_instructions(&wrong)), reasons::CREATE_ATA);
    }
}
