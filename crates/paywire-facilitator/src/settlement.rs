//! One `/settle`: which answer a caller may get, the settlement run, and the
//! record of what each caller was told.
//!
//! Replays fail. The ledger keys settlements by the fingerprint of payload
//! and requirements and records, per fingerprint, who received an answer
//! ([`Delivery`]). Once a success was delivered, a settle of the same
//! fingerprint gets a structured refusal (`success: false`, the used-nonce
//! reason, `transaction: ""`), without calling the scheme, unless it is an
//! idempotent retry within the retry window: by the same API key when the
//! answer went to one, else by a request carrying the same
//! `payment-identifier` id (the payer chooses the id, so it never stands in
//! for a key). A `pending` answer
//! delivered to an identified caller (API key or payment identifier)
//! reserves the final outcome for that caller's retries; a `pending` answer
//! to an anonymous caller reserves nothing, and the first settle that sees
//! the confirmation gets the success. A caller that hung up was told
//! nothing: the next settle of the payload gets the outcome as the first
//! delivery. One transaction answers success to one fingerprint only
//! ([`crate::Ledger::claim_transaction`]): the fingerprint that broadcast it
//! claims it before the broadcast, so a re-spelled payload or re-worded
//! requirements around the same on-chain payment are replays too, even while
//! the first settlement is still `pending`.

use std::time::{Duration, Instant};

use paywire_core::{
    ErrorReason, FacilitatorRequest, SettleResponse, SettlementLookup, X402_VERSION,
};

use crate::error::ApiError;
use crate::ledger::{
    Delivery, LockWatch, PaymentIdClaim, SettlementRecord, SettlementState, fingerprint, now,
};
use crate::recovery::LedgerObserver;
use crate::server::{AppState, KeyedGuard, conflict, facilitator_error, reason_code};

/// Who is calling `/settle`, as far as the facilitator can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The id of the API key the caller presented (never the key).
    pub key: Option<String>,
    /// The request's `payment-identifier` id.
    pub payment_id: Option<String>,
}

impl Caller {
    /// Whether this request retries `delivery`. The payer chooses the
    /// payload and its payment identifier, so neither names the caller: an
    /// answer delivered to an API key is retried by that key only, one
    /// delivered without a key by the same payment identifier only. A
    /// delivered outcome is retried within `window` of its delivery; a
    /// `pending` answer (no outcome yet) reserves the outcome for its
    /// caller however long it takes.
    fn retries(&self, delivery: &Delivery, window: Duration, now: u64) -> bool {
        let same_caller = match &delivery.caller {
            Some(key) => self.key.as_ref() == Some(key),
            None => self.payment_id.is_some() && self.payment_id == delivery.payment_id,
        };
        let in_time = delivery.state == SettlementState::Pending
            || now.saturating_sub(delivery.at) <= window.as_secs();
        same_caller && in_time
    }
}

/// Whether a settle by `caller` of `record`'s payload is a replay: its
/// success, or a pending answer to an identified caller, was delivered to a
/// request this one does not retry.
fn is_replay(record: &SettlementRecord, caller: &Caller, window: Duration, now: u64) -> bool {
    let Some(delivery) = &record.delivery else {
        return false;
    };
    let reserved = match delivery.state {
        SettlementState::Confirmed => true,
        SettlementState::Pending => delivery.identified(),
        _ => false,
    };
    reserved && !caller.retries(delivery, window, now)
}

/// The answer to a replay: a failure naming no transaction.
fn replay_refusal(
    state: &AppState,
    request: &FacilitatorRequest,
    record: Option<&SettlementRecord>,
) -> SettleResponse {
    let payer = record
        .and_then(|r| r.response.as_ref())
        .and_then(|r| r.payer.clone())
        .or_else(|| state.facilitator().authenticated_payer(request));
    let refusal = refusal_for(state, request, payer);
    state
        .metrics()
        .settle("replay", &reason_code(refusal.error_reason.as_ref()));
    refusal
}

