//! The seam a rail plugin uses, from outside the facilitator: a plugin
//! serving operator-named networks by reference, its own HTTP endpoints
//! mounted next to `/settle`, its say on which API key may settle a payment
//! (`admit_caller`), and idempotent settlement where its specification
//! demands it (`idempotent_settle`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use paywire_core::{
    BoxFuture, ChainId, ChainPlugin, EndpointPath, ErrorReason, FacilitatorConfig,
    FacilitatorParts, PaymentPayload, PaymentRequirements, PluginEndpoint, PluginError,
    PluginRegistry, PluginRequest, PluginResponse, SchemeError, SchemeFacilitator, SettleResponse,
    VerifyResponse,
};
use serde_json::{Value, json};

const SETTLE_KEY: &str = "shop-secret-0123456789";
const OTHER_KEY: &str = "other-secret-0123456789";
const WRONG_CALLER: ErrorReason = ErrorReason::from_static("unauthorized_server");

/// A ledger-only scheme: settles by counting, admits only the `shop` key.
struct Tab {
    settles: AtomicUsize,
    idempotent: bool,
    admit_other: bool,
}

impl SchemeFacilitator for Tab {
    fn scheme(&self) -> &'static str {
        "tab"
    }

    fn networks(&self) -> Vec<ChainId> {
        vec![ChainId::parse("acme:credit").expect("valid")]
    }

    fn signers(&self, _network: &ChainId) -> Vec<String> {
        Vec::new()
    }

    fn verify<'a>(
        &'a self,
        _payload: &'a PaymentPayload,
        _requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<VerifyResponse, SchemeError>> {
        Box::pin(async { Ok(VerifyResponse::valid("tab-payer")) })
    }

    fn settle<'a>(
        &'a self,
        _payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        Box::pin(async move {
            self.settles.fetch_add(1, Ordering::SeqCst);
            Ok(SettleResponse::settled(
                requirements.network.clone(),
                "",
                Some("tab-payer".into()),
            ))
        })
    }

    fn spend_key(
        &self,
        payload: &PaymentPayload,
        _requirements: &PaymentRequirements,
    ) -> Option<String> {
        payload
            .payload
            .get("id")?
            .as_str()
            .map(|id| format!("tab:{id}"))
    }

    fn replay_reason(&self) -> ErrorReason {
        ErrorReason::from_static("settle_conflict")
    }

    fn admit_caller(
        &self,
        caller: Option<&str>,
        _payload: &PaymentPayload,
        _requirements: &PaymentRequirements,
    ) -> Result<(), ErrorReason> {
        match caller {
            Some("shop") => Ok(()),
            Some("other") if self.admit_other => Ok(()),
            _ => Err(WRONG_CALLER),
        }
    }

    fn idempotent_settle(&self) -> bool {
        self.idempotent
    }
}

/// Echoes what it was asked.
struct Echo(EndpointPath);

impl PluginEndpoint for Echo {
    fn path(&self) -> EndpointPath {
        self.0.clone()
    }

    fn handle(&self, request: PluginRequest) -> BoxFuture<'_, PluginResponse> {
        Box::pin(async move {
            let body = json!({
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "token": request.header("x-token"),
                "body": String::from_utf8_lossy(&request.body),
            });
            PluginResponse::json(201, &body).with_header("x-plugin", "rail")
        })
    }
}

/// A rail serving every `<label>:credit` network.
struct Rail {
    scheme: Arc<Tab>,
    endpoints: Vec<EndpointPath>,
}

impl ChainPlugin for Rail {
    fn namespace(&self) -> &'static str {
        "rail"
    }

    fn serves(&self, network: &ChainId) -> bool {
        network.reference() == "credit"
    }

    fn facilitator<'a>(
        &'a self,
        config: &'a FacilitatorConfig,
    ) -> BoxFuture<'a, Result<FacilitatorParts, PluginError>> {
        Box::pin(async move {
            assert!(
                config.ledger.is_some(),
                "the ledger location is handed over"
            );
            assert_eq!(
                config.api_key_ids,
                vec!["shop".to_owned(), "other".to_owned()]
            );
            let mut parts = FacilitatorParts::default();
            let scheme: Arc<dyn SchemeFacilitator> = self.scheme.clone();
            parts.schemes.push(scheme);
            for path in &self.endpoints {
                parts.endpoints.push(Arc::new(Echo(path.clone())));
            }
            Ok(parts)
        })
    }
}

