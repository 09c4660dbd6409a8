//! Receipts learned per block instead of per transaction: one watcher per
//! chain, shared by every settlement and signer, follows new blocks while
//! someone waits and wakes the waiters of the transactions it finds.
//!
//! While at least one settlement waits, a driver task asks the node, in one
//! round trip, for the latest block number and the receipts of the next
//! block it has not read (`eth_getBlockReceipts`), reads any further blocks
//! up to the head, and hands each awaited receipt to its waiters. It polls
//! again at once after a block, when a new waiter arrives, else after a pause
//! doubling from 1 ms to the facilitator's `receipt_poll_max`; it stops when
//! nobody waits (no request at all while idle).
//!
//! A transaction is *covered* when it was registered (before its broadcast)
//! while the driver was following blocks: every block it can land in is
//! read after the registration. Any other transaction (the driver was idle,
//! the node reorganised below the blocks read, a transaction of an earlier
//! run) is looked up once with `eth_getTransactionReceipt` after the driver
//! has started following, which covers the blocks before. Every waiter also
//! looks its transaction up directly whenever its re-broadcast interval
//! passes, before sending it again: a transaction that a reorganisation
//! moved into a block the driver had already read is found there, as a
//! per-transaction poll found it before.
//!
//! A node without `eth_getBlockReceipts` (it answers "method not found") is
//! remembered for an hour, one failing it three times in a row for a
//! minute: meanwhile waiters poll their own receipts as before (1 ms
//! doubling up to `receipt_poll_max`), then the driver tries again.
//!
//! A receipt kept from before a wait ended (the settlement was answered
//! `pending`) is confirmed with one direct lookup when a later wait starts,
//! and a reorganisation the driver notices drops every kept receipt: a
//! receipt of a block that is no longer on the chain is never reported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::rpc::{Receipt, RpcClient, RpcError};

/// Most blocks read in one batch when the driver is behind the head.
const BLOCKS_PER_BATCH: u64 = 16;

/// Consecutive `eth_getBlockReceipts` failures after which the node is
/// treated as not offering it.
const FAILURES_BEFORE_FALLBACK: u32 = 3;

/// Shortest pause between two polls.
const MIN_PAUSE: Duration = Duration::from_millis(1);

/// How long a node that does not know `eth_getBlockReceipts` is polled per
/// transaction before the method is tried again.
const UNKNOWN_METHOD_FALLBACK: Duration = Duration::from_secs(3_600);

/// How long a node that failed `eth_getBlockReceipts` repeatedly is polled
/// per transaction before the method is tried again.
const FAILING_METHOD_FALLBACK: Duration = Duration::from_secs(60);

/// The receipt watcher of one chain.
pub(crate) struct ReceiptWatcher {
    shared: Arc<Shared>,
}

