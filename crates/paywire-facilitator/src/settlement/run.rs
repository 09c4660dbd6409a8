//! One settlement under its lock: the recorded answer when it is final or
//! fresh, else the chain's word on a transaction already out, else a
//! (re-)run of the scheme with every step written first; and the record of
//! what each caller was told (see [`super::replay`] for who may get what).

use std::time::{Duration, Instant};

use paywire_core::{FacilitatorRequest, SettleResponse, SettlementLookup};

use super::observer::LedgerObserver;
use super::replay::is_replay;
use super::{Caller, LedgeredFacilitator, SettlementError, SettlementGuard, unix_now};
use crate::ledger::{
    Delivery, Ledger, PaymentIdClaim, SettlementRecord, SettlementState, fingerprint,
};
use crate::metrics::reason_code;
use crate::store::LockWatch;

/// A settlement's answer that still holds the settlement's lock: its
/// delivery is recorded when it is handed to the caller ([`Self::deliver`]),
/// or it is dropped unrecorded if the caller hung up (the next settle then
/// gets the outcome).
pub struct Answer {
    /// The answer.
    pub result: Result<SettleResponse, SettlementError>,
    /// The state to record as delivered to the caller (`None`: nothing new,
    /// e.g. a replay refusal or a retry of the same outcome).
    delivers: Option<SettlementState>,
    ledger: Ledger,
    fingerprint: String,
    caller: Caller,
    _guard: Option<SettlementGuard>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("result", &self.result)
            .field("delivers", &self.delivers)
            .finish_non_exhaustive()
    }
}

impl Answer {
    fn unlocked(
        ledger: Ledger,
        fingerprint: String,
        caller: Caller,
        error: SettlementError,
    ) -> Self {
        Self {
            result: Err(error),
            delivers: None,
            ledger,
            fingerprint,
            caller,
            _guard: None,
        }
    }

    /// Records that the caller received this answer, then lets the
    /// settlement go. A success whose delivery cannot be recorded is not
    /// given out: an unrecorded success could be replayed.
    pub async fn deliver(self) -> Result<SettleResponse, SettlementError> {
        if let Some(delivered) = self.delivers {
            let delivery = Delivery {
                state: delivered,
                caller: self.caller.key.clone(),
                payment_id: self.caller.payment_id.clone(),
                at: unix_now(),
            };
            if let Err(error) = self
                .ledger
                .mark_delivered(&self.fingerprint, &delivery)
                .await
            {
                if delivered == SettlementState::Confirmed {
                    return Err(error.into());
                }
                tracing::error!(%error, "could not record the delivery of a settle answer");
            }
            tracing::debug!(fingerprint = %self.fingerprint, state = delivered.as_str(),
                caller = ?self.caller.key, "settle answer delivered");
        }
        self.result
    }
}

/// An answer and the state to record as delivered with it.
type Answered = (
    Result<SettleResponse, SettlementError>,
    Option<SettlementState>,
);

impl LedgeredFacilitator {
    /// Settles `request` for `caller` under the settlement's lock, which the
    /// returned [`Answer`] keeps until it is delivered.
    pub async fn settle_for(&self, request: &FacilitatorRequest, caller: Caller) -> Answer {
        let key = fingerprint(
            &request.payment_payload.payload,
            &request.payment_requirements,
        );
        let unlocked =
            |caller, error| Answer::unlocked(self.ledger.clone(), key.clone(), caller, error);
        if let Some(id) = caller.payment_id.clone() {
            match self.ledger.claim_payment_id(&id, &key).await {
                Ok(PaymentIdClaim::Bound) => {}
                Ok(PaymentIdClaim::Conflict { .. }) => {
                    let kind = self.payment_kind(request).await;
                    self.metrics
                        .settle(&kind, "conflict", "payment_identifier_conflict");
                    return unlocked(caller, SettlementError::PaymentIdConflict(id));
                }
                Err(error) => return unlocked(caller, error.into()),
            }
        }
        let guard = match self.lock_settlement(&self.lock_key(request)).await {
            Ok(guard) => guard,
            Err(error) => return unlocked(caller, error.into()),
        };
        let watch = guard.watch();
        let (result, delivers) = match self.settle_locked(&key, request, &caller, &watch).await {
            Ok(answered) => answered,
            Err(error) => (Err(error), None),
        };
        Answer {
            result,
            delivers,
            ledger: self.ledger.clone(),
            fingerprint: key,
            caller,
            _guard: Some(guard),
        }
    }

