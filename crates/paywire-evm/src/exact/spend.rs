//! The paying client's spend probe for EVM payments: for `exact` EIP-3009
//! it reads the token's `authorizationState(authorizer, nonce)`, for Permit2
//! payments (`exact` with Permit2, `upto`) the Permit2 contract's
//! `nonceBitmap(owner, nonce >> 8)`, and the chain's time, so that the
//! client's budget can release an authorization that expired unused; and,
//! for Permit2 payments, what a named settlement transaction really moved,
//! so that a usage-based charge counts what the chain says, not the receipt.

use crate::Eip155ChainId;
use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use paywire_core::{AtomicAmount, BoxFuture, ChainId, PaymentPayload};
use paywire_core::{SpendProbe, SpendState};
use serde_json::{Value, json};

use super::SCHEME;
use super::payload::ExactEvmPayload;
use crate::contracts::IEip3009Token;
use crate::permit2::spend::{Permit2Nonce, Permit2Settlement};
use crate::rpc::{Receipt, RpcClient, RpcError, Transaction, call_params, decode_bytes};

/// Default margin past `validBefore` before an unused authorization counts
/// as unspent: a chain reorganisation cannot bring back blocks this old.
const DEFAULT_REORG_MARGIN_SECS: u64 = 120;

/// Tells whether the authorization of an EVM payment (`exact` EIP-3009,
/// `exact` Permit2, `upto`) was executed, on the networks it has an RPC node
/// for.
///
/// It answers [`SpendState::Spent`] when the token (EIP-3009) or the Permit2
/// contract reports the nonce used (a nonce the payer cancelled or
/// invalidated reads the same: counting it is the safe side),
/// [`SpendState::Unspent`] when the nonce is unused and the latest block is
/// later than `validBefore` (Permit2: `deadline`) plus a reorganisation
/// margin (the contract refuses the authorization from then on), and
/// [`SpendState::Unknown`] otherwise (still valid, another payload type, an
/// unconfigured network, an RPC failure, or a node reporting another chain).
///
/// An `upto` payment settled for zero sends no transaction: its nonce stays
/// unused and it turns `Unspent` after its deadline, which is the truth
/// (nothing was charged).
#[derive(Debug, Default)]
pub struct ExactEvmSpendProbe {
    nodes: HashMap<ChainId, Arc<RpcClient>>,
    reorg_margin: Option<u64>,
}

impl ExactEvmSpendProbe {
    /// A probe with no network configured (it answers `Unknown` for all).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `network` (an `eip155` chain) through `rpc`.
    pub fn network(mut self, network: ChainId, rpc: Arc<RpcClient>) -> Self {
        self.nodes.insert(network, rpc);
        self
    }

    /// Seconds past `validBefore` the latest block must be before an unused
    /// authorization counts as unspent (default 120).
    pub fn reorg_margin(mut self, seconds: u64) -> Self {
        self.reorg_margin = Some(seconds);
        self
    }

    /// The spend state of `payload`'s authorization.
    pub async fn state(&self, payload: &PaymentPayload) -> SpendState {
        let Some(query) = self.query_for(payload) else {
            return SpendState::Unknown;
        };
        match query.run().await {
            Ok(state) => state,
            Err(error) => {
                // Only the kind: transport errors name the endpoint, whose
                // URL may carry a provider API key.
                tracing::warn!(
                    network = %payload.accepted.network,
                    error = rpc_error_kind(&error),
                    "spend probe could not read the chain; the payment stays counted"
                );
                SpendState::Unknown
            }
        }
    }

    /// What transaction `transaction` moved under the Permit2 authorization
    /// of `payload` (`upto`: the settled amount; `exact` Permit2: the
    /// permitted amount), read from the chain; `None` for an EIP-3009 or
    /// unknown payload, an unconfigured network, a transaction that is not
    /// a mined, successful settlement of exactly this authorization through
    /// the scheme's proxy with the token's matching `Transfer` log, or any
    /// RPC failure.
    pub async fn settled(
        &self,
        payload: &PaymentPayload,
        transaction: &str,
    ) -> Option<AtomicAmount> {
        let settlement = Permit2Settlement::of(payload)?;
        let network = &payload.accepted.network;
        let chain_id = network.eip155_id()?;
        let rpc = self.nodes.get(network)?;
        let Ok(hash) = transaction.parse::<B256>() else {
            tracing::warn!(%network, "the receipt names no valid transaction hash");
            return None;
        };
        let read = match read_settlement(rpc, chain_id, hash).await {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%network, error = rpc_error_kind(&error),
                    "spend probe could not read the settlement; the maximum counts");
                return None;
            }
        };
        let moved = read.and_then(|(tx, receipt)| settlement.amount_moved(hash, &tx, &receipt));
        if moved.is_none() {
            tracing::warn!(%network, %hash,
                "the named transaction does not prove a settlement of this payment; the maximum counts");
        }
        moved.map(AtomicAmount::from)
    }

    /// What to ask which node, or `None` for a payload this probe cannot judge.
    fn query_for(&self, payload: &PaymentPayload) -> Option<Query<'_>> {
        let accepted = &payload.accepted;
        let chain_id = accepted.network.eip155_id()?;
        let rpc = self.nodes.get(&accepted.network)?;
        let margin = U256::from(self.reorg_margin.unwrap_or(DEFAULT_REORG_MARGIN_SECS));
        if let Some(permit2) = Permit2Nonce::of(payload) {
            return Some(Query {
                rpc,
                chain_id,
                unspent_from: permit2.deadline.saturating_add(margin),
                read: Read::Permit2(permit2),
            });
        }
        let eip3009 = matches!(
            accepted.extra_str("assetTransferMethod"),
            None | Some("eip3009")
        );
        if accepted.scheme != SCHEME || !eip3009 {
            return None;
        }
        let token: Address = accepted.asset.parse().ok()?;
        let signed = ExactEvmPayload::from_json(&payload.payload).ok()?;
        Some(Query {
            rpc,
            chain_id,
            unspent_from: signed
                .authorization
                .valid_before
                .as_u256()
                .saturating_add(margin),
            read: Read::Eip3009 {
                token,
                authorizer: signed.authorization.from,
                nonce: signed.authorization.nonce,
            },
        })
    }
}

