//! The gateway's routes as MCP tools: names, input schemas, and the
//! upstream request one call's arguments make.
//!
//! The arguments of a call never choose another route: every path argument
//! is percent-encoded into exactly one segment (`/`, `?`, `#`, `%` and every
//! other character outside RFC 3986's unreserved set are encoded, `.` and
//! `..` are refused), the path is normalized with the same
//! [`normalize_path`] the gate and the proxy use, and the call is refused
//! unless normalizing changed nothing. The bridge then checks that the gate
//! matches that path to this tool's own route ([`RouteTool::owns`]).

use std::collections::HashMap;

use bytes::Bytes;
use paywire_server::{NormalizedPath, RoutePattern, normalize_path};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use crate::{GatewayError, RouteEntry, invalid, route_pattern};

/// Longest tool name (MCP clients commonly accept at most 128 characters).
const MAX_TOOL_NAME: usize = 128;

/// The argument of a trailing `*` (zero or more segments).
pub(crate) const REST_ARGUMENT: &str = "path";

/// The argument holding the request body of `POST`, `PUT` and `PATCH` tools.
pub(crate) const BODY_ARGUMENT: &str = "body";

/// Everything but RFC 3986's unreserved characters is encoded in a segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a call's arguments cannot make an upstream request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ArgumentError(pub(crate) String);

fn argument_error(message: impl Into<String>) -> ArgumentError {
    ArgumentError(message.into())
}

/// One segment of a route's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Written in the configuration; canonical (as [`normalize_path`]
    /// writes it).
    Literal(String),
    /// `:name`: one segment from the argument `name`, captured by the gate.
    Param(String),
    /// A `*` in the middle: one segment from the argument named
    /// (`segment_1`, ...), not captured.
    Any(String),
    /// A trailing `*`: zero or more segments from the `path` argument.
    Rest,
}

/// How the request body is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// No body (`GET`, `HEAD`, `DELETE`, ...): other arguments are the query.
    None,
    /// The `body` argument as JSON.
    Json,
    /// The `body` argument, a string, as `text/plain`.
    Text,
}

/// One priced route as an MCP tool.
#[derive(Debug, Clone)]
pub(crate) struct RouteTool {
    /// The tool name.
    pub(crate) name: String,
    /// The route pattern as the gate reports it ([`RoutePattern::as_str`]).
    pub(crate) pattern: String,
    /// The method sent upstream (upper case): the route's, `GET` when it
    /// names none.
    pub(crate) method: http::Method,
    segments: Vec<Segment>,
    body: BodyKind,
    /// What `tools/list` shows.
    pub(crate) description: String,
    /// The arguments' JSON Schema.
    pub(crate) input_schema: Map<String, Value>,
}

/// The upstream request of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamCall {
    /// The method.
    pub(crate) method: http::Method,
    /// The normalized path, exactly as the upstream receives it (under the
    /// upstream's base path).
    pub(crate) path: String,
    /// The query (`a=1&b=2`), if any.
    pub(crate) query: Option<String>,
    /// The body and its content type, if any.
    pub(crate) body: Option<(Bytes, &'static str)>,
}

impl UpstreamCall {
    /// The request target: path and query.
    pub(crate) fn target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// The tools of every route of a configuration, in route order; an error
/// names the route when a name is invalid or taken twice.
pub(crate) fn route_tools(routes: &[RouteEntry]) -> Result<Vec<RouteTool>, GatewayError> {
    let mut tools: Vec<RouteTool> = Vec::with_capacity(routes.len());
    for (index, entry) in routes.iter().enumerate() {
        let at = format!("routes[{index}]");
        let tool = RouteTool::new(&at, entry)?;
        if let Some(other) = tools.iter().position(|t| t.name == tool.name) {
            return Err(invalid(
                format!("{at}.tool"),
                format!(
                    "tool name {:?} is also routes[{other}]'s; give one of them `tool = \"...\"`",
                    tool.name
                ),
            ));
        }
        tools.push(tool);
    }
    Ok(tools)
}

impl RouteTool {
    fn new(at: &str, entry: &RouteEntry) -> Result<Self, GatewayError> {
        let pattern = RoutePattern::parse(&route_pattern(entry))?;
        let method = match entry.method.as_deref() {
            None => http::Method::GET,
            Some(method) if method == "*" || method.eq_ignore_ascii_case("ANY") => {
                http::Method::GET
            }
            Some(method) => http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid(format!("{at}.method"), "not an HTTP method"))?,
        };
        let body = body_kind(at, &method, entry)?;
        let segments = segments(at, &entry.path, body)?;
        let name = match &entry.tool {
            Some(name) => name.clone(),
            None => default_name(&method, &entry.path),
        };
        check_name(&name).map_err(|detail| invalid(format!("{at}.tool"), detail))?;
        let description = entry
            .description
            .clone()
            .unwrap_or_else(|| format!("{method} {} (paid)", entry.path));
        let input_schema = input_schema(&segments, body, entry);
        Ok(Self {
            name,
            pattern: pattern.as_str().to_owned(),
            method,
            segments,
            body,
            description,
            input_schema,
        })
    }

