//! Server side: turn a price into `exact` EIP-3009 requirements.

use crate::reasons;
use alloy_primitives::Address;
use paywire_core::{
    AtomicAmount, ChainId, ErrorReason, JsonObject, Money, MoneyUnit, PaymentRequirements, Price,
    RequirementsRequest, SchemeError, SchemeServer,
};
use serde_json::json;

use super::SCHEME;
use crate::networks::{EvmAsset, EvmNetwork, EvmNetworks};

/// Builds `exact` requirements from prices on the networks it knows.
#[derive(Debug, Clone)]
pub struct ExactEvmServer {
    networks: EvmNetworks,
}

impl Default for ExactEvmServer {
    fn default() -> Self {
        Self::new(EvmNetworks::well_known())
    }
}

impl ExactEvmServer {
    /// A server-side scheme over `networks`.
    pub fn new(networks: EvmNetworks) -> Self {
        Self { networks }
    }

    /// The network table in use.
    pub fn networks(&self) -> &EvmNetworks {
        &self.networks
    }
}

fn eip712_extra(asset: &EvmAsset) -> JsonObject {
    let mut extra = JsonObject::new();
    extra.insert("name".into(), json!(asset.eip712_name));
    extra.insert("version".into(), json!(asset.eip712_version));
    extra
}

impl SchemeServer for ExactEvmServer {
    fn scheme(&self) -> &str {
        SCHEME
    }

    /// Not valid yet, wrong amount, wrong recipient: defects of the signed
    /// authorization that no later attempt can get past.
    fn refusal_proves_unchargeable(&self, reason: &ErrorReason) -> bool {
        let reason = reasons::canonical(reason);
        [
            reasons::VALID_AFTER,
            reasons::VALUE_MISMATCH,
            reasons::RECIPIENT_MISMATCH,
        ]
        .contains(&reason)
    }

    fn refusal_means_spent(&self, reason: &ErrorReason) -> bool {
        reasons::canonical(reason) == reasons::NONCE_USED
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let pay_to: Address = request
            .pay_to
            .parse()
            .map_err(|_| invalid(format!("payTo {:?} is not an EVM address", request.pay_to)))?;
        let network = self.networks.get(request.network);
        let (amount, asset, extra) = match request.price {
            Price::Money(money) => priced_in_money(network, request.network, money)?,
            Price::Atomic {
                amount,
                asset,
                extra,
            } => priced_in_atomic_units(network, request.network, *amount, asset, extra.as_ref())?,
            other => {
                return Err(SchemeError::Unsupported(format!(
                    "exact on EVM cannot price {other:?}"
                )));
            }
        };
        if amount.is_zero() {
            return Err(invalid("price must be greater than zero".into()));
        }
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: request.network.clone(),
            amount,
            asset: asset.to_string(),
            pay_to: pay_to.to_string(),
            max_timeout_seconds: request.max_timeout_seconds,
            extra: Some(extra),
        })
    }
}

/// What the payer signs for: the amount, the token and its EIP-712 domain
/// (`extra`).
type PricedAsset = (AtomicAmount, Address, JsonObject);

fn invalid(what: String) -> SchemeError {
    SchemeError::InvalidRequirements(what)
}

/// A money price in the network's asset for its unit (the default asset for
/// dollars or no unit, else the asset with that symbol).
fn priced_in_money(
    network: Option<&EvmNetwork>,
    chain: &ChainId,
    money: &Money,
) -> Result<PricedAsset, SchemeError> {
    let network = network.ok_or_else(|| {
        SchemeError::Unsupported(format!(
            "no default asset known for {chain}; give an atomic amount and asset"
        ))
    })?;
    let asset = match money.unit() {
        MoneyUnit::Usd | MoneyUnit::Unspecified => &network.default_asset,
        MoneyUnit::Symbol(symbol) => std::iter::once(&network.default_asset)
            .chain(&network.other_assets)
            .find(|a| a.symbol.eq_ignore_ascii_case(symbol))
            .ok_or_else(|| SchemeError::Unsupported(format!("no {symbol} asset on {chain}")))?,
        other => {
            return Err(SchemeError::Unsupported(format!(
                "no asset priced in {other:?} on {chain}"
            )));
        }
    };
    if matches!(money.unit(), MoneyUnit::Usd) && !asset.usd_stable {
        return Err(invalid(format!(
            "{} on {chain} is not a US dollar stablecoin",
            asset.symbol
        )));
    }
    let amount = money
        .to_atomic(asset.decimals)
        .map_err(|e| invalid(e.to_string()))?;
    Ok((amount, asset.address, eip712_extra(asset)))
}

