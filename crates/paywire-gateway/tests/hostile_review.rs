//! Hostile review of issue 12 item 1 (the priced path is the forwarded
//! path), probing the gateway and the `PaymentLayer` with raw bytes. The
//! gateway's upstream here is a raw TCP recorder: it logs the request line
//! and headers exactly as received, so method case and header pass-through
//! are visible.
//!
//! The `bypass_*` tests (and one API footgun) assert the SAFE behaviour; each
//! failed on the code first reviewed (lower-case methods, method-override
//! headers, non-ASCII case folding, trailing dots, NTFS streams, NFD).
//! `holds_*` pass and pin what was probed and held; `note_*` pins a
//! behaviour worth a decision.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use axum::Router;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::routing::get;
use common::{anvil_network, chain, plugins};
use paywire_core::codec::{decode_payment_required, encode_header};
use paywire_core::{
    BoxFuture, ChainIdPattern, Facilitator, FacilitatorError, FacilitatorRequest, JsonObject,
    PaymentPayload, SettleResponse, SupportedResponse, VerifyResponse,
};
use paywire_evm::EvmNetworks;
use paywire_evm::exact::ExactEvmServer;
use paywire_gateway::{Gateway, GatewayConfig};
use paywire_server::{PayTo, PaymentLayer, PaymentOption, RequestContext, Route, money};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USDC: &str = "0x1111111111111111111111111111111111111111";
const PAYEE: &str = "0x2222222222222222222222222222222222222222";

#[derive(Default)]
struct StubFacilitator {
    calls: AtomicUsize,
}

impl Facilitator for StubFacilitator {
    fn verify<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(VerifyResponse::valid(PAYEE)) })
    }

    fn settle<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = json!({"success": true, "transaction": "0xabc", "network": "eip155:31337"});
        let decoded =
            serde_json::from_value(answer).map_err(|e| FacilitatorError::Decode(e.to_string()));
        Box::pin(async move { decoded })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

/// Request heads received by the raw upstream, lowercased header names.
#[derive(Clone, Default)]
struct Heads(Arc<Mutex<Vec<String>>>);

impl Heads {
    fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn since(&self, before: usize) -> Vec<String> {
        self.all().split_off(before)
    }
}

/// A raw HTTP/1.1 upstream: records each request head, answers 200 "ok".
async fn raw_upstream(heads: Heads) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    while let Some(end) = find(&buffer, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buffer.len() < end + 4 + length {
                            break;
                        }
                        buffer.drain(..end + 4 + length);
                        heads
                            .0
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(head);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    address
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    address
}

struct Answer {
    status: u16,
    body: String,
}

/// Writes `request` verbatim, reads until close.
async fn raw(address: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    if read.is_err() && raw.is_empty() {
        return Answer {
            status: 0,
            body: "timeout".into(),
        };
    }
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        body: body.to_owned(),
    }
}

fn request(method: &str, target: &str, extra: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n{extra}\r\n")
        .into_bytes()
}

fn gateway_toml(upstream: &str, extra: &str) -> String {
    let route = |method: &str, path: &str| {
        format!(
            "[[routes]]\n{method}path = \"{path}\"\n[[routes.accepts]]\nnetwork = \"eip155:31337\"\n\
             price = \"$0.01\"\npay_to = \"{PAYEE}\"\n"
        )
    };
    format!(
        "listen = \"127.0.0.1:0\"\npublic_origin = \"https://shop.example.test\"\n\
         upstream = \"{upstream}\"\nwell_known_networks = false\n{extra}\n\
         [[facilitators]]\nurl = \"http://127.0.0.1:1\"\n\
         [[networks]]\nnetwork = \"eip155:31337\"\nname = \"Anvil\"\n\
         asset = {{ address = \"{USDC}\", symbol = \"USDC\", decimals = 6, eip712_name = \"USD Coin\", eip712_version = \"2\", usd_stable = true }}\n\
         {}{}{}{}{}",
        route("method = \"GET\"\n", "/paid"),
        route("method = \"GET\"\n", "/users/:id"),
        route("", "/files/*"),
        route("", "/strasse"),
        route("", "/café"),
    )
}

