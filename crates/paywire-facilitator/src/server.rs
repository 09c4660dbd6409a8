//! The HTTP API: `POST /verify`, `POST /settle`, `GET /supported`,
//! `GET /discovery/resources`, `GET /discovery/search`, `GET /health`,
//! `GET /ready`, `GET /metrics`.
//!
//! Every error answer is JSON `{"error": "<code>", "message": "..."}`: 400
//! for a body that is not JSON, 409 for a reused payment identifier, 413 for
//! an oversized body, 502/503 when the chain or the ledger is unavailable. A
//! JSON body holding a malformed payment gets the specification's answer
//! shape instead (HTTP 200, `isValid: false` / `success: false` with a
//! reason), and a replayed settle a structured refusal.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Extension, MatchedPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use paywire_bazaar::{
    Catalog, CatalogStatus, DiscoveredResource, OriginConfirmer, ResourceFilter, Unconfirmed,
};
use paywire_core::extensions::{BAZAAR, PAYMENT_IDENTIFIER};
use paywire_core::{
    ChainId, Facilitator, FacilitatorError, FacilitatorRequest, PaymentPayload, SchemeError,
};
use paywire_evm::rpc::RpcClient;
use serde_json::{Value, json};
use tokio::sync::{
    Mutex as AsyncMutex, OnceCell, OwnedMutexGuard, OwnedRwLockReadGuard, OwnedSemaphorePermit,
    RwLock as AsyncRwLock, Semaphore, oneshot,
};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Instrument;

use crate::error::ApiError;
use crate::ledger::{Ledger, LedgerError, LockWatch, StoreLock, fingerprint};
use crate::metrics::Metrics;
use crate::ops::{ApiKeys, AuthFailure, Endpoint, RateLimiter};
use crate::settlement::{Caller, precheck, settle_once};
use crate::wire::{Refusal, parse_request};

/// Default request body limit (64 KiB).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// How long a `/ready` probe may take per chain.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default of [`AppState::with_idempotent_retry_window`] (10 minutes).
pub const DEFAULT_IDEMPOTENT_RETRY_WINDOW: Duration = Duration::from_secs(600);

/// Default of [`AppState::with_max_concurrent_settlements`].
pub const DEFAULT_MAX_CONCURRENT_SETTLEMENTS: usize = 64;

/// Default of [`AppState::with_unsent_failure_retention`] (7 days).
pub const DEFAULT_UNSENT_FAILURE_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The id of the API key a request presented, set by the API-key guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerKey(pub String);

/// A readiness check of one chain: its RPC must answer `eth_chainId` with
/// `chain_id`.
#[derive(Clone, Debug)]
pub struct ChainProbe {
    /// CAIP-2 network (for the report).
    pub network: ChainId,
    /// The chain id the RPC must report.
    pub chain_id: u64,
    /// The chain's RPC client.
    pub rpc: Arc<RpcClient>,
    /// Settlement signers, whose gas balances `/metrics` reports.
    pub signers: Vec<alloy_primitives::Address>,
}

/// The (scheme, network) pairs a facilitator settles.
pub(crate) type SupportedKinds = Arc<HashSet<(String, String)>>;

/// One lock per settlement fingerprint, dropped from the map when unused.
#[derive(Default)]
struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Holds one settlement's lock (see [`AppState::lock_settlement`]).
pub struct KeyedGuard {
    locks: Arc<KeyedLocks>,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
    store: Option<StoreLock>,
}

impl KeyedGuard {
    /// Tells whether the store lock is still held, for the ledger observer
    /// (a settlement whose lock was lost must not broadcast).
    pub(crate) fn watch(&self) -> LockWatch {
        self.store
            .as_ref()
            .map(StoreLock::watch)
            .unwrap_or_default()
    }
}

impl KeyedLocks {
    async fn lock(self: &Arc<Self>, key: &str) -> KeyedGuard {
        let mutex = {
            let mut map = match self.locks.lock() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            Arc::clone(map.entry(key.to_owned()).or_default())
        };
        let guard = mutex.lock_owned().await;
        KeyedGuard {
            locks: Arc::clone(self),
            key: key.to_owned(),
            guard: Some(guard),
            store: None,
        }
    }
}

