//! Server side of Permit2 payments, shared by `exact` (Permit2 assets) and
//! `upto`: the `extra` of a Permit2 option, the gas-sponsoring extensions a
//! 402 declares for it, and which facilitator refusals say the payload can
//! never move funds or was already spent.

use alloy_primitives::Address;
use paywire_core::{ErrorReason, JsonObject, PaymentRequirements};
use serde_json::{Value, json};

use super::{EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING, PERMIT2_METHOD};
use crate::networks::{EvmAsset, EvmNetworks};

/// Refusal codes of Permit2 settlement (the TypeScript SDK 2.27's
/// spellings) that describe the signed authorization itself: a wrong
/// spender, recipient, token or amount, or a window that had not opened.
/// No later attempt of the same payload gets past them, through any
/// facilitator.
const UNCHARGEABLE: &[&str] = &[
    "invalid_permit2_spender",
    "invalid_permit2_recipient_mismatch",
    "permit2_token_mismatch",
    "permit2_amount_mismatch",
    "permit2_not_yet_valid",
    // The proxy's own reverts, as the TypeScript facilitator maps them.
    "permit2_invalid_amount",
    "permit2_invalid_destination",
    "permit2_payment_too_early",
];

/// The Permit2 contract's `InvalidNonce` revert: the owner's nonce bit is
/// set, so the authorization was used (or the owner invalidated it, which
/// counts the same: the safe side).
const SPENT: &[&str] = &["permit2_invalid_nonce"];

/// Whether `reason` proves a Permit2 payload could never move funds.
pub(crate) fn refusal_proves_unchargeable(reason: &ErrorReason) -> bool {
    UNCHARGEABLE.contains(&reason.as_str())
}

/// Whether `reason` says a Permit2 authorization was already spent.
pub(crate) fn refusal_means_spent(reason: &ErrorReason) -> bool {
    SPENT.contains(&reason.as_str())
}

/// The `extra` of a Permit2 option as the TypeScript SDK orders it: the
/// token's EIP-2612 domain when it has one (a payer without allowance can
/// then sign a permit), then `assetTransferMethod`.
pub(crate) fn permit2_extra(eip2612_domain: Option<(&str, &str)>) -> JsonObject {
    let mut extra = JsonObject::new();
    if let Some((name, version)) = eip2612_domain {
        extra.insert("name".into(), json!(name));
        extra.insert("version".into(), json!(version));
    }
    extra.insert("assetTransferMethod".into(), json!(PERMIT2_METHOD));
    extra
}

/// Whether the asset of a Permit2 option implements EIP-2612: the network
/// table says so for a known asset; otherwise the option's `extra` must name
/// the EIP-712 domain a permit is signed for.
fn supports_eip2612(networks: &EvmNetworks, requirements: &PaymentRequirements) -> bool {
    let known: Option<&EvmAsset> = requirements
        .asset
        .parse::<Address>()
        .ok()
        .and_then(|address| networks.get(&requirements.network)?.asset(address));
    match known {
        Some(asset) => asset.eip2612,
        None => {
            requirements.extra_str("name").is_some() && requirements.extra_str("version").is_some()
        }
    }
}

/// The gas-sponsoring extensions a 402 declares for a Permit2 option: those
/// the facilitator lists in `/supported`, `eip2612GasSponsoring` only for an
/// EIP-2612 token.
pub(crate) fn sponsoring_declarations(
    networks: &EvmNetworks,
    requirements: &PaymentRequirements,
    facilitator_extensions: &[String],
) -> JsonObject {
    let listed = |id: &str| facilitator_extensions.iter().any(|e| e == id);
    let mut declared = JsonObject::new();
    if listed(EIP2612_GAS_SPONSORING) && supports_eip2612(networks, requirements) {
        declared.insert(EIP2612_GAS_SPONSORING.into(), eip2612_declaration());
    }
    if listed(ERC20_APPROVAL_GAS_SPONSORING) {
        declared.insert(
            ERC20_APPROVAL_GAS_SPONSORING.into(),
            erc20_approval_declaration(),
        );
    }
    declared
}

const ADDRESS_PATTERN: &str = "^0x[a-fA-F0-9]{40}$";
const UINT_PATTERN: &str = "^[0-9]+$";
const HEX_PATTERN: &str = "^0x[a-fA-F0-9]+$";
const VERSION_PATTERN: &str = "^[0-9]+(\\.[0-9]+)*$";

fn text(pattern: &str, description: &str) -> Value {
    json!({"type": "string", "pattern": pattern, "description": description})
}

/// A JSON Schema (draft 2020-12) object whose every property is required.
fn object_schema(properties: Vec<(&str, Value)>) -> Value {
    let required: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
    let properties: JsonObject = properties
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
    })
}

/// `eip2612GasSponsoring`: the facilitator submits the payer's EIP-2612
/// permit for Permit2 and pays its gas.
pub fn eip2612_declaration() -> Value {
    json!({
        "info": {
            "description": "The facilitator submits an EIP-2612 permit granting the canonical \
                            Permit2 contract an allowance, and pays its gas.",
            "version": "1",
        },
        "schema": object_schema(vec![
            ("from", text(ADDRESS_PATTERN, "Payer (token owner) signing the permit.")),
            ("asset", text(ADDRESS_PATTERN, "ERC-20 token implementing EIP-2612.")),
            ("spender", text(ADDRESS_PATTERN, "Spender being approved: the canonical Permit2.")),
            ("amount", text(UINT_PATTERN, "Allowance granted, a decimal uint256.")),
            ("nonce", text(UINT_PATTERN, "The owner's EIP-2612 nonce on the token.")),
            ("deadline", text(UINT_PATTERN, "Unix time after which the permit is void.")),
            ("signature", text(HEX_PATTERN, "The permit's 65-byte signature (r, s, v), hex.")),
            ("version", text(VERSION_PATTERN, "Version of this info object.")),
        ]),
    })
}

