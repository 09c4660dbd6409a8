//! [`SolanaTestChain`]: litesvm behind a mutex, with payment fixtures and the bookkeeping a
//! JSON-RPC node keeps (slots, processed signatures, held sends).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use litesvm::LiteSVM;
use litesvm::types::TransactionMetadata;
use solana_account::Account;
use solana_address::Address;
use solana_address_lookup_table_interface::state::{AddressLookupTable, LookupTableMeta};
use solana_clock::Clock;
use solana_hash::Hash;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_message::inner_instruction::InnerInstructionsList;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction_error::TransactionError;

use crate::token::{self, MintView, TokenAccountView, TokenProgram};

/// Blocks a blockhash stays valid for after the block that produced it (Solana's
/// `MAX_PROCESSING_AGE`).
pub const BLOCKHASH_VALIDITY_SLOTS: u64 = 150;
/// Confirmations after which a status reads `finalized` (Solana's `MAX_LOCKOUT_HISTORY`).
pub const FINALITY_CONFIRMATIONS: u64 = 32;

/// Genesis hash of Solana mainnet-beta (CAIP-2 `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp`).
pub const MAINNET_GENESIS_HASH: &str = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d";
/// Genesis hash of Solana devnet (CAIP-2 `solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1`).
pub const DEVNET_GENESIS_HASH: &str = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG";
/// Genesis hash of Solana testnet (CAIP-2 `solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z`).
pub const TESTNET_GENESIS_HASH: &str = "4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z";

/// A token balance of one account of a transaction (for `getTransaction`'s meta).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBalance {
    /// Index of the account in the transaction's full account list.
    pub account_index: usize,
    /// The mint.
    pub mint: Address,
    /// The token account's owner.
    pub owner: Address,
    /// The owning token program.
    pub program: Address,
    /// Balance in base units.
    pub amount: u64,
    /// The mint's decimals.
    pub decimals: u8,
}

/// What the chain remembers about a transaction it executed (landed in a block).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProcessedTransaction {
    /// The slot it landed in.
    pub slot: u64,
    /// `None` when it succeeded; the runtime error otherwise (fees were still charged).
    pub err: Option<TransactionError>,
    /// The transaction as sent.
    pub transaction: VersionedTransaction,
    /// Static keys followed by the writable then read-only addresses loaded from lookup tables.
    pub account_keys: Vec<Address>,
    /// How many of `account_keys` came from lookup tables: (writable, read-only).
    pub loaded: (usize, usize),
    /// Fee charged, in lamports.
    pub fee: u64,
    /// Program logs.
    pub logs: Vec<String>,
    /// Compute units consumed.
    pub units_consumed: u64,
    /// Inner instructions per top-level instruction.
    pub inner_instructions: InnerInstructionsList,
    /// Lamports of `account_keys` before and after.
    pub balances: (Vec<u64>, Vec<u64>),
    /// Token balances of `account_keys` before and after.
    pub token_balances: (Vec<TokenBalance>, Vec<TokenBalance>),
}

/// Options of a simulation (`simulateTransaction`'s config).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SimulateOptions {
    /// Verify the signatures (`sigVerify`).
    pub sig_verify: bool,
    /// Replace the message's blockhash with the latest one (`replaceRecentBlockhash`).
    pub replace_recent_blockhash: bool,
    /// Accounts whose post-simulation state is returned.
    pub accounts: Vec<Address>,
}

impl SimulateOptions {
    /// Options with signature verification on or off.
    pub fn new(sig_verify: bool) -> Self {
        Self {
            sig_verify,
            ..Self::default()
        }
    }
}

