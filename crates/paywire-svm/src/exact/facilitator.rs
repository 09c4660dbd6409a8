//! Facilitator side: verify a payment transaction against the sponsor
//! acceptance policy, then co-sign it as fee payer, send it and follow it
//! to confirmation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paywire_core::{
    BoxFuture, ChainId, ErrorReason, JsonObject, PaymentPayload, PaymentRequirements, SchemeError,
    SchemeFacilitator, SettleResponse, SettlementLookup, SettlementObserver, VerifyResponse,
};
use solana_address::Address;
use solana_transaction::versioned::VersionedTransaction;

use super::verify::{self, Accepted, Expected, Policy, Refusal};
use super::{
    EXTRA_FEE_PAYER, EXTRA_MAX_COMPUTE_UNIT_PRICE, EXTRA_MAX_COMPUTE_UNITS, SCHEME, Terms,
};
use crate::exact::dedup::DedupGuard;
use crate::keys::{SvmKeypair, verify_signature};
use crate::mint::{MintCache, MintFacts, parse_mint};
use crate::reasons;
use crate::rpc::{Commitment, RpcError, SvmRpc};
use crate::tx;

/// The owner of address lookup table accounts.
const LOOKUP_TABLE_PROGRAM: Address =
    Address::from_str_const("AddressLookupTab1e1111111111111111111111111");
/// Size of a lookup table's header before its addresses.
const LOOKUP_TABLE_HEADER: usize = 56;

/// One cluster a facilitator settles on.
#[derive(Debug)]
#[non_exhaustive]
pub struct SvmChain {
    /// The cluster.
    pub network: ChainId,
    /// Its nodes.
    pub rpc: Arc<SvmRpc>,
    /// Fee payer keys (at least one).
    pub fee_payers: Vec<SvmKeypair>,
    /// The acceptance policy.
    pub policy: Policy,
    /// Token-2022 extensions accepted beyond the harmless ones.
    pub allowed_mint_extensions: Vec<String>,
    /// Mints accepted.
    pub assets: Vec<Address>,
}

impl SvmChain {
    /// A cluster with the default policy and no accepted mint yet.
    pub fn new(network: ChainId, rpc: Arc<SvmRpc>, fee_payers: Vec<SvmKeypair>) -> Self {
        Self {
            network,
            rpc,
            fee_payers,
            policy: Policy::default(),
            allowed_mint_extensions: Vec::new(),
            assets: Vec::new(),
        }
    }

    fn signer_addresses(&self) -> Vec<Address> {
        self.fee_payers.iter().map(SvmKeypair::address).collect()
    }
}

/// A payment that passed every check, ready to be co-signed.
struct Checked {
    transaction: VersionedTransaction,
    payer: String,
    fee_payer: SvmKeypair,
    message_hash: String,
}

/// `exact` verification and settlement on Solana clusters.
#[derive(Debug)]
pub struct ExactSvmFacilitator {
    chains: HashMap<ChainId, SvmChain>,
    order: Vec<ChainId>,
    mints: MintCache,
    dedup: DedupGuard,
    payers: PayerLocks,
    receipt_timeout: Duration,
}

/// One settlement at a time per paying account (in this process): a payer
/// who sends several payments at once, each spending their whole balance,
/// would otherwise pass every simulation and leave the sponsor paying the
/// fees of the ones that fail on chain. The next one is checked, simulation
/// included, only once the previous one is decided.
#[derive(Debug, Default)]
struct PayerLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl PayerLocks {
    async fn lock(&self, payer: &str) -> PayerGuard<'_> {
        let lock = {
            let mut map = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(map.entry(payer.to_owned()).or_default())
        };
        let guard = Arc::clone(&lock).lock_owned().await;
        PayerGuard {
            locks: self,
            payer: payer.to_owned(),
            _guard: guard,
        }
    }
}

/// Held while one payer's settlement runs; forgets idle payers on drop.
struct PayerGuard<'a> {
    locks: &'a PayerLocks,
    payer: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for PayerGuard<'_> {
    fn drop(&mut self) {
        let mut map = self
            .locks
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two references: the map's and this guard's lock.
        if map
            .get(&self.payer)
            .is_some_and(|lock| Arc::strong_count(lock) <= 2)
        {
            map.remove(&self.payer);
        }
    }
}

type Outcome<T> = Result<Result<T, Refusal>, SchemeError>;

fn chain_error(error: RpcError) -> SchemeError {
    SchemeError::Chain(error.summary())
}