struct Gw {
    address: SocketAddr,
    heads: Heads,
    stub: Arc<StubFacilitator>,
}

async fn gateway(base: &str, extra: &str) -> Gw {
    let heads = Heads::default();
    let upstream = raw_upstream(heads.clone()).await;
    let text = gateway_toml(&format!("http://{upstream}{base}"), extra);
    let config = GatewayConfig::parse_with_env(&text, |_| None).expect("config");
    let stub = Arc::new(StubFacilitator::default());
    let gateway = Gateway::with_facilitator(&config, &plugins(), stub.clone()).expect("gateway");
    Gw {
        address: serve(gateway.router()).await,
        heads,
        stub,
    }
}

/// Sends one raw request; returns the status and the request lines the
/// upstream received for it.
async fn probe(gw: &Gw, request: &[u8]) -> (u16, Vec<String>) {
    let before = gw.heads.all().len();
    let answer = raw(gw.address, request).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let heads = gw.heads.since(before);
    let _ = answer.body;
    (answer.status, heads)
}

fn first_line(head: &str) -> &str {
    head.lines().next().unwrap_or("")
}

/// Asserts that no upstream request line in `heads` names a priced path of
/// the review configuration (`/paid`, `/users/<id>`, `/files…`, `/strasse`,
/// `/café`), compared the way a lenient upstream would: method and path
/// case-folded with Unicode *simple case folding* (as Go's
/// `strings.EqualFold`, Java's `equalsIgnoreCase`, NTFS/APFS do), `ß` as
/// `ss`, NFD `é` as NFC, a `.ext` format suffix and trailing dots/spaces
/// dropped (Rails `(.:format)`, Windows file names).
fn lenient_priced(line: &str) -> bool {
    let mut words = line.split(' ');
    let method = words.next().unwrap_or("");
    let target = words.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let decoded = percent_decode(path);
    let folded: String = decoded
        .replace("e\u{301}", "é")
        .replace("E\u{301}", "é")
        .chars()
        .flat_map(|c| match c {
            'ſ' => "s".chars().collect::<Vec<_>>(),
            'ı' | 'İ' => vec!['i'],
            'K' => vec!['k'],
            'ß' | 'ẞ' => vec!['s', 's'],
            other => other.to_lowercase().collect(),
        })
        .collect();
    let segments: Vec<String> = folded
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = s.trim_end_matches(['.', ' ', '\u{a0}']);
            let s = s.split_once("::").map_or(s, |(name, _)| name);
            s.split_once('.').map_or(s, |(name, _)| name).to_owned()
        })
        .collect();
    let get_like = method.eq_ignore_ascii_case("GET")
        || method.eq_ignore_ascii_case("HEAD")
        || line.to_ascii_lowercase().contains("method-override: get");
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["paid"] | ["users", _] => get_like,
        ["files", ..] | ["strasse" | "café"] => true,
        _ => false,
    }
}

fn percent_decode(path: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let pair = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        );
        if let (b'%', (Some(high), Some(low))) = (byte, pair) {
            out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends each request and collects (request, status, upstream request
/// lines) where the upstream received a request that a lenient upstream
/// would serve as a priced resource, unpaid.
async fn leaks(gw: &Gw, requests: &[(&str, &str, &str)]) -> Vec<String> {
    let mut leaked = Vec::new();
    for (method, target, extra) in requests {
        let (status, heads) = probe(gw, &request(method, target, extra)).await;
        for head in &heads {
            let line = first_line(head);
            let mut lenient = line.to_owned();
            if let Some(value) = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-http-method-override")
                    .then(|| v.trim().to_owned())
            }) {
                lenient.push_str(&format!(" method-override: {value}"));
            }
            if lenient_priced(&lenient) {
                leaked.push(format!(
                    "{method} {target} [{extra:?}] -> {status}, upstream got {head:?}"
                ));
            }
        }
    }
    assert_eq!(gw.stub.calls.load(Ordering::SeqCst), 0, "nothing was paid");
    leaked
}