/// The outcome of a simulation (`simulateTransaction`'s value).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Simulation {
    /// `None` on success.
    pub err: Option<TransactionError>,
    /// Program logs.
    pub logs: Vec<String>,
    /// Compute units consumed.
    pub units_consumed: u64,
    /// Return data of the last instruction that set any: (program, data).
    pub return_data: Option<(Address, Vec<u8>)>,
    /// Inner instructions per top-level instruction.
    pub inner_instructions: InnerInstructionsList,
    /// Post-simulation state of the requested accounts (`None`: absent).
    pub accounts: Vec<Option<Account>>,
    /// The blockhash simulated with and its last valid block height, when replaced.
    pub replacement_blockhash: Option<(Hash, u64)>,
    /// Fee the transaction would pay.
    pub fee: u64,
}

/// Why `sendTransaction` refused a transaction.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The preflight simulation failed (JSON-RPC `-32002`).
    #[error("Transaction simulation failed: {}", .0.err.as_ref().map_or_else(String::new, ToString::to_string))]
    Preflight(Box<Simulation>),
}

/// Counts of `sendTransaction` calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendCounts {
    /// Transactions accepted by `send` (including held and preflight-refused ones).
    pub received: u64,
    /// Transactions that landed (executed in a slot, successfully or not).
    pub executed: u64,
}

/// A Solana status for one signature (`getSignatureStatuses`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureStatus {
    /// Slot the transaction landed in.
    pub slot: u64,
    /// Slots since then; `None` once finalized.
    pub confirmations: Option<u64>,
    /// The runtime error, if it failed.
    pub err: Option<TransactionError>,
}

/// The real Solana runtime (litesvm) plus the node-side state a JSON-RPC server needs.
///
/// `Send + Sync`; share it with `Arc`. Every method takes the lock briefly; none blocks on I/O.
pub struct SolanaTestChain {
    state: Mutex<ChainState>,
    genesis_hash: Hash,
}

impl std::fmt::Debug for SolanaTestChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolanaTestChain")
            .field("genesis_hash", &self.genesis_hash)
            .finish_non_exhaustive()
    }
}

struct ChainState {
    svm: LiteSVM,
    slot: u64,
    blockhash_slot: u64,
    processed: HashMap<Signature, ProcessedTransaction>,
    hold: bool,
    held: Vec<VersionedTransaction>,
    counts: SendCounts,
    authority: Keypair,
    nonce: u64,
}

impl Default for SolanaTestChain {
    fn default() -> Self {
        Self::new()
    }
}

impl SolanaTestChain {
    /// A fresh chain with SPL Token, Token-2022, Associated Token Account, Memo (v1 and v2) and
    /// Address Lookup Table programs (all bundled and loaded by `LiteSVM::new`), signature and
    /// blockhash checks on, and a fixed local genesis hash (see [`Self::with_genesis_hash`]).
    pub fn new() -> Self {
        Self::with_genesis_hash(Hash::new_from_array(*b"paywire-litesvm local test chain"))
    }

    /// A fresh chain answering `getGenesisHash` with `genesis_hash` (so the CAIP-2 id is
    /// `solana:` + its first 32 base58 characters); see [`DEVNET_GENESIS_HASH`] and friends.
    pub fn with_genesis_hash(genesis_hash: Hash) -> Self {
        let mut svm = LiteSVM::new().with_transaction_history(100_000);
        let authority = Keypair::new();
        svm.airdrop(&authority.pubkey(), 1_000_000_000_000)
            .map_err(|e| e.err)
            .unwrap_or_else(|e| unreachable!("a fresh chain funds its authority: {e}"));
        Self {
            state: Mutex::new(ChainState {
                svm,
                slot: 0,
                blockhash_slot: 0,
                processed: HashMap::new(),
                hold: false,
                held: Vec::new(),
                counts: SendCounts::default(),
                authority,
                nonce: 0,
            }),
            genesis_hash,
        }
    }

    fn lock(&self) -> MutexGuard<'_, ChainState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the underlying litesvm (for anything the fixtures do not cover).
    pub fn with_svm<R>(&self, f: impl FnOnce(&mut LiteSVM) -> R) -> R {
        f(&mut self.lock().svm)
    }

