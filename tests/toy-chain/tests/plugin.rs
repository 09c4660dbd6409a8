//! The toy plugin's three sides, driven through the core's registry and
//! in-process facilitator only.

use std::sync::Arc;

use paywire_core::{
    Facilitator, FacilitatorConfig, FacilitatorRequest, LocalFacilitator, PaymentPayload,
    PluginRegistry, RequirementsRequest, Secret, ServerConfig, WalletConfig, X402_VERSION,
};
use paywire_toy_chain::{NONCE_USED, ToyLedger, ToyPlugin, price};

#[tokio::test]
async fn pays_once_through_the_registry() {
    let ledger = ToyLedger::new();
    ledger.open("alice", "alice-secret", 1_000);
    let registry = PluginRegistry::new().with(Arc::new(ToyPlugin::new(ledger.clone())));
    let network = registry.networks().resolve("toy-ledger").expect("named");
    let plugin = registry.plugin_for(&network).expect("registered");

    let server = plugin
        .server(&ServerConfig::default())
        .expect("server side");
    let requirements = server.schemes[0]
        .handler
        .requirements(&RequirementsRequest {
            network: &network,
            price: &price(250),
            pay_to: "shop",
            max_timeout_seconds: 60,
            facilitator_kind: None,
        })
        .expect("requirements");

    let wallet = plugin
        .wallet(&WalletConfig::new(Secret::new("alice:alice-secret")))
        .expect("wallet side");
    let payload = wallet.schemes[0]
        .handler
        .create_payload(&requirements)
        .await
        .expect("signed");

    let parts = plugin
        .facilitator(&FacilitatorConfig::default())
        .await
        .expect("facilitator side");
    let mut facilitator = LocalFacilitator::new();
    for scheme in parts.schemes {
        facilitator.register(scheme);
    }
    let request = FacilitatorRequest {
        x402_version: X402_VERSION,
        payment_payload: PaymentPayload {
            x402_version: X402_VERSION,
            payload,
            extensions: None,
            resource: None,
            accepted: requirements.clone(),
        },
        payment_requirements: requirements,
    };
    assert!(facilitator.verify(&request).await.expect("verify").is_valid);
    let settled = facilitator.settle(&request).await.expect("settle");
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        (ledger.balance("alice"), ledger.balance("shop")),
        (750, 250)
    );
    let again = facilitator.settle(&request).await.expect("settle again");
    assert!(!again.success);
    assert_eq!(again.error_reason, Some(NONCE_USED));
    assert_eq!(facilitator.replay_reason(&request), NONCE_USED);
    assert!(facilitator.spend_key(&request).is_some());
    assert_eq!(ledger.transactions(), 1);
}
