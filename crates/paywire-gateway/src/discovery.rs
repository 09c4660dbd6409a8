//! `[routes.discovery]`: the route's bazaar declaration, so that
//! facilitators with a discovery catalog list it once someone has paid.

use crate::{DiscoveryEntry, GatewayError, invalid};

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
    if entry.output_type.is_some() || entry.output_example.is_some() {
        declaration = declaration.output(
            entry.output_type.clone().unwrap_or_else(|| "json".into()),
            entry.output_example.clone(),
        );
    }
    Ok(declaration.into_extension())
}
