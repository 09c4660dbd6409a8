//! Facilitator side of `exact` EIP-3009: verification against the chain and
//! settlement through the facilitator's own signers.

use crate::Eip155ChainId;
use crate::reasons;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolEvent};
use paywire_core::{
    BoxFuture, ChainId, ErrorReason, NoObserver, PaymentPayload, PaymentRequirements, SchemeError,
    SchemeFacilitator, SettleResponse, SettlementLookup, SettlementObserver, VerifyResponse,
};

use super::inflight::{Attempts, AuthorizationKey, Broadcast, KeyedLocks, PayerKey};
use super::payload::{ExactEvmPayload, eip712_domain, signing_hash};
use super::receipts::ReceiptWatcher;
use super::reconcile::{LogSearch, SearchCache};
use super::{Clock, SCHEME, system_clock};
use crate::contracts::{ERC1271_MAGIC_VALUE, IEip3009Token, IErc1271};
use crate::eip6492;
use crate::networks::EvmNetwork;
use crate::rpc::{Receipt, RpcClient, RpcError, call_params, decode_bytes};
use crate::signer::EvmSigner;

mod method;
mod permit2;
mod probe;
mod resume;
mod sending;
mod setup;
mod verify;

use method::TransferMethod;
pub(crate) use permit2::{Proxy, spend_key as permit2_spend_key};
use sending::{Sent, SignerSlot};
pub(crate) use setup::facilitator_parts;

/// One chain the facilitator settles on.
#[non_exhaustive]
pub struct EvmChainConfig {
    /// The chain and the assets accepted on it (anything else is refused).
    pub network: EvmNetwork,
    /// RPC access (several endpoints with fail-over).
    pub rpc: Arc<RpcClient>,
    /// Settlement signers, used round-robin.
    pub signers: Vec<Arc<dyn EvmSigner>>,
    /// Gas limit of a settlement transaction.
    pub gas_limit: u64,
    /// Highest `maxFeePerGas` the facilitator pays, in wei. Settlement is
    /// refused (nothing sent) while the network asks for more.
    pub max_fee_per_gas: u128,
    /// Highest priority fee (tip), in wei.
    pub max_priority_fee_per_gas: u128,
    /// Whether payments from counterfactual (EIP-6492, not yet deployed)
    /// wallets are settled by deploying the wallet first. Off by default:
    /// the deployment calls a factory the payer chooses, from the
    /// facilitator's signer and at its expense.
    pub counterfactual_wallets: CounterfactualWallets,
    /// Most gas the facilitator spends deploying a counterfactual (EIP-6492)
    /// wallet before settling from it (when deployments are on). Bounds what
    /// an attacker can make the facilitator pay per deployment.
    pub max_wallet_deployment_gas: u64,
    /// Whether Permit2 payers without an allowance may include an EIP-2612
    /// permit for Permit2, which the facilitator submits through the
    /// proxy's `settleWithPermit` at its own expense (off by default).
    pub eip2612_gas_sponsoring: bool,
    /// Whether Permit2 payers without an allowance may include their signed
    /// `approve(Permit2)` transaction, which the facilitator broadcasts
    /// (funding the payer's gas when needed) before settling (off by
    /// default). Not atomic: see `max_approval_funding_wei`.
    pub erc20_approval_gas_sponsoring: bool,
    /// Highest gas limit of a sponsored approval transaction.
    pub max_sponsored_approval_gas: u64,
    /// Most native currency (wei) sent to a payer to pay for its approval
    /// transaction's gas. The funding and the approval are two transactions
    /// (a plain node has no bundles): the payer can spend the funding
    /// elsewhere in between, so this bounds what one payment can cost.
    pub max_approval_funding_wei: u128,
    /// Most blocks one `eth_getLogs` request covers when looking for an
    /// earlier execution of an authorization (default 2,000). Halved for the
    /// rest of the process whenever the provider refuses a range.
    pub log_range_blocks: u64,
    /// How far back before the latest block (in seconds) that search goes
    /// for an authorization valid since before then (default one day). An
    /// authorization with a later `validAfter` is searched from there.
    pub reconcile_lookback: Duration,
}

impl EvmChainConfig {
    /// A chain with default settings: 250k gas, 500 gwei fee cap, 2 gwei tip
    /// cap, counterfactual wallets refused (1M gas cap once allowed), logs
    /// read 2,000 blocks at a time up to one day back, no gas sponsoring
    /// (caps once on: 100k gas per approval, 0.001 ETH of funding).
    pub fn new(network: EvmNetwork, rpc: Arc<RpcClient>, signers: Vec<Arc<dyn EvmSigner>>) -> Self {
        Self {
            network,
            rpc,
            signers,
            gas_limit: 250_000,
            max_fee_per_gas: 500_000_000_000,
            max_priority_fee_per_gas: 2_000_000_000,
            counterfactual_wallets: CounterfactualWallets::Off,
            max_wallet_deployment_gas: 1_000_000,
            log_range_blocks: 2_000,
            reconcile_lookback: Duration::from_secs(24 * 60 * 60),
            eip2612_gas_sponsoring: false,
            erc20_approval_gas_sponsoring: false,
            max_sponsored_approval_gas: 100_000,
            max_approval_funding_wei: 1_000_000_000_000_000,
        }
    }
}

