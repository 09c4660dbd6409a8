//! SPL Token / Token-2022 instructions and account layouts, built by hand.
//!
//! `spl-token-interface` refuses any program id but SPL Token's, and the Token-2022 interface
//! crate is not in this tree, so the few instructions the fixtures need are encoded here. Both
//! programs share the base instruction set byte for byte; Token-2022 extensions add their own
//! leading discriminator. Every layout below is little-endian.

use solana_address::Address;
use solana_instruction::{AccountMeta, Instruction};

/// SPL Token program id.
pub const TOKEN_PROGRAM_ID: Address = spl_token_interface::ID;
/// Token-2022 (Token Extensions) program id.
pub const TOKEN_2022_PROGRAM_ID: Address =
    solana_address::address!("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
/// Associated Token Account program id.
pub const ASSOCIATED_TOKEN_PROGRAM_ID: Address =
    spl_associated_token_account_interface::program::ID;
/// Memo program (v2) id.
pub const MEMO_PROGRAM_ID: Address =
    solana_address::address!("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
/// Compute Budget program id.
pub const COMPUTE_BUDGET_PROGRAM_ID: Address =
    solana_address::address!("ComputeBudget111111111111111111111111111111");

/// Length of a base mint (`Mint::LEN`).
pub const MINT_LEN: usize = 82;
/// Length of a base token account (`Account::LEN`); Token-2022 mints with extensions are padded
/// to it before their account-type byte.
pub const ACCOUNT_LEN: usize = 165;
/// Token-2022 extension type of `TransferFeeConfig` (TLV type).
pub const EXTENSION_TRANSFER_FEE_CONFIG: u16 = 1;
/// Token-2022 extension type of `TransferHook` (TLV type).
pub const EXTENSION_TRANSFER_HOOK: u16 = 14;
/// Length of the `TransferFeeConfig` extension value: two authorities (32 + 32), withheld amount
/// (8), older and newer `TransferFee` (epoch u64, maximum fee u64, basis points u16 = 18 each).
pub const TRANSFER_FEE_CONFIG_LEN: usize = 108;
/// Length of the `TransferHook` extension value: authority (32) + program id (32).
pub const TRANSFER_HOOK_LEN: usize = 64;

/// Which token program a mint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenProgram {
    /// SPL Token (`Tokenkeg…`).
    Token,
    /// Token-2022 (`TokenzQd…`).
    Token2022,
}

impl TokenProgram {
    /// The program id.
    pub fn id(self) -> Address {
        match self {
            Self::Token => TOKEN_PROGRAM_ID,
            Self::Token2022 => TOKEN_2022_PROGRAM_ID,
        }
    }

    /// The program owning `owner`, when it is one of the two token programs.
    pub fn from_owner(owner: &Address) -> Option<Self> {
        if *owner == TOKEN_PROGRAM_ID {
            Some(Self::Token)
        } else if *owner == TOKEN_2022_PROGRAM_ID {
            Some(Self::Token2022)
        } else {
            None
        }
    }
}

/// The associated token account of `owner` for `mint` under `program`.
pub fn associated_token_address(owner: &Address, mint: &Address, program: TokenProgram) -> Address {
    spl_associated_token_account_interface::address::get_associated_token_address_with_program_id(
        owner,
        mint,
        &program.id(),
    )
}

/// `CreateIdempotent` of the ATA program (data `[1]`): funder pays rent for `owner`'s ATA.
pub fn create_ata_idempotent(
    funder: &Address,
    owner: &Address,
    mint: &Address,
    program: TokenProgram,
) -> Instruction {
    spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent(
        funder,
        owner,
        mint,
        &program.id(),
    )
}

/// `InitializeMint2` (tag 20): `[20, decimals, mint_authority(32), freeze_option(1), freeze(32)?]`.
pub fn initialize_mint2(
    program: TokenProgram,
    mint: &Address,
    mint_authority: &Address,
    freeze_authority: Option<&Address>,
    decimals: u8,
) -> Instruction {
    let mut data = vec![20, decimals];
    data.extend_from_slice(mint_authority.as_ref());
    push_pubkey_option(&mut data, freeze_authority);
    Instruction::new_with_bytes(program.id(), &data, vec![AccountMeta::new(*mint, false)])
}

/// `MintToChecked` (tag 14): `[14, amount(u64), decimals]`; accounts mint (w), destination (w),
/// authority (signer).
pub fn mint_to_checked(
    program: TokenProgram,
    mint: &Address,
    destination: &Address,
    authority: &Address,
    amount: u64,
    decimals: u8,
) -> Instruction {
    let mut data = vec![14];
    data.extend_from_slice(&amount.to_le_bytes());
    data.push(decimals);
    Instruction::new_with_bytes(
        program.id(),
        &data,
        vec![
            AccountMeta::new(*mint, false),
            AccountMeta::new(*destination, false),
            AccountMeta::new_readonly(*authority, true),
        ],
    )
}

/// `TransferChecked` (tag 12): `[12, amount(u64), decimals]`; accounts source (w), mint,
/// destination (w), authority (signer).
pub fn transfer_checked(
    program: TokenProgram,
    source: &Address,
    mint: &Address,
    destination: &Address,
    authority: &Address,
    amount: u64,
    decimals: u8,
) -> Instruction {
    let mut data = vec![12];
    data.extend_from_slice(&amount.to_le_bytes());
    data.push(decimals);
    Instruction::new_with_bytes(
        program.id(),
        &data,
        vec![
            AccountMeta::new(*source, false),
            AccountMeta::new_readonly(*mint, false),
            AccountMeta::new(*destination, false),
            AccountMeta::new_readonly(*authority, true),
        ],
    )
}

/// Token-2022 `TransferFeeExtension::InitializeTransferFeeConfig` (tags 26, 0):
/// `[26, 0, config_authority_option(1), config_authority(32)?, withdraw_authority_option(1),
/// withdraw_authority(32)?, basis_points(u16), maximum_fee(u64)]`. Must precede `InitializeMint2`.
pub fn initialize_transfer_fee_config(
    mint: &Address,
    authority: &Address,
    basis_points: u16,
    maximum_fee: u64,
) -> Instruction {
    let mut data = vec![26, 0];
    push_pubkey_option(&mut data, Some(authority));
    push_pubkey_option(&mut data, Some(authority));
    data.extend_from_slice(&basis_points.to_le_bytes());
    data.extend_from_slice(&maximum_fee.to_le_bytes());
    Instruction::new_with_bytes(
        TOKEN_2022_PROGRAM_ID,
        &data,
        vec![AccountMeta::new(*mint, false)],
    )
}

/// Token-2022 `TransferHookExtension::Initialize` (tags 36, 0):
/// `[36, 0, authority(32, zeros = none), hook_program_id(32, zeros = none)]`. Must precede
/// `InitializeMint2`.
pub fn initialize_transfer_hook(
    mint: &Address,
    authority: &Address,
    hook_program: Option<&Address>,
) -> Instruction {
    let mut data = vec![36, 0];
    data.extend_from_slice(authority.as_ref());
    data.extend_from_slice(hook_program.map_or(&[0u8; 32], |p| p.as_array()));
    Instruction::new_with_bytes(
        TOKEN_2022_PROGRAM_ID,
        &data,
        vec![AccountMeta::new(*mint, false)],
    )
}

/// Account size of a Token-2022 mint carrying extensions whose value lengths are `values`:
/// base account length, one account-type byte, then a `type(u16) length(u16) value` entry each.
pub fn mint_len_with_extensions(values: &[usize]) -> usize {
    if values.is_empty() {
        return MINT_LEN;
    }
    ACCOUNT_LEN + 1 + values.iter().map(|len| 4 + len).sum::<usize>()
}

fn push_pubkey_option(data: &mut Vec<u8>, key: Option<&Address>) {
    match key {
        Some(key) => {
            data.push(1);
            data.extend_from_slice(key.as_ref());
        }
        None => data.push(0),
    }
}

/// The fields of a token account's base layout: mint (0..32), owner (32..64), amount (64..72),
/// …, state (108).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenAccountView {
    /// The mint.
    pub mint: Address,
    /// The owner (wallet).
    pub owner: Address,
    /// Balance in base units.
    pub amount: u64,
    /// Raw account state (1 initialized, 2 frozen).
    pub state: u8,
}

