//! The gateway knows no chain: its `[[networks]]` entries go to the plugin
//! of each network's namespace, which builds the scheme servers and assets;
//! an entry no registered plugin serves stops the start with its name.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use paywire_core::codec::decode_payment_required;
use paywire_core::scheme::RequirementsRequest;
use paywire_core::{
    AssetInfo, AtomicAmount, BoxFuture, ChainId, ChainIdPattern, ChainPlugin, Facilitator,
    FacilitatorError, FacilitatorRequest, NetworkClass, NetworkInfo, PaymentRequirements,
    PluginError, PluginRegistry, Price, Registration, SchemeError, SchemeServer, ServerAsset,
    ServerConfig, ServerParts, SettleResponse, SupportedResponse, VerifyResponse,
};
use paywire_gateway::{Gateway, GatewayConfig, GatewayError};
use tower::ServiceExt;

/// `iou` requirements on a made-up ledger: prices in cents of `asset`.
struct Iou;

impl SchemeServer for Iou {
    fn scheme(&self) -> &'static str {
        "iou"
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let Price::Money(money) = request.price else {
            return Err(SchemeError::InvalidRequirements("money only".into()));
        };
        Ok(PaymentRequirements {
            scheme: "iou".into(),
            network: request.network.clone(),
            amount: money
                .to_atomic(2)
                .map_err(|e| SchemeError::InvalidRequirements(e.to_string()))?,
            asset: "USD".into(),
            pay_to: request.pay_to.into(),
            max_timeout_seconds: request.max_timeout_seconds,
            extra: None,
        })
    }
}

/// The `ledger` namespace as a plugin: one named network, and a server side
/// that records the entries it was given.
#[derive(Default)]
struct LedgerPlugin {
    seen: Mutex<Vec<(String, String)>>,
}

impl ChainPlugin for LedgerPlugin {
    fn namespace(&self) -> &'static str {
        "ledger"
    }

    fn networks(&self) -> Vec<NetworkInfo> {
        vec![NetworkInfo::new(
            ChainId::parse("ledger:main").expect("CAIP-2"),
            "ledger",
            NetworkClass::Testnet,
        )]
    }

    fn server(&self, config: &ServerConfig) -> Result<ServerParts, PluginError> {
        let mut parts = ServerParts::default();
        for entry in &config.entries {
            let Some(branch) = entry.table.get("branch").and_then(|b| b.as_str()) else {
                return Err(PluginError::config(&entry.at, "`branch` is required"));
            };
            self.seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((entry.at.clone(), branch.to_owned()));
            parts.assets.push(ServerAsset::new(
                entry.network.clone(),
                "USD",
                AssetInfo {
                    symbol: "USD".into(),
                    decimals: 2,
                    usd_stable: true,
                },
            ));
        }
        let pattern = ChainIdPattern::namespace("ledger").map_err(PluginError::from)?;
        parts
            .schemes
            .push(Registration::new(pattern, Arc::new(Iou)));
        Ok(parts)
    }
}

/// Never reached: these tests stop at the 402.
struct Unreachable;

impl Facilitator for Unreachable {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Transport("unreachable".into())) })
    }

    fn settle<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Transport("unreachable".into())) })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

fn gateway_config(networks_and_routes: &str) -> GatewayConfig {
    let text = format!(
        "public_origin = \"https://shop.example.test\"\nupstream = \"http://127.0.0.1:1\"\n\
         [[facilitators]]\nurl = \"http://127.0.0.1:1\"\n{networks_and_routes}"
    );
    GatewayConfig::parse_with_env(&text, |_| None).expect("config")
}

const LEDGER_ROUTE: &str = "[[routes]]\nmethod = \"GET\"\npath = \"/report\"\n\
    [[routes.accepts]]\nscheme = \"iou\"\nnetwork = \"ledger\"\nprice = \"$1.25\"\npay_to = \"bob\"\n";