    /// The genesis hash `getGenesisHash` answers.
    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    /// The CAIP-2 network id of this chain: `solana:` + the first 32 characters of the genesis
    /// hash in base58.
    pub fn caip2(&self) -> String {
        let hash = self.genesis_hash.to_string();
        format!("solana:{}", hash.get(..32).unwrap_or(&hash))
    }

    /// The chain's own authority: mint authority of every fixture mint and payer of fixtures.
    pub fn authority(&self) -> Address {
        self.lock().authority.pubkey()
    }

    // ----- clock and blockhash -------------------------------------------------------------

    /// The current slot (equal to the block height: this chain skips no slot).
    pub fn slot(&self) -> u64 {
        self.lock().slot
    }

    /// The latest blockhash and its last valid block height.
    pub fn latest_blockhash(&self) -> (Hash, u64) {
        let state = self.lock();
        (
            state.svm.latest_blockhash(),
            state.last_valid_block_height(),
        )
    }

    /// Whether transactions with `blockhash` are still accepted (litesvm accepts the latest only).
    pub fn is_blockhash_valid(&self, blockhash: &Hash) -> bool {
        self.lock().svm.latest_blockhash() == *blockhash
    }

    /// Makes the current blockhash unusable: a new one is produced and the block height moves
    /// past the old one's last valid block height, as on a real chain.
    pub fn expire_blockhash(&self) {
        let mut state = self.lock();
        let past = (state.last_valid_block_height() + 1).max(state.slot + 1);
        state.set_slot(past);
        state.new_blockhash();
    }

    /// Advances the clock by `n` slots; the blockhash expires when the height passes its last
    /// valid block height.
    pub fn warp_slots(&self, n: u64) {
        let mut state = self.lock();
        let slot = state.slot.saturating_add(n);
        state.set_slot(slot);
        if slot > state.last_valid_block_height() {
            state.new_blockhash();
        }
    }

    // ----- accounts ------------------------------------------------------------------------

    /// An account, if it exists.
    pub fn account(&self, address: &Address) -> Option<Account> {
        self.lock().svm.get_account(address)
    }

    /// Lamports of `address` (0 when absent).
    pub fn lamports(&self, address: &Address) -> u64 {
        self.lock().svm.get_balance(address).unwrap_or(0)
    }

    /// Rent-exempt minimum for `data_len` bytes.
    pub fn minimum_balance_for_rent_exemption(&self, data_len: usize) -> u64 {
        self.lock().svm.minimum_balance_for_rent_exemption(data_len)
    }

    /// Adds `lamports` to `address` (creating a system account if needed).
    pub fn airdrop(&self, address: &Address, lamports: u64) {
        let mut state = self.lock();
        let mut account = state.svm.get_account(address).unwrap_or(Account {
            owner: solana_system_interface::program::ID,
            ..Account::default()
        });
        account.lamports = account.lamports.saturating_add(lamports);
        if let Err(e) = state.svm.set_account(*address, account) {
            unreachable!("a system account is always valid: {e:?}");
        }
    }

    /// A new keypair holding `lamports` SOL lamports.
    pub fn funded_wallet(&self, lamports: u64) -> Keypair {
        let wallet = Keypair::new();
        self.airdrop(&wallet.pubkey(), lamports);
        wallet
    }

    // ----- token fixtures ------------------------------------------------------------------

    /// A new mint (mint authority: [`Self::authority`], no freeze authority).
    pub fn create_mint(&self, program: TokenProgram, decimals: u8) -> Address {
        self.create_mint_with(program, decimals, 0, |_, _| Vec::new())
    }

    /// A new Token-2022 mint with the `TransferFeeConfig` extension: every transfer withholds
    /// `basis_points` / 10 000 of the amount (at most `maximum_fee`) in the destination.
    pub fn create_mint_with_transfer_fee(
        &self,
        decimals: u8,
        basis_points: u16,
        maximum_fee: u64,
    ) -> Address {
        self.create_mint_with(
            TokenProgram::Token2022,
            decimals,
            token::TRANSFER_FEE_CONFIG_LEN,
            |mint, authority| {
                vec![token::initialize_transfer_fee_config(
                    mint,
                    authority,
                    basis_points,
                    maximum_fee,
                )]
            },
        )
    }