    /// Whether `pattern` and `params`, what the gate matched on a call's
    /// path, are this tool's route with the arguments' segments: a call
    /// never runs as another route.
    pub(crate) fn owns(
        &self,
        pattern: &str,
        params: &HashMap<String, String>,
        call: &UpstreamCall,
    ) -> bool {
        if pattern != self.pattern {
            return false;
        }
        // The gate captured the segments the arguments were encoded into.
        let mut parts = call.path.split('/').filter(|part| !part.is_empty());
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Rest, _) => return true,
                (Segment::Literal(_) | Segment::Any(_), Some(_)) => {}
                (Segment::Param(name), Some(part)) => {
                    if params.get(name).map(String::as_str) != Some(part) {
                        return false;
                    }
                }
                (_, None) => return false,
            }
        }
        parts.next().is_none()
    }

    /// Example arguments: `x` for every path segment argument.
    pub(crate) fn sample_arguments(&self) -> Map<String, Value> {
        self.segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Param(name) | Segment::Any(name) => Some((name.clone(), json!("x"))),
                Segment::Literal(_) | Segment::Rest => None,
            })
            .collect()
    }

    /// The upstream request for `arguments`.
    pub(crate) fn call(
        &self,
        arguments: &Map<String, Value>,
    ) -> Result<UpstreamCall, ArgumentError> {
        let mut used: Vec<&str> = Vec::new();
        let mut path = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => {
                    path.push('/');
                    path.push_str(literal);
                }
                Segment::Param(name) | Segment::Any(name) => {
                    let value = segment_value(name, arguments.get(name.as_str()))?;
                    path.push('/');
                    path.push_str(&encode_segment(name, &value)?);
                    used.push(name);
                }
                Segment::Rest => {
                    if let Some(value) = arguments.get(REST_ARGUMENT) {
                        let value = segment_value(REST_ARGUMENT, Some(value))?;
                        for part in value.split('/').filter(|part| !part.is_empty()) {
                            path.push('/');
                            path.push_str(&encode_segment(REST_ARGUMENT, part)?);
                        }
                    }
                    used.push(REST_ARGUMENT);
                }
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        let normalized = checked_path(&path)?;
        let body = match self.body {
            BodyKind::None => None,
            kind => {
                used.push(BODY_ARGUMENT);
                body_of(kind, arguments.get(BODY_ARGUMENT))?
            }
        };
        let query = query_of(arguments, &used)?;
        Ok(UpstreamCall {
            method: self.method.clone(),
            path: normalized.as_str().to_owned(),
            query,
            body,
        })
    }
}

/// The path normalized, refused unless normalizing changed nothing: the
/// gate, the proxy and the upstream all see the path the arguments made.
fn checked_path(path: &str) -> Result<NormalizedPath, ArgumentError> {
    let normalized = normalize_path(path)
        .map_err(|error| argument_error(format!("the arguments make a refused path: {error}")))?;
    if normalized.as_str() != path {
        return Err(argument_error(
            "the arguments make a path that does not stay as written",
        ));
    }
    Ok(normalized)
}