struct Shared {
    rpc: Arc<RpcClient>,
    state: Mutex<State>,
    /// Wakes the driver early (a new waiter).
    kick: Notify,
    /// Longest pause between polls.
    poll_max: Duration,
    /// Until when waiters poll per transaction (the node does not offer
    /// `eth_getBlockReceipts`, or it kept failing).
    fallback_until: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct State {
    /// Transactions registered or awaited, by hash.
    slots: HashMap<B256, Slot>,
    /// Waits in progress (the driver runs while there is one).
    waiting: usize,
    /// Whether the driver task runs.
    running: bool,
    /// The next block to read; `None` until the driver knows the head.
    next_block: Option<u64>,
    /// Bumped whenever the driver (re)starts following blocks from the head.
    epoch: u64,
}

/// One awaited transaction.
struct Slot {
    /// Registrations and waits holding the slot (removed at zero).
    holders: usize,
    /// The epoch during which it was registered with the driver following
    /// blocks; `None`: not covered.
    covered: Option<u64>,
    receipt: Option<Receipt>,
    /// A wait on it ended without a receipt (answered `pending`): a receipt
    /// kept since is confirmed before a later wait reports it.
    waited: bool,
    notify: Arc<Notify>,
}

impl ReceiptWatcher {
    /// A watcher over `rpc`, pausing at most `poll_max` between polls.
    pub(crate) fn new(rpc: Arc<RpcClient>, poll_max: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                rpc,
                state: Mutex::new(State::default()),
                kick: Notify::new(),
                poll_max: poll_max.max(MIN_PAUSE),
                fallback_until: Mutex::new(None),
            }),
        }
    }

    /// Registers transaction `hash` before it is broadcast; while the
    /// registration lives, a receipt the driver reads for it is kept.
    pub(crate) fn register(&self, hash: B256) -> Registration {
        let mut state = self.shared.lock();
        self.shared.hold_locked(&mut state, hash, true);
        drop(state);
        Registration {
            shared: Arc::clone(&self.shared),
            hash,
        }
    }

    /// Waits for transaction `hash`'s receipt until `deadline` (`None`
    /// then), sending its signed bytes `raw` (when known) again whenever
    /// `rebroadcast_every` passes without one. Transport failures are
    /// retried; a node error ends the wait.
    pub(crate) async fn wait(
        &self,
        hash: B256,
        raw: Option<&[u8]>,
        deadline: Instant,
        rebroadcast_every: Duration,
    ) -> Result<Option<Receipt>, RpcError> {
        let shared = &self.shared;
        let mut rebroadcast = Rebroadcast::new(hash, raw, rebroadcast_every);
        if !shared.per_transaction() {
            // While the driver is idle the transaction may be mined already,
            // and one lookup may spare starting the driver at all; a receipt
            // kept since an earlier wait ended is confirmed the same way.
            let stale = shared.drop_stale_receipt(hash);
            if (stale || !shared.following())
                && let Some(receipt) = direct_lookup(&shared.rpc, hash).await?
            {
                return Ok(Some(receipt));
            }
            let waiter = Waiter::start(shared, hash);
            if let Some(found) = waiter.follow(&mut rebroadcast, deadline).await? {
                return Ok(found);
            }
        }
        poll_receipt(shared, hash, &mut rebroadcast, deadline).await
    }

    /// The number of transactions registered or awaited (tests).
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.shared.lock().slots.len()
    }
}

/// A transaction registered with the watcher before its broadcast.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    hash: B256,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.release(self.hash);
    }
}

/// Re-broadcasts of one transaction, and the direct receipt lookup that
/// precedes each.
struct Rebroadcast<'a> {
    hash: B256,
    raw: Option<&'a [u8]>,
    every: Duration,
    next: Instant,
}

impl<'a> Rebroadcast<'a> {
    fn new(hash: B256, raw: Option<&'a [u8]>, every: Duration) -> Self {
        Self {
            hash,
            raw,
            every,
            next: Instant::now() + every,
        }
    }

    fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Sends the signed bytes again. The answer only informs the log:
    /// "already known" or "nonce too low" mean the node still has it or has
    /// mined it, and the receipt decides what happened either way.
    async fn send(&mut self, rpc: &RpcClient) {
        self.next = Instant::now() + self.every;
        let (hash, Some(raw)) = (self.hash, self.raw) else {
            return;
        };
        match rpc.send_raw_transaction(raw).await {
            Ok(_) => tracing::warn!(%hash, "transaction still unconfirmed; re-broadcast it"),
            Err(error) => tracing::debug!(%hash, %error, "re-broadcast not needed"),
        }
    }
}

/// `eth_getTransactionReceipt`, a transport failure counted as "not yet".
async fn direct_lookup(rpc: &RpcClient, hash: B256) -> Result<Option<Receipt>, RpcError> {
    match rpc.receipt(hash).await {
        Err(RpcError::Transport(error)) => {
            tracing::warn!(%hash, %error, "receipt poll failed; retrying");
            Ok(None)
        }
        other => other,
    }
}