    /// The answer for a caller holding the settlement's lock, and the state
    /// to record as delivered.
    async fn settle_locked(
        &self,
        key: &str,
        request: &FacilitatorRequest,
        caller: &Caller,
        lock: &LockWatch,
    ) -> Result<Answered, SettlementError> {
        let record = self.ledger.get(key).await?;
        if let Some(record) = &record
            && !self.inner.idempotent_settle(request)
            && is_replay(record, caller, self.retry_window, unix_now())
        {
            tracing::warn!(fingerprint = %key, caller = ?caller.key, "replayed settle refused");
            return Ok((Ok(self.replay_refusal(request, Some(record))), None));
        }
        if let Some(other) = self.spent_by_another(key, request).await? {
            // The same authorization, settled (or broadcast) for other
            // requirements, e.g. a usage-based payment asked again with
            // another amount: never a second charge.
            tracing::warn!(fingerprint = %key, %other,
                "the authorization was already settled for other requirements; refused as a replay");
            return Ok((Ok(self.replay_refusal(request, record.as_ref())), None));
        }
        let answered = self
            .answer(key, request, record.as_ref(), caller, lock)
            .await;
        let answered = match answered {
            // One on-chain payment answers success to one payload only.
            Ok(response) if response.success && !response.transaction.is_empty() => {
                let claim = self
                    .ledger
                    .claim_transaction(&response.transaction, key)
                    .await?;
                if let PaymentIdClaim::Conflict { fingerprint } = claim {
                    tracing::warn!(%key, other = %fingerprint, transaction = %response.transaction,
                        "settled transaction already answered another payload; refused as a replay");
                    return Ok((Ok(self.replay_refusal(request, record.as_ref())), None));
                }
                Ok(response)
            }
            other => other,
        };
        let told = match &answered {
            Ok(response) => SettlementState::of(response),
            Err(_) => SettlementState::Failed,
        };
        let already_told = record
            .and_then(|r| r.delivery)
            .is_some_and(|delivery| delivery.state == told);
        Ok((answered, (!already_told).then_some(told)))
    }

    /// The recorded answer when it is final or fresh, else the chain's word
    /// on a transaction already out, else a (re-)run of the scheme.
    async fn answer(
        &self,
        key: &str,
        request: &FacilitatorRequest,
        record: Option<&SettlementRecord>,
        caller: &Caller,
        lock: &LockWatch,
    ) -> Result<SettleResponse, SettlementError> {
        if let Some(record) = record {
            if let Some(cached) = reusable(record, self.pending_recheck_after) {
                tracing::info!(fingerprint = %key, state = record.state.as_str(), "settle answered from ledger");
                let kind = self.payment_kind(request).await;
                self.metrics.settle(&kind, "cached", record.state.as_str());
                return Ok(cached);
            }
            let transaction_out = matches!(
                record.state,
                SettlementState::Submitted | SettlementState::Pending
            );
            let known = record.transaction.as_deref();
            if transaction_out
                && let Some(response) = self.outcome_from_chain(key, request, known).await?
            {
                return Ok(response);
            }
        }
        let id = caller.payment_id.as_deref();
        self.run_settlement(key, request, id, lock).await
    }

    /// Asks the scheme what became of the payment on chain, without sending
    /// anything, and records a final answer (`None`: still open, or the
    /// scheme cannot tell). Settlement truth comes before any time-window
    /// check: a transaction that landed is a success even once the
    /// authorization expired.
    pub(super) async fn outcome_from_chain(
        &self,
        key: &str,
        request: &FacilitatorRequest,
        known_transaction: Option<&str>,
    ) -> Result<Option<SettleResponse>, SettlementError> {
        let lookup = self
            .inner
            .lookup_settlement(request, known_transaction)
            .await?;
        // Open, or an answer this version does not know: nothing settled yet.
        let Some(SettlementLookup::Settled(response) | SettlementLookup::Unsettleable(response)) =
            lookup
        else {
            return Ok(None);
        };
        let (response, recorded) = self.record_scheme_answer(key, request, response).await?;
        tracing::info!(fingerprint = %key, state = recorded.as_str(),
            transaction = %response.transaction, "settlement outcome read from the chain");
        Ok(Some(response))
    }

