//! Client side: sign an EIP-3009 authorization, or a Permit2 one when the
//! requirements say `assetTransferMethod: "permit2"`, for chosen
//! requirements.

use std::collections::HashMap;
use std::sync::Arc;

use crate::Eip155ChainId;
use alloy_primitives::{Address, B256};
use paywire_core::{
    AtomicAmount, BoxFuture, ChainId, CreatedPayment, Extensions, JsonObject, PaymentRequirements,
    SchemeClient, SchemeError,
};

use super::payload::{Authorization, ExactEvmPayload, eip712_domain, signing_hash};
use super::{Clock, SCHEME, system_clock};
use crate::networks::TransferMethod;
use crate::permit2::client::{Permit2Signer, Spender};
use crate::permit2::{EXACT_PERMIT2_PROXY, Permit2Payload};
use crate::rpc::RpcClient;
use crate::signer::EvmSigner;

/// Signs `exact` payments on any `eip155` chain with one signer.
pub struct ExactEvmClient<S> {
    signer: S,
    clock: Clock,
    nonces: NonceSource,
    nodes: HashMap<ChainId, Arc<RpcClient>>,
}

/// Source of nonces (EIP-3009 nonces, and the 256 bits of Permit2 ones);
/// random by default, fixed in golden tests.
pub type NonceSource = Arc<dyn Fn() -> B256 + Send + Sync>;

impl<S: EvmSigner> ExactEvmClient<S> {
    /// A client paying from `signer`.
    pub fn new(signer: S) -> Self {
        Self {
            signer,
            clock: system_clock(),
            nonces: Arc::new(B256::random),
            nodes: HashMap::new(),
        }
    }

    /// Reads `network` through `rpc` before signing Permit2 payments: the
    /// payer's Permit2 allowance, and what a sponsored approval needs (token
    /// nonce, account nonce, fees). Without a node the client signs without
    /// checking.
    pub fn with_rpc(mut self, network: ChainId, rpc: Arc<RpcClient>) -> Self {
        self.nodes.insert(network, rpc);
        self
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

    /// The paying address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Builds and signs the payload for `requirements`.
    pub async fn sign(
        &self,
        requirements: &PaymentRequirements,
    ) -> Result<ExactEvmPayload, SchemeError> {
        let invalid = |what: &str| SchemeError::InvalidRequirements(what.to_owned());
        if requirements.scheme != SCHEME {
            return Err(invalid("scheme is not exact"));
        }
        let chain_id = requirements.network.eip155_id().ok_or_else(|| {
            SchemeError::Unsupported(format!(
                "{} is not an EVM chain id in canonical form",
                requirements.network
            ))
        })?;
        match TransferMethod::of(requirements) {
            Ok(TransferMethod::Eip3009) => {}
            Ok(TransferMethod::Permit2) => {
                return Err(invalid(
                    "the requirements ask for Permit2: sign them with sign_permit2",
                ));
            }
            Err(other) => {
                return Err(SchemeError::Unsupported(format!(
                    "asset transfer method {other} is not supported by this client"
                )));
            }
        }
        let asset: Address = requirements
            .asset
            .parse()
            .map_err(|_| invalid("asset is not an EVM address"))?;
        let pay_to: Address = requirements
            .pay_to
            .parse()
            .map_err(|_| invalid("payTo is not an EVM address"))?;
        let name = requirements
            .extra_str("name")
            .ok_or_else(|| invalid("extra.name (EIP-712 domain name) is missing"))?;
        let version = requirements
            .extra_str("version")
            .ok_or_else(|| invalid("extra.version (EIP-712 domain version) is missing"))?;
        let now = (self.clock)();
        let authorization = Authorization {
            from: self.signer.address(),
            to: pay_to,
            value: requirements.amount,
            // Valid immediately: a payer whose clock runs ahead of the
            // chain's must not be refused as "not yet valid" (and it is what
            // the reference SDK signs, so identical inputs give identical bytes).
            valid_after: AtomicAmount::ZERO,
            valid_before: now.saturating_add(requirements.max_timeout_seconds).into(),
            nonce: (self.nonces)(),
        };
        let digest = signing_hash(
            &authorization,
            &eip712_domain(name, version, chain_id, asset),
        );
        let signature = self
            .signer
            .sign_hash(&digest)
            .await
            .map_err(|e| SchemeError::Signing(e.to_string()))?;
        Ok(ExactEvmPayload {
            signature: signature.as_bytes().into(),
            authorization,
        })
    }
}

impl<S: EvmSigner> ExactEvmClient<S> {
    fn permit2_signer(&self, network: &ChainId) -> Permit2Signer<'_, S> {
        Permit2Signer {
            signer: &self.signer,
            clock: &self.clock,
            nonces: &self.nonces,
            rpc: self.nodes.get(network).map(|rpc| &**rpc),
        }
    }

    /// Builds and signs the Permit2 payload for `requirements` (spender: the
    /// canonical exact proxy), without checking the allowance.
    pub async fn sign_permit2(
        &self,
        requirements: &PaymentRequirements,
    ) -> Result<Permit2Payload, SchemeError> {
        check_permit2_exact(requirements)?;
        self.permit2_signer(&requirements.network)
            .sign(requirements, EXACT_SPENDER)
            .await
    }
}

const EXACT_SPENDER: Spender = Spender {
    proxy: EXACT_PERMIT2_PROXY,
    facilitator: None,
};

fn check_permit2_exact(requirements: &PaymentRequirements) -> Result<(), SchemeError> {
    if requirements.scheme != SCHEME {
        return Err(SchemeError::InvalidRequirements(
            "scheme is not exact".into(),
        ));
    }
    if TransferMethod::of(requirements) != Ok(TransferMethod::Permit2) {
        return Err(SchemeError::InvalidRequirements(
            "the requirements do not ask for Permit2".into(),
        ));
    }
    Ok(())
}

impl<S: EvmSigner> SchemeClient for ExactEvmClient<S> {
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

    /// EIP-3009 or Permit2 as the requirements ask; for Permit2, with the
    /// approval a sponsoring facilitator `offered` to submit when the payer's
    /// allowance is short (see [`ExactEvmClient::with_rpc`]).
    fn create_payment<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        offered: Option<&'a Extensions>,
    ) -> BoxFuture<'a, Result<CreatedPayment, SchemeError>> {
        Box::pin(async move {
            if TransferMethod::of(requirements) == Ok(TransferMethod::Permit2) {
                check_permit2_exact(requirements)?;
                return self
                    .permit2_signer(&requirements.network)
                    .create_payment(requirements, offered, EXACT_SPENDER)
                    .await;
            }
            Ok(CreatedPayment::new(
                self.sign(requirements).await?.to_json(),
            ))
        })
    }
}