/// Polls transaction `hash`'s own receipt (1 ms, doubling up to the
/// maximum pause) until it appears or `deadline` passes.
async fn poll_receipt(
    shared: &Shared,
    hash: B256,
    rebroadcast: &mut Rebroadcast<'_>,
    deadline: Instant,
) -> Result<Option<Receipt>, RpcError> {
    let mut pause = MIN_PAUSE;
    loop {
        if let Some(receipt) = direct_lookup(&shared.rpc, hash).await? {
            return Ok(Some(receipt));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        if rebroadcast.due(now) {
            rebroadcast.send(&shared.rpc).await;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(shared.poll_max);
    }
}

/// One wait in progress: holds its slot and keeps the driver running.
struct Waiter<'a> {
    shared: &'a Arc<Shared>,
    hash: B256,
    notify: Arc<Notify>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.waiting -= 1;
        if let Some(slot) = state.slots.get_mut(&self.hash) {
            slot.waited = true;
        }
        drop(state);
        self.shared.release(self.hash);
    }
}

/// What a waiter sees of its transaction.
enum Seen {
    Receipt(Receipt),
    /// Not seen yet; covered by the driver.
    Waiting,
    /// The driver follows blocks since `epoch`; not covered.
    Uncovered(u64),
    /// The driver has not read the head yet.
    Starting,
}

impl<'a> Waiter<'a> {
    fn start(shared: &'a Arc<Shared>, hash: B256) -> Self {
        let notify = {
            let mut state = shared.lock();
            state.waiting += 1;
            // Not covered unless registered: the driver may have read its
            // block already.
            let notify = Arc::clone(&shared.hold_locked(&mut state, hash, false).notify);
            if !state.running {
                state.running = true;
                let driver = Arc::clone(shared);
                tokio::spawn(async move { driver.drive().await });
            }
            notify
        };
        shared.kick.notify_one();
        Self {
            shared,
            hash,
            notify,
        }
    }

    fn seen(&self) -> Seen {
        let state = self.shared.lock();
        let Some(slot) = state.slots.get(&self.hash) else {
            return Seen::Starting;
        };
        if let Some(receipt) = &slot.receipt {
            return Seen::Receipt(receipt.clone());
        }
        match (state.next_block, slot.covered) {
            (None, _) => Seen::Starting,
            (Some(_), Some(epoch)) if epoch == state.epoch => Seen::Waiting,
            (Some(_), _) => Seen::Uncovered(state.epoch),
        }
    }

    /// Marks the slot covered in `epoch` (its blocks before were looked up).
    fn cover(&self, epoch: u64) {
        let mut state = self.shared.lock();
        if state.epoch == epoch
            && let Some(slot) = state.slots.get_mut(&self.hash)
        {
            slot.covered = Some(epoch);
        }
    }

    /// Waits for the driver to find the receipt. `Ok(None)`: the node has
    /// no `eth_getBlockReceipts`, poll directly instead.
    async fn follow(
        &self,
        rebroadcast: &mut Rebroadcast<'_>,
        deadline: Instant,
    ) -> Result<Option<Option<Receipt>>, RpcError> {
        let rpc = &self.shared.rpc;
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.shared.per_transaction() {
                return Ok(None);
            }
            match self.seen() {
                Seen::Receipt(receipt) => return Ok(Some(Some(receipt))),
                Seen::Uncovered(epoch) => {
                    if let Some(receipt) = direct_lookup(rpc, self.hash).await? {
                        return Ok(Some(Some(receipt)));
                    }
                    self.cover(epoch);
                    continue;
                }
                Seen::Waiting | Seen::Starting => {}
            }
            let now = Instant::now();
            if now >= deadline {
                // One last look, as a poll at the deadline had.
                return direct_lookup(rpc, self.hash).await.map(Some);
            }
            if rebroadcast.due(now) {
                // A reorganisation may have moved it into a block already read.
                if let Some(receipt) = direct_lookup(rpc, self.hash).await? {
                    return Ok(Some(Some(receipt)));
                }
                rebroadcast.send(rpc).await;
                continue;
            }
            let until = deadline.min(rebroadcast.next);
            let _ = tokio::time::timeout(until - now, notified).await;
        }
    }
}

