//! Server side of `upto`: a maximum price becomes Permit2 requirements
//! bound to the facilitator that will settle them.

use alloy_primitives::Address;
use paywire_core::{
    ErrorReason, JsonObject, PaymentRequirements, RequirementsRequest, SchemeError, SchemeServer,
};
use serde_json::json;

use super::{FACILITATOR_ADDRESS, SCHEME};
use crate::networks::{EvmNetworks, TransferMethod, parse_pay_to, price};
use crate::permit2::server as permit2;
use crate::reasons;

/// Builds `upto` requirements (amount = the most a request may cost) from
/// prices on the networks it knows. Any ERC-20 can be priced: `upto` always
/// moves funds through Permit2.
#[derive(Debug, Clone)]
pub struct UptoEvmServer {
    networks: EvmNetworks,
}

impl Default for UptoEvmServer {
    fn default() -> Self {
        Self::new(EvmNetworks::well_known())
    }
}

impl UptoEvmServer {
    /// A server-side scheme over `networks`.
    pub fn new(networks: EvmNetworks) -> Self {
        Self { networks }
    }

    /// The network table in use.
    pub fn networks(&self) -> &EvmNetworks {
        &self.networks
    }
}

/// Codes saying the settlement asked for more than the payer signed: the
/// proxy refuses such a transfer whenever it is tried.
const OVER_MAXIMUM: &[&str] = &["upto_amount_exceeds_permitted"];

impl SchemeServer for UptoEvmServer {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn usage_based(&self) -> bool {
        true
    }

    fn refusal_proves_unchargeable(&self, reason: &ErrorReason) -> bool {
        permit2::refusal_proves_unchargeable(reason)
            || *reason == reasons::UPTO_SETTLEMENT_EXCEEDS_AMOUNT
            || OVER_MAXIMUM.contains(&reason.as_str())
    }

    fn refusal_means_spent(&self, reason: &ErrorReason) -> bool {
        permit2::refusal_means_spent(reason)
    }

    /// Needs the facilitator's `/supported` entry: its `facilitatorAddress`
    /// is the only account the payer's signature lets settle.
    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let pay_to = parse_pay_to(request.pay_to)?;
        let priced = price(&self.networks, request, SCHEME)?;
        let mut extra = match priced.seller_extra {
            Some(extra) => checked_seller_extra(extra)?,
            None => permit2::permit2_extra(priced.known.and_then(|a| a.eip2612_domain())),
        };
        extra.insert(
            FACILITATOR_ADDRESS.into(),
            json!(facilitator_address(request)?.to_checksum(None)),
        );
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

    fn payment_required_extensions(
        &self,
        requirements: &PaymentRequirements,
        facilitator_extensions: &[String],
    ) -> JsonObject {
        permit2::sponsoring_declarations(&self.networks, requirements, facilitator_extensions)
    }
}

/// A seller's `extra` for an atomic price, marked Permit2 (the only method
/// `upto` has); another method is refused.
fn checked_seller_extra(mut extra: JsonObject) -> Result<JsonObject, SchemeError> {
    match extra.get("assetTransferMethod") {
        None => {
            extra.insert("assetTransferMethod".into(), json!(TransferMethod::Permit2));
        }
        Some(value) if value.as_str() == Some(TransferMethod::Permit2.as_str()) => {}
        Some(value) => {
            return Err(SchemeError::InvalidRequirements(format!(
                "upto pays through Permit2 only; extra.assetTransferMethod is {value}"
            )));
        }
    }
    extra.remove(FACILITATOR_ADDRESS);
    Ok(extra)
}

