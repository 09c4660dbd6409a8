//! The facilitator's side: turning a settled payment's echoed `bazaar`
//! extension into a catalog entry, or a reason it was refused.

use paywire_core::extensions::BAZAAR;
use paywire_core::{PaymentPayload, PaymentRequirements, codec};
use serde_json::{Map, Value, json};

use crate::catalog::DiscoveredResource;
use crate::sanitize::{is_valid_route_template, sanitize_resource};
use crate::schema::validate;

/// Why a declaration was not cataloged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExtractError(pub String);

/// What the facilitator tells the client about cataloging, in the
/// `EXTENSION-RESPONSES` header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogStatus {
    /// Validated and cataloged.
    Success,
    /// Validated; cataloged later, once its origin confirms it.
    Processing,
    /// Refused, with the reason.
    Rejected(String),
}

/// The `EXTENSION-RESPONSES` header value for the `bazaar` outcome: base64
/// of `{"bazaar": {"status": ..., "rejectedReason"?: ...}}`.
pub fn extension_responses_header(status: &CatalogStatus) -> String {
    let bazaar = match status {
        CatalogStatus::Success => json!({"status": "success"}),
        CatalogStatus::Processing => json!({"status": "processing"}),
        CatalogStatus::Rejected(reason) => json!({"status": "rejected", "rejectedReason": reason}),
    };
    codec::encode_header(&json!({ BAZAAR: bazaar }))
}

const HTTP_QUERY_METHODS: &[&str] = &["GET", "HEAD", "DELETE"];
const HTTP_BODY_METHODS: &[&str] = &["POST", "PUT", "PATCH"];
const BODY_TYPES: &[&str] = &["json", "form-data", "text"];
const MAX_TOOL_NAME: usize = 128;

fn reject(message: impl Into<String>) -> ExtractError {
    ExtractError(message.into())
}

/// Checks the parts of `info` the catalog relies on, whatever the supplied
/// schema allowed (a schema of `{}` accepts anything); returns the resource
/// type.
fn check_structure(info: &Value) -> Result<&'static str, ExtractError> {
    let input = info
        .get("input")
        .and_then(Value::as_object)
        .ok_or_else(|| reject("info.input must be an object"))?;
    let text = |key: &str| input.get(key).and_then(Value::as_str);
    match text("type") {
        Some("http") => {
            let method = text("method").ok_or_else(|| reject("info.input.method is missing"))?;
            if input.contains_key("bodyType") {
                if !HTTP_BODY_METHODS.contains(&method) {
                    return Err(reject(format!("method {method:?} cannot carry a body")));
                }
                if !text("bodyType").is_some_and(|t| BODY_TYPES.contains(&t)) {
                    return Err(reject(
                        "info.input.bodyType must be json, form-data or text",
                    ));
                }
                if !input.contains_key("body") {
                    return Err(reject("info.input.body is missing"));
                }
            } else if !HTTP_QUERY_METHODS.contains(&method) {
                return Err(reject(format!(
                    "method {method:?} needs bodyType and body, or is not an HTTP method"
                )));
            }
            Ok("http")
        }
        Some("mcp") => {
            if !text("toolName").is_some_and(|t| !t.is_empty() && t.len() <= MAX_TOOL_NAME) {
                return Err(reject("info.input.toolName must be a non-empty string"));
            }
            if !input.get("inputSchema").is_some_and(Value::is_object) {
                return Err(reject("info.input.inputSchema must be an object"));
            }
            Ok("mcp")
        }
        _ => Err(reject("info.input.type must be \"http\" or \"mcp\"")),
    }
}

/// Whether the concrete `path` is an instance of `template`: as many
/// segments, literal ones equal, `:param` ones non-empty. Without this a
/// template could key an entry under any path of the origin.
fn template_matches(template: &str, path: &str) -> bool {
    let (mut template, mut path) = (template.split('/'), path.split('/'));
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with(':') && !p.is_empty() => {}
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
}

/// The `routeTemplate` to key `url` under: valid, and matching its path.
fn usable_template<'a>(url: &str, template: Option<&'a str>) -> Option<&'a str> {
    let path = url::Url::parse(url).ok()?.path().to_owned();
    template.filter(|t| is_valid_route_template(t) && template_matches(t, &path))
}