/// What the facilitator does with a payment from a counterfactual (EIP-6492)
/// wallet that is not deployed yet. In configuration files: `"off"` or
/// `"deploy"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CounterfactualWallets {
    /// Refuse it at verification
    /// (`invalid_exact_evm_payload_undeployed_smart_wallet`); nothing is sent.
    #[default]
    Off,
    /// Deploy the wallet (the factory call its signature carries, sent from
    /// the facilitator's signer within `max_wallet_deployment_gas`), then
    /// settle.
    Deploy,
}

struct ChainState {
    config: EvmChainConfig,
    slots: Vec<SignerSlot>,
    next_slot: AtomicUsize,
    domains: std::sync::Mutex<HashMap<Address, (String, String)>>,
    gas_price: std::sync::Mutex<Option<(u128, Instant)>>,
    /// Current `eth_getLogs` chunk size (see `EvmChainConfig::log_range_blocks`).
    log_range: AtomicU64,
    /// Earlier searches for the execution of used nonces.
    searches: SearchCache,
    /// One lock per authorization being settled, so concurrent settles of the
    /// same authorization run one after the other (the second then finds the
    /// first's transaction instead of sending a doomed duplicate).
    authorizations: KeyedLocks<AuthorizationKey>,
    /// One lock per (token, payer), held from the funds check to the
    /// broadcast, so that transfers in flight count against the balance.
    payers: KeyedLocks<PayerKey>,
    /// Transactions broadcast whose outcome is not known yet.
    attempts: Attempts,
    /// Learns receipts per block for every settlement of the chain.
    receipts: ReceiptWatcher,
}

/// Builder for [`ExactEvmFacilitator`].
pub struct ExactEvmFacilitatorBuilder {
    chains: Vec<EvmChainConfig>,
    valid_before_buffer: Duration,
    receipt_timeout: Duration,
    receipt_poll_max: Duration,
    rebroadcast_interval: Duration,
    dropped_after: Duration,
    clock: Clock,
    crash_after_broadcast: bool,
}

impl Default for ExactEvmFacilitatorBuilder {
    fn default() -> Self {
        Self {
            chains: Vec::new(),
            valid_before_buffer: Duration::from_secs(6),
            receipt_timeout: Duration::from_secs(20),
            receipt_poll_max: Duration::from_millis(500),
            rebroadcast_interval: Duration::from_secs(3),
            dropped_after: Duration::from_secs(60),
            clock: system_clock(),
            crash_after_broadcast: false,
        }
    }
}

impl ExactEvmFacilitatorBuilder {
    /// Adds a chain.
    pub fn chain(mut self, chain: EvmChainConfig) -> Self {
        self.chains.push(chain);
        self
    }

    /// Minimum remaining validity of an authorization (default 6 s), so that
    /// it cannot expire between verification and inclusion in a block.
    pub fn valid_before_buffer(mut self, buffer: Duration) -> Self {
        self.valid_before_buffer = buffer;
        self
    }

    /// How long settlement waits for receipts before answering "pending"
    /// (default 20 s; one budget for a wallet deployment and the transfer).
    /// Keep it below the time resource servers give `/settle`.
    pub fn receipt_timeout(mut self, timeout: Duration) -> Self {
        self.receipt_timeout = timeout;
        self
    }

    /// Longest pause between two polls of the chain's receipt watcher (it
    /// polls at once after a new block or when a new wait starts, then after pauses
    /// starting at 1 ms and doubling up to this), and between receipt checks
    /// on a node without `eth_getBlockReceipts`.
    pub fn receipt_poll_max(mut self, interval: Duration) -> Self {
        self.receipt_poll_max = interval;
        self
    }

    /// How long a broadcast transaction may go without a receipt before it is
    /// sent again (default 3 s). Nodes drop transactions from their pools
    /// (eviction, restarts, pool bugs); the signed bytes are identical, so a
    /// re-broadcast can never pay twice, and a nonce gap left by a dropped
    /// transaction would otherwise hold back every later one of its signer.
    pub fn rebroadcast_interval(mut self, interval: Duration) -> Self {
        self.rebroadcast_interval = interval;
        self
    }

    /// How long the node must go on not knowing an earlier settlement
    /// transaction this process did not sign itself (one the facilitator's
    /// ledger names, after a restart) before a re-run may sign a new one
    /// (default 60 s). A transaction this process signed is sent again
    /// instead, and one whose nonce another transaction used is dropped at
    /// once.
    pub fn dropped_after(mut self, grace: Duration) -> Self {
        self.dropped_after = grace;
        self
    }

    /// Replaces the clock (tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Fault injection for crash-recovery tests: abort the whole process
    /// right after a settlement transaction is broadcast, before its outcome
    /// is known or recorded. Never enable in production.
    pub fn crash_after_broadcast(mut self, crash: bool) -> Self {
        self.crash_after_broadcast = crash;
        self
    }

