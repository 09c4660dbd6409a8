//! One signer's broadcasts, pipelined.
//!
//! A settlement takes the signer's nonce lock only to allocate a nonce, sign
//! and record its transaction; the transaction then joins the signer's send
//! line, which one task sends in nonce order. The next settlement signs
//! while the previous transaction is on its way to the node, and the node
//! still sees this signer's transactions in nonce order (no gaps while all
//! goes well).
//!
//! When the node refuses a transaction, every later one of the signer's
//! line is unsent: the refusal moves the next nonce back to the refused one
//! and opens a new *epoch*. Queued transactions of an older epoch are never
//! sent; their settlements sign again with fresh nonces. A transaction is
//! recorded before it is queued, so one that is never sent leaves only an
//! unused hash in the ledger: another transaction takes its nonce, so it can
//! never land. A transaction whose settlement stopped waiting before its
//! turn (the caller was cancelled) is not sent either, and one dropped
//! unsent for any other reason (the sending task's runtime shut down) makes
//! the next allocation read the nonce from the node again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use alloy_consensus::TxEip1559;
use alloy_primitives::B256;
use paywire_core::{SchemeError, SettlementObserver};
use tokio::sync::Mutex as AsyncMutex;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::{ChainState, already_known, chain_error, sign_transaction};
use crate::exact::inflight::Broadcast;
use crate::rpc::{RpcClient, RpcError};
use crate::signer::EvmSigner;

/// How often one settlement signs again because an earlier transaction of
/// its signer was refused, before it gives up.
const MAX_REQUEUES: usize = 8;

/// One settlement signer of a chain and its send line.
pub(in crate::exact) struct SignerSlot {
    pub(in crate::exact) signer: Arc<dyn EvmSigner>,
    pub(in crate::exact) line: Arc<SendLine>,
}

impl SignerSlot {
    /// A slot for `signer`, sending through `rpc` (`crash_after_broadcast`:
    /// the fault injection of [`super::ExactEvmFacilitatorBuilder`]).
    pub(super) fn new(
        signer: Arc<dyn EvmSigner>,
        rpc: Arc<RpcClient>,
        crash_after_broadcast: bool,
    ) -> Self {
        Self {
            signer,
            line: Arc::new(SendLine {
                rpc,
                nonces: AsyncMutex::new(NonceState::default()),
                epoch: AtomicU64::new(0),
                in_doubt: Mutex::new(None),
                resync: AtomicBool::new(false),
                unreachable: Mutex::new(None),
                queue: Mutex::new(Queue::default()),
                crash_after_broadcast,
            }),
        }
    }
}

/// The signer's nonces and the transactions waiting to be sent.
pub(in crate::exact) struct SendLine {
    rpc: Arc<RpcClient>,
    /// Held from nonce allocation until the transaction is queued (and by a
    /// fee replacement for its send).
    pub(in crate::exact) nonces: AsyncMutex<NonceState>,
    /// Changed only under `nonces`: bumped whenever the next nonce moves
    /// back, which makes every queued transaction of an earlier epoch stale.
    epoch: AtomicU64,
    /// A transaction whose broadcast ended without an answer (timeout,
    /// dropped connection): the node may hold it. Its nonce stays taken, and
    /// its bytes are sent again before the signer's next transaction, which
    /// would otherwise wait forever behind a nonce gap if they were lost.
    in_doubt: Mutex<Option<(B256, Vec<u8>)>>,
    /// Set when a queued transaction was dropped unsent outside the epoch
    /// rules (its sending task stopped): the next allocation asks the node.
    resync: AtomicBool,
    /// The epoch closed because the node could not be reached, and why: its
    /// queued transactions fail with that error instead of signing again
    /// into the same outage.
    unreachable: Mutex<Option<(u64, RpcError)>>,
    queue: Mutex<Queue>,
    crash_after_broadcast: bool,
}

/// The next nonce of a signer.
#[derive(Default)]
pub(in crate::exact) struct NonceState {
    /// The next nonce to use; `None`: ask the node.
    next: Option<u64>,
}

/// The transactions waiting for their turn.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Whether a sender task is draining `jobs`.
    sending: bool,
}

