//! Encoding and decoding of the x402 HTTP headers (standard base64 of JSON)
//! and of versioned JSON bodies, with a size cap applied before any parsing.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{PaymentPayload, PaymentRequired, SettleResponse, X402_VERSION};

/// Server → client: base64 `PaymentRequired`.
pub const PAYMENT_REQUIRED_HEADER: &str = "PAYMENT-REQUIRED";
/// Client → server: base64 `PaymentPayload`.
pub const PAYMENT_SIGNATURE_HEADER: &str = "PAYMENT-SIGNATURE";
/// Server → client: base64 `SettleResponse`.
pub const PAYMENT_RESPONSE_HEADER: &str = "PAYMENT-RESPONSE";
/// Client → server: base64 sign-in-with-x proof.
pub const SIGN_IN_WITH_X_HEADER: &str = "SIGN-IN-WITH-X";
/// The x402 v1 payment header; seeing it means the peer speaks v1.
pub const V1_PAYMENT_HEADER: &str = "X-PAYMENT";
/// The x402 v1 settlement header.
pub const V1_PAYMENT_RESPONSE_HEADER: &str = "X-PAYMENT-RESPONSE";

/// Largest encoded header value accepted, in bytes (16 KiB).
///
/// An EIP-3009 payment is about 1.3 KB encoded and a Solana one about 2 KB;
/// smart-wallet signatures (EIP-6492 wraps factory calldata) and sign-in
/// messages can reach several KB. 16 KiB leaves room for those while bounding
/// the memory and CPU a hostile header can cost, and stays within the 16 KB
/// per-line limit common in HTTP proxies.
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// Standard alphabet; padding optional on input, always written on output.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a header or body could not be decoded. Every variant is a client error
/// (HTTP 400); [`DecodeError::reason`] gives a short machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The value is empty.
    #[error("header is empty")]
    Empty,
    /// The value exceeds [`MAX_HEADER_LEN`].
    #[error("header is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Length received.
        len: usize,
        /// Limit applied.
        max: usize,
    },
    /// Not standard base64.
    #[error("header is not valid base64: {0}")]
    Base64(String),
    /// Not the expected JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A version other than 2 (or none at all).
    #[error("{}", version_message(*.found))]
    UnsupportedVersion {
        /// The version found, if any.
        found: Option<u64>,
    },
}

fn version_message(found: Option<u64>) -> String {
    match found {
        Some(1) => "x402 version 1 is not supported; this server speaks x402 v2 \
                    (send PAYMENT-SIGNATURE, not X-PAYMENT)"
            .to_owned(),
        Some(other) => format!("x402 version {other} is not supported; expected 2"),
        None => "x402Version is missing or not a number; expected 2".to_owned(),
    }
}

impl DecodeError {
    /// Short machine-readable code for logs and JSON error bodies.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty_header",
            Self::TooLarge { .. } => "header_too_large",
            Self::Base64(_) => "invalid_base64",
            Self::Json(_) => "invalid_json",
            Self::UnsupportedVersion { .. } => "invalid_x402_version",
        }
    }

    /// The HTTP status this error maps to (always 400 Bad Request).
    pub fn http_status(&self) -> u16 {
        400
    }
}

/// Encodes a value as a header: standard base64 of its JSON.
pub fn encode_header<T: Serialize>(value: &T) -> String {
    // Serialising our own wire types cannot fail: they have string keys only.
    let json = serde_json::to_vec(value).unwrap_or_default();
    BASE64.encode(json)
}

/// Decodes base64 into raw JSON bytes, enforcing the size cap first.
pub fn decode_header_bytes(value: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(DecodeError::Empty);
    }
    if value.len() > MAX_HEADER_LEN {
        return Err(DecodeError::TooLarge {
            len: value.len(),
            max: MAX_HEADER_LEN,
        });
    }
    BASE64
        .decode(value)
        .map_err(|e| DecodeError::Base64(e.to_string()))
}