#[tokio::test]
async fn a_toy_plugin_serves_its_networks_through_the_gateway() {
    let ledger = Arc::new(LedgerPlugin::default());
    let plugins = PluginRegistry::new().with(ledger.clone());
    let config = gateway_config(&format!(
        "[[networks]]\nnetwork = \"ledger\"\nbranch = \"north\"\n{LEDGER_ROUTE}"
    ));
    let gateway =
        Gateway::with_facilitator(&config, &plugins, Arc::new(Unreachable)).expect("gateway");
    assert_eq!(
        *ledger.seen.lock().unwrap_or_else(PoisonError::into_inner),
        [("networks[0]".to_owned(), "north".to_owned())],
        "the entry went to its plugin, by friendly name"
    );
    let answer = gateway
        .router()
        .oneshot(
            Request::get("/report")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 402);
    let header = answer
        .headers()
        .get("payment-required")
        .expect("PAYMENT-REQUIRED");
    let required = decode_payment_required(header.as_bytes()).expect("decodable");
    assert_eq!(required.accepts[0].scheme, "iou");
    assert_eq!(required.accepts[0].network.as_str(), "ledger:main");
    assert_eq!(required.accepts[0].amount.to_string(), "125");

    // Browsers get the paywall with the plugin's network name and asset.
    let page = gateway
        .router()
        .oneshot(
            Request::get("/report")
                .header("accept", "text/html")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    let body = page.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("1.25 USD"), "{text}");
    assert!(text.contains("ledger (ledger:main)"), "{text}");
}

#[test]
fn a_network_entry_no_plugin_serves_is_a_startup_error_naming_it() {
    let plugins = PluginRegistry::new().with(Arc::new(LedgerPlugin::default()));
    let config = gateway_config(
        "[[networks]]\nnetwork = \"ledger\"\nbranch = \"north\"\n\
         [[networks]]\nnetwork = \"eip155:31337\"\nname = \"Anvil\"\n",
    );
    let error = Gateway::with_facilitator(&config, &plugins, Arc::new(Unreachable))
        .expect_err("no eip155 plugin is registered");
    assert!(
        matches!(&error, GatewayError::Plugin(PluginError::NoPlugin(network, namespace))
            if network.as_str() == "eip155:31337" && namespace == "eip155"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("eip155:31337") && message.contains("namespace eip155"),
        "{message}"
    );

    // A route accepting a network of an unregistered namespace, likewise.
    let config =
        gateway_config(&LEDGER_ROUTE.replace("network = \"ledger\"", "network = \"solana:x\""));
    let error = Gateway::with_facilitator(&config, &plugins, Arc::new(Unreachable))
        .expect_err("no solana plugin is registered");
    let message = error.to_string();
    assert!(
        message.contains("routes[0].accepts[0].network") && message.contains("namespace solana"),
        "{message}"
    );

    // The plugin checks its own entries; its error names the entry.
    let config = gateway_config("[[networks]]\nnetwork = \"ledger\"\n");
    let error = Gateway::with_facilitator(&config, &plugins, Arc::new(Unreachable))
        .expect_err("the plugin refuses the entry");
    assert_eq!(
        error.to_string(),
        "networks: networks[0]: `branch` is required"
    );
}

/// `sponsored` requirements need the facilitator's `sponsor` (as Solana's
/// need its fee payer): without the `/supported` entry they cannot be built.
struct Sponsored;

impl SchemeServer for Sponsored {
    fn scheme(&self) -> &'static str {
        "sponsored"
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        if request.pay_to == "nobody" {
            return Err(SchemeError::InvalidRequirements(
                "nobody cannot be paid".into(),
            ));
        }
        let sponsor = request
            .facilitator_kind
            .and_then(|kind| kind.extra.as_ref())
            .and_then(|extra| extra.get("sponsor"))
            .cloned()
            .ok_or_else(|| SchemeError::NeedsFacilitatorData("no sponsor".into()))?;
        let mut extra = serde_json::Map::new();
        extra.insert("sponsor".into(), sponsor);
        Ok(PaymentRequirements {
            scheme: "sponsored".into(),
            network: request.network.clone(),
            amount: AtomicAmount::from(7_u64),
            asset: "USD".into(),
            pay_to: request.pay_to.into(),
            max_timeout_seconds: request.max_timeout_seconds,
            extra: Some(extra),
        })
    }
}

struct SponsoredPlugin;

