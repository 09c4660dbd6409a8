//! Server side: turn a price into `exact` requirements, EIP-3009 for most
//! assets, Permit2 for assets configured with it (or when an atomic price's
//! `extra` asks for it).

use crate::reasons;
use alloy_primitives::Address;
use paywire_core::{
    ErrorReason, JsonObject, PaymentRequirements, RequirementsRequest, SchemeError, SchemeServer,
};
use serde_json::json;

use super::SCHEME;
use crate::networks::{EvmAsset, EvmNetworks, TransferMethod, parse_pay_to, price};
use crate::permit2::server as permit2;

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

/// The `extra` of a known asset: its EIP-3009 domain, or the Permit2 marker
/// (with its EIP-2612 domain when it has one).
fn asset_extra(asset: &EvmAsset) -> Result<JsonObject, SchemeError> {
    match asset.transfer_method {
        TransferMethod::Eip3009 => {
            if asset.eip712_name.is_empty() || asset.eip712_version.is_empty() {
                return Err(invalid(format!(
                    "{} ({}) pays with EIP-3009 but its EIP-712 domain is not configured",
                    asset.symbol, asset.address
                )));
            }
            let mut extra = JsonObject::new();
            extra.insert("name".into(), json!(asset.eip712_name));
            extra.insert("version".into(), json!(asset.eip712_version));
            Ok(extra)
        }
        TransferMethod::Permit2 => Ok(permit2::permit2_extra(asset.eip2612_domain())),
    }
}

impl SchemeServer for ExactEvmServer {
    fn scheme(&self) -> &str {
        SCHEME
    }

    /// Not valid yet, wrong amount, wrong recipient (and, for Permit2, wrong
    /// spender or token): defects of the signed authorization that no later
    /// attempt can get past.
    fn refusal_proves_unchargeable(&self, reason: &ErrorReason) -> bool {
        let reason = reasons::canonical(reason);
        [
            reasons::VALID_AFTER,
            reasons::VALUE_MISMATCH,
            reasons::RECIPIENT_MISMATCH,
        ]
        .contains(&reason)
            || permit2::refusal_proves_unchargeable(&reason)
    }

    fn refusal_means_spent(&self, reason: &ErrorReason) -> bool {
        let reason = reasons::canonical(reason);
        reason == reasons::NONCE_USED || permit2::refusal_means_spent(&reason)
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let pay_to = parse_pay_to(request.pay_to)?;
        let priced = price(&self.networks, request, "exact")?;
        let extra = match (priced.seller_extra, priced.known) {
            (Some(extra), _) => checked_seller_extra(extra, priced.asset)?,
            (None, Some(known)) => asset_extra(known)?,
            (None, None) => {
                return Err(invalid(format!(
                    "asset {} is unknown on {}: give extra.name and extra.version \
                     (its EIP-712 domain), or extra.assetTransferMethod = \"permit2\"",
                    priced.asset, request.network
                )));
            }
        };
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: request.network.clone(),
            amount: priced.amount,
            asset: priced.asset.to_string(),
            pay_to: pay_to.to_string(),
            max_timeout_seconds: request.max_timeout_seconds,
            extra: Some(extra),
        })
    }

    /// The gas-sponsoring extensions of a Permit2 option the facilitator
    /// offers; none for EIP-3009 options.
    fn payment_required_extensions(
        &self,
        requirements: &PaymentRequirements,
        facilitator_extensions: &[String],
    ) -> JsonObject {
        if TransferMethod::of(requirements) != Ok(TransferMethod::Permit2) {
            return JsonObject::new();
        }
        permit2::sponsoring_declarations(&self.networks, requirements, facilitator_extensions)
    }
}

/// A seller's own `extra` for an atomic price: a known transfer method, and
/// the EIP-712 domain EIP-3009 signatures need.
fn checked_seller_extra(extra: JsonObject, asset: Address) -> Result<JsonObject, SchemeError> {
    let method = match extra.get("assetTransferMethod") {
        None => TransferMethod::Eip3009,
        Some(value) => value
            .as_str()
            .and_then(TransferMethod::parse)
            .ok_or_else(|| {
                invalid(format!(
                    "extra.assetTransferMethod {value} is not \"eip3009\" or \"permit2\""
                ))
            })?,
    };
    let has_domain = extra.get("name").and_then(|v| v.as_str()).is_some()
        && extra.get("version").and_then(|v| v.as_str()).is_some();
    if method == TransferMethod::Eip3009 && !has_domain {
        return Err(invalid(format!(
            "extra for {asset} must carry the token's EIP-712 name and version"
        )));
    }
    Ok(extra)
}