    /// Records what the scheme (or the chain) answered for the settlement
    /// keyed `key`, and returns the answer to give. A success naming a
    /// transaction that another payload claimed (it broadcast it, or was
    /// answered with it first) is that payload's outcome, not this one's: it
    /// is recorded and answered as a replay refusal, final (the refusal
    /// keeps the transaction in the ledger).
    async fn record_scheme_answer(
        &self,
        key: &str,
        request: &FacilitatorRequest,
        response: SettleResponse,
    ) -> Result<(SettleResponse, SettlementState), SettlementError> {
        let mut response = response;
        if response.success && !response.transaction.is_empty() {
            let claim = self
                .ledger
                .claim_transaction(&response.transaction, key)
                .await?;
            if let PaymentIdClaim::Conflict { fingerprint } = claim {
                tracing::warn!(%key, other = %fingerprint, transaction = %response.transaction,
                    "the chain's answer names a transaction claimed by another payload; a replay");
                let transaction = std::mem::take(&mut response.transaction);
                response = self.refusal_for(request, response.payer.take());
                response.transaction = transaction;
            }
        }
        if (response.success || response.is_pending())
            && let Some(spend) = spend_binding(self.inner.spend_key(request))
            && let PaymentIdClaim::Conflict { fingerprint } =
                self.ledger.claim_payment_id(&spend, key).await?
        {
            tracing::warn!(%key, other = %fingerprint,
                "the authorization was settled for another payload first; a replay");
            let transaction = std::mem::take(&mut response.transaction);
            response = self.refusal_for(request, response.payer.take());
            response.transaction = transaction;
        }
        let recorded = self.ledger.record_outcome(key, &response).await?;
        if recorded == SettlementState::Confirmed {
            let amount = response
                .amount
                .unwrap_or(request.payment_requirements.amount);
            self.metrics
                .settled_amount(&self.known_payment_kind(request), &amount);
        }
        Ok((response, recorded))
    }

    /// The payload another settlement of the same authorization (the
    /// scheme's spend key) was answered success or pending for, if not this
    /// one's `key`.
    async fn spent_by_another(
        &self,
        key: &str,
        request: &FacilitatorRequest,
    ) -> Result<Option<String>, SettlementError> {
        let Some(spend) = spend_binding(self.inner.spend_key(request)) else {
            return Ok(None);
        };
        let bound = self.ledger.payment_id_binding(&spend).await?;
        Ok(bound.filter(|bound| bound != key))
    }

    /// Runs the scheme for the settlement keyed `key` and records every
    /// step: `received` before the call, `submitted` + hash before each
    /// broadcast (a failed write, or a lost settlement lock, aborts the
    /// broadcast), then the outcome. The caller holds the settlement's lock,
    /// which `lock` watches.
    pub(super) async fn run_settlement(
        &self,
        key: &str,
        request: &FacilitatorRequest,
        id: Option<&str>,
        lock: &LockWatch,
    ) -> Result<SettleResponse, SettlementError> {
        self.ledger.mark_received(key, request, id).await?;
        let observer = LedgerObserver::new(self.ledger.clone(), key).guarded_by(lock.clone());
        let kind = self.payment_kind(request).await;
        let started = Instant::now();
        let result = self.inner.settle_observed(request, &observer).await;
        self.metrics.settle_latency(&kind, started.elapsed());
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                self.metrics.settle(&kind, "error", "");
                if let Err(ledger_error) = self.ledger.record_error(key, &error.to_string()).await {
                    tracing::error!(%ledger_error, "could not record settlement error");
                }
                return Err(error.into());
            }
        };
        let (response, recorded) = self.record_scheme_answer(key, request, response).await?;
        let reason = reason_code(response.error_reason.as_ref());
        self.metrics.settle(&kind, recorded.as_str(), &reason);
        tracing::info!(
            fingerprint = %key,
            state = recorded.as_str(),
            transaction = %response.transaction,
            "settlement recorded"
        );
        Ok(response)
    }
}

/// The binding that ties an authorization (the scheme's spend key) to the
/// one payload it was settled for. It lives beside the `payment-identifier`
/// bindings under a prefix no payment identifier can have (`:` is not in
/// their alphabet), so the stores need no new table.
pub(super) fn spend_binding(spend_key: Option<String>) -> Option<String> {
    spend_key.map(|key| format!("spend:{key}"))
}

/// The recorded answer a repeated settle gets, or `None` when the scheme
/// (or the chain) must be asked again.
fn reusable(record: &SettlementRecord, pending_recheck_after: Duration) -> Option<SettleResponse> {
    let response = record.response.as_ref()?;
    match record.state {
        SettlementState::Confirmed => Some(response.clone()),
        // Reverted on chain: final. Refused before sending: retrying is
        // harmless and may succeed (e.g. the payer topped up).
        SettlementState::Failed if !response.transaction.is_empty() => Some(response.clone()),
        SettlementState::Pending
            if unix_now().saturating_sub(record.updated_at) < pending_recheck_after.as_secs() =>
        {
            Some(response.clone())
        }
        _ => None,
    }
}
