//! Which answer a settle may get: replays fail.
//!
//! The ledger keys settlements by the fingerprint of payload and
//! requirements and records, per fingerprint, who received an answer
//! ([`Delivery`]). Once a success was delivered, a settle of the same
//! fingerprint gets a structured refusal (`success: false`, the scheme's
//! used-nonce reason, `transaction: ""`), without calling the scheme, unless
//! it is an idempotent retry within the retry window: by the same API key
//! when the answer went to one, else by a request carrying the same
//! `payment-identifier` id (the payer chooses the id, so it never stands in
//! for a key). A `pending` answer delivered to an identified caller (API key
//! or payment identifier) reserves the final outcome for that caller's
//! retries; a `pending` answer to an anonymous caller reserves nothing, and
//! the first settle that sees the confirmation gets the success. A caller
//! that hung up was told nothing: the next settle of the payload gets the
//! outcome as the first delivery. One transaction answers success to one
//! fingerprint only ([`crate::Ledger::claim_transaction`]): the fingerprint
//! that broadcast it claims it before the broadcast, so a re-spelled payload
//! or re-worded requirements around the same on-chain payment are replays
//! too, even while the first settlement is still `pending`.

use std::time::Duration;

use paywire_core::{FacilitatorRequest, SettleResponse};

use super::LedgeredFacilitator;
use crate::ledger::{Delivery, SettlementRecord, SettlementState};
use crate::metrics::reason_code;

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
pub(super) fn is_replay(
    record: &SettlementRecord,
    caller: &Caller,
    window: Duration,
    now: u64,
) -> bool {
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

impl LedgeredFacilitator {
    /// The answer to a replay, counted: a failure naming no transaction.
    pub(super) fn replay_refusal(
        &self,
        request: &FacilitatorRequest,
        record: Option<&SettlementRecord>,
    ) -> SettleResponse {
        let payer = record
            .and_then(|r| r.response.as_ref())
            .and_then(|r| r.payer.clone())
            .or_else(|| self.inner.authenticated_payer(request));
        let refusal = self.refusal_for(request, payer);
        let kind = self.known_payment_kind(request);
        self.metrics
            .settle(&kind, "replay", &reason_code(refusal.error_reason.as_ref()));
        refusal
    }

    /// The replay refusal's answer (uncounted).
    pub(super) fn refusal_for(
        &self,
        request: &FacilitatorRequest,
        payer: Option<String>,
    ) -> SettleResponse {
        let network = request.payment_requirements.network.clone();
        let reason = self.inner.replay_reason(request);
        SettleResponse::failed(network, reason, payer, "").with_message(REPLAY_REFUSAL_MESSAGE)
    }
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