impl ChainPlugin for SponsoredPlugin {
    fn namespace(&self) -> &'static str {
        "sponsor"
    }

    fn server(&self, _config: &ServerConfig) -> Result<ServerParts, PluginError> {
        let mut parts = ServerParts::default();
        let pattern = ChainIdPattern::namespace("sponsor").map_err(PluginError::from)?;
        parts
            .schemes
            .push(Registration::new(pattern, Arc::new(Sponsored)));
        Ok(parts)
    }
}

/// Lists the `sponsored` kind with its sponsor; settles nothing.
struct SponsoringFacilitator;

impl Facilitator for SponsoringFacilitator {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Transport("unreachable".into())) })
    }

    fn settle<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Transport("unreachable".into())) })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async {
            Ok(serde_json::from_value(serde_json::json!({"kinds": [{
                "x402Version": 2, "scheme": "sponsored", "network": "sponsor:one",
                "extra": {"sponsor": "S1"}}]}))
            .expect("supported"))
        })
    }
}

const SPONSORED_ROUTE: &str = "[[routes]]\nmethod = \"GET\"\npath = \"/report\"\n\
    [[routes.accepts]]\nscheme = \"sponsored\"\nnetwork = \"sponsor:one\"\n\
    amount = \"7\"\nasset = \"USD\"\npay_to = \"bob\"\n";

#[tokio::test]
async fn requirements_that_need_the_facilitators_data_start_and_take_it_per_request() {
    let plugins = PluginRegistry::new().with(Arc::new(SponsoredPlugin));
    let gateway = Gateway::with_facilitator(
        &gateway_config(SPONSORED_ROUTE),
        &plugins,
        Arc::new(SponsoringFacilitator),
    )
    .expect("a missing facilitator kind is not a startup error");
    let answer = gateway
        .router()
        .oneshot(
            Request::get("/report")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 402);
    let header = answer
        .headers()
        .get("payment-required")
        .expect("PAYMENT-REQUIRED");
    let required = decode_payment_required(header.as_bytes()).expect("decodable");
    let extra = required.accepts[0].extra.as_ref().expect("extra");
    assert_eq!(
        extra["sponsor"], "S1",
        "taken from the facilitator's /supported"
    );

    // Any other refusal of the scheme still stops the start.
    let config = gateway_config(&SPONSORED_ROUTE.replace("\"bob\"", "\"nobody\""));
    let error = Gateway::with_facilitator(&config, &plugins, Arc::new(SponsoringFacilitator))
        .expect_err("the scheme refuses the payee");
    assert!(
        error.to_string().contains("nobody cannot be paid"),
        "{error}"
    );
}

#[tokio::test]
async fn an_option_the_facilitator_does_not_offer_is_left_out_of_the_402() {
    let plugins = PluginRegistry::new()
        .with(Arc::new(LedgerPlugin::default()))
        .with(Arc::new(SponsoredPlugin));
    let both = format!(
        "{LEDGER_ROUTE}[[routes.accepts]]\nscheme = \"sponsored\"\nnetwork = \"sponsor:one\"\n\
         amount = \"7\"\nasset = \"USD\"\npay_to = \"bob\"\n"
    );
    // `Unreachable` lists no kind: no sponsor to put in the requirements.
    let gateway =
        Gateway::with_facilitator(&gateway_config(&both), &plugins, Arc::new(Unreachable))
            .expect("gateway");
    let answer = gateway
        .router()
        .oneshot(
            Request::get("/report")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(
        answer.status().as_u16(),
        402,
        "sold through its other option"
    );
    let header = answer.headers().get("payment-required").expect("header");
    let required = decode_payment_required(header.as_bytes()).expect("decodable");
    let schemes: Vec<&str> = required.accepts.iter().map(|a| a.scheme.as_str()).collect();
    assert_eq!(schemes, ["iou"]);

    // A route with no option left cannot be sold: no empty 402.
    let gateway = Gateway::with_facilitator(
        &gateway_config(SPONSORED_ROUTE),
        &plugins,
        Arc::new(Unreachable),
    )
    .expect("gateway");
    let answer = gateway
        .router()
        .oneshot(
            Request::get("/report")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert!(answer.status().is_server_error(), "{}", answer.status());
    assert!(answer.headers().get("payment-required").is_none());
}
