//! Test doubles shared by the unit tests of the client and its adapters.

use std::sync::atomic::{AtomicUsize, Ordering};

use paywire_core::extensions::PAYMENT_IDENTIFIER;
use paywire_core::{
    BoxFuture, ChainId, Extensions, JsonObject, PaymentRequired, PaymentRequirements, ResourceInfo,
    SchemeClient, SchemeError,
};

/// Signs nothing real; counts how many payloads it produced.
pub(crate) struct CountingWallet(pub(crate) AtomicUsize);

impl SchemeClient for CountingWallet {
    fn scheme(&self) -> &'static str {
        "exact"
    }
    fn payer(&self, _: &ChainId) -> Option<String> {
        Some("0xpayer".into())
    }
    fn create_payload<'a>(
        &'a self,
        _: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut payload = JsonObject::new();
            payload.insert("n".into(), n.into());
            Ok(payload)
        })
    }
}

pub(crate) fn required() -> PaymentRequired {
    let mut extensions = Extensions::new();
    extensions.insert(
        PAYMENT_IDENTIFIER,
        paywire_core::Extension {
            info: serde_json::json!({"required": false}),
            schema: serde_json::json!({}),
        },
    );
    PaymentRequired {
        x402_version: 2,
        error: None,
        resource: ResourceInfo::new("https://api.example.test/r"),
        accepts: vec![PaymentRequirements {
            scheme: "exact".into(),
            network: ChainId::parse("eip155:8453").unwrap(),
            amount: 10_000u64.into(),
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
            pay_to: "0xa".into(),
            max_timeout_seconds: 60,
            extra: None,
        }],
        extensions: Some(extensions),
    }
}
