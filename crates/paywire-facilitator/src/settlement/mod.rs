//! The settlement state machine, as a [`Facilitator`] decorator:
//! [`LedgeredFacilitator`] wraps any facilitator (a
//! [`paywire_core::LocalFacilitator`] with the plugins' schemes) and puts
//! the ledger around each settlement:
//!
//! - every step is written before the side effect it guards (`received`
//!   before the scheme runs, `submitted` + hash before each broadcast), so a
//!   crash or a retry never pays twice and never forgets a payment;
//! - replays are refused and idempotent retries answered from the ledger
//!   ([`Caller`], [`REPLAY_REFUSAL_MESSAGE`]);
//! - one on-chain transaction answers success to one payload only;
//! - settlements of one spend (the scheme's [`Facilitator::spend_key`], else
//!   the payload's fingerprint) are serialized, in this process and, through
//!   the store's lock, across processes sharing the ledger;
//! - recovery re-runs or resolves what a previous process left open
//!   ([`LedgeredFacilitator::reconcile`], [`recovery`]).
//!
//! It knows no HTTP: the service's HTTP layer ([`crate::server`]) parses,
//! calls it and maps its answers and [`SettlementError`]s to responses.

mod locks;
mod observer;
mod payment_id;
pub mod recovery;
mod replay;
mod run;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paywire_core::scheme::BoxFuture;
use paywire_core::{
    ErrorReason, Facilitator, FacilitatorError, FacilitatorRequest, SettleResponse,
    SettlementLookup, SupportedResponse, VerifyResponse, X402_VERSION,
};
use tokio::sync::{OnceCell, OwnedRwLockReadGuard, RwLock};

use crate::ledger::{Ledger, LedgerError, fingerprint};
use crate::metrics::{Metrics, PaymentKind, reason_code};
use crate::store::SettlementState;

pub use locks::SettlementGuard;
pub use payment_id::payment_id;
pub use replay::{Caller, REPLAY_REFUSAL_MESSAGE, REPLAY_REFUSAL_PREFIX};
pub use run::Answer;

use locks::KeyedLocks;

/// Default of [`LedgeredFacilitator::with_retry_window`] (10 minutes).
pub const DEFAULT_IDEMPOTENT_RETRY_WINDOW: Duration = Duration::from_secs(600);

/// Default of [`LedgeredFacilitator::with_unsent_failure_retention`] (7 days).
pub const DEFAULT_UNSENT_FAILURE_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Default of [`LedgeredFacilitator::with_pending_recheck_after`].
pub const DEFAULT_PENDING_RECHECK_AFTER: Duration = Duration::from_secs(30);

/// Why a verification or settlement got no answer in the protocol's shape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettlementError {
    /// The `payment-identifier` extension is malformed, or required without
    /// an id.
    #[error("{0}")]
    InvalidPaymentId(String),
    /// The `payment-identifier` id was bound to another payment.
    #[error("payment-identifier {0:?} was already used with a different payment")]
    PaymentIdConflict(String),
    /// The ledger could not be read or written, or the settlement's lock
    /// was not obtained in time ([`LedgerError::LockTimeout`]).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The decorated facilitator failed (chain unreachable, bad requirements).
    #[error(transparent)]
    Facilitator(#[from] FacilitatorError),
}

impl From<SettlementError> for FacilitatorError {
    fn from(error: SettlementError) -> Self {
        match error {
            SettlementError::Facilitator(error) => error,
            error @ (SettlementError::InvalidPaymentId(_)
            | SettlementError::PaymentIdConflict(_)) => Self::BadRequest(error.to_string()),
            SettlementError::Ledger(error) => {
                Self::Transport(format!("settlement ledger unavailable: {error}"))
            }
        }
    }
}

/// Now, in Unix seconds.
fn unix_now() -> u64 {
    u64::try_from(crate::store::now()).unwrap_or(0)
}

/// The (scheme, network) pairs a facilitator settles.
type SupportedKinds = Arc<HashSet<(String, String)>>;

/// A [`Facilitator`] whose settlements go through the settlement ledger
/// (see the module documentation). Cheap to clone: clones share the ledger,
/// the locks and the metrics.
#[derive(Clone)]
pub struct LedgeredFacilitator {
    inner: Arc<dyn Facilitator>,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    locks: Arc<KeyedLocks>,
    in_flight: Arc<RwLock<()>>,
    supported_kinds: Arc<OnceCell<SupportedKinds>>,
    pending_recheck_after: Duration,
    retry_window: Duration,
    unsent_failure_retention: Option<Duration>,
}