    /// Builds the facilitator.
    pub fn build(self) -> Result<ExactEvmFacilitator, SchemeError> {
        let mut chains = HashMap::new();
        for config in self.chains {
            if config.signers.is_empty() {
                return Err(SchemeError::InvalidRequirements(format!(
                    "chain {} has no settlement signer",
                    config.network.chain
                )));
            }
            let slots = config
                .signers
                .iter()
                .map(|signer| {
                    let rpc = Arc::clone(&config.rpc);
                    SignerSlot::new(Arc::clone(signer), rpc, self.crash_after_broadcast)
                })
                .collect();
            let receipts = ReceiptWatcher::new(Arc::clone(&config.rpc), self.receipt_poll_max);
            chains.insert(
                config.network.chain_id,
                ChainState {
                    log_range: AtomicU64::new(config.log_range_blocks.max(1)),
                    config,
                    slots,
                    next_slot: AtomicUsize::new(0),
                    domains: std::sync::Mutex::new(HashMap::new()),
                    gas_price: std::sync::Mutex::new(None),
                    searches: SearchCache::default(),
                    authorizations: KeyedLocks::default(),
                    payers: KeyedLocks::default(),
                    attempts: Attempts::default(),
                    receipts,
                },
            );
        }
        Ok(ExactEvmFacilitator {
            chains,
            valid_before_buffer: self.valid_before_buffer.as_secs(),
            receipt_timeout: self.receipt_timeout,
            rebroadcast_interval: self.rebroadcast_interval,
            dropped_after: self.dropped_after,
            clock: self.clock,
        })
    }
}

/// Verifies and settles `exact` EIP-3009 payments on the configured chains.
pub struct ExactEvmFacilitator {
    chains: HashMap<u64, ChainState>,
    valid_before_buffer: u64,
    receipt_timeout: Duration,
    rebroadcast_interval: Duration,
    dropped_after: Duration,
    clock: Clock,
}

/// A payment refused by verification.
struct Rejection {
    reason: ErrorReason,
    message: String,
    payer: Option<Address>,
}

fn reject(reason: ErrorReason, message: impl Into<String>, payer: Option<Address>) -> Rejection {
    Rejection {
        reason,
        message: message.into(),
        payer,
    }
}

/// A payment that passed every check.
struct Verified<'a> {
    chain: &'a ChainState,
    asset: Address,
    /// The payload as it will be executed (an EIP-6492 wrapper removed).
    payload: ExactEvmPayload,
    calldata: Vec<u8>,
    /// Factory call deploying a counterfactual (EIP-6492) wallet before the
    /// transfer, with its gas limit.
    deploy: Option<Deployment>,
}

/// A factory call deploying a counterfactual wallet.
struct Deployment {
    factory: Address,
    calldata: Bytes,
    gas_limit: u64,
}

/// Outcome of the checks: infrastructure errors are `Err`, refusals are
/// `Ok(Err(Rejection))`.
type Checked<'a> = Result<Result<Verified<'a>, Rejection>, SchemeError>;

fn chain_error(error: RpcError) -> SchemeError {
    SchemeError::Chain(error.to_string())
}

/// Whether `signature` is a plain 65-byte ECDSA signature by `from` over `digest`.
fn ecdsa_signer_matches(signature: &[u8], digest: &B256, from: Address) -> bool {
    crate::ecrecover::recover_address(signature, digest) == Some(from)
}

/// Whether `receipt` carries `Transfer(from, to, value)` emitted by `asset`.
fn has_transfer_log(
    receipt: &Receipt,
    asset: Address,
    from: Address,
    to: Address,
    value: U256,
) -> bool {
    receipt.logs.iter().any(|log| {
        log.address == asset
            && log.topics.len() == 3
            && log.topics[0] == IEip3009Token::Transfer::SIGNATURE_HASH
            && log.topics[1] == from.into_word()
            && log.topics[2] == to.into_word()
            && log.data.len() == 32
            && U256::from_be_slice(&log.data) == value
    })
}

/// A refused settlement's answer.
fn failure(network: &ChainId, rejection: Rejection, transaction: String) -> SettleResponse {
    SettleResponse::failed(
        network.clone(),
        rejection.reason,
        rejection.payer.map(|p| p.to_string()),
        transaction,
    )
    .with_message(rejection.message)
}

/// The answer for a transaction that was (or may have been) broadcast but is
/// not confirmed: it may still land, so never "failed".
fn pending(
    network: &ChainId,
    payer: Option<String>,
    hash: B256,
    message: String,
) -> SettleResponse {
    SettleResponse::failed(
        network.clone(),
        ErrorReason::TRANSACTION_PENDING,
        payer,
        hash.to_string(),
    )
    .with_message(message)
}

/// Whether a node's (lowercased) refusal says it already holds the
/// transaction: geth and reth say "already known", anvil "transaction
/// already imported", Besu "known transaction".
fn already_known(message: &str) -> bool {
    ["already known", "already imported", "known transaction"]
        .iter()
        .any(|text| message.contains(text))
}

/// Signs `tx` with the signer of `slot`: its hash and the bytes to
/// broadcast, registered with the chain's receipt watcher (before any
/// broadcast, so that the watcher cannot miss its block).
async fn sign_transaction(
    chain: &ChainState,
    slot: usize,
    tx: TxEip1559,
) -> Result<Broadcast, SchemeError> {
    let signer = &chain.slots[slot].signer;
    let signature = signer
        .sign_hash(&tx.signature_hash())
        .await
        .map_err(|e| SchemeError::Signing(e.to_string()))?;
    let envelope = TxEnvelope::from(tx.clone().into_signed(signature));
    let hash = *envelope.tx_hash();
    Ok(Broadcast {
        hash,
        raw: envelope.encoded_2718(),
        tx,
        slot,
        _receipt_watch: Arc::new(chain.receipts.register(hash)),
    })
}