    /// A new Token-2022 mint with the `TransferHook` extension pointing at `hook_program`
    /// (`None`: the extension is present but names no program, so transfers still work).
    pub fn create_mint_with_transfer_hook(
        &self,
        decimals: u8,
        hook_program: Option<&Address>,
    ) -> Address {
        self.create_mint_with(
            TokenProgram::Token2022,
            decimals,
            token::TRANSFER_HOOK_LEN,
            |mint, authority| {
                vec![token::initialize_transfer_hook(
                    mint,
                    authority,
                    hook_program,
                )]
            },
        )
    }

    fn create_mint_with(
        &self,
        program: TokenProgram,
        decimals: u8,
        extension_len: usize,
        extensions: impl FnOnce(&Address, &Address) -> Vec<Instruction>,
    ) -> Address {
        let mint = Keypair::new();
        let mut state = self.lock();
        let authority = state.authority.pubkey();
        let space = if extension_len == 0 {
            token::MINT_LEN
        } else {
            token::mint_len_with_extensions(&[extension_len])
        };
        let rent = state.svm.minimum_balance_for_rent_exemption(space);
        let mut instructions = vec![solana_system_interface::instruction::create_account(
            &authority,
            &mint.pubkey(),
            rent,
            space as u64,
            &program.id(),
        )];
        instructions.extend(extensions(&mint.pubkey(), &authority));
        instructions.push(token::initialize_mint2(
            program,
            &mint.pubkey(),
            &authority,
            None,
            decimals,
        ));
        state.run_fixture(&instructions, &[&mint]);
        mint.pubkey()
    }

    /// Writes an initialized mint at a chosen address (e.g. Circle's USDC mint address so the
    /// product's built-in asset table applies). Mint authority: [`Self::authority`].
    pub fn create_mint_at(&self, address: &Address, program: TokenProgram, decimals: u8) {
        let mut state = self.lock();
        let mut data = vec![0u8; token::MINT_LEN];
        data[0..4].copy_from_slice(&[1, 0, 0, 0]);
        data[4..36].copy_from_slice(state.authority.pubkey().as_ref());
        data[44] = decimals;
        data[45] = 1;
        let account = Account {
            lamports: state
                .svm
                .minimum_balance_for_rent_exemption(token::MINT_LEN),
            data,
            owner: program.id(),
            executable: false,
            rent_epoch: u64::MAX,
        };
        if let Err(e) = state.svm.set_account(*address, account) {
            unreachable!("a mint account is always valid: {e:?}");
        }
    }

    /// Creates `owner`'s associated token account for `mint` (idempotent) and returns it.
    pub fn create_ata(&self, owner: &Address, mint: &Address) -> Address {
        let mut state = self.lock();
        let program = state.mint_program(mint);
        let funder = state.authority.pubkey();
        state.run_fixture(
            &[token::create_ata_idempotent(&funder, owner, mint, program)],
            &[],
        );
        token::associated_token_address(owner, mint, program)
    }

    /// Mints `amount` base units of `mint` to `owner`'s associated token account (created when
    /// missing) and returns that account.
    pub fn mint_to(&self, mint: &Address, owner: &Address, amount: u64) -> Address {
        let mut state = self.lock();
        let program = state.mint_program(mint);
        let decimals = state.mint_decimals(mint);
        let authority = state.authority.pubkey();
        let ata = token::associated_token_address(owner, mint, program);
        state.run_fixture(
            &[
                token::create_ata_idempotent(&authority, owner, mint, program),
                token::mint_to_checked(program, mint, &ata, &authority, amount, decimals),
            ],
            &[],
        );
        ata
    }