/// The URL a resource is cataloged under: the concrete URL without query
/// or fragment, or, with a usable `routeTemplate`, its origin plus the
/// template (so `/users/1` and `/users/2` are one entry).
fn catalog_url(url: &str, template: Option<&str>) -> Result<String, ExtractError> {
    let mut parsed = url::Url::parse(url).map_err(|e| reject(format!("resource url: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(reject("resource url must be http or https"));
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    if let Some(template) = template {
        parsed.set_path(template);
    }
    Ok(parsed.to_string())
}

/// Reads the `bazaar` extension a client echoed in `payload` for a payment
/// settled against `requirements` at `now` (Unix seconds): `None` when the
/// payload carries none, else the catalog entry or why it was refused.
///
/// The declaration is validated against its own schema (as the
/// specification requires) and against the structure the catalog needs;
/// service metadata on the payload's `resource` goes through the soft-drop
/// rules; a `routeTemplate` that is invalid, or that the URL's path does
/// not match, is ignored.
pub fn extract(
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
    now: u64,
) -> Option<Result<DiscoveredResource, ExtractError>> {
    let declared = payload.extensions.as_ref()?.0.get(BAZAAR)?;
    Some(extract_declared(declared, payload, requirements, now))
}

fn extract_declared(
    declared: &Value,
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
    now: u64,
) -> Result<DiscoveredResource, ExtractError> {
    let info = declared
        .get("info")
        .filter(|i| i.is_object())
        .ok_or_else(|| reject("bazaar.info must be an object"))?;
    let schema = declared
        .get("schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| reject("bazaar.schema must be an object"))?;
    if schema.pointer("/properties/input").is_none() {
        return Err(reject("bazaar.schema must define the input property"));
    }
    validate(info, schema).map_err(|e| reject(format!("info failed schema validation: {e}")))?;
    let kind = check_structure(info)?;
    let resource = payload
        .resource
        .as_ref()
        .ok_or_else(|| reject("the payment names no resource"))?;
    let template = usable_template(
        &resource.url,
        declared.get("routeTemplate").and_then(Value::as_str),
    );
    let url = catalog_url(&resource.url, template)?;
    let clean = sanitize_resource(resource);
    let mut metadata = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            metadata.insert(key.to_owned(), value);
        }
    };
    put("description", clean.description.map(Value::String));
    put("mimeType", clean.mime_type.map(Value::String));
    put("serviceName", clean.service_name.map(Value::String));
    put("tags", clean.tags.map(|t| json!(t)));
    put("iconUrl", clean.icon_url.map(Value::String));
    let mut bazaar = Map::new();
    bazaar.insert("info".into(), info.clone());
    bazaar.insert("schema".into(), schema.clone());
    if let Some(template) = template {
        bazaar.insert("routeTemplate".into(), json!(template));
    }
    let mut extensions = Map::new();
    extensions.insert(BAZAAR.to_owned(), Value::Object(bazaar));
    Ok(DiscoveredResource {
        resource: url,
        kind: kind.to_owned(),
        x402_version: payload.x402_version,
        accepts: vec![requirements.clone()],
        last_updated: now,
        extensions: Some(Value::Object(extensions)),
        metadata: (!metadata.is_empty()).then_some(Value::Object(metadata)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declaration::Declaration;
    use paywire_core::{Extensions, ResourceInfo};

    fn requirements() -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:8453", "amount": "10000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60
        }))
        .unwrap()
    }

    fn payload(declared: Option<Value>, url: &str) -> PaymentPayload {
        let mut extensions = Extensions::new();
        if let Some(declared) = declared {
            extensions.0.insert(BAZAAR.into(), declared);
        }
        let mut resource = ResourceInfo::new(url);
        resource.service_name = Some("Weather Co".into());
        resource.icon_url = Some("http://127.0.0.1/x.png".into());
        PaymentPayload {
            x402_version: 2,
            payload: Default::default(),
            extensions: Some(extensions),
            resource: Some(resource),
            accepted: requirements(),
        }
    }

    #[test]
    fn a_declared_get_endpoint_becomes_an_entry() {
        let (_, declared) = Declaration::get()
            .query_param("city", "Paris")
            .into_extension();
        let entry = extract(
            &payload(
                Some(declared),
                "https://api.example.com/weather?city=Rome#x",
            ),
            &requirements(),
            7,
        )
        .unwrap()
        .unwrap();
        assert_eq!(entry.resource, "https://api.example.com/weather");
        assert_eq!(entry.kind, "http");
        assert_eq!(entry.last_updated, 7);
        assert_eq!(entry.accepts, vec![requirements()]);
        let metadata = entry.metadata.unwrap();
        assert_eq!(metadata["serviceName"], "Weather Co");
        assert!(
            metadata.get("iconUrl").is_none(),
            "an IP-literal icon is dropped"
        );
    }

    #[test]
    fn nothing_declared_is_not_an_error() {
        assert!(extract(&payload(None, "https://a.example/x"), &requirements(), 1).is_none());
    }

    #[test]
    fn refusals_name_their_reason() {
        let (_, good) = Declaration::get().into_extension();
        let mut wrong_method = good.clone();
        wrong_method["info"]["input"]["method"] = json!("POST");
        let mut permissive = good.clone();
        permissive["schema"] = json!({"properties": {"input": {}}});
        permissive["info"]["input"] = json!({"type": "ftp"});
        let cases = [
            (
                json!({"info": 1, "schema": {}}),
                "bazaar.info must be an object",
            ),
            (
                json!({"info": {"input": {}}, "schema": {"type": "object"}}),
                "bazaar.schema must define the input property",
            ),
            (wrong_method, "info failed schema validation"),
            (permissive, "info.input.type must be"),
        ];
        for (declared, reason) in cases {
            let error = extract(
                &payload(Some(declared.clone()), "https://a.example/x"),
                &requirements(),
                1,
            )
            .unwrap()
            .unwrap_err();
            assert!(error.0.starts_with(reason), "{declared}: {error}");
        }
        let error = extract(
            &payload(Some(good), "ftp://a.example/x"),
            &requirements(),
            1,
        )
        .unwrap()
        .unwrap_err();
        assert!(error.0.contains("http or https"));
    }

    #[test]
    fn route_templates_key_dynamic_routes_and_bad_ones_are_ignored() {
        let (_, mut declared) = Declaration::get().into_extension();
        declared["routeTemplate"] = json!("/users/:id");
        let entry = extract(
            &payload(Some(declared.clone()), "https://a.example/users/42"),
            &requirements(),
            1,
        )
        .unwrap()
        .unwrap();
        assert_eq!(entry.resource, "https://a.example/users/:id");
        for ignored in [
            "/users/%2e%2e/admin",
            "/admin/:id",
            "/users/:id/x",
            "/users",
        ] {
            declared["routeTemplate"] = json!(ignored);
            let entry = extract(
                &payload(Some(declared.clone()), "https://a.example/users/42"),
                &requirements(),
                1,
            )
            .unwrap()
            .unwrap();
            assert_eq!(entry.resource, "https://a.example/users/42", "{ignored}");
            assert!(
                entry.extensions.unwrap()["bazaar"]
                    .get("routeTemplate")
                    .is_none()
            );
        }
    }

    #[test]
    fn header_encodes_the_specification_examples() {
        assert_eq!(
            extension_responses_header(&CatalogStatus::Success),
            "eyJiYXphYXIiOnsic3RhdHVzIjoic3VjY2VzcyJ9fQ=="
        );
        let processing: Value =
            codec::decode_header(extension_responses_header(&CatalogStatus::Processing).as_bytes())
                .unwrap();
        assert_eq!(processing, json!({"bazaar": {"status": "processing"}}));
        assert_eq!(
            extension_responses_header(&CatalogStatus::Rejected(
                "info failed schema validation".into()
            )),
            "eyJiYXphYXIiOnsic3RhdHVzIjoicmVqZWN0ZWQiLCJyZWplY3RlZFJlYXNvbiI6ImluZm8gZmFpbGVkIHNjaGVtYSB2YWxpZGF0aW9uIn19"
        );
    }
}