// ---------------------------------------------------------------------------
// Confirmed bypasses (assert the safe behaviour: fail on the reviewed code).
// ---------------------------------------------------------------------------

/// `get /paid` (or `Get`, `head`) is an extension method to hyper and to
/// `RoutePattern`, so the `GET /paid` route does not match and the request
/// is forwarded free, method case preserved. Upstreams that upper-case the
/// method (Symfony/Laravel `getMethod()`, Django under ASGI, Rack servers
/// that normalise it) or register handlers without a method (Go `/paid`,
/// PHP scripts) serve the priced resource.
#[tokio::test]
async fn bypass_lowercase_method_reaches_get_priced_path_unpaid() {
    let gw = gateway("", "").await;
    let leaked = leaks(
        &gw,
        &[
            ("get", "/paid", ""),
            ("Get", "/x/../paid", ""),
            ("gEt", "/users/7", ""),
            ("head", "/paid", ""),
        ],
    )
    .await;
    assert!(leaked.is_empty(), "{leaked:#?}");
}

/// A method-restricted priced route (`method = "GET"`) is free under any
/// other method, and the gateway forwards method-override headers: Rails
/// (`Rack::MethodOverride`, default middleware) and Symfony/Laravel
/// (`Request::getMethod`, header honoured by default) run `POST /paid` +
/// `X-HTTP-Method-Override: GET` as `GET /paid`.
#[tokio::test]
async fn bypass_method_override_reaches_get_priced_path_unpaid() {
    let gw = gateway("", "").await;
    let leaked = leaks(
        &gw,
        &[
            (
                "POST",
                "/paid",
                "X-HTTP-Method-Override: GET\r\nContent-Length: 0\r\n",
            ),
            (
                "POST",
                "/users/7",
                "X-HTTP-Method-Override: get\r\nContent-Length: 0\r\n",
            ),
            (
                "PUT",
                "/paid",
                "X-HTTP-Method-Override: GET\r\nContent-Length: 0\r\n",
            ),
        ],
    )
    .await;
    assert!(leaked.is_empty(), "{leaked:#?}");
    // Also the other spellings and the path-override headers (IIS URL
    // Rewrite, Zend/Laminas, some Java filters take the path from them).
    for (method, target, extra) in [
        (
            "POST",
            "/paid",
            "X-HTTP-Method: GET\r\nX-Method-Override: GET\r\nContent-Length: 0\r\n",
        ),
        (
            "GET",
            "/free",
            "X-Original-URL: /paid\r\nX-Rewrite-URL: /paid\r\n",
        ),
    ] {
        let (status, heads) = probe(&gw, &request(method, target, extra)).await;
        for head in heads {
            let lower = head.to_ascii_lowercase();
            for name in [
                "x-http-method:",
                "x-method-override:",
                "x-original-url:",
                "x-rewrite-url:",
            ] {
                assert!(
                    !lower.contains(name),
                    "{method} {target} -> {status}: forwarded {head:?}"
                );
            }
        }
    }
}

