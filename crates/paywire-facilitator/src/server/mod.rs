//! The HTTP API: `POST /verify`, `POST /settle`, `GET /supported`,
//! `GET /discovery/resources`, `GET /discovery/search`, `GET /health`,
//! `GET /ready`, `GET /metrics`.
//!
//! A thin layer: each handler parses the request, calls the settlement
//! state machine ([`LedgeredFacilitator`]) and maps its answer to a
//! response. Every error answer is JSON `{"error": "<code>", "message":
//! "..."}`: 400 for a body that is not JSON, 409 for a reused payment
//! identifier, 413 for an oversized body, 502/503 when the chain or the
//! ledger is unavailable. A JSON body holding a malformed payment gets the
//! specification's answer shape instead (HTTP 200, `isValid: false` /
//! `success: false` with a reason), and a replayed settle a structured
//! refusal.

mod discovery;
mod middleware;
mod plugins;
mod probes;

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use paywire_bazaar::{Catalog, OriginConfirmer};
use paywire_core::extensions::BAZAAR;
use paywire_core::{ChainProbe, Facilitator, FacilitatorRequest, PluginEndpoint};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Instrument;

use crate::error::ApiError;
use crate::ledger::{Ledger, LedgerError, SettlementState};
use crate::metrics::{Metrics, PaymentKind};
use crate::ops::{
    ApiKeys, ClientKey, DEFAULT_MAX_TRACKED_KEYS, HOUSEKEEPING_INTERVAL, RateLimiter,
    run_housekeeping,
};
use crate::settlement::recovery::ReconcileReport;
use crate::settlement::{Caller, LedgeredFacilitator, payment_id};
use crate::wire::{Refusal, parse_request};

pub use middleware::{CallerKey, REQUEST_ID_HEADER};

/// Default request body limit (64 KiB).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Default of [`AppState::with_idempotent_retry_window`] (10 minutes).
pub const DEFAULT_IDEMPOTENT_RETRY_WINDOW: Duration =
    crate::settlement::DEFAULT_IDEMPOTENT_RETRY_WINDOW;

pub use crate::ops::DEFAULT_MAX_CONCURRENT_SETTLEMENTS;

/// Default of [`AppState::with_unsent_failure_retention`] (7 days).
pub const DEFAULT_UNSENT_FAILURE_RETENTION: Duration =
    crate::settlement::DEFAULT_UNSENT_FAILURE_RETENTION;

