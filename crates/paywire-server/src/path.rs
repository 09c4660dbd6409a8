//! One request-path normalization for pricing and forwarding.
//!
//! The payment layer prices a route by its path and the gateway forwards a
//! path upstream; if the two read the path differently, a priced resource is
//! served for free (`/x/../paid` priced as `/x/../paid`, resolved to `/paid`
//! by the HTTP client or the upstream). Both therefore use [`normalize_path`]
//! and hand on exactly its output:
//!
//! - dot segments (`.`, `..`, also percent-encoded in any case: `%2e`,
//!   `.%2E`, …) are resolved; a path climbing above the root is refused;
//! - percent-encoded unreserved characters (RFC 3986: `A-Z a-z 0-9 - . _ ~`)
//!   are decoded, other octets stay encoded with upper-case hex, characters
//!   outside RFC 3986 `pchar` (space, `"`, `|`, non-ASCII, …) get encoded;
//! - repeated `/` collapse into one (as nginx's `merge_slashes` and many
//!   frameworks do); a trailing `/` is kept;
//! - refused with a [`PathError`]: an encoded `/` or `\`, a raw `\`, NUL and
//!   other control characters (raw or encoded), `;` path parameters (raw or
//!   `%3B`: Tomcat-style upstreams strip them, so `/paid;x` would be `/paid`
//!   upstream), double encoding (`%25` followed by two hex digits, which a
//!   decode-twice upstream turns into another character), malformed or
//!   non-UTF-8 percent-encoding, and paths over [`MAX_PATH_BYTES`];
//! - also refused, because common upstreams serve them as another name: a
//!   segment ending in `.` or a space (Windows and IIS drop them, so
//!   `/paid.` is `/paid`), an NTFS stream suffix (`/paid::$DATA`), and
//!   Unicode that is not in NFC (`cafe` + U+0301 is `café` on macOS file
//!   systems);
//! - [`normalize_request`] also refuses method names that are not upper case
//!   (`get /paid` does not match a `GET` route, but many frameworks upper-case
//!   the method and run the `GET` handler), and, when routes match ignoring
//!   case, non-ASCII letters (`ſ`, `ı`, `ß` fold to ASCII letters in some
//!   upstreams' case-insensitive comparisons but not in ours).

use axum::body::Body;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};

use crate::responses::protect;

/// Longest request path accepted, in bytes as received (before decoding).
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Why a request path was refused (answered with HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    /// Not an origin-form path (`*`, or empty).
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadPercentEncoding,
    /// `%2F` or `%5C`: a separator some upstreams decode and some do not.
    #[error("an encoded '/' or '\\' (%2F, %5C) is not accepted")]
    EncodedSeparator,
    /// A raw `\`, which some upstreams and HTTP clients treat as `/`.
    #[error("'\\' is not accepted in a path")]
    Backslash,
    /// NUL or another control character, raw or encoded.
    #[error("control characters (such as NUL) are not accepted in a path")]
    ControlCharacter,
    /// `;` (raw or `%3B`): path parameters that some upstreams strip.
    #[error("';' path parameters are not accepted")]
    PathParameter,
    /// `%25` followed by two hex digits: an octet encoded twice.
    #[error("double percent-encoding (%25 followed by hex digits) is not accepted")]
    DoubleEncoding,
    /// Percent-decoding gives bytes that are not UTF-8.
    #[error("the percent-decoded path is not valid UTF-8")]
    InvalidUtf8,
    /// More `..` segments than there are segments above them.
    #[error("the path climbs above the root with '..'")]
    AboveRoot,
    /// Dot segments in a request that was already routed on its raw path
    /// (the layer inside an axum `Router`): resolving them would price a
    /// different route than the one that runs.
    #[error("dot segments are not accepted in a request that was already routed")]
    DotSegmentsAfterRouting,
    /// The normalized path could not be put back into the request or upstream URL.
    #[error("the normalized path cannot be forwarded unchanged")]
    NotForwardable,
    /// A segment ending in `.` or a space, which Windows-style upstreams strip.
    #[error("a path segment may not end in '.' or a space")]
    TrailingDotOrSpace,
    /// An NTFS alternate-stream suffix (`:$DATA`).
    #[error("NTFS stream names (':$') are not accepted in a path")]
    StreamSuffix,
    /// Decoded text that is not in Unicode normalization form C.
    #[error("the decoded path is not in Unicode normalization form C")]
    NotNfc,
    /// A method name with lower-case letters (`get`), which some frameworks
    /// upper-case and serve as another method.
    #[error("method names are case-sensitive and must be upper case")]
    LowerCaseMethod,
    /// Non-ASCII letters while routes match ignoring case: their case folding
    /// differs between implementations.
    #[error("non-ASCII characters are not accepted when paths match ignoring case")]
    NonAsciiIgnoringCase,
}

