//! What pricing callbacks, resolvers and hooks see of a request.

use std::collections::HashMap;

use bytes::Bytes;

use crate::gate::Headers;

/// A read-only view of the request being priced, whatever its transport.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The operation: the HTTP method (`GET`), or another transport's verb.
    pub method: String,
    /// Normalized request path (no query), see [`crate::normalize_path`].
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    /// Request metadata: the HTTP headers, or another transport's
    /// equivalent (an MCP call's `_meta` entries).
    pub headers: Headers,
    /// The buffered request body, only for routes that opted in with
    /// [`crate::Route::with_body`].
    pub body: Option<Bytes>,
    /// Values of `:param` segments of the matched route pattern.
    pub params: HashMap<String, String>,
    /// The matched route pattern, as configured.
    pub route: String,
    /// Whether the request carries an x402 v2 payment (the
    /// `PAYMENT-SIGNATURE` header, MCP's `_meta["x402/payment"]`), valid or
    /// not.
    pub paying: bool,
}

impl RequestContext {
    /// A header (metadata) value as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.text(name)
    }

    /// Length of the buffered body (0 when not buffered).
    pub fn body_len(&self) -> usize {
        self.body.as_ref().map_or(0, Bytes::len)
    }
}
