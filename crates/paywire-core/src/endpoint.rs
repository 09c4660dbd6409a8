//! HTTP endpoints a plugin adds to the facilitator, without naming an HTTP
//! framework: a rail's client-facing calls (the `credit` binding's
//! `/authorize`, its key set under `/.well-known/`, a purchase page) are
//! served by the facilitator process next to `/verify` and `/settle`, behind
//! the same body limit, request ids, panic isolation and tracing.

use std::fmt;

use crate::scheme::BoxFuture;

/// Which requests an endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointPath {
    /// Exactly this path (`/authorize`).
    Exact(String),
    /// Every path under this prefix (`/bank` answers `/bank/...`); the
    /// request's [`PluginRequest::path`] is the whole path.
    Prefix(String),
}

impl EndpointPath {
    /// Whether `path` is answered by this endpoint.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(exact) => path == exact,
            Self::Prefix(prefix) => path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
        }
    }
}

/// One HTTP request, as the facilitator received it (body already read and
/// capped by the facilitator's body limit).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PluginRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, percent-encoded as received.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// Header names in lower case, values that are not valid UTF-8 left out.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl PluginRequest {
    /// A request without headers, query or body.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            query: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// With header `name: value` (`name` is lower-cased).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// With `body`.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// With query string `query` (without `?`).
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// An endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PluginResponse {
    /// The HTTP status code.
    pub status: u16,
    /// Response headers (the facilitator adds none but its request id).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl PluginResponse {
    /// A response with `status`, `content_type` and `body`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    /// With header `name: value`.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
}

/// An HTTP endpoint a plugin serves from the facilitator
/// ([`crate::FacilitatorParts::endpoints`]). It authenticates its own
/// callers: the facilitator's API keys protect `/verify` and `/settle`
/// only.
pub trait PluginEndpoint: Send + Sync {
    /// The paths it answers. Paths of the facilitator's own routes
    /// (`/verify`, `/settle`, `/supported`, ...) cannot be taken.
    fn path(&self) -> EndpointPath;

    /// Answers one request. Never panics on input; errors are answers.
    fn handle(&self, request: PluginRequest) -> BoxFuture<'_, PluginResponse>;
}

impl fmt::Debug for dyn PluginEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PluginEndpoint({:?})", self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments_only() {
        let bank = EndpointPath::Prefix("/bank".into());
        assert!(bank.matches("/bank/purchase"));
        assert!(!bank.matches("/bank"));
        assert!(!bank.matches("/banking/x"));
        let exact = EndpointPath::Exact("/authorize".into());
        assert!(exact.matches("/authorize"));
        assert!(!exact.matches("/authorize/x"));
    }
}
