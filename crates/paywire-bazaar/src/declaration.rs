//! What a seller declares about a paid endpoint so that facilitators can
//! catalog it: how to call it (HTTP method with query or body example, or an
//! MCP tool) and what it returns.

use paywire_core::Extensions;
use paywire_core::extensions::BAZAAR;
use serde_json::{Map, Value, json};

const SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// How an HTTP body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyType {
    /// `application/json`.
    Json,
    /// `multipart/form-data`.
    FormData,
    /// Plain text.
    Text,
}

impl BodyType {
    fn as_str(self) -> &'static str {
        match self {
            BodyType::Json => "json",
            BodyType::FormData => "form-data",
            BodyType::Text => "text",
        }
    }
}

#[derive(Debug, Clone)]
enum Input {
    Query {
        method: String,
        query: Map<String, Value>,
        headers: Map<String, Value>,
    },
    Body {
        method: String,
        body_type: BodyType,
        body: Value,
        query: Map<String, Value>,
        headers: Map<String, Value>,
    },
    Mcp {
        tool: String,
        description: Option<String>,
        input_schema: Value,
        example: Option<Value>,
        transport: Option<String>,
    },
}

/// A `bazaar` declaration of one endpoint, built with the constructors
/// below and placed in a 402 answer's `extensions`.
///
/// ```
/// use serde_json::json;
/// use paywire_bazaar::Declaration;
///
/// let declaration = Declaration::get()
///     .query_param("city", "San Francisco")
///     .output_json(json!({"city": "San Francisco", "temperature": 60}));
/// let (key, value) = declaration.into_extension();
/// assert_eq!(key, "bazaar");
/// assert_eq!(value["info"]["input"]["method"], "GET");
/// ```
#[derive(Debug, Clone)]
pub struct Declaration {
    input: Input,
    output: Option<(String, Option<Value>)>,
}

impl Declaration {
    /// An HTTP endpoint read with `method` (`GET`, `HEAD` or `DELETE`).
    pub fn query_method(method: &str) -> Self {
        Self {
            input: Input::Query {
                method: method.to_ascii_uppercase(),
                query: Map::new(),
                headers: Map::new(),
            },
            output: None,
        }
    }

    /// `GET` with query parameters.
    pub fn get() -> Self {
        Self::query_method("GET")
    }

    /// An HTTP endpoint taking a body with `method` (`POST`, `PUT` or `PATCH`).
    pub fn body_method(method: &str, body_type: BodyType, example: Value) -> Self {
        Self {
            input: Input::Body {
                method: method.to_ascii_uppercase(),
                body_type,
                body: example,
                query: Map::new(),
                headers: Map::new(),
            },
            output: None,
        }
    }

    /// `POST` with a JSON body like `example`.
    pub fn post_json(example: Value) -> Self {
        Self::body_method("POST", BodyType::Json, example)
    }

    /// An MCP tool named `tool` whose arguments follow `input_schema`.
    pub fn mcp_tool(tool: impl Into<String>, input_schema: Value) -> Self {
        Self {
            input: Input::Mcp {
                tool: tool.into(),
                description: None,
                input_schema,
                example: None,
                transport: None,
            },
            output: None,
        }
    }

    /// An example query parameter (HTTP endpoints).
    pub fn query_param(mut self, name: impl Into<String>, example: impl Into<String>) -> Self {
        if let Input::Query { query, .. } | Input::Body { query, .. } = &mut self.input {
            query.insert(name.into(), Value::String(example.into()));
        }
        self
    }

    /// An example request header (HTTP endpoints).
    pub fn header(mut self, name: impl Into<String>, example: impl Into<String>) -> Self {
        if let Input::Query { headers, .. } | Input::Body { headers, .. } = &mut self.input {
            headers.insert(name.into(), Value::String(example.into()));
        }
        self
    }

    /// The MCP tool's description and example arguments.
    pub fn tool_details(mut self, description: impl Into<String>, example: Option<Value>) -> Self {
        if let Input::Mcp {
            description: d,
            example: e,
            ..
        } = &mut self.input
        {
            *d = Some(description.into());
            *e = example;
        }
        self
    }

    /// The MCP transport (`streamable-http`, the default, or `sse`).
    pub fn transport(mut self, name: impl Into<String>) -> Self {
        if let Input::Mcp { transport, .. } = &mut self.input {
            *transport = Some(name.into());
        }
        self
    }

    /// The response: a JSON value like `example`.
    pub fn output_json(self, example: Value) -> Self {
        self.output("json", Some(example))
    }

    /// The response's type (`json`, `text`, ...) and an optional example.
    pub fn output(mut self, kind: impl Into<String>, example: Option<Value>) -> Self {
        self.output = Some((kind.into(), example));
        self
    }