    /// The balance of `owner`'s associated token account for `mint` (0 when it does not exist).
    pub fn token_balance(&self, owner: &Address, mint: &Address) -> u64 {
        let state = self.lock();
        let program = state.mint_program(mint);
        let ata = token::associated_token_address(owner, mint, program);
        state
            .svm
            .get_account(&ata)
            .and_then(|a| TokenAccountView::parse(&a.data))
            .map_or(0, |view| view.amount)
    }

    /// Writes an active address lookup table owned by `authority` holding `addresses` (at most
    /// 256) and returns its address, derived as the program derives it. Every address is usable
    /// at once: the table is written directly rather than created and extended over two slots.
    pub fn create_lookup_table(&self, authority: &Address, addresses: &[Address]) -> Address {
        let mut state = self.lock();
        state.nonce += 1;
        let (table, _) =
            solana_address_lookup_table_interface::instruction::derive_lookup_table_address(
                authority,
                state.nonce,
            );
        let meta = LookupTableMeta {
            // All addresses count as extended before the current slot.
            last_extended_slot_start_index: u8::try_from(addresses.len()).unwrap_or(u8::MAX),
            ..LookupTableMeta::new(*authority)
        };
        let data = AddressLookupTable {
            meta,
            addresses: addresses.into(),
        }
        .serialize_for_tests()
        .unwrap_or_else(|e| unreachable!("a lookup table always serializes: {e}"));
        let account = Account {
            lamports: state.svm.minimum_balance_for_rent_exemption(data.len()),
            data,
            owner: solana_address_lookup_table_interface::program::ID,
            executable: false,
            rent_epoch: u64::MAX,
        };
        if let Err(e) = state.svm.set_account(table, account) {
            unreachable!("a lookup table account is always valid: {e:?}");
        }
        table
    }

    // ----- execution ------------------------------------------------------------------------

    /// Simulates `tx` against the current state without changing it.
    pub fn simulate(&self, tx: VersionedTransaction, options: &SimulateOptions) -> Simulation {
        let mut state = self.lock();
        state.simulate(tx, options)
    }

    /// `sendTransaction`: runs the preflight simulation unless `skip_preflight`, then executes
    /// the transaction (or holds it, see [`Self::hold_sends`]) and returns its first signature.
    /// A transaction already processed is dropped (its status stays the first one's).
    pub fn send(
        &self,
        tx: VersionedTransaction,
        skip_preflight: bool,
    ) -> Result<Signature, SendError> {
        let mut state = self.lock();
        state.counts.received += 1;
        let signature = tx.signatures.first().copied().unwrap_or_default();
        if !skip_preflight {
            let simulation = state.simulate(tx.clone(), &SimulateOptions::new(true));
            if simulation.err.is_some() {
                return Err(SendError::Preflight(Box::new(simulation)));
            }
        }
        if state.hold {
            state.held.push(tx);
        } else {
            state.execute(tx);
        }
        Ok(signature)
    }

    /// While `true`, `send` accepts transactions and returns their signature but does not
    /// execute them until [`Self::release_held`].
    pub fn hold_sends(&self, hold: bool) {
        self.lock().hold = hold;
    }

    /// Executes every held transaction in arrival order; returns how many there were.
    pub fn release_held(&self) -> usize {
        let mut state = self.lock();
        let held = std::mem::take(&mut state.held);
        let n = held.len();
        for tx in held {
            state.execute(tx);
        }
        n
    }

    /// How many transactions `send` received and how many executed.
    pub fn sends(&self) -> SendCounts {
        self.lock().counts
    }

    /// The status of a landed transaction (`None`: unknown, held or dropped).
    pub fn signature_status(&self, signature: &Signature) -> Option<SignatureStatus> {
        let state = self.lock();
        let processed = state.processed.get(signature)?;
        let age = state.slot.saturating_sub(processed.slot);
        Some(SignatureStatus {
            slot: processed.slot,
            confirmations: (age < FINALITY_CONFIRMATIONS).then_some(age),
            err: processed.err.clone(),
        })
    }