impl PathError {
    /// A stable machine-readable code, the `reason` of the 400 body.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLong => "path_too_long",
            Self::NotAbsolute => "path_not_absolute",
            Self::BadPercentEncoding => "bad_percent_encoding",
            Self::EncodedSeparator => "encoded_separator",
            Self::Backslash => "backslash",
            Self::ControlCharacter => "control_character",
            Self::PathParameter => "path_parameter",
            Self::DoubleEncoding => "double_encoding",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::AboveRoot => "above_root",
            Self::DotSegmentsAfterRouting => "dot_segments_after_routing",
            Self::NotForwardable => "not_forwardable",
            Self::TrailingDotOrSpace => "trailing_dot_or_space",
            Self::StreamSuffix => "stream_suffix",
            Self::NotNfc => "not_nfc",
            Self::LowerCaseMethod => "lower_case_method",
            Self::NonAsciiIgnoringCase => "non_ascii_ignoring_case",
        }
    }
}

/// One non-empty segment of a normalized path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// As forwarded: unreserved characters decoded, other octets encoded.
    pub(crate) canonical: String,
    /// Fully percent-decoded, for comparison with route patterns.
    pub(crate) decoded: String,
}

/// The result of [`normalize_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    canonical: String,
    segments: Vec<Segment>,
    resolved_dot_segments: bool,
}

impl NormalizedPath {
    /// The normalized path: what is matched against routes and forwarded.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// Whether `.` or `..` segments were resolved away.
    pub fn resolved_dot_segments(&self) -> bool {
        self.resolved_dot_segments
    }

    /// The non-empty segments, each fully percent-decoded.
    pub fn decoded_segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|s| s.decoded.as_str())
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

/// Normalizes a request path (without query); see the [module](self) rules.
/// The result is stable: normalizing its [`NormalizedPath::as_str`] again
/// gives the same path.
pub fn normalize_path(raw: &str) -> Result<NormalizedPath, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut segments: Vec<Segment> = Vec::new();
    let mut resolved_dot_segments = false;
    let mut last_was_dot = false;
    // Empty segments are dropped first (`//` collapses), then dots resolve:
    // `/a//../b` is `/b`, as with nginx's merge_slashes.
    for part in rest.split('/').filter(|part| !part.is_empty()) {
        let segment = canonical_segment(part)?;
        last_was_dot = matches!(segment.decoded.as_str(), "." | "..");
        resolved_dot_segments |= last_was_dot;
        if segment.decoded == ".." {
            segments.pop().ok_or(PathError::AboveRoot)?;
        } else if !last_was_dot {
            segments.push(segment);
        }
    }
    // As in RFC 3986 §5.2.4, a final dot segment leaves a trailing `/`.
    let ends_with_slash = rest.ends_with('/') || last_was_dot;
    let mut canonical = String::with_capacity(raw.len());
    for segment in &segments {
        canonical.push('/');
        canonical.push_str(&segment.canonical);
    }
    if ends_with_slash || segments.is_empty() {
        canonical.push('/');
    }
    Ok(NormalizedPath {
        canonical,
        segments,
        resolved_dot_segments,
    })
}

/// RFC 3986 unreserved characters: decoded when percent-encoded.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Characters kept raw in a segment: RFC 3986 `pchar` minus `;` and `%`.
fn is_kept_raw(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// Checks one decoded or raw octet against the refusals shared by both forms.
fn refused_octet(byte: u8) -> Option<PathError> {
    match byte {
        b';' => Some(PathError::PathParameter),
        0x00..=0x1F | 0x7F => Some(PathError::ControlCharacter),
        _ => None,
    }
}

fn push_encoded(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0F)]));
}