impl Drop for KeyedGuard {
    fn drop(&mut self) {
        // The store lock (other processes) first, then the local one.
        drop(self.store.take());
        drop(self.guard.take());
        let mut map = match self.locks.locks.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map
            .get(&self.key)
            .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    facilitator: Arc<dyn Facilitator>,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    locks: Arc<KeyedLocks>,
    probes: Arc<[ChainProbe]>,
    body_limit: usize,
    pending_recheck_after: Duration,
    retry_window: Duration,
    in_flight: Arc<AsyncRwLock<()>>,
    api_keys: Arc<ApiKeys>,
    per_ip: Option<Arc<RateLimiter>>,
    per_payer: Option<Arc<RateLimiter>>,
    reconcile_interval: Duration,
    reconcile_min_age: Duration,
    unsent_failure_retention: Option<Duration>,
    settle_slots: Arc<Semaphore>,
    supported_kinds: Arc<OnceCell<SupportedKinds>>,
    catalog: Option<Arc<dyn Catalog>>,
    catalog_confirmer: Option<Arc<OriginConfirmer>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("probes", &self.probes)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State around any facilitator (a [`paywire_core::LocalFacilitator`] with
    /// scheme plugins registered) and a ledger. Declare
    /// [`PAYMENT_IDENTIFIER`] on the facilitator to advertise the extension.
    pub fn new(facilitator: Arc<dyn Facilitator>, ledger: Ledger) -> Self {
        Self {
            facilitator,
            ledger,
            metrics: Arc::new(Metrics::default()),
            locks: Arc::new(KeyedLocks::default()),
            probes: Arc::from(Vec::new()),
            body_limit: DEFAULT_BODY_LIMIT,
            pending_recheck_after: Duration::from_secs(30),
            retry_window: DEFAULT_IDEMPOTENT_RETRY_WINDOW,
            in_flight: Arc::new(AsyncRwLock::new(())),
            api_keys: Arc::new(ApiKeys::none()),
            per_ip: None,
            per_payer: None,
            reconcile_interval: Duration::from_secs(5),
            reconcile_min_age: Duration::from_secs(5),
            unsent_failure_retention: Some(DEFAULT_UNSENT_FAILURE_RETENTION),
            settle_slots: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT_SETTLEMENTS)),
            supported_kinds: Arc::new(OnceCell::new()),
            catalog: None,
            catalog_confirmer: None,
        }
    }

    /// Keeps a bazaar catalog: settled payments that carry a `bazaar`
    /// declaration are cataloged once `confirmer` has confirmed them against
    /// the resource's origin, and `GET /discovery/resources` and
    /// `GET /discovery/search` serve it. Declare [`paywire_core::extensions::BAZAAR`]
    /// on the facilitator to advertise it in `/supported`.
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

    /// Rate limits per client IP and per (claimed) payer, in requests per
    /// minute on `/verify` and `/settle`; `None` or 0 disables one.
    pub fn with_rate_limits(mut self, per_ip: Option<u32>, per_payer: Option<u32>) -> Self {
        let limiter = |n: Option<u32>| n.filter(|&n| n > 0).map(|n| Arc::new(RateLimiter::new(n)));
        self.per_ip = limiter(per_ip);
        self.per_payer = limiter(per_payer);
        self
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
        self.unsent_failure_retention = retention;
        self
    }

