//! A JSON Schema (draft 2020-12) validator for the keywords discovery
//! schemas use.
//!
//! Facilitators must check a declaration's `info` against its `schema`
//! before cataloging it. Declarations are small and their schemas use a
//! handful of keywords, so this evaluates those (`type`, `const`, `enum`,
//! `properties`, `required`, `additionalProperties`, `items`, the length,
//! size and range bounds, `allOf`/`anyOf`/`oneOf`/`not`) and treats
//! annotations (`description`, `format`, `examples`, ...) as the standard
//! does. A keyword that would change the outcome but is not evaluated here
//! (`$ref`, `pattern`, `if`, ...) makes the schema unusable rather than being
//! skipped: an unchecked constraint must never pass as a checked one.

use serde_json::{Map, Value};

/// Why a value does not satisfy a schema, or the schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The value breaks a constraint at the given JSON pointer.
    #[error("{path}: {message}")]
    Invalid {
        /// JSON pointer of the offending value (`""` for the root).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The schema uses something this validator does not evaluate, or is
    /// not a schema at all.
    #[error("unsupported schema: {0}")]
    Unsupported(String),
}

const MAX_DEPTH: usize = 32;

/// Checks `value` against `schema`.
pub fn validate(value: &Value, schema: &Value) -> Result<(), SchemaError> {
    check(value, schema, &mut String::new(), 0)
}

fn invalid(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

const UNSUPPORTED: &[&str] = &[
    "$ref",
    "$dynamicRef",
    "pattern",
    "patternProperties",
    "propertyNames",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "prefixItems",
    "contains",
    "unevaluatedProperties",
    "unevaluatedItems",
    "multipleOf",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

fn check(
    value: &Value,
    schema: &Value,
    path: &mut String,
    depth: usize,
) -> Result<(), SchemaError> {
    if depth > MAX_DEPTH {
        return Err(SchemaError::Unsupported(
            "nested deeper than 32 levels".into(),
        ));
    }
    let schema = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(invalid(path, "no value is allowed here")),
        Value::Object(schema) => schema,
        _ => {
            return Err(SchemaError::Unsupported(
                "a schema must be an object or a boolean".into(),
            ));
        }
    };
    if let Some(keyword) = UNSUPPORTED.iter().find(|k| schema.contains_key(**k)) {
        return Err(SchemaError::Unsupported(format!(
            "keyword {keyword:?} is not evaluated"
        )));
    }
    if let Some(types) = schema.get("type") {
        check_type(value, types, path)?;
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        return Err(invalid(path, format!("must equal {expected}")));
    }
    if let Some(options) = schema.get("enum") {
        let Value::Array(options) = options else {
            return Err(SchemaError::Unsupported("enum must be an array".into()));
        };
        if !options.contains(value) {
            return Err(invalid(
                path,
                format!("must be one of {}", Value::Array(options.clone())),
            ));
        }
    }
    check_bounds(value, schema, path)?;
    if let Value::Object(object) = value {
        check_object(object, schema, path, depth)?;
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            let len = path.len();
            path.push('/');
            path.push_str(&index.to_string());
            check(item, item_schema, path, depth + 1)?;
            path.truncate(len);
        }
    }
    check_combinators(value, schema, path, depth)
}

fn check_type(value: &Value, types: &Value, path: &str) -> Result<(), SchemaError> {
    let matches = |name: &str| match name {
        "null" => Ok(value.is_null()),
        "boolean" => Ok(value.is_boolean()),
        "object" => Ok(value.is_object()),
        "array" => Ok(value.is_array()),
        "string" => Ok(value.is_string()),
        "number" => Ok(value.is_number()),
        "integer" => Ok(value.as_i64().is_some()
            || value.as_u64().is_some()
            || value.as_f64().is_some_and(|f| f.fract() == 0.0)),
        other => Err(SchemaError::Unsupported(format!("unknown type {other:?}"))),
    };
    let ok = match types {
        Value::String(name) => matches(name)?,
        Value::Array(names) => {
            let mut any = false;
            for name in names {
                let Value::String(name) = name else {
                    return Err(SchemaError::Unsupported(
                        "type entries must be strings".into(),
                    ));
                };
                any |= matches(name)?;
            }
            any
        }
        _ => {
            return Err(SchemaError::Unsupported(
                "type must be a string or an array".into(),
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(path, format!("must be of type {types}")))
    }
}

fn bound(schema: &Map<String, Value>, key: &str) -> Result<Option<f64>, SchemaError> {
    match schema.get(key) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| SchemaError::Unsupported(format!("{key} must be a number"))),
    }
}