fn housekeep(per_ip: Option<&RateLimiter<ClientKey>>, per_payer: Option<&RateLimiter<String>>) {
    if let Some(limiter) = per_ip {
        limiter.housekeep();
    }
    if let Some(limiter) = per_payer {
        limiter.housekeep();
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    settlements: LedgeredFacilitator,
    metrics: Arc<Metrics>,
    probes: Arc<[Arc<dyn ChainProbe>]>,
    body_limit: usize,
    api_keys: Arc<ApiKeys>,
    per_ip: Option<Arc<RateLimiter<ClientKey>>>,
    per_payer: Option<Arc<RateLimiter<String>>>,
    reconcile_interval: Duration,
    reconcile_min_age: Duration,
    settle_slots: Arc<Semaphore>,
    catalog: Option<Arc<dyn Catalog>>,
    catalog_confirmer: Option<Arc<OriginConfirmer>>,
    endpoints: Arc<[Arc<dyn PluginEndpoint>]>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let probed: Vec<String> = self
            .probes
            .iter()
            .map(|p| p.network().to_string())
            .collect();
        f.debug_struct("AppState")
            .field("settlements", &self.settlements)
            .field("probes", &probed)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State around any facilitator (a [`paywire_core::LocalFacilitator`]
    /// with the plugins' schemes registered) and a ledger: its settlements
    /// go through a [`LedgeredFacilitator`]. Declare
    /// [`paywire_core::extensions::PAYMENT_IDENTIFIER`] on the facilitator
    /// to advertise the extension.
    pub fn new(facilitator: Arc<dyn Facilitator>, ledger: Ledger) -> Self {
        let metrics = Arc::new(Metrics::default());
        let settlements =
            LedgeredFacilitator::new(facilitator, ledger).with_metrics(Arc::clone(&metrics));
        Self {
            settlements,
            metrics,
            probes: Arc::from(Vec::new()),
            body_limit: DEFAULT_BODY_LIMIT,
            api_keys: Arc::new(ApiKeys::none()),
            per_ip: None,
            per_payer: None,
            reconcile_interval: Duration::from_secs(5),
            reconcile_min_age: Duration::from_secs(5),
            settle_slots: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT_SETTLEMENTS)),
            catalog: None,
            catalog_confirmer: None,
            endpoints: Arc::from(Vec::new()),
        }
    }

    /// Serves the plugins' HTTP endpoints ([`PluginEndpoint`]) next to the
    /// facilitator's own routes. Refuses a path that takes one of the
    /// facilitator's routes or overlaps another endpoint's.
    pub fn with_endpoints(
        mut self,
        endpoints: Vec<Arc<dyn PluginEndpoint>>,
    ) -> Result<Self, crate::config::ConfigError> {
        plugins::check_paths(&endpoints).map_err(|message| {
            crate::config::ConfigError::Invalid {
                field: "chains".into(),
                message,
            }
        })?;
        self.endpoints = Arc::from(endpoints);
        Ok(self)
    }

    /// Keeps a bazaar catalog: settled payments that carry a `bazaar`
    /// declaration are cataloged once `confirmer` has confirmed them against
    /// the resource's origin, and `GET /discovery/resources` and
    /// `GET /discovery/search` serve it. Declare [`BAZAAR`] on the
    /// facilitator to advertise it in `/supported`.
    pub fn with_catalog(mut self, catalog: Arc<dyn Catalog>, confirmer: OriginConfirmer) -> Self {
        self.catalog = Some(catalog);
        self.catalog_confirmer = Some(Arc::new(confirmer));
        self
    }

    /// Requires API keys (see [`ApiKeys`]).
    pub fn with_api_keys(mut self, keys: ApiKeys) -> Self {
        self.api_keys = Arc::new(keys);
        self
    }

    /// Rate limits per client address (IPv4 address or IPv6 /64, see
    /// [`ClientKey`]) and per authenticated payer, in requests per minute on
    /// `/verify` and `/settle`; `None` or 0 disables one. Each tracks up to
    /// [`DEFAULT_MAX_TRACKED_KEYS`] keys (see [`Self::with_rate_limiters`]).
    pub fn with_rate_limits(self, per_ip: Option<u32>, per_payer: Option<u32>) -> Self {
        fn limiter<K: Hash + Eq + Clone>(per_minute: Option<u32>) -> Option<RateLimiter<K>> {
            let per_minute = NonZeroU32::new(per_minute?)?;
            Some(RateLimiter::new(per_minute, DEFAULT_MAX_TRACKED_KEYS))
        }
        self.with_rate_limiters(limiter(per_ip), limiter(per_payer))
    }

    /// Rate limits with every setting chosen (e.g. `max_tracked_keys`);
    /// `None` disables one.
    pub fn with_rate_limiters(
        mut self,
        per_ip: Option<RateLimiter<ClientKey>>,
        per_payer: Option<RateLimiter<String>>,
    ) -> Self {
        self.per_ip = per_ip.map(Arc::new);
        self.per_payer = per_payer.map(Arc::new);
        self
    }

    /// Forgets rate-limit keys whose budget is full again (see
    /// [`RateLimiter::housekeep`]). [`crate::serve`] runs it every
    /// [`crate::ops::HOUSEKEEPING_INTERVAL`]; call it likewise when serving
    /// [`router`] yourself, or new clients end up sharing the overflow
    /// budget once the tracked keys are full.
    pub fn housekeep_rate_limits(&self) {
        self.per_ip.iter().for_each(|limiter| limiter.housekeep());
        self.per_payer
            .iter()
            .for_each(|limiter| limiter.housekeep());
    }

    /// Runs [`Self::housekeep_rate_limits`] every
    /// [`crate::ops::HOUSEKEEPING_INTERVAL`] until `stop` turns true (or its
    /// sender is gone); `None` when no rate limit is on.
    pub(crate) fn spawn_rate_limit_housekeeping(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Option<JoinHandle<()>> {
        if self.per_ip.is_none() && self.per_payer.is_none() {
            return None;
        }
        let (per_ip, per_payer) = (self.per_ip.clone(), self.per_payer.clone());
        Some(tokio::spawn(run_housekeeping(
            HOUSEKEEPING_INTERVAL,
            stop,
            move || housekeep(per_ip.as_deref(), per_payer.as_deref()),
        )))
    }

    /// The background reconciler started by [`crate::serve`] runs every
    /// `interval` (zero disables it) over `submitted`/`pending` settlements
    /// unchanged for at least `min_age`.
    pub fn with_reconciler(mut self, interval: Duration, min_age: Duration) -> Self {
        self.reconcile_interval = interval;
        self.reconcile_min_age = min_age;
        self
    }

    /// The reconciler's (interval, minimum age).
    pub fn reconciler_settings(&self) -> (Duration, Duration) {
        (self.reconcile_interval, self.reconcile_min_age)
    }

    /// How long settlements that failed before anything was sent are kept
    /// (`None`: for ever); the background reconciler deletes older ones
    /// (see [`Ledger::purge_unsent_failures`]).
    pub fn with_unsent_failure_retention(mut self, retention: Option<Duration>) -> Self {
        self.settlements = self.settlements.with_unsent_failure_retention(retention);
        self
    }

    /// At most `max` settlements run at once (at least 1); a `/settle`
    /// beyond that is answered `503 overloaded` with `Retry-After`, before
    /// anything is written to the ledger.
    pub fn with_max_concurrent_settlements(mut self, max: usize) -> Self {
        self.settle_slots = Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)));
        self
    }

    /// A settlement slot, if one is free (see
    /// [`Self::with_max_concurrent_settlements`]).
    fn settle_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.settle_slots).try_acquire_owned().ok()
    }

    /// Sets the request body limit in bytes.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// A repeated `/settle` of a `pending` settlement answers from the ledger
    /// until this long after the last attempt, then asks the scheme again
    /// (which finds the landed transaction on chain).
    pub fn with_pending_recheck_after(mut self, after: Duration) -> Self {
        self.settlements = self.settlements.with_pending_recheck_after(after);
        self
    }

    /// How long after a settlement's answer was delivered its caller may
    /// settle the same payload again and get the recorded answer: the same
    /// API key when the answer went to one, else the same payment
    /// identifier (anyone else, or later, gets a replay refusal).
    pub fn with_idempotent_retry_window(mut self, window: Duration) -> Self {
        self.settlements = self.settlements.with_retry_window(window);
        self
    }

    /// Sets the chains `/ready` checks and whose signers `/metrics` reports.
    pub fn with_probes(mut self, probes: Vec<Arc<dyn ChainProbe>>) -> Self {
        self.probes = Arc::from(probes);
        self
    }

    /// The settlement state machine the handlers call.
    pub fn settlements(&self) -> &LedgeredFacilitator {
        &self.settlements
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The settlement ledger.
    pub fn ledger(&self) -> &Ledger {
        self.settlements.ledger()
    }

    /// See [`LedgeredFacilitator::reconcile`].
    pub async fn reconcile(
        &self,
        states: &[SettlementState],
        min_age: Duration,
    ) -> Result<ReconcileReport, LedgerError> {
        self.settlements.reconcile(states, min_age).await
    }

    /// See [`LedgeredFacilitator::reconcile_all`].
    pub async fn reconcile_all(&self) -> Result<ReconcileReport, LedgerError> {
        self.settlements.reconcile_all().await
    }

    /// See [`LedgeredFacilitator::purge_unsent_failures`].
    pub async fn purge_unsent_failures(&self) -> Result<u64, LedgerError> {
        self.settlements.purge_unsent_failures().await
    }

    /// Waits until no settlement is in flight (graceful shutdown).
    pub async fn drain(&self) {
        self.settlements.drain().await;
    }
}

