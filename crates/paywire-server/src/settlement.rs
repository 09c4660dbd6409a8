//! The reservation a paid request holds, and how settlement answers are
//! judged: settled, refused (definitely), or of unknown outcome.

use std::sync::Arc;

use paywire_core::{FacilitatorError, SchemeError, SchemeServer, SettleResponse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http_facilitator::request_not_sent;
use crate::proof::Settled;
use crate::reservation::{PayloadFingerprint, ReservationKey, ReservationStore};

/// A payment held by one request.
///
/// Dropped early (the client hung up): a fresh reservation is freed before
/// settlement started, and kept with an unknown outcome once settlement has
/// started or when it was resumed after an unknown outcome.
pub(crate) struct Guard {
    pub(crate) store: Arc<dyn ReservationStore>,
    pub(crate) key: ReservationKey,
    pub(crate) fingerprint: PayloadFingerprint,
    /// Holds a payment resumed after an unknown outcome: letting it go keeps
    /// it unknown (the first attempt may have been charged).
    pub(crate) resumed: bool,
    pub(crate) state: GuardState,
}

/// Where the holder of a [`Guard`] is.
#[derive(PartialEq, Eq)]
pub(crate) enum GuardState {
    Held,
    Settling,
    Done,
}

impl Guard {
    /// A fresh (`resumed: false`) or resumed hold on `key`.
    pub(crate) fn new(
        store: Arc<dyn ReservationStore>,
        key: ReservationKey,
        fingerprint: PayloadFingerprint,
        resumed: bool,
    ) -> Self {
        Self {
            store,
            key,
            fingerprint,
            resumed,
            state: GuardState::Held,
        }
    }

    /// Nothing was charged: the payment may be used again.
    pub(crate) async fn release(&mut self) {
        self.state = GuardState::Done;
        if let Err(error) = self.store.release(&self.key).await {
            tracing::error!(%error, "releasing a payment reservation failed");
        }
    }

    /// Settled (or served while pending): used for good.
    pub(crate) async fn consume(&mut self) {
        self.state = GuardState::Done;
        if let Err(error) = self.store.consume(&self.key).await {
            tracing::error!(%error, "consuming a payment reservation failed");
        }
    }

    /// The outcome is unknown: kept, resumable by a retry with this payload.
    pub(crate) async fn keep_unknown(&mut self) {
        self.state = GuardState::Done;
        tracing::info!(key = %self.key.to_hex(), "settlement outcome unknown; payment kept for a retry");
        if let Err(error) = self.store.mark_unknown(&self.key, &self.fingerprint).await {
            tracing::error!(%error, "recording an unknown settlement outcome failed");
        }
    }

    /// Stops before any new settlement attempt: a fresh reservation is freed,
    /// a resumed one stays unknown.
    pub(crate) async fn let_go(&mut self) {
        if self.resumed {
            self.keep_unknown().await;
        } else {
            self.release().await;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let keep = match self.state {
            GuardState::Done => return,
            GuardState::Held => self.resumed,
            GuardState::Settling => true,
        };
        let (store, key, fingerprint) = (Arc::clone(&self.store), self.key, self.fingerprint);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let result = if keep {
                    store.mark_unknown(&key, &fingerprint).await
                } else {
                    store.release(&key).await
                };
                if let Err(error) = result {
                    tracing::error!(%error, "cleaning up a dropped reservation failed");
                }
            });
        }
    }
}

/// What a settlement attempt came to; `R` is the refusal.
pub(crate) enum Settlement<R> {
    /// `success: true`, or pending on a route that serves pending payments;
    /// the reservation is consumed.
    Settled(Settled),
    /// Nobody knows yet whether the payer was charged; the reservation is
    /// still held (the caller keeps the reply, then
    /// [`Guard::keep_unknown`]).
    Unknown(Unknown),
    /// A definite refusal, answered with `R`; the reservation is
    /// released, or kept when a resumed payment may have been charged.
    Refused(R),
}

/// Details of an unknown outcome.
pub(crate) struct Unknown {
    /// The facilitator's `pending` answer (with the transaction hash), if it
    /// gave one.
    pub(crate) receipt: Option<SettleResponse>,
    /// What went wrong, for the client and the logs.
    pub(crate) detail: String,
}

