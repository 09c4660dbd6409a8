//! The x402 v2 wire types, field for field as the specification names them.
//!
//! Optional fields are omitted when absent (never `null`), scheme-specific
//! objects (`extra`, `payload`) and extensions keep unknown keys verbatim.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::amount::AtomicAmount;
use crate::chain::ChainId;
use crate::extensions::Extensions;
use crate::reason::ErrorReason;

/// The protocol version this crate speaks.
pub const X402_VERSION: u32 = 2;

/// A JSON object with arbitrary members, kept in insertion order.
pub type JsonObject = Map<String, Value>;

/// Describes the protected resource (`ResourceInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// URL of the protected resource.
    pub url: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Name of the service hosting the resource (printable ASCII, ≤ 32 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Topical tags for discovery (≤ 5, each ≤ 32 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Absolute http(s) URL of an icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

impl ResourceInfo {
    /// A resource with only its URL set.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            description: None,
            mime_type: None,
            service_name: None,
            tags: None,
            icon_url: None,
        }
    }
}

/// One way the server accepts to be paid (`PaymentRequirements`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// Scheme identifier, e.g. `exact`.
    pub scheme: String,
    /// CAIP-2 network.
    pub network: ChainId,
    /// Amount in atomic units of `asset`.
    pub amount: AtomicAmount,
    /// Token address (or currency code for non-chain rails).
    pub asset: String,
    /// Recipient address.
    pub pay_to: String,
    /// How long the payment may take, in seconds.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data (unknown keys preserved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<JsonObject>,
}

/// The `extra` member in which a usage-based option (`upto`) states the
/// amount a typical request is expected to cost, in atomic units as a decimal
/// string (`"2500"`). Informative only: the payer still authorizes
/// `amount`, the maximum. Clients compare such options by it when present.
pub const EXPECTED_AMOUNT_EXTRA: &str = "expectedAmount";

impl PaymentRequirements {
    /// A string member of `extra`, if present.
    pub fn extra_str(&self, key: &str) -> Option<&str> {
        self.extra.as_ref()?.get(key)?.as_str()
    }

    /// The expected charge of a usage-based option
    /// ([`EXPECTED_AMOUNT_EXTRA`]), when present, well formed and not above
    /// `amount`; anything else reads as absent.
    pub fn expected_amount(&self) -> Option<AtomicAmount> {
        let expected = AtomicAmount::parse(self.extra_str(EXPECTED_AMOUNT_EXTRA)?).ok()?;
        (expected <= self.amount).then_some(expected)
    }
}

/// The server's answer to an unpaid request (`PaymentRequired`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: u32,
    /// Why payment is required (human readable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource being sold.
    pub resource: ResourceInfo,
    /// Accepted payment options.
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions offered by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
}

/// The client's signed payment (`PaymentPayload`).
///
/// Members are serialised in the order the official TypeScript SDK writes
/// them (`x402Version`, `payload`, `extensions`, `resource`, `accepted`), so
/// identical payments encode to identical header bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Always 2.
    pub x402_version: u32,
    /// Scheme-specific signed data.
    pub payload: JsonObject,
    /// Extensions echoed (and possibly extended) by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
    /// The resource being paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The requirements the client chose, echoed from the server.
    pub accepted: PaymentRequirements,
}

/// Body of `POST /verify` and `POST /settle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    /// Always 2.
    pub x402_version: u32,
    /// What the client sent.
    pub payment_payload: PaymentPayload,
    /// What the resource server requires (its own copy, not the client's).
    pub payment_requirements: PaymentRequirements,
}

/// Body of `POST /verify`.
pub type VerifyRequest = FacilitatorRequest;
/// Body of `POST /settle`.
pub type SettleRequest = FacilitatorRequest;

impl FacilitatorRequest {
    /// Pairs a payload with the server's requirements.
    pub fn new(payment_payload: PaymentPayload, payment_requirements: PaymentRequirements) -> Self {
        Self {
            x402_version: X402_VERSION,
            payment_payload,
            payment_requirements,
        }
    }
}