/// Canonical and decoded forms of one segment (no `/` inside).
pub(crate) fn canonical_segment(part: &str) -> Result<Segment, PathError> {
    let bytes = part.as_bytes();
    let mut canonical = String::with_capacity(part.len());
    let mut decoded = Vec::with_capacity(part.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let high = bytes.get(index + 1).copied().and_then(hex_value);
            let low = bytes.get(index + 2).copied().and_then(hex_value);
            let (Some(high), Some(low)) = (high, low) else {
                return Err(PathError::BadPercentEncoding);
            };
            let octet = (high << 4) | low;
            if matches!(octet, b'/' | b'\\') {
                return Err(PathError::EncodedSeparator);
            }
            if let Some(error) = refused_octet(octet) {
                return Err(error);
            }
            if is_unreserved(octet) {
                canonical.push(char::from(octet));
            } else {
                push_encoded(&mut canonical, octet);
            }
            decoded.push(octet);
            index += 3;
            continue;
        }
        if byte == b'\\' {
            return Err(PathError::Backslash);
        }
        if let Some(error) = refused_octet(byte) {
            return Err(error);
        }
        if is_kept_raw(byte) {
            canonical.push(char::from(byte));
        } else {
            push_encoded(&mut canonical, byte);
        }
        decoded.push(byte);
        index += 1;
    }
    // Checked on the output, so that `%25%32%65` (which becomes `%252e`) is
    // caught as well as a literal `%252e`.
    if has_double_encoding(&canonical) {
        return Err(PathError::DoubleEncoding);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8)?;
    check_decoded_name(&decoded)?;
    Ok(Segment { canonical, decoded })
}

/// Refuses names that common upstreams serve as another name.
fn check_decoded_name(decoded: &str) -> Result<(), PathError> {
    let dot_segment = matches!(decoded, "." | "..");
    if !dot_segment && (decoded.ends_with('.') || decoded.ends_with(' ')) {
        return Err(PathError::TrailingDotOrSpace);
    }
    if decoded.contains(":$") {
        return Err(PathError::StreamSuffix);
    }
    if !decoded.is_ascii() && !unicode_normalization::is_nfc(decoded) {
        return Err(PathError::NotNfc);
    }
    Ok(())
}

fn has_double_encoding(canonical: &str) -> bool {
    canonical.as_bytes().windows(5).any(|window| {
        window.starts_with(b"%25") && window[3].is_ascii_hexdigit() && window[4].is_ascii_hexdigit()
    })
}

/// Refuses method names that are not upper case: `get /paid` does not match
/// a `GET` route, but many frameworks upper-case the method and run the
/// `GET` handler.
pub(crate) fn check_method(method: &str) -> Result<(), PathError> {
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(PathError::LowerCaseMethod);
    }
    Ok(())
}

/// Refuses non-ASCII segments when routes match ignoring case: `ſ`, `ı`,
/// `ß` fold to ASCII letters in some upstreams' comparisons but not in ours.
pub(crate) fn check_case_folding(path: &NormalizedPath) -> Result<(), PathError> {
    if path.decoded_segments().any(|s| !s.is_ascii()) {
        return Err(PathError::NonAsciiIgnoringCase);
    }
    Ok(())
}

/// Normalizes the request's path for the payment layer and rewrites the
/// request URI to it (query unchanged), so the inner service runs what was
/// priced. `ignoring_case`: routes match ignoring (ASCII) case.
pub(crate) fn normalize_request<B>(
    request: &mut Request<B>,
    ignoring_case: bool,
) -> Result<NormalizedPath, PathError> {
    check_method(request.method().as_str())?;
    let normalized = normalize_path(request.uri().path())?;
    if ignoring_case {
        check_case_folding(&normalized)?;
    }
    // Inside an axum Router (`Router::layer`), the handler was chosen from
    // the raw path: `/users/%2e%2e` runs `/users/{id}` while it resolves to
    // `/`. Only a path without dot segments reads the same both ways.
    if normalized.resolved_dot_segments()
        && request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .is_some()
    {
        return Err(PathError::DotSegmentsAfterRouting);
    }
    if normalized.as_str() != request.uri().path() {
        *request.uri_mut() = with_path(request.uri(), normalized.as_str())?;
    }
    Ok(normalized)
}

fn with_path(uri: &Uri, path: &str) -> Result<Uri, PathError> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(path_and_query).map_err(|_| PathError::NotForwardable)?);
    Uri::from_parts(parts).map_err(|_| PathError::NotForwardable)
}

