//! The reservation a paid request holds, and how settlement answers are
//! judged: settled, refused (definitely), or of unknown outcome.

use std::sync::Arc;

use paywire_core::{AtomicAmount, FacilitatorError, SchemeError, SchemeServer, SettleResponse};
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
    /// The amount a usage-based settlement asks for, recorded with an
    /// unknown outcome so that any instance's retry asks for the same.
    pub(crate) charge: Option<AtomicAmount>,
    pub(crate) state: GuardState,
}

/// Where the holder of a [`Guard`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuardState {
    Held,
    Settling,
    /// Telling the store how it ended: a handler cancelled during that call
    /// leaves the same instruction to the drop.
    Finishing(Finish),
    Done,
}

/// How a held payment ends in the store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Release,
    Consume,
    KeepUnknown,
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
            charge: None,
            state: GuardState::Held,
        }
    }

    /// Nothing was charged: the payment may be used again.
    pub(crate) async fn release(&mut self) {
        self.finish(Finish::Release).await;
    }

    /// Settled (or served while pending): used for good.
    pub(crate) async fn consume(&mut self) {
        self.finish(Finish::Consume).await;
    }

    /// The outcome is unknown: kept, resumable by a retry with this payload.
    pub(crate) async fn keep_unknown(&mut self) {
        tracing::info!(key = %self.key.to_hex(), "settlement outcome unknown; payment kept for a retry");
        self.finish(Finish::KeepUnknown).await;
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

    /// Records `finish` in the store; `Done` only once the store answered.
    async fn finish(&mut self, finish: Finish) {
        self.state = GuardState::Finishing(finish);
        let result = apply(
            &*self.store,
            &self.key,
            &self.fingerprint,
            self.charge,
            finish,
        )
        .await;
        self.state = GuardState::Done;
        if let Err(error) = result {
            tracing::error!(%error, "recording how a payment reservation ended failed");
        }
    }
}

/// Tells `store` how the reservation `key` ended.
async fn apply(
    store: &dyn ReservationStore,
    key: &ReservationKey,
    fingerprint: &PayloadFingerprint,
    charge: Option<AtomicAmount>,
    finish: Finish,
) -> Result<(), crate::reservation::ReservationError> {
    match finish {
        Finish::Release => store.release(key).await,
        Finish::Consume => store.consume(key).await,
        Finish::KeepUnknown => {
            store
                .mark_unknown_with_charge(key, fingerprint, charge)
                .await
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let finish = match self.state {
            GuardState::Done => return,
            GuardState::Held if self.resumed => Finish::KeepUnknown,
            GuardState::Held => Finish::Release,
            GuardState::Settling => Finish::KeepUnknown,
            GuardState::Finishing(finish) => finish,
        };
        let (store, key, fingerprint) = (Arc::clone(&self.store), self.key, self.fingerprint);
        let charge = self.charge;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(error) = apply(&*store, &key, &fingerprint, charge, finish).await {
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

    /// Records every call; `consume` never answers (a store stuck while the
    /// handler is cancelled).
    #[derive(Default)]
    struct StuckConsume(std::sync::Mutex<Vec<&'static str>>);

    impl StuckConsume {
        fn record(&self, call: &'static str) {
            self.0.lock().unwrap().push(call);
        }
    }

    impl ReservationStore for StuckConsume {
        fn reserve<'a>(
            &'a self,
            _: &'a ReservationKey,
            _: &'a PayloadFingerprint,
        ) -> paywire_core::BoxFuture<'a, Result<crate::ReserveOutcome, crate::ReservationError>>
        {
            Box::pin(async { Ok(crate::ReserveOutcome::Reserved) })
        }
        fn release<'a>(
            &'a self,
            _: &'a ReservationKey,
        ) -> paywire_core::BoxFuture<'a, Result<(), crate::ReservationError>> {
            self.record("release");
            Box::pin(async { Ok(()) })
        }
        fn consume<'a>(
            &'a self,
            _: &'a ReservationKey,
        ) -> paywire_core::BoxFuture<'a, Result<(), crate::ReservationError>> {
            self.record("consume");
            let first = self.0.lock().unwrap().len() == 1;
            Box::pin(async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok(())
            })
        }
        fn mark_unknown<'a>(
            &'a self,
            _: &'a ReservationKey,
            _: &'a PayloadFingerprint,
        ) -> paywire_core::BoxFuture<'a, Result<(), crate::ReservationError>> {
            self.record("mark_unknown");
            Box::pin(async { Ok(()) })
        }
        fn is_unknown<'a>(
            &'a self,
            _: &'a ReservationKey,
            _: &'a PayloadFingerprint,
        ) -> paywire_core::BoxFuture<'a, Result<bool, crate::ReservationError>> {
            Box::pin(async { Ok(false) })
        }
    }

    #[tokio::test]
    async fn a_handler_cancelled_while_the_store_records_the_end_still_records_it() {
        let store = Arc::new(StuckConsume::default());
        let mut guard = Guard::new(
            store.clone(),
            ReservationKey([7; 32]),
            PayloadFingerprint([8; 32]),
            false,
        );
        guard.state = GuardState::Settling;
        // The client hangs up while the settled payment is being consumed.
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(20), guard.consume()).await;
        assert!(cancelled.is_err(), "the store never answered");
        drop(guard);
        for _ in 0..100 {
            if store.0.lock().unwrap().len() > 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            *store.0.lock().unwrap(),
            ["consume", "consume"],
            "the drop repeats the consumption, never frees or leaves it"
        );
    }

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
