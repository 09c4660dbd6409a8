//! Client side: sign an EIP-3009 authorization for chosen requirements.

use crate::Eip155ChainId;
use alloy_primitives::{Address, B256};
use paywire_core::{
    AtomicAmount, BoxFuture, ChainId, JsonObject, PaymentRequirements, SchemeClient, SchemeError,
};

use super::payload::{Authorization, ExactEvmPayload, eip712_domain, signing_hash};
use super::{Clock, SCHEME, system_clock};
use crate::signer::EvmSigner;

/// Signs `exact` payments on any `eip155` chain with one signer.
pub struct ExactEvmClient<S> {
    signer: S,
    clock: Clock,
    nonces: NonceSource,
}

/// Source of EIP-3009 nonces; random by default, fixed in golden tests.
pub type NonceSource = std::sync::Arc<dyn Fn() -> B256 + Send + Sync>;

impl<S: EvmSigner> ExactEvmClient<S> {
    /// A client paying from `signer`.
    pub fn new(signer: S) -> Self {
        Self {
            signer,
            clock: system_clock(),
            nonces: std::sync::Arc::new(B256::random),
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
        match requirements.extra_str("assetTransferMethod") {
            None | Some("eip3009") => {}
            Some(other) => {
                return Err(SchemeError::Unsupported(format!(
                    "asset transfer method {other:?} is not supported by this client"
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
        Box::pin(async move { Ok(self.sign(requirements).await?.to_json()) })
    }
}