    /// Everything recorded about a landed transaction.
    pub fn transaction(&self, signature: &Signature) -> Option<ProcessedTransaction> {
        self.lock().processed.get(signature).cloned()
    }

    /// Decimals of `mint` (`None` when it is not an initialized mint).
    pub fn mint(&self, mint: &Address) -> Option<MintView> {
        let state = self.lock();
        state
            .svm
            .get_account(mint)
            .and_then(|a| MintView::parse(&a.data))
    }
}

impl ChainState {
    fn last_valid_block_height(&self) -> u64 {
        self.blockhash_slot + BLOCKHASH_VALIDITY_SLOTS
    }

    fn set_slot(&mut self, slot: u64) {
        self.slot = slot;
        let mut clock: Clock = self.svm.get_sysvar();
        clock.slot = slot;
        self.svm.set_sysvar(&clock);
    }

    fn new_blockhash(&mut self) {
        self.svm.expire_blockhash();
        self.blockhash_slot = self.slot;
    }

    fn mint_program(&self, mint: &Address) -> TokenProgram {
        self.svm
            .get_account(mint)
            .and_then(|a| TokenProgram::from_owner(&a.owner))
            .unwrap_or(TokenProgram::Token)
    }

    fn mint_decimals(&self, mint: &Address) -> u8 {
        self.svm
            .get_account(mint)
            .and_then(|a| MintView::parse(&a.data))
            .map_or(0, |m| m.decimals)
    }

    /// Runs a fixture transaction paid and signed by the authority (plus `signers`). A memo
    /// with a counter keeps two identical fixtures from having the same signature.
    fn run_fixture(&mut self, instructions: &[Instruction], signers: &[&Keypair]) {
        self.nonce += 1;
        let mut instructions = instructions.to_vec();
        instructions.push(token::memo(&format!(
            "paywire-litesvm fixture {}",
            self.nonce
        )));
        let mut all: Vec<&Keypair> = vec![&self.authority];
        all.extend_from_slice(signers);
        let tx = Transaction::new_signed_with_payer(
            &instructions,
            Some(&self.authority.pubkey()),
            &all,
            self.svm.latest_blockhash(),
        );
        if let Err(failed) = self.svm.send_transaction(tx) {
            // Fixtures are built by this crate; a failure is a bug in the test set-up.
            panic!(
                "fixture transaction failed: {}\n{}",
                failed.err,
                failed.meta.pretty_logs()
            );
        }
    }

    fn simulate(&mut self, mut tx: VersionedTransaction, options: &SimulateOptions) -> Simulation {
        let replacement = options.replace_recent_blockhash.then(|| {
            let hash = self.svm.latest_blockhash();
            tx.message.set_recent_blockhash(hash);
            (hash, self.last_valid_block_height())
        });
        let result = if options.sig_verify {
            self.svm.simulate_transaction(tx)
        } else {
            // litesvm only switches signature checks with a builder; swap it out and back.
            let svm = std::mem::take(&mut self.svm).with_sigverify(false);
            let result = svm.simulate_transaction(tx);
            self.svm = svm.with_sigverify(true);
            result
        };
        let (err, meta, post) = match result {
            Ok(info) => (None, info.meta, info.post_accounts),
            Err(failed) => (Some(failed.err), failed.meta, Vec::new()),
        };
        let accounts = options
            .accounts
            .iter()
            .map(|address| {
                post.iter()
                    .find(|(a, _)| a == address)
                    .map(|(_, shared)| Account::from(shared.clone()))
                    .or_else(|| self.svm.get_account(address))
            })
            .collect();
        Simulation {
            err,
            return_data: return_data(&meta),
            logs: meta.logs,
            units_consumed: meta.compute_units_consumed,
            inner_instructions: meta.inner_instructions,
            accounts,
            replacement_blockhash: replacement,
            fee: meta.fee,
        }
    }