/// Reads a boolean that must be literally `true` to count as true: a missing,
/// `null`, string or numeric value is `false`, so a sloppy or hostile peer can
/// never turn a failure into a success.
fn strictly_true<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(matches!(
        Value::deserialize(deserializer)?,
        Value::Bool(true)
    ))
}

/// Result of `POST /verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// True only if the payment is valid. Missing or non-boolean is false.
    #[serde(default, deserialize_with = "strictly_true")]
    pub is_valid: bool,
    /// Why it is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<ErrorReason>,
    /// Human-readable detail for the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    /// The payer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Scheme-specific data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<JsonObject>,
}

impl VerifyResponse {
    /// A valid payment by `payer`.
    pub fn valid(payer: impl Into<String>) -> Self {
        Self {
            is_valid: true,
            invalid_reason: None,
            invalid_message: None,
            payer: Some(payer.into()),
            extra: None,
        }
    }

    /// An invalid payment.
    pub fn invalid(reason: ErrorReason, payer: Option<String>) -> Self {
        Self {
            is_valid: false,
            invalid_reason: Some(reason),
            invalid_message: None,
            payer,
            extra: None,
        }
    }

    /// Adds a human-readable message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.invalid_message = Some(message.into());
        self
    }
}

/// Result of `POST /settle`, also carried in `PAYMENT-RESPONSE`.
///
/// On the wire a failure always carries `transaction: ""` (the
/// specification's rule), whatever the in-memory value: serialisation
/// enforces it, so no code path can send a failure with a hash. The one
/// exception is a pending answer (`success: false`, reason
/// [`ErrorReason::TRANSACTION_PENDING`]): it names the transaction that was
/// broadcast and may still land, which the payer needs to follow it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// True only if settled. Missing or non-boolean is false.
    #[serde(default, deserialize_with = "strictly_true")]
    pub success: bool,
    /// Why settlement failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<ErrorReason>,
    /// Human-readable detail for the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The payer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Transaction hash of a settlement (or of a pending answer). On any
    /// other failure it may name, in memory only, the transaction that was
    /// broadcast and failed (for the facilitator's records); it is never
    /// serialised (see [`SettleResponse::wire_transaction`]).
    #[serde(default)]
    pub transaction: String,
    /// CAIP-2 network.
    pub network: ChainId,
    /// Amount actually settled, in atomic units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<AtomicAmount>,
    /// Scheme-specific settlement data (the `batch-settlement` bindings'
    /// commitment id and channel or bundle state). Not in the core
    /// specification's table; the `credit` binding defines it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<JsonObject>,
    /// Extensions data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
}

impl SettleResponse {
    /// A successful settlement.
    pub fn settled(
        network: ChainId,
        transaction: impl Into<String>,
        payer: Option<String>,
    ) -> Self {
        Self {
            success: true,
            error_reason: None,
            error_message: None,
            payer,
            transaction: transaction.into(),
            network,
            amount: None,
            extra: None,
            extensions: None,
        }
    }

    /// A failed settlement. `transaction` names the transaction that was
    /// broadcast and failed, if any (empty otherwise): it stays in memory for
    /// the facilitator's records and is serialised as `""`, except for
    /// [`ErrorReason::TRANSACTION_PENDING`] (prefer [`SettleResponse::pending`]).
    pub fn failed(
        network: ChainId,
        reason: ErrorReason,
        payer: Option<String>,
        transaction: impl Into<String>,
    ) -> Self {
        Self {
            success: false,
            error_reason: Some(reason),
            error_message: None,
            payer,
            transaction: transaction.into(),
            network,
            amount: None,
            extra: None,
            extensions: None,
        }
    }