impl SpendProbe for ExactEvmSpendProbe {
    fn probe<'a>(&'a self, payload: &'a PaymentPayload) -> BoxFuture<'a, SpendState> {
        Box::pin(self.state(payload))
    }

    fn settled_amount<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        transaction: &'a str,
    ) -> BoxFuture<'a, Option<AtomicAmount>> {
        Box::pin(self.settled(payload, transaction))
    }
}

/// The transaction `hash` and its receipt, in one round trip that also
/// checks the node serves `chain_id`; `None` when either is unknown (never
/// sent, or still pending).
async fn read_settlement(
    rpc: &RpcClient,
    chain_id: u64,
    hash: B256,
) -> Result<Option<(Transaction, Receipt)>, RpcError> {
    let mut answers = rpc
        .batch(vec![
            ("eth_chainId", json!([])),
            ("eth_getTransactionByHash", json!([hash])),
            ("eth_getTransactionReceipt", json!([hash])),
        ])
        .await?
        .into_iter();
    let mut next = || {
        answers
            .next()
            .unwrap_or_else(|| Err(RpcError::Decode("short batch answer".into())))
    };
    let (chain, transaction, receipt) = (next(), next(), next());
    let chain: U256 = decode(chain)?;
    if chain != U256::from(chain_id) {
        return Err(RpcError::Decode(format!(
            "the node serves chain {chain}, not {chain_id}"
        )));
    }
    let transaction: Option<Transaction> = decode(transaction)?;
    let receipt: Option<Receipt> = decode(receipt)?;
    Ok(transaction.zip(receipt))
}

/// One authorization to look up.
struct Query<'a> {
    rpc: &'a RpcClient,
    chain_id: u64,
    read: Read,
    /// Block time from which an unused authorization is unspent for good.
    unspent_from: U256,
}

/// Where the nonce's state is read.
enum Read {
    /// The token's `authorizationState`.
    Eip3009 {
        token: Address,
        authorizer: Address,
        nonce: B256,
    },
    /// The Permit2 contract's nonce bitmap.
    Permit2(Permit2Nonce),
}

impl Read {
    fn call(&self) -> (Address, Vec<u8>) {
        match self {
            Self::Eip3009 {
                token,
                authorizer,
                nonce,
            } => {
                let call = IEip3009Token::authorizationStateCall {
                    authorizer: *authorizer,
                    nonce: *nonce,
                };
                (*token, call.abi_encode())
            }
            Self::Permit2(permit2) => permit2.call(),
        }
    }

    fn used(&self, output: &[u8]) -> Result<bool, RpcError> {
        let used = match self {
            Self::Eip3009 { .. } => {
                IEip3009Token::authorizationStateCall::abi_decode_returns(output)
            }
            Self::Permit2(permit2) => permit2.used(output),
        };
        used.map_err(|e| RpcError::Decode(e.to_string()))
    }
}

impl Query<'_> {
    /// Chain id, nonce state and latest block in one round trip.
    async fn run(&self) -> Result<SpendState, RpcError> {
        let (to, call) = self.read.call();
        let mut answers = self
            .rpc
            .batch(vec![
                ("eth_chainId", json!([])),
                ("eth_call", call_params(None, to, &call)),
                ("eth_getBlockByNumber", json!(["latest", false])),
            ])
            .await?
            .into_iter();
        let mut next = || {
            answers
                .next()
                .unwrap_or_else(|| Err(RpcError::Decode("short batch answer".into())))
        };
        let (chain, used, block) = (next(), next(), next());
        let chain: U256 = decode(chain)?;
        if chain != U256::from(self.chain_id) {
            return Err(RpcError::Decode(format!(
                "the node serves chain {chain}, not {}",
                self.chain_id
            )));
        }
        let used = self.read.used(&decode_bytes(used)?)?;
        if used {
            return Ok(SpendState::Spent);
        }
        let timestamp: U256 = decode(block.map(|b| b["timestamp"].clone()))?;
        Ok(if timestamp >= self.unspent_from {
            SpendState::Unspent
        } else {
            SpendState::Unknown
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Result<Value, RpcError>) -> Result<T, RpcError> {
    serde_json::from_value(value?).map_err(|e| RpcError::Decode(e.to_string()))
}

fn rpc_error_kind(error: &RpcError) -> &'static str {
    match error {
        RpcError::Transport(_) => "transport",
        RpcError::Node { .. } => "node",
        RpcError::Decode(_) => "decode",
    }
}
