//! Redirects around a paid request. A signed payment stays valid until it is
//! settled or expires, so it must reach only the origin that asked for it:
//! the paid request is sent without following redirects, and the flow
//! follows them itself, re-sending the payment only within the same origin
//! and only while the server has not taken it.

use http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, LOCATION,
    PROXY_AUTHORIZATION, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, StatusCode};
use paywire_core::codec::{PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER};
use url::Url;

use crate::flow::Hop;

/// Whether `a` and `b` share scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Removes the credentials an HTTP client drops when a redirect leaves the
/// origin (the ones reqwest drops), and the payment.
fn strip_credentials(headers: &mut HeaderMap) {
    for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, WWW_AUTHENTICATE] {
        headers.remove(name);
    }
    headers.remove("cookie2");
    headers.remove(PAYMENT_SIGNATURE_HEADER);
}

/// The request a redirect `response` to `previous` leads to, as browsers
/// and reqwest build it (303, and 301/302 after a POST, become a GET without
/// body); `None` when `response` is not a redirect that can be followed.
pub(crate) fn next_hop(
    previous: &reqwest::Request,
    response: &reqwest::Response,
) -> Option<Hop<reqwest::Request>> {
    let to_get = match response.status() {
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => previous.method() == Method::POST,
        StatusCode::SEE_OTHER => true,
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => false,
        _ => return None,
    };
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    let url = response.url().join(location).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let mut request = previous.try_clone()?;
    if to_get {
        if request.method() != Method::HEAD {
            *request.method_mut() = Method::GET;
        }
        *request.body_mut() = None;
        for name in [
            CONTENT_TYPE,
            CONTENT_LENGTH,
            CONTENT_ENCODING,
            TRANSFER_ENCODING,
        ] {
            request.headers_mut().remove(name);
        }
    }
    let same = same_origin(previous.url(), &url);
    if same {
        request.headers_mut().remove(PAYMENT_SIGNATURE_HEADER);
    } else {
        strip_credentials(request.headers_mut());
    }
    *request.url_mut() = url;
    Some(Hop {
        request,
        carries_payment: same && !response.headers().contains_key(PAYMENT_RESPONSE_HEADER),
    })
}

/// Points a GET or HEAD `retry` at `challenged_at`, the URL whose 402 is
/// being paid, when the unpaid request was redirected there: the payment is
/// then sent where it was asked for, not to a URL that would redirect it
/// (say `http://` to `https://`). Other methods may have changed on the
/// way (a 303 turns a POST into a GET), so they are paid where they were
/// sent. Credentials are dropped when the origin changes.
pub(crate) fn pay_where_challenged(retry: &mut reqwest::Request, challenged_at: &Url) {
    if retry.url() == challenged_at || !matches!(*retry.method(), Method::GET | Method::HEAD) {
        return;
    }
    if !same_origin(retry.url(), challenged_at) {
        strip_credentials(retry.headers_mut());
    }
    *retry.url_mut() = challenged_at.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::ResponseBuilderExt;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn request(method: Method, at: &str) -> reqwest::Request {
        let mut request = reqwest::Request::new(method, url(at));
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, "Bearer user".parse().unwrap());
        headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        headers.insert(PAYMENT_SIGNATURE_HEADER, "signed".parse().unwrap());
        *request.body_mut() = Some("{}".into());
        request
    }

    fn redirect(status: u16, from: &str, location: &str, receipt: bool) -> reqwest::Response {
        let mut builder = http::Response::builder()
            .status(status)
            .url(url(from))
            .header(LOCATION, location);
        if receipt {
            builder = builder.header(PAYMENT_RESPONSE_HEADER, "e30=");
        }
        reqwest::Response::from(builder.body(Vec::<u8>::new()).unwrap())
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(same_origin(
            &url("https://a.test/x"),
            &url("https://a.test:443/y")
        ));
        assert!(!same_origin(
            &url("https://a.test/"),
            &url("http://a.test/")
        ));
        assert!(!same_origin(&url("http://a.test/"), &url("http://b.test/")));
        assert!(!same_origin(
            &url("http://a.test:1/"),
            &url("http://a.test:2/")
        ));
    }

    #[test]
    fn a_hop_to_another_origin_carries_no_credentials_nor_the_payment() {
        let previous = request(Method::POST, "https://seller.test/r");
        let response = redirect(307, "https://seller.test/r", "https://cdn.test/f", false);
        let hop = next_hop(&previous, &response).unwrap();
        assert!(!hop.carries_payment);
        assert_eq!(hop.request.url().as_str(), "https://cdn.test/f");
        assert_eq!(hop.request.method(), Method::POST, "307 keeps the method");
        assert!(hop.request.body().is_some());
        let headers = hop.request.headers();
        assert!(!headers.contains_key(AUTHORIZATION));
        assert!(!headers.contains_key(PAYMENT_SIGNATURE_HEADER));
    }

    #[test]
    fn a_hop_within_the_origin_carries_the_payment_until_the_server_took_it() {
        let previous = request(Method::GET, "https://seller.test/r");
        let response = redirect(301, "https://seller.test/r", "/r/", false);
        let hop = next_hop(&previous, &response).unwrap();
        assert!(hop.carries_payment);
        assert_eq!(hop.request.url().as_str(), "https://seller.test/r/");
        assert!(hop.request.headers().contains_key(AUTHORIZATION));
        assert!(!hop.request.headers().contains_key(PAYMENT_SIGNATURE_HEADER));
        let settled = redirect(302, "https://seller.test/r", "/r/", true);
        assert!(!next_hop(&previous, &settled).unwrap().carries_payment);
    }

    #[test]
    fn see_other_and_post_redirects_become_gets_without_a_body() {
        for (method, status) in [(Method::POST, 303), (Method::PUT, 303), (Method::POST, 302)] {
            let previous = request(method.clone(), "https://seller.test/r");
            let response = redirect(status, "https://seller.test/r", "/done", false);
            let hop = next_hop(&previous, &response).unwrap();
            assert_eq!(hop.request.method(), Method::GET, "{method} {status}");
            assert!(hop.request.body().is_none());
            assert!(!hop.request.headers().contains_key(CONTENT_TYPE));
        }
        let previous = request(Method::GET, "https://seller.test/r");
        for status in [300, 304, 200] {
            let response = redirect(status, "https://seller.test/r", "/x", false);
            assert!(next_hop(&previous, &response).is_none(), "{status}");
        }
        let response = redirect(302, "https://seller.test/r", "ftp://x.test/f", false);
        assert!(next_hop(&previous, &response).is_none());
    }

    #[test]
    fn a_redirected_get_is_paid_where_it_was_challenged() {
        let mut retry = request(Method::GET, "http://seller.test/r");
        pay_where_challenged(&mut retry, &url("https://seller.test/r"));
        assert_eq!(retry.url().as_str(), "https://seller.test/r");
        assert!(
            !retry.headers().contains_key(AUTHORIZATION),
            "origin changed"
        );
        let mut post = request(Method::POST, "http://seller.test/r");
        pay_where_challenged(&mut post, &url("https://seller.test/r"));
        assert_eq!(post.url().as_str(), "http://seller.test/r");
    }
}