    /// A transaction was broadcast but is not confirmed yet: `success:
    /// false`, reason [`ErrorReason::TRANSACTION_PENDING`], with its hash.
    pub fn pending(
        network: ChainId,
        payer: Option<String>,
        transaction: impl Into<String>,
    ) -> Self {
        Self::failed(
            network,
            ErrorReason::TRANSACTION_PENDING,
            payer,
            transaction,
        )
    }

    /// The `transaction` the wire carries: the hash of a settlement or of a
    /// pending answer, `""` for every other failure.
    pub fn wire_transaction(&self) -> &str {
        if self.success || self.error_reason == Some(ErrorReason::TRANSACTION_PENDING) {
            &self.transaction
        } else {
            ""
        }
    }

    /// Whether the facilitator sent a transaction whose outcome is unknown yet
    /// (it may still land, so it must not be treated as a plain failure).
    pub fn is_pending(&self) -> bool {
        !self.success
            && self.error_reason == Some(ErrorReason::TRANSACTION_PENDING)
            && !self.transaction.is_empty()
    }

    /// Adds a human-readable message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.error_message = Some(message.into());
        self
    }
}

/// The serialised form of a [`SettleResponse`] (same members, same order).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettleResponseWire<'a> {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_reason: Option<&'a ErrorReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payer: Option<&'a str>,
    transaction: &'a str,
    network: &'a ChainId,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<&'a AtomicAmount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<&'a JsonObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extensions: Option<&'a Extensions>,
}

impl Serialize for SettleResponse {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SettleResponseWire {
            success: self.success,
            error_reason: self.error_reason.as_ref(),
            error_message: self.error_message.as_deref(),
            payer: self.payer.as_deref(),
            transaction: self.wire_transaction(),
            network: &self.network,
            amount: self.amount.as_ref(),
            extra: self.extra.as_ref(),
            extensions: self.extensions.as_ref(),
        }
        .serialize(serializer)
    }
}

/// One (version, scheme, network) a facilitator supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// Protocol version of this kind.
    pub x402_version: u32,
    /// Scheme identifier.
    pub scheme: String,
    /// Network: CAIP-2 for v2 kinds (v1 kinds use legacy names, so this stays
    /// a string to let a mixed list parse).
    pub network: String,
    /// Scheme-specific configuration (e.g. a Solana fee payer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<JsonObject>,
}

/// Result of `GET /supported`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedResponse {
    /// Supported kinds.
    pub kinds: Vec<SupportedKind>,
    /// Extension identifiers the facilitator implements.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Signer addresses per CAIP-2 pattern (e.g. `eip155:*`).
    #[serde(default)]
    pub signers: BTreeMap<String, Vec<String>>,
}

impl SupportedResponse {
    /// The v2 kind for `scheme` on `network`, if supported.
    pub fn kind(&self, scheme: &str, network: &ChainId) -> Option<&SupportedKind> {
        self.kinds.iter().find(|kind| {
            kind.x402_version == X402_VERSION
                && kind.scheme == scheme
                && kind.network == network.as_str()
        })
    }
}

/// One entry of a discovery listing (`GET /discovery/resources`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredResource {
    /// URL or identifier of the resource.
    pub resource: String,
    /// Resource type, e.g. `http`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Protocol version of the resource.
    pub x402_version: u32,
    /// Accepted payment options.
    pub accepts: Vec<PaymentRequirements>,
    /// Unix time of the last update.
    pub last_updated: u64,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonObject>,
    /// Extension payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
}

/// Paging information of a discovery listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Page size.
    pub limit: u64,
    /// Items skipped.
    pub offset: u64,
    /// Total items.
    pub total: u64,
}