impl std::fmt::Debug for LedgeredFacilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgeredFacilitator")
            .field("ledger", &self.ledger)
            .field("retry_window", &self.retry_window)
            .finish_non_exhaustive()
    }
}

impl LedgeredFacilitator {
    /// `inner`'s settlements recorded in `ledger`, with default settings.
    pub fn new(inner: Arc<dyn Facilitator>, ledger: Ledger) -> Self {
        Self {
            inner,
            ledger,
            metrics: Arc::new(Metrics::default()),
            locks: Arc::new(KeyedLocks::default()),
            in_flight: Arc::new(RwLock::new(())),
            supported_kinds: Arc::new(OnceCell::new()),
            pending_recheck_after: DEFAULT_PENDING_RECHECK_AFTER,
            retry_window: DEFAULT_IDEMPOTENT_RETRY_WINDOW,
            unsent_failure_retention: Some(DEFAULT_UNSENT_FAILURE_RETENTION),
        }
    }

    /// Counts outcomes in `metrics` (shared with the HTTP layer).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// A repeated settle of a `pending` settlement answers from the ledger
    /// until this long after the last attempt, then asks the scheme again
    /// (which finds the landed transaction on chain).
    pub fn with_pending_recheck_after(mut self, after: Duration) -> Self {
        self.pending_recheck_after = after;
        self
    }

    /// How long after a settlement's answer was delivered its caller may
    /// settle the same payload again and get the recorded answer: the same
    /// API key when the answer went to one, else the same payment
    /// identifier (anyone else, or later, gets a replay refusal).
    pub fn with_retry_window(mut self, window: Duration) -> Self {
        self.retry_window = window;
        self
    }

    /// How long settlements that failed before anything was sent are kept
    /// (`None`: for ever); [`Self::purge_unsent_failures`] deletes older ones.
    pub fn with_unsent_failure_retention(mut self, retention: Option<Duration>) -> Self {
        self.unsent_failure_retention = retention;
        self
    }

    /// The settlement ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The metrics registry outcomes are counted in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The decorated facilitator.
    pub fn inner(&self) -> &Arc<dyn Facilitator> {
        &self.inner
    }

    /// The retention of unsent failures (see
    /// [`Self::with_unsent_failure_retention`]).
    pub fn unsent_failure_retention(&self) -> Option<Duration> {
        self.unsent_failure_retention
    }

    /// Marks a settlement in flight until the guard drops; [`Self::drain`]
    /// waits for all of them.
    pub async fn in_flight(&self) -> OwnedRwLockReadGuard<()> {
        Arc::clone(&self.in_flight).read_owned().await
    }

    /// Waits until no settlement is in flight (graceful shutdown).
    pub async fn drain(&self) {
        let _all = self.in_flight.write().await;
    }

    /// What settlements of `request` are serialized on: the scheme's spend
    /// key (two spellings of one authorization share it), else the
    /// payload's fingerprint.
    pub fn lock_key(&self, request: &FacilitatorRequest) -> String {
        self.inner.spend_key(request).unwrap_or_else(|| {
            fingerprint(
                &request.payment_payload.payload,
                &request.payment_requirements,
            )
        })
    }

    /// Takes the lock of the settlements keyed `key` ([`Self::lock_key`]):
    /// the process-local one, then the store's (which, for a store shared by
    /// several processes, excludes them too).
    pub async fn lock_settlement(&self, key: &str) -> Result<SettlementGuard, LedgerError> {
        let mut guard = self.locks.lock(key).await;
        guard.hold_store_lock(self.ledger.lock(key).await?);
        Ok(guard)
    }

    /// The (scheme, network) pairs the facilitator settles, read once from
    /// its `/supported`; `None` while it cannot say (its `supported` failed,
    /// or lists no kind at all, as a test double or a proxy may).
    async fn supported_kinds(&self) -> Option<SupportedKinds> {
        let kinds = self
            .supported_kinds
            .get_or_try_init(|| async {
                let supported = self.inner.supported().await?;
                let kinds = supported
                    .kinds
                    .into_iter()
                    .filter(|kind| kind.x402_version == X402_VERSION)
                    .map(|kind| (kind.scheme, kind.network))
                    .collect::<HashSet<_>>();
                Ok::<_, FacilitatorError>(Arc::new(kinds))
            })
            .await;
        kinds.ok().filter(|kinds| !kinds.is_empty()).cloned()
    }

