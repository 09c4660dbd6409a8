//! The `payment-identifier` extension of a payment: the id a payer chose to
//! name its retries.

use paywire_core::PaymentPayload;
use paywire_core::extensions::PAYMENT_IDENTIFIER;
use serde_json::Value;

use super::SettlementError;

/// The `payment-identifier` id of a payload: `None` when absent, an error
/// when malformed or when the extension says `required: true` but has no id.
pub fn payment_id(payload: &PaymentPayload) -> Result<Option<String>, SettlementError> {
    let Some(info) = payload
        .extensions
        .as_ref()
        .and_then(|e| e.info(PAYMENT_IDENTIFIER))
    else {
        return Ok(None);
    };
    let bad = |message: String| SettlementError::InvalidPaymentId(message);
    match info.get("id") {
        None | Some(Value::Null) => {
            if info.get("required") == Some(&Value::Bool(true)) {
                Err(bad(
                    "payment-identifier is required but no id was sent".into()
                ))
            } else {
                Ok(None)
            }
        }
        Some(Value::String(id)) => {
            let valid_chars = id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !(16..=128).contains(&id.len()) || !valid_chars {
                return Err(bad(format!(
                    "payment-identifier id must be 16-128 characters of [A-Za-z0-9_-]; got {} characters",
                    id.chars().count()
                )));
            }
            Ok(Some(id.clone()))
        }
        Some(_) => Err(bad("payment-identifier id must be a string".into())),
    }
}