/// An exact amount of a token given by address; its EIP-712 domain comes
/// from `extra`, else from the network table.
fn priced_in_atomic_units(
    network: Option<&EvmNetwork>,
    chain: &ChainId,
    amount: AtomicAmount,
    asset: &str,
    extra: Option<&JsonObject>,
) -> Result<PricedAsset, SchemeError> {
    let address: Address = asset
        .parse()
        .map_err(|_| invalid(format!("asset {asset:?} is not an EVM address")))?;
    let known = network.and_then(|n| n.asset(address));
    let extra = match (extra, known) {
        (Some(extra), _) => extra.clone(),
        (None, Some(known)) => eip712_extra(known),
        (None, None) => {
            return Err(invalid(format!(
                "asset {address} is unknown on {chain}: give extra.name and extra.version \
                 (its EIP-712 domain)"
            )));
        }
    };
    if extra.get("name").and_then(|v| v.as_str()).is_none()
        || extra.get("version").and_then(|v| v.as_str()).is_none()
    {
        return Err(invalid(
            "extra must carry the token's EIP-712 name and version".into(),
        ));
    }
    Ok((amount, address, extra))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Eip155ChainId;
    use paywire_core::{AtomicAmount, ChainId, Money};

    fn request<'a>(network: &'a ChainId, price: &'a Price) -> RequirementsRequest<'a> {
        RequirementsRequest {
            network,
            price,
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            max_timeout_seconds: 60,
            facilitator_kind: None,
        }
    }

    #[test]
    fn dollar_price_on_base_sepolia() {
        let network = ChainId::eip155(84532);
        let price = Price::Money(Money::parse("$0.01").unwrap());
        let requirements = ExactEvmServer::default()
            .requirements(&request(&network, &price))
            .unwrap();
        let json = serde_json::to_value(&requirements).unwrap();
        assert_eq!(
            json,
            json!({
                "scheme": "exact",
                "network": "eip155:84532",
                "amount": "10000",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "maxTimeoutSeconds": 60,
                "extra": {"name": "USDC", "version": "2"}
            })
        );
    }

    #[test]
    fn atomic_price_needs_domain_for_unknown_asset() {
        let network = ChainId::eip155(31337);
        let price = Price::Atomic {
            amount: AtomicAmount::from(5u64),
            asset: "0x700b6a60ce7eaaea56f065753d8dcb9653dbad35".into(),
            extra: None,
        };
        assert!(
            ExactEvmServer::default()
                .requirements(&request(&network, &price))
                .is_err()
        );
        let mut extra = JsonObject::new();
        extra.insert("name".into(), json!("USD Coin"));
        extra.insert("version".into(), json!("2"));
        let price = Price::Atomic {
            amount: AtomicAmount::from(5u64),
            asset: "0x700b6a60ce7eaaea56f065753d8dcb9653dbad35".into(),
            extra: Some(extra),
        };
        let requirements = ExactEvmServer::default()
            .requirements(&request(&network, &price))
            .unwrap();
        assert_eq!(
            requirements.asset,
            "0x700b6A60ce7EaaEA56F065753d8dcB9653dbAD35"
        );
    }

    #[test]
    fn rejects_bad_prices() {
        let network = ChainId::eip155(8453);
        let zero = Price::Money(Money::parse("$0").unwrap());
        assert!(
            ExactEvmServer::default()
                .requirements(&request(&network, &zero))
                .is_err()
        );
        let too_precise = Price::Money(Money::parse("$0.0000001").unwrap());
        assert!(
            ExactEvmServer::default()
                .requirements(&request(&network, &too_precise))
                .is_err()
        );
        let unknown_chain = ChainId::eip155(999_999);
        let dollar = Price::Money(Money::parse("$1").unwrap());
        assert!(
            ExactEvmServer::default()
                .requirements(&request(&unknown_chain, &dollar))
                .is_err()
        );
    }
}
