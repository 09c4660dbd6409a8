//! The HTTP form of the gate's answers (402, 400, 409, 413, 500, 502, 503)
//! and the headers of every paid answer.

use axum::body::Body;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use paywire_core::codec::{PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, encode_header};
use paywire_core::{PaymentRequired, SettleResponse};

use crate::gate::{ErrorRefusal, Refusal};

/// Value of `Access-Control-Expose-Headers` on every x402 answer.
pub(crate) const EXPOSE: &str = "PAYMENT-REQUIRED, PAYMENT-RESPONSE";

/// Adds `Cache-Control: no-store` and the CORS expose header.
pub(crate) fn protect(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));

    headers.insert(
        http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE),
    );
}

fn header_value(text: String) -> HeaderValue {
    // Base64 output is always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Adds `PAYMENT-RESPONSE`.
pub(crate) fn add_receipt(headers: &mut HeaderMap, receipt: &SettleResponse) {
    headers.insert(
        HeaderName::from_static("payment-response"),
        header_value(encode_header(receipt)),
    );
    debug_assert_eq!(
        PAYMENT_RESPONSE_HEADER.to_ascii_lowercase(),
        "payment-response"
    );
}

/// Whether the client prefers an HTML page.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.to_ascii_lowercase().contains("text/html"))
}

/// A 402 with `PAYMENT-REQUIRED`, and an optional receipt; the body is the
/// paywall page when one is given, else the JSON of `required`.
pub(crate) fn payment_required(
    required: &PaymentRequired,
    paywall: Option<String>,
    receipt: Option<&SettleResponse>,
) -> Response<Body> {
    let (content_type, body) = if let Some(page) = paywall {
        ("text/html; charset=utf-8", Body::from(page))
    } else {
        (
            "application/json",
            Body::from(serde_json::to_vec(required).unwrap_or_default()),
        )
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        HeaderName::from_static("payment-required"),
        header_value(encode_header(required)),
    );
    debug_assert_eq!(
        PAYMENT_REQUIRED_HEADER.to_ascii_lowercase(),
        "payment-required"
    );
    if let Some(receipt) = receipt {
        add_receipt(headers, receipt);
        if receipt.is_pending() {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
    }
    protect(headers);
    response
}

/// A JSON error `{error, message}` with `status`, marked uncacheable.
pub fn json_error(status: StatusCode, error: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &serde_json::json!({ "error": error, "message": message }),
    )
}

/// `body` as JSON with `status`, marked uncacheable.
fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    protect(response.headers_mut());
    response
}

/// The status `code`, or 500 when it is not one.
pub(crate) fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An [`ErrorRefusal`] as JSON, with `Retry-After` when it has one.
fn error_response(refusal: &ErrorRefusal) -> Response<Body> {
    let mut response = json_response(status_of(refusal.status), &refusal.body());
    if let Some(seconds) = refusal.retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The HTTP answer of a [`Refusal`]; `paywall` renders a 402 as a page for
/// browsers.
pub(crate) fn refusal_response(
    refusal: Refusal,
    paywall: impl FnOnce(&PaymentRequired) -> Option<String>,
) -> Response<Body> {
    match refusal {
        Refusal::PaymentRequired { required, receipt } => {
            let page = paywall(&required);
            payment_required(&required, page, receipt.as_deref())
        }
        Refusal::Error(error) => error_response(&error),
        Refusal::Custom(custom) => {
            let mut response = Response::new(Body::from(custom.body));
            *response.status_mut() = status_of(custom.status);
            set_headers(response.headers_mut(), custom.headers);
            protect(response.headers_mut());
            response
        }
    }
}

/// Sets `(name, value)` pairs as headers: the first value of a name replaces
/// what was there, later ones are added. Invalid pairs are dropped (logged).
pub(crate) fn set_headers(headers: &mut HeaderMap, pairs: Vec<(String, String)>) {
    let mut set: Vec<HeaderName> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let (Ok(header), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            tracing::warn!(header = %name, "an invalid header was dropped");
            continue;
        };
        if set.contains(&header) {
            headers.append(header, value);
        } else {
            headers.insert(header.clone(), value);
            set.push(header);
        }
    }
}