impl ExactSvmFacilitator {
    /// A facilitator over `chains`, waiting up to `receipt_timeout` for a
    /// confirmation before answering `pending`.
    pub fn new(chains: Vec<SvmChain>, receipt_timeout: Duration) -> Self {
        let order = chains.iter().map(|c| c.network.clone()).collect();
        Self {
            chains: chains.into_iter().map(|c| (c.network.clone(), c)).collect(),
            order,
            mints: MintCache::default(),
            dedup: DedupGuard::default(),
            payers: PayerLocks::default(),
            receipt_timeout,
        }
    }

    /// Every check of the policy, static and against the chain.
    async fn check(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Outcome<Checked> {
        let (chain, terms, transaction) = match self.prepare(payload, requirements) {
            Ok(prepared) => prepared,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let loaded = match resolve_lookup_tables(&chain.rpc, &transaction).await {
            Ok(loaded) => loaded,
            Err(detail) => return Ok(Err((reasons::ALT_RESOLUTION, detail))),
        };
        let mint = match self.mint(chain, &terms.mint).await? {
            Ok(mint) => mint,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let expected = Expected {
            fee_payer: terms.fee_payer,
            mint: terms.mint,
            token_program: mint.token_program,
            decimals: mint.decimals,
            pay_to: terms.pay_to,
            amount: terms.amount,
            memo: terms.memo,
        };
        let ours = chain.signer_addresses();
        // `prepare` ran the precheck, the client's signature included.
        let accepted = match verify::check_after_precheck(
            &transaction,
            &loaded,
            &expected,
            &chain.policy,
            &ours,
        ) {
            Ok(accepted) => accepted,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if let Err(refusal) = destination_exists(chain, &accepted).await? {
            return Ok(Err(refusal));
        }
        if let Err(refusal) = simulate(&chain.rpc, &transaction).await? {
            return Ok(Err(refusal));
        }
        let Some(fee_payer) = chain
            .fee_payers
            .iter()
            .find(|k| k.address() == expected.fee_payer)
        else {
            return Ok(Err((
                reasons::FEE_PAYER_NOT_MANAGED,
                "extra.feePayer".into(),
            )));
        };
        Ok(Ok(Checked {
            message_hash: tx::message_hash(&transaction.message),
            transaction,
            payer: accepted.transfer.authority.to_string(),
            fee_payer: fee_payer.clone(),
        }))
    }

    /// What needs no node: the cluster, scheme, terms and asset, the
    /// transaction, its signers and the client's signature.
    fn prepare(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<(&SvmChain, Terms, VersionedTransaction), Refusal> {
        let Some(chain) = self.chains.get(&requirements.network) else {
            return Err((ErrorReason::INVALID_NETWORK, "network not served".into()));
        };
        if requirements.scheme != SCHEME || payload.accepted.scheme != SCHEME {
            return Err((ErrorReason::UNSUPPORTED_SCHEME, "not exact".into()));
        }
        let terms = Terms::read(requirements)?;
        if !chain.assets.contains(&terms.mint) {
            return Err((ErrorReason::UNSUPPORTED_ASSET, "mint not accepted".into()));
        }
        let Some(transaction) = decode_payload(payload) else {
            return Err((reasons::UNDECODABLE, "payload.transaction".into()));
        };
        verify::precheck(&transaction, &terms.fee_payer, &chain.signer_addresses())?;
        Ok((chain, terms, transaction))
    }

    /// The mint's facts (cached), refused when it is no mint or has an
    /// extension the operator did not allow.
    async fn mint(&self, chain: &SvmChain, mint: &Address) -> Outcome<MintFacts> {
        let facts = if let Some(facts) = self.mints.get(mint) {
            facts
        } else {
            let Some(account) = chain
                .rpc
                .account(&mint.to_string())
                .await
                .map_err(chain_error)?
            else {
                return Ok(Err((
                    reasons::MINT_NOT_ACCEPTED,
                    "the mint does not exist".into(),
                )));
            };
            let owner = tx::parse_address(&account.owner).unwrap_or_default();
            match parse_mint(&owner, &account.data) {
                Ok(facts) => {
                    self.mints.put(*mint, facts.clone());
                    facts
                }
                Err(error) => return Ok(Err((reasons::MINT_NOT_ACCEPTED, error.to_string()))),
            }
        };
        Ok(facts
            .check_extensions(&chain.allowed_mint_extensions)
            .map(|()| facts.clone())
            .map_err(|e| (reasons::MINT_NOT_ACCEPTED, e.to_string())))
    }

    async fn settle_checked(
        &self,
        chain: &SvmChain,
        checked: Checked,
        observer: &dyn SettlementObserver,
    ) -> Result<SettleResponse, SchemeError> {
        let network = chain.network.clone();
        let payer = Some(checked.payer.clone());
        let failed = |reason: ErrorReason, detail: &str| {
            SettleResponse::failed(network.clone(), reason, payer.clone(), "").with_message(detail)
        };
        let Some(claim) = self.dedup.claim(&checked.message_hash) else {
            return Ok(failed(
                ErrorReason::DUPLICATE_SETTLEMENT,
                "this transaction is already being settled",
            ));
        };
        let mut transaction = checked.transaction;
        let message = tx::message_bytes(&transaction.message);
        let fee_signature = checked.fee_payer.sign(&message);
        transaction.signatures[0] = fee_signature;
        let signature = fee_signature.to_string();
        // Recorded before the signature leaves the process (even in a
        // status query): a crash never forgets a transaction that may land.
        let recorded = observer.before_broadcast(&network, &signature).await;
        // The ledger refuses a transaction another payload claimed; either
        // way, one the chain already knows is a duplicate.
        match (
            chain
                .rpc
                .signature_statuses(std::slice::from_ref(&signature))
                .await,
            recorded,
        ) {
            (Ok(statuses), _) if statuses.first().is_some_and(Option::is_some) => {
                return Ok(failed(
                    ErrorReason::DUPLICATE_SETTLEMENT,
                    "this transaction was already sent",
                ));
            }
            (_, Err(error)) => {
                claim.release();
                return Err(SchemeError::Chain(format!(
                    "settlement not recorded, not sent: {error}"
                )));
            }
            (Err(error), Ok(())) => {
                // Nothing was sent: a retry may run.
                claim.release();
                return Err(chain_error(error));
            }
            (Ok(_), Ok(())) => {}
        }
        if let Err(error) = chain.rpc.send(&tx::encode_transaction(&transaction)).await {
            // Even a node's refusal may follow an earlier endpoint that took
            // the transaction before timing out: only the chain can say.
            tracing::warn!(network = %network, error = %error.summary(), "sendTransaction failed; following the signature");
        }
        Ok(self.follow(chain, &signature, payer.clone()).await)
    }

    /// Polls the signature until it meets the commitment, fails, or the
    /// receipt timeout passes (then `pending`, with the signature).
    async fn follow(
        &self,
        chain: &SvmChain,
        signature: &str,
        payer: Option<String>,
    ) -> SettleResponse {
        let network = chain.network.clone();
        let started = Instant::now();
        let mut interval = Duration::from_millis(100);
        loop {
            let status = chain
                .rpc
                .signature_statuses(&[signature.to_owned()])
                .await
                .ok()
                .and_then(|statuses| statuses.into_iter().next().flatten());
            if let Some(status) = status {
                if status.err.is_some() {
                    return SettleResponse::failed(
                        network,
                        reasons::TRANSACTION_FAILED,
                        payer,
                        signature,
                    );
                }
                if meets(chain, &status) {
                    return SettleResponse::settled(network, signature, payer);
                }
            }
            if started.elapsed() + interval > self.receipt_timeout {
                return SettleResponse::pending(network, payer, signature);
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(1));
        }
    }

    /// What became of a payment whose fee-payer signature is `signature`.
    async fn lookup(
        &self,
        chain: &SvmChain,
        transaction: &VersionedTransaction,
        signature: &str,
        payer: Option<String>,
    ) -> Result<SettlementLookup, SchemeError> {
        let network = chain.network.clone();
        let status = |rpc: Arc<SvmRpc>, signature: String| async move {
            rpc.signature_statuses(&[signature])
                .await
                .map(|s| s.into_iter().next().flatten())
        };
        let mut known = status(Arc::clone(&chain.rpc), signature.to_owned())
            .await
            .map_err(chain_error)?;
        if known.is_none() {
            let blockhash = transaction.message.recent_blockhash().to_string();
            if chain
                .rpc
                .is_blockhash_valid(&blockhash)
                .await
                .map_err(chain_error)?
            {
                return Ok(SettlementLookup::Open);
            }
            // Expired: anything that landed is visible by now.
            known = status(Arc::clone(&chain.rpc), signature.to_owned())
                .await
                .map_err(chain_error)?;
        }
        Ok(match known {
            None => SettlementLookup::Unsettleable(SettleResponse::failed(
                network,
                reasons::BLOCKHASH_EXPIRED,
                payer,
                "",
            )),
            Some(status) if status.err.is_some() => SettlementLookup::Unsettleable(
                SettleResponse::failed(network, reasons::TRANSACTION_FAILED, payer, signature),
            ),
            Some(status) if meets(chain, &status) => {
                SettlementLookup::Settled(SettleResponse::settled(network, signature, payer))
            }
            Some(_) => SettlementLookup::Open,
        })
    }
}

/// payTo's token account exists, unless the transaction creates it.
async fn destination_exists(chain: &SvmChain, accepted: &Accepted) -> Outcome<()> {
    if accepted.creates_destination {
        return Ok(Ok(()));
    }
    let destination = accepted.transfer.destination.to_string();
    let account = chain.rpc.account(&destination).await.map_err(chain_error)?;
    Ok(match account {
        Some(_) => Ok(()),
        None => Err((
            reasons::RECEIVER_ATA_NOT_FOUND,
            "payTo has no token account".into(),
        )),
    })
}

/// Whether `status` reaches the chain's commitment (a node that does not
/// say how final it is counts as `processed`).
fn meets(chain: &SvmChain, status: &crate::rpc::SignatureStatus) -> bool {
    let level = status.confirmation_status.unwrap_or(Commitment::Processed);
    chain.rpc.commitment().is_met_by(level)
}

/// The transaction of `payload.transaction`, if decodable.
fn decode_payload(payload: &PaymentPayload) -> Option<VersionedTransaction> {
    let text = payload.payload.get("transaction")?.as_str()?;
    tx::decode_transaction(text).ok()
}

/// The addresses the transaction's lookup tables load (writable ones of
/// every table, then readonly ones), read from the chain. Any failure
/// refuses the payment: accounts that cannot be seen cannot be checked.
async fn resolve_lookup_tables(
    rpc: &SvmRpc,
    transaction: &VersionedTransaction,
) -> Result<Vec<Address>, String> {
    let lookups = transaction
        .message
        .address_table_lookups()
        .unwrap_or_default();
    if lookups.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = lookups.iter().map(|l| l.account_key.to_string()).collect();
    let accounts = rpc
        .accounts(&keys)
        .await
        .map_err(|e| format!("lookup tables unreadable: {}", e.summary()))?;
    let mut tables = Vec::with_capacity(accounts.len());
    for account in accounts {
        let account = account.ok_or("a lookup table does not exist")?;
        if tx::parse_address(&account.owner) != Some(LOOKUP_TABLE_PROGRAM) {
            return Err("a lookup table is not owned by the lookup table program".into());
        }
        tables.push(lookup_table_addresses(&account.data)?);
    }
    let pick = |table: &[Address], indexes: &[u8]| -> Result<Vec<Address>, String> {
        indexes
            .iter()
            .map(|i| {
                table
                    .get(usize::from(*i))
                    .copied()
                    .ok_or_else(|| "lookup index out of range".to_owned())
            })
            .collect()
    };
    let mut writable = Vec::new();
    let mut readonly = Vec::new();
    for (lookup, table) in lookups.iter().zip(&tables) {
        writable.extend(pick(table, &lookup.writable_indexes)?);
        readonly.extend(pick(table, &lookup.readonly_indexes)?);
    }
    writable.extend(readonly);
    Ok(writable)
}

/// The addresses of a lookup table account: a 56-byte header, then 32
/// bytes per address.
pub fn lookup_table_addresses(data: &[u8]) -> Result<Vec<Address>, String> {
    let body = data
        .get(LOOKUP_TABLE_HEADER..)
        .ok_or("lookup table too short")?;
    if body.len() % 32 != 0 {
        return Err("lookup table length is not whole addresses".into());
    }
    Ok(body
        .chunks_exact(32)
        .map(|chunk| {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(chunk);
            Address::new_from_array(bytes)
        })
        .collect())
}

/// Simulates the transaction as the client signed it (the fee payer's
/// signature is still empty, so without signature checks: the client's was
/// checked locally, and we sign nothing before every rule passed), with its
/// own blockhash.
async fn simulate(rpc: &SvmRpc, transaction: &VersionedTransaction) -> Outcome<()> {
    let simulation = rpc
        .simulate(&tx::encode_transaction(transaction), false)
        .await
        .map_err(chain_error)?;
    Ok(match simulation.err {
        None => Ok(()),
        Some(err) if err.to_string().contains("BlockhashNotFound") => Err((
            reasons::BLOCKHASH_EXPIRED,
            "the blockhash has expired".into(),
        )),
        Some(err) => Err((
            reasons::SIMULATION_FAILED,
            format!("simulation failed: {err}"),
        )),
    })
}

impl SchemeFacilitator for ExactSvmFacilitator {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn networks(&self) -> Vec<ChainId> {
        self.order.clone()
    }

    /// The first fee payer (stable, so that requirements built from
    /// `/supported` stay the same) and the compute caps.
    fn kind_extra(&self, network: &ChainId) -> Option<JsonObject> {
        let chain = self.chains.get(network)?;
        let mut extra = JsonObject::new();
        extra.insert(
            EXTRA_FEE_PAYER.into(),
            chain.fee_payers.first()?.address().to_string().into(),
        );
        extra.insert(
            EXTRA_MAX_COMPUTE_UNITS.into(),
            chain.policy.max_compute_units.into(),
        );
        extra.insert(
            EXTRA_MAX_COMPUTE_UNIT_PRICE.into(),
            chain.policy.max_compute_unit_price.into(),
        );
        Some(extra)
    }

    fn signers(&self, network: &ChainId) -> Vec<String> {
        self.chains.get(network).map_or_else(Vec::new, |chain| {
            chain
                .signer_addresses()
                .iter()
                .map(ToString::to_string)
                .collect()
        })
    }

    fn verify<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<VerifyResponse, SchemeError>> {
        Box::pin(async move {
            Ok(match self.check(payload, requirements).await? {
                Ok(checked) => VerifyResponse::valid(checked.payer),
                Err((reason, detail)) => {
                    VerifyResponse::invalid(reason, self.authenticated_payer(payload, requirements))
                        .with_message(detail)
                }
            })
        })
    }

    fn settle<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        self.settle_observed(payload, requirements, &paywire_core::NoObserver)
    }

    fn settle_observed<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        observer: &'a dyn SettlementObserver,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        Box::pin(async move {
            // The client signer (account 1); an undecodable payload is
            // refused by the checks below without any lock.
            let payer = decode_payload(payload)
                .and_then(|t| {
                    t.message
                        .static_account_keys()
                        .get(1)
                        .map(ToString::to_string)
                })
                .unwrap_or_default();
            let _one_at_a_time = self.payers.lock(&payer).await;
            let checked = match self.check(payload, requirements).await? {
                Ok(checked) => checked,
                Err((reason, detail)) => {
                    let payer = self.authenticated_payer(payload, requirements);
                    return Ok(SettleResponse::failed(
                        requirements.network.clone(),
                        reason,
                        payer,
                        "",
                    )
                    .with_message(detail));
                }
            };
            let Some(chain) = self.chains.get(&requirements.network) else {
                return Err(SchemeError::Unsupported(requirements.network.to_string()));
            };
            self.settle_checked(chain, checked, observer).await
        })
    }

    /// The SHA-256 of the transaction message: one payment transaction is
    /// one spend, whatever its (fee payer) signature slot holds.
    fn spend_key(
        &self,
        payload: &PaymentPayload,
        _requirements: &PaymentRequirements,
    ) -> Option<String> {
        let transaction = decode_payload(payload)?;
        Some(format!(
            "svm-exact:{}",
            tx::message_hash(&transaction.message)
        ))
    }

    /// Signer #1 (the client), when its signature over the message verifies.
    fn authenticated_payer(
        &self,
        payload: &PaymentPayload,
        _requirements: &PaymentRequirements,
    ) -> Option<String> {
        let transaction = decode_payload(payload)?;
        let client = transaction.message.static_account_keys().get(1)?;
        let signature = transaction.signatures.get(1)?;
        verify_signature(client, &tx::message_bytes(&transaction.message), signature)
            .then(|| client.to_string())
    }

    /// Reads the status of the recorded fee-payer signature.
    fn lookup_settlement<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        known_transaction: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SettlementLookup>, SchemeError>> {
        Box::pin(async move {
            let Some(chain) = self.chains.get(&requirements.network) else {
                return Ok(None);
            };
            let Some(transaction) = decode_payload(payload) else {
                return Ok(None);
            };
            // No recorded signature: nothing was ever sent (settlement
            // records it before it leaves the process), and the fee payer
            // never signs a message the policy has not checked.
            let Some(signature) = known_transaction.map(str::to_owned) else {
                return Ok(None);
            };
            let payer = self.authenticated_payer(payload, requirements);
            self.lookup(chain, &transaction, &signature, payer)
                .await
                .map(Some)
        })
    }
}