/// `case_insensitive_paths = true` folds with `char::to_lowercase`, which is
/// not case folding: `ſ` (U+017F), `ı` (U+0131), `İ` (U+0130) and `ß`/`ẞ`
/// vs `ss` do not match, while Unicode simple/full case folding (Go
/// `strings.EqualFold`, Java `equalsIgnoreCase`, ICU, Python `casefold`,
/// case-insensitive file systems) treats them as the priced name.
#[tokio::test]
async fn bypass_case_insensitive_mode_with_unicode_case_folding() {
    let gw = gateway("", "case_insensitive_paths = true").await;
    let leaked = leaks(
        &gw,
        &[
            ("GET", "/u%C5%BFers/7", ""),   // uſers
            ("GET", "/pa%C4%B1d", ""),      // paıd (Java equalsIgnoreCase)
            ("GET", "/PA%C4%B0D", ""),      // PAİD (Java equalsIgnoreCase)
            ("GET", "/stra%C3%9Fe", ""),    // straße (casefold: strasse)
            ("GET", "/STRA%E1%BA%9EE", ""), // STRAẞE
            ("GET", "/file%C5%BF/x", ""),   // fileſ
        ],
    )
    .await;
    // The same matcher serves the layer.
    let layer = layer(true);
    let ctx = context();
    for path in ["/u\u{17f}ers/7", "/pa\u{131}d", "/stra\u{df}e"] {
        if layer
            .requirements_for(&Method::GET, path, &ctx)
            .await
            .is_none()
        {
            println!("layer: {path} unpriced");
        }
    }
    assert!(leaked.is_empty(), "{leaked:#?}");
}

/// Spellings that the normalizer would keep distinct but common upstreams
/// serve as the priced resource: trailing dots/spaces (Windows/IIS file
/// names), NTFS streams, NFD vs NFC (APFS, HFS+). Refused.
#[tokio::test]
async fn bypass_upstream_equivalent_spellings_are_forwarded_free() {
    let gw = gateway("", "").await;
    let leaked = leaks(
        &gw,
        &[
            ("GET", "/paid.", ""),
            ("GET", "/paid%2e", ""),
            ("GET", "/paid%20", ""),
            ("GET", "/paid::$DATA", ""),
            ("GET", "/cafe%CC%81", ""), // NFD of the priced /café
        ],
    )
    .await;
    assert!(leaked.is_empty(), "{leaked:#?}");
}

/// Rails (`/paid(.:format)`) and Spring MVC before 5.3 serve `/paid.json`
/// as `/paid`. Off by default (a free `/paid.css` beside a priced `/paid`
/// stays free); with `format_suffixes = true` the suffixed spellings are
/// priced too.
#[tokio::test]
async fn bypass_format_suffixes_are_priced_when_configured() {
    let suffixed = [
        ("GET", "/paid.json", ""),
        ("GET", "/paid.html", ""),
        ("GET", "/PAID.json", ""),
        ("GET", "/users/7.json", ""),
        ("GET", "/strasse.txt", ""),
    ];
    let gw = gateway("", "format_suffixes = true\ncase_insensitive_paths = true").await;
    let leaked = leaks(&gw, &suffixed).await;
    assert!(leaked.is_empty(), "{leaked:#?}");
    for (method, target, _) in suffixed {
        let (status, heads) = probe(&gw, &request(method, target, "")).await;
        assert_eq!((status, heads.len()), (402, 0), "{target}");
    }
    // Without the option the suffix is a different, free name.
    let gw = gateway("", "").await;
    let (status, heads) = probe(&gw, &request("GET", "/paid.json", "")).await;
    assert_eq!((status, heads.len()), (200, 1));
}

/// `requirements_for` takes a path; a caller passing `uri.path_and_query()`
/// (or any path with `?`) gets `None` ("unpriced") for a priced route, since
/// `?` is encoded to `%3F` by the normalizer.
#[tokio::test]
async fn requirements_for_a_priced_path_with_a_query_is_not_unpriced() {
    let layer = layer(false);
    let ctx = context();
    assert!(
        layer
            .requirements_for(&Method::GET, "/paid", &ctx)
            .await
            .is_some()
    );
    assert!(
        layer
            .requirements_for(&Method::GET, "/paid?x=1", &ctx)
            .await
            .is_some(),
        "a priced path with a query is reported unpriced"
    );
}

