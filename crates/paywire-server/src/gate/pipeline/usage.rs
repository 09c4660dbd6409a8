//! Usage-based options (`upto`): the amount settled after the handler ran,
//! and the check of what the facilitator says it charged.

use std::borrow::Cow;

use paywire_core::{AtomicAmount, FacilitatorRequest, PaymentRequirements, Price, SettleResponse};

use super::Paid;
use crate::gate::amount_in_asset;
use crate::gate::transport::{ErrorRefusal, Refusal};
use crate::hooks::PaymentFailure;
use crate::settlement::Guard;
use crate::usage::{MissingUsage, Usage};

impl Paid<'_> {
    /// Whether `requirement`'s scheme charges by usage.
    pub(super) fn usage_based(&self, requirement: &PaymentRequirements) -> bool {
        self.core
            .schemes
            .find(&requirement.scheme, &requirement.network)
            .is_some_and(|server| server.usage_based())
    }

    /// The amount to settle for `requirement` (its `amount` is the
    /// authorized maximum) given what the handler reported; `None` when the
    /// scheme does not charge by usage (the requirement is settled as is).
    pub(super) async fn charge(
        &self,
        requirement: &PaymentRequirements,
        usage: Option<Usage>,
    ) -> Result<Option<AtomicAmount>, Refusal> {
        if !self.usage_based(requirement) {
            return Ok(None);
        }
        let maximum = requirement.amount;
        let reported = match usage {
            Some(usage) => self.in_asset(requirement, usage).await,
            None => Err("the handler reported no usage".to_owned()),
        };
        match reported {
            Ok(amount) if amount > maximum => {
                tracing::warn!(route = %self.route.pattern.as_str(), %amount, %maximum,
                    "reported usage above the authorized maximum: charging the maximum");
                Ok(Some(maximum))
            }
            Ok(amount) => Ok(Some(amount)),
            Err(detail) => self.missing(maximum, detail).await.map(Some),
        }
    }

    /// `usage` in atomic units of `requirement`'s asset.
    async fn in_asset(
        &self,
        requirement: &PaymentRequirements,
        usage: Usage,
    ) -> Result<AtomicAmount, String> {
        let money = match usage {
            Usage::Atomic(amount) => return Ok(amount),
            Usage::Money(money) => money,
        };
        let server = self
            .core
            .schemes
            .find(&requirement.scheme, &requirement.network)
            .ok_or_else(|| "no scheme server".to_owned())?;
        let supported = self.core.supported().await;
        let kind = supported
            .as_deref()
            .and_then(|s| s.kind(&requirement.scheme, &requirement.network));
        amount_in_asset(&**server, requirement, &Price::Money(money), kind)
            .map_err(|detail| format!("the reported usage cannot be charged: {detail}"))
    }

    /// The route's answer to a missing or unusable usage report.
    async fn missing(
        &self,
        maximum: AtomicAmount,
        detail: String,
    ) -> Result<AtomicAmount, Refusal> {
        let route = self.route.pattern.as_str();
        match self.route.missing_usage {
            MissingUsage::ChargeMaximum => {
                tracing::warn!(route, %detail, %maximum, "charging the authorized maximum");
                Ok(maximum)
            }
            MissingUsage::ChargeNothing => {
                tracing::warn!(route, %detail, "charging nothing");
                Ok(AtomicAmount::ZERO)
            }
            MissingUsage::Refuse => {
                tracing::warn!(route, %detail, "refusing the request, nothing charged");
                let refusal = ErrorRefusal::new(
                    500,
                    "usage_missing",
                    format!("the usage of this request is unknown (nothing was charged): {detail}"),
                );
                Err(self
                    .fail(
                        PaymentFailure::UsageMissing(detail),
                        Refusal::Error(refusal),
                    )
                    .await)
            }
        }
    }

    /// The amount a retry of a usage-based payment whose outcome was unknown
    /// settles: the one the first attempt asked for, as recorded with the
    /// unknown outcome (by any instance sharing the store) or remembered by
    /// this one; otherwise what the route charges a request without usage
    /// (the maximum when it would refuse: the first attempt may have been
    /// charged, so the retry cannot be refused uncharged).
    pub(super) async fn resumed_charge(
        &self,
        guard: &Guard,
        requirement: &PaymentRequirements,
    ) -> Option<AtomicAmount> {
        if !self.usage_based(requirement) {
            return None;
        }
        let key = &guard.key;
        match guard.store.unknown_charge(key, &guard.fingerprint).await {
            // Never more than the authorized maximum, whatever the store says.
            Ok(Some(amount)) if amount <= requirement.amount => return Some(amount),
            Ok(Some(amount)) => {
                tracing::error!(%amount, "the recorded charge exceeds the maximum; ignored");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "reading the recorded charge failed");
            }
        }
        if let Some(amount) = self.core.responses.charge(key) {
            return Some(amount);
        }
        let amount = match self.route.missing_usage {
            MissingUsage::ChargeNothing => AtomicAmount::ZERO,
            MissingUsage::ChargeMaximum | MissingUsage::Refuse => requirement.amount,
        };
        tracing::warn!(key = %key.to_hex(), %amount,
            "the amount of an earlier settlement attempt is no longer known; settling the route's default");
        Some(amount)
    }
}

/// The settle request: the verified one, or for a usage-based payment the
/// same with `amount` = the charge.
pub(super) fn settle_request(
    request: &FacilitatorRequest,
    charge: Option<AtomicAmount>,
) -> Cow<'_, FacilitatorRequest> {
    match charge {
        Some(amount) if amount != request.payment_requirements.amount => {
            let mut request = request.clone();
            request.payment_requirements.amount = amount;
            Cow::Owned(request)
        }
        _ => Cow::Borrowed(request),
    }
}

/// Whether the facilitator's answer claims more than `requested` was
/// settled.
pub(super) fn overcharged(answer: &SettleResponse, requested: &AtomicAmount) -> bool {
    answer.amount.is_some_and(|claimed| claimed > *requested)
}