/// A signed, recorded transaction waiting for its turn.
struct Job {
    hash: B256,
    raw: Vec<u8>,
    nonce: u64,
    epoch: u64,
    reply: oneshot::Sender<Delivery>,
    /// The settlement's span, for the sending task's logs.
    span: tracing::Span,
}

/// What became of a queued transaction.
enum Delivery {
    /// The node has it, or may have it.
    Sent,
    /// The node refused it with a nonce error; the next nonce is read from
    /// the node again.
    NonceMismatch(RpcError),
    /// The node refused it; its nonce is free again.
    Refused(RpcError),
    /// An earlier transaction of this signer was not sent: sign again.
    Requeue,
    /// The unanswered transaction before it could not be sent again, so it
    /// was not sent either.
    Unreachable(RpcError),
}

/// The outcome of [`SendLine::broadcast`] for the settlement.
pub(super) enum Sent {
    /// On its way: the transaction to wait for.
    Broadcast(Broadcast),
    /// The node refused it; nothing of this settlement was sent.
    Refused(RpcError),
}

/// Timing of one queued broadcast, for the debug log.
struct Timing {
    asked: Instant,
    locked: Instant,
    signing: Instant,
    recording: Instant,
}

/// A sending task's hold on the queue. Disarmed when the task finds the
/// queue empty; dropped armed (the task was cancelled: its runtime shuts
/// down), it answers the waiting settlements instead of leaving them
/// hanging, makes the next allocation re-read the nonce, and lets a later
/// job start a new task.
struct Draining {
    line: Arc<SendLine>,
    armed: bool,
}

impl Drop for Draining {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut queue = self.line.queue();
        queue.sending = false;
        // Dropping their reply senders tells the waiters.
        queue.jobs.clear();
        self.line.resync.store(true, Ordering::Release);
    }
}

impl SendLine {
    /// Signs `build(nonce)` with the signer of `slot`, records it with
    /// `observer` and sends it in the signer's nonce order; signs again with
    /// a fresh nonce when an earlier transaction of the signer was refused
    /// (and once when the node says the nonce is wrong).
    pub(super) async fn broadcast(
        self: &Arc<Self>,
        chain: &ChainState,
        slot: usize,
        build: &(dyn Fn(u64) -> TxEip1559 + Sync),
        observer: &dyn SettlementObserver,
    ) -> Result<Sent, SchemeError> {
        let mut resynced = false;
        for _ in 0..MAX_REQUEUES {
            let (sent, epoch, answer) = self.enqueue(chain, slot, build, observer).await?;
            let queued = Instant::now();
            let delivery = answer.await;
            tracing::debug!(hash = %sent.hash, queue_and_send_us = super::micros(queued.elapsed()),
                "settlement broadcast ended");
            match delivery {
                Ok(Delivery::Sent) => return Ok(Sent::Broadcast(sent)),
                Ok(Delivery::NonceMismatch(_)) if !resynced => resynced = true,
                Ok(Delivery::NonceMismatch(error) | Delivery::Refused(error)) => {
                    return Ok(Sent::Refused(error));
                }
                Ok(Delivery::Requeue) => {}
                Ok(Delivery::Unreachable(error)) => return Err(chain_error(error)),
                Err(_) => {
                    // The sending task stopped (runtime shutdown) before the
                    // transaction's turn: it may not have been sent.
                    self.rewind(epoch, None).await;
                    return Err(SchemeError::Chain(
                        "the settlement transaction's sender stopped; retry".into(),
                    ));
                }
            }
        }
        Err(SchemeError::Chain(
            "the signer's earlier transactions kept being refused; retry".into(),
        ))
    }

