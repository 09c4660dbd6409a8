//! Server side: turn a price into `exact` requirements on a Solana cluster.

use paywire_core::{
    AtomicAmount, ChainId, JsonObject, MoneyUnit, PaymentRequirements, Price, RequirementsRequest,
    SchemeError, SchemeServer,
};
use serde_json::Value;

use super::{
    EXTRA_FEE_PAYER, EXTRA_MAX_COMPUTE_UNIT_PRICE, EXTRA_MAX_COMPUTE_UNITS, EXTRA_MEMO,
    MAX_MEMO_BYTES, SCHEME,
};
use crate::networks::{SvmAsset, SvmNetworks};
use crate::reasons;
use crate::tx;

/// Builds `exact` requirements on the clusters it knows.
#[derive(Debug, Clone)]
pub struct ExactSvmServer {
    networks: SvmNetworks,
    fee_payers: Vec<(ChainId, String)>,
}

impl Default for ExactSvmServer {
    fn default() -> Self {
        Self::new(SvmNetworks::well_known())
    }
}

impl ExactSvmServer {
    /// A server over `networks`.
    pub fn new(networks: SvmNetworks) -> Self {
        Self {
            networks,
            fee_payers: Vec::new(),
        }
    }

    /// Uses `fee_payer` on `network` when the facilitator's `/supported`
    /// names none (a merchant sponsoring its own fees).
    pub fn with_fee_payer(mut self, network: ChainId, fee_payer: impl Into<String>) -> Self {
        self.fee_payers.push((network, fee_payer.into()));
        self
    }

    fn fee_payer(&self, request: &RequirementsRequest<'_>) -> Result<String, SchemeError> {
        let published = request
            .facilitator_kind
            .and_then(|kind| kind.extra.as_ref())
            .and_then(|extra| extra.get(EXTRA_FEE_PAYER))
            .and_then(Value::as_str);
        let configured = self
            .fee_payers
            .iter()
            .find(|(network, _)| network == request.network)
            .map(|(_, payer)| payer.as_str());
        let fee_payer = published.or(configured).ok_or_else(|| {
            SchemeError::NeedsFacilitatorData(format!(
                "no fee payer for {}: the facilitator's /supported names none and none is configured",
                request.network
            ))
        })?;
        tx::parse_address(fee_payer)
            .map(|a| a.to_string())
            .ok_or_else(|| {
                SchemeError::InvalidRequirements("the fee payer is not a Solana address".into())
            })
    }

    fn price(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<(AtomicAmount, String, JsonObject), SchemeError> {
        match request.price {
            Price::Money(money) => {
                let network = self.networks.get(request.network).ok_or_else(|| {
                    SchemeError::Unsupported(format!(
                        "no default asset known for {}",
                        request.network
                    ))
                })?;
                let asset = match money.unit() {
                    MoneyUnit::Symbol(symbol) => {
                        network.assets.iter().find(|a| a.symbol == *symbol)
                    }
                    _ => network.default_asset(),
                }
                .ok_or_else(|| {
                    SchemeError::Unsupported(format!("no asset for {money} on {}", request.network))
                })?;
                let amount = money
                    .to_atomic(asset.decimals)
                    .map_err(|e| SchemeError::InvalidRequirements(e.to_string()))?;
                Ok((amount, mint_of(asset), JsonObject::new()))
            }
            Price::Atomic {
                amount,
                asset,
                extra,
            } => {
                let mint = tx::parse_address(asset).ok_or_else(|| {
                    SchemeError::InvalidRequirements(format!(
                        "asset {asset:?} is not a Solana mint"
                    ))
                })?;
                Ok((*amount, mint.to_string(), extra.clone().unwrap_or_default()))
            }
            other => Err(SchemeError::Unsupported(format!(
                "exact on Solana cannot price {other:?}"
            ))),
        }
    }
}

fn mint_of(asset: &SvmAsset) -> String {
    asset.mint.to_string()
}

impl SchemeServer for ExactSvmServer {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let pay_to = tx::parse_address(request.pay_to).ok_or_else(|| {
            SchemeError::InvalidRequirements(format!(
                "payTo {:?} is not a Solana address",
                request.pay_to
            ))
        })?;
        let (amount, asset, mut extra) = self.price(request)?;
        if amount.is_zero()
            || amount
                .to_u128()
                .and_then(|a| u64::try_from(a).ok())
                .is_none()
        {
            return Err(SchemeError::InvalidRequirements(
                "the price must be above zero and fit 64 bits".into(),
            ));
        }
        if let Some(memo) = extra.get(EXTRA_MEMO) {
            let fits = memo.as_str().is_some_and(|m| m.len() <= MAX_MEMO_BYTES);
            if !fits {
                return Err(SchemeError::InvalidRequirements(
                    "extra.memo must be a string of at most 256 bytes".into(),
                ));
            }
        }
        extra.insert(EXTRA_FEE_PAYER.into(), self.fee_payer(request)?.into());
        let published = request
            .facilitator_kind
            .and_then(|kind| kind.extra.as_ref());
        for key in [EXTRA_MAX_COMPUTE_UNITS, EXTRA_MAX_COMPUTE_UNIT_PRICE] {
            if let Some(cap) = published.and_then(|e| e.get(key)).filter(|v| v.is_u64()) {
                extra.insert(key.into(), cap.clone());
            }
        }
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: request.network.clone(),
            amount,
            asset,
            pay_to: pay_to.to_string(),
            max_timeout_seconds: request.max_timeout_seconds,
            extra: Some(extra),
        })
    }

    /// Wrong amount, mint or recipient, memo defects, a malformed
    /// transaction: no later attempt of the same payload can pass.
    fn refusal_proves_unchargeable(&self, reason: &paywire_core::ErrorReason) -> bool {
        [
            reasons::AMOUNT_MISMATCH,
            reasons::MINT_MISMATCH,
            reasons::RECIPIENT_MISMATCH,
            reasons::MEMO_MISMATCH,
            reasons::MEMO_COUNT,
            reasons::UNDECODABLE,
            reasons::BLOCKHASH_EXPIRED,
        ]
        .contains(reason)
    }
}