    pub(crate) fn unsent_failure_retention(&self) -> Option<Duration> {
        self.unsent_failure_retention
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
    pub(crate) fn settle_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.settle_slots).try_acquire_owned().ok()
    }

    /// The (scheme, network) pairs the facilitator settles, read once from
    /// its `/supported`; `None` while it cannot say (its `supported` failed,
    /// or lists no kind at all, as a test double or a proxy may).
    pub(crate) async fn supported_kinds(&self) -> Option<SupportedKinds> {
        let kinds = self
            .supported_kinds
            .get_or_try_init(|| async {
                let supported = self.facilitator.supported().await?;
                let kinds = supported
                    .kinds
                    .into_iter()
                    .filter(|kind| kind.x402_version == paywire_core::X402_VERSION)
                    .map(|kind| (kind.scheme, kind.network))
                    .collect::<HashSet<_>>();
                Ok::<_, FacilitatorError>(Arc::new(kinds))
            })
            .await;
        kinds.ok().filter(|kinds| !kinds.is_empty()).cloned()
    }

    /// Takes the lock of the settlement keyed `fingerprint`: the
    /// process-local one, then the store's (which, for a store shared by
    /// several processes, excludes them too).
    pub async fn lock_settlement(&self, fingerprint: &str) -> Result<KeyedGuard, LedgerError> {
        let mut guard = self.locks.lock(fingerprint).await;
        guard.store = Some(self.ledger.lock(fingerprint).await?);
        Ok(guard)
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

    /// Sets the request body limit in bytes.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// A repeated `/settle` of a `pending` settlement answers from the ledger
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
    pub fn with_idempotent_retry_window(mut self, window: Duration) -> Self {
        self.retry_window = window;
        self
    }

    pub(crate) fn retry_window(&self) -> Duration {
        self.retry_window
    }

    pub(crate) fn pending_recheck_after(&self) -> Duration {
        self.pending_recheck_after
    }

    /// The facilitator settlements are run with.
    pub(crate) fn facilitator(&self) -> &Arc<dyn Facilitator> {
        &self.facilitator
    }

    /// Sets the chains `/ready` checks.
    pub fn with_probes(mut self, probes: Vec<ChainProbe>) -> Self {
        self.probes = Arc::from(probes);
        self
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The settlement ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

/// The facilitator's HTTP routes with body limit, metrics, tracing and
/// panic-to-JSON layers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/supported", get(supported))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/discovery/resources", get(discovery_resources))
        .route("/discovery/search", get(discovery_search))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .on_failure(()),
        )
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Header carrying the request id (taken from the request when the client
/// or a proxy set one, else generated).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn new_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        nanos ^ std::process::id().rotate_left(16)
    });
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:08x}-{n:06}")
}

/// Gives every request an id, a tracing span carrying it, and echoes it in
/// the response's `x-request-id`.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(new_request_id, str::to_owned);
    let header = HeaderValue::from_str(&id).ok();
    if let Some(value) = &header {
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER, value.clone());
    }
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = next.run(request).instrument(span).await;
    if let Some(value) = header {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// API keys and the per-IP rate limit, before the body is read. A request
/// presenting a configured key carries its id ([`CallerKey`]) onwards.
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(endpoint) = Endpoint::of_path(request.uri().path()) else {
        return next.run(request).await;
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.api_keys.check(endpoint, authorization) {
        Ok(()) => {}
        Err(AuthFailure::Unauthorized) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required: Authorization: Bearer <key>",
            )
            .into_response();
        }
        Err(AuthFailure::Forbidden) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this API key may not call /{}", endpoint.as_str()),
            )
            .into_response();
        }
    }
    if let Some(id) = state.api_keys.identify(authorization) {
        let id = CallerKey(id.to_owned());
        request.extensions_mut().insert(id);
    }
    if endpoint != Endpoint::Supported
        && let Some(limiter) = &state.per_ip
        && let Some(ConnectInfo(address)) = request.extensions().get::<ConnectInfo<SocketAddr>>()
        && let Err(wait) = limiter.check(&address.ip().to_string())
    {
        state.metrics.rate_limited("ip");
        return rate_limited("too many requests from this address", wait);
    }
    next.run(request).await
}