impl TokenAccountView {
    /// Reads the base layout; `None` when the data is too short or uninitialized.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() < ACCOUNT_LEN {
            return None;
        }
        let state = data[108];
        if state == 0 {
            return None;
        }
        Some(Self {
            mint: Address::new_from_array(data[0..32].try_into().ok()?),
            owner: Address::new_from_array(data[32..64].try_into().ok()?),
            amount: u64::from_le_bytes(data[64..72].try_into().ok()?),
            state,
        })
    }
}

/// The fields of a mint's base layout: mint authority option (0..36), supply (36..44),
/// decimals (44), initialized (45), freeze authority option (46..82).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MintView {
    /// Mint authority, if any.
    pub mint_authority: Option<Address>,
    /// Total supply in base units.
    pub supply: u64,
    /// Decimals.
    pub decimals: u8,
    /// Freeze authority, if any.
    pub freeze_authority: Option<Address>,
}

impl MintView {
    /// Reads the base layout; `None` when the data is too short or not initialized.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() < MINT_LEN || data[45] != 1 {
            return None;
        }
        // A token account (165+ bytes with account type 2) is not a mint.
        if data.len() > ACCOUNT_LEN && data[ACCOUNT_LEN] != 1 {
            return None;
        }
        let coption = |tag: &[u8], key: &[u8]| -> Option<Address> {
            (tag == [1, 0, 0, 0])
                .then(|| Address::new_from_array(key.try_into().unwrap_or([0; 32])))
        };
        Some(Self {
            mint_authority: coption(&data[0..4], &data[4..36]),
            supply: u64::from_le_bytes(data[36..44].try_into().ok()?),
            decimals: data[44],
            freeze_authority: coption(&data[46..50], &data[50..82]),
        })
    }
}

/// Compute Budget `SetComputeUnitLimit` (`[2, units(u32)]`).
pub fn set_compute_unit_limit(units: u32) -> Instruction {
    let mut data = vec![2];
    data.extend_from_slice(&units.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM_ID, &data, vec![])
}

/// Compute Budget `SetComputeUnitPrice` (`[3, micro_lamports(u64)]`).
pub fn set_compute_unit_price(micro_lamports: u64) -> Instruction {
    let mut data = vec![3];
    data.extend_from_slice(&micro_lamports.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM_ID, &data, vec![])
}

/// A Memo (v2) instruction with no signer accounts.
pub fn memo(text: &str) -> Instruction {
    Instruction::new_with_bytes(MEMO_PROGRAM_ID, text.as_bytes(), vec![])
}
