//! `[routes.discovery]`: the route's bazaar declaration, so that
//! facilitators with a discovery catalog list it once someone has paid.

use crate::{DiscoveryEntry, GatewayError, RouteEntry, invalid};

/// The HTTP gateway's declaration of a route: its `[routes.discovery]`.
pub(crate) fn http_declaration(
    at: &str,
    _index: usize,
    entry: &RouteEntry,
) -> Result<Option<(String, serde_json::Value)>, GatewayError> {
    entry
        .discovery
        .as_ref()
        .map(|discovery| declaration(at, entry.method.as_deref(), discovery))
        .transpose()
}

/// The bazaar declaration of a route's `[routes.discovery]`.
pub(crate) fn declaration(
    at: &str,
    method: Option<&str>,
    entry: &DiscoveryEntry,
) -> Result<(String, serde_json::Value), GatewayError> {
    use paywire_bazaar::{BodyType, Declaration};
    let Some(method) = method.map(str::to_ascii_uppercase) else {
        return Err(invalid(at, "discovery needs the route's `method`"));
    };
    let mut declaration = match method.as_str() {
        "GET" | "HEAD" | "DELETE" => {
            if entry.body_type.is_some() || entry.body_example.is_some() {
                return Err(invalid(
                    format!("{at}.discovery"),
                    format!("{method} takes no body_type or body_example"),
                ));
            }
            Declaration::query_method(&method)
        }
        "POST" | "PUT" | "PATCH" => {
            let body_type = match entry.body_type.as_deref() {
                None | Some("json") => BodyType::Json,
                Some("form-data") => BodyType::FormData,
                Some("text") => BodyType::Text,
                Some(other) => {
                    return Err(invalid(
                        format!("{at}.discovery.body_type"),
                        format!("{other:?}: use json, form-data or text"),
                    ));
                }
            };
            let example = entry
                .body_example
                .clone()
                .unwrap_or_else(|| serde_json::json!({}));
            Declaration::body_method(&method, body_type, example)
        }
        other => {
            return Err(invalid(
                at,
                format!("discovery cannot describe method {other}"),
            ));
        }
    };
    for (name, example) in &entry.query_params {
        declaration = declaration.query_param(name, example);
    }
    for (name, example) in &entry.headers {
        declaration = declaration.header(name, example);
    }
    Ok(with_output(declaration, entry).into_extension())
}

/// `declaration` with the entry's output type and example, if it has them.
fn with_output(
    declaration: paywire_bazaar::Declaration,
    entry: &DiscoveryEntry,
) -> paywire_bazaar::Declaration {
    if entry.output_type.is_none() && entry.output_example.is_none() {
        return declaration;
    }
    declaration.output(
        entry.output_type.clone().unwrap_or_else(|| "json".into()),
        entry.output_example.clone(),
    )
}

/// The MCP bridge's declaration of a route with `[routes.discovery]`: its
/// tool (name, input schema, description, the query examples as example
/// arguments) and output. The HTTP declaration is checked too, so a
/// configuration is valid for both transports or for neither.
#[cfg(feature = "mcp")]
pub(crate) fn mcp_declaration(
    at: &str,
    tool: &crate::mcp::RouteTool,
    entry: &RouteEntry,
) -> Result<Option<(String, serde_json::Value)>, GatewayError> {
    let Some(discovery) = &entry.discovery else {
        return Ok(None);
    };
    declaration(at, entry.method.as_deref(), discovery)?;
    let example = (!discovery.query_params.is_empty()).then(|| {
        serde_json::Value::Object(
            discovery
                .query_params
                .iter()
                .map(|(name, value)| (name.clone(), value.clone().into()))
                .collect(),
        )
    });
    let declaration = paywire_bazaar::Declaration::mcp_tool(
        &tool.name,
        serde_json::Value::Object(tool.input_schema.clone()),
    )
    .tool_details(tool.description.clone(), example);
    Ok(Some(with_output(declaration, discovery).into_extension()))
}