fn config(store: &std::path::Path) -> paywire_facilitator::FacilitatorConfig {
    let text = format!(
        "store = {:?}\nidempotent_retry_window_seconds = 0\n[[chains]]\nnetwork = \"acme:credit\"\n\
         [[api_keys]]\nname = \"shop\"\nkey = \"{SETTLE_KEY}\"\nendpoints = [\"settle\"]\n\
         [[api_keys]]\nname = \"other\"\nkey = \"{OTHER_KEY}\"\nendpoints = [\"settle\"]\n",
        store.display().to_string()
    );
    paywire_facilitator::FacilitatorConfig::parse_with_env(&text, |_| None).expect("config")
}

async fn start(rail: Rail, store: &std::path::Path) -> Result<String, String> {
    let registry = PluginRegistry::new().with(Arc::new(rail));
    let state = paywire_facilitator::build(&config(store), &registry)
        .await
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = paywire_facilitator::serve(listener, state, std::future::pending()).await;
    });
    Ok(format!("http://{address}"))
}

fn rail(idempotent: bool, endpoints: Vec<EndpointPath>) -> (Rail, Arc<Tab>) {
    rail_admitting(idempotent, false, endpoints)
}

fn rail_admitting(
    idempotent: bool,
    admit_other: bool,
    endpoints: Vec<EndpointPath>,
) -> (Rail, Arc<Tab>) {
    let scheme = Arc::new(Tab {
        settles: AtomicUsize::new(0),
        idempotent,
        admit_other,
    });
    let rail = Rail {
        scheme: Arc::clone(&scheme),
        endpoints,
    };
    (rail, scheme)
}

fn settle_body(id: &str, amount: &str) -> Value {
    let requirements = json!({
        "scheme": "tab", "network": "acme:credit", "amount": amount, "asset": "USD",
        "payTo": "merchant", "maxTimeoutSeconds": 60
    });
    json!({
        "x402Version": 2,
        "paymentPayload": {"x402Version": 2, "payload": {"id": id}, "accepted": requirements},
        "paymentRequirements": requirements,
    })
}

async fn settle(base: &str, key: &str, body: &Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/settle"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("settle")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn plugin_endpoints_are_served_next_to_the_facilitator_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = vec![
        EndpointPath::Exact("/authorize".into()),
        EndpointPath::Prefix("/purchase".into()),
    ];
    let (rail, _) = rail(false, paths);
    let base = start(rail, &dir.path().join("ledger.sqlite"))
        .await
        .expect("starts");
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{base}/authorize?x=1"))
        .header("x-token", "t")
        .body("hello")
        .send()
        .await
        .expect("authorize");
    assert_eq!(answer.status().as_u16(), 201);
    assert_eq!(answer.headers()["x-plugin"], "rail");
    assert!(
        answer.headers().contains_key("x-request-id"),
        "behind the facilitator's layers"
    );
    let body: Value = answer.json().await.expect("json");
    assert_eq!(
        body,
        json!({"method": "POST", "path": "/authorize", "query": "x=1", "token": "t", "body": "hello"})
    );
    let nested = http
        .get(format!("{base}/purchase/page"))
        .send()
        .await
        .expect("get");
    assert_eq!(nested.status().as_u16(), 201);
    for unknown in ["/purchase", "/authorize/x", "/purchases/x"] {
        let answer = http
            .get(format!("{base}{unknown}"))
            .send()
            .await
            .expect("get");
        assert_eq!(answer.status().as_u16(), 404, "{unknown}");
    }
    // Bodies over the facilitator's limit are refused before the plugin.
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let answer = http
        .post(format!("{base}/authorize"))
        .body(huge)
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status().as_u16(), 413);
}