// ---------------------------------------------------------------------------
// Probes that held.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn holds_request_forms_versions_and_malformed_targets() {
    let gw = gateway("/api", "").await;
    let cases: &[(&[u8], u16)] = &[
        (
            b"HEAD /paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"HEAD /x/%2e%2e/users/7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET http://evil.test/x/../paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET https://shop.test/%70aid?a=b HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET http://evil.test/../admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (b"GET /x/../paid HTTP/1.0\r\n\r\n", 402),
        (
            b"GET /paid#frag HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET /paid?# HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET #/paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET ?/paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"CONNECT shop.test:443 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET shop.test:80 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /pa\xffid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET /%c0%ae%c0%ae/paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /%e0%80%ae/paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /%u002e%u002e/paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /%%32%65%%32%65/paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /% HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /%2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /x/..%00/paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /files/../../api/paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /files/..%2f..%2fadmin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /files/../paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET /users/%2e%2e%2e HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /users/.%2e/users/7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET /./files HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET /%2e%2e%2f HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /caf%C3%A9/. HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET /free/%2E%2e/%2E/paid/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            402,
        ),
        (
            b"GET /paid/%20/.. HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
    ];
    for (request, expected) in cases {
        let (status, heads) = probe(&gw, request).await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        assert_eq!(status, *expected, "{shown:?}: upstream {heads:?}");
        if *expected != 200 {
            assert!(heads.is_empty(), "{shown:?}: upstream got {heads:?}");
        }
    }
    // Free paths never leave the base path, whatever the request form.
    for (request, line) in [
        (&b"GET http://evil.test HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..], "GET /api/ HTTP/1.1"),
        (b"GET /?/../paid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET /api/?/../paid HTTP/1.1"),
        (b"GET /x/%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
         "GET /api/x/%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/admin HTTP/1.1"),
        (b"GET /a|b^c[d]\"e{f} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
         "GET /api/a%7Cb%5Ec%5Bd%5D%22e%7Bf%7D HTTP/1.1"),
    ] {
        let (status, heads) = probe(&gw, request).await;
        assert_eq!(status, 200);
        assert_eq!(heads.iter().map(|h| first_line(h)).collect::<Vec<_>>(), [line]);
    }
    for head in gw.heads.all() {
        assert!(
            first_line(&head).contains(" /api/"),
            "{head:?} left the base path"
        );
    }
    // A pipelined, keep-alive connection: each request is normalized.
    let before = gw.heads.all().len();
    let answer = raw(
        gw.address,
        b"GET /free HTTP/1.1\r\nHost: a\r\n\r\nGET /x/../paid HTTP/1.1\r\nHost: a\r\n\r\n\
          get /free HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let _ = answer;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let lines: Vec<String> = gw
        .heads
        .since(before)
        .iter()
        .map(|h| first_line(h).to_owned())
        .collect();
    // The lower-case `get` is refused (400) like every lower-case method.
    assert_eq!(lines, ["GET /api/free HTTP/1.1"]);
    assert_eq!(gw.stub.calls.load(Ordering::SeqCst), 0);
}

/// Case-insensitive mode: ASCII case is priced; the Kelvin sign (not in
/// NFC) is refused like every non-NFC path, and the request pipeline
/// refuses any non-ASCII letter in this mode
/// (`bypass_case_insensitive_mode_with_unicode_case_folding`).
#[tokio::test]
async fn holds_case_insensitive_ascii_and_kelvin() {
    let layer = layer(true);
    let ctx = context();
    for path in [
        "/PAID",
        "/%50AID",
        "/Users/7",
        "/FILES/a",
        "/STRASSE",
        "/CAF%C3%89",
    ] {
        assert!(
            layer
                .requirements_for(&Method::GET, path, &ctx)
                .await
                .is_some(),
            "{path}"
        );
    }
}

/// The layer inside an axum Router (`Router::layer`): a path axum sent to its
/// fallback is priced as the route it normalizes to, and the fallback runs.
/// Nothing is free, but the buyer pays for whatever the fallback answers
/// (an SPA `index.html`, say) instead of the priced handler.
#[tokio::test]
async fn note_inside_router_fallback_is_charged_as_the_priced_route() {
    let seen = Seen::default();
    let stub = Arc::new(StubFacilitator::default());
    let app = Router::new()
        .route("/paid", get(priced))
        .fallback(spa_index)
        .with_state(seen.clone())
        .layer(layer_with(stub.clone(), false));
    let address = serve(app).await;
    for target in ["/paid/", "//paid", "/x/../paid", "/%70aid"] {
        let answer = paid_get(address, target).await;
        assert_eq!(answer.status, 200, "{target}");
        assert_eq!(
            answer.body, "index.html",
            "{target}: the fallback ran, and was paid for"
        );
    }
    assert!(seen.all().is_empty(), "the priced handler never ran");
    assert_eq!(
        stub.calls.load(Ordering::SeqCst),
        8,
        "4 verifies + 4 settles"
    );
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn priced(State(seen): State<Seen>, uri: Uri) -> &'static str {
    seen.0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(uri.to_string());
    "priced content"
}

async fn spa_index() -> &'static str {
    "index.html"
}

fn layer(case_insensitive: bool) -> PaymentLayer {
    layer_with(Arc::new(StubFacilitator::default()), case_insensitive)
}

fn layer_with(stub: Arc<StubFacilitator>, case_insensitive: bool) -> PaymentLayer {
    let usdc: Address = USDC.parse().expect("address");
    let mut table = EvmNetworks::empty();
    table.insert(anvil_network(usdc));
    let route = |pattern: &str| {
        Route::new(pattern)
            .expect("route")
            .accept(PaymentOption::exact(
                chain(),
                money("$0.01").expect("price"),
                PayTo::address(PAYEE),
            ))
    };
    PaymentLayer::builder(stub)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .route(route("GET /paid"))
        .route(route("GET /users/:id"))
        .route(route("/files/*"))
        .route(route("/strasse"))
        .route(route("/café"))
        .route(route("/key"))
        .case_insensitive_paths(case_insensitive)
        .build()
        .expect("layer")
}

fn context() -> RequestContext {
    RequestContext {
        method: "GET".into(),
        path: "/".into(),
        query: None,
        headers: Default::default(),
        body: None,
        params: Default::default(),
        route: String::new(),
        paying: false,
    }
}

async fn paid_get(address: SocketAddr, target: &str) -> Answer {
    let answer = raw(address, &request("GET", target, "")).await;
    assert_eq!(answer.status, 402, "{target}: {}", answer.body);
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(&request("GET", target, ""))
        .await
        .expect("write");
    let mut text = Vec::new();
    stream.read_to_end(&mut text).await.expect("read");
    let text = String::from_utf8_lossy(&text).into_owned();
    let header = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("payment-required")
                .then(|| v.trim().to_owned())
        })
        .expect("PAYMENT-REQUIRED");
    let required = decode_payment_required(header.as_bytes()).expect("decodable");
    let mut authorization = JsonObject::new();
    authorization.insert("from".into(), json!(Address::random().to_string()));
    authorization.insert("nonce".into(), json!(B256::random().to_string()));
    let mut payload = JsonObject::new();
    payload.insert("authorization".into(), Value::Object(authorization));
    payload.insert("signature".into(), json!("0x00"));
    let payment = encode_header(&PaymentPayload {
        x402_version: 2,
        payload,
        extensions: None,
        resource: Some(required.resource.clone()),
        accepted: required.accepts[0].clone(),
    });
    raw(
        address,
        &request("GET", target, &format!("PAYMENT-SIGNATURE: {payment}\r\n")),
    )
    .await
}

/// The lenient-upstream model used by the `bypass_*` probes.
#[test]
fn lenient_model_sanity() {
    assert!(lenient_priced("GET /file%C5%BF/x HTTP/1.1"));
    assert!(lenient_priced("POST /paid HTTP/1.1 method-override: GET"));
    assert!(lenient_priced("get /paid.json HTTP/1.1"));
    assert!(!lenient_priced("POST /paid HTTP/1.1"));
    assert!(!lenient_priced("GET /free HTTP/1.1"));
}