/// The settling facilitator's address from its `/supported` kind.
fn facilitator_address(request: &RequirementsRequest<'_>) -> Result<Address, SchemeError> {
    let value = request
        .facilitator_kind
        .and_then(|kind| kind.extra.as_ref())
        .and_then(|extra| extra.get(FACILITATOR_ADDRESS))
        .ok_or_else(|| {
            SchemeError::NeedsFacilitatorData(format!(
                "upto on {} needs the facilitator's extra.{FACILITATOR_ADDRESS} (its settling \
                 address) from /supported",
                request.network
            ))
        })?;
    value
        .as_str()
        .and_then(|text| text.parse::<Address>().ok())
        .ok_or_else(|| {
            SchemeError::InvalidRequirements(format!(
                "the facilitator's extra.{FACILITATOR_ADDRESS} {value} is not an EVM address"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Eip155ChainId;
    use crate::networks::{EvmAsset, EvmNetwork};
    use crate::permit2::{EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING};
    use paywire_core::{AtomicAmount, ChainId, Money, Price, SupportedKind};

    const FACILITATOR: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

    fn kind(extra: Option<serde_json::Value>) -> SupportedKind {
        SupportedKind {
            x402_version: 2,
            scheme: "upto".into(),
            network: "eip155:84532".into(),
            extra: extra.and_then(|e| e.as_object().cloned()),
        }
    }

    fn request<'a>(
        network: &'a ChainId,
        price: &'a Price,
        kind: Option<&'a SupportedKind>,
    ) -> RequirementsRequest<'a> {
        RequirementsRequest {
            network,
            price,
            pay_to: PAY_TO,
            max_timeout_seconds: 300,
            facilitator_kind: kind,
        }
    }

    #[test]
    fn dollar_maximum_on_base_sepolia_is_permit2_bound_to_the_facilitator() {
        let network = ChainId::eip155(84532);
        let price = Price::Money(Money::parse("$0.05").unwrap());
        let kind = kind(Some(json!({ "facilitatorAddress": FACILITATOR })));
        let server = UptoEvmServer::default();
        assert!(server.usage_based());
        let requirements = server
            .requirements(&request(&network, &price, Some(&kind)))
            .unwrap();
        let json = serde_json::to_string(&requirements).unwrap();
        assert_eq!(
            json,
            r#"{"scheme":"upto","network":"eip155:84532","amount":"50000","#.to_owned()
                + r#""asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","#
                + r#""payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":300,"#
                + r#""extra":{"name":"USDC","version":"2","assetTransferMethod":"permit2","#
                + r#""facilitatorAddress":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8"}}"#
        );
    }

    #[test]
    fn without_the_facilitator_address_it_needs_facilitator_data() {
        let network = ChainId::eip155(84532);
        let price = Price::Money(Money::parse("$0.05").unwrap());
        let server = UptoEvmServer::default();
        for kind in [
            None,
            Some(kind(None)),
            Some(kind(Some(json!({"feePayer": "x"})))),
        ] {
            let error = server
                .requirements(&request(&network, &price, kind.as_ref()))
                .unwrap_err();
            assert!(
                matches!(error, SchemeError::NeedsFacilitatorData(_)),
                "{error}"
            );
        }
        for bad in [json!("0x1234"), json!(7), json!(null)] {
            let kind = kind(Some(json!({ "facilitatorAddress": bad })));
            let error = server
                .requirements(&request(&network, &price, Some(&kind)))
                .unwrap_err();
            assert!(
                matches!(error, SchemeError::InvalidRequirements(_)),
                "{error}"
            );
        }
        // A bad price is reported before the missing facilitator data.
        let zero = Price::Money(Money::parse("$0").unwrap());
        let error = server
            .requirements(&request(&network, &zero, None))
            .unwrap_err();
        assert!(
            matches!(error, SchemeError::InvalidRequirements(_)),
            "{error}"
        );
    }

    #[test]
    fn a_token_without_eip2612_gets_no_domain_and_any_token_can_be_priced() {
        let network = ChainId::eip155(31337);
        let plain = Address::repeat_byte(0x44);
        let asset = EvmAsset {
            address: plain,
            symbol: "PUSD".into(),
            decimals: 6,
            eip712_name: String::new(),
            eip712_version: String::new(),
            usd_stable: true,
            transfer_method: TransferMethod::Permit2,
            eip2612: false,
        };
        let mut networks = EvmNetworks::empty();
        networks.insert(EvmNetwork::new(31337, "Anvil", asset));
        let server = UptoEvmServer::new(networks);
        let kind = kind(Some(json!({ "facilitatorAddress": FACILITATOR })));
        let price = Price::Money(Money::parse("$1").unwrap());
        let requirements = server
            .requirements(&request(&network, &price, Some(&kind)))
            .unwrap();
        assert_eq!(
            serde_json::Value::Object(requirements.extra.clone().unwrap()),
            json!({"assetTransferMethod": "permit2",
                   "facilitatorAddress": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"})
        );
        let both = [
            EIP2612_GAS_SPONSORING.to_owned(),
            ERC20_APPROVAL_GAS_SPONSORING.to_owned(),
        ];
        let declared = server.payment_required_extensions(&requirements, &both);
        assert_eq!(
            declared.keys().collect::<Vec<_>>(),
            [ERC20_APPROVAL_GAS_SPONSORING]
        );
        // An unknown token priced atomically: no domain, still Permit2.
        let unknown = Price::Atomic {
            amount: AtomicAmount::from(7u64),
            asset: Address::repeat_byte(0x55).to_string(),
            extra: None,
        };
        let requirements = server
            .requirements(&request(&network, &unknown, Some(&kind)))
            .unwrap();
        assert_eq!(
            requirements.extra_str("assetTransferMethod"),
            Some("permit2")
        );
        assert_eq!(requirements.extra_str("name"), None);
    }

    #[test]
    fn a_seller_extra_cannot_choose_eip3009_nor_name_the_facilitator() {
        let network = ChainId::eip155(84532);
        let kind = kind(Some(json!({ "facilitatorAddress": FACILITATOR })));
        let atomic = |extra: serde_json::Value| Price::Atomic {
            amount: AtomicAmount::from(7u64),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            extra: extra.as_object().cloned(),
        };
        let server = UptoEvmServer::default();
        let eip3009 = atomic(json!({"assetTransferMethod": "eip3009"}));
        assert!(
            server
                .requirements(&request(&network, &eip3009, Some(&kind)))
                .is_err()
        );
        let sneaky = atomic(json!({"name": "USDC", "version": "2",
                                   "facilitatorAddress": "0x0000000000000000000000000000000000000001"}));
        let requirements = server
            .requirements(&request(&network, &sneaky, Some(&kind)))
            .unwrap();
        assert_eq!(
            serde_json::Value::Object(requirements.extra.unwrap()),
            json!({"name": "USDC", "version": "2", "assetTransferMethod": "permit2",
                   "facilitatorAddress": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"})
        );
    }

    #[test]
    fn refusals_that_prove_nothing_was_charged_or_that_it_was_spent() {
        let server = UptoEvmServer::default();
        for code in [
            "invalid_upto_evm_payload_settlement_exceeds_amount",
            "upto_amount_exceeds_permitted",
            "invalid_permit2_recipient_mismatch",
            "permit2_token_mismatch",
        ] {
            assert!(
                server.refusal_proves_unchargeable(&ErrorReason::from_wire(code)),
                "{code}"
            );
        }
        // Another facilitator refusing to settle proves nothing about the
        // one named in the witness; neither does an expired deadline.
        for code in [
            "upto_unauthorized_facilitator",
            "upto_facilitator_mismatch",
            "permit2_deadline_expired",
            "permit2_invalid_nonce",
        ] {
            assert!(
                !server.refusal_proves_unchargeable(&ErrorReason::from_wire(code)),
                "{code}"
            );
        }
        assert!(server.refusal_means_spent(&ErrorReason::from_wire("permit2_invalid_nonce")));
        assert!(!server.refusal_means_spent(&ErrorReason::from_wire("permit2_deadline_expired")));
    }
}