#[tokio::test]
async fn a_plugin_cannot_take_the_facilitator_routes_or_each_others() {
    for taken in [
        EndpointPath::Exact("/settle".into()),
        EndpointPath::Prefix("/verify".into()),
        EndpointPath::Prefix("/discovery".into()),
        EndpointPath::Exact("/discovery/resources".into()),
        EndpointPath::Exact("/a/../settle".into()),
        EndpointPath::Exact("relative".into()),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rail, _) = rail(false, vec![taken.clone()]);
        let refused = start(rail, &dir.path().join("l.sqlite")).await;
        assert!(refused.is_err(), "{taken:?} must be refused");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let overlapping = vec![
        EndpointPath::Prefix("/bank".into()),
        EndpointPath::Exact("/bank/x".into()),
    ];
    let (rail, _) = rail(false, overlapping);
    assert!(start(rail, &dir.path().join("l.sqlite")).await.is_err());
    // Distinct exact paths, one under the other, are two routes.
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = vec![
        EndpointPath::Exact("/purchase".into()),
        EndpointPath::Exact("/purchase/top-up".into()),
    ];
    let (nested_rail, _) = rail_admitting(false, false, nested);
    assert!(
        start(nested_rail, &dir.path().join("l.sqlite"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_scheme_decides_which_api_key_may_settle_before_anything_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rail, scheme) = rail(true, Vec::new());
    let base = start(rail, &dir.path().join("ledger.sqlite"))
        .await
        .expect("starts");
    let refused = settle(&base, OTHER_KEY, &settle_body("a", "5")).await;
    assert_eq!(refused["success"], false);
    assert_eq!(refused["errorReason"], "unauthorized_server");
    assert_eq!(
        scheme.settles.load(Ordering::SeqCst),
        0,
        "the scheme never ran"
    );
    // Nothing recorded: the right caller settles it afterwards.
    let settled = settle(&base, SETTLE_KEY, &settle_body("a", "5")).await;
    assert_eq!(settled["success"], true, "{settled}");
}

#[tokio::test]
async fn idempotent_schemes_answer_identical_repeats_and_refuse_conflicting_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rail, scheme) = rail_admitting(true, true, Vec::new());
    let base = start(rail, &dir.path().join("ledger.sqlite"))
        .await
        .expect("starts");
    let first = settle(&base, SETTLE_KEY, &settle_body("b", "5")).await;
    assert_eq!(first["success"], true);
    // Another admitted caller too: beyond the ledger's per-caller retries.
    for key in [SETTLE_KEY, OTHER_KEY, OTHER_KEY] {
        let again = settle(&base, key, &settle_body("b", "5")).await;
        assert_eq!(again, first, "an identical repeat gets the recorded answer");
    }
    assert_eq!(scheme.settles.load(Ordering::SeqCst), 1, "settled once");
    let conflicting = settle(&base, SETTLE_KEY, &settle_body("b", "4")).await;
    assert_eq!(conflicting["success"], false);
    assert_eq!(conflicting["errorReason"], "settle_conflict");
    assert_eq!(scheme.settles.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_schemes_keep_refusing_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rail, scheme) = rail_admitting(false, true, Vec::new());
    let base = start(rail, &dir.path().join("ledger.sqlite"))
        .await
        .expect("starts");
    let first = settle(&base, SETTLE_KEY, &settle_body("c", "5")).await;
    assert_eq!(first["success"], true);
    // A repeat by another caller is a replay, which must not buy a second
    // response where settlement success is what lets a server serve.
    let replay = settle(&base, OTHER_KEY, &settle_body("c", "5")).await;
    assert_eq!(replay["success"], false, "{replay}");
    assert_eq!(replay["errorReason"], "settle_conflict");
    assert_eq!(scheme.settles.load(Ordering::SeqCst), 1);
}
