//! HTTP endpoints contributed by plugins ([`PluginEndpoint`]): mounted next
//! to the facilitator's own routes, behind the same layers (body limit,
//! request id, tracing, panic isolation) and the per-IP rate limit.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use paywire_core::{EndpointPath, PluginEndpoint, PluginRequest, PluginResponse};

use super::AppState;
use crate::error::ApiError;
use crate::ops::ClientKey;

/// Paths the facilitator keeps for itself.
const OWN_PATHS: &[&str] = &[
    "/verify",
    "/settle",
    "/supported",
    "/health",
    "/ready",
    "/metrics",
    "/discovery",
];

/// Why an endpoint cannot be mounted: it takes one of the facilitator's
/// paths, another endpoint's path, or is not an absolute path.
pub(crate) fn check_paths(endpoints: &[Arc<dyn PluginEndpoint>]) -> Result<(), String> {
    let mut taken: Vec<(String, bool)> = Vec::new();
    for endpoint in endpoints {
        let path = endpoint.path();
        let (EndpointPath::Exact(text) | EndpointPath::Prefix(text)) = &path else {
            return Err(format!("unsupported endpoint path {path:?}"));
        };
        let valid = text.starts_with('/')
            && text.len() > 1
            && !text.ends_with('/')
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
            && !text.contains("//")
            && !text
                .split('/')
                .any(|segment| segment == "." || segment == "..");
        if !valid {
            return Err(format!(
                "endpoint path {text:?} is not a plain absolute path"
            ));
        }
        let clashes = |other: &str| {
            text == other
                || text.starts_with(&format!("{other}/"))
                || other.starts_with(&format!("{text}/"))
        };
        if let Some(own) = OWN_PATHS.iter().find(|own| clashes(own)) {
            return Err(format!(
                "endpoint path {text:?} takes the facilitator's {own}"
            ));
        }
        // Two exact paths clash only when equal; a prefix clashes with
        // anything under it.
        let is_prefix = matches!(path, EndpointPath::Prefix(_));
        let overlaps = |(other, other_prefix): &&(String, bool)| {
            text == other
                || (*other_prefix && text.starts_with(&format!("{other}/")))
                || (is_prefix && other.starts_with(&format!("{text}/")))
        };
        if let Some((other, _)) = taken.iter().find(overlaps) {
            return Err(format!("endpoint path {text:?} overlaps {other:?}"));
        }
        taken.push((text.clone(), is_prefix));
    }
    Ok(())
}

/// `router` with every plugin endpoint mounted.
pub(super) fn mount(
    mut router: Router<AppState>,
    endpoints: &[Arc<dyn PluginEndpoint>],
) -> Router<AppState> {
    for endpoint in endpoints {
        let serve = {
            let endpoint = Arc::clone(endpoint);
            move |state: State<AppState>, request: Request| {
                answer(state, Arc::clone(&endpoint), request)
            }
        };
        router = match endpoint.path() {
            EndpointPath::Exact(path) => router.route(&path, any(serve)),
            EndpointPath::Prefix(prefix) => {
                router.route(&format!("{prefix}/{{*rest}}"), any(serve))
            }
            // Refused by `check_paths` before mounting.
            _ => router,
        };
    }
    router
}

async fn answer(
    State(state): State<AppState>,
    endpoint: Arc<dyn PluginEndpoint>,
    request: Request,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
    if let (Some(limiter), Some(ConnectInfo(address))) = (&state.per_ip, peer)
        && let Err(wait) = limiter.check(&ClientKey::of(address.ip()))
    {
        state.metrics.rate_limited("ip");
        return super::middleware::rate_limited("too many requests from this address", wait);
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, state.body_limit).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is over the facilitator's limit",
        )
        .into_response();
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let mut plugin_request = PluginRequest::new(parts.method.as_str(), parts.uri.path());
    plugin_request.query = parts.uri.query().map(str::to_owned);
    plugin_request.headers = headers;
    plugin_request.body = body.to_vec();
    render(endpoint.handle(plugin_request).await)
}

fn render(answer: PluginResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