/// Result of `GET /discovery/resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryResponse {
    /// Protocol version.
    pub x402_version: u32,
    /// The page of resources.
    pub items: Vec<DiscoveredResource>,
    /// Paging information.
    pub pagination: Pagination,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verify_response_only_true_is_valid() {
        for (body, expected) in [
            (json!({"isValid": true}), true),
            (json!({"isValid": false}), false),
            (json!({}), false),
            (json!({"isValid": null}), false),
            (json!({"isValid": "true"}), false),
            (json!({"isValid": 1}), false),
        ] {
            let parsed: VerifyResponse = serde_json::from_value(body.clone()).unwrap();
            assert_eq!(parsed.is_valid, expected, "{body}");
        }
    }

    #[test]
    fn settle_response_only_true_is_success() {
        for (success, expected) in [
            (json!(true), true),
            (json!(false), false),
            (json!("true"), false),
            (json!(1), false),
            (json!(null), false),
        ] {
            let body = json!({"success": success, "transaction": "0x1", "network": "eip155:1"});
            let parsed: SettleResponse = serde_json::from_value(body).unwrap();
            assert_eq!(parsed.success, expected, "success = {success}");
        }
        let missing: SettleResponse =
            serde_json::from_value(json!({"transaction": "0x1", "network": "eip155:1"})).unwrap();
        assert!(!missing.success);
    }

    #[test]
    fn absent_optionals_are_omitted() {
        let response =
            SettleResponse::settled(ChainId::parse("eip155:8453").unwrap(), "0xabc", None);
        let text = serde_json::to_string(&response).unwrap();
        assert_eq!(
            text,
            r#"{"success":true,"transaction":"0xabc","network":"eip155:8453"}"#
        );
    }

    #[test]
    fn failures_never_carry_a_transaction_on_the_wire() {
        let network = ChainId::parse("eip155:1").unwrap();
        let reverted = SettleResponse::failed(
            network.clone(),
            ErrorReason::INVALID_TRANSACTION_STATE,
            Some("0xpayer".into()),
            "0xdead",
        );
        assert_eq!(reverted.transaction, "0xdead", "kept in memory");
        let wire = serde_json::to_value(&reverted).unwrap();
        assert_eq!(wire["transaction"], json!(""), "{wire}");
        assert_eq!(wire["success"], json!(false));
        assert_eq!(wire["payer"], json!("0xpayer"));
        // Even a hand-built failure cannot send a hash.
        let mut forged = SettleResponse::settled(network.clone(), "0xbeef", None);
        forged.success = false;
        assert_eq!(
            serde_json::to_value(&forged).unwrap()["transaction"],
            json!("")
        );
        // Pending is the one failure that names its transaction.
        let pending = SettleResponse::pending(network.clone(), None, "0xdead");
        let wire = serde_json::to_value(&pending).unwrap();
        assert_eq!(wire["transaction"], json!("0xdead"));
        assert_eq!(wire["errorReason"], json!("settlement_pending"));
        let settled = SettleResponse::settled(network, "0xabc", None);
        assert_eq!(
            serde_json::to_value(&settled).unwrap()["transaction"],
            json!("0xabc")
        );
        // The round trip of a normalised failure is stable.
        let back: SettleResponse =
            serde_json::from_value(serde_json::to_value(&reverted).unwrap()).unwrap();
        assert_eq!(back.transaction, "");
        assert_eq!(back.error_reason, reverted.error_reason);
    }

    #[test]
    fn pending_is_not_success() {
        let pending = SettleResponse::failed(
            ChainId::parse("eip155:1").unwrap(),
            ErrorReason::TRANSACTION_PENDING,
            None,
            "0xdead",
        );
        assert!(pending.is_pending());
        assert!(!pending.success);
    }

    #[test]
    fn extra_keeps_unknown_members() {
        let body = json!({
            "scheme": "exact", "network": "eip155:1", "amount": "1", "asset": "0xa",
            "payTo": "0xb", "maxTimeoutSeconds": 5,
            "extra": {"name": "USDC", "version": "2", "vendorThing": {"nested": [1, 2]}}
        });
        let parsed: PaymentRequirements = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(parsed.extra_str("name"), Some("USDC"));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), body);
    }
}
