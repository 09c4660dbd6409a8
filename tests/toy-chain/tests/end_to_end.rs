//! A chain family the product has never heard of, registered in one place,
//! is paid end to end over HTTP: our facilitator service (built from TOML
//! whose `[[chains]]` entry names `toy-ledger`), our gateway in front of a
//! plain upstream (a route priced on `toy-ledger`), and our paying client
//! (with the plugin's wallet). No code of the facilitator, gateway, server or
//! client crates names `toy`; they learn it from the registry.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use paywire_client::X402Client;
use paywire_core::codec::PAYMENT_SIGNATURE_HEADER;
use paywire_core::{PluginRegistry, Secret, WalletConfig};
use paywire_facilitator::FacilitatorConfig;
use paywire_gateway::{Gateway, GatewayConfig};
use paywire_toy_chain::{ToyLedger, ToyPlugin};

/// Serves `router` on a free loopback port.
async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, app).await;
    });
    address
}

/// Our facilitator service settling on the toy ledger, over HTTP.
async fn facilitator(registry: &PluginRegistry, store: &std::path::Path) -> String {
    let text = format!(
        "store = {:?}\n[[chains]]\nnetwork = \"toy-ledger\"\noperator = \"toy-operator\"\n",
        store.display().to_string()
    );
    let config = FacilitatorConfig::parse_with_env(&text, |_| None).expect("facilitator config");
    let state = paywire_facilitator::build(&config, registry)
        .await
        .expect("facilitator builds from the toy plugin");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = paywire_facilitator::serve(listener, state, std::future::pending()).await;
    });
    format!("http://{address}")
}

/// Our gateway selling the upstream's `/report` for $0.05 on the toy ledger.
async fn gateway(registry: &PluginRegistry, upstream: SocketAddr, facilitator: &str) -> String {
    let text = format!(
        "public_origin = \"http://shop.example\"\nupstream = \"http://{upstream}\"\n\
         [[facilitators]]\nurl = \"{facilitator}\"\n\
         [[routes]]\nmethod = \"GET\"\npath = \"/report\"\n\
         [[routes.accepts]]\nnetwork = \"toy-ledger\"\nprice = \"$0.05\"\npay_to = \"shop\"\n"
    );
    let config = GatewayConfig::parse_with_env(&text, |_| None).expect("gateway config");
    let gateway = Gateway::from_config(&config, registry).expect("gateway builds");
    format!("http://{}", serve(gateway.router()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toy_chain_is_paid_through_facilitator_gateway_and_client() {
    let ledger = ToyLedger::new();
    ledger.open("alice", "alice-secret", 1_000);
    // The one registration line each composition root needs.
    let registry = PluginRegistry::new().with(Arc::new(ToyPlugin::new(ledger.clone())));

    let dir = tempfile::tempdir().expect("tempdir");
    let facilitator = facilitator(&registry, &dir.path().join("ledger.sqlite")).await;
    let upstream =
        serve(axum::Router::new().route("/report", get(|| async { "toy report" }))).await;
    let gateway = gateway(&registry, upstream, &facilitator).await;

    let network = registry.networks().resolve("toy-ledger").expect("named");
    let wallet = registry
        .plugin_for(&network)
        .expect("registered")
        .wallet(&WalletConfig::new(Secret::new("alice:alice-secret")))
        .expect("wallet side");
    let mut builder = X402Client::builder();
    for registration in wallet.schemes {
        builder = builder.wallet(registration.networks, registration.handler);
    }
    let client = builder.build();

    let http = reqwest::Client::new();
    let url = format!("{gateway}/report");
    let unpaid = http.get(&url).send().await.expect("unpaid request");
    assert_eq!(unpaid.status().as_u16(), 402, "priced on the toy ledger");

    let request = http.get(&url).build().expect("request");
    let response = client.send(&http, request).await.expect("paid request");
    assert_eq!(response.status().as_u16(), 200);
    let receipt = response
        .headers()
        .get("payment-response")
        .and_then(|v| paywire_core::codec::decode_payment_response(v.as_bytes()).ok())
        .expect("a receipt");
    assert!(receipt.success);
    assert_eq!(receipt.network, network);
    assert_eq!(response.text().await.expect("body"), "toy report");
    assert_eq!((ledger.balance("alice"), ledger.balance("shop")), (995, 5));
    assert_eq!(ledger.transactions(), 1);

    // The same signed note again: single use, nothing moves.
    let paid_header = {
        let request = http.get(&url).build().expect("request");
        let required = client
            .read_payment_required(http.execute(request).await.expect("402"))
            .await
            .expect("offer");
        client.prepare(&required).await.expect("signed").header
    };
    for expected in [200, 402] {
        let answer = http
            .get(&url)
            .header(PAYMENT_SIGNATURE_HEADER, &paid_header)
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status().as_u16(), expected);
    }
    assert_eq!((ledger.balance("alice"), ledger.balance("shop")), (990, 10));
    assert_eq!(ledger.transactions(), 2);
}