// Lengths are bounded by the body size limit, far below f64's exact range.
#[allow(clippy::cast_precision_loss)]
fn check_bounds(value: &Value, schema: &Map<String, Value>, path: &str) -> Result<(), SchemaError> {
    let length = match value {
        Value::String(text) => Some((text.chars().count() as f64, "minLength", "maxLength")),
        Value::Array(items) => Some((items.len() as f64, "minItems", "maxItems")),
        _ => None,
    };
    if let Some((length, min_key, max_key)) = length {
        if bound(schema, min_key)?.is_some_and(|min| length < min) {
            return Err(invalid(path, format!("{min_key} not met")));
        }
        if bound(schema, max_key)?.is_some_and(|max| length > max) {
            return Err(invalid(path, format!("{max_key} exceeded")));
        }
    }
    if let Some(number) = value.as_f64() {
        let checks = [
            (
                "minimum",
                bound(schema, "minimum")?.is_some_and(|b| number < b),
            ),
            (
                "maximum",
                bound(schema, "maximum")?.is_some_and(|b| number > b),
            ),
            (
                "exclusiveMinimum",
                bound(schema, "exclusiveMinimum")?.is_some_and(|b| number <= b),
            ),
            (
                "exclusiveMaximum",
                bound(schema, "exclusiveMaximum")?.is_some_and(|b| number >= b),
            ),
        ];
        if let Some((name, _)) = checks.iter().find(|(_, broken)| *broken) {
            return Err(invalid(path, format!("{name} not met")));
        }
    }
    Ok(())
}

fn check_object(
    object: &Map<String, Value>,
    schema: &Map<String, Value>,
    path: &mut String,
    depth: usize,
) -> Result<(), SchemaError> {
    if let Some(required) = schema.get("required") {
        let Value::Array(required) = required else {
            return Err(SchemaError::Unsupported("required must be an array".into()));
        };
        for name in required {
            let Value::String(name) = name else {
                return Err(SchemaError::Unsupported(
                    "required entries must be strings".into(),
                ));
            };
            if !object.contains_key(name) {
                return Err(invalid(path, format!("missing required property {name:?}")));
            }
        }
    }
    let properties = match schema.get("properties") {
        None => None,
        Some(Value::Object(properties)) => Some(properties),
        Some(_) => {
            return Err(SchemaError::Unsupported(
                "properties must be an object".into(),
            ));
        }
    };
    for (name, member) in object {
        let len = path.len();
        path.push('/');
        path.push_str(&name.replace('~', "~0").replace('/', "~1"));
        let outcome = match properties.and_then(|p| p.get(name)) {
            Some(member_schema) => check(member, member_schema, path, depth + 1),
            None => match schema.get("additionalProperties") {
                Some(additional) => {
                    check(member, additional, path, depth + 1).map_err(|e| match e {
                        SchemaError::Invalid { path, message }
                            if message == "no value is allowed here" =>
                        {
                            SchemaError::Invalid {
                                path,
                                message: "property not allowed".into(),
                            }
                        }
                        other => other,
                    })
                }
                None => Ok(()),
            },
        };
        path.truncate(len);
        outcome?;
    }
    Ok(())
}

