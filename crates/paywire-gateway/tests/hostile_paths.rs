//! Issue 12, item 1 (field lesson 29): the path that is priced is the path
//! that runs. Hostile request targets are written byte for byte on a TCP
//! socket (an HTTP client would resolve `..` itself) against the gateway in
//! front of a recording upstream and against the `PaymentLayer` in both
//! placements (outside an axum Router, and `Router::layer` inside one). A
//! stub facilitator accepts any matching payment and counts its calls: it is
//! never reached by an unpaid request.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use axum::Router;
use axum::extract::State;
use axum::http::Uri;
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
use paywire_server::{PayTo, PaymentLayer, PaymentOption, Route, money};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::Layer;

const USDC: &str = "0x1111111111111111111111111111111111111111";
const PAYEE: &str = "0x2222222222222222222222222222222222222222";

/// Valid for every payment, settles every payment; counts calls.
#[derive(Default)]
struct StubFacilitator {
    verifies: AtomicUsize,
    settles: AtomicUsize,
}

impl StubFacilitator {
    fn calls(&self) -> (usize, usize) {
        (
            self.verifies.load(Ordering::SeqCst),
            self.settles.load(Ordering::SeqCst),
        )
    }
}

impl Facilitator for StubFacilitator {
    fn verify<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.verifies.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(VerifyResponse::valid(PAYEE)) })
    }

    fn settle<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        let answer = json!({"success": true, "transaction": "0xabc", "network": "eip155:31337"});
        let decoded =
            serde_json::from_value(answer).map_err(|e| FacilitatorError::Decode(e.to_string()));
        Box::pin(async move { decoded })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

/// Every path and query a server received; priced handlers prefix theirs.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, entry: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }

    fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

async fn record(State(seen): State<Seen>, uri: Uri) -> String {
    let entry = path_and_query(&uri);
    seen.push(entry.clone());
    format!("served {entry}")
}

async fn record_priced(State(seen): State<Seen>, uri: Uri) -> String {
    let entry = format!("PRICED {}", path_and_query(&uri));
    seen.push(entry.clone());
    format!("served {entry}")
}