fn rate_limited(message: &str, wait: Duration) -> Response {
    let mut response =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// `503 overloaded`: every settlement slot is taken.
fn overloaded() -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "too many settlements in progress; retry shortly",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The per-payer rate limit (on the payer the payload claims): `Some`
/// answer when over it.
fn check_payer(state: &AppState, request: &FacilitatorRequest) -> Option<Response> {
    if let Some(limiter) = &state.per_payer
        && let Some(payer) = state.facilitator.authenticated_payer(request)
        && let Err(wait) = limiter.check(&payer)
    {
        state.metrics.rate_limited("payer");
        return Some(rate_limited("too many requests for this payer", wait));
    }
    None
}

async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.request(&route, response.status().as_u16());
    response
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
    .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

/// The `payment-identifier` id of a payload: `None` when absent, 400 when
/// malformed or when the extension says `required: true` but has no id.
pub fn payment_id(payload: &PaymentPayload) -> Result<Option<String>, ApiError> {
    let Some(info) = payload
        .extensions
        .as_ref()
        .and_then(|e| e.info(PAYMENT_IDENTIFIER))
    else {
        return Ok(None);
    };
    let bad = |message: String| ApiError::bad_request("invalid_payment_identifier", message);
    match info.get("id") {
        None | Some(Value::Null) => {
            if info.get("required") == Some(&Value::Bool(true)) {
                Err(bad(
                    "payment-identifier is required but no id was sent".into()
                ))
            } else {
                Ok(None)
            }
        }
        Some(Value::String(id)) => {
            let valid_chars = id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !(16..=128).contains(&id.len()) || !valid_chars {
                return Err(bad(format!(
                    "payment-identifier id must be 16-128 characters of [A-Za-z0-9_-]; got {} characters",
                    id.chars().count()
                )));
            }
            Ok(Some(id.clone()))
        }
        Some(_) => Err(bad("payment-identifier id must be a string".into())),
    }
}

pub(crate) fn facilitator_error(error: FacilitatorError) -> ApiError {
    match error {
        FacilitatorError::BadRequest(message) => ApiError::bad_request("bad_request", message),
        FacilitatorError::Scheme(
            error @ (SchemeError::InvalidRequirements(_) | SchemeError::Unsupported(_)),
        ) => ApiError::bad_request("invalid_payment_requirements", error.to_string()),
        FacilitatorError::Scheme(error) => {
            tracing::warn!(%error, "scheme failure");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "chain_unavailable",
                error.to_string(),
            )
        }
        other => {
            tracing::warn!(error = %other, "upstream failure");
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", other.to_string())
        }
    }
}

pub(crate) fn conflict(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "payment_identifier_conflict",
        format!("payment-identifier {id:?} was already used with a different payment"),
    )
}