    /// The `network` and `scheme` labels of `request` in metrics: its
    /// requirements' (network, scheme) when the facilitator settles that
    /// pair, else [`PaymentKind::other`] for both, so that a payload (which
    /// the caller writes) never picks a label value.
    pub async fn payment_kind(&self, request: &FacilitatorRequest) -> PaymentKind {
        // Reads `/supported` once; later calls find it cached.
        let _ = self.supported_kinds().await;
        self.known_payment_kind(request)
    }

    /// [`Self::payment_kind`] from what is known of `/supported` now
    /// (nothing yet: [`PaymentKind::other`]).
    fn known_payment_kind(&self, request: &FacilitatorRequest) -> PaymentKind {
        let required = &request.payment_requirements;
        let pair = (required.scheme.clone(), required.network.to_string());
        match self.supported_kinds.get() {
            Some(kinds) if kinds.contains(&pair) => PaymentKind::supported(pair.1, pair.0),
            _ => PaymentKind::other(),
        }
    }

    /// Verifies `request`: a payment identifier bound to another payment is
    /// a conflict; anything else is the decorated facilitator's answer.
    pub async fn verify_request(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<VerifyResponse, SettlementError> {
        if let Some(id) = payment_id(&request.payment_payload)? {
            let key = fingerprint(
                &request.payment_payload.payload,
                &request.payment_requirements,
            );
            if let Some(bound) = self.ledger.payment_id_binding(&id).await?
                && bound != key
                && !self.settled_same_payment(&bound, request).await?
            {
                let kind = self.payment_kind(request).await;
                self.metrics
                    .verify(&kind, "conflict", "payment_identifier_conflict");
                return Err(SettlementError::PaymentIdConflict(id));
            }
        }
        if let Some(refusal) = self.spent_authorization(request).await? {
            let kind = self.payment_kind(request).await;
            let reason = reason_code(refusal.invalid_reason.as_ref());
            self.metrics.verify(&kind, "invalid", &reason);
            return Ok(refusal);
        }
        let kind = self.payment_kind(request).await;
        let started = Instant::now();
        let result = self.inner.verify(request).await;
        self.metrics.verify_latency(&kind, started.elapsed());
        match result {
            Ok(response) => {
                let outcome = if response.is_valid {
                    "valid"
                } else {
                    "invalid"
                };
                let reason = reason_code(response.invalid_reason.as_ref());
                self.metrics.verify(&kind, outcome, &reason);
                tracing::debug!(outcome, payer = ?response.payer, "verified");
                Ok(response)
            }
            Err(error) => {
                self.metrics.verify(&kind, "error", "");
                Err(error.into())
            }
        }
    }

    /// The refusal of an authorization (the scheme's spend key) whose
    /// settlement already succeeded, for this payload or another spelling
    /// of it: it can never pay again, even where the chain does not show it
    /// (a usage-based charge of zero sends no transaction, so the signed
    /// authorization still looks unused on chain). `None`: not settled here.
    async fn spent_authorization(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<Option<VerifyResponse>, SettlementError> {
        let Some(spend) = run::spend_binding(self.inner.spend_key(request)) else {
            return Ok(None);
        };
        let Some(bound) = self.ledger.payment_id_binding(&spend).await? else {
            return Ok(None);
        };
        let settled = self.ledger.get(&bound).await?;
        if !settled.is_some_and(|record| record.state == SettlementState::Confirmed) {
            return Ok(None);
        }
        let reason = self.inner.replay_reason(request);
        let payer = self.inner.authenticated_payer(request);
        Ok(Some(
            VerifyResponse::invalid(reason, payer).with_message(REPLAY_REFUSAL_MESSAGE),
        ))
    }

    /// Whether the settlement keyed `bound` settled the very payment of
    /// `request` (same signed payload, same `accepted`) for other
    /// requirements: a usage-based payment is verified at its maximum and
    /// settled for its charge, so the resource server's retry verifies a
    /// payment whose identifier is bound to the settlement of its charge.
    async fn settled_same_payment(
        &self,
        bound: &str,
        request: &FacilitatorRequest,
    ) -> Result<bool, SettlementError> {
        let record = self.ledger.get(bound).await?;
        let earlier = record.as_ref().and_then(|record| record.request.as_ref());
        Ok(earlier.is_some_and(|earlier| {
            earlier.payment_payload.payload == request.payment_payload.payload
                && earlier.payment_payload.accepted == request.payment_payload.accepted
        }))
    }

    /// Whether the HTTP caller (its API key id) may settle `request`
    /// ([`Facilitator::admit_caller`]); checked before anything is recorded.
    pub fn admit_caller(
        &self,
        caller: Option<&str>,
        request: &FacilitatorRequest,
    ) -> Result<(), ErrorReason> {
        self.inner.admit_caller(caller, request)
    }

    /// The refusal of a settlement that needs neither the ledger nor the
    /// chain: a payload that disagrees with the requirements on version,
    /// scheme or network, or a (scheme, network) this facilitator does not
    /// settle. Such a request leaves nothing in the ledger. `None`: go on
    /// and settle.
    pub async fn precheck(&self, request: &FacilitatorRequest) -> Option<SettleResponse> {
        let (reason, message) = self.mismatch(request).await?;
        let kind = self.payment_kind(request).await;
        self.metrics
            .settle(&kind, "refused", &reason_code(Some(&reason)));
        let payer = self.inner.authenticated_payer(request);
        let network = request.payment_requirements.network.clone();
        Some(SettleResponse::failed(network, reason, payer, "").with_message(message))
    }

    /// Why [`Self::precheck`] refuses `request`, if it does.
    async fn mismatch(&self, request: &FacilitatorRequest) -> Option<(ErrorReason, String)> {
        let (payload, required) = (&request.payment_payload, &request.payment_requirements);
        if payload.x402_version != X402_VERSION {
            let found = payload.x402_version;
            let message =
                format!("payload x402Version {found} is not supported; expected {X402_VERSION}");
            return Some((ErrorReason::INVALID_X402_VERSION, message));
        }
        if payload.accepted.scheme != required.scheme {
            let message = format!(
                "payload scheme {:?} differs from required {:?}",
                payload.accepted.scheme, required.scheme
            );
            return Some((ErrorReason::INVALID_SCHEME, message));
        }
        if payload.accepted.network != required.network {
            let message = format!(
                "payload network {} differs from required {}",
                payload.accepted.network, required.network
            );
            return Some((ErrorReason::INVALID_NETWORK, message));
        }
        let kinds = self.supported_kinds().await?;
        if kinds.contains(&(required.scheme.clone(), required.network.to_string())) {
            return None;
        }
        let message = format!(
            "scheme {:?} on {} is not supported here",
            required.scheme, required.network
        );
        Some((ErrorReason::UNSUPPORTED_SCHEME, message))
    }

    /// Settles `request` for `caller` and records its delivery: the whole
    /// state machine for an in-process caller, which cannot hang up half-way
    /// (the HTTP layer runs [`Self::settle_for`] in a task and delivers only
    /// what reached the caller).
    pub async fn settle_as(
        &self,
        request: &FacilitatorRequest,
        caller: Caller,
    ) -> Result<SettleResponse, SettlementError> {
        if let Some(refused) = self.precheck(request).await {
            return Ok(refused);
        }
        let _in_flight = self.in_flight().await;
        self.settle_for(request, caller).await.deliver().await
    }
}

impl Facilitator for LedgeredFacilitator {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move { Ok(self.verify_request(request).await?) })
    }