#[cfg(test)]
mod tests {
    use paywire_core::{Money, SupportedKind};

    use super::*;
    use crate::networks::{DEVNET, USDC_DEVNET};

    const PAY_TO: &str = "2wKupLR9q6wXYppw8Gr2NvWxKBUqm4PPJKkQfoxHDBg4";
    const FEE_PAYER: &str = "EwWqGE4ZFKLofuestmU4LDdK7XM1N4ALgdZccwYugwGd";

    fn kind(extra: Value) -> SupportedKind {
        serde_json::from_value(serde_json::json!({
            "x402Version": 2, "scheme": "exact", "network": DEVNET, "extra": extra
        }))
        .unwrap()
    }

    #[test]
    fn money_prices_become_usdc_with_the_facilitators_fee_payer_and_caps() {
        let network = ChainId::parse(DEVNET).unwrap();
        let price = Price::Money(Money::parse("$0.01").unwrap());
        let kind = kind(serde_json::json!({"feePayer": FEE_PAYER, "maxComputeUnits": 400000}));
        let request = RequirementsRequest {
            network: &network,
            price: &price,
            pay_to: PAY_TO,
            max_timeout_seconds: 60,
            facilitator_kind: Some(&kind),
        };
        let requirements = ExactSvmServer::default().requirements(&request).unwrap();
        assert_eq!(requirements.amount, AtomicAmount::from(10_000u64));
        assert_eq!(requirements.asset, USDC_DEVNET);
        assert_eq!(requirements.extra_str("feePayer"), Some(FEE_PAYER));
        assert_eq!(
            requirements.extra.as_ref().unwrap()["maxComputeUnits"],
            400_000
        );
    }

    #[test]
    fn without_a_fee_payer_or_with_a_long_memo_requirements_are_refused() {
        let network = ChainId::parse(DEVNET).unwrap();
        let price = Price::Money(Money::parse("$0.01").unwrap());
        let request = RequirementsRequest {
            network: &network,
            price: &price,
            pay_to: PAY_TO,
            max_timeout_seconds: 60,
            facilitator_kind: None,
        };
        let server = ExactSvmServer::default();
        assert!(matches!(
            server.requirements(&request),
            Err(SchemeError::NeedsFacilitatorData(_))
        ));
        let server = server.with_fee_payer(network.clone(), FEE_PAYER);
        assert_eq!(
            server.requirements(&request).unwrap().extra_str("feePayer"),
            Some(FEE_PAYER)
        );
        let mut extra = JsonObject::new();
        extra.insert("memo".into(), "x".repeat(257).into());
        let long_memo = Price::Atomic {
            amount: AtomicAmount::from(5u64),
            asset: USDC_DEVNET.into(),
            extra: Some(extra),
        };
        let request = RequirementsRequest {
            price: &long_memo,
            ..request
        };
        assert!(server.requirements(&request).is_err());
    }
}