/// The 400 answered for a refused path:
/// `{"error": "invalid_path", "reason": …, "message": …}`.
pub fn refused(error: PathError) -> Response<Body> {
    // Debug level: scanners send such paths all day long.
    tracing::debug!(reason = error.reason(), "request path refused");
    let body = serde_json::json!({
        "error": "invalid_path",
        "reason": error.reason(),
        "message": format!("request path refused: {error}"),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    protect(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn normal(raw: &str) -> String {
        match normalize_path(raw) {
            Ok(path) => path.as_str().to_owned(),
            Err(error) => panic!("{raw:?} refused: {error}"),
        }
    }

    fn refusal(raw: &str) -> PathError {
        match normalize_path(raw) {
            Ok(path) => panic!("{raw:?} accepted as {:?}", path.as_str()),
            Err(error) => error,
        }
    }

    #[test]
    fn resolves_dot_segments_in_every_spelling() {
        for raw in [
            "/x/../paid",
            "/./paid",
            "/x/%2e%2e/paid",
            "/x/%2E%2E/paid",
            "/x/.%2e/paid",
            "/x/%2E./paid",
            "/%2e/paid",
            "/x/y/../../paid",
            "/x//..//paid",
            "/free%3f/../paid",
            "/free%23/../paid",
        ] {
            assert_eq!(normal(raw), "/paid", "{raw}");
            assert!(normalize_path(raw).unwrap().resolved_dot_segments());
        }
        assert_eq!(normal("/paid/."), "/paid/");
        assert_eq!(normal("/a/b/.."), "/a/");
        assert_eq!(normal("/a/.."), "/");
        assert_eq!(refusal("/..."), PathError::TrailingDotOrSpace);
        assert_eq!(refusal("/.%2e%2e"), PathError::TrailingDotOrSpace);
        assert_eq!(normal("/.well-known/x"), "/.well-known/x");
        assert!(!normalize_path("/paid").unwrap().resolved_dot_segments());
    }

    #[test]
    fn decodes_unreserved_and_canonicalizes_the_rest() {
        assert_eq!(normal("/%70aid"), "/paid");
        assert_eq!(normal("/%70%61%69%64"), "/paid");
        assert_eq!(normal("/%7E%2d%5F%2Ex"), "/~-_.x");
        assert_eq!(normal("/a%3fb"), "/a%3Fb", "an encoded ? stays encoded");
        assert_eq!(normal("/a%23b"), "/a%23b");
        assert_eq!(normal("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(normal("/café"), "/caf%C3%A9");
        assert_eq!(normal("/a b|c\"{}"), "/a%20b%7Cc%22%7B%7D");
        assert_eq!(normal("/a:b@c!$&'()*+,="), "/a:b@c!$&'()*+,=");
        assert_eq!(normal("/100%25"), "/100%25", "a lone %25 is a literal %");
        let path = normalize_path("/caf%C3%A9/%41").unwrap();
        assert_eq!(path.decoded_segments().collect::<Vec<_>>(), ["café", "A"]);
    }

    #[test]
    fn collapses_slashes_and_keeps_a_trailing_one() {
        assert_eq!(normal("//paid"), "/paid");
        assert_eq!(normal("/a///b//"), "/a/b/");
        assert_eq!(normal("/"), "/");
        assert_eq!(normal("//"), "/");
        assert_eq!(normal("/paid/"), "/paid/");
    }

    #[test]
    fn refuses_what_cannot_be_normalized_safely() {
        let cases = [
            ("/x%2fpaid", PathError::EncodedSeparator),
            ("/x%2Fpaid", PathError::EncodedSeparator),
            ("/..%2fpaid", PathError::EncodedSeparator),
            ("/x%5c..%5cpaid", PathError::EncodedSeparator),
            ("/x\\..\\paid", PathError::Backslash),
            ("/paid%00", PathError::ControlCharacter),
            ("/paid\0", PathError::ControlCharacter),
            ("/pa\tid", PathError::ControlCharacter),
            ("/paid%7f", PathError::ControlCharacter),
            ("/paid;x=1", PathError::PathParameter),
            ("/free/..;/paid", PathError::PathParameter),
            ("/paid%3bx", PathError::PathParameter),
            ("/x/%252e%252e/paid", PathError::DoubleEncoding),
            ("/%2570aid", PathError::DoubleEncoding),
            ("/%25%32%65", PathError::DoubleEncoding),
            ("/%C0%AE%C0%AE/paid", PathError::InvalidUtf8),
            ("/%ff", PathError::InvalidUtf8),
            ("/paid%", PathError::BadPercentEncoding),
            ("/paid%zz", PathError::BadPercentEncoding),
            ("/%u002e", PathError::BadPercentEncoding),
            ("/..", PathError::AboveRoot),
            ("/../paid", PathError::AboveRoot),
            ("/%2e%2e/admin", PathError::AboveRoot),
            ("/a/../../admin", PathError::AboveRoot),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("paid", PathError::NotAbsolute),
            ("/paid.", PathError::TrailingDotOrSpace),
            ("/paid%2e", PathError::TrailingDotOrSpace),
            ("/paid%20", PathError::TrailingDotOrSpace),
            ("/paid./x", PathError::TrailingDotOrSpace),
            ("/paid::$DATA", PathError::StreamSuffix),
            ("/paid:$DATA", PathError::StreamSuffix),
            ("/cafe%CC%81", PathError::NotNfc),
        ];
        for (raw, expected) in cases {
            assert_eq!(refusal(raw), expected, "{raw:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(refusal(&long), PathError::TooLong);
        let longest = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert_eq!(normal(&longest), longest);
    }

    #[test]
    fn rewrites_the_request_uri_and_keeps_the_query() {
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_static("/x/%2e%2e/%70aid?q=/../free&x=%2e");
        let normalized = normalize_request(&mut request, false).unwrap();
        assert_eq!(normalized.as_str(), "/paid");
        assert_eq!(request.uri(), "/paid?q=/../free&x=%2e");
        let mut absolute = Request::new(());
        *absolute.uri_mut() = Uri::from_static("http://h:1/a/./b");
        normalize_request(&mut absolute, false).unwrap();
        assert_eq!(absolute.uri(), "http://h:1/a/b");
    }

    #[test]
    fn refuses_lower_case_methods_and_non_ascii_when_ignoring_case() {
        let request_for = |method: &str, uri: &'static str| {
            let mut request = Request::new(());
            *request.method_mut() = http::Method::from_bytes(method.as_bytes()).unwrap();
            *request.uri_mut() = Uri::from_static(uri);
            request
        };
        for method in ["get", "Get", "gEt", "head", "post"] {
            let refused = normalize_request(&mut request_for(method, "/paid"), false);
            assert_eq!(refused.unwrap_err(), PathError::LowerCaseMethod, "{method}");
        }
        assert!(normalize_request(&mut request_for("PROPFIND", "/paid"), false).is_ok());
        for uri in ["/u%C5%BFers/7", "/pa%C4%B1d", "/PA%C4%B0D", "/stra%C3%9Fe"] {
            let mut request = request_for("GET", uri);
            assert_eq!(
                normalize_request(&mut request, true).unwrap_err(),
                PathError::NonAsciiIgnoringCase,
                "{uri}"
            );
            assert!(normalize_request(&mut request_for("GET", uri), false).is_ok());
        }
    }

    fn raw_path() -> impl Strategy<Value = String> {
        // Weighted so that most paths are accepted and many hold dot segments.
        let piece = prop_oneof![
            6 => Just("/".to_owned()),
            3 => Just(".".to_owned()),
            3 => Just("..".to_owned()),
            1 => Just("%2e".to_owned()),
            1 => Just("%2E".to_owned()),
            1 => Just("%7e".to_owned()),
            1 => Just("%c3%a9".to_owned()),
            6 => "[a-zA-Z0-9~!$&'()*+,=:@ \"|^{}\\-_]{1,3}",
            1 => "%[0-9a-fA-F]{2}",
            1 => "\\PC",
            1 => prop_oneof![Just("%2f"), Just("%25"), Just("%"), Just(";")].prop_map(str::to_owned),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn normalization_is_idempotent_and_leaves_no_dots_or_encoded_separators(raw in raw_path()) {
            if let Ok(once) = normalize_path(&raw) {
                let twice = normalize_path(once.as_str());
                prop_assert_eq!(twice.as_ref().map(NormalizedPath::as_str), Ok(once.as_str()));
                prop_assert!(!twice.map_or(true, |t| t.resolved_dot_segments()));
                let text = once.as_str();
                prop_assert!(text.starts_with('/'));
                prop_assert!(!text.contains("//"));
                prop_assert!(text.split('/').all(|s| s != "." && s != ".."));
                let upper = text.to_ascii_uppercase();
                for banned in ["%2F", "%5C", "%2E", "%00", "%3B", ";", "\\"] {
                    prop_assert!(!upper.contains(banned), "{} in {}", banned, text);
                }
                prop_assert!(!has_double_encoding(text));
                prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
}