/// The replay refusal's answer (uncounted).
fn refusal_for(
    state: &AppState,
    request: &FacilitatorRequest,
    payer: Option<String>,
) -> SettleResponse {
    let network = request.payment_requirements.network.clone();
    let reason = state.facilitator().replay_reason(request);
    SettleResponse::failed(network, reason, payer, "").with_message(REPLAY_REFUSAL_MESSAGE)
}

/// The `errorMessage` of every replay refusal, word for word (it starts
/// with [`REPLAY_REFUSAL_PREFIX`]). The `errorReason` (a used nonce) is also
/// what a scheme answers for a nonce spent by another authorization; this
/// message tells a resource server that *this* payment was settled and its
/// outcome went to an earlier request (e.g. its own, whose answer was lost
/// on the way back), so the payer must not be asked to pay again.
pub const REPLAY_REFUSAL_MESSAGE: &str = "payment already settled: its outcome was delivered \
    (or is reserved) for an earlier /settle request, so this repeated settle is refused. The \
    recorded answer goes to retries within the idempotent retry window by the same API key, or, \
    for an answer given without an API key, with the same payment-identifier id";

/// The stable start of [`REPLAY_REFUSAL_MESSAGE`], for resource servers to
/// match on.
pub const REPLAY_REFUSAL_PREFIX: &str = "payment already settled:";

/// The refusal of a `/settle` that needs neither the ledger nor the chain:
/// a payload that disagrees with the requirements on version, scheme or
/// network, or a (scheme, network) this facilitator does not settle. Such a
/// request leaves nothing in the ledger. `None`: go on and settle.
pub(crate) async fn precheck(
    state: &AppState,
    request: &FacilitatorRequest,
) -> Option<SettleResponse> {
    let (payload, required) = (&request.payment_payload, &request.payment_requirements);
    let (reason, message) = if payload.x402_version != X402_VERSION {
        (
            ErrorReason::INVALID_X402_VERSION,
            format!(
                "payload x402Version {} is not supported; expected {X402_VERSION}",
                payload.x402_version
            ),
        )
    } else if payload.accepted.scheme != required.scheme {
        (
            ErrorReason::INVALID_SCHEME,
            format!(
                "payload scheme {:?} differs from required {:?}",
                payload.accepted.scheme, required.scheme
            ),
        )
    } else if payload.accepted.network != required.network {
        (
            ErrorReason::INVALID_NETWORK,
            format!(
                "payload network {} differs from required {}",
                payload.accepted.network, required.network
            ),
        )
    } else {
        let kinds = state.supported_kinds().await?;
        if kinds.contains(&(required.scheme.clone(), required.network.to_string())) {
            return None;
        }
        (
            ErrorReason::UNSUPPORTED_SCHEME,
            format!(
                "scheme {:?} on {} is not supported here",
                required.scheme, required.network
            ),
        )
    };
    state
        .metrics()
        .settle("refused", &reason_code(Some(&reason)));
    let payer = state.facilitator().authenticated_payer(request);
    Some(SettleResponse::failed(required.network.clone(), reason, payer, "").with_message(message))
}

/// A `/settle` answer that still holds the settlement's lock: the handler
/// records its delivery when it hands it to the caller, or drops it
/// unrecorded if the caller hung up (the next settle then gets the outcome).
pub struct Answer {
    /// The answer.
    pub result: Result<SettleResponse, ApiError>,
    /// The state to record as delivered to the caller (`None`: nothing new,
    /// e.g. a replay refusal or a retry of the same outcome).
    delivers: Option<SettlementState>,
    fingerprint: String,
    caller: Caller,
    _guard: Option<KeyedGuard>,
}

impl Answer {
    fn unlocked(fingerprint: String, caller: Caller, error: ApiError) -> Self {
        Self {
            result: Err(error),
            delivers: None,
            fingerprint,
            caller,
            _guard: None,
        }
    }

