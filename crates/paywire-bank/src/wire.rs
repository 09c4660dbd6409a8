//! The `credit` binding's wire shapes, shared by the authority, the
//! resource server and the paying client (see the binding's specification,
//! `scheme_batch_settlement_credit.md`).

use serde::{Deserialize, Serialize};

/// The scheme name.
pub const SCHEME: &str = "batch-settlement";
/// The CAIP-2 reference of every `credit` network (`<authority>:credit`).
pub const CREDIT_REFERENCE: &str = "credit";
/// The binding version we implement (`extra.version`).
pub const BINDING_VERSION: &str = "1.0.0";
/// `payTo` of every credit requirement: the authority settles.
pub const PAY_TO_MERCHANT: &str = "merchant";
/// The payload type.
pub const CONSUME: &str = "consume";
/// Where an authority publishes its attestation keys (under its origin).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The client-facing authorization endpoint (under the authority origin).
pub const AUTHORIZE_PATH: &str = "/authorize";
/// The JWS `typ` of an attestation.
pub const ATTESTATION_TYPE: &str = "x402-credit+jwt";

/// Error and failure codes of the binding (facilitator side and resource
/// server → client), spelled as the specification spells them.
pub mod reason {
    /// `/authorize`: the bundle cannot cover the amount.
    pub const INSUFFICIENT_CREDITS: &str = "insufficient_credits";
    /// `/authorize`: no such bundle (or the credential is not its own).
    pub const BUNDLE_NOT_FOUND: &str = "bundle_not_found";
    /// `/authorize`: the bundle is frozen.
    pub const BUNDLE_REVOKED: &str = "bundle_revoked";
    /// `/authorize`: the idempotency key was used with other parameters.
    pub const IDEMPOTENCY_CONFLICT: &str = "idempotency_conflict";
    /// `/settle`: the attestation was settled with other parameters.
    pub const SETTLE_CONFLICT: &str = "settle_conflict";
    /// `/settle`: the hold lapsed.
    pub const HOLD_EXPIRED: &str = "hold_expired";
    /// `/settle`: the caller is not the attestation's audience.
    pub const UNAUTHORIZED_SERVER: &str = "unauthorized_server";
    /// `/verify`, `/settle`: the attestation was revoked.
    pub const REVOKED: &str = "revoked";
    /// Resource server → client: valid signature, past `exp`.
    pub const ATTESTATION_EXPIRED: &str = "attestation_expired";
    /// Resource server → client: signature, structure or type failure.
    pub const ATTESTATION_INVALID: &str = "attestation_invalid";
    /// Resource server → client: revoked by the principal.
    pub const ATTESTATION_REVOKED: &str = "attestation_revoked";
    /// Resource server → client: attested amount below the price.
    pub const PRICE_NOT_ACCEPTABLE: &str = "price_not_acceptable";
    /// `/settle`: the charge is above the attested amount (ours; the
    /// specification names no code for it).
    pub const CHARGE_EXCEEDS_ATTESTATION: &str = "charge_exceeds_attestation";
    /// `/verify`, `/settle`: the attestation was already settled (ours).
    pub const ALREADY_SETTLED: &str = "attestation_already_settled";
}

/// One purchase tier (`extra.tiers[]`): pay `price`, receive `credits`,
/// both in minor units of `asset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tier {
    /// Credits granted (minor units).
    pub credits: String,
    /// Price paid (minor units).
    pub price: String,
    /// ISO 4217 code.
    pub asset: String,
}

/// `PaymentRequirements.extra` of a credit offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditExtra {
    /// Binding version (`1.0.0`).
    pub version: String,
    /// The authority origin: trust anchor, facilitator base URL, `iss`.
    pub authority: String,
    /// Where a principal buys a bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_url: Option<String>,
    /// Purchase tiers (informational).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<Tier>,
}

/// The payment payload's `payload` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumePayload {
    /// Always `consume`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The compact JWS the authority issued.
    pub attestation: String,
}

/// The attestation's claims (the JWS payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    /// The authority origin.
    pub iss: String,
    /// The bundle id.
    pub sub: String,
    /// The resource server origin.
    pub aud: String,
    /// Presentation expiry (Unix seconds).
    pub exp: u64,
    /// Settlement expiry (Unix seconds), after `exp`.
    pub hold_exp: u64,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// The attestation id: commitment id and settle idempotency key.
    pub jti: String,
    /// Authorized maximum, minor units.
    pub amount: String,
    /// ISO 4217 code.
    pub asset: String,
    /// The resource URL, or `sha256:<hex>` of the JCS of the accepted
    /// requirements.
    pub resource: String,
}

/// `POST /authorize` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The bundle.
    pub bundle_id: String,
    /// Maximum, minor units.
    pub amount: String,
    /// ISO 4217 code.
    pub asset: String,
    /// The resource (URL, whose origin becomes `aud`).
    pub resource: String,
    /// Fresh per logical authorization.
    pub idempotency_key: String,
}

/// `POST /authorize` success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeResponse {
    /// The compact JWS.
    pub attestation: String,
}

/// `POST /authorize` (and other authority calls) failure body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorityError {
    /// A [`reason`] code, or `invalid_request` / `unauthorized` /
    /// `rate_limited` / `internal_error`.
    pub error: String,
    /// Human-readable detail (never a bank detail or a credential).
    pub message: String,
}

/// `extra.bundleState` of a settle response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleState {
    /// The bundle.
    pub bundle_id: String,
    /// Spendable balance after the charge (minor units).
    pub balance: String,
    /// ISO 4217 code.
    pub asset: String,
    /// When the bundle's credits expire, if they do (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// `SettleResponse.extra` of a credit settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleExtra {
    /// The attestation `jti`.
    pub commitment_id: String,
    /// The actual charge (minor units).
    pub charged_amount: String,
    /// The bundle after the charge.
    pub bundle_state: BundleState,
}