/// The body kind of a route: none for methods without a body; `json` or
/// `text` from the route's discovery `body_type`.
fn body_kind(
    at: &str,
    method: &http::Method,
    entry: &RouteEntry,
) -> Result<BodyKind, GatewayError> {
    if !matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
        return Ok(BodyKind::None);
    }
    let declared = entry
        .discovery
        .as_ref()
        .and_then(|discovery| discovery.body_type.as_deref());
    match declared {
        None | Some("json") => Ok(BodyKind::Json),
        Some("text") => Ok(BodyKind::Text),
        Some(other) => Err(invalid(
            format!("{at}.discovery.body_type"),
            format!("{other:?} bodies cannot be sent by an MCP tool (json or text only)"),
        )),
    }
}

/// The segments of a route path; argument names must not collide.
fn segments(at: &str, path: &str, body: BodyKind) -> Result<Vec<Segment>, GatewayError> {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    let mut segments = Vec::with_capacity(parts.len());
    let mut wildcards = 0;
    let mut names: Vec<String> = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let segment = if *part == "*" && index + 1 == parts.len() {
            Segment::Rest
        } else if *part == "*" {
            wildcards += 1;
            Segment::Any(format!("segment_{wildcards}"))
        } else if let Some(name) = part.strip_prefix(':') {
            Segment::Param(name.to_owned())
        } else {
            let canonical = normalize_path(&format!("/{part}"))
                .map_err(|error| invalid(format!("{at}.path"), error.to_string()))?;
            Segment::Literal(canonical.as_str().trim_start_matches('/').to_owned())
        };
        let name = match &segment {
            Segment::Param(name) | Segment::Any(name) => Some(name.as_str()),
            Segment::Rest => Some(REST_ARGUMENT),
            Segment::Literal(_) => None,
        };
        if let Some(name) = name {
            let taken = names.iter().any(|n| n == name)
                || (body != BodyKind::None && name == BODY_ARGUMENT);
            if taken {
                return Err(invalid(
                    format!("{at}.path"),
                    format!("argument {name:?} would be taken twice by the MCP tool"),
                ));
            }
            names.push(name.to_owned());
        }
        segments.push(segment);
    }
    Ok(segments)
}

/// `get_weather_city` for `GET /weather/:city`: the lower-case method and
/// the path's literals and parameter names, other characters as `_`.
fn default_name(method: &http::Method, path: &str) -> String {
    let mut name = method.as_str().to_ascii_lowercase();
    for part in path
        .split('/')
        .filter(|part| !part.is_empty() && *part != "*")
    {
        name.push('_');
        name.extend(part.trim_start_matches(':').chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        }));
    }
    let mut collapsed = String::with_capacity(name.len());
    for c in name.chars() {
        if !(c == '_' && collapsed.ends_with('_')) {
            collapsed.push(c);
        }
    }
    let trimmed = collapsed.trim_end_matches('_');
    trimmed.chars().take(MAX_TOOL_NAME).collect()
}

/// 1 to 128 characters of `A-Z a-z 0-9 _ . -`, not `.` or `..` (the name
/// is the last segment of the `mcp://tool/<name>` resource URL).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if name.is_empty() || name.len() > MAX_TOOL_NAME || !valid_chars {
        return Err(format!(
            "tool name {name:?}: 1 to {MAX_TOOL_NAME} characters of A-Z a-z 0-9 _ . -"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("tool name {name:?} is not a name"));
    }
    Ok(())
}

/// The text of a path argument: strings, numbers and booleans.
fn segment_value(name: &str, value: Option<&Value>) -> Result<String, ArgumentError> {
    match value {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        Some(Value::Bool(flag)) => Ok(flag.to_string()),
        None | Some(Value::Null) => Err(argument_error(format!("argument {name:?} is required"))),
        Some(_) => Err(argument_error(format!(
            "argument {name:?} must be a string"
        ))),
    }
}

/// `value` as one path segment: percent-encoded, never empty, `.` or `..`.
fn encode_segment(name: &str, value: &str) -> Result<String, ArgumentError> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(argument_error(format!(
            "argument {name:?}: {value:?} is not a path segment"
        )));
    }
    Ok(utf8_percent_encode(value, SEGMENT).to_string())
}