    fn info(&self) -> Value {
        let mut input = Map::new();
        let non_empty =
            |map: &Map<String, Value>| (!map.is_empty()).then(|| Value::Object(map.clone()));
        match &self.input {
            Input::Query {
                method,
                query,
                headers,
            } => {
                input.insert("type".into(), json!("http"));
                input.insert("method".into(), json!(method));
                if let Some(q) = non_empty(query) {
                    input.insert("queryParams".into(), q);
                }
                if let Some(h) = non_empty(headers) {
                    input.insert("headers".into(), h);
                }
            }
            Input::Body {
                method,
                body_type,
                body,
                query,
                headers,
            } => {
                input.insert("type".into(), json!("http"));
                input.insert("method".into(), json!(method));
                input.insert("bodyType".into(), json!(body_type.as_str()));
                input.insert("body".into(), body.clone());
                if let Some(q) = non_empty(query) {
                    input.insert("queryParams".into(), q);
                }
                if let Some(h) = non_empty(headers) {
                    input.insert("headers".into(), h);
                }
            }
            Input::Mcp {
                tool,
                description,
                input_schema,
                example,
                transport,
            } => {
                input.insert("type".into(), json!("mcp"));
                input.insert("toolName".into(), json!(tool));
                if let Some(d) = description {
                    input.insert("description".into(), json!(d));
                }
                if let Some(t) = transport {
                    input.insert("transport".into(), json!(t));
                }
                input.insert("inputSchema".into(), input_schema.clone());
                if let Some(e) = example {
                    input.insert("example".into(), e.clone());
                }
            }
        }
        let mut info = Map::new();
        info.insert("input".into(), Value::Object(input));
        if let Some((kind, example)) = &self.output {
            let mut output = Map::new();
            output.insert("type".into(), json!(kind));
            if let Some(example) = example {
                output.insert("example".into(), example.clone());
            }
            info.insert("output".into(), Value::Object(output));
        }
        Value::Object(info)
    }

    fn schema(&self) -> Value {
        let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
        let input = match &self.input {
            Input::Query { query, .. } => {
                let mut query_schema =
                    json!({"type": "object", "additionalProperties": {"type": "string"}});
                if !query.is_empty() {
                    let names: Vec<&String> = query.keys().collect();
                    let properties: Map<String, Value> = names
                        .iter()
                        .map(|n| ((*n).clone(), json!({"type": "string"})))
                        .collect();
                    query_schema =
                        json!({"type": "object", "properties": properties, "required": names});
                }
                json!({
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "const": "http"},
                        "method": {"type": "string", "enum": ["GET", "HEAD", "DELETE"]},
                        "queryParams": query_schema,
                        "headers": string_map,
                        "pathParams": string_map,
                    },
                    "required": ["type", "method"],
                    "additionalProperties": false
                })
            }
            Input::Body { .. } => json!({
                "type": "object",
                "properties": {
                    "type": {"type": "string", "const": "http"},
                    "method": {"type": "string", "enum": ["POST", "PUT", "PATCH"]},
                    "bodyType": {"type": "string", "enum": ["json", "form-data", "text"]},
                    "body": {"type": ["object", "array", "string"]},
                    "queryParams": string_map,
                    "headers": string_map,
                    "pathParams": string_map,
                },
                "required": ["type", "method", "bodyType", "body"],
                "additionalProperties": false
            }),
            Input::Mcp { .. } => json!({
                "type": "object",
                "properties": {
                    "type": {"type": "string", "const": "mcp"},
                    "toolName": {"type": "string"},
                    "description": {"type": "string"},
                    "transport": {"type": "string", "enum": ["streamable-http", "sse"]},
                    "inputSchema": {"type": "object"},
                    "example": {"type": "object"}
                },
                "required": ["type", "toolName", "inputSchema"],
                "additionalProperties": false
            }),
        };
        json!({
            "$schema": SCHEMA_DIALECT,
            "type": "object",
            "properties": {
                "input": input,
                "output": {
                    "type": "object",
                    "properties": {"type": {"type": "string"}, "example": {}},
                    "required": ["type"]
                }
            },
            "required": ["input"]
        })
    }

    /// The `(key, value)` pair to put in a 402 answer's `extensions`:
    /// `("bazaar", {info, schema})`.
    pub fn into_extension(self) -> (String, Value) {
        let value = json!({"info": self.info(), "schema": self.schema()});
        (BAZAAR.to_owned(), value)
    }

    /// Adds the declaration to an `extensions` map.
    pub fn insert_into(self, extensions: &mut Extensions) {
        let (key, value) = self.into_extension();
        extensions.0.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::validate;

    #[test]
    fn every_kind_validates_against_its_own_schema() {
        let declarations = [
            Declaration::get()
                .query_param("city", "Paris")
                .header("x-units", "metric")
                .output_json(json!({"temperature": 21})),
            Declaration::query_method("delete"),
            Declaration::post_json(json!({"query": "example"})).output("text", None),
            Declaration::body_method("PUT", BodyType::Text, json!("hello")),
            Declaration::mcp_tool(
                "financial_analysis",
                json!({"type": "object", "properties": {"ticker": {"type": "string"}}, "required": ["ticker"]}),
            )
            .tool_details("Analysis", Some(json!({"ticker": "AAPL"})))
            .transport("sse"),
        ];
        for declaration in declarations {
            let (key, value) = declaration.into_extension();
            assert_eq!(key, "bazaar");
            assert_eq!(
                validate(&value["info"], &value["schema"]),
                Ok(()),
                "{value}"
            );
        }
    }

    #[test]
    fn matches_the_specification_get_example() {
        let (_, value) = Declaration::get()
            .query_param("city", "San Francisco")
            .output_json(json!({"city": "San Francisco", "weather": "foggy", "temperature": 60}))
            .into_extension();
        assert_eq!(
            value["info"],
            json!({
                "input": {"type": "http", "method": "GET", "queryParams": {"city": "San Francisco"}},
                "output": {"type": "json", "example": {"city": "San Francisco", "weather": "foggy", "temperature": 60}}
            })
        );
        assert_eq!(value["schema"]["$schema"], SCHEMA_DIALECT);
        assert_eq!(
            value["schema"]["properties"]["input"]["properties"]["queryParams"]["required"],
            json!(["city"])
        );
    }
}