fn invalid(what: String) -> SchemeError {
    SchemeError::InvalidRequirements(what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Eip155ChainId;
    use paywire_core::{AtomicAmount, ChainId, Money, Price};

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

    fn permit2_networks() -> EvmNetworks {
        let mut networks = EvmNetworks::well_known();
        let permit = EvmAsset {
            address: "0x1111111111111111111111111111111111111111"
                .parse()
                .unwrap(),
            symbol: "EUSD".into(),
            decimals: 6,
            eip712_name: "Permit Dollar".into(),
            eip712_version: "1".into(),
            usd_stable: false,
            transfer_method: TransferMethod::Permit2,
            eip2612: true,
        };
        let plain = EvmAsset {
            address: "0x2222222222222222222222222222222222222222"
                .parse()
                .unwrap(),
            symbol: "PUSD".into(),
            decimals: 6,
            eip712_name: String::new(),
            eip712_version: String::new(),
            usd_stable: false,
            transfer_method: TransferMethod::Permit2,
            eip2612: false,
        };
        networks.add_asset(84532, permit);
        networks.add_asset(84532, plain);
        networks
    }

    #[test]
    fn permit2_assets_get_the_typescript_extra() {
        let network = ChainId::eip155(84532);
        let server = ExactEvmServer::new(permit2_networks());
        let extra_of = |price: &str| {
            let price = Price::Money(Money::parse(price).unwrap());
            let requirements = server.requirements(&request(&network, &price)).unwrap();
            serde_json::to_string(&requirements.extra.unwrap()).unwrap()
        };
        assert_eq!(
            extra_of("1 EUSD"),
            r#"{"name":"Permit Dollar","version":"1","assetTransferMethod":"permit2"}"#
        );
        assert_eq!(extra_of("1 PUSD"), r#"{"assetTransferMethod":"permit2"}"#);
        // USDC stays EIP-3009, unchanged.
        assert_eq!(extra_of("$1"), r#"{"name":"USDC","version":"2"}"#);
    }

    #[test]
    fn an_atomic_price_can_ask_for_permit2_and_bad_methods_are_refused() {
        let network = ChainId::eip155(84532);
        let usdc = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
        let atomic = |extra: serde_json::Value| Price::Atomic {
            amount: AtomicAmount::from(10u64),
            asset: usdc.into(),
            extra: extra.as_object().cloned(),
        };
        let server = ExactEvmServer::default();
        let price =
            atomic(json!({"name": "USDC", "version": "2", "assetTransferMethod": "permit2"}));
        let requirements = server.requirements(&request(&network, &price)).unwrap();
        assert_eq!(
            TransferMethod::of(&requirements),
            Ok(TransferMethod::Permit2)
        );
        let price = atomic(json!({"assetTransferMethod": "permit2"}));
        assert!(server.requirements(&request(&network, &price)).is_ok());
        for bad in [json!("Permit2"), json!("erc20"), json!(1)] {
            let price = atomic(json!({"name": "USDC", "version": "2", "assetTransferMethod": bad}));
            let error = server.requirements(&request(&network, &price)).unwrap_err();
            assert!(error.to_string().contains("assetTransferMethod"), "{error}");
        }
        let price = atomic(json!({"assetTransferMethod": "eip3009"}));
        assert!(server.requirements(&request(&network, &price)).is_err());
    }

    #[test]
    fn sponsoring_extensions_only_for_permit2_options_the_facilitator_backs() {
        use crate::permit2::{EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING};
        let network = ChainId::eip155(84532);
        let server = ExactEvmServer::new(permit2_networks());
        let both = [
            EIP2612_GAS_SPONSORING.to_owned(),
            ERC20_APPROVAL_GAS_SPONSORING.to_owned(),
        ];
        let declared = |price: &str, listed: &[String]| {
            let price = Price::Money(Money::parse(price).unwrap());
            let requirements = server.requirements(&request(&network, &price)).unwrap();
            let declared = server.payment_required_extensions(&requirements, listed);
            declared.keys().cloned().collect::<Vec<_>>()
        };
        assert!(declared("$1", &both).is_empty());
        assert_eq!(declared("1 EUSD", &both), both);
        assert_eq!(declared("1 PUSD", &both), [ERC20_APPROVAL_GAS_SPONSORING]);
        assert!(declared("1 EUSD", &[]).is_empty());
        assert!(declared("1 EUSD", &["bazaar".to_owned()]).is_empty());
    }

    #[test]
    fn permit2_refusals_count_like_their_eip3009_peers() {
        let server = ExactEvmServer::default();
        let code = ErrorReason::from_wire;
        for unchargeable in [
            "invalid_exact_evm_payload_recipient_mismatch",
            "invalid_permit2_recipient_mismatch",
            "permit2_amount_mismatch",
            "permit2_token_mismatch",
            "invalid_permit2_spender",
            "permit2_not_yet_valid",
        ] {
            assert!(
                server.refusal_proves_unchargeable(&code(unchargeable)),
                "{unchargeable}"
            );
        }
        for not in [
            "permit2_deadline_expired",
            "permit2_allowance_required",
            "permit2_insufficient_balance",
            "permit2_simulation_failed",
        ] {
            assert!(!server.refusal_proves_unchargeable(&code(not)), "{not}");
            assert!(!server.refusal_means_spent(&code(not)), "{not}");
        }
        assert!(server.refusal_means_spent(&code("permit2_invalid_nonce")));
        assert!(server.refusal_means_spent(&code("invalid_exact_evm_nonce_already_used")));
    }
}
