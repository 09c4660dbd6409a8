//! Readiness and fee-payer balances of one Solana cluster a facilitator
//! settles on.

use std::sync::Arc;

use paywire_core::{BoxFuture, ChainId, ChainProbe, RpcErrorCount, SignerBalance, U256};

use crate::rpc::SvmRpc;

/// Checks that a cluster's nodes report its genesis hash, and reads the
/// fee payers' balances in lamports.
#[derive(Debug)]
pub struct SvmChainProbe {
    network: ChainId,
    rpc: Arc<SvmRpc>,
    signers: Vec<String>,
}

impl SvmChainProbe {
    /// A probe of `network` through `rpc`, watching `signers`.
    pub fn new(network: ChainId, rpc: Arc<SvmRpc>, signers: Vec<String>) -> Self {
        Self {
            network,
            rpc,
            signers,
        }
    }
}

/// Whether `genesis_hash` is the cluster `network` names: its CAIP-2
/// reference is the first 32 characters of the genesis hash.
pub fn genesis_matches(network: &ChainId, genesis_hash: &str) -> bool {
    genesis_hash.get(..32).unwrap_or(genesis_hash) == network.reference()
}

impl ChainProbe for SvmChainProbe {
    fn network(&self) -> &ChainId {
        &self.network
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match self.rpc.genesis_hash().await {
                Ok(hash) if genesis_matches(&self.network, &hash) => Ok(()),
                Ok(hash) => Err(format!(
                    "RPC reports genesis hash {hash}, not {}",
                    self.network
                )),
                Err(error) => {
                    tracing::warn!(network = %self.network, %error, "readiness probe failed");
                    Err(error.summary())
                }
            }
        })
    }

    fn signer_balances(&self) -> BoxFuture<'_, Vec<SignerBalance>> {
        Box::pin(async move {
            let mut balances = Vec::new();
            for signer in &self.signers {
                if let Ok(lamports) = self.rpc.balance(signer).await {
                    balances.push(SignerBalance::new(signer.clone(), U256::from(lamports)));
                }
            }
            balances
        })
    }

    fn balance_unit(&self) -> &'static str {
        "lamports"
    }

    fn rpc_errors(&self) -> Vec<RpcErrorCount> {
        self.rpc.error_counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caip2_reference_is_the_genesis_hash_prefix() {
        let mainnet = ChainId::parse(crate::networks::MAINNET).unwrap();
        assert!(genesis_matches(
            &mainnet,
            "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"
        ));
        assert!(!genesis_matches(
            &mainnet,
            "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"
        ));
    }
}