    /// Under the nonce lock: allocates the next nonce, signs, records and
    /// queues the transaction.
    async fn enqueue(
        self: &Arc<Self>,
        chain: &ChainState,
        slot: usize,
        build: &(dyn Fn(u64) -> TxEip1559 + Sync),
        observer: &dyn SettlementObserver,
    ) -> Result<(Broadcast, u64, oneshot::Receiver<Delivery>), SchemeError> {
        let asked = Instant::now();
        let mut nonces = self.nonces.lock().await;
        let locked = Instant::now();
        if self.resync.swap(false, Ordering::AcqRel) {
            nonces.next = None;
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        let nonce = if let Some(nonce) = nonces.next {
            nonce
        } else {
            let address = chain.slots[slot].signer.address();
            self.rpc.pending_nonce(address).await.map_err(chain_error)?
        };
        let next = nonce
            .checked_add(1)
            .ok_or_else(|| SchemeError::Chain(format!("signer nonce {nonce} is at its limit")))?;
        let signing = Instant::now();
        let sent = sign_transaction(chain, slot, build(nonce)).await?;
        let recording = Instant::now();
        // The ledger learns the hash before the transaction can exist.
        observer
            .before_broadcast(&chain.config.network.chain, &sent.hash.to_string())
            .await
            .map_err(|e| SchemeError::Chain(format!("settlement not recorded, not sent: {e}")))?;
        let epoch = self.epoch.load(Ordering::Acquire);
        let (reply, answer) = oneshot::channel();
        self.push(Job {
            hash: sent.hash,
            raw: sent.raw.clone(),
            nonce,
            epoch,
            reply,
            span: tracing::Span::current(),
        });
        nonces.next = Some(next);
        let timing = Timing {
            asked,
            locked,
            signing,
            recording,
        };
        log_queued(&sent.hash, nonce, &timing);
        Ok((sent, epoch, answer))
    }

    /// The queue. Its data stays consistent at every step (each change is
    /// one push, pop or flag), so a panic elsewhere while it was held does
    /// not make it unusable.
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job`, starting a sending task when none runs (spawned after
    /// the queue is released: a task refused at runtime shutdown is dropped
    /// at once, and its guard takes the queue).
    fn push(self: &Arc<Self>, job: Job) {
        let start = {
            let mut queue = self.queue();
            queue.jobs.push_back(job);
            !std::mem::replace(&mut queue.sending, true)
        };
        if start {
            let mut draining = Draining {
                line: Arc::clone(self),
                armed: true,
            };
            tokio::spawn(async move { draining.line.clone().drain(&mut draining).await });
        }
    }

    /// Sends queued transactions one after the other until none is left.
    async fn drain(&self, hold: &mut Draining) {
        loop {
            let job = {
                let mut queue = self.queue();
                let Some(job) = queue.jobs.pop_front() else {
                    queue.sending = false;
                    hold.armed = false;
                    return;
                };
                job
            };
            let span = job.span.clone();
            let delivery = self.deliver(&job).instrument(span).await;
            // A settlement that stopped waiting was refused at its turn.
            let _ = job.reply.send(delivery);
        }
    }

    /// Sends one queued transaction, unless it is stale.
    async fn deliver(&self, job: &Job) -> Delivery {
        if job.epoch != self.epoch.load(Ordering::Acquire) {
            let outage = self
                .unreachable
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            return match outage.as_ref() {
                Some((epoch, error)) if *epoch == job.epoch => Delivery::Unreachable(error.clone()),
                _ => Delivery::Requeue,
            };
        }
        if job.reply.is_closed() {
            // Its settlement was cancelled: it may no longer hold its ledger
            // lock, and another process may be settling the same payment.
            tracing::info!(hash = %job.hash, "settlement stopped before its broadcast; not sent");
            self.rewind(job.epoch, None).await;
            return Delivery::Requeue;
        }
        if let Err(unsent) = self.resend_in_doubt().await {
            return match unsent {
                // The unanswered transaction never reached the pool: its
                // nonce, and every later one, is free.
                InDoubt::Refused => {
                    self.rewind(job.epoch, None).await;
                    Delivery::Requeue
                }
                InDoubt::Unreachable(error) => {
                    *self
                        .unreachable
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some((job.epoch, error.clone()));
                    self.rewind(job.epoch, Some(job.nonce)).await;
                    Delivery::Unreachable(error)
                }
            };
        }
        let outcome = self.rpc.send_raw_transaction(&job.raw).await;
        match self.judge(job, outcome) {
            Judged::Sent => Delivery::Sent,
            Judged::NonceMismatch(error) => {
                self.rewind(job.epoch, None).await;
                Delivery::NonceMismatch(error)
            }
            Judged::Refused(error) => {
                // Read from the node again: some refusals are nonce conflicts
                // in other words ("replacement transaction underpriced" when
                // the key was used elsewhere).
                self.rewind(job.epoch, None).await;
                Delivery::Refused(error)
            }
        }
    }

    /// What an `eth_sendRawTransaction` answer means for the transaction.
    fn judge(&self, job: &Job, outcome: Result<B256, RpcError>) -> Judged {
        let error = match outcome {
            Ok(_) => {
                if self.crash_after_broadcast {
                    tracing::error!(hash = %job.hash, "fault injection: crashing after broadcast");
                    std::process::abort();
                }
                return Judged::Sent;
            }
            Err(error @ RpcError::Node { .. }) => error,
            Err(error) => {
                // No answer: the node may have accepted the transaction, and
                // the ledger already holds its hash. Treat it as sent (the
                // receipt wait re-broadcasts it, and answers `pending` if it
                // never shows), and keep its nonce taken.
                tracing::warn!(hash = %job.hash, %error, "broadcast unanswered; the transaction may be pending");
                *self.in_doubt() = Some((job.hash, job.raw.clone()));
                return Judged::Sent;
            }
        };
        let message = error
            .node_message()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if already_known(&message) {
            return Judged::Sent;
        }
        if message.contains("nonce too low") || message.contains("nonce too high") {
            // Someone else used this key, or a send was lost.
            return Judged::NonceMismatch(error);
        }
        Judged::Refused(error)
    }

    /// The unanswered transaction, if any (a single value: usable after a
    /// panic elsewhere).
    fn in_doubt(&self) -> MutexGuard<'_, Option<(B256, Vec<u8>)>> {
        self.in_doubt.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends again the signer's transaction whose broadcast went unanswered,
    /// so that the next transaction does not queue behind a gap at its
    /// nonce. While the node cannot be reached, nothing new is sent.
    async fn resend_in_doubt(&self) -> Result<(), InDoubt> {
        let doubt = self.in_doubt().take();
        let Some((hash, raw)) = doubt else {
            return Ok(());
        };
        match self.rpc.send_raw_transaction(&raw).await {
            Ok(_) => {
                tracing::info!(%hash, "unanswered broadcast sent again");
                Ok(())
            }
            Err(error @ RpcError::Node { .. }) => {
                let message = error
                    .node_message()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                // Known to the node, or mined (its nonce is spent): settled.
                if already_known(&message) || message.contains("nonce too low") {
                    return Ok(());
                }
                tracing::warn!(%hash, %error, "unanswered broadcast refused on re-send; re-reading the nonce");
                Err(InDoubt::Refused)
            }
            Err(error) => {
                *self.in_doubt() = Some((hash, raw));
                Err(InDoubt::Unreachable(error))
            }
        }
    }

    /// Moves the next nonce back to `next` (`None`: ask the node) and makes
    /// the queued transactions of `epoch` stale, unless that happened
    /// already.
    async fn rewind(&self, epoch: u64, next: Option<u64>) {
        let mut nonces = self.nonces.lock().await;
        if self.epoch.load(Ordering::Acquire) == epoch {
            nonces.next = next;
            self.epoch.store(epoch.wrapping_add(1), Ordering::Release);
        }
    }
}

/// Why the unanswered transaction was not sent again.
enum InDoubt {
    /// The node refused it: it never entered the pool.
    Refused,
    /// The node could not be reached.
    Unreachable(RpcError),
}

/// [`SendLine::judge`]'s verdict.
enum Judged {
    Sent,
    NonceMismatch(RpcError),
    Refused(RpcError),
}

/// The debug timing line of a queued transaction.
fn log_queued(hash: &B256, nonce: u64, timing: &Timing) {
    let micros = super::micros;
    tracing::debug!(%hash, nonce,
        lock_wait_us = micros(timing.locked - timing.asked),
        sign_us = micros(timing.recording - timing.signing),
        record_us = micros(timing.recording.elapsed()),
        "settlement queued for broadcast");
}