pub(crate) fn reason_code(reason: Option<&paywire_core::ErrorReason>) -> String {
    reason
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn verify(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let request = match parse_request(body) {
        Ok(request) => request,
        Err(Refusal::Http(error)) => return error.into_response(),
        Err(Refusal::Malformed(malformed)) => {
            state.metrics.verify("malformed", malformed.reason.as_str());
            return malformed.verify_answer();
        }
    };
    if let Some(limited) = check_payer(&state, &request) {
        return limited;
    }
    match verify_parsed(state, request).await {
        Ok(response) => Json(response).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn verify_parsed(
    state: AppState,
    request: FacilitatorRequest,
) -> Result<paywire_core::VerifyResponse, ApiError> {
    if let Some(id) = payment_id(&request.payment_payload)? {
        let key = fingerprint(
            &request.payment_payload.payload,
            &request.payment_requirements,
        );
        if let Some(bound) = state.ledger.payment_id_binding(&id).await?
            && bound != key
        {
            state
                .metrics
                .verify("conflict", "payment_identifier_conflict");
            return Err(conflict(&id));
        }
    }
    match state.facilitator.verify(&request).await {
        Ok(response) => {
            let outcome = if response.is_valid {
                "valid"
            } else {
                "invalid"
            };
            state
                .metrics
                .verify(outcome, &reason_code(response.invalid_reason.as_ref()));
            tracing::debug!(outcome, payer = ?response.payer, "verified");
            Ok(response)
        }
        Err(error) => {
            state.metrics.verify("error", "");
            Err(facilitator_error(error))
        }
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
    body: Result<Bytes, BytesRejection>,
) -> Result<Admitted, Response> {
    let request = match parse_request(body) {
        Ok(request) => request,
        Err(Refusal::Http(error)) => return Err(error.into_response()),
        Err(Refusal::Malformed(malformed)) => {
            state.metrics.settle("malformed", malformed.reason.as_str());
            return Err(malformed.settle_answer());
        }
    };
    let payment_id = payment_id(&request.payment_payload).map_err(IntoResponse::into_response)?;
    if let Some(limited) = check_payer(state, &request) {
        return Err(limited);
    }
    if let Some(refused) = precheck(state, &request).await {
        return Err(Json(refused).into_response());
    }
    let Some(slot) = state.settle_slot() else {
        state.metrics.settle("overloaded", "");
        return Err(overloaded());
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
    let Admitted {
        request,
        payment_id,
        slot,
    } = match admit_settle(&state, body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let caller = Caller {
        key: caller_key.map(|Extension(CallerKey(id))| id),
        payment_id,
    };
    // The settlement runs in its own task so that a client hanging up cannot
    // cancel it half-way, and it holds an in-flight guard so that a graceful
    // shutdown waits for it.
    let in_flight = state.in_flight().await;
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
            let answer = settle_once(&task_state, &request, caller).await;
            let cataloged = match (&answer.result, &kept) {
                (Ok(response), Some(request)) if response.success => {
                    catalog_payment(&task_state, request).await
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
    match answer.deliver(&state).await {
        Ok(response) => settle_response(response, cataloged),
        Err(error) => error.into_response(),
    }
}

/// The `/settle` answer, with the bazaar's `EXTENSION-RESPONSES` when the
/// payment's declaration was cataloged (or refused).
fn settle_response(
    response: paywire_core::SettleResponse,
    cataloged: Option<CatalogStatus>,
) -> Response {
    let mut answer = Json(response).into_response();
    if let Some(status) = cataloged
        && let Ok(value) =
            HeaderValue::from_str(&paywire_bazaar::extension_responses_header(&status))
    {
        answer
            .headers_mut()
            .insert(paywire_bazaar::EXTENSION_RESPONSES_HEADER, value);
    }
    answer
}

/// Catalogs the `bazaar` declaration a settled payment carries, when the
/// catalog is enabled: `None` when there is nothing to say.
///
/// The declaration is listed only once its origin confirms it. With a fresh
/// remembered answer of the origin the verdict is immediate; otherwise the
/// origin is asked in the background (so `/settle` does not wait for it) and
/// the answer says `processing`.
async fn catalog_payment(state: &AppState, request: &FacilitatorRequest) -> Option<CatalogStatus> {
    let catalog = state.catalog.clone()?;
    let confirmer = state.catalog_confirmer.clone()?;
    let (payload, paid) = (&request.payment_payload, &request.payment_requirements);
    if let Err(reason) = paywire_bazaar::extract(payload, paid, unix_now())? {
        tracing::info!(%reason, "bazaar declaration refused");
        state.metrics.bazaar("rejected");
        return Some(CatalogStatus::Rejected(reason.0));
    }
    let probe = match confirmer.probe(payload, paid) {
        Ok(probe) => probe,
        Err(reason) => return Some(list_confirmed(state, catalog.as_ref(), Err(reason)).await),
    };
    if let Some(verdict) = confirmer.cached(&probe, unix_now()) {
        return Some(list_confirmed(state, catalog.as_ref(), verdict).await);
    }
    let state = state.clone();
    tokio::spawn(
        async move {
            let verdict = confirmer.confirm(&probe, unix_now()).await;
            list_confirmed(&state, catalog.as_ref(), verdict).await;
        }
        .in_current_span(),
    );
    Some(CatalogStatus::Processing)
}

/// Lists what the origin confirmed, or counts why it did not.
async fn list_confirmed(
    state: &AppState,
    catalog: &dyn Catalog,
    verdict: Result<DiscoveredResource, Unconfirmed>,
) -> CatalogStatus {
    let entry = match verdict {
        Ok(entry) => entry,
        Err(reason) => {
            tracing::info!(%reason, "bazaar declaration not confirmed by its origin");
            state.metrics.bazaar("unconfirmed");
            return CatalogStatus::Rejected(format!("not confirmed by the origin: {reason}"));
        }
    };
    let resource = entry.resource.clone();
    match catalog.upsert(entry).await {
        Ok(()) => {
            tracing::info!(%resource, "resource cataloged");
            state.metrics.bazaar("cataloged");
            CatalogStatus::Success
        }
        Err(error) => {
            tracing::error!(%error, "bazaar catalog write failed");
            state.metrics.bazaar("error");
            CatalogStatus::Rejected("catalog unavailable".into())
        }
    }
}

/// Query of `GET /discovery/resources`.
#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    filter: ResourceFilter,
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
}

/// Query of `GET /discovery/search`.
#[derive(Debug, serde::Deserialize)]
struct SearchQuery {
    query: Option<String>,
    #[serde(flatten)]
    filter: ResourceFilter,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn discovery_disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "discovery_disabled",
        "this facilitator does not keep a bazaar catalog",
    )
}

fn bad_query(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", error.to_string())
}

fn catalog_unavailable(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "bazaar catalog read failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "catalog_unavailable",
        "the bazaar catalog cannot be read right now",
    )
}

fn check_limit(limit: Option<usize>) -> Result<(), ApiError> {
    match limit {
        Some(0) => Err(bad_query("limit must be between 1 and 100")),
        Some(n) if n > paywire_bazaar::MAX_PAGE => {
            Err(bad_query("limit must be between 1 and 100"))
        }
        _ => Ok(()),
    }
}

async fn discovery_resources(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let catalog = state.catalog.clone().ok_or_else(discovery_disabled)?;
    let Query(query) = query.map_err(|e| bad_query(e.body_text()))?;
    check_limit(query.limit)?;
    let page = catalog
        .list(&query.filter, query.limit, query.offset)
        .await
        .map_err(catalog_unavailable)?;
    Ok(Json(page).into_response())
}

async fn discovery_search(
    State(state): State<AppState>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let catalog = state.catalog.clone().ok_or_else(discovery_disabled)?;
    let Query(query) = query.map_err(|e| bad_query(e.body_text()))?;
    check_limit(query.limit)?;
    let text = query
        .query
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| bad_query("query is required"))?;
    if text.len() > 512 {
        return Err(bad_query("query is longer than 512 bytes"));
    }
    let page = catalog
        .search(&text, &query.filter, query.limit, query.cursor.as_deref())
        .await
        .map_err(catalog_unavailable)?;
    Ok(Json(page).into_response())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn supported(State(state): State<AppState>) -> Result<Response, ApiError> {
    let supported = state
        .facilitator
        .supported()
        .await
        .map_err(facilitator_error)?;
    Ok(Json(supported).into_response())
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(state): State<AppState>) -> Response {
    let mut chains = Vec::with_capacity(state.probes.len());
    let mut all_ok = true;
    for probe in state.probes.iter() {
        let answer = tokio::time::timeout(PROBE_TIMEOUT, probe.rpc.chain_id()).await;
        let problem = match answer {
            Ok(Ok(id)) if id == probe.chain_id => None,
            Ok(Ok(id)) => Some(format!(
                "RPC reports chain id {id}, expected {}",
                probe.chain_id
            )),
            Ok(Err(error)) => {
                // The public page gets the kind of failure; the log (scrubbed) the detail.
                tracing::warn!(network = %probe.network, %error, "readiness probe failed");
                Some(error.summary())
            }
            Err(_) => Some(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        };
        all_ok &= problem.is_none();
        chains.push(match problem {
            None => json!({"network": probe.network, "ok": true}),
            Some(error) => json!({"network": probe.network, "ok": false, "error": error}),
        });
    }
    if all_ok {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "chains": chains})),
        )
            .into_response()
    } else {
        tracing::warn!(?chains, "not ready");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": "not_ready",
                "message": "one or more chains are unreachable or misconfigured",
                "chains": chains,
            })),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    text.push_str(&signer_balances(&state.probes).await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The native (gas) balance of every settlement signer, read when scraped so
/// an operator can alert before a signer runs dry. A chain that does not
/// answer within two seconds is left out rather than delaying the scrape.
async fn signer_balances(probes: &[ChainProbe]) -> String {
    let mut lines = String::from(
        "# HELP x402_signer_balance_wei Native balance of each settlement signer.\n\
         # TYPE x402_signer_balance_wei gauge\n",
    );
    for probe in probes {
        let calls = probe
            .signers
            .iter()
            .map(|signer| ("eth_getBalance", serde_json::json!([signer, "latest"])))
            .collect();
        let Ok(Ok(answers)) =
            tokio::time::timeout(Duration::from_secs(2), probe.rpc.batch(calls)).await
        else {
            continue;
        };
        for (signer, answer) in probe.signers.iter().zip(answers) {
            if let Some(balance) = answer
                .ok()
                .and_then(|v| serde_json::from_value::<alloy_primitives::U256>(v).ok())
            {
                lines.push_str(&format!(
                    "x402_signer_balance_wei{{network=\"{}\",signer=\"{signer}\"}} {balance}\n",
                    probe.network
                ));
            }
        }
    }
    lines
}