    /// Records that the caller received this answer, then lets the
    /// settlement go. A success whose delivery cannot be recorded is not
    /// given out (503): an unrecorded success could be replayed.
    pub async fn deliver(self, state: &AppState) -> Result<SettleResponse, ApiError> {
        if let Some(delivered) = self.delivers {
            let delivery = Delivery {
                state: delivered,
                caller: self.caller.key.clone(),
                payment_id: self.caller.payment_id.clone(),
                at: unix_now(),
            };
            if let Err(error) = state
                .ledger()
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

/// Settles `request` for `caller` under the settlement's lock, which the
/// returned [`Answer`] keeps until it is delivered.
pub async fn settle_once(state: &AppState, request: &FacilitatorRequest, caller: Caller) -> Answer {
    let key = fingerprint(
        &request.payment_payload.payload,
        &request.payment_requirements,
    );
    if let Some(id) = caller.payment_id.clone() {
        match state.ledger().claim_payment_id(&id, &key).await {
            Ok(PaymentIdClaim::Bound) => {}
            Ok(PaymentIdClaim::Conflict { .. }) => {
                state
                    .metrics()
                    .settle("conflict", "payment_identifier_conflict");
                return Answer::unlocked(key, caller, conflict(&id));
            }
            Err(error) => return Answer::unlocked(key, caller, error.into()),
        }
    }
    let guard = match state.lock_settlement(&key).await {
        Ok(guard) => guard,
        Err(error) => return Answer::unlocked(key, caller, error.into()),
    };
    let watch = guard.watch();
    let (result, delivers) = match settle_locked(state, &key, request, &caller, &watch).await {
        Ok(answered) => answered,
        Err(error) => (Err(error), None),
    };
    Answer {
        result,
        delivers,
        fingerprint: key,
        caller,
        _guard: Some(guard),
    }
}

type Answered = (Result<SettleResponse, ApiError>, Option<SettlementState>);

/// The answer for a caller holding the settlement's lock, and the state to
/// record as delivered.
async fn settle_locked(
    state: &AppState,
    key: &str,
    request: &FacilitatorRequest,
    caller: &Caller,
    lock: &LockWatch,
) -> Result<Answered, ApiError> {
    let record = state.ledger().get(key).await?;
    if let Some(record) = &record
        && is_replay(record, caller, state.retry_window(), unix_now())
    {
        tracing::warn!(fingerprint = %key, caller = ?caller.key, "replayed settle refused");
        return Ok((Ok(replay_refusal(state, request, Some(record))), None));
    }
    let answered = match answer(state, key, request, record.as_ref(), caller, lock).await {
        // One on-chain payment answers success to one payload only.
        Ok(response) if response.success && !response.transaction.is_empty() => {
            match state
                .ledger()
                .claim_transaction(&response.transaction, key)
                .await?
            {
                PaymentIdClaim::Bound => Ok(response),
                PaymentIdClaim::Conflict { fingerprint } => {
                    tracing::warn!(%key, other = %fingerprint, transaction = %response.transaction,
                        "settled transaction already answered another payload; refused as a replay");
                    return Ok((Ok(replay_refusal(state, request, record.as_ref())), None));
                }
            }
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

/// The recorded answer when it is final or fresh, else the chain's word on a
/// transaction already out, else a (re-)run of the scheme.
async fn answer(
    state: &AppState,
    key: &str,
    request: &FacilitatorRequest,
    record: Option<&SettlementRecord>,
    caller: &Caller,
    lock: &LockWatch,
) -> Result<SettleResponse, ApiError> {
    if let Some(record) = record {
        if let Some(cached) = reusable(record, state.pending_recheck_after()) {
            tracing::info!(fingerprint = %key, state = record.state.as_str(), "settle answered from ledger");
            state.metrics().settle("cached", record.state.as_str());
            return Ok(cached);
        }
        let transaction_out = matches!(
            record.state,
            SettlementState::Submitted | SettlementState::Pending
        );
        if transaction_out
            && let Some(response) =
                outcome_from_chain(state, key, request, record.transaction.as_deref()).await?
        {
            return Ok(response);
        }
    }
    run_settlement(state, key, request, caller.payment_id.as_deref(), lock).await
}

/// The recorded answer a repeated `/settle` gets, or `None` when the scheme
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

/// Asks the scheme what became of the payment on chain, without sending
/// anything, and records a final answer (`None`: still open, or the scheme
/// cannot tell). Settlement truth comes before any time-window check: a
/// transaction that landed is a success even once the authorization expired.
pub(crate) async fn outcome_from_chain(
    state: &AppState,
    key: &str,
    request: &FacilitatorRequest,
    known_transaction: Option<&str>,
) -> Result<Option<SettleResponse>, ApiError> {
    let lookup = state
        .facilitator()
        .lookup_settlement(request, known_transaction)
        .await
        .map_err(facilitator_error)?;
    let response = match lookup {
        Some(SettlementLookup::Settled(response) | SettlementLookup::Unsettleable(response)) => {
            response
        }
        Some(SettlementLookup::Open) | None => return Ok(None),
    };
    let (response, recorded) = record_scheme_answer(state, key, request, response).await?;
    tracing::info!(fingerprint = %key, state = recorded.as_str(),
        transaction = %response.transaction, "settlement outcome read from the chain");
    Ok(Some(response))
}

/// Records what the scheme (or the chain) answered for the settlement keyed
/// `key`, and returns the answer to give. A success naming a transaction
/// that another payload claimed (it broadcast it, or was answered with it
/// first) is that payload's outcome, not this one's: it is recorded and
/// answered as a replay refusal, final (the refusal keeps the transaction
/// in the ledger).
async fn record_scheme_answer(
    state: &AppState,
    key: &str,
    request: &FacilitatorRequest,
    response: SettleResponse,
) -> Result<(SettleResponse, SettlementState), ApiError> {
    let mut response = response;
    if response.success && !response.transaction.is_empty() {
        let claim = state
            .ledger()
            .claim_transaction(&response.transaction, key)
            .await?;
        if let PaymentIdClaim::Conflict { fingerprint } = claim {
            tracing::warn!(%key, other = %fingerprint, transaction = %response.transaction,
                "the chain's answer names a transaction claimed by another payload; a replay");
            let transaction = std::mem::take(&mut response.transaction);
            response = refusal_for(state, request, response.payer.take());
            response.transaction = transaction;
        }
    }
    let recorded = state.ledger().record_outcome(key, &response).await?;
    Ok((response, recorded))
}

/// Runs the scheme for the settlement keyed `key` and records every step:
/// `received` before the call, `submitted` + hash before each broadcast (a
/// failed write, or a lost settlement lock, aborts the broadcast), then the
/// outcome. The caller holds the settlement's lock, which `lock` watches.
pub(crate) async fn run_settlement(
    state: &AppState,
    key: &str,
    request: &FacilitatorRequest,
    id: Option<&str>,
    lock: &LockWatch,
) -> Result<SettleResponse, ApiError> {
    state.ledger().mark_received(key, request, id).await?;
    let observer = LedgerObserver::new(state.ledger().clone(), key).guarded_by(lock.clone());
    let started = Instant::now();
    let result = state
        .facilitator()
        .settle_observed(request, &observer)
        .await;
    state.metrics().settle_latency(started.elapsed());
    match result {
        Ok(response) => {
            let (response, recorded) = record_scheme_answer(state, key, request, response).await?;
            state.metrics().settle(
                recorded.as_str(),
                &reason_code(response.error_reason.as_ref()),
            );
            tracing::info!(
                fingerprint = %key,
                state = recorded.as_str(),
                transaction = %response.transaction,
                "settlement recorded"
            );
            Ok(response)
        }
        Err(error) => {
            state.metrics().settle("error", "");
            if let Err(ledger_error) = state.ledger().record_error(key, &error.to_string()).await {
                tracing::error!(%ledger_error, "could not record settlement error");
            }
            Err(facilitator_error(error))
        }
    }
}

fn unix_now() -> u64 {
    u64::try_from(now()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::request;

    fn record(delivery: Option<Delivery>) -> SettlementRecord {
        SettlementRecord {
            fingerprint: "f".into(),
            network: "eip155:1".into(),
            payment_id: None,
            state: SettlementState::Confirmed,
            transaction: Some("0x1".into()),
            response: None,
            last_error: None,
            request: Some(request()),
            attempts: 1,
            delivery,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn delivered(state: SettlementState, key: Option<&str>, id: Option<&str>) -> Delivery {
        Delivery {
            state,
            caller: key.map(str::to_owned),
            payment_id: id.map(str::to_owned),
            at: 1000,
        }
    }

    fn caller(key: Option<&str>, id: Option<&str>) -> Caller {
        Caller {
            key: key.map(str::to_owned),
            payment_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn replay_rules() {
        let window = Duration::from_secs(600);
        let anyone = caller(None, None);
        let replay =
            |delivery, caller: &Caller, now| is_replay(&record(delivery), caller, window, now);
        // Nothing delivered yet (or only a failure): anyone gets the outcome.
        assert!(!replay(None, &anyone, 1000));
        assert!(!replay(
            Some(delivered(SettlementState::Failed, Some("k"), None)),
            &anyone,
            1000
        ));
        // A delivered success: only retries.
        let success = delivered(
            SettlementState::Confirmed,
            Some("k"),
            Some("pay_0123456789abcdef"),
        );
        assert!(replay(Some(success.clone()), &anyone, 1001));
        assert!(!replay(
            Some(success.clone()),
            &caller(Some("k"), None),
            1600
        ));
        assert!(replay(
            Some(success.clone()),
            &caller(Some("k"), None),
            1601
        ));
        assert!(replay(
            Some(success.clone()),
            &caller(Some("other"), None),
            1001
        ));
        // The payer chose the id: it does not stand in for the key the
        // answer went to, for another caller or anonymously, even in time.
        for other in [None, Some("other")] {
            assert!(replay(
                Some(success.clone()),
                &caller(other, Some("pay_0123456789abcdef")),
                1001
            ));
        }
        assert!(replay(
            Some(success),
            &caller(None, Some("pay_fedcba9876543210")),
            1001
        ));
        // Delivered without a key: the same id retries, within the window.
        let by_id = delivered(
            SettlementState::Confirmed,
            None,
            Some("pay_0123456789abcdef"),
        );
        let same_id = caller(None, Some("pay_0123456789abcdef"));
        assert!(!replay(Some(by_id.clone()), &same_id, 1600));
        assert!(!replay(
            Some(by_id.clone()),
            &caller(Some("k"), Some("pay_0123456789abcdef")),
            1600
        ));
        assert!(replay(Some(by_id.clone()), &same_id, 1601));
        assert!(replay(Some(by_id), &anyone, 1001));
        // Pending: reserved for an identified caller only, for as long as
        // the outcome takes (nothing was delivered yet).
        let anonymous_pending = delivered(SettlementState::Pending, None, None);
        assert!(!replay(Some(anonymous_pending), &anyone, 1001));
        let keyed_pending = delivered(SettlementState::Pending, Some("k"), None);
        assert!(replay(Some(keyed_pending.clone()), &anyone, 1001));
        assert!(!replay(
            Some(keyed_pending.clone()),
            &caller(Some("k"), None),
            99_999
        ));
        assert!(replay(
            Some(keyed_pending),
            &caller(Some("other"), None),
            1001
        ));
        let id_pending = delivered(SettlementState::Pending, None, Some("pay_0123456789abcdef"));
        assert!(!replay(Some(id_pending.clone()), &same_id, 99_999));
        assert!(replay(Some(id_pending), &anyone, 1001));
    }

    #[test]
    fn replay_refusal_message_is_stable() {
        assert!(REPLAY_REFUSAL_MESSAGE.starts_with(REPLAY_REFUSAL_PREFIX));
        assert!(!REPLAY_REFUSAL_MESSAGE.contains("  "));
    }
}