/// A duration in whole microseconds, for timing logs.
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn revert_message(error: &RpcError) -> String {
    match error {
        RpcError::Node { message, data, .. } => match data {
            Some(data) => format!("{message} ({data})"),
            None => message.clone(),
        },
        other => other.to_string(),
    }
}

impl ExactEvmFacilitator {
    /// Starts a builder.
    pub fn builder() -> ExactEvmFacilitatorBuilder {
        ExactEvmFacilitatorBuilder::default()
    }

    /// The facilitator's clock (Unix seconds).
    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }

    /// EIP-712 name and version of `asset`, read from the token once and
    /// cached; falls back to the configured table for tokens lacking the
    /// getters.
    async fn domain_of(
        &self,
        chain: &ChainState,
        asset: Address,
    ) -> Result<(String, String), SchemeError> {
        if let Some(cached) = chain
            .domains
            .lock()
            .ok()
            .and_then(|d| d.get(&asset).cloned())
        {
            return Ok(cached);
        }
        let answers = chain
            .config
            .rpc
            .batch(vec![
                (
                    "eth_call",
                    call_params(None, asset, &IEip3009Token::nameCall {}.abi_encode()),
                ),
                (
                    "eth_call",
                    call_params(None, asset, &IEip3009Token::versionCall {}.abi_encode()),
                ),
            ])
            .await
            .map_err(chain_error)?;
        let mut answers = answers.into_iter();
        let name = answers
            .next()
            .and_then(|r| decode_bytes(r).ok())
            .and_then(|b| IEip3009Token::nameCall::abi_decode_returns(&b).ok());
        let version = answers
            .next()
            .and_then(|r| decode_bytes(r).ok())
            .and_then(|b| IEip3009Token::versionCall::abi_decode_returns(&b).ok());
        let configured = chain.config.network.asset(asset);
        let domain = match (name, version, configured) {
            (Some(name), Some(version), _) => (name, version),
            (name, version, Some(known)) => (
                name.unwrap_or_else(|| known.eip712_name.clone()),
                version.unwrap_or_else(|| known.eip712_version.clone()),
            ),
            _ => {
                return Err(SchemeError::Chain(format!(
                    "could not read the EIP-712 domain of {asset}"
                )));
            }
        };
        if let Ok(mut domains) = chain.domains.lock() {
            domains.insert(asset, domain.clone());
        }
        Ok(domain)
    }

    /// Current gas price, cached for a second per chain.
    async fn gas_price(&self, chain: &ChainState) -> Result<u128, SchemeError> {
        if let Some((price, at)) = chain.gas_price.lock().ok().and_then(|g| *g)
            && at.elapsed() < Duration::from_secs(1)
        {
            return Ok(price);
        }
        let price = chain.config.rpc.gas_price().await.map_err(chain_error)?;
        if let Ok(mut cached) = chain.gas_price.lock() {
            *cached = Some((price, Instant::now()));
        }
        Ok(price)
    }

    /// Signs and broadcasts a transaction calling `to` with `data` from the
    /// next signer.
    async fn send(
        &self,
        chain: &ChainState,
        call: (Address, &[u8], u64),
        payer: Address,
        observer: &dyn SettlementObserver,
    ) -> Result<Result<Broadcast, Rejection>, SchemeError> {
        self.send_from(chain, None, call, U256::ZERO, payer, observer)
            .await
    }

    /// [`Self::send`] from the signer of `slot` (`None`: the next one, round
    /// robin), for transfer methods whose contract checks who calls it.
    async fn send_from(
        &self,
        chain: &ChainState,
        slot: Option<usize>,
        call: (Address, &[u8], u64),
        value: U256,
        payer: Address,
        observer: &dyn SettlementObserver,
    ) -> Result<Result<Broadcast, Rejection>, SchemeError> {
        let config = &chain.config;
        let gas_price = self.gas_price(chain).await?;
        if gas_price > config.max_fee_per_gas {
            return Ok(Err(reject(
                ErrorReason::UNEXPECTED_SETTLE_ERROR,
                format!(
                    "gas price {gas_price} wei is above the facilitator's cap; try again later"
                ),
                Some(payer),
            )));
        }
        let priority = gas_price.min(config.max_priority_fee_per_gas);
        let max_fee = gas_price
            .saturating_mul(2)
            .saturating_add(priority)
            .min(config.max_fee_per_gas);
        let index = slot
            .filter(|slot| *slot < chain.slots.len())
            .unwrap_or_else(|| chain.next_slot.fetch_add(1, Ordering::Relaxed) % chain.slots.len());
        let build = |nonce| TxEip1559 {
            chain_id: config.network.chain_id,
            nonce,
            gas_limit: call.2,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority,
            to: TxKind::Call(call.0),
            value,
            access_list: Default::default(),
            input: Bytes::copy_from_slice(call.1),
        };
        let line = &chain.slots[index].line;
        match line.broadcast(chain, index, &build, observer).await? {
            Sent::Broadcast(sent) => Ok(Ok(sent)),
            Sent::Refused(error) => Ok(Err(reject(
                ErrorReason::INVALID_TRANSACTION_STATE,
                format!(
                    "node refused the settlement transaction: {}",
                    revert_message(&error)
                ),
                Some(payer),
            ))),
        }
    }

    /// Waits for transaction `hash`'s receipt from the chain's receipt
    /// watcher until it appears or `deadline` passes, sending its signed
    /// bytes `raw` (when known) again whenever a re-broadcast interval passes
    /// without one. Transport failures are retried; a node error ends the
    /// wait.
    async fn wait_receipt(
        &self,
        chain: &ChainState,
        hash: B256,
        raw: Option<&[u8]>,
        deadline: Instant,
    ) -> Result<Option<Receipt>, SchemeError> {
        let waited = Instant::now();
        let receipt = chain
            .receipts
            .wait(hash, raw, deadline, self.rebroadcast_interval)
            .await
            .map_err(chain_error);
        tracing::debug!(%hash, wait_us = micros(waited.elapsed()), "receipt wait ended");
        receipt
    }

    /// Looks on chain for an earlier execution of this very authorization
    /// (front-run, or settled before by us) and returns its transaction hash
    /// if it moved exactly `value` from `from` to `to`. An execution of
    /// another authorization reusing the nonce does not count.
    async fn find_execution(
        &self,
        chain: &ChainState,
        asset: Address,
        payload: &ExactEvmPayload,
    ) -> Result<Option<B256>, SchemeError> {
        let auth = &payload.authorization;
        let search = LogSearch {
            rpc: &chain.config.rpc,
            asset,
            range_blocks: &chain.log_range,
            lookback_seconds: chain.config.reconcile_lookback.as_secs(),
            cache: &chain.searches,
        };
        let Some(hash) = search.used_by(auth).await.map_err(chain_error)? else {
            return Ok(None);
        };
        let Some(receipt) = chain.config.rpc.receipt(hash).await.map_err(chain_error)? else {
            return Ok(None);
        };
        let paid = receipt.succeeded()
            && has_transfer_log(&receipt, asset, auth.from, auth.to, auth.value.as_u256());
        if paid && search.executed(hash, auth).await.map_err(chain_error)? {
            return Ok(Some(hash));
        }
        tracing::info!(%hash, "the nonce was used by another authorization");
        Ok(None)
    }

    /// Whether `payload`'s signature is `from`'s: an ECDSA signature by
    /// `from`, or else (a contract wallet) `from`'s EIP-1271 approval, which
    /// costs one node call. An EIP-6492 wrapper is looked through.
    async fn signed_by_payer(
        &self,
        chain: &ChainState,
        asset: Address,
        payload: &ExactEvmPayload,
    ) -> Result<bool, SchemeError> {
        let (name, version) = self.domain_of(chain, asset).await?;
        let domain = eip712_domain(&name, &version, chain.config.network.chain_id, asset);
        let auth = &payload.authorization;
        let digest = signing_hash(auth, &domain);
        let signature = executed_payload(payload).signature;
        if ecdsa_signer_matches(&signature, &digest, auth.from) {
            return Ok(true);
        }
        let call = IErc1271::isValidSignatureCall {
            hash: digest,
            signature,
        };
        // A node error (no code at `from`, a reverting wallet) is a refusal.
        let answer = chain
            .config
            .rpc
            .call(None, auth.from, &call.abi_encode())
            .await;
        Ok(answer
            .ok()
            .and_then(|b| IErc1271::isValidSignatureCall::abi_decode_returns(&b).ok())
            .is_some_and(|magic| magic.0 == ERC1271_MAGIC_VALUE))
    }

    /// Settlement of a payment that verification refused: nothing is sent.
    /// A used nonce or an expired authorization is first looked up on chain:
    /// when this very authorization was executed (front-run, or an earlier
    /// settlement), the payer was charged and the answer says so, with that
    /// transaction. Only an authorization its payer signed is looked up: the
    /// search reads many blocks, and (from, nonce) of any old transfer is
    /// public.
    async fn settle_refused(
        &self,
        rejection: Rejection,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<SettleResponse, SchemeError> {
        let network = &requirements.network;
        // An expired authorization may have been executed before it expired
        // (e.g. a settlement re-run after a restart): the chain decides
        // first, so a landed transfer is never reported as failed.
        let may_have_executed =
            rejection.reason == reasons::NONCE_USED || rejection.reason == reasons::VALID_BEFORE;
        if may_have_executed
            && let Some(chain) = network.eip155_id().and_then(|id| self.chains.get(&id))
            && let (Ok(asset), Ok(exact)) = (
                requirements.asset.parse::<Address>(),
                ExactEvmPayload::from_json(&payload.payload),
            )
            && self.signed_by_payer(chain, asset, &exact).await?
            && let Some(hash) = self.find_execution(chain, asset, &exact).await?
        {
            tracing::info!(%hash, "authorization was already settled on chain");
            return Ok(SettleResponse::settled(
                network.clone(),
                hash.to_string(),
                Some(exact.authorization.from.to_string()),
            ));
        }
        Ok(failure(network, rejection, String::new()))
    }

    /// Deploys the payer's counterfactual wallet; `Some` failure answer when
    /// that did not work.
    async fn deploy_wallet(
        &self,
        verified: &Verified<'_>,
        deployment: &Deployment,
        deadline: Instant,
        observer: &dyn SettlementObserver,
        network: &ChainId,
    ) -> Result<Option<SettleResponse>, SchemeError> {
        let payer = verified.payload.authorization.from;
        let call = (
            deployment.factory,
            deployment.calldata.as_ref(),
            deployment.gas_limit,
        );
        let sent = match self.send(verified.chain, call, payer, observer).await? {
            Ok(sent) => sent,
            Err(rejection) => return Ok(Some(failure(network, rejection, String::new()))),
        };
        let receipt = self
            .wait_receipt(verified.chain, sent.hash, Some(&sent.raw), deadline)
            .await;
        let hash = sent.hash;
        let problem = match receipt {
            Ok(Some(receipt)) if receipt.succeeded() => return Ok(None),
            Ok(Some(_)) => format!("deployment of the counterfactual wallet reverted ({hash})"),
            Ok(None) | Err(_) => format!(
                "deployment of the counterfactual wallet not confirmed in time ({hash}); retry later"
            ),
        };
        // The payment itself was never sent: a failure that charged nobody
        // (the transaction field names payments only).
        let rejection = reject(ErrorReason::INVALID_TRANSACTION_STATE, problem, Some(payer));
        Ok(Some(failure(network, rejection, String::new())))
    }

    async fn settle_checked(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        observer: &dyn SettlementObserver,
    ) -> Result<SettleResponse, SchemeError> {
        let network = &requirements.network;
        // One receipt budget for the whole settlement (deployment included).
        let deadline = Instant::now() + self.receipt_timeout;
        if let Some(answer) = self
            .resume_attempt(payload, requirements, deadline, observer)
            .await?
        {
            return Ok(answer);
        }
        let verified = match self.check(payload, requirements).await? {
            Ok(verified) => verified,
            Err(rejection) => return self.settle_refused(rejection, payload, requirements).await,
        };
        let sent = match self
            .broadcast_transfer(&verified, deadline, observer, network)
            .await?
        {
            Ok(sent) => sent,
            Err(refused) => return Ok(refused),
        };
        let outcome = Outcome {
            chain: verified.chain,
            asset: verified.asset,
            payload: &verified.payload,
            network,
        };
        self.await_outcome(&outcome, sent.hash, Some(&sent.raw), deadline)
            .await
    }

    /// Deploys the payer's wallet if needed and broadcasts the transfer,
    /// under the payer's lock: transfers of the same payer in flight count
    /// against its balance, and a payment they leave uncovered is refused
    /// with `insufficient_funds` before anything is sent.
    async fn broadcast_transfer(
        &self,
        verified: &Verified<'_>,
        deadline: Instant,
        observer: &dyn SettlementObserver,
        network: &ChainId,
    ) -> Result<Result<Broadcast, SettleResponse>, SchemeError> {
        let chain = verified.chain;
        let auth = &verified.payload.authorization;
        let key = (verified.asset, auth.from, auth.nonce);
        let _payer = chain.payers.lock((verified.asset, auth.from)).await;
        if let Some(rejection) = self.uncovered_by_balance(verified).await? {
            return Ok(Err(failure(network, rejection, String::new())));
        }
        if let Some(deployment) = &verified.deploy
            && let Some(failed) = self
                .deploy_wallet(verified, deployment, deadline, observer, network)
                .await?
        {
            return Ok(Err(failed));
        }
        let call = (
            verified.asset,
            verified.calldata.as_slice(),
            chain.config.gas_limit,
        );
        let sent = match self.send(chain, call, auth.from, observer).await? {
            Ok(sent) => sent,
            Err(rejection) => return Ok(Err(failure(network, rejection, String::new()))),
        };
        let attempt = super::inflight::Attempt {
            calldata: verified.calldata.clone(),
            token: verified.asset,
            value: auth.value.as_u256(),
            valid_before: u64::try_from(auth.valid_before.as_u256()).unwrap_or(u64::MAX),
            hash: sent.hash,
            sender: chain.slots[sent.slot].signer.address(),
            nonce: sent.tx.nonce,
            signed: Some(sent.clone()),
            unknown_since: None,
        };
        chain.attempts.record(key, attempt, (self.clock)());
        Ok(Ok(sent))
    }

    /// Waits for transaction `hash` of `outcome`'s authorization (sending
    /// `raw` again while it has no receipt) and judges its receipt; `pending`
    /// when none comes before `deadline`.
    async fn await_outcome(
        &self,
        outcome: &dyn method::Settlement,
        hash: B256,
        raw: Option<&[u8]>,
        deadline: Instant,
    ) -> Result<SettleResponse, SchemeError> {
        let payer = Some(outcome.payer().to_string());
        let network = outcome.network();
        let receipt = match self
            .wait_receipt(outcome.chain(), hash, raw, deadline)
            .await
        {
            Ok(Some(receipt)) => receipt,
            Ok(None) => {
                tracing::warn!(%hash, "settlement not confirmed in time; reporting pending");
                let message = "transaction sent but not yet confirmed".to_owned();
                return Ok(pending(network, payer, hash, message));
            }
            Err(error) => {
                tracing::warn!(%hash, %error, "receipt unavailable; reporting pending");
                let message = format!("transaction sent; receipt unavailable: {error}");
                return Ok(pending(network, payer, hash, message));
            }
        };
        // Mined: the chain now has the answer, whatever it is.
        outcome.chain().attempts.forget(&outcome.key(), hash);
        outcome.judge(self, hash, &receipt).await
    }

    /// The settlement's outcome from its transaction's receipt.
    async fn judge_receipt(
        &self,
        outcome: &Outcome<'_>,
        hash: B256,
        receipt: &Receipt,
    ) -> Result<SettleResponse, SchemeError> {
        let (network, asset) = (outcome.network, outcome.asset);
        let auth = &outcome.payload.authorization;
        let payer = Some(auth.from.to_string());
        let value = auth.value.as_u256();
        if receipt.succeeded() && has_transfer_log(receipt, asset, auth.from, auth.to, value) {
            let mut response = SettleResponse::settled(network.clone(), hash.to_string(), payer);
            response.amount = Some(auth.value);
            return Ok(response);
        }
        if !receipt.succeeded()
            && let Some(earlier) = self
                .find_execution(outcome.chain, asset, outcome.payload)
                .await?
        {
            // Our transaction lost a race to another execution of the same
            // authorization (a front-runner, or our own earlier attempt that
            // was still in the mempool when a retry re-verified): the payer
            // was charged exactly once, by that transaction.
            tracing::info!(%hash, %earlier, "authorization executed by another transaction");
            let mut response = SettleResponse::settled(network.clone(), earlier.to_string(), payer);
            response.amount = Some(auth.value);
            return Ok(response);
        }
        Ok(SettleResponse::failed(
            network.clone(),
            ErrorReason::INVALID_TRANSACTION_STATE,
            payer,
            hash.to_string(),
        )
        .with_message(if receipt.succeeded() {
            "transaction succeeded but did not transfer the exact amount to payTo"
        } else {
            "settlement transaction reverted"
        }))
    }
}

