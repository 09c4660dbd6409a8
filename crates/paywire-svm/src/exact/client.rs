//! Client side: build, and sign as the payer, the `exact` payment
//! transaction the requirements ask for.

use std::collections::HashMap;
use std::sync::Arc;

use paywire_core::{
    BoxFuture, ChainId, JsonObject, PaymentRequirements, SchemeClient, SchemeError,
};
use solana_address::Address;
use solana_hash::Hash;
use solana_message::{VersionedMessage, v0};
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;

use super::{EXTRA_MAX_COMPUTE_UNIT_PRICE, EXTRA_MAX_COMPUTE_UNITS, SCHEME, Terms};
use crate::keys::SvmKeypair;
use crate::mint::parse_mint;
use crate::rpc::SvmRpc;
use crate::tx::{self, TransferChecked};

/// Compute units a payment asks for: a `TransferChecked` and a memo use a
/// few thousand; wallet-injected Lighthouse checks add some more.
pub const DEFAULT_COMPUTE_UNITS: u32 = 20_000;
/// Default priority fee, micro-lamports per compute unit.
pub const DEFAULT_COMPUTE_UNIT_PRICE: u64 = 1;

/// Everything a payment transaction is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentPlan {
    /// The facilitator's fee payer (`extra.feePayer`).
    pub fee_payer: Address,
    /// The mint.
    pub mint: Address,
    /// Its token program.
    pub token_program: Address,
    /// Its decimals.
    pub decimals: u8,
    /// The merchant.
    pub pay_to: Address,
    /// Atomic amount.
    pub amount: u64,
    /// Memo text (`extra.memo` or a random nonce).
    pub memo: String,
    /// Compute unit limit.
    pub compute_units: u32,
    /// Compute unit price.
    pub compute_unit_price: u64,
    /// A recent blockhash.
    pub blockhash: Hash,
}

/// A random 16-byte nonce, hex: keeps two identical payments distinct.
pub fn random_memo() -> Result<String, SchemeError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|_| SchemeError::Signing("no randomness available".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The v0 transaction of `plan` (no lookup tables), signed by `payer`; the
/// fee payer's signature slot is left empty for the facilitator.
pub fn build_payment(
    plan: &PaymentPlan,
    payer: &SvmKeypair,
) -> Result<VersionedTransaction, SchemeError> {
    let transfer = TransferChecked {
        token_program: plan.token_program,
        source: tx::associated_token_address(&payer.address(), &plan.mint, &plan.token_program),
        mint: plan.mint,
        destination: tx::associated_token_address(&plan.pay_to, &plan.mint, &plan.token_program),
        authority: payer.address(),
        amount: plan.amount,
        decimals: plan.decimals,
    };
    let instructions = [
        tx::set_compute_unit_limit(plan.compute_units),
        tx::set_compute_unit_price(plan.compute_unit_price),
        transfer.instruction(),
        tx::memo(&plan.memo),
    ];
    #[allow(
        clippy::clone_on_copy,
        reason = "`Hash` is `Copy` only when another crate enables solana-hash's `copy` feature"
    )]
    let message =
        v0::Message::try_compile(&plan.fee_payer, &instructions, &[], plan.blockhash.clone())
            .map_err(|e| SchemeError::Signing(format!("cannot compile the transaction: {e}")))?;
    let message = VersionedMessage::V0(message);
    let signature = payer.sign(&tx::message_bytes(&message));
    Ok(VersionedTransaction {
        signatures: vec![Signature::default(), signature],
        message,
    })
}

/// Pays `exact` on Solana clusters with one keypair.
pub struct ExactSvmClient {
    payer: SvmKeypair,
    rpc: HashMap<ChainId, Arc<SvmRpc>>,
}

impl std::fmt::Debug for ExactSvmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactSvmClient")
            .field("payer", &self.payer)
            .field("networks", &self.rpc.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ExactSvmClient {
    /// A client paying with `payer`, with no node yet.
    pub fn new(payer: SvmKeypair) -> Self {
        Self {
            payer,
            rpc: HashMap::new(),
        }
    }

    /// Reads blockhashes and mints of `network` through `rpc`.
    pub fn network(mut self, network: ChainId, rpc: Arc<SvmRpc>) -> Self {
        self.rpc.insert(network, rpc);
        self
    }

    async fn plan(&self, requirements: &PaymentRequirements) -> Result<PaymentPlan, SchemeError> {
        let terms = Terms::read(requirements)
            .map_err(|(_, detail)| SchemeError::InvalidRequirements(detail))?;
        let rpc = self.rpc.get(&requirements.network).ok_or_else(|| {
            SchemeError::Unsupported(format!("no Solana RPC URL for {}", requirements.network))
        })?;
        let chain = |e: crate::rpc::RpcError| SchemeError::Chain(e.summary());
        let account = rpc
            .account(&terms.mint.to_string())
            .await
            .map_err(chain)?
            .ok_or_else(|| {
                SchemeError::InvalidRequirements("the asset's mint does not exist".into())
            })?;
        let owner = tx::parse_address(&account.owner)
            .ok_or_else(|| SchemeError::Chain("mint owner undecodable".into()))?;
        let mint = parse_mint(&owner, &account.data)
            .map_err(|e| SchemeError::InvalidRequirements(e.to_string()))?;
        let blockhash = rpc.latest_blockhash().await.map_err(chain)?;
        let blockhash = blockhash
            .blockhash
            .parse::<Hash>()
            .map_err(|_| SchemeError::Chain("blockhash undecodable".into()))?;
        let extra_u64 = |key: &str| {
            requirements
                .extra
                .as_ref()
                .and_then(|e| e.get(key))
                .and_then(serde_json::Value::as_u64)
        };
        let max_units = extra_u64(EXTRA_MAX_COMPUTE_UNITS).and_then(|u| u32::try_from(u).ok());
        let max_price = extra_u64(EXTRA_MAX_COMPUTE_UNIT_PRICE);
        let memo = match terms.memo {
            Some(memo) => memo,
            None => random_memo()?,
        };
        Ok(PaymentPlan {
            fee_payer: terms.fee_payer,
            mint: terms.mint,
            token_program: mint.token_program,
            decimals: mint.decimals,
            pay_to: terms.pay_to,
            amount: terms.amount,
            memo,
            compute_units: max_units
                .map_or(DEFAULT_COMPUTE_UNITS, |m| m.min(DEFAULT_COMPUTE_UNITS)),
            compute_unit_price: max_price.map_or(DEFAULT_COMPUTE_UNIT_PRICE, |m| {
                m.min(DEFAULT_COMPUTE_UNIT_PRICE)
            }),
            blockhash,
        })
    }
}

impl SchemeClient for ExactSvmClient {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn payer(&self, network: &ChainId) -> Option<String> {
        (network.namespace() == crate::networks::NAMESPACE)
            .then(|| self.payer.address().to_string())
    }

    fn create_payload<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        Box::pin(async move {
            let plan = self.plan(requirements).await?;
            let transaction = build_payment(&plan, &self.payer)?;
            let mut payload = JsonObject::new();
            payload.insert(
                "transaction".into(),
                tx::encode_transaction(&transaction).into(),
            );
            Ok(payload)
        })
    }
}
