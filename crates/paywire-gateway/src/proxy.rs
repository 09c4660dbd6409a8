//! Forwarding to the upstream with streaming bodies.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use paywire_core::codec::{PAYMENT_SIGNATURE_HEADER, V1_PAYMENT_HEADER};

use paywire_server::layer::{PricedRoute, json_error, path_refused as refused};
use paywire_server::{PathError, Usage, UsageError, normalize_path};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers some frameworks read as the method or path to run.
const REROUTING_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-rewrite-url",
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The upstream response headers that report usage: the global name and
/// the routes' own. Every one of them is removed from every answer.
#[derive(Debug, Clone)]
pub(crate) struct UsageHeaders {
    default: HeaderName,
    /// Route pattern → its header.
    routes: Vec<(String, HeaderName)>,
}

impl UsageHeaders {
    pub(crate) fn new(default: HeaderName) -> Self {
        Self {
            default,
            routes: Vec::new(),
        }
    }

    /// `pattern`'s own header; the first declaration of a pattern wins, as
    /// the first matching route does.
    pub(crate) fn route(&mut self, pattern: &str, name: HeaderName) {
        if !self.routes.iter().any(|(known, _)| known == pattern) {
            self.routes.push((pattern.to_owned(), name));
        }
    }

    /// The header reporting usage on the priced route of pattern `route`.
    fn of(&self, route: Option<&str>) -> &HeaderName {
        route
            .and_then(|route| self.routes.iter().find(|(p, _)| p == route))
            .map_or(&self.default, |(_, name)| name)
    }

    /// Takes the usage report out of `headers` (all usage headers are
    /// removed): the one of the priced route of pattern `route`, parsed. A
    /// malformed report is dropped with a warning (the route's
    /// missing-usage policy then applies).
    pub(crate) fn take(&self, headers: &mut HeaderMap, route: Option<&str>) -> Option<Usage> {
        let name = self.of(route);
        let reported = route.and_then(|_| {
            let mut values = headers.get_all(name).iter();
            let first = values.next()?;
            if values.next().is_some() {
                tracing::warn!(header = %name, "several usage headers from the upstream; ignored");
                return None;
            }
            let parsed = first
                .to_str()
                .map_err(|_| UsageError::Malformed("(not text)".into()))
                .and_then(Usage::parse);
            parsed
                .inspect_err(
                    |error| tracing::warn!(header = %name, %error, "upstream usage ignored"),
                )
                .ok()
        });
        self.remove_all(headers);
        reported
    }

    /// Removes every usage header: from answers, and from requests, so that
    /// an upstream reflecting request headers cannot be made to report a
    /// usage the client chose.
    pub(crate) fn remove_all(&self, headers: &mut HeaderMap) {
        headers.remove(&self.default);
        for (_, name) in &self.routes {
            headers.remove(name);
        }
    }
}

pub(crate) struct Proxy {
    client: reqwest::Client,
    usage: UsageHeaders,
    /// The upstream base URL; its path is replaced per request.
    upstream: reqwest::Url,
    /// The normalized base path without its trailing `/` (empty at the root).
    base_path: String,
    proto: &'static str,
}

impl Proxy {
    pub(crate) fn new(
        upstream: &str,
        public_origin: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let upstream = upstream.trim_end_matches('/');
        let not_a_base =
            || format!("{upstream:?} is not an http(s) base URL such as http://127.0.0.1:8080");
        let rest = upstream
            .strip_prefix("http://")
            .or_else(|| upstream.strip_prefix("https://"));
        if !rest.is_some_and(|host| !host.is_empty() && !host.contains(['?', '#', ' '])) {
            return Err(not_a_base());
        }
        let url = reqwest::Url::parse(upstream).map_err(|_| not_a_base())?;
        let base_path = normalize_path(url.path())
            .map_err(|error| format!("{upstream:?}: base path refused: {error}"))?
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if url.scheme() == "http" && !proxy_configured() {
            // The client only ever talks to this upstream and follows no
            // redirect: plain HTTP never verifies a certificate, so the
            // system's root store (some 600 KB resident) is not loaded. An
            // environment proxy may be reached over TLS: then keep it.
            builder = builder.tls_certs_only(Vec::new());
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            usage: UsageHeaders::new(HeaderName::from_static("x-paywire-usage")),
            upstream: url,
            base_path,
            proto: if public_origin.starts_with("https://") {
                "https"
            } else {
                "http"
            },
        })
    }

    /// With these usage headers (default: `X-Paywire-Usage` only).
    pub(crate) fn with_usage_headers(mut self, usage: UsageHeaders) -> Self {
        self.usage = usage;
        self
    }

    /// The upstream URL for a request: the base path joined with the
    /// request's normalized path, the query unchanged. Refuses rather than
    /// forward a path that differs from the one matched against routes.
    fn url_for(&self, uri: &http::Uri) -> Result<reqwest::Url, PathError> {
        let normalized = normalize_path(uri.path())?;
        let path = format!("{}{}", self.base_path, normalized.as_str());
        let mut url = self.upstream.clone();
        url.set_path(&path);
        url.set_query(uri.query());
        if url.path() != path {
            return Err(PathError::NotForwardable);
        }
        Ok(url)
    }
}

/// An axum request body made `Sync` (reqwest requires it) without locking on
/// the data path: `poll_frame` has `&mut` access.
struct SyncBody(Mutex<Body>);