/// The authorization a settlement transaction executes, for judging it.
struct Outcome<'a> {
    chain: &'a ChainState,
    asset: Address,
    /// The payload as executed (an EIP-6492 wrapper removed).
    payload: &'a ExactEvmPayload,
    network: &'a ChainId,
}

impl Outcome<'_> {
    fn key(&self) -> AuthorizationKey {
        let auth = &self.payload.authorization;
        (self.asset, auth.from, auth.nonce)
    }
}

/// `payload` as the token executes it: an EIP-6492 wrapper (deployment data
/// for a counterfactual wallet) removed from the signature.
fn executed_payload(payload: &ExactEvmPayload) -> ExactEvmPayload {
    match eip6492::unwrap(&payload.signature) {
        Some(wrapped) => ExactEvmPayload {
            authorization: payload.authorization.clone(),
            signature: wrapped.inner_signature,
        },
        None => payload.clone(),
    }
}

impl SchemeFacilitator for ExactEvmFacilitator {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn replay_reason(&self) -> ErrorReason {
        reasons::NONCE_USED
    }

    /// `eip155:<chain>:<token>:<from>:<nonce>`, lower case: what an
    /// EIP-3009 authorization spends, however its payload is spelled.
    fn spend_key(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<String> {
        if let TransferMethod::Permit2(_) = TransferMethod::of_exact(requirements) {
            return permit2::spend_key(payload, requirements);
        }
        let chain = requirements.network.eip155_id()?;
        let token: Address = requirements.asset.parse().ok()?;
        let exact = ExactEvmPayload::from_json(&payload.payload).ok()?;
        let auth = &exact.authorization;
        Some(format!(
            "eip155:{chain}:{token:#x}:{:#x}:{:#x}",
            auth.from, auth.nonce
        ))
    }

    /// `authorization.from`, when the 65-byte signature recovers to it over
    /// the authorization's EIP-712 hash (domain: the token's as read before,
    /// else the asset table's, else the requirements' `extra`). Contract
    /// wallets are not recognised here (that needs the chain).
    fn authenticated_payer(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<String> {
        if let TransferMethod::Permit2(_) = TransferMethod::of_exact(requirements) {
            return self.permit2_payer(payload, requirements);
        }
        let chain = self.chains.get(&requirements.network.eip155_id()?)?;
        let asset: Address = requirements.asset.parse().ok()?;
        let exact = ExactEvmPayload::from_json(&payload.payload).ok()?;
        let cached = chain
            .domains
            .lock()
            .ok()
            .and_then(|domains| domains.get(&asset).cloned());
        let (name, version) = match cached {
            Some(domain) => domain,
            None => match chain.config.network.asset(asset) {
                Some(known) => (known.eip712_name.clone(), known.eip712_version.clone()),
                None => (
                    requirements.extra_str("name")?.to_owned(),
                    requirements.extra_str("version")?.to_owned(),
                ),
            },
        };
        let domain = eip712_domain(&name, &version, chain.config.network.chain_id, asset);
        let digest = signing_hash(&exact.authorization, &domain);
        let from = exact.authorization.from;
        (crate::ecrecover::recover_address(&exact.signature, &digest) == Some(from))
            .then(|| from.to_string().to_ascii_lowercase())
    }

    fn networks(&self) -> Vec<ChainId> {
        let mut networks: Vec<ChainId> = self
            .chains
            .values()
            .map(|c| c.config.network.chain.clone())
            .collect();
        networks.sort();
        networks
    }

    fn signers(&self, network: &ChainId) -> Vec<String> {
        network
            .eip155_id()
            .and_then(|id| self.chains.get(&id))
            .map(|chain| {
                chain
                    .slots
                    .iter()
                    .map(|s| s.signer.address().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn verify<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<VerifyResponse, SchemeError>> {
        if let TransferMethod::Permit2(proxy) = TransferMethod::of_exact(requirements) {
            return Box::pin(self.permit2_verify(payload, requirements, proxy));
        }
        Box::pin(async move {
            Ok(match self.check(payload, requirements).await? {
                Ok(verified) => {
                    VerifyResponse::valid(verified.payload.authorization.from.to_string())
                }
                Err(rejection) => VerifyResponse::invalid(
                    rejection.reason,
                    rejection.payer.map(|p| p.to_string()),
                )
                .with_message(rejection.message),
            })
        })
    }

    fn settle<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        self.settle_observed(payload, requirements, &NoObserver)
    }

    /// See `super::lookup`; an authorization used by an unknown transaction
    /// is looked for with [`Self::find_execution`].
    fn lookup_settlement<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        known_transaction: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SettlementLookup>, SchemeError>> {
        use super::lookup::{ChainView, answer, pays, read};
        if let TransferMethod::Permit2(proxy) = TransferMethod::of_exact(requirements) {
            return Box::pin(self.permit2_lookup(payload, requirements, proxy, known_transaction));
        }
        Box::pin(async move {
            let chain = requirements
                .network
                .eip155_id()
                .and_then(|id| self.chains.get(&id));
            let asset = requirements.asset.parse::<Address>();
            let exact = ExactEvmPayload::from_json(&payload.payload);
            let (Some(chain), Ok(asset), Ok(exact)) = (chain, asset, exact) else {
                return Ok(None);
            };
            if !pays(&exact, requirements, asset) {
                return Ok(None);
            }
            let known = known_transaction.and_then(|t| t.parse::<B256>().ok());
            let view = read(&chain.config.rpc, asset, &exact, known)
                .await
                .map_err(chain_error)?;
            let executed = match view {
                ChainView::Executed(hash) => Some(hash),
                ChainView::UsedElsewhere => self.find_execution(chain, asset, &exact).await?,
                ChainView::Open | ChainView::Expired => None,
            };
            match (view, known) {
                // The facilitator re-runs an open settlement next: it must
                // wait for this transaction rather than sign another.
                (ChainView::Open, Some(hash)) => {
                    self.remember_pending(chain, asset, &exact, hash).await?;
                }
                (ChainView::Open, None) => {}
                // Executed, or never executable: nothing is in flight.
                _ => {
                    let auth = &exact.authorization;
                    chain.attempts.forget_all(&(asset, auth.from, auth.nonce));
                }
            }
            Ok(Some(answer(&requirements.network, &exact, view, executed)))
        })
    }

    fn settle_observed<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        observer: &'a dyn SettlementObserver,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        if let TransferMethod::Permit2(proxy) = TransferMethod::of_exact(requirements) {
            return Box::pin(self.permit2_settle(payload, requirements, proxy, observer));
        }
        Box::pin(async move {
            // Serialise settles of the same authorization (see `authorizations`).
            let key = ExactEvmPayload::from_json(&payload.payload)
                .ok()
                .zip(requirements.asset.parse::<Address>().ok())
                .map(|(p, asset)| (asset, p.authorization.from, p.authorization.nonce));
            let chain = requirements
                .network
                .eip155_id()
                .and_then(|id| self.chains.get(&id));
            let _guard = match (key, chain) {
                (Some(key), Some(chain)) => Some(chain.authorizations.lock(key).await),
                _ => None,
            };
            self.settle_checked(payload, requirements, observer).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Log;

    fn transfer_log(token: Address, from: Address, to: Address, value: u64) -> Log {
        Log {
            address: token,
            topics: vec![
                IEip3009Token::Transfer::SIGNATURE_HASH,
                from.into_word(),
                to.into_word(),
            ],
            data: U256::from(value).to_be_bytes::<32>().to_vec().into(),
            transaction_hash: None,
            block_number: None,
        }
    }

    fn receipt(logs: Vec<Log>) -> Receipt {
        Receipt {
            transaction_hash: B256::ZERO,
            status: Some(U256::from(1)),
            block_number: None,
            gas_used: None,
            logs,
        }
    }

    /// A successful receipt is not proof of payment (field lesson 12): the
    /// exact `Transfer` event of the expected token must be there.
    #[test]
    fn settlement_truth_is_the_transfer_event() {
        let (token, from, to) = (
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
        );
        let value = U256::from(10_000);
        assert!(has_transfer_log(
            &receipt(vec![transfer_log(token, from, to, 10_000)]),
            token,
            from,
            to,
            value
        ));
        assert!(
            !has_transfer_log(&receipt(vec![]), token, from, to, value),
            "no event"
        );
        assert!(
            !has_transfer_log(
                &receipt(vec![transfer_log(token, from, to, 9_900)]),
                token,
                from,
                to,
                value
            ),
            "fee-on-transfer moved less"
        );
        assert!(
            !has_transfer_log(
                &receipt(vec![transfer_log(
                    Address::repeat_byte(9),
                    from,
                    to,
                    10_000
                )]),
                token,
                from,
                to,
                value
            ),
            "event from another contract"
        );
        assert!(
            !has_transfer_log(
                &receipt(vec![transfer_log(
                    token,
                    from,
                    Address::repeat_byte(4),
                    10_000
                )]),
                token,
                from,
                to,
                value
            ),
            "paid someone else"
        );
    }
}
