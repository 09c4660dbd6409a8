//! The `exact` scheme on Solana: the client builds a transfer transaction
//! with the facilitator as fee payer and signs it as the payer; the
//! facilitator checks it against its sponsor acceptance policy, co-signs
//! and sends it.

use paywire_core::{ErrorReason, PaymentRequirements};
use solana_address::Address;

use crate::reasons;
use crate::tx;

pub mod client;
pub mod dedup;
pub mod facilitator;
pub mod server;
pub mod verify;

pub use client::{ExactSvmClient, PaymentPlan, build_payment};
pub use facilitator::{ExactSvmFacilitator, SvmChain};
pub use server::ExactSvmServer;

/// The scheme name.
pub const SCHEME: &str = "exact";
/// Longest `extra.memo`, in bytes (the specification's limit).
pub const MAX_MEMO_BYTES: usize = 256;
/// `extra` key of the facilitator's fee payer (specification).
pub const EXTRA_FEE_PAYER: &str = "feePayer";
/// `extra` key of the seller's memo (specification).
pub const EXTRA_MEMO: &str = "memo";
/// `extra` key (paywire's) of the highest compute unit limit the
/// facilitator accepts; published in `/supported` and copied into
/// requirements, so that a client stays under it.
pub const EXTRA_MAX_COMPUTE_UNITS: &str = "maxComputeUnits";
/// `extra` key (paywire's) of the highest compute unit price, in
/// micro-lamports, the facilitator accepts.
pub const EXTRA_MAX_COMPUTE_UNIT_PRICE: &str = "maxComputeUnitPriceMicroLamports";

/// The requirements of one payment, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terms {
    pub(crate) fee_payer: Address,
    pub(crate) mint: Address,
    pub(crate) pay_to: Address,
    pub(crate) amount: u64,
    pub(crate) memo: Option<String>,
}

impl Terms {
    /// Reads `requirements`; the error carries the reason and a detail.
    pub(crate) fn read(requirements: &PaymentRequirements) -> Result<Self, (ErrorReason, String)> {
        let invalid = |detail: &str| (ErrorReason::INVALID_PAYMENT_REQUIREMENTS, detail.to_owned());
        let fee_payer = requirements.extra_str(EXTRA_FEE_PAYER).ok_or_else(|| {
            (
                reasons::MISSING_FEE_PAYER,
                "extra.feePayer is missing".to_owned(),
            )
        })?;
        let fee_payer = tx::parse_address(fee_payer)
            .ok_or_else(|| invalid("extra.feePayer is not a Solana address"))?;
        let mint = tx::parse_address(&requirements.asset)
            .ok_or_else(|| invalid("asset is not a Solana address"))?;
        let pay_to = tx::parse_address(&requirements.pay_to)
            .ok_or_else(|| invalid("payTo is not a Solana address"))?;
        let amount = requirements
            .amount
            .to_u128()
            .and_then(|a| u64::try_from(a).ok())
            .filter(|a| *a > 0)
            .ok_or_else(|| invalid("amount is not a positive 64-bit amount"))?;
        let memo = match requirements.extra.as_ref().and_then(|e| e.get(EXTRA_MEMO)) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(memo)) if memo.len() <= MAX_MEMO_BYTES => {
                Some(memo.clone())
            }
            Some(_) => return Err(invalid("extra.memo must be a string of at most 256 bytes")),
        };
        Ok(Self {
            fee_payer,
            mint,
            pay_to,
            amount,
            memo,
        })
    }
}