impl http_body::Body for SyncBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let body = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        Pin::new(body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .size_hint()
    }
}

/// One request for the upstream, from any transport: the HTTP gateway's
/// incoming request, or an MCP tool call made into a request.
pub(crate) struct Outgoing {
    /// The method.
    pub(crate) method: http::Method,
    /// The request target (path and query) as the gate saw it.
    pub(crate) uri: http::Uri,
    /// The request headers, before hygiene.
    pub(crate) headers: HeaderMap,
    /// The body.
    pub(crate) body: reqwest::Body,
    /// The pattern of the priced route the gate matched, if any.
    pub(crate) priced: Option<String>,
    /// The client's address, for `X-Forwarded-For`.
    pub(crate) peer: Option<SocketAddr>,
}

/// The fallback handler: forwards any request to the upstream.
pub(crate) async fn forward(
    State(proxy): State<Arc<Proxy>>,
    request: Request<Body>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let outgoing = Outgoing {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body: reqwest::Body::wrap(SyncBody(Mutex::new(body))),
        priced: parts
            .extensions
            .get::<PricedRoute>()
            .map(|route| route.pattern().to_owned()),
        peer,
    };
    proxy.send(outgoing).await
}

impl Proxy {
    /// Sends `outgoing` to the upstream with the gateway's header hygiene;
    /// the answer's usage report (priced routes) is in its extensions as a
    /// [`Usage`]. Upstream failures are answered `502`/`504` JSON errors.
    pub(crate) async fn send(&self, outgoing: Outgoing) -> Response<Body> {
        // The layer (or the MCP bridge) already normalized the path;
        // normalizing again (a no-op) keeps free paths safe even if the
        // proxy is reached another way.
        let url = match self.url_for(&outgoing.uri) {
            Ok(url) => url,
            Err(error) => return refused(error),
        };
        let headers = self.upstream_headers(outgoing.headers, outgoing.peer);
        let upstream = self
            .client
            .request(outgoing.method, url.clone())
            .headers(headers)
            .body(outgoing.body)
            .send()
            .await;
        match upstream {
            Ok(response) => {
                let response: Response<reqwest::Body> = response.into();
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                if let Some(usage) = self
                    .usage
                    .take(&mut parts.headers, outgoing.priced.as_deref())
                {
                    parts.extensions.insert(usage);
                }
                Response::from_parts(parts, Body::new(body))
            }
            Err(error) => {
                tracing::warn!(%error, %url, "upstream request failed");
                let (status, code) = if error.is_timeout() {
                    (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
                } else {
                    (StatusCode::BAD_GATEWAY, "upstream_unavailable")
                };
                // The buyer sees why, never the upstream's address (it may be
                // internal, or carry a key in its path or query).
                json_error(
                    status,
                    code,
                    &format!("the upstream failed: {}", error.without_url()),
                )
            }
        }
    }

    /// The request headers the upstream gets: hop-by-hop, payment, rerouting
    /// and usage headers removed, `X-Forwarded-*` set.
    fn upstream_headers(&self, mut headers: HeaderMap, peer: Option<SocketAddr>) -> HeaderMap {
        strip_hop_by_hop(&mut headers);
        let original_host = headers.remove(header::HOST);
        // The payment is the gateway's business; the upstream never sees it.
        headers.remove(PAYMENT_SIGNATURE_HEADER);
        headers.remove(V1_PAYMENT_HEADER);
        // Frameworks that honour these would run another method or path than
        // the one the gateway priced (Rails turns `POST /paid` with
        // `X-HTTP-Method-Override: GET` into `GET /paid`).
        for name in REROUTING_HEADERS {
            headers.remove(*name);
        }
        self.usage.remove_all(&mut headers);
        if let Some(host) = original_host {
            headers.insert("x-forwarded-host", host);
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static(self.proto));
        if let Some(peer) = peer {
            let ip = peer.ip().to_string();
            let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(previous) => format!("{previous}, {ip}"),
                None => ip,
            };
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert("x-forwarded-for", value);
            }
        }
        headers
    }
}

/// Whether the environment names a proxy reqwest would use.
fn proxy_configured() -> bool {
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("close, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn joins_the_normalized_path_under_the_base_path() {
        let proxy = Proxy::new(
            "http://up:1/api/",
            "https://a.example",
            Duration::from_secs(1),
        )
        .expect("proxy");
        let url = |target: &'static str| {
            proxy
                .url_for(&http::Uri::from_static(target))
                .map(|url| url.to_string())
        };
        assert_eq!(url("/x?q=/../a"), Ok("http://up:1/api/x?q=/../a".into()));
        assert_eq!(url("/x/../%70aid/"), Ok("http://up:1/api/paid/".into()));
        assert_eq!(url("/a%20b%3F"), Ok("http://up:1/api/a%20b%3F".into()));
        assert_eq!(url("/../admin"), Err(PathError::AboveRoot));
        assert_eq!(url("/%2e%2e/admin"), Err(PathError::AboveRoot));
        assert_eq!(url("/..%2fadmin"), Err(PathError::EncodedSeparator));
        let root = Proxy::new("http://up:1", "http://a", Duration::from_secs(1)).expect("proxy");
        let at_root = root.url_for(&http::Uri::from_static("/"));
        assert_eq!(at_root.map(|u| u.to_string()), Ok("http://up:1/".into()));
        assert!(Proxy::new("http://up/a%2fb", "http://a", Duration::from_secs(1)).is_err());
    }
}
