//! Works around an anvil transaction-pool race (foundry-rs/foundry#10122).
//!
//! When transactions of one sender arrive back to back while anvil is mining
//! (automine), a transaction can be filed as "queued" behind a nonce that the
//! block being mined has just consumed. It then waits for a predecessor that
//! will never arrive, and every later transaction of that sender waits behind
//! it: the chain stops including that sender's transactions although the pool
//! holds the one whose nonce is next. Real nodes (geth, reth) re-check queued
//! transactions after each block; anvil 1.7.1 does not, about once in a few
//! hundred runs of a test that pipelines 100 transactions.
//!
//! The watchdog looks at the pool every 200 ms. When a sender's lowest queued
//! transaction carries the sender's nonce on chain on two checks in a row,
//! that sender's queued transactions are taken out of the pool and sent again
//! with the same signed bytes, in nonce order, which files them as ready. Nothing about the transaction changes (same hash), and the code
//! under test is not involved: it only undoes the node's own bookkeeping slip.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256, U64};
use serde_json::{Value, json};

use crate::rpc::Rpc;

const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// A background thread watching one anvil's pool; stops when dropped.
#[derive(Debug)]
pub(crate) struct PoolWatchdog {
    stop: Arc<AtomicBool>,
}

impl PoolWatchdog {
    /// Starts watching the node at `url`.
    pub(crate) fn start(url: String) -> Option<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("paywire-devnet-pool-watchdog".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(watch(url, stopped));
            });
        spawned.ok().map(|_| Self { stop })
    }
}

impl Drop for PoolWatchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn watch(url: String, stop: Arc<AtomicBool>) {
    let Ok(rpc) = Rpc::new(url) else {
        return;
    };
    let mut suspects: HashSet<(Address, B256)> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(CHECK_INTERVAL).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Errors are expected while the node shuts down; the next tick retries.
        let Ok(stranded) = stranded_senders(&rpc).await else {
            continue;
        };
        let mut now = HashSet::new();
        for sender in &stranded {
            let key = (sender.sender, sender.hashes[0]);
            if suspects.contains(&key) {
                reinsert(&rpc, sender).await;
            } else {
                now.insert(key);
            }
        }
        suspects = now;
    }
}

/// A sender whose lowest queued transaction carries its next nonce, with all
/// of its queued transactions' hashes in nonce order.
struct Stranded {
    sender: Address,
    hashes: Vec<B256>,
}

/// Senders whose queue starts at their next nonce (so nothing is missing).
async fn stranded_senders(rpc: &Rpc) -> crate::Result<Vec<Stranded>> {
    let status = rpc.call("txpool_status", json!([])).await?;
    let queued = status["queued"]
        .as_str()
        .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    if queued == 0 {
        return Ok(Vec::new());
    }
    let content = rpc.call("txpool_content", json!([])).await?;
    let mut stranded = Vec::new();
    let Some(senders) = content["queued"].as_object() else {
        return Ok(stranded);
    };
    for (sender, by_nonce) in senders {
        let Ok(sender) = sender.parse::<Address>() else {
            continue;
        };
        let mut queue: Vec<(u64, B256)> = by_nonce
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(nonce, tx)| {
                Some((
                    nonce.parse::<u64>().ok()?,
                    tx["hash"].as_str()?.parse::<B256>().ok()?,
                ))
            })
            .collect();
        queue.sort();
        let Some((lowest, _)) = queue.first() else {
            continue;
        };
        let on_chain: U64 = rpc
            .call_as("eth_getTransactionCount", json!([sender, "latest"]))
            .await?;
        if on_chain.to::<u64>() == *lowest {
            stranded.push(Stranded {
                sender,
                hashes: queue.into_iter().map(|(_, hash)| hash).collect(),
            });
        }
    }
    Ok(stranded)
}

/// Takes the sender's transactions out of the pool and sends the same signed
/// bytes again in nonce order, so the pool files them afresh.
async fn reinsert(rpc: &Rpc, stranded: &Stranded) {
    let mut raws = Vec::new();
    for hash in &stranded.hashes {
        match rpc.call("eth_getRawTransactionByHash", json!([hash])).await {
            Ok(Value::String(raw)) => raws.push(raw),
            _ => return,
        }
    }
    eprintln!(
        "paywire-devnet: anvil left {} transaction(s) of {} queued although the first has the \
         next nonce (foundry-rs/foundry#10122); putting them back into the pool",
        raws.len(),
        stranded.sender
    );
    if rpc
        .call("anvil_removePoolTransactions", json!([stranded.sender]))
        .await
        .is_err()
    {
        return;
    }
    for raw in raws {
        // A refusal leaves the transaction out; the test waiting for it fails
        // with the message above in its output.
        let _ = rpc.call("eth_sendRawTransaction", json!([raw])).await;
    }
}
