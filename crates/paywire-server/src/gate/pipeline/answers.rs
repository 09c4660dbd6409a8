//! The refusals of a priced request, each with the failure hooks are told.

use paywire_core::{SettleResponse, VerifyResponse};

use super::{Paid, hold_failure};
use crate::gate::transport::{ErrorRefusal, HoldError, Refusal};
use crate::hooks::PaymentFailure;
use crate::reservation::ReservationKey;
use crate::settlement::Unknown;

/// How a paywire facilitator's replay refusal begins: "this payment was
/// settled and answered to an earlier request" (its `REPLAY_REFUSAL_PREFIX`).
const ALREADY_SETTLED_PREFIX: &str = "payment already settled:";

/// `Retry-After` (seconds) of a `settlement_unknown` answer.
const RETRY_UNKNOWN_AFTER: u32 = 5;

impl Paid<'_> {
    /// The refusal of [`crate::AccessDecision::Fail`]: a 402 keeps the
    /// requirements, any other status is a plain error.
    pub(super) async fn access_refused(&self, status: u16, reason: &str, message: &str) -> Refusal {
        tracing::info!(route = %self.route.pattern.as_str(), %reason, "access refused by a hook");
        if status == 402 {
            self.payment_required(format!("{reason}: {message}"), None)
                .await
        } else {
            Refusal::Error(ErrorRefusal::new(status, reason, message))
        }
    }

    /// The answer to a hook's [`crate::HookVerdict::Abort`].
    pub(super) async fn aborted(&self, status: u16, reason: &str, message: &str) -> Refusal {
        let refusal = if status == 402 {
            self.payment_required(format!("{reason}: {message}"), None)
                .await
        } else {
            Refusal::Error(ErrorRefusal::new(status, reason, message))
        };
        self.fail(PaymentFailure::Aborted(reason.to_owned()), refusal)
            .await
    }

    /// The 402 for a payment the facilitator judged invalid.
    pub(super) async fn invalid(&self, answer: &VerifyResponse) -> Refusal {
        let reason = answer
            .invalid_reason
            .as_ref()
            .map_or("unknown", |r| r.as_str());
        let detail = answer
            .invalid_message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let refusal = self
            .payment_required(
                format!("payment verification failed: {reason}{detail}"),
                None,
            )
            .await;
        self.fail(PaymentFailure::Invalid(answer.clone()), refusal)
            .await
    }

    /// The answer when the handler's reply could not be held back for
    /// settlement (nothing was charged).
    pub(super) async fn unbuffered(&self, error: HoldError, limit: usize) -> Refusal {
        let (failure, refusal) = hold_failure(error, limit);
        self.fail(failure, Refusal::Error(refusal)).await
    }

    /// The answer when a settle-after-handler route's handler switched
    /// protocols (nothing was charged, the upgrade did not happen).
    pub(super) async fn upgrade_refused(&self, status: u16) -> Refusal {
        tracing::error!(route = %self.route.pattern.as_str(), %status,
            "a paid route answered a protocol upgrade after its handler ran; declare it \
             with .settle_before_handler()");
        let refusal = ErrorRefusal::new(
            500,
            "upgrade_needs_settle_before_handler",
            format!(
                "this paid route answered {status}, a protocol upgrade, which cannot be held \
                 back until the payment settles; the seller must declare the route with \
                 settle-before-handler; nothing was charged"
            ),
        );
        self.fail(
            PaymentFailure::HandlerFailed(status),
            Refusal::Error(refusal),
        )
        .await
    }

    /// The answer when a payment resumed after an unknown outcome is now
    /// refused for a reason that does not prove the first attempt was free
    /// (typically: its authorization is already used, because that attempt
    /// settled and its answer was lost). Not a 402 but a 409
    /// `settlement_disputed`: the payer must not pay again. The payment
    /// stays kept.
    pub(super) async fn disputed(
        &self,
        key: &ReservationKey,
        answer: SettleResponse,
        scheme: Option<&dyn paywire_core::SchemeServer>,
    ) -> Refusal {
        let reference = key.to_hex();
        let reason = answer
            .error_reason
            .as_ref()
            .map_or("unknown", |r| r.as_str());
        tracing::warn!(route = %self.route.pattern.as_str(), %reference, %reason, payer = ?answer.payer,
            "a payment resumed after an unknown outcome was refused; an earlier attempt may have \
             been charged (a facilitator API key lets its idempotent retries through)");
        // A paywire facilitator says so in words (its replay refusal); the
        // scheme knows its own "already used" codes (other facilitators').
        let used = answer.error_reason.as_ref().is_some_and(|reason| {
            *reason == paywire_core::ErrorReason::DUPLICATE_SETTLEMENT
                || scheme.is_some_and(|scheme| scheme.refusal_means_spent(reason))
        }) || answer
            .error_message
            .as_deref()
            .is_some_and(|m| m.starts_with(ALREADY_SETTLED_PREFIX));
        let what = if used {
            "this payment's authorization has already been used: it appears to have been \
             settled by an earlier attempt whose answer was lost"
                .to_owned()
        } else {
            format!(
                "settling this payment again failed ({reason}), but an earlier attempt whose \
                 outcome is unknown may have charged it"
            )
        };
        let message = format!(
            "{what}; do not pay again: contact the seller with payment reference {reference}"
        );
        let mut refusal = ErrorRefusal::new(409, "settlement_disputed", message)
            .detail("reference", reference.clone())
            .detail("reason", reason);
        if let Some(payer) = &answer.payer {
            refusal = refusal.detail("payer", payer.clone());
        }
        self.fail(
            PaymentFailure::SettleFailed(answer),
            Refusal::Error(refusal),
        )
        .await
    }

    /// The answer to an unknown settlement outcome: the payer must retry
    /// with the same payment, never pay again.
    pub(super) async fn unknown_outcome(&self, unknown: Unknown) -> Refusal {
        if let Some(receipt) = unknown.receipt {
            let message = format!(
                "settlement pending: transaction {} was broadcast but is not confirmed yet; \
                 do not pay again: retry this request with the same PAYMENT-SIGNATURE to \
                 receive the response once it is confirmed",
                receipt.transaction
            );
            let refusal = self.payment_required(message, Some(&receipt)).await;
            self.fail(PaymentFailure::SettleFailed(receipt), refusal)
                .await
        } else {
            let refusal = ErrorRefusal::new(
                503,
                "settlement_unknown",
                format!(
                    "the settlement outcome is unknown ({}); do not pay again: retry this \
                     request with the same PAYMENT-SIGNATURE to receive the response once \
                     settlement is final",
                    unknown.detail
                ),
            )
            .retry_after(RETRY_UNKNOWN_AFTER);
            self.fail(
                PaymentFailure::SettlementUnknown(unknown.detail),
                Refusal::Error(refusal),
            )
            .await
        }
    }
}