/// What one poll of the driver found.
enum Round {
    /// Read new blocks (or started following them).
    Blocks,
    /// No new block.
    Idle,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent: a panic elsewhere while
        // it was held leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `hash`'s slot. `registering`: before its broadcast, so covered
    /// when blocks are followed (it cannot be in a block read before now).
    fn hold_locked<'s>(&self, state: &'s mut State, hash: B256, registering: bool) -> &'s mut Slot {
        let covered = state
            .next_block
            .filter(|_| registering)
            .map(|_| state.epoch);
        let slot = state.slots.entry(hash).or_insert_with(|| Slot {
            holders: 0,
            covered,
            receipt: None,
            waited: false,
            notify: Arc::new(Notify::new()),
        });
        slot.holders += 1;
        slot
    }

    /// Drops the receipt kept for `hash` if a wait on it ended since it
    /// may have been read (the block may have been reorganised away);
    /// whether one was dropped (then look it up directly).
    fn drop_stale_receipt(&self, hash: B256) -> bool {
        let mut state = self.lock();
        let Some(slot) = state.slots.get_mut(&hash) else {
            return false;
        };
        if !slot.waited || slot.receipt.is_none() {
            return false;
        }
        slot.receipt = None;
        slot.covered = None;
        true
    }

    /// Whether waiters poll per transaction now (see `fallback_until`).
    fn per_transaction(&self) -> bool {
        let until = self
            .fallback_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|until| Instant::now() < until)
    }

    /// Polls per transaction for `period`, and wakes every waiter to do so.
    fn fall_back(&self, period: Duration) {
        *self
            .fallback_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + period);
        let mut state = self.lock();
        state.running = false;
        state.next_block = None;
        wake_all(&state);
    }

    fn release(&self, hash: B256) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.get_mut(&hash) {
            slot.holders -= 1;
            if slot.holders == 0 {
                state.slots.remove(&hash);
            }
        }
    }
}

/// Why a poll of the driver failed.
enum RoundError {
    /// No answer: try again after a pause.
    Transport(String),
    /// The node answered with an error or an unexpected shape.
    Failed(RpcError),
    /// The node does not know `eth_getBlockReceipts`.
    Unsupported(RpcError),
}

impl From<RpcError> for RoundError {
    fn from(error: RpcError) -> Self {
        match error {
            RpcError::Transport(text) => Self::Transport(text),
            other => Self::Failed(other),
        }
    }
}

/// Whether a node's error says it does not offer the method at all (not
/// that a block is missing: "header not found" is about the block).
fn method_unknown(error: &RpcError) -> bool {
    let RpcError::Node { code, message, .. } = error else {
        return false;
    };
    let message = message.to_ascii_lowercase();
    *code == -32601
        || (message.contains("method")
            && [
                "not found",
                "not supported",
                "unsupported",
                "does not exist",
                "not available",
            ]
            .iter()
            .any(|text| message.contains(text)))
}

/// Wakes every waiter (to re-check coverage, or to poll on its own).
fn wake_all(state: &State) {
    state
        .slots
        .values()
        .for_each(|slot| slot.notify.notify_waiters());
}

