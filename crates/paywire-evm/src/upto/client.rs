//! Client side of `upto`: sign a Permit2 authorization for the maximum,
//! spendable by the upto proxy only when the named facilitator settles.

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use paywire_core::{
    BoxFuture, ChainId, CreatedPayment, Extensions, JsonObject, PaymentRequirements, SchemeClient,
    SchemeError,
};

use super::{FACILITATOR_ADDRESS, SCHEME};
use crate::Eip155ChainId;
use crate::exact::{Clock, NonceSource, system_clock};
use crate::networks::TransferMethod;
use crate::permit2::client::{Permit2Signer, Spender};
use crate::permit2::{Permit2Payload, UPTO_PERMIT2_PROXY};
use crate::rpc::RpcClient;
use crate::signer::EvmSigner;

/// Signs `upto` payments on any `eip155` chain with one signer.
pub struct UptoEvmClient<S> {
    signer: S,
    clock: Clock,
    nonces: NonceSource,
    nodes: HashMap<ChainId, Arc<RpcClient>>,
}

impl<S: EvmSigner> UptoEvmClient<S> {
    /// A client paying from `signer`.
    pub fn new(signer: S) -> Self {
        Self {
            signer,
            clock: system_clock(),
            nonces: Arc::new(B256::random),
            nodes: HashMap::new(),
        }
    }

    /// Replaces the nonce source (deterministic tests only: a repeated
    /// nonce makes the second payment unusable).
    pub fn with_nonce_source(mut self, nonces: NonceSource) -> Self {
        self.nonces = nonces;
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Reads `network` through `rpc` before signing: the payer's Permit2
    /// allowance, and what a sponsored approval needs. Without a node the
    /// client signs without checking.
    pub fn with_rpc(mut self, network: ChainId, rpc: Arc<RpcClient>) -> Self {
        self.nodes.insert(network, rpc);
        self
    }

    /// The paying address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    fn permit2_signer(&self, network: &ChainId) -> Permit2Signer<'_, S> {
        Permit2Signer {
            signer: &self.signer,
            clock: &self.clock,
            nonces: &self.nonces,
            rpc: self.nodes.get(network).map(|rpc| &**rpc),
        }
    }

    /// Builds and signs the payload for `requirements` (spender: the
    /// canonical upto proxy; witness facilitator: `extra.facilitatorAddress`),
    /// without checking the allowance.
    pub async fn sign(
        &self,
        requirements: &PaymentRequirements,
    ) -> Result<Permit2Payload, SchemeError> {
        let spender = spender(requirements)?;
        self.permit2_signer(&requirements.network)
            .sign(requirements, spender)
            .await
    }
}

/// The proxy and facilitator an `upto` signature is bound to.
fn spender(requirements: &PaymentRequirements) -> Result<Spender, SchemeError> {
    let invalid = |what: String| SchemeError::InvalidRequirements(what);
    if requirements.scheme != SCHEME {
        return Err(invalid("scheme is not upto".into()));
    }
    match TransferMethod::of(requirements) {
        // Absent means Permit2 for upto: it has no other method.
        Ok(TransferMethod::Permit2) => {}
        Ok(TransferMethod::Eip3009) if requirements.extra_str("assetTransferMethod").is_none() => {}
        Ok(other) => return Err(invalid(format!("upto cannot pay with {other}"))),
        Err(other) => return Err(invalid(format!("unknown asset transfer method {other}"))),
    }
    let facilitator = requirements
        .extra_str(FACILITATOR_ADDRESS)
        .ok_or_else(|| invalid(format!("extra.{FACILITATOR_ADDRESS} is missing")))?
        .parse::<Address>()
        .map_err(|_| invalid(format!("extra.{FACILITATOR_ADDRESS} is not an EVM address")))?;
    if facilitator.is_zero() {
        return Err(invalid(format!(
            "extra.{FACILITATOR_ADDRESS} is the zero address"
        )));
    }
    Ok(Spender {
        proxy: UPTO_PERMIT2_PROXY,
        facilitator: Some(facilitator),
    })
}

impl<S: EvmSigner> SchemeClient for UptoEvmClient<S> {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn payer(&self, network: &ChainId) -> Option<String> {
        network
            .eip155_id()
            .map(|_| self.signer.address().to_string())
    }

    fn create_payload<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        Box::pin(async move { Ok(self.create_payment(requirements, None).await?.payload) })
    }

    /// The signed maximum, with the approval a sponsoring facilitator
    /// `offered` to submit when the payer's Permit2 allowance is short (see
    /// [`UptoEvmClient::with_rpc`]).
    fn create_payment<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        offered: Option<&'a Extensions>,
    ) -> BoxFuture<'a, Result<CreatedPayment, SchemeError>> {
        Box::pin(async move {
            let spender = spender(requirements)?;
            self.permit2_signer(&requirements.network)
                .create_payment(requirements, offered, spender)
                .await
        })
    }
}