/// An app with priced handlers at `/paid` and `/users/{id}` and a recording
/// fallback: the gateway's upstream, and the app behind the layer.
fn app(seen: Seen) -> Router {
    Router::new()
        .route("/paid", get(record_priced))
        .route("/users/{id}", get(record_priced))
        .fallback(record)
        .with_state(seen)
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

/// A response read from the socket.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// Sends `GET <target> HTTP/1.1` with `target` exactly as given.
async fn raw_get(address: SocketAddr, target: &[u8], headers: &[(&str, &str)]) -> Answer {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(&request).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("answer within 30 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// What must happen to a request target.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 400 with this `reason` (`None`: the HTTP parser refuses it first).
    Refused(Option<&'static str>),
    /// 402: a priced route, unpaid.
    Priced,
    /// Served for free; the server behind saw this path and query.
    Free(&'static str),
}

use Expect::{Free, Priced, Refused};

/// Targets with the same outcome at the gateway and at the layer.
fn hostile_table() -> Vec<(String, Expect)> {
    let rows: &[(&str, Expect)] = &[
        ("/paid", Priced),
        ("/x/../paid", Priced),
        ("/x/%2e%2e/paid", Priced),
        ("/x/%2E%2E/paid", Priced),
        ("/x/.%2e/paid", Priced),
        ("/x/%2E./paid", Priced),
        ("/./paid", Priced),
        ("/%2e/paid", Priced),
        ("/x/y/../../paid", Priced),
        ("/%70aid", Priced),
        ("/%70%61%69%64", Priced),
        ("//paid", Priced),
        ("/x//..//paid", Priced),
        ("/paid/", Priced),
        ("/paid/.", Priced),
        ("/paid?x=/../free", Priced),
        ("/free%3f/../paid", Priced),
        ("/free%23/../paid", Priced),
        ("/users/%37", Priced),
        ("/free%3F/..%2Fpaid", Refused(Some("encoded_separator"))),
        ("/x%2fpaid", Refused(Some("encoded_separator"))),
        ("/..%2Fpaid", Refused(Some("encoded_separator"))),
        ("/x%5c..%5cpaid", Refused(Some("encoded_separator"))),
        ("/x\\..\\paid", Refused(Some("backslash"))),
        ("/paid%00", Refused(Some("control_character"))),
        ("/paid%00.html", Refused(Some("control_character"))),
        ("/pa%09id", Refused(Some("control_character"))),
        ("/paid\0", Refused(None)),
        ("/paid;x=1", Refused(Some("path_parameter"))),
        ("/free/..;/paid", Refused(Some("path_parameter"))),
        ("/paid%3Bx", Refused(Some("path_parameter"))),
        ("/x/%252e%252e/paid", Refused(Some("double_encoding"))),
        ("/%2570aid", Refused(Some("double_encoding"))),
        ("/%C0%AE%C0%AE/paid", Refused(Some("invalid_utf8"))),
        ("/paid%", Refused(Some("bad_percent_encoding"))),
        ("/../paid", Refused(Some("above_root"))),
        ("/%2e%2e/paid", Refused(Some("above_root"))),
        ("/free", Free("/free")),
        ("/%66ree", Free("/free")),
        ("/x/../free?q=/../paid", Free("/free?q=/../paid")),
        ("/free#/../paid", Free("/free")),
        ("/paid%3F", Free("/paid%3F")),
        ("/users/7/..", Free("/users/")),
        ("/PAID", Free("/PAID")),
        ("/Paid", Free("/Paid")),
    ];
    let mut table: Vec<(String, Expect)> = rows
        .iter()
        .map(|(target, expect)| ((*target).to_owned(), *expect))
        .collect();
    let climbing = format!("/{}paid", "x/../".repeat(2000));
    table.push((climbing, Refused(Some("path_too_long"))));
    table.push((
        format!("/{}", "a".repeat(9000)),
        Refused(Some("path_too_long")),
    ));
    table
}

/// Runs `table`; `seen` is what the server behind records. Panics on the
/// first target whose outcome differs.
async fn check_table(address: SocketAddr, seen: &Seen, base: &str, table: &[(String, Expect)]) {
    for (target, expect) in table {
        let before = seen.all().len();
        let answer = raw_get(address, target.as_bytes(), &[]).await;
        let shown = &target[..target.len().min(80)];
        let new: Vec<String> = seen.all().split_off(before);
        match expect {
            Priced => {
                assert_eq!(answer.status, 402, "{shown}: {}", answer.body);
                assert!(answer.header("payment-required").is_some(), "{shown}");
                assert!(new.is_empty(), "{shown}: reached {new:?} unpaid");
            }
            Refused(reason) => {
                assert_eq!(answer.status, 400, "{shown}: {}", answer.body);
                if let Some(reason) = reason {
                    let body: Value = serde_json::from_str(&answer.body)
                        .unwrap_or_else(|_| panic!("{shown}: not JSON: {}", answer.body));
                    assert_eq!(body["error"], "invalid_path", "{shown}");
                    assert_eq!(body["reason"], *reason, "{shown}: {body}");
                }
                assert!(new.is_empty(), "{shown}: reached {new:?}");
            }
            Free(path) => {
                assert_eq!(answer.status, 200, "{shown}: {}", answer.body);
                assert_eq!(new, [format!("{base}{path}")], "{shown}");
            }
        }
    }
    let priced: Vec<String> = seen
        .all()
        .into_iter()
        .filter(|entry| entry.starts_with("PRICED") || is_priced_path(entry, base))
        .collect();
    assert!(priced.is_empty(), "priced paths reached unpaid: {priced:?}");
}

/// Whether an upstream path is one of the priced routes (case-sensitive, as
/// configured by default).
fn is_priced_path(entry: &str, base: &str) -> bool {
    let path = entry.split('?').next().unwrap_or(entry);
    let Some(path) = path.strip_prefix(base) else {
        return false;
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    matches!(segments.as_slice(), ["paid"] | ["users", _])
}

fn gateway_toml(upstream: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
public_origin = "https://shop.example.test"
upstream = "{upstream}"
well_known_networks = false
{extra}

[[facilitators]]
url = "http://127.0.0.1:1"

[[networks]]
network = "eip155:31337"
name = "Anvil"
asset = {{ address = "{USDC}", symbol = "USDC", decimals = 6, eip712_name = "USD Coin", eip712_version = "2", usd_stable = true }}

[[routes]]
method = "GET"
path = "/paid"
[[routes.accepts]]
network = "eip155:31337"
price = "$0.01"
pay_to = "{PAYEE}"

[[routes]]
method = "GET"
path = "/users/:id"
[[routes.accepts]]
network = "eip155:31337"
price = "$0.01"
pay_to = "{PAYEE}"
"#
    )
}

struct Gw {
    address: SocketAddr,
    seen: Seen,
    stub: Arc<StubFacilitator>,
}

async fn gateway(base_path: &str, extra: &str) -> Gw {
    let seen = Seen::default();
    let upstream = serve(app(seen.clone())).await;
    let text = gateway_toml(&format!("http://{upstream}{base_path}"), extra);
    let config = GatewayConfig::parse_with_env(&text, |_| None).expect("config");
    let stub = Arc::new(StubFacilitator::default());
    let gateway = Gateway::with_facilitator(&config, &plugins(), stub.clone()).expect("gateway");
    let address = serve(gateway.router()).await;
    Gw {
        address,
        seen,
        stub,
    }
}

/// A payment the stub accepts for the 402 answered to `target`.
async fn payment_for(address: SocketAddr, target: &str) -> String {
    let answer = raw_get(address, target.as_bytes(), &[]).await;
    assert_eq!(answer.status, 402, "{target}: {}", answer.body);
    let header = answer.header("payment-required").expect("PAYMENT-REQUIRED");
    let required = decode_payment_required(header.as_bytes()).expect("decodable");
    let mut authorization = JsonObject::new();
    authorization.insert("from".into(), json!(Address::random().to_string()));
    authorization.insert("nonce".into(), json!(B256::random().to_string()));
    let mut payload = JsonObject::new();
    payload.insert("authorization".into(), Value::Object(authorization));
    payload.insert("signature".into(), json!("0x00"));
    encode_header(&PaymentPayload {
        x402_version: 2,
        payload,
        extensions: None,
        resource: Some(required.resource.clone()),
        accepted: required.accepts[0].clone(),
    })
}

async fn paid_get(address: SocketAddr, target: &str) -> Answer {
    let payment = payment_for(address, target).await;
    raw_get(
        address,
        target.as_bytes(),
        &[("PAYMENT-SIGNATURE", payment.as_str())],
    )
    .await
}

#[tokio::test]
async fn gateway_prices_and_forwards_one_normalized_path() {
    let gw = gateway("", "").await;
    let mut table = hostile_table();
    // Resolved to `/`, which is free, and forwarded as `/`.
    table.push(("/users/%2e%2e".into(), Free("/")));
    table.push(("/users/..".into(), Free("/")));
    check_table(gw.address, &gw.seen, "", &table).await;
    assert_eq!(
        gw.stub.calls(),
        (0, 0),
        "no unpaid request reached the facilitator"
    );

    // Paid: the upstream gets exactly the path that was priced.
    for target in ["/paid", "/x/%2e%2e/%70aid"] {
        let before = gw.seen.all().len();
        let answer = paid_get(gw.address, target).await;
        assert_eq!(answer.status, 200, "{target}: {}", answer.body);
        assert!(answer.header("payment-response").is_some(), "{target}");
        assert_eq!(
            gw.seen.all().split_off(before),
            ["PRICED /paid"],
            "{target}"
        );
    }
    assert_eq!(gw.stub.calls(), (2, 2));
}

#[tokio::test]
async fn gateway_never_leaves_the_upstream_base_path() {
    let gw = gateway("/api", "").await;
    let table: Vec<(String, Expect)> = [
        ("/../admin", Refused(Some("above_root"))),
        ("/%2e%2e/admin", Refused(Some("above_root"))),
        ("/.%2E/admin", Refused(Some("above_root"))),
        ("/paid/../../admin", Refused(Some("above_root"))),
        ("/free/../../api/paid", Refused(Some("above_root"))),
        ("/..%2fadmin", Refused(Some("encoded_separator"))),
        ("/..\\admin", Refused(Some("backslash"))),
        ("/x/../paid", Priced),
        ("/%70aid", Priced),
        ("/admin", Free("/admin")),
        ("/x/../admin?a=/../b", Free("/admin?a=/../b")),
        ("//admin", Free("/admin")),
    ]
    .into_iter()
    .map(|(target, expect)| (target.to_owned(), expect))
    .collect();
    check_table(gw.address, &gw.seen, "/api", &table).await;
    for entry in gw.seen.all() {
        assert!(entry.starts_with("/api/"), "{entry} escaped the base path");
    }
    assert_eq!(gw.stub.calls(), (0, 0));
    let answer = paid_get(gw.address, "/./paid").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(gw.seen.all().last().map(String::as_str), Some("/api/paid"));
}

#[tokio::test]
async fn gateway_case_rule_is_sensitive_by_default_and_configurable() {
    let spellings = ["/PAID", "/Paid", "/%50AID", "/x/../pAiD", "/USERS/7"];
    let sensitive = gateway("", "").await;
    for target in spellings {
        let answer = raw_get(sensitive.address, target.as_bytes(), &[]).await;
        assert_eq!(
            answer.status, 200,
            "{target}: forwarded as another resource"
        );
    }
    let insensitive = gateway("", "case_insensitive_paths = true").await;
    let table: Vec<(String, Expect)> = spellings
        .iter()
        .map(|target| ((*target).to_owned(), Priced))
        .chain([("/free".to_owned(), Free("/free"))])
        .collect();
    check_table(insensitive.address, &insensitive.seen, "", &table).await;
    let case_folded: Vec<String> = insensitive
        .seen
        .all()
        .into_iter()
        .filter(|entry| is_priced_path(&entry.to_lowercase(), ""))
        .collect();
    assert!(case_folded.is_empty(), "{case_folded:?}");
    assert_eq!(insensitive.stub.calls(), (0, 0));
}

fn layer(stub: Arc<StubFacilitator>, case_insensitive: bool) -> PaymentLayer {
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
        .case_insensitive_paths(case_insensitive)
        .build()
        .expect("layer")
}

/// The layer wrapped around a whole Router (tower style): the Router
/// routes on the path the layer normalized.
#[tokio::test]
async fn layer_around_a_router_runs_what_it_priced() {
    let seen = Seen::default();
    let stub = Arc::new(StubFacilitator::default());
    let service = layer(stub.clone(), false).layer(app(seen.clone()));
    let address = serve(Router::new().fallback_service(service)).await;
    let mut table = hostile_table();
    table.push(("/users/%2e%2e".into(), Free("/")));
    table.push(("/users/..".into(), Free("/")));
    check_table(address, &seen, "", &table).await;
    assert_eq!(stub.calls(), (0, 0));
    for target in ["/paid", "/x/%2e%2e/%70aid", "/users/%37"] {
        let before = seen.all().len();
        let answer = paid_get(address, target).await;
        assert_eq!(answer.status, 200, "{target}: {}", answer.body);
        let ran = seen.all().split_off(before);
        assert_eq!(ran.len(), 1, "{target}: {ran:?}");
        assert!(ran[0].starts_with("PRICED /"), "{target}: {ran:?}");
    }
    assert_eq!(stub.calls(), (3, 3));
}

/// `Router::layer`: axum chose the handler from the raw path before the
/// layer runs, so dot segments in a routed request are refused.
#[tokio::test]
async fn layer_inside_a_router_prices_what_axum_routed() {
    let seen = Seen::default();
    let stub = Arc::new(StubFacilitator::default());
    let address = serve(app(seen.clone()).layer(layer(stub.clone(), false))).await;
    let mut table = hostile_table();
    table.push((
        "/users/%2e%2e".into(),
        Refused(Some("dot_segments_after_routing")),
    ));
    table.push((
        "/users/..".into(),
        Refused(Some("dot_segments_after_routing")),
    ));
    table.push((
        "/users/%2E".into(),
        Refused(Some("dot_segments_after_routing")),
    ));
    check_table(address, &seen, "", &table).await;
    assert_eq!(stub.calls(), (0, 0));
    let answer = paid_get(address, "/paid").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(seen.all().last().map(String::as_str), Some("PRICED /paid"));
    assert_eq!(stub.calls(), (1, 1));
    // axum chose its fallback from the raw `/x/../paid` (no route has dot
    // segments): the fallback gets the normalized path that was priced.
    let answer = paid_get(address, "/x/../paid").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(seen.all().last().map(String::as_str), Some("/paid"));
    assert_eq!(stub.calls(), (2, 2));
}

#[tokio::test]
async fn layer_case_rule_is_sensitive_by_default_and_configurable() {
    let seen = Seen::default();
    let stub = Arc::new(StubFacilitator::default());
    let sensitive = layer(stub.clone(), false).layer(app(seen.clone()));
    let sensitive = serve(Router::new().fallback_service(sensitive)).await;
    let answer = raw_get(sensitive, b"/PAID", &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        seen.all(),
        ["/PAID"],
        "a case-sensitive app serves its fallback"
    );

    let seen = Seen::default();
    let insensitive = layer(stub.clone(), true).layer(app(seen.clone()));
    let insensitive = serve(Router::new().fallback_service(insensitive)).await;
    let table: Vec<(String, Expect)> = ["/PAID", "/Paid", "/%50aid", "/USERS/7"]
        .into_iter()
        .map(|target| (target.to_owned(), Priced))
        .collect();
    check_table(insensitive, &seen, "", &table).await;
    assert_eq!(stub.calls(), (0, 0));
}
