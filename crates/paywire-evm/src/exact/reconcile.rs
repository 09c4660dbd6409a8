//! Finding the on-chain execution of an authorization whose nonce is already
//! used (a front-run, or an earlier settlement of ours), without scanning the
//! chain from its first block, and deciding whether that execution was of
//! *this* authorization or of another one that reused its nonce.
//!
//! The range searched ends at the latest block and starts at the last block
//! older than both `validAfter` (the token refuses the authorization before
//! then) and the configured lookback before the latest block (our own
//! clients sign `validAfter = 0`). It is read newest first in chunks that the
//! provider accepts, and the search stops at the first `AuthorizationUsed`
//! log: a token emits one per (authorizer, nonce), ever.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use serde::Deserialize;

use super::Authorization;
use super::inflight::AuthorizationKey;
use crate::contracts::IEip3009Token;
use crate::rpc::{CallFrame, Log, RpcClient, RpcError, call_params, decode_bytes};

/// Where and how far back to look.
pub(super) struct LogSearch<'a> {
    pub rpc: &'a RpcClient,
    pub asset: Address,
    /// Most blocks per `eth_getLogs`; lowered for good when the provider
    /// refuses a range.
    pub range_blocks: &'a AtomicU64,
    /// Seconds before the latest block the search may reach.
    pub lookback_seconds: u64,
    /// Earlier answers for used nonces.
    pub cache: &'a SearchCache,
}

/// How long the outcome of a search for a used nonce is reused. A used nonce
/// stays used, and its `AuthorizationUsed` log (or the lack of one in the
/// searched range) does not change either, so repeated requests about it
/// (a retry, or anyone replaying an old authorization) cost no node call.
const SEARCH_CACHE_TTL: Duration = Duration::from_secs(600);

/// Most searches remembered per chain.
const SEARCH_CACHE_ENTRIES: usize = 10_000;

/// Outcomes of searches for used nonces: per (token, authorizer, nonce), the
/// transaction of its `AuthorizationUsed` log, or `None` when the searched
/// range holds none.
#[derive(Default)]
pub(super) struct SearchCache {
    entries: Mutex<HashMap<AuthorizationKey, (Option<B256>, Instant)>>,
}

impl SearchCache {
    /// `None`: not searched recently; `Some(None)`: searched, nothing found.
    #[allow(clippy::option_option)]
    fn get(&self, key: &AuthorizationKey) -> Option<Option<B256>> {
        let entries = self.entries.lock().ok()?;
        let (found, at) = entries.get(key)?;
        (at.elapsed() < SEARCH_CACHE_TTL).then_some(*found)
    }

    fn put(&self, key: AuthorizationKey, found: Option<B256>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= SEARCH_CACHE_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < SEARCH_CACHE_TTL);
            if entries.len() >= SEARCH_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (found, Instant::now()));
    }
}

impl SearchCache {
    /// An earlier outcome under `key` (see [`Self::get`]), for searches
    /// other than [`LogSearch::used_by`] (which pick keys of their own that
    /// no token address can collide with).
    #[allow(clippy::option_option)]
    pub(super) fn cached(&self, key: &AuthorizationKey) -> Option<Option<B256>> {
        self.get(key)
    }

    /// Remembers the outcome of such a search.
    pub(super) fn remember(&self, key: AuthorizationKey, found: Option<B256>) {
        self.put(key, found);
    }
}

#[derive(Deserialize)]
struct Header {
    number: U256,
    timestamp: U256,
}

fn to_u64(value: U256) -> Result<u64, RpcError> {
    u64::try_from(value).map_err(|e| RpcError::Decode(e.to_string()))
}