/// The facilitator's HTTP routes with body limit, metrics, tracing and
/// panic-to-JSON layers.
pub fn router(state: AppState) -> Router {
    let own = Router::new();
    plugins::mount(own, &state.endpoints)
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/supported", get(supported))
        .route("/health", get(health))
        .route("/ready", get(probes::ready))
        .route("/metrics", get(probes::metrics))
        .route("/discovery/resources", get(discovery::resources))
        .route("/discovery/search", get(discovery::search))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::track,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .on_failure(()),
        )
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}

async fn verify(
    State(state): State<AppState>,
    caller_key: Option<Extension<CallerKey>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = match parse_request(body) {
        Ok(request) => request,
        Err(Refusal::Http(error)) => return error.into_response(),
        Err(Refusal::Malformed(malformed)) => {
            let kind = PaymentKind::other();
            state
                .metrics
                .verify(&kind, "malformed", malformed.reason.as_str());
            return malformed.verify_answer();
        }
    };
    if let Some(limited) = middleware::check_payer(&state, &request) {
        return limited;
    }
    // A payment bound to its audience is valid only for the server it was
    // made for: another caller learns nothing from verifying it.
    let key = caller_key.map(|Extension(CallerKey(id))| id);
    if let Err(reason) = state.settlements.admit_caller(key.as_deref(), &request) {
        let kind = state.settlements.payment_kind(&request).await;
        state.metrics.verify(&kind, "refused", reason.as_str());
        return Json(paywire_core::VerifyResponse::invalid(reason, None)).into_response();
    }
    match state.settlements.verify_request(&request).await {
        Ok(response) => Json(response).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// A `/settle` that passed every check needing neither the ledger nor the
/// chain, holding one of the settlement slots.
struct Admitted {
    request: FacilitatorRequest,
    payment_id: Option<String>,
    slot: OwnedSemaphorePermit,
}

/// Reads a `/settle` body and refuses, before anything is written or
/// locked, what can be refused cheaply: a malformed body or payment
/// identifier, a payer over its rate, a payment this facilitator cannot
/// settle, or no free settlement slot.
async fn admit_settle(
    state: &AppState,
    caller: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Admitted, Response> {
    let request = match parse_request(body) {
        Ok(request) => request,
        Err(Refusal::Http(error)) => return Err(error.into_response()),
        Err(Refusal::Malformed(malformed)) => {
            let kind = PaymentKind::other();
            state
                .metrics
                .settle(&kind, "malformed", malformed.reason.as_str());
            return Err(malformed.settle_answer());
        }
    };
    let payment_id = payment_id(&request.payment_payload)
        .map_err(|error| ApiError::from(error).into_response())?;
    if let Some(limited) = middleware::check_payer(state, &request) {
        return Err(limited);
    }
    if let Err(reason) = state.settlements.admit_caller(caller, &request) {
        let kind = state.settlements.payment_kind(&request).await;
        state.metrics.settle(&kind, "refused", reason.as_str());
        let network = request.payment_requirements.network.clone();
        let refused = paywire_core::SettleResponse::failed(network, reason, None, "");
        return Err(Json(refused).into_response());
    }
    if let Some(refused) = state.settlements.precheck(&request).await {
        return Err(Json(refused).into_response());
    }
    let Some(slot) = state.settle_slot() else {
        let kind = state.settlements.payment_kind(&request).await;
        state.metrics.settle(&kind, "overloaded", "");
        return Err(middleware::overloaded());
    };
    Ok(Admitted {
        request,
        payment_id,
        slot,
    })
}

async fn settle(
    State(state): State<AppState>,
    caller_key: Option<Extension<CallerKey>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = caller_key.map(|Extension(CallerKey(id))| id);
    let Admitted {
        request,
        payment_id,
        slot,
    } = match admit_settle(&state, key.as_deref(), body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let caller = Caller { key, payment_id };
    // The settlement runs in its own task so that a client hanging up cannot
    // cancel it half-way, and it holds an in-flight guard so that a graceful
    // shutdown waits for it.
    let in_flight = state.settlements.in_flight().await;
    // Only a payment carrying a declaration, on a facilitator keeping a
    // catalog, needs its request after settlement.
    let declared = state.catalog.is_some()
        && request
            .payment_payload
            .extensions
            .as_ref()
            .is_some_and(|e| e.contains(BAZAAR));
    // The answer comes back with the settlement's lock still held. If this
    // handler is dropped first (the caller hung up), the receiver goes with
    // it, the send fails and nothing is recorded as delivered: the caller
    // was told nothing, so the next settle of the payload gets the outcome.
    let (answer_tx, answer_rx) = oneshot::channel();
    let task_state = state.clone();
    tokio::spawn(
        async move {
            let kept = declared.then(|| request.clone());
            let answer = task_state.settlements.settle_for(&request, caller).await;
            let cataloged = match (&answer.result, &kept) {
                (Ok(response), Some(request)) if response.success => {
                    discovery::catalog_payment(&task_state, request).await
                }
                _ => None,
            };
            drop((in_flight, slot));
            if answer_tx.send((answer, cataloged)).is_err() {
                tracing::info!(
                    "the caller hung up before the settle answer; not recorded as delivered"
                );
            }
        }
        .in_current_span(),
    );
    let Ok((answer, cataloged)) = answer_rx.await else {
        tracing::error!("settle task failed");
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "settlement task failed",
        )
        .into_response();
    };
    match answer.deliver().await {
        Ok(response) => discovery::settle_response(response, cataloged),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn supported(State(state): State<AppState>) -> Result<Response, ApiError> {
    let supported = state
        .settlements
        .supported()
        .await
        .map_err(crate::error::facilitator_error)?;
    Ok(Json(supported).into_response())
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}