    /// Settles for an anonymous caller (its payment identifier, if any,
    /// names its retries).
    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            let caller = Caller {
                key: None,
                payment_id: payment_id(&request.payment_payload)?,
            };
            Ok(self.settle_as(request, caller).await?)
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        self.inner.supported()
    }

    fn authenticated_payer(&self, request: &FacilitatorRequest) -> Option<String> {
        self.inner.authenticated_payer(request)
    }

    fn spend_key(&self, request: &FacilitatorRequest) -> Option<String> {
        self.inner.spend_key(request)
    }

    fn replay_reason(&self, request: &FacilitatorRequest) -> ErrorReason {
        self.inner.replay_reason(request)
    }

    fn admit_caller(
        &self,
        caller: Option<&str>,
        request: &FacilitatorRequest,
    ) -> Result<(), ErrorReason> {
        self.inner.admit_caller(caller, request)
    }

    fn lookup_settlement<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
        known_transaction: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SettlementLookup>, FacilitatorError>> {
        self.inner.lookup_settlement(request, known_transaction)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use paywire_core::{NoObserver, SettlementObserver};

    use super::*;
    use crate::ledger::tests::request;

    /// A scheme whose every payload spends the same thing, and which notes
    /// whether two of its settlements ever ran at once.
    #[derive(Default)]
    struct OneSpend {
        running: AtomicUsize,
        overlapped: AtomicBool,
    }

    impl Facilitator for OneSpend {
        fn verify<'a>(
            &'a self,
            _request: &'a FacilitatorRequest,
        ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
            Box::pin(async { Ok(VerifyResponse::valid("0xpayer")) })
        }

        fn settle<'a>(
            &'a self,
            request: &'a FacilitatorRequest,
        ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
            self.settle_observed(request, &NoObserver)
        }

        fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
            Box::pin(async { Ok(SupportedResponse::default()) })
        }

        fn settle_observed<'a>(
            &'a self,
            request: &'a FacilitatorRequest,
            _observer: &'a dyn SettlementObserver,
        ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
            Box::pin(async move {
                if self.running.fetch_add(1, Ordering::SeqCst) > 0 {
                    self.overlapped.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                let network = request.payment_requirements.network.clone();
                Ok(SettleResponse::failed(
                    network,
                    ErrorReason::INSUFFICIENT_FUNDS,
                    None,
                    "",
                ))
            })
        }

        fn spend_key(&self, _request: &FacilitatorRequest) -> Option<String> {
            Some("toy:one-spend".into())
        }
    }

    /// Two spellings of one spend (different fingerprints, one spend key)
    /// settle one after the other in a process, even on a store without a
    /// lock of its own.
    #[tokio::test]
    async fn settlements_of_one_spend_are_serialized_whatever_their_spelling()
    -> Result<(), LedgerError> {
        let scheme = Arc::new(OneSpend::default());
        let inner: Arc<dyn Facilitator> = scheme.clone();
        let settlements = LedgeredFacilitator::new(inner, Ledger::in_memory().await?);
        let first = request();
        let mut second = request();
        second
            .payment_payload
            .payload
            .insert("signature".into(), "0x0001".into());
        assert_ne!(
            fingerprint(&first.payment_payload.payload, &first.payment_requirements),
            fingerprint(
                &second.payment_payload.payload,
                &second.payment_requirements
            ),
        );
        assert_eq!(settlements.lock_key(&second), "toy:one-spend");
        let (a, b) = tokio::join!(settlements.settle(&first), settlements.settle(&second));
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
        assert!(!scheme.overlapped.load(Ordering::SeqCst));
        Ok(())
    }

    /// A usage-based toy: one authorization (one spend key) settles any
    /// amount up to the signed one; zero moves nothing (no transaction).
    #[derive(Default)]
    struct Metered {
        runs: AtomicUsize,
    }

    impl Facilitator for Metered {
        fn verify<'a>(
            &'a self,
            _request: &'a FacilitatorRequest,
        ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
            Box::pin(async { Ok(VerifyResponse::valid("0xpayer")) })
        }

        fn settle<'a>(
            &'a self,
            request: &'a FacilitatorRequest,
        ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            let required = &request.payment_requirements;
            let transaction = if required.amount.is_zero() {
                String::new()
            } else {
                format!("0xtx{run}")
            };
            let mut answer = SettleResponse::settled(required.network.clone(), transaction, None);
            answer.amount = Some(required.amount);
            Box::pin(async move { Ok(answer) })
        }

        fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
            Box::pin(async {
                Ok(serde_json::from_value(serde_json::json!({
                    "kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:1"}]
                }))
                .unwrap_or_default())
            })
        }

        fn spend_key(&self, _request: &FacilitatorRequest) -> Option<String> {
            Some("toy:authorization-1".into())
        }
    }

    fn charging(amount: u64) -> FacilitatorRequest {
        let mut request = request();
        request.payment_requirements.amount = amount.into();
        request
    }

    /// Settling one authorization again with another amount (a usage-based
    /// charge asked twice) is refused without reaching the scheme; the same
    /// amount again is the idempotent retry.
    #[tokio::test]
    async fn an_authorization_settled_for_one_amount_is_refused_for_another()
    -> Result<(), SettlementError> {
        for first in [0u64, 1] {
            let scheme = Arc::new(Metered::default());
            let inner: Arc<dyn Facilitator> = scheme.clone();
            let settlements = LedgeredFacilitator::new(inner, Ledger::in_memory().await?);
            let retry_id = Caller {
                key: Some("seller".into()),
                payment_id: None,
            };
            let settled = settlements
                .settle_as(&charging(first), retry_id.clone())
                .await?;
            assert!(settled.success);
            assert_eq!(settled.amount, Some(first.into()));
            let again = settlements
                .settle_as(&charging(first), retry_id.clone())
                .await?;
            assert_eq!(again, settled, "the same amount: the recorded answer");
            for other in [0u64, 1, 7] {
                if other == first {
                    continue;
                }
                let refused = settlements
                    .settle_as(&charging(other), retry_id.clone())
                    .await?;
                assert!(!refused.success, "{first} then {other}");
                assert!(refused.transaction.is_empty());
                assert_eq!(
                    refused.error_message.as_deref(),
                    Some(REPLAY_REFUSAL_MESSAGE)
                );
            }
            assert_eq!(scheme.runs.load(Ordering::SeqCst), 1, "one charge only");
        }
        Ok(())
    }

    /// The settled volume counts what the answer says was charged.
    #[tokio::test]
    async fn settled_volume_counts_the_charged_amount() -> Result<(), SettlementError> {
        let inner: Arc<dyn Facilitator> = Arc::new(Metered::default());
        let settlements = LedgeredFacilitator::new(inner, Ledger::in_memory().await?);
        settlements
            .settle_as(&charging(42), Caller::default())
            .await?;
        let text = settlements.metrics().render(crate::metrics::Format::Text);
        let line = text
            .lines()
            .find(|line| line.starts_with("paywire_settled_amount_total{"))
            .unwrap_or_default();
        assert!(line.contains("network=\"eip155:1\""), "{text}");
        assert!(line.ends_with(" 42"), "{line}");
        Ok(())
    }

    /// A usage-based payment carrying a payment identifier: verified at its
    /// maximum again (the resource server's retry) after it settled for
    /// less, the identifier is no conflict (the answer is the replay
    /// refusal a spent authorization gets, which a resuming server handles
    /// like a used nonce); another payment with the same identifier still
    /// is a conflict.
    #[tokio::test]
    async fn a_payment_settled_for_less_verifies_again_under_its_identifier()
    -> Result<(), SettlementError> {
        let inner: Arc<dyn Facilitator> = Arc::new(Metered::default());
        let settlements = LedgeredFacilitator::new(inner, Ledger::in_memory().await?);
        let identified = |amount: u64, signature: &str| {
            let mut request = request();
            request.payment_payload.accepted.amount = 10u64.into();
            request.payment_requirements.amount = amount.into();
            request
                .payment_payload
                .payload
                .insert("signature".into(), signature.into());
            request.payment_payload.extensions = serde_json::from_value(serde_json::json!({
                "payment-identifier": {"info": {"required": false, "id": "pay_0123456789abcdef"}}
            }))
            .ok();
            request
        };
        let settled = settlements
            .settle(&identified(4, "0x01"))
            .await
            .map_err(SettlementError::Facilitator)?;
        assert_eq!(settled.amount, Some(4u64.into()));
        let again = settlements.verify_request(&identified(10, "0x01")).await?;
        assert!(!again.is_valid);
        assert_eq!(
            again.invalid_message.as_deref(),
            Some(REPLAY_REFUSAL_MESSAGE)
        );
        let other = settlements.verify_request(&identified(10, "0x02")).await;
        assert!(
            matches!(other, Err(SettlementError::PaymentIdConflict(_))),
            "{other:?}"
        );
        Ok(())
    }

    /// An authorization charged zero (no transaction: the chain still shows
    /// it unused) no longer verifies, whatever amount or spelling asks; an
    /// authorization whose settlement failed still does.
    #[tokio::test]
    async fn an_authorization_charged_zero_no_longer_verifies() -> Result<(), SettlementError> {
        let inner: Arc<dyn Facilitator> = Arc::new(Metered::default());
        let settlements = LedgeredFacilitator::new(inner, Ledger::in_memory().await?);
        assert!(settlements.verify_request(&charging(10)).await?.is_valid);
        let settled = settlements
            .settle_as(&charging(0), Caller::default())
            .await?;
        assert!(settled.success && settled.transaction.is_empty());
        for amount in [0u64, 10] {
            let again = settlements.verify_request(&charging(amount)).await?;
            assert!(!again.is_valid, "{amount}");
            assert_eq!(
                again.invalid_message.as_deref(),
                Some(REPLAY_REFUSAL_MESSAGE)
            );
        }
        Ok(())
    }
}