    /// Lands `tx` in the current slot, unless its signature already landed (the status cache
    /// drops duplicates) or it cannot be included at all (bad blockhash, bad signature …).
    fn execute(&mut self, tx: VersionedTransaction) {
        let Some(signature) = tx.signatures.first().copied() else {
            return;
        };
        if self.processed.contains_key(&signature) {
            return;
        }
        let account_keys = self.account_keys(&tx);
        let balances_before = self.balances(&account_keys.0);
        let tokens_before = self.token_balances(&account_keys.0);
        let (err, meta) = match self.svm.send_transaction(tx.clone()) {
            Ok(meta) => (None, meta),
            Err(failed) => (Some(failed.err), failed.meta),
        };
        // Failed transactions that paid fees are in litesvm's history; others never landed.
        if err.is_some() && self.svm.get_transaction(&signature).is_none() {
            tracing::debug!(%signature, ?err, "transaction dropped before execution");
            return;
        }
        self.counts.executed += 1;
        let balances_after = self.balances(&account_keys.0);
        let tokens_after = self.token_balances(&account_keys.0);
        let record = ProcessedTransaction {
            slot: self.slot,
            err,
            transaction: tx,
            account_keys: account_keys.0,
            loaded: account_keys.1,
            fee: meta.fee,
            units_consumed: meta.compute_units_consumed,
            inner_instructions: meta.inner_instructions,
            logs: meta.logs,
            balances: (balances_before, balances_after),
            token_balances: (tokens_before, tokens_after),
        };
        self.processed.insert(signature, record);
    }

    /// Static keys then addresses loaded from lookup tables (writable, then read-only).
    fn account_keys(&self, tx: &VersionedTransaction) -> (Vec<Address>, (usize, usize)) {
        let mut keys = tx.message.static_account_keys().to_vec();
        let Some(lookups) = tx.message.address_table_lookups() else {
            return (keys, (0, 0));
        };
        let table = |address: &Address| -> Vec<Address> {
            self.svm.get_account(address).map_or_else(Vec::new, |a| {
                a.data
                    .get(solana_address_lookup_table_interface::state::LOOKUP_TABLE_META_SIZE..)
                    .unwrap_or_default()
                    .chunks_exact(32)
                    .filter_map(|c| <[u8; 32]>::try_from(c).ok().map(Address::new_from_array))
                    .collect()
            })
        };
        let pick = |indexes: &[u8], addresses: &[Address]| -> Vec<Address> {
            indexes
                .iter()
                .filter_map(|i| addresses.get(usize::from(*i)).copied())
                .collect()
        };
        let (mut writable, mut readonly) = (Vec::new(), Vec::new());
        for lookup in lookups {
            let addresses = table(&lookup.account_key);
            writable.extend(pick(&lookup.writable_indexes, &addresses));
            readonly.extend(pick(&lookup.readonly_indexes, &addresses));
        }
        let loaded = (writable.len(), readonly.len());
        keys.extend(writable);
        keys.extend(readonly);
        (keys, loaded)
    }

    fn balances(&self, keys: &[Address]) -> Vec<u64> {
        keys.iter()
            .map(|k| self.svm.get_balance(k).unwrap_or(0))
            .collect()
    }

    fn token_balances(&self, keys: &[Address]) -> Vec<TokenBalance> {
        keys.iter()
            .enumerate()
            .filter_map(|(account_index, key)| {
                let account = self.svm.get_account(key)?;
                let program = TokenProgram::from_owner(&account.owner)?;
                let view = TokenAccountView::parse(&account.data)?;
                Some(TokenBalance {
                    account_index,
                    mint: view.mint,
                    owner: view.owner,
                    program: program.id(),
                    amount: view.amount,
                    decimals: self.mint_decimals(&view.mint),
                })
            })
            .collect()
    }
}

fn return_data(meta: &TransactionMetadata) -> Option<(Address, Vec<u8>)> {
    let data = &meta.return_data;
    (data.program_id != Address::default() || !data.data.is_empty())
        .then(|| (data.program_id, data.data.clone()))
}
