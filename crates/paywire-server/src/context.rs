//! What pricing callbacks, resolvers and hooks see of a request.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, Method};

/// A read-only view of the request being priced.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// HTTP method.
    pub method: Method,
    /// Normalized request path (no query), see [`crate::normalize_path`].
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The buffered request body, only for routes that opted in with
    /// [`crate::Route::with_body`].
    pub body: Option<Bytes>,
    /// Values of `:param` segments of the matched route pattern.
    pub params: HashMap<String, String>,
    /// The matched route pattern, as configured.
    pub route: String,
}

impl RequestContext {
    /// A header value as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// Length of the buffered body (0 when not buffered).
    pub fn body_len(&self) -> usize {
        self.body.as_ref().map_or(0, Bytes::len)
    }
}
