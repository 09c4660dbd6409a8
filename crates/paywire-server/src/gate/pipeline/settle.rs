//! Settlement and how its answer is judged: settled, refused for good, or of
//! unknown outcome (the payment is then kept for the payer's retry).

use paywire_core::{FacilitatorRequest, PaymentRequirements, SettleResponse};

use super::Paid;
use super::usage::overcharged;
use crate::config::PendingPolicy;
use crate::gate::transport::{ErrorRefusal, Refusal};
use crate::hooks::{HookVerdict, PaymentFailure};
use crate::proof::Settled;
use crate::settlement::{
    Guard, GuardState, Settlement, Unknown, proves_nothing_charged, settle_error_is_definite,
};

impl Paid<'_> {
    /// Settles (or, for a resumed payment, asks the facilitator again) and
    /// updates the reservation, except for an unknown outcome: the caller
    /// keeps the reply first, then marks it.
    pub(super) async fn settle(
        &self,
        guard: &mut Guard,
        request: &FacilitatorRequest,
    ) -> Settlement<Refusal> {
        let hooks = &self.core.hooks;
        if let HookVerdict::Abort {
            status,
            reason,
            message,
        } = hooks.before_settle(&self.ctx, request).await
        {
            guard.let_go().await;
            return Settlement::Refused(self.aborted(status, &reason, &message).await);
        }
        guard.state = GuardState::Settling;
        let answer = match self.core.facilitator.settle(request).await {
            Ok(answer) => answer,
            Err(error) if !guard.resumed && settle_error_is_definite(&error) => {
                guard.release().await;
                let refusal = ErrorRefusal::new(
                    502,
                    "facilitator_unavailable",
                    format!("settlement could not be completed (nothing was charged): {error}"),
                );
                return Settlement::Refused(
                    self.fail(
                        PaymentFailure::Facilitator(error.to_string()),
                        Refusal::Error(refusal),
                    )
                    .await,
                );
            }
            Err(error) => {
                return Settlement::Unknown(Unknown {
                    receipt: None,
                    detail: error.to_string(),
                });
            }
        };
        hooks.after_settle(&self.ctx, request, &answer).await;
        self.judge(guard, answer, &request.payment_requirements)
            .await
    }

    /// Judges a settlement answer to a settle of `requirement` (see
    /// [`Paid::settle`]).
    async fn judge(
        &self,
        guard: &mut Guard,
        mut answer: SettleResponse,
        requirement: &PaymentRequirements,
    ) -> Settlement<Refusal> {
        if (answer.success || answer.is_pending()) && overcharged(&answer, &requirement.amount) {
            return Settlement::Refused(self.overcharged(guard, answer, requirement).await);
        }
        if answer.success && answer.amount.is_none() && self.usage_based(requirement) {
            // The receipt states the charge of a usage-based payment: the
            // payer's budget commits it.
            answer.amount = Some(requirement.amount);
        }
        let (scheme, network) = (&requirement.scheme, &requirement.network);
        let answer = match Settled::check(answer) {
            Ok(settled) => {
                guard.consume().await;
                return Settlement::Settled(settled);
            }
            Err(answer) => *answer,
        };
        if answer.is_pending() {
            return self.pending(guard, answer).await;
        }
        // Our own requirement's network, never the one the facilitator names:
        // which scheme judges a refusal is not the facilitator's choice.
        let scheme = self.core.schemes.find(scheme, network).map(AsRef::as_ref);
        if guard.resumed && !proves_nothing_charged(&answer, scheme) {
            // An earlier attempt may have been charged: never reusable, and
            // never a 402 (its new challenge would invite paying twice).
            guard.keep_unknown().await;
            return Settlement::Refused(self.disputed(&guard.key, answer, scheme).await);
        }
        guard.release().await;
        let reason = answer
            .error_reason
            .as_ref()
            .map_or("unknown", |r| r.as_str())
            .to_owned();
        let detail = answer
            .error_message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let refusal = self
            .payment_required(
                format!("settlement failed: {reason}{detail}"),
                Some(&answer),
            )
            .await;
        Settlement::Refused(
            self.fail(PaymentFailure::SettleFailed(answer), refusal)
                .await,
        )
    }

    /// A settlement claiming more than was asked for: the facilitator
    /// misbehaved, or the chain moved more than the seller meant to charge.
    /// Never served, and the payment is never reused (it may be spent).
    async fn overcharged(
        &self,
        guard: &mut Guard,
        answer: SettleResponse,
        requirement: &PaymentRequirements,
    ) -> Refusal {
        tracing::error!(requested = %requirement.amount, claimed = ?answer.amount,
            transaction = %answer.transaction, network = %answer.network,
            "the facilitator claims to have settled more than requested; not serving");
        guard.consume().await;
        let refusal = ErrorRefusal::new(
            502,
            "settlement_amount_mismatch",
            format!(
                "the facilitator reported a settlement above the {} requested; the response \
                 is withheld",
                requirement.amount
            ),
        );
        self.fail(PaymentFailure::OverCharged(answer), Refusal::Error(refusal))
            .await
    }

    /// A broadcast but unconfirmed settlement: served on routes that accept
    /// it, otherwise of unknown outcome.
    async fn pending(&self, guard: &mut Guard, answer: SettleResponse) -> Settlement<Refusal> {
        if self.route.pending == PendingPolicy::Serve
            && let Ok(settled) = Settled::accept_pending(answer.clone())
        {
            // Served: the payment is spent whatever the chain decides.
            guard.consume().await;
            return Settlement::Settled(settled);
        }
        let detail = format!("transaction {} is pending", answer.transaction);
        Settlement::Unknown(Unknown {
            receipt: Some(answer),
            detail,
        })
    }
}
