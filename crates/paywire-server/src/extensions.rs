//! The extensions a route's 402 offers: its own declarations, completed per
//! request, and the `payment-identifier` advertisement.

use std::collections::HashMap;

use paywire_core::Extensions;
use paywire_core::extensions::{BAZAAR, PAYMENT_IDENTIFIER};
use serde_json::Value;

use crate::config::Route;

/// The route's 402 extensions, with `payment-identifier` added unless the
/// route declares its own or `advertise_payment_identifier` is off.
pub(crate) fn offered_extensions(
    route: &Route,
    params: &HashMap<String, String>,
    advertise_payment_identifier: bool,
) -> Option<Extensions> {
    let mut extensions = route_extensions(route, params);
    if advertise_payment_identifier {
        extensions
            .get_or_insert_with(Extensions::new)
            .0
            .entry(PAYMENT_IDENTIFIER)
            .or_insert_with(payment_identifier_declaration);
    }
    extensions
}

/// The `payment-identifier` declaration of a 402 (the extension's spec):
/// ids are optional, 16 to 128 characters.
fn payment_identifier_declaration() -> Value {
    serde_json::json!({
        "info": {"required": false},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "required": {"type": "boolean"},
                "id": {"type": "string", "minLength": 16, "maxLength": 128}
            },
            "required": ["required"]
        }
    })
}

/// The route's own 402 extensions. A `bazaar` declaration (plain JSON under
/// the core's extension key: the server needs no bazaar crate) of an HTTP
/// input on a route with parameters gets `routeTemplate` and this request's
/// `pathParams`, so that catalogs keep one entry for all the route's URLs.
fn route_extensions(route: &Route, params: &HashMap<String, String>) -> Option<Extensions> {
    let mut extensions = route.extensions.clone()?;
    if let Some(template) = route.pattern.template()
        && let Some(Value::Object(bazaar)) = extensions.0.get_mut(BAZAAR)
    {
        let Some(Value::Object(input)) = bazaar
            .get_mut("info")
            .and_then(|info| info.get_mut("input"))
        else {
            return Some(extensions);
        };
        // MCP tools are keyed by URL and tool name; only HTTP inputs carry
        // path parameters.
        if input.get("type").and_then(Value::as_str) == Some("http") {
            let values: serde_json::Map<String, Value> = params
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            input.insert("pathParams".into(), Value::Object(values));
            bazaar.insert("routeTemplate".into(), Value::String(template.to_owned()));
        }
    }
    Some(extensions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_http_declarations_get_template_and_path_params_mcp_ones_do_not() {
        let params: HashMap<String, String> = [("id".to_owned(), "42".to_owned())].into();
        let http =
            serde_json::json!({"info": {"input": {"type": "http", "method": "GET"}}, "schema": {}});
        let route = Route::new("GET /users/:id")
            .unwrap()
            .extension("bazaar", http);
        let extensions = route_extensions(&route, &params).unwrap();
        assert_eq!(extensions.0["bazaar"]["routeTemplate"], "/users/:id");
        assert_eq!(
            extensions.0["bazaar"]["info"]["input"]["pathParams"],
            serde_json::json!({"id": "42"})
        );

        let mcp = serde_json::json!({"info": {"input": {"type": "mcp", "toolName": "t", "inputSchema": {}}}, "schema": {}});
        let route = Route::new("POST /mcp/:tenant")
            .unwrap()
            .extension("bazaar", mcp.clone());
        let extensions = route_extensions(&route, &params).unwrap();
        assert_eq!(extensions.0["bazaar"], mcp, "left as declared");

        let fixed = Route::new("GET /weather").unwrap();
        assert!(route_extensions(&fixed, &params).is_none());
    }
}