/// `erc20ApprovalGasSponsoring`: the facilitator broadcasts the payer's
/// signed `approve(Permit2, amount)` transaction, funding its gas if needed.
pub fn erc20_approval_declaration() -> Value {
    json!({
        "info": {
            "description": "The facilitator broadcasts the payer's signed ERC-20 approve() of the \
                            canonical Permit2 contract, funding its gas when the payer has none.",
            "version": "1",
        },
        "schema": object_schema(vec![
            ("from", text(ADDRESS_PATTERN, "Payer (token owner) who signed the transaction.")),
            ("asset", text(ADDRESS_PATTERN, "ERC-20 token being approved.")),
            ("spender", text(ADDRESS_PATTERN, "Spender being approved: the canonical Permit2.")),
            ("amount", text(UINT_PATTERN, "Allowance granted, a decimal uint256.")),
            ("signedTransaction", text(HEX_PATTERN, "The signed EIP-1559 approve() transaction, hex.")),
            ("version", text(VERSION_PATTERN, "Version of this info object.")),
        ]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Eip155ChainId;
    use paywire_core::{AtomicAmount, ChainId};

    fn option(asset: &str, extra: JsonObject) -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: ChainId::eip155(8453),
            amount: AtomicAmount::from(10u64),
            asset: asset.into(),
            pay_to: Address::repeat_byte(1).to_string(),
            max_timeout_seconds: 60,
            extra: Some(extra),
        }
    }

    const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";

    #[test]
    fn declarations_follow_the_facilitator_and_the_token() {
        let networks = EvmNetworks::well_known();
        let both = [
            EIP2612_GAS_SPONSORING.to_owned(),
            ERC20_APPROVAL_GAS_SPONSORING.to_owned(),
        ];
        let usdc = option(BASE_USDC, permit2_extra(Some(("USD Coin", "2"))));
        let declared = sponsoring_declarations(&networks, &usdc, &both);
        let keys: Vec<&String> = declared.keys().collect();
        assert_eq!(
            keys,
            [EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING]
        );
        // Only what the facilitator lists.
        assert!(sponsoring_declarations(&networks, &usdc, &[]).is_empty());
        let only_erc20 = [ERC20_APPROVAL_GAS_SPONSORING.to_owned()];
        let declared = sponsoring_declarations(&networks, &usdc, &only_erc20);
        assert_eq!(
            declared.keys().collect::<Vec<_>>(),
            [ERC20_APPROVAL_GAS_SPONSORING]
        );
        // An unknown token without an EIP-712 domain gets no permit offer.
        let plain = option(&Address::repeat_byte(9).to_string(), permit2_extra(None));
        let declared = sponsoring_declarations(&networks, &plain, &both);
        assert_eq!(
            declared.keys().collect::<Vec<_>>(),
            [ERC20_APPROVAL_GAS_SPONSORING]
        );
        let named = option(
            &Address::repeat_byte(9).to_string(),
            permit2_extra(Some(("T", "1"))),
        );
        assert_eq!(sponsoring_declarations(&networks, &named, &both).len(), 2);
    }

    #[test]
    fn a_known_token_without_eip2612_gets_no_permit_offer_even_with_a_domain() {
        let mut networks = EvmNetworks::well_known();
        let mut usdc = networks.by_chain_id(8453).unwrap().default_asset.clone();
        usdc.eip2612 = false;
        networks.add_asset(8453, usdc);
        let both = [
            EIP2612_GAS_SPONSORING.to_owned(),
            ERC20_APPROVAL_GAS_SPONSORING.to_owned(),
        ];
        let requirements = option(BASE_USDC, permit2_extra(Some(("USD Coin", "2"))));
        let declared = sponsoring_declarations(&networks, &requirements, &both);
        assert_eq!(
            declared.keys().collect::<Vec<_>>(),
            [ERC20_APPROVAL_GAS_SPONSORING]
        );
    }

    #[test]
    fn declarations_carry_info_and_a_schema_requiring_every_field() {
        for (declaration, fields) in [
            (
                eip2612_declaration(),
                vec![
                    "from",
                    "asset",
                    "spender",
                    "amount",
                    "nonce",
                    "deadline",
                    "signature",
                    "version",
                ],
            ),
            (
                erc20_approval_declaration(),
                vec![
                    "from",
                    "asset",
                    "spender",
                    "amount",
                    "signedTransaction",
                    "version",
                ],
            ),
        ] {
            assert_eq!(declaration["info"]["version"], "1");
            assert!(declaration["info"]["description"].is_string());
            let schema = &declaration["schema"];
            assert_eq!(
                schema["$schema"],
                "https://json-schema.org/draft/2020-12/schema"
            );
            assert_eq!(schema["type"], "object");
            assert_eq!(schema["required"], json!(fields));
            let properties = schema["properties"].as_object().unwrap();
            assert_eq!(properties.keys().collect::<Vec<_>>(), fields);
            assert!(
                properties
                    .values()
                    .all(|p| p["type"] == "string" && p["pattern"].is_string())
            );
        }
    }

    #[test]
    fn permit2_extra_is_ordered_as_the_typescript_sdk_writes_it() {
        let with_domain = Value::Object(permit2_extra(Some(("Permit Dollar", "1"))));
        assert_eq!(
            serde_json::to_string(&with_domain).unwrap(),
            r#"{"name":"Permit Dollar","version":"1","assetTransferMethod":"permit2"}"#
        );
        let without = Value::Object(permit2_extra(None));
        assert_eq!(without, json!({"assetTransferMethod": "permit2"}));
    }
}