fn check_combinators(
    value: &Value,
    schema: &Map<String, Value>,
    path: &mut String,
    depth: usize,
) -> Result<(), SchemaError> {
    let list = |key: &str| -> Result<Option<&Vec<Value>>, SchemaError> {
        match schema.get(key) {
            None => Ok(None),
            Some(Value::Array(list)) if !list.is_empty() => Ok(Some(list)),
            Some(_) => Err(SchemaError::Unsupported(format!(
                "{key} must be a non-empty array"
            ))),
        }
    };
    if let Some(all) = list("allOf")? {
        for sub in all {
            check(value, sub, path, depth + 1)?;
        }
    }
    let passing = |subs: &Vec<Value>, path: &mut String| -> Result<usize, SchemaError> {
        let mut count = 0;
        for sub in subs {
            match check(value, sub, path, depth + 1) {
                Ok(()) => count += 1,
                Err(SchemaError::Invalid { .. }) => {}
                Err(unsupported) => return Err(unsupported),
            }
        }
        Ok(count)
    };
    if let Some(any) = list("anyOf")?
        && passing(any, path)? == 0
    {
        return Err(invalid(path, "matches none of anyOf"));
    }
    if let Some(one) = list("oneOf")?
        && passing(one, path)? != 1
    {
        return Err(invalid(path, "must match exactly one of oneOf"));
    }
    if let Some(not) = schema.get("not") {
        match check(value, not, path, depth + 1) {
            Ok(()) => return Err(invalid(path, "matches a schema under not")),
            Err(SchemaError::Invalid { .. }) => {}
            Err(unsupported) => return Err(unsupported),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_required_additional_and_nested() {
        let schema = json!({
            "type": "object",
            "properties": {
                "input": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "const": "http"},
                        "method": {"type": "string", "enum": ["GET", "HEAD"]},
                        "queryParams": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                    "required": ["type", "method"],
                    "additionalProperties": false
                }
            },
            "required": ["input"]
        });
        let ok =
            json!({"input": {"type": "http", "method": "GET", "queryParams": {"city": "Paris"}}});
        assert_eq!(validate(&ok, &schema), Ok(()));
        let cases = [
            (json!({}), "", "missing required property \"input\""),
            (
                json!({"input": {"type": "mcp", "method": "GET"}}),
                "/input/type",
                "must equal \"http\"",
            ),
            (
                json!({"input": {"type": "http", "method": "POST"}}),
                "/input/method",
                "must be one of",
            ),
            (
                json!({"input": {"type": "http", "method": "GET", "x": 1}}),
                "/input/x",
                "property not allowed",
            ),
            (
                json!({"input": {"type": "http", "method": "GET", "queryParams": {"n": 3}}}),
                "/input/queryParams/n",
                "must be of type",
            ),
        ];
        for (value, path, message) in cases {
            match validate(&value, &schema) {
                Err(SchemaError::Invalid {
                    path: p,
                    message: m,
                }) => {
                    assert_eq!(p, path, "{value}");
                    assert!(m.starts_with(message), "{m} for {value}");
                }
                other => panic!("{value}: {other:?}"),
            }
        }
    }

    #[test]
    fn unevaluated_constraints_are_refused_not_skipped() {
        let schema = json!({"type": "string", "pattern": "^a+$"});
        assert!(matches!(
            validate(&json!("b"), &schema),
            Err(SchemaError::Unsupported(_))
        ));
        let schema = json!({"properties": {"x": {"$ref": "#/$defs/x"}}});
        assert!(matches!(
            validate(&json!({"x": 1}), &schema),
            Err(SchemaError::Unsupported(_))
        ));
    }

    #[test]
    fn bounds_combinators_and_annotations() {
        let schema = json!({"type": "string", "minLength": 2, "maxLength": 3, "format": "uri", "description": "d"});
        assert!(validate(&json!("ab"), &schema).is_ok());
        assert!(validate(&json!("a"), &schema).is_err());
        assert!(validate(&json!("abcd"), &schema).is_err());
        let schema = json!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1}]});
        assert!(validate(&json!("x"), &schema).is_ok());
        assert!(validate(&json!(2), &schema).is_ok());
        assert!(validate(&json!(0), &schema).is_err());
        let schema = json!({"oneOf": [{"type": "number"}, {"type": "integer"}]});
        assert!(validate(&json!(1.5), &schema).is_ok());
        assert!(
            validate(&json!(1), &schema).is_err(),
            "an integer is also a number"
        );
        assert!(validate(&json!(1), &json!({"not": {"type": "integer"}})).is_err());
        assert!(
            validate(
                &json!([1, "a"]),
                &json!({"type": "array", "items": {"type": "integer"}})
            )
            .is_err()
        );
        assert!(validate(&json!(null), &json!(false)).is_err());
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut schema = json!({"type": "object"});
        let mut value = json!(1);
        for _ in 0..40 {
            schema = json!({"type": "object", "properties": {"a": schema}});
            value = json!({"a": value});
        }
        assert!(matches!(
            validate(&value, &schema),
            Err(SchemaError::Unsupported(_))
        ));
    }
}
