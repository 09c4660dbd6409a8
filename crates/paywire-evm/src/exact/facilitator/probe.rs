//! Readiness and signer balances of one EVM chain a facilitator settles on.

use std::sync::Arc;

use alloy_primitives::{Address, U256};
use paywire_core::{BoxFuture, ChainId, ChainProbe, RpcErrorCount, SignerBalance};

use crate::networks::EvmNetwork;
use crate::rpc::RpcClient;

/// Checks that a chain's nodes answer with its chain id, and reads the
/// native balances (in wei) of its settlement signers.
pub(crate) struct EvmChainProbe {
    network: ChainId,
    chain_id: u64,
    rpc: Arc<RpcClient>,
    signers: Vec<Address>,
}

impl EvmChainProbe {
    /// A probe of `network` through `rpc`, watching `signers`.
    pub(crate) fn new(network: &EvmNetwork, rpc: Arc<RpcClient>, signers: Vec<Address>) -> Self {
        Self {
            network: network.chain.clone(),
            chain_id: network.chain_id,
            rpc,
            signers,
        }
    }
}

impl ChainProbe for EvmChainProbe {
    fn network(&self) -> &ChainId {
        &self.network
    }

    /// The node must report the configured chain id. A failure shows as its
    /// kind (`RPC endpoint unreachable`); the detail, scrubbed of the URL,
    /// goes to the log only.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match self.rpc.chain_id().await {
                Ok(id) if id == self.chain_id => Ok(()),
                Ok(id) => Err(format!(
                    "RPC reports chain id {id}, expected {}",
                    self.chain_id
                )),
                Err(error) => {
                    tracing::warn!(network = %self.network, %error, "readiness probe failed");
                    Err(error.summary())
                }
            }
        })
    }

    /// One `eth_getBalance` batch; signers whose balance is unreadable are
    /// left out, and so is everything when the node does not answer.
    fn signer_balances(&self) -> BoxFuture<'_, Vec<SignerBalance>> {
        Box::pin(async move {
            let calls = self
                .signers
                .iter()
                .map(|signer| ("eth_getBalance", serde_json::json!([signer, "latest"])))
                .collect();
            let Ok(answers) = self.rpc.batch(calls).await else {
                return Vec::new();
            };
            self.signers
                .iter()
                .zip(answers)
                .filter_map(|(signer, answer)| {
                    let balance = serde_json::from_value::<U256>(answer.ok()?).ok()?;
                    Some(SignerBalance::new(signer.to_string(), balance))
                })
                .collect()
        })
    }

    fn balance_unit(&self) -> &'static str {
        "wei"
    }

    /// The failures the chain's RPC client counted (it is shared with the
    /// settlement side, so these are every RPC failure on this chain).
    fn rpc_errors(&self) -> Vec<RpcErrorCount> {
        self.rpc.error_counts()
    }
}