impl LogSearch<'_> {
    /// The transaction that used (`from`, `nonce`) within the searched range
    /// ([`Self::authorization_used`]), from the cache when the nonce was
    /// searched for before.
    pub async fn used_by(&self, authorization: &Authorization) -> Result<Option<B256>, RpcError> {
        let key = (self.asset, authorization.from, authorization.nonce);
        if let Some(found) = self.cache.get(&key) {
            return Ok(found);
        }
        let Some(found) = self.authorization_used(authorization).await? else {
            return Ok(None);
        };
        let hash = found.and_then(|log| log.transaction_hash);
        self.cache.put(key, hash);
        Ok(hash)
    }

    /// The `AuthorizationUsed` log of (`from`, `nonce`) within the searched
    /// range.
    /// `None` when the nonce is unused (nothing worth remembering: it may
    /// be used any time), `Some(None)` when it was used before the range.
    pub async fn authorization_used(
        &self,
        authorization: &Authorization,
    ) -> Result<Option<Option<Log>>, RpcError> {
        let state = IEip3009Token::authorizationStateCall {
            authorizer: authorization.from,
            nonce: authorization.nonce,
        };
        let mut answers = self
            .rpc
            .batch(vec![
                (
                    "eth_call",
                    call_params(None, self.asset, &state.abi_encode()),
                ),
                ("eth_getBlockByNumber", serde_json::json!(["latest", false])),
            ])
            .await?
            .into_iter();
        let mut next = || {
            answers
                .next()
                .unwrap_or(Err(RpcError::Decode("short batch".into())))
        };
        let used =
            IEip3009Token::authorizationStateCall::abi_decode_returns(&decode_bytes(next())?)
                .map_err(|e| RpcError::Decode(e.to_string()))?;
        if !used {
            // Nothing executed it: no need to read any log.
            return Ok(None);
        }
        let latest: Header =
            serde_json::from_value(next()?).map_err(|e| RpcError::Decode(e.to_string()))?;
        let (latest, latest_time) = (to_u64(latest.number)?, to_u64(latest.timestamp)?);
        let valid_after = u64::try_from(authorization.valid_after.as_u256()).unwrap_or(u64::MAX);
        let not_before = valid_after.max(latest_time.saturating_sub(self.lookback_seconds));
        let from = self
            .last_block_before(not_before, latest, latest_time)
            .await?;
        self.newest_log(authorization, from, latest).await.map(Some)
    }

    /// The last block whose timestamp is below `time` (0 when there is none):
    /// a search over block timestamps alternating interpolation (block times
    /// are nearly regular, so it lands close in a few reads) with bisection
    /// (which bounds the reads by twice the logarithm of the range).
    async fn last_block_before(
        &self,
        time: u64,
        latest: u64,
        latest_time: u64,
    ) -> Result<u64, RpcError> {
        if latest_time < time {
            return Ok(latest);
        }
        let (mut low, mut low_time) = (0, self.rpc.block_timestamp(0).await?);
        if low_time >= time {
            return Ok(0);
        }
        // Invariant: low_time < time <= high_time.
        let (mut high, mut high_time) = (latest, latest_time);
        let mut interpolate = true;
        while high - low > 1 {
            let guess = if interpolate {
                let offset = u128::from(time - low_time) * u128::from(high - low)
                    / u128::from(high_time - low_time);
                low.saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
            } else {
                low + (high - low) / 2
            };
            let guess = guess.clamp(low + 1, high - 1);
            interpolate = !interpolate;
            let guess_time = self.rpc.block_timestamp(guess).await?;
            if guess_time < time {
                (low, low_time) = (guess, guess_time);
            } else {
                (high, high_time) = (guess, guess_time);
            }
        }
        Ok(low)
    }

    /// Reads `from..=to` newest first, in chunks of at most `range_blocks`,
    /// halving the chunk whenever the node refuses a request (providers cap
    /// ranges or result counts, each with its own error text), and returns
    /// the first `AuthorizationUsed` log of (`from`, `nonce`).
    async fn newest_log(
        &self,
        authorization: &Authorization,
        from: u64,
        to: u64,
    ) -> Result<Option<Log>, RpcError> {
        let topics = vec![
            Some(IEip3009Token::AuthorizationUsed::SIGNATURE_HASH),
            Some(authorization.from.into_word()),
            Some(authorization.nonce),
        ];
        let mut high = to;
        loop {
            let chunk = self.range_blocks.load(Ordering::Relaxed).max(1);
            let low = high.saturating_sub(chunk - 1).max(from);
            match self.rpc.logs(self.asset, topics.clone(), low, high).await {
                Ok(logs) => {
                    if let Some(log) = logs.into_iter().find(|l| l.transaction_hash.is_some()) {
                        return Ok(Some(log));
                    }
                    if low <= from {
                        return Ok(None);
                    }
                    high = low - 1;
                }
                Err(error @ RpcError::Node { .. }) if chunk > 1 => {
                    tracing::info!(%error, chunk, "eth_getLogs range refused; halving it");
                    self.range_blocks.store(chunk / 2, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Whether transaction `hash` executed exactly `authorization` (all six
    /// signed fields), not another authorization that reused its nonce. A
    /// direct call of the token is read from the transaction's input; a call
    /// through another contract (a multicall, a relayer) only from the call
    /// tracer, and is not recognised where the node offers none.
    pub async fn executed(
        &self,
        hash: B256,
        authorization: &Authorization,
    ) -> Result<bool, RpcError> {
        let Some(transaction) = self.rpc.transaction(hash).await? else {
            return Ok(false);
        };
        if transaction.to == Some(self.asset) {
            return Ok(calls_authorization(&transaction.input, authorization));
        }
        match self.rpc.trace_calls(hash).await {
            Ok(frame) => Ok(frame_executes(&frame, self.asset, authorization)),
            Err(error @ RpcError::Node { .. }) => {
                tracing::warn!(%hash, %error,
                    "authorization executed through a contract and the node cannot trace it; not reconciled");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}

/// The token's `Transfer(from, to)` logs in a [`LogSearch`]'s range, read
/// newest first one chunk at a time (see [`LogSearch::transfers`]), so the
/// caller stops reading once it found what it looks for.
pub(super) struct Transfers<'s, 'a> {
    search: &'s LogSearch<'a>,
    topics: Vec<Option<B256>>,
    /// The oldest block searched.
    first: u64,
    /// The newest block not read yet; `None` once the range is read.
    high: Option<u64>,
}

impl LogSearch<'_> {
    /// Every `Transfer(from, to)` log of the asset, in the range back to
    /// `valid_after` or the lookback, whichever is later. Used where the
    /// token emits no per-authorization event (a Permit2 transfer): every
    /// transfer between the two is a candidate.
    pub async fn transfers(
        &self,
        from: Address,
        to: Address,
        valid_after: u64,
    ) -> Result<Transfers<'_, '_>, RpcError> {
        let latest: Header = self
            .rpc
            .request("eth_getBlockByNumber", serde_json::json!(["latest", false]))
            .await?;
        let (latest, latest_time) = (to_u64(latest.number)?, to_u64(latest.timestamp)?);
        let not_before = valid_after.max(latest_time.saturating_sub(self.lookback_seconds));
        let first = self
            .last_block_before(not_before, latest, latest_time)
            .await?;
        Ok(Transfers {
            search: self,
            topics: vec![
                Some(crate::contracts::IErc20::Transfer::SIGNATURE_HASH),
                Some(from.into_word()),
                Some(to.into_word()),
            ],
            first,
            high: Some(latest),
        })
    }
}

impl Transfers<'_, '_> {
    /// The transactions of the next (older) chunk's logs, newest first;
    /// `None` once the whole range is read. The chunk is halved whenever
    /// the node refuses a request, as in [`LogSearch::used_by`].
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<B256>>, RpcError> {
        let Some(high) = self.high else {
            return Ok(None);
        };
        let search = self.search;
        loop {
            let chunk = search.range_blocks.load(Ordering::Relaxed).max(1);
            let low = high.saturating_sub(chunk - 1).max(self.first);
            match search
                .rpc
                .logs(search.asset, self.topics.clone(), low, high)
                .await
            {
                Ok(logs) => {
                    self.high = (low > self.first).then(|| low - 1);
                    let hashes = logs.iter().rev().filter_map(|l| l.transaction_hash);
                    return Ok(Some(hashes.collect()));
                }
                Err(error @ RpcError::Node { .. }) if chunk > 1 => {
                    tracing::info!(%error, chunk, "eth_getLogs range refused; halving it");
                    search.range_blocks.store(chunk / 2, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Whether `input` is a `transferWithAuthorization` call (either overload) of
/// exactly `authorization`. The signature bytes are not compared: the token
/// accepted a signature of `from` over these very fields, and the same
/// authorization may travel with different bytes (an EIP-6492 wrapper
/// removed, `v` as 0/1 or 27/28, the `bytes` or the `(v, r, s)` overload).
pub(super) fn calls_authorization(input: &[u8], authorization: &Authorization) -> bool {
    let fields = if let Ok(call) = IEip3009Token::transferWithAuthorization_0Call::abi_decode(input)
    {
        (
            call.from,
            call.to,
            call.value,
            call.validAfter,
            call.validBefore,
            call.nonce,
        )
    } else if let Ok(call) = IEip3009Token::transferWithAuthorization_1Call::abi_decode(input) {
        (
            call.from,
            call.to,
            call.value,
            call.validAfter,
            call.validBefore,
            call.nonce,
        )
    } else {
        return false;
    };
    fields
        == (
            authorization.from,
            authorization.to,
            authorization.value.as_u256(),
            authorization.valid_after.as_u256(),
            authorization.valid_before.as_u256(),
            authorization.nonce,
        )
}

/// Whether a successful `CALL` of `asset` somewhere in the call tree executed
/// `authorization`. Calls below a reverted call are reverted too.
fn frame_executes(frame: &CallFrame, asset: Address, authorization: &Authorization) -> bool {
    if frame.error.is_some() {
        return false;
    }
    if frame.kind.eq_ignore_ascii_case("CALL")
        && frame.to == Some(asset)
        && calls_authorization(&frame.input, authorization)
    {
        return true;
    }
    frame
        .calls
        .iter()
        .any(|call| frame_executes(call, asset, authorization))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Bytes;

    fn authorization() -> Authorization {
        Authorization {
            from: Address::repeat_byte(1),
            to: Address::repeat_byte(2),
            value: 10_000u64.into(),
            valid_after: 0u64.into(),
            valid_before: 2_000_000_000u64.into(),
            nonce: B256::repeat_byte(3),
        }
    }

    fn bytes_call(auth: &Authorization) -> Vec<u8> {
        IEip3009Token::transferWithAuthorization_1Call {
            from: auth.from,
            to: auth.to,
            value: auth.value.as_u256(),
            validAfter: auth.valid_after.as_u256(),
            validBefore: auth.valid_before.as_u256(),
            nonce: auth.nonce,
            signature: Bytes::from(vec![7u8; 65]),
        }
        .abi_encode()
    }

    #[test]
    fn another_authorization_with_the_same_nonce_is_not_this_one() {
        let auth = authorization();
        assert!(calls_authorization(&bytes_call(&auth), &auth));
        let mut later = auth.clone();
        later.valid_before = 2_000_000_001u64.into();
        assert!(!calls_authorization(&bytes_call(&later), &auth));
        assert!(!calls_authorization(&[0xde, 0xad], &auth));
    }

    #[test]
    fn traced_calls_count_only_when_they_did_not_revert() {
        let auth = authorization();
        let token = Address::repeat_byte(9);
        let call = |error: Option<&str>, calls: Vec<CallFrame>| CallFrame {
            kind: "CALL".into(),
            to: Some(token),
            input: bytes_call(&auth).into(),
            error: error.map(str::to_owned),
            calls,
        };
        let outer = |inner: CallFrame, error: Option<&str>| CallFrame {
            kind: "CALL".into(),
            to: Some(Address::repeat_byte(8)),
            input: Bytes::new(),
            error: error.map(str::to_owned),
            calls: vec![inner],
        };
        assert!(frame_executes(
            &outer(call(None, vec![]), None),
            token,
            &auth
        ));
        assert!(!frame_executes(
            &outer(call(Some("execution reverted"), vec![]), None),
            token,
            &auth
        ));
        assert!(!frame_executes(
            &outer(call(None, vec![]), Some("execution reverted")),
            token,
            &auth
        ));
    }
}