/// The body of a body method's call.
fn body_of(
    kind: BodyKind,
    value: Option<&Value>,
) -> Result<Option<(Bytes, &'static str)>, ArgumentError> {
    match (kind, value) {
        (_, None | Some(Value::Null)) | (BodyKind::None, _) => Ok(None),
        (BodyKind::Json, Some(value)) => {
            Ok(Some((Bytes::from(value.to_string()), "application/json")))
        }
        (BodyKind::Text, Some(Value::String(text))) => Ok(Some((
            Bytes::from(text.clone()),
            "text/plain; charset=utf-8",
        ))),
        (BodyKind::Text, Some(_)) => Err(argument_error(format!(
            "argument {BODY_ARGUMENT:?} must be a string"
        ))),
    }
}

/// Query parameters some frameworks (Laravel, Symfony, Rack) read as the
/// request's method: the upstream would run another method than the one
/// the gate priced (the proxy strips the header forms for the same reason).
const METHOD_OVERRIDE_PARAMETERS: &[&str] = &[
    "_method",
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
];

fn is_method_override(name: &str) -> bool {
    METHOD_OVERRIDE_PARAMETERS
        .iter()
        .any(|parameter| name.trim().eq_ignore_ascii_case(parameter))
}

/// The query from the arguments not used by the path or the body: scalars
/// as text, arrays of scalars as repeated parameters; `null` is left out.
fn query_of(
    arguments: &Map<String, Value>,
    used: &[&str],
) -> Result<Option<String>, ArgumentError> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in arguments {
        if used.contains(&name.as_str()) {
            continue;
        }
        if is_method_override(name) {
            return Err(argument_error(format!(
                "argument {name:?} would ask the upstream for another method than the one priced"
            )));
        }
        let values = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for value in values {
            let text = match value {
                Value::Null => continue,
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Array(_) | Value::Object(_) => {
                    return Err(argument_error(format!(
                        "argument {name:?} cannot be a query parameter (objects and nested arrays are not)"
                    )));
                }
            };
            query.append_pair(name, &text);
            any = true;
        }
    }
    Ok(any.then(|| query.finish()))
}

