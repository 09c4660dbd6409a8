//! Before the handler: the payment decoded and bound to this request's
//! requirement, verified, and reserved for single use.

use std::sync::Arc;

use paywire_core::codec::{MAX_HEADER_LEN, decode_payment_signature, from_versioned_json};
use paywire_core::{DecodeError, FacilitatorRequest, PaymentPayload, VerifyResponse};

use super::{Paid, Step, V1_MESSAGE};
use crate::gate::transport::{ErrorRefusal, PaymentInput, Refusal};
use crate::hooks::{HookVerdict, PaymentFailure};
use crate::proof::Verified;
use crate::reservation::{PayloadFingerprint, ReservationKey, ReserveOutcome};
use crate::settlement::Guard;

/// Decodes a payment as its transport carried it; JSON payments (MCP
/// `_meta`) have the same size cap as encoded headers.
fn decode(payment: &PaymentInput) -> Option<Result<PaymentPayload, DecodeError>> {
    match payment {
        PaymentInput::Encoded(value) => Some(decode_payment_signature(value)),
        PaymentInput::Json(json) if json.len() > MAX_HEADER_LEN => {
            Some(Err(DecodeError::TooLarge {
                len: json.len(),
                max: MAX_HEADER_LEN,
            }))
        }
        PaymentInput::Json(json) => Some(from_versioned_json(json)),
        PaymentInput::Absent | PaymentInput::LegacyV1 => None,
    }
}

impl Paid<'_> {
    /// Decodes the payment and binds it to the matching requirement of this
    /// request (the facilitator sees OUR requirement, never the client's
    /// copy).
    pub(super) async fn payment_of(&self, payment: PaymentInput) -> Step<FacilitatorRequest> {
        let Some(decoded) = decode(&payment) else {
            let message = if payment == PaymentInput::LegacyV1 {
                V1_MESSAGE
            } else {
                "PAYMENT-SIGNATURE header is required"
            };
            return Err(self.payment_required(message.to_owned(), None).await);
        };
        let payload = match decoded {
            Ok(payload) => payload,
            Err(error) => {
                let mut refusal = ErrorRefusal::new(400, error.reason(), error.to_string());
                // A JSON payment comes from a transport that answers an
                // invalid payment with the requirements and the reason (MCP).
                // Only then is that answer built: building it runs the 402
                // hooks (a sign-in challenge stores a nonce), for nothing
                // over HTTP, which answers 400.
                if matches!(payment, PaymentInput::Json(_)) {
                    let reason = format!("{}: {error}", error.reason());
                    if let Refusal::PaymentRequired { required, .. } =
                        self.payment_required(reason, None).await
                    {
                        refusal.required = Some(required);
                    }
                }
                return Err(self
                    .fail(
                        PaymentFailure::Malformed(error.to_string()),
                        Refusal::Error(refusal),
                    )
                    .await);
            }
        };
        let Some(requirement) = self.requirement_matching(&payload.accepted) else {
            let refusal = self
                .payment_required(
                    "the payment does not match this resource: its accepted requirements \
                     (scheme, network, amount, asset, payTo, maxTimeoutSeconds, extra) are not \
                     among the ones offered here"
                        .to_owned(),
                    None,
                )
                .await;
            return Err(self.fail(PaymentFailure::Mismatch, refusal).await);
        };
        Ok(FacilitatorRequest::new(payload, requirement))
    }

    /// Verifies: `Ok(Ok(_))` valid, `Ok(Err(_))` judged invalid, `Err(_)` the
    /// refusal to give (aborted by a hook, facilitator unreachable).
    pub(super) async fn verify(
        &self,
        request: &FacilitatorRequest,
    ) -> Step<Result<Verified, Box<VerifyResponse>>> {
        let hooks = &self.core.hooks;
        if let HookVerdict::Abort {
            status,
            reason,
            message,
        } = hooks.before_verify(&self.ctx, request).await
        {
            return Err(self.aborted(status, &reason, &message).await);
        }
        let answer = match self.core.facilitator.verify(request).await {
            Ok(answer) => answer,
            Err(error) => {
                let refusal = ErrorRefusal::new(
                    502,
                    "facilitator_unavailable",
                    format!("payment could not be verified: {error}"),
                );
                return Err(self
                    .fail(
                        PaymentFailure::Facilitator(error.to_string()),
                        Refusal::Error(refusal),
                    )
                    .await);
            }
        };
        hooks.after_verify(&self.ctx, request, &answer).await;
        Ok(Verified::check(answer))
    }

    /// Takes the payment for this request (fresh, or resumed after an
    /// unknown outcome), or the refusal to give.
    pub(super) async fn reserve(
        &self,
        key: ReservationKey,
        fingerprint: PayloadFingerprint,
    ) -> Step<Guard> {
        let store = &self.core.reservations;
        let message = match store.reserve(&key, &fingerprint).await {
            Ok(ReserveOutcome::Reserved) => {
                return Ok(Guard::new(Arc::clone(store), key, fingerprint, false));
            }
            Ok(ReserveOutcome::Resumed) => {
                return Ok(Guard::new(Arc::clone(store), key, fingerprint, true));
            }
            Ok(ReserveOutcome::InUse) => "payment already in use by another request",
            Ok(ReserveOutcome::Consumed) => "payment already used",
            Err(error) => {
                tracing::error!(%error, "reservation store failed");
                return Err(Refusal::Error(ErrorRefusal::new(
                    503,
                    "reservation_failed",
                    "the payment could not be reserved; retry later",
                )));
            }
        };
        let refusal = self.payment_required(message.to_owned(), None).await;
        Err(self.fail(PaymentFailure::Reused, refusal).await)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn json_payments_are_capped_and_version_checked() {
        let huge = Bytes::from(vec![b' '; MAX_HEADER_LEN + 1]);
        assert!(matches!(
            decode(&PaymentInput::Json(huge)),
            Some(Err(DecodeError::TooLarge { .. }))
        ));
        let v1 = Bytes::from_static(br#"{"x402Version": 1}"#);
        assert!(matches!(
            decode(&PaymentInput::Json(v1)),
            Some(Err(DecodeError::UnsupportedVersion { found: Some(1) }))
        ));
        assert!(decode(&PaymentInput::Absent).is_none());
        assert!(decode(&PaymentInput::LegacyV1).is_none());
    }
}