/// Decodes a header into any JSON type, without a version check (for
/// `PAYMENT-RESPONSE` and extension headers that carry no version).
pub fn decode_header<T: DeserializeOwned>(value: &[u8]) -> Result<T, DecodeError> {
    let json = decode_header_bytes(value)?;
    serde_json::from_slice(&json).map_err(|e| DecodeError::Json(e.to_string()))
}

#[derive(serde::Deserialize)]
struct VersionProbe {
    #[serde(rename = "x402Version", default)]
    version: Option<serde_json::Value>,
}

/// Parses a JSON document that carries `x402Version`, checking the version
/// before the shape so that a v1 message gets a clear "unsupported version"
/// error rather than a confusing missing-field one.
pub fn from_versioned_json<T: DeserializeOwned>(json: &[u8]) -> Result<T, DecodeError> {
    let probe: VersionProbe =
        serde_json::from_slice(json).map_err(|e| DecodeError::Json(e.to_string()))?;
    match probe.version.as_ref().and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(X402_VERSION) => {}
        found => return Err(DecodeError::UnsupportedVersion { found }),
    }
    serde_json::from_slice(json).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Decodes a `PAYMENT-SIGNATURE` header.
pub fn decode_payment_signature(value: &[u8]) -> Result<PaymentPayload, DecodeError> {
    from_versioned_json(&decode_header_bytes(value)?)
}

/// Decodes a `PAYMENT-REQUIRED` header.
pub fn decode_payment_required(value: &[u8]) -> Result<PaymentRequired, DecodeError> {
    from_versioned_json(&decode_header_bytes(value)?)
}

/// Decodes a `PAYMENT-RESPONSE` header.
pub fn decode_payment_response(value: &[u8]) -> Result<SettleResponse, DecodeError> {
    decode_header(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainId;

    #[test]
    fn round_trips_settle_response() {
        let response = SettleResponse::settled(
            ChainId::parse("eip155:8453").unwrap(),
            "0xabc",
            Some("0x1".into()),
        );
        let header = encode_header(&response);
        assert_eq!(
            decode_payment_response(header.as_bytes()).unwrap(),
            response
        );
    }

    #[test]
    fn rejects_oversized_before_decoding() {
        let huge = vec![b'A'; MAX_HEADER_LEN + 1];
        assert_eq!(
            decode_header_bytes(&huge),
            Err(DecodeError::TooLarge {
                len: MAX_HEADER_LEN + 1,
                max: MAX_HEADER_LEN
            })
        );
    }

    #[test]
    fn typed_errors() {
        assert_eq!(decode_header_bytes(b"  "), Err(DecodeError::Empty));
        assert!(matches!(
            decode_payment_signature(b"not base64!"),
            Err(DecodeError::Base64(_))
        ));
        let not_json = BASE64.encode(b"{oops");
        assert!(matches!(
            decode_payment_signature(not_json.as_bytes()),
            Err(DecodeError::Json(_))
        ));
        let v1 =
            BASE64.encode(br#"{"x402Version":1,"scheme":"exact","network":"base","payload":{}}"#);
        let err = decode_payment_signature(v1.as_bytes()).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedVersion { found: Some(1) });
        assert!(err.to_string().contains("version 1"));
        assert_eq!(err.reason(), "invalid_x402_version");
        let none = BASE64.encode(br#"{"accepted":{}}"#);
        assert_eq!(
            decode_payment_signature(none.as_bytes()).unwrap_err(),
            DecodeError::UnsupportedVersion { found: None }
        );
        let string_version = BASE64.encode(br#"{"x402Version":"2"}"#);
        assert_eq!(
            decode_payment_signature(string_version.as_bytes()).unwrap_err(),
            DecodeError::UnsupportedVersion { found: None }
        );
    }

    #[test]
    fn accepts_unpadded_base64() {
        let response = SettleResponse::settled(ChainId::parse("eip155:1").unwrap(), "0x12", None);
        let header = encode_header(&response);
        let unpadded = header.trim_end_matches('=');
        assert_eq!(
            decode_payment_response(unpadded.as_bytes()).unwrap(),
            response
        );
    }
}