/// The arguments' schema: path arguments (required strings), the `path`
/// of a trailing `*`, the `body` of body methods, the query parameters the
/// route's discovery names; other arguments are sent as query parameters.
fn input_schema(segments: &[Segment], body: BodyKind, entry: &RouteEntry) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for segment in segments {
        match segment {
            Segment::Literal(_) => {}
            Segment::Param(name) | Segment::Any(name) => {
                properties.insert(
                    name.clone(),
                    json!({"type": "string", "description": format!("path segment `{name}`")}),
                );
                required.push(Value::String(name.clone()));
            }
            Segment::Rest => {
                properties.insert(
                    REST_ARGUMENT.to_owned(),
                    json!({"type": "string", "description": "the rest of the path (segments separated by `/`)"}),
                );
            }
        }
    }
    let discovery = entry.discovery.as_ref();
    for (name, example) in discovery.map(|d| &d.query_params).into_iter().flatten() {
        properties.entry(name.clone()).or_insert_with(
            || json!({"type": "string", "description": "query parameter", "examples": [example]}),
        );
    }
    let example = discovery.and_then(|d| d.body_example.clone());
    match body {
        BodyKind::None => {}
        BodyKind::Json => {
            let mut schema = json!({"description": "the JSON request body"});
            if example.as_ref().is_none_or(Value::is_object) {
                schema["type"] = json!("object");
            }
            if let Some(example) = example {
                schema["examples"] = json!([example]);
            }
            properties.insert(BODY_ARGUMENT.to_owned(), schema);
        }
        BodyKind::Text => {
            let mut schema = json!({"type": "string", "description": "the text request body"});
            if let Some(example) = example {
                schema["examples"] = json!([example]);
            }
            properties.insert(BODY_ARGUMENT.to_owned(), schema);
        }
    }
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    // Other arguments become query parameters.
    schema.insert("additionalProperties".into(), json!(true));
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GatewayConfig;

    fn routes(text: &str) -> Result<Vec<RouteTool>, GatewayError> {
        let config = GatewayConfig::parse_with_env(
            &format!(
                "public_origin = \"https://a.example\"\nupstream = \"http://127.0.0.1:1\"\nfacilitators = []\n{text}"
            ),
            |_| None,
        )
        .expect("config parses");
        route_tools(&config.routes)
    }

    fn route(method: Option<&str>, path: &str) -> String {
        let method = method
            .map(|m| format!("method = \"{m}\"\n"))
            .unwrap_or_default();
        format!("[[routes]]\n{method}path = \"{path}\"\naccepts = []\n")
    }

    fn one(method: Option<&str>, path: &str) -> RouteTool {
        routes(&route(method, path))
            .expect("tools")
            .pop()
            .expect("one tool")
    }

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn method_override_arguments_are_refused() {
        let mut arguments = Map::new();
        arguments.insert("q".into(), Value::from("x"));
        assert!(query_of(&arguments, &[]).is_ok());
        for name in ["_method", "_METHOD", " _method", "X-HTTP-Method-Override"] {
            let mut arguments = Map::new();
            arguments.insert(name.into(), Value::from("DELETE"));
            assert!(query_of(&arguments, &[]).is_err(), "{name:?} was sent on");
        }
    }

    #[test]
    fn default_names_come_from_method_and_path() {
        assert_eq!(one(Some("GET"), "/weather/:city").name, "get_weather_city");
        assert_eq!(
            one(Some("post"), "/v1/chat-completions").name,
            "post_v1_chat-completions"
        );
        assert_eq!(one(None, "/files/*").name, "get_files");
        assert_eq!(one(Some("GET"), "/").name, "get");
        assert_eq!(one(Some("GET"), "/a%20b/c.d").name, "get_a_20b_c_d");
        assert_eq!(one(Some("GET"), "/x").pattern, "GET /x");
        assert_eq!(one(None, "/x").pattern, "* /x");
    }

    #[test]
    fn names_are_validated_and_unique() {
        let named = |name: &str| {
            routes(&format!(
                "[[routes]]\npath = \"/a\"\ntool = \"{name}\"\naccepts = []\n"
            ))
        };
        assert!(named("ok.name-1_x").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(named(bad).is_err(), "{bad:?}");
        }
        assert!(named(&"x".repeat(128)).is_ok());
        let twice = routes(&format!(
            "{}{}",
            route(Some("GET"), "/a/b"),
            route(Some("GET"), "/a_b")
        ));
        let error = twice.expect_err("duplicate").to_string();
        assert!(
            error.contains("routes[1].tool") && error.contains("get_a_b"),
            "{error}"
        );
        let clash = routes(&route(Some("GET"), "/x/:path/*"));
        assert!(clash.is_err(), "`path` taken twice");
        let body = routes(&route(Some("POST"), "/x/:body"));
        assert!(body.is_err(), "`body` taken twice");
        assert!(routes(&route(Some("GET"), "/x/:body")).is_ok());
    }

    #[test]
    fn schema_lists_path_query_and_body_arguments() {
        let tool = routes(
            "[[routes]]\nmethod = \"GET\"\npath = \"/weather/:city\"\naccepts = []\n\
             [routes.discovery]\nquery_params = { units = \"metric\" }\n",
        )
        .expect("tools")
        .remove(0);
        let schema = Value::Object(tool.input_schema);
        assert_eq!(schema["required"], json!(["city"]));
        assert_eq!(schema["properties"]["city"]["type"], "string");
        assert_eq!(schema["properties"]["units"]["examples"], json!(["metric"]));
        assert!(schema["properties"].get("body").is_none());
        let post = Value::Object(one(Some("POST"), "/jobs").input_schema);
        assert_eq!(post["properties"]["body"]["type"], "object");
        assert!(post.get("required").is_none());
    }

    #[test]
    fn arguments_fill_path_query_and_body() {
        let tool = one(Some("GET"), "/weather/:city");
        let call = tool
            .call(&args(
                json!({"city": "São Paulo", "days": 3, "tag": ["a", "b"], "x": null}),
            ))
            .expect("call");
        assert_eq!(call.path, "/weather/S%C3%A3o%20Paulo");
        assert_eq!(call.query.as_deref(), Some("days=3&tag=a&tag=b"));
        assert_eq!(call.body, None);
        assert_eq!(
            call.target(),
            "/weather/S%C3%A3o%20Paulo?days=3&tag=a&tag=b"
        );
        let post = one(Some("POST"), "/jobs/:id");
        let call = post
            .call(&args(json!({"id": 7, "body": {"n": 1}, "dry": true})))
            .expect("call");
        assert_eq!(call.path, "/jobs/7");
        assert_eq!(call.query.as_deref(), Some("dry=true"));
        assert_eq!(
            call.body,
            Some((Bytes::from_static(br#"{"n":1}"#), "application/json"))
        );
        let rest = one(Some("GET"), "/files/*");
        let call = rest.call(&args(json!({"path": "a/b c/d"}))).expect("call");
        assert_eq!(call.path, "/files/a/b%20c/d");
        assert_eq!(rest.call(&args(json!({}))).expect("call").path, "/files");
    }

    #[test]
    fn arguments_never_leave_their_segment() {
        let tool = one(Some("GET"), "/weather/:city");
        // Each of these stays one encoded segment of /weather/:city.
        for (value, path) in [
            ("a/b", "/weather/a%2Fb"),
            ("a?b=1", "/weather/a%3Fb%3D1"),
            ("a#b", "/weather/a%23b"),
            ("x\\y", "/weather/x%5Cy"),
        ] {
            match tool.call(&args(json!({ "city": value }))) {
                Ok(call) => assert_eq!(call.path, path, "{value:?}"),
                Err(error) => assert!(!error.0.is_empty(), "{value:?}"),
            }
        }
        // Either refused, or kept as exactly one segment under /weather that
        // never climbs (`..` and the empty value must be refused: below).
        for value in [
            "..", ".", "", "%2e%2e", "../admin", "%2F", "a%252e", "x;y", "end.",
        ] {
            let result = tool.call(&args(json!({ "city": value })));
            if let Ok(call) = &result {
                let mut parts = call.path.split('/').filter(|p| !p.is_empty());
                assert_eq!(parts.next(), Some("weather"), "{value:?}: {call:?}");
                assert!(
                    parts.next().is_some() && parts.next().is_none(),
                    "{value:?}: {call:?}"
                );
                assert!(
                    !call.path.contains("/../") && !call.path.ends_with("/.."),
                    "{value:?}"
                );
            }
        }
        assert!(tool.call(&args(json!({"city": ".."}))).is_err());
        assert!(tool.call(&args(json!({"city": ""}))).is_err());
        assert!(tool.call(&args(json!({}))).is_err());
        assert!(tool.call(&args(json!({"city": {"a": 1}}))).is_err());
        let rest = one(Some("GET"), "/files/*");
        assert!(rest.call(&args(json!({"path": "a/../../admin"}))).is_err());
        assert!(rest.call(&args(json!({"path": "./x"}))).is_err());
    }

    #[test]
    fn each_layer_refuses_on_its_own() {
        // Dot segments and empty values never become a segment.
        for value in ["", ".", ".."] {
            assert!(encode_segment("x", value).is_err(), "{value:?}");
        }
        assert_eq!(
            encode_segment("x", "a/b?c#d%e").as_deref(),
            Ok("a%2Fb%3Fc%23d%25e")
        );
        // A path normalizing would change is refused, whatever made it.
        for path in [
            "/weather/..",
            "/weather/.",
            "/weather/%70aris",
            "/weather//x",
            "/w/%2F",
        ] {
            assert!(checked_path(path).is_err(), "{path}");
        }
        assert!(checked_path("/weather/Paris").is_ok());
    }

    #[test]
    fn owns_checks_pattern_and_captured_segments() {
        let tool = one(Some("GET"), "/weather/:city");
        let call = tool.call(&args(json!({"city": "Paris"}))).expect("call");
        let params = HashMap::from([("city".to_owned(), "Paris".to_owned())]);
        assert!(tool.owns("GET /weather/:city", &params, &call));
        assert!(!tool.owns("GET /weather/*", &params, &call));
        let other = HashMap::from([("city".to_owned(), "Rome".to_owned())]);
        assert!(!tool.owns("GET /weather/:city", &other, &call));
    }
}
