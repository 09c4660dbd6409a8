//! Machine-readable reasons a payment is invalid or a settlement failed.
//!
//! [`ErrorReason`] is an open code: the core names the conditions every
//! scheme shares (the specification's generic codes and a few more), and
//! each plugin defines its own as constants (`paywire_evm::reasons`), so a
//! new chain or rail never edits this file. Codes received on the wire are
//! kept verbatim, so they round-trip unchanged.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An `invalidReason` / `errorReason` code.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorReason(Cow<'static, str>);

/// Other implementations' spellings of generic conditions, mapped to ours.
const ALIASES: &[(&str, &str)] = &[("transaction_pending", "settlement_pending")];

impl ErrorReason {
    /// The payer's balance is below the amount.
    pub const INSUFFICIENT_FUNDS: Self = Self::from_static("insufficient_funds");
    /// The network is not supported or does not match.
    pub const INVALID_NETWORK: Self = Self::from_static("invalid_network");
    /// The payload is malformed.
    pub const INVALID_PAYLOAD: Self = Self::from_static("invalid_payload");
    /// The requirements are malformed or do not match the payload.
    pub const INVALID_PAYMENT_REQUIREMENTS: Self =
        Self::from_static("invalid_payment_requirements");
    /// The scheme is not valid for this request.
    pub const INVALID_SCHEME: Self = Self::from_static("invalid_scheme");
    /// The scheme is not supported by the facilitator.
    pub const UNSUPPORTED_SCHEME: Self = Self::from_static("unsupported_scheme");
    /// The protocol version is not supported.
    pub const INVALID_X402_VERSION: Self = Self::from_static("invalid_x402_version");
    /// The transaction failed or was rejected on chain.
    pub const INVALID_TRANSACTION_STATE: Self = Self::from_static("invalid_transaction_state");
    /// The transaction was sent but not yet confirmed; it may still land.
    /// Spelled as the TypeScript SDK does, whose servers retry on it.
    pub const TRANSACTION_PENDING: Self = Self::from_static("settlement_pending");
    /// The asset is not accepted by this facilitator.
    pub const UNSUPPORTED_ASSET: Self = Self::from_static("unsupported_asset");
    /// The payment was already settled (a replay), on a scheme that names
    /// no more specific code for it.
    pub const DUPLICATE_SETTLEMENT: Self = Self::from_static("duplicate_settlement");
    /// The payment identifier was reused with a different payload.
    pub const PAYMENT_IDENTIFIER_CONFLICT: Self = Self::from_static("payment_identifier_conflict");
    /// The payment identifier extension is required but missing.
    pub const PAYMENT_IDENTIFIER_REQUIRED: Self = Self::from_static("payment_identifier_required");
    /// An unexpected internal error during verification.
    pub const UNEXPECTED_VERIFY_ERROR: Self = Self::from_static("unexpected_verify_error");
    /// An unexpected internal error during settlement.
    pub const UNEXPECTED_SETTLE_ERROR: Self = Self::from_static("unexpected_settle_error");

    /// The generic codes above, for documentation and tests.
    pub const GENERIC: &'static [ErrorReason] = &[
        Self::INSUFFICIENT_FUNDS,
        Self::INVALID_NETWORK,
        Self::INVALID_PAYLOAD,
        Self::INVALID_PAYMENT_REQUIREMENTS,
        Self::INVALID_SCHEME,
        Self::UNSUPPORTED_SCHEME,
        Self::INVALID_X402_VERSION,
        Self::INVALID_TRANSACTION_STATE,
        Self::TRANSACTION_PENDING,
        Self::UNSUPPORTED_ASSET,
        Self::DUPLICATE_SETTLEMENT,
        Self::PAYMENT_IDENTIFIER_CONFLICT,
        Self::PAYMENT_IDENTIFIER_REQUIRED,
        Self::UNEXPECTED_VERIFY_ERROR,
        Self::UNEXPECTED_SETTLE_ERROR,
    ];

    /// A code known at compile time (plugins define theirs this way).
    pub const fn from_static(code: &'static str) -> Self {
        Self(Cow::Borrowed(code))
    }

    /// A code built at run time.
    pub fn new(code: impl Into<String>) -> Self {
        Self(Cow::Owned(code.into()))
    }

    /// The wire spelling of the code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A code as received: other implementations' spellings of generic
    /// conditions become ours; anything else is kept verbatim.
    pub fn from_wire(text: &str) -> Self {
        match ALIASES.iter().find(|(alias, _)| *alias == text) {
            Some((_, canonical)) => Self::from_static(canonical),
            None => Self::new(text),
        }
    }

    /// Whether this generic code says the payload itself is defective
    /// (malformed, or for another network, scheme, asset or protocol
    /// version), so that it could never move funds.
    pub fn is_payload_defect(&self) -> bool {
        [
            Self::INVALID_NETWORK,
            Self::INVALID_PAYLOAD,
            Self::INVALID_PAYMENT_REQUIREMENTS,
            Self::INVALID_SCHEME,
            Self::UNSUPPORTED_SCHEME,
            Self::INVALID_X402_VERSION,
            Self::UNSUPPORTED_ASSET,
        ]
        .contains(self)
    }

    /// Whether this is one of the [`ErrorReason::GENERIC`] codes.
    pub fn is_generic(&self) -> bool {
        Self::GENERIC.contains(self)
    }
}

impl From<&'static str> for ErrorReason {
    fn from(code: &'static str) -> Self {
        Self::from_static(code)
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorReason({})", self.as_str())
    }
}

impl Serialize for ErrorReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::from_wire(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_codes_round_trip() {
        for reason in ErrorReason::GENERIC {
            let json = serde_json::to_string(reason).unwrap();
            let back: ErrorReason = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, reason);
            assert!(back.is_generic(), "{json} is generic");
        }
        assert_eq!(
            serde_json::to_string(&ErrorReason::INSUFFICIENT_FUNDS).unwrap(),
            "\"insufficient_funds\""
        );
    }

    #[test]
    fn other_spellings_of_generic_codes_are_recognised() {
        assert_eq!(
            ErrorReason::from_wire("transaction_pending"),
            ErrorReason::TRANSACTION_PENDING
        );
        assert_eq!(
            ErrorReason::TRANSACTION_PENDING.as_str(),
            "settlement_pending"
        );
        for (alias, canonical) in ALIASES {
            assert_eq!(ErrorReason::from_wire(alias).as_str(), *canonical);
        }
    }

    #[test]
    fn plugin_and_unknown_codes_are_preserved() {
        const PLUGIN_CODE: ErrorReason = ErrorReason::from_static("invalid_toy_payload_ticket");
        let reason: ErrorReason = serde_json::from_str("\"invalid_toy_payload_ticket\"").unwrap();
        assert_eq!(reason, PLUGIN_CODE);
        assert!(!reason.is_generic());
        let unknown: ErrorReason = serde_json::from_str("\"some_new_reason\"").unwrap();
        assert_eq!(unknown, ErrorReason::new("some_new_reason"));
        assert_eq!(
            serde_json::to_string(&unknown).unwrap(),
            "\"some_new_reason\""
        );
    }
}
