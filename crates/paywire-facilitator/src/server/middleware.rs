//! What every request goes through: a request id and its tracing span, API
//! keys and the per-IP rate limit before the body is read, request metrics,
//! panics turned into JSON errors; and the shared refusals (rate limited,
//! overloaded, unknown route).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use paywire_core::{Facilitator, FacilitatorRequest};
use tracing::Instrument;

use super::AppState;
use crate::error::ApiError;
use crate::ops::{AuthFailure, ClientKey, Endpoint};

/// The id of the API key a request presented, set by the API-key guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerKey(pub String);

/// Header carrying the request id (taken from the request when the client
/// or a proxy set one, else generated).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn new_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        nanos ^ std::process::id().rotate_left(16)
    });
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:08x}-{n:06}")
}

/// Gives every request an id, a tracing span carrying it, and echoes it in
/// the response's `x-request-id`.
pub(super) async fn request_id(mut request: Request, next: Next) -> Response {
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
pub(super) async fn guard(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
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
        && let Err(wait) = limiter.check(&ClientKey::of(address.ip()))
    {
        state.metrics.rate_limited("ip");
        return rate_limited("too many requests from this address", wait);
    }
    next.run(request).await
}

pub(super) fn rate_limited(message: &str, wait: Duration) -> Response {
    let mut response =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// `503 overloaded`: every settlement slot is taken.
pub(super) fn overloaded() -> Response {
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
pub(super) fn check_payer(state: &AppState, request: &FacilitatorRequest) -> Option<Response> {
    if let Some(limiter) = &state.per_payer
        && let Some(payer) = state.settlements.authenticated_payer(request)
        && let Err(wait) = limiter.check(&payer)
    {
        state.metrics.rate_limited("payer");
        return Some(rate_limited("too many requests for this payer", wait));
    }
    None
}

/// Counts every answer by route and status.
pub(super) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.request(&route, response.status().as_u16());
    response
}

/// A handler panic, as a JSON 500.
pub(super) fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
    .into_response()
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}