fn quantity(block: u64) -> Value {
    json!([format!("0x{block:x}")])
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, RpcError> {
    serde_json::from_value(value).map_err(|e| RpcError::Decode(e.to_string()))
}

impl Shared {
    /// Whether the driver follows blocks (then a waiter not covered looks
    /// its transaction up once it waits).
    fn following(&self) -> bool {
        self.lock().next_block.is_some()
    }

    /// The driver: polls while someone waits, then stops.
    async fn drive(self: Arc<Self>) {
        let mut pause = MIN_PAUSE;
        let mut failures = 0;
        loop {
            {
                let mut state = self.lock();
                if state.waiting == 0 || self.per_transaction() {
                    state.running = false;
                    state.next_block = None;
                    return;
                }
            }
            match self.round().await {
                Ok(Round::Blocks) => {
                    failures = 0;
                    pause = MIN_PAUSE;
                }
                Ok(Round::Idle) => failures = 0,
                Err(RoundError::Transport(error)) => {
                    tracing::warn!(%error, "block receipts poll failed; retrying");
                }
                Err(RoundError::Failed(error)) if failures + 1 < FAILURES_BEFORE_FALLBACK => {
                    failures += 1;
                    tracing::warn!(%error, "block receipts poll failed; retrying");
                }
                Err(RoundError::Failed(error)) => {
                    tracing::warn!(%error,
                        "eth_getBlockReceipts keeps failing; polling each transaction's receipt for a minute");
                    self.fall_back(FAILING_METHOD_FALLBACK);
                    return;
                }
                Err(RoundError::Unsupported(error)) => {
                    tracing::warn!(%error,
                        "the node does not serve eth_getBlockReceipts; polling each transaction's receipt for an hour");
                    self.fall_back(UNKNOWN_METHOD_FALLBACK);
                    return;
                }
            }
            if tokio::time::timeout(pause, self.kick.notified())
                .await
                .is_ok()
            {
                pause = MIN_PAUSE;
            } else {
                pause = (pause * 2).min(self.poll_max);
            }
        }
    }

    /// One poll: the head and the next block's receipts in one round trip,
    /// then any further blocks up to the head.
    async fn round(&self) -> Result<Round, RoundError> {
        let Some(next) = self.lock().next_block else {
            let head = self.rpc.block_number().await?;
            self.follow_from(head.saturating_add(1));
            return Ok(Round::Blocks);
        };
        let mut answers = self
            .rpc
            .batch(vec![
                ("eth_blockNumber", json!([])),
                ("eth_getBlockReceipts", quantity(next)),
            ])
            .await?
            .into_iter();
        let head: alloy_primitives::U256 = decode(answers.next().unwrap_or(Ok(Value::Null))?)?;
        let head = u64::try_from(head).map_err(|e| RpcError::Decode(e.to_string()))?;
        if head.saturating_add(1) < next {
            // The chain is shorter than what was read (a reorganisation or a
            // devnet reset): follow from its head, and let every waiter look
            // its transaction up once.
            self.follow_from(head.saturating_add(1));
            return Ok(Round::Blocks);
        }
        let receipts = answers
            .next()
            .unwrap_or_else(|| Err(RpcError::Decode("short batch".into())));
        let receipts = match receipts {
            Ok(Value::Null) => return Ok(Round::Idle),
            Ok(receipts) => receipts,
            Err(error) if method_unknown(&error) => return Err(RoundError::Unsupported(error)),
            Err(error) => return Err(error.into()),
        };
        self.deliver(next, receipts)?;
        let mut from = next.saturating_add(1);
        while from <= head {
            let read = self.read_blocks(from, head).await?;
            if read == 0 {
                // The node that answers lags the one that gave the head:
                // pause rather than ask again at once.
                return Ok(Round::Idle);
            }
            from = from.saturating_add(read);
        }
        Ok(Round::Blocks)
    }

    /// Reads blocks `from..=to` (at most [`BLOCKS_PER_BATCH`]); how many.
    async fn read_blocks(&self, from: u64, to: u64) -> Result<u64, RoundError> {
        let last = to.min(from.saturating_add(BLOCKS_PER_BATCH - 1));
        let calls = (from..=last)
            .map(|block| ("eth_getBlockReceipts", quantity(block)))
            .collect();
        let answers = self.rpc.batch(calls).await?;
        let mut read = 0;
        for (block, answer) in (from..).zip(answers) {
            match answer? {
                // Not there yet (a node behind the one that gave the head).
                Value::Null => break,
                receipts => self.deliver(block, receipts)?,
            }
            read += 1;
        }
        Ok(read)
    }

    /// Starts a new epoch following blocks from `next`; waiters not covered
    /// in it look their transaction up once. Receipts kept so far are
    /// dropped: their blocks may be gone (a reorganisation, a reset).
    fn follow_from(&self, next: u64) {
        let mut state = self.lock();
        state.epoch += 1;
        state.next_block = Some(next);
        for slot in state.slots.values_mut() {
            slot.receipt = None;
        }
        wake_all(&state);
    }

    /// Hands block `block`'s awaited receipts to their waiters.
    fn deliver(&self, block: u64, receipts: Value) -> Result<(), RpcError> {
        let Value::Array(receipts) = receipts else {
            return Err(RpcError::Decode(format!(
                "block {block} receipts: not a list"
            )));
        };
        let mut state = self.lock();
        for receipt in receipts {
            let hash = receipt
                .get("transactionHash")
                .cloned()
                .map(decode::<B256>)
                .transpose()?;
            if let Some(slot) = hash.and_then(|hash| state.slots.get_mut(&hash)) {
                slot.receipt = Some(decode(receipt)?);
                slot.notify.notify_waiters();
            }
        }
        if state.next_block == Some(block) {
            state.next_block = Some(block.saturating_add(1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Address, Bytes, TxKind, U256};
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;
    use paywire_testkit::{Devnet, DevnetOptions};

    /// A JSON-RPC proxy that records every call (batches flattened) and,
    /// when asked, renames `eth_getBlockReceipts` so that the node answers
    /// "method not found" as one without it would.
    struct Proxy {
        url: String,
        calls: Arc<Mutex<Vec<Value>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Proxy {
        async fn start(upstream: &str, without_block_receipts: bool) -> Self {
            let calls = Arc::new(Mutex::new(Vec::new()));
            let (seen, upstream) = (Arc::clone(&calls), upstream.to_owned());
            let http = reqwest::Client::new();
            let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
                let (seen, upstream, http) = (Arc::clone(&seen), upstream.clone(), http.clone());
                async move {
                    let mut body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let calls = match &mut body {
                        Value::Array(calls) => calls.iter_mut().collect::<Vec<_>>(),
                        call => vec![call],
                    };
                    for call in calls {
                        seen.lock().unwrap().push(call.clone());
                        if without_block_receipts && call["method"] == "eth_getBlockReceipts" {
                            call["method"] = Value::from("eth_getBlockReceiptsUnknown");
                        }
                    }
                    let answer = http.post(&upstream).json(&body).send().await;
                    let answer: Value = match answer {
                        Ok(answer) => answer.json().await.unwrap_or(Value::Null),
                        Err(_) => Value::Null,
                    };
                    axum::Json(answer)
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Self { url, calls, task }
        }

        /// The calls of `method` seen so far.
        fn calls(&self, method: &str) -> Vec<Value> {
            let calls = self.calls.lock().unwrap();
            calls
                .iter()
                .filter(|c| c["method"] == method)
                .cloned()
                .collect()
        }

        fn count(&self) -> usize {
            self.calls.lock().unwrap().len()
        }

        /// Per-transaction receipt lookups of `hash`.
        fn lookups_of(&self, hash: B256) -> usize {
            let hash = Value::from(hash.to_string());
            self.calls("eth_getTransactionReceipt")
                .iter()
                .filter(|call| call["params"][0] == hash)
                .count()
        }

        /// Waits until the node has been asked `method` at least `n` times.
        async fn until_asked(&self, method: &str, n: usize) {
            for _ in 0..1_000 {
                if self.calls(method).len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("{method} never asked {n} times");
        }
    }

    struct Kit {
        devnet: Devnet,
        proxy: Proxy,
        watcher: Arc<ReceiptWatcher>,
        sender: PrivateKeySigner,
        nonce: u64,
    }

    /// A chain that mines only on demand, seen through a recording proxy.
    async fn kit(without_block_receipts: bool) -> Kit {
        let devnet = Devnet::start_with(DevnetOptions {
            automine: false,
            block_time: None,
            ..DevnetOptions::default()
        })
        .await
        .unwrap();
        let proxy = Proxy::start(devnet.rpc_url(), without_block_receipts).await;
        let rpc = RpcClient::new(vec![proxy.url.clone()], Duration::from_secs(5)).unwrap();
        let watcher = ReceiptWatcher::new(Arc::new(rpc), Duration::from_millis(20));
        let sender = devnet.account(3).signer();
        Kit {
            devnet,
            proxy,
            watcher: Arc::new(watcher),
            sender,
            nonce: 0,
        }
    }

    impl Kit {
        /// A signed transfer of 1 wei from the kit's sender: its hash and bytes.
        fn transfer(&mut self) -> (B256, Vec<u8>) {
            self.nonce += 1;
            signed_transfer(self.devnet.chain_id(), &self.sender, self.nonce - 1)
        }

        async fn send(&self, raw: &[u8]) {
            self.watcher
                .shared
                .rpc
                .send_raw_transaction(raw)
                .await
                .unwrap();
        }

        /// A wait for `hash` in the background (10 s deadline, no re-broadcast).
        fn wait(&self, hash: B256) -> tokio::task::JoinHandle<Option<Receipt>> {
            let watcher = Arc::clone(&self.watcher);
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                let every = Duration::from_secs(60);
                watcher.wait(hash, None, deadline, every).await.unwrap()
            })
        }

        /// Keeps the driver following blocks: a wait for a transaction that
        /// never comes. Returns once the driver reads blocks.
        async fn following(&self) -> tokio::task::JoinHandle<Option<Receipt>> {
            let sentinel = self.wait(B256::repeat_byte(0xee));
            self.proxy.until_asked("eth_getBlockReceipts", 1).await;
            sentinel
        }
    }

    fn signed_transfer(chain_id: u64, sender: &PrivateKeySigner, nonce: u64) -> (B256, Vec<u8>) {
        let tx = TxEip1559 {
            chain_id,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 1,
            to: TxKind::Call(Address::repeat_byte(0x42)),
            value: U256::from(1),
            access_list: Default::default(),
            input: Bytes::new(),
        };
        let signature = sender.sign_hash_sync(&tx.signature_hash()).unwrap();
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        (*envelope.tx_hash(), envelope.encoded_2718())
    }

    fn block_of(receipt: &Receipt) -> U256 {
        receipt
            .block_number
            .expect("a mined receipt names its block")
    }

    #[tokio::test]
    async fn several_waiters_learn_their_receipts_from_one_block() {
        let mut kit = kit(false).await;
        let sentinel = kit.following().await;
        let mut hashes = Vec::new();
        let mut waits = Vec::new();
        let mut registrations = Vec::new();
        for _ in 0..3 {
            let (hash, raw) = kit.transfer();
            registrations.push(kit.watcher.register(hash));
            kit.send(&raw).await;
            waits.push(kit.wait(hash));
            hashes.push(hash);
        }
        kit.devnet.mine().await.unwrap();
        let mut blocks = Vec::new();
        for (hash, wait) in hashes.iter().zip(waits) {
            let receipt = wait.await.unwrap().expect("mined before the deadline");
            assert_eq!(receipt.transaction_hash, *hash);
            assert!(receipt.succeeded());
            blocks.push(block_of(&receipt));
        }
        assert!(
            blocks.windows(2).all(|pair| pair[0] == pair[1]),
            "{blocks:?}"
        );
        for hash in hashes {
            assert_eq!(
                kit.proxy.lookups_of(hash),
                0,
                "found in the block, not polled"
            );
        }
        sentinel.abort();
    }

    #[tokio::test]
    async fn a_transaction_mined_after_the_first_block_seen_is_found_in_its_own() {
        let mut kit = kit(false).await;
        let sentinel = kit.following().await;
        let (late, late_raw) = kit.transfer();
        let _late = kit.watcher.register(late);
        let late_wait = kit.wait(late);
        // Another sender's transaction fills the next block first.
        let other = signed_transfer(kit.devnet.chain_id(), &kit.devnet.account(4).signer(), 0);
        let _other = kit.watcher.register(other.0);
        let other_wait = kit.wait(other.0);
        kit.send(&other.1).await;
        kit.devnet.mine().await.unwrap();
        let first = other_wait.await.unwrap().expect("mined");
        kit.send(&late_raw).await;
        kit.devnet.mine().await.unwrap();
        let second = late_wait.await.unwrap().expect("mined in the next block");
        assert_eq!(block_of(&second), block_of(&first) + U256::from(1));
        assert_eq!(kit.proxy.lookups_of(late), 0);
        sentinel.abort();
    }

    #[tokio::test]
    async fn a_node_without_block_receipts_is_polled_per_transaction() {
        let mut kit = kit(true).await;
        for round in 0..2 {
            let (hash, raw) = kit.transfer();
            let _registration = kit.watcher.register(hash);
            kit.send(&raw).await;
            let wait = kit.wait(hash);
            if round == 0 {
                // The driver tries the method once, then gives up on it.
                kit.proxy.until_asked("eth_getBlockReceipts", 1).await;
            } else {
                kit.proxy.until_asked("eth_getTransactionReceipt", 4).await;
            }
            kit.devnet.mine().await.unwrap();
            let receipt = wait.await.unwrap().expect("found by its own receipt");
            assert_eq!(receipt.transaction_hash, hash);
        }
        assert_eq!(kit.proxy.calls("eth_getBlockReceipts").len(), 1);
        assert!(kit.watcher.shared.per_transaction());
    }

    #[tokio::test]
    async fn a_wait_for_an_unregistered_transaction_looks_it_up_once() {
        let mut kit = kit(false).await;
        let sentinel = kit.following().await;
        // Mined while blocks are followed, but never registered (a
        // transaction of an earlier run): the driver reads its block before
        // anyone waits for it.
        let (hash, raw) = kit.transfer();
        kit.send(&raw).await;
        kit.devnet.mine().await.unwrap();
        let asked = kit.proxy.calls("eth_getBlockReceipts").len();
        kit.proxy
            .until_asked("eth_getBlockReceipts", asked + 3)
            .await;
        let started = Instant::now();
        let receipt = kit.wait(hash).await.unwrap().expect("found");
        assert_eq!(receipt.transaction_hash, hash);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not at the deadline"
        );
        assert_eq!(kit.proxy.lookups_of(hash), 1);
        sentinel.abort();
    }

    #[tokio::test]
    async fn an_unmined_transaction_is_pending_at_the_deadline() {
        let mut kit = kit(false).await;
        let (hash, raw) = kit.transfer();
        let registration = kit.watcher.register(hash);
        kit.send(&raw).await;
        let deadline = Instant::now() + Duration::from_millis(300);
        let answer = kit
            .watcher
            .wait(hash, Some(&raw), deadline, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(answer.is_none(), "not mined: no receipt");
        assert!(Instant::now() >= deadline);
        drop(registration);
        assert_eq!(kit.watcher.slots(), 0, "nothing kept once nobody holds it");
    }

    #[tokio::test]
    async fn nothing_is_polled_while_nobody_waits() {
        let mut kit = kit(false).await;
        let (hash, raw) = kit.transfer();
        let registration = kit.watcher.register(hash);
        kit.send(&raw).await;
        let wait = kit.wait(hash);
        kit.proxy.until_asked("eth_getBlockReceipts", 1).await;
        kit.devnet.mine().await.unwrap();
        assert!(wait.await.unwrap().is_some());
        // A transaction registered but not awaited keeps nothing running.
        let _held = registration;
        for _ in 0..200 {
            if !kit.watcher.shared.lock().running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!kit.watcher.shared.lock().running, "the driver stopped");
        let before = kit.proxy.count();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(kit.proxy.count(), before, "no request while idle");
    }
}