/// Whether a `/settle` call that failed with `error` certainly settled
/// nothing: it never reached the facilitator, or was refused before any
/// transaction (4xx, bad request, unsupported requirements). Timeouts, broken
/// connections, 5xx and undecodable answers may follow a broadcast.
pub(crate) fn settle_error_is_definite(error: &FacilitatorError) -> bool {
    if request_not_sent(error) {
        return true;
    }
    match error {
        FacilitatorError::Http { status, .. } => (400..500).contains(status),
        FacilitatorError::BadRequest(_)
        | FacilitatorError::Scheme(
            SchemeError::InvalidRequirements(_) | SchemeError::Unsupported(_),
        ) => true,
        // Transport, decode and other scheme errors, and errors this version
        // does not know, may follow a broadcast.
        _ => false,
    }
}

/// Whether a failed settlement proves that the payload could never have
/// moved funds, whenever it was tried: a defect of the signed payload itself
/// (not yet valid, wrong amount or recipient, wrong network, scheme, asset or
/// shape). Balance, expiry, used-nonce, simulation and revert answers prove
/// nothing about an earlier attempt, nor does a signature failure (a smart
/// wallet's validity can change).
pub(crate) fn proves_nothing_charged(
    answer: &SettleResponse,
    scheme: Option<&dyn SchemeServer>,
) -> bool {
    answer.error_reason.as_ref().is_some_and(|reason| {
        reason.is_payload_defect()
            || scheme.is_some_and(|scheme| scheme.refusal_proves_unchargeable(reason))
    })
}

/// The memory all paid replies held back until settlement may take
/// together, in bytes (one permit per byte): many verifying authorizations
/// on a large route cannot exhaust memory.
#[derive(Debug, Clone)]
pub(crate) struct HeldBytes(Arc<Semaphore>);

impl HeldBytes {
    /// A pool of `total` bytes.
    pub(crate) fn new(total: usize) -> Self {
        Self(Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))))
    }

    /// Takes `len` more bytes into `held`, or `None` when the pool is full.
    pub(crate) fn take(&self, held: &mut Option<OwnedSemaphorePermit>, len: usize) -> Option<()> {
        let len = u32::try_from(len).ok()?;
        let permit = Arc::clone(&self.0).try_acquire_many_owned(len).ok()?;
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_core::ErrorReason;

    #[test]
    fn only_refusals_before_sending_are_definite() {
        let definite = [
            FacilitatorError::Transport("request not sent: connection refused".into()),
            FacilitatorError::Http {
                status: 429,
                body: String::new(),
            },
            FacilitatorError::BadRequest("x".into()),
        ];
        for error in definite {
            assert!(settle_error_is_definite(&error), "{error}");
        }
        let unknown = [
            FacilitatorError::Transport("operation timed out".into()),
            FacilitatorError::Http {
                status: 502,
                body: String::new(),
            },
            FacilitatorError::Decode("eof".into()),
            FacilitatorError::Scheme(SchemeError::Chain("receipt".into())),
        ];
        for error in unknown {
            assert!(!settle_error_is_definite(&error), "{error}");
        }
    }

    #[test]
    fn only_payload_defects_prove_nothing_was_charged() {
        /// A scheme whose only payload defect is `toy_bad_ticket`.
        struct Toy;
        impl SchemeServer for Toy {
            fn scheme(&self) -> &'static str {
                "toy"
            }
            fn requirements(
                &self,
                _: &paywire_core::RequirementsRequest<'_>,
            ) -> Result<paywire_core::PaymentRequirements, SchemeError> {
                Err(SchemeError::Unsupported("toy".into()))
            }
            fn refusal_proves_unchargeable(&self, reason: &ErrorReason) -> bool {
                reason.as_str() == "toy_bad_ticket"
            }
        }
        let network = paywire_core::ChainId::parse("toy:1").unwrap();
        let failed = |reason| SettleResponse::failed(network.clone(), reason, None, "");
        let bad_ticket = ErrorReason::from_static("toy_bad_ticket");
        assert!(proves_nothing_charged(
            &failed(bad_ticket.clone()),
            Some(&Toy)
        ));
        assert!(
            !proves_nothing_charged(&failed(bad_ticket), None),
            "the scheme decides"
        );
        assert!(proves_nothing_charged(
            &failed(ErrorReason::INVALID_PAYLOAD),
            None
        ));
        for reason in [
            ErrorReason::from_static("toy_ticket_used"),
            ErrorReason::INSUFFICIENT_FUNDS,
            ErrorReason::INVALID_TRANSACTION_STATE,
            ErrorReason::UNEXPECTED_SETTLE_ERROR,
            ErrorReason::new("who knows"),
        ] {
            assert!(
                !proves_nothing_charged(&failed(reason.clone()), Some(&Toy)),
                "{reason}"
            );
        }
    }
}
