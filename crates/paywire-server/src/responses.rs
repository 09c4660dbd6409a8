//! Building the middleware's own answers (402, 400, 413, 500, 502).

use axum::body::Body;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use paywire_core::codec::{PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, encode_header};
use paywire_core::{PaymentRequired, SettleResponse};

use crate::paywall::{AssetInfo, paywall_html};

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

/// A 402 with `PAYMENT-REQUIRED`, and an optional receipt.
pub(crate) fn payment_required(
    required: &PaymentRequired,
    html: bool,
    assets: &dyn Fn(&paywire_core::PaymentRequirements) -> Option<AssetInfo>,
    networks: &paywire_core::NetworkDirectory,
    receipt: Option<&SettleResponse>,
) -> Response<Body> {
    let (content_type, body) = if html {
        (
            "text/html; charset=utf-8",
            Body::from(paywall_html(required, assets, networks)),
        )
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

/// A JSON error `{error, message}` with `status`.
pub(crate) fn json_error(status: StatusCode, error: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": error, "message": message });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    protect(response.headers_mut());
    response
}
