//! Reading `/verify` and `/settle` bodies.
//!
//! A body that is not JSON at all, or exceeds the size limit, is an HTTP
//! error (400 / 413). A JSON body that does not hold a well-formed payment
//! (wrong version, payload not an object, missing `accepted`, wrong types,
//! non-canonical amounts) gets the specification's answer shape instead:
//! HTTP 200 with `isValid: false` / `success: false`, a reason and a message,
//! which is all that SDK clients (e.g. the TypeScript `HTTPFacilitatorClient`)
//! parse.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paywire_core::codec::DecodeError;
use paywire_core::{ChainId, ErrorReason, FacilitatorRequest, VerifyResponse, X402_VERSION};
use serde_json::{Value, json};

use crate::error::ApiError;

/// Why a body was not turned into a request.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not JSON, or too large: an HTTP error.
    Http(ApiError),
    /// JSON, but not a well-formed payment: answered in the spec's shape.
    Malformed(Malformed),
}

/// A malformed payment, and what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// `invalid_payload`, `invalid_payment_requirements` or `invalid_x402_version`.
    pub(crate) reason: ErrorReason,
    /// Where and what (e.g. `paymentRequirements.amount: ...`).
    pub(crate) message: String,
    /// The requirements' network when it parses, else `""`.
    pub(crate) network: String,
}

impl Malformed {
    /// The `/verify` answer: `isValid: false`.
    pub(crate) fn verify_answer(&self) -> Response {
        let answer = VerifyResponse::invalid(self.reason.clone(), None).with_message(&self.message);
        (StatusCode::OK, Json(answer)).into_response()
    }

    /// The `/settle` answer: `success: false`, `transaction: ""`. Built by
    /// hand because the network may be missing or unparseable (`""`).
    pub(crate) fn settle_answer(&self) -> Response {
        let answer = json!({
            "success": false,
            "errorReason": self.reason,
            "errorMessage": self.message,
            "transaction": "",
            "network": self.network,
        });
        (StatusCode::OK, Json(answer)).into_response()
    }
}

/// Reads and decodes a `/verify` or `/settle` body.
pub(crate) fn parse_request(
    body: Result<Bytes, BytesRejection>,
) -> Result<FacilitatorRequest, Refusal> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        };
        Refusal::Http(ApiError::new(status, code, rejection.body_text()))
    })?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|error| Refusal::Http(ApiError::bad_request("invalid_json", error.to_string())))?;
    let network = requirements_network(&value);
    let malformed = |reason: ErrorReason, message: String| {
        Refusal::Malformed(Malformed {
            reason,
            message,
            network: network.clone(),
        })
    };
    if !value.is_object() {
        return Err(malformed(
            ErrorReason::INVALID_PAYLOAD,
            "the body must be a JSON object {x402Version, paymentPayload, paymentRequirements}"
                .into(),
        ));
    }
    match value.get("x402Version").and_then(Value::as_u64) {
        Some(version) if version == u64::from(X402_VERSION) => {}
        found => {
            let error = DecodeError::UnsupportedVersion { found };
            return Err(malformed(
                ErrorReason::INVALID_X402_VERSION,
                error.to_string(),
            ));
        }
    }
    for (member, reason) in [
        ("paymentPayload", ErrorReason::INVALID_PAYLOAD),
        (
            "paymentRequirements",
            ErrorReason::INVALID_PAYMENT_REQUIREMENTS,
        ),
    ] {
        if value.get(member).is_none_or(Value::is_null) {
            return Err(malformed(reason, format!("{member} is missing")));
        }
    }
    serde_path_to_error::deserialize::<_, FacilitatorRequest>(value).map_err(|error| {
        let path = error.path().to_string();
        let reason = if path.starts_with("paymentRequirements") {
            ErrorReason::INVALID_PAYMENT_REQUIREMENTS
        } else {
            ErrorReason::INVALID_PAYLOAD
        };
        malformed(reason, format!("{path}: {}", error.inner()))
    })
}

/// `paymentRequirements.network` when it is a valid network id, else `""`.
fn requirements_network(body: &Value) -> String {
    body.get("paymentRequirements")
        .and_then(|requirements| requirements.get("network"))
        .and_then(|network| serde_json::from_value::<ChainId>(network.clone()).ok())
        .map(|network| network.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirements() -> Value {
        json!({
            "scheme": "exact", "network": "eip155:8453", "amount": "10000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "maxTimeoutSeconds": 60
        })
    }

    fn body() -> Value {
        json!({
            "x402Version": 2,
            "paymentPayload": {"x402Version": 2, "payload": {"signature": "0x01"}, "accepted": requirements()},
            "paymentRequirements": requirements(),
        })
    }

    fn refuse(body: Value) -> Malformed {
        match parse_request(Ok(Bytes::from(body.to_string()))) {
            Err(Refusal::Malformed(malformed)) => malformed,
            other => panic!("expected a malformed-payment refusal, got {other:?}"),
        }
    }

    #[test]
    fn well_formed_body_parses() {
        assert!(parse_request(Ok(Bytes::from(body().to_string()))).is_ok());
    }

    #[test]
    fn reasons_name_the_faulty_part() {
        let mut bad = body();
        bad["paymentRequirements"]["amount"] = json!("010000");
        let refused = refuse(bad);
        assert_eq!(refused.reason, ErrorReason::INVALID_PAYMENT_REQUIREMENTS);
        assert!(
            refused.message.starts_with("paymentRequirements.amount"),
            "{refused:?}"
        );
        assert_eq!(refused.network, "eip155:8453");

        let mut bad = body();
        bad["paymentPayload"]["accepted"]["amount"] = json!("+1");
        assert_eq!(refuse(bad).reason, ErrorReason::INVALID_PAYLOAD);

        let mut bad = body();
        bad["paymentRequirements"]["network"] = json!("not a network");
        let refused = refuse(bad);
        assert_eq!(refused.reason, ErrorReason::INVALID_PAYMENT_REQUIREMENTS);
        assert_eq!(refused.network, "");

        let mut bad = body();
        bad["x402Version"] = json!(1);
        assert_eq!(refuse(bad).reason, ErrorReason::INVALID_X402_VERSION);
        assert_eq!(refuse(json!([1, 2])).reason, ErrorReason::INVALID_PAYLOAD);
        let mut bad = body();
        bad.as_object_mut().map(|b| b.remove("paymentRequirements"));
        assert_eq!(
            refuse(bad).reason,
            ErrorReason::INVALID_PAYMENT_REQUIREMENTS
        );
    }

    #[test]
    fn non_json_is_an_http_error() {
        for bytes in [&b"{oops"[..], b"", b"\xff\xfe"] {
            match parse_request(Ok(Bytes::copy_from_slice(bytes))) {
                Err(Refusal::Http(error)) => assert_eq!(error.code, "invalid_json"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
    }
}
