//! A toy scheme registers through the public traits only: the core needs no
//! change to learn a new scheme or chain.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use paywire_core::scheme::RequirementsRequest;
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, ErrorReason, Facilitator, FacilitatorRequest, JsonObject,
    LocalFacilitator, Money, PaymentPayload, PaymentRequirements, Price, SchemeError,
    SchemeFacilitator, SchemeRegistry, SchemeServer, SettleResponse, VerifyResponse,
};
use serde_json::json;

/// Runs a future that completes without waiting (all toy futures do).
fn ready<T>(future: BoxFuture<'_, T>) -> T {
    let mut future = future;
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("toy future must be ready"),
    }
}

/// "IOU" scheme on a made-up ledger network: the payload is a signed note whose
/// `amount` must equal the requirement.
struct IouScheme {
    network: ChainId,
}

impl SchemeServer for IouScheme {
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

impl SchemeFacilitator for IouScheme {
    fn scheme(&self) -> &'static str {
        "iou"
    }
    fn networks(&self) -> Vec<ChainId> {
        vec![self.network.clone()]
    }
    fn signers(&self, _network: &ChainId) -> Vec<String> {
        vec!["ledger-bot".into()]
    }
    fn verify<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<VerifyResponse, SchemeError>> {
        Box::pin(async move {
            let signed = payload.payload.get("amount").and_then(|v| v.as_str());
            Ok(if signed == Some(&requirements.amount.to_string()) {
                VerifyResponse::valid("alice")
            } else {
                VerifyResponse::invalid(ErrorReason::INVALID_PAYLOAD, Some("alice".into()))
            })
        })
    }
    fn settle<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        Box::pin(async move {
            let verified = self.verify(payload, requirements).await?;
            Ok(if verified.is_valid {
                SettleResponse::settled(requirements.network.clone(), "iou-1", verified.payer)
            } else {
                SettleResponse::failed(
                    requirements.network.clone(),
                    ErrorReason::INVALID_PAYLOAD,
                    verified.payer,
                    "",
                )
            })
        })
    }
}

fn ledger() -> ChainId {
    ChainId::parse("ledger:main").unwrap()
}

#[test]
fn toy_scheme_registers_and_runs() {
    let scheme = Arc::new(IouScheme { network: ledger() });

    let mut servers: SchemeRegistry<dyn SchemeServer> = SchemeRegistry::new();
    servers.register(
        "iou",
        ChainIdPattern::parse("ledger:*").unwrap(),
        scheme.clone(),
    );
    let server = servers.find("iou", &ledger()).expect("registered");
    let price = Price::Money(Money::parse("$1.25").unwrap());
    let requirements = server
        .requirements(&RequirementsRequest {
            network: &ledger(),
            price: &price,
            pay_to: "bob",
            max_timeout_seconds: 30,
            facilitator_kind: None,
        })
        .unwrap();
    assert_eq!(requirements.amount.to_string(), "125");

    let mut facilitator = LocalFacilitator::new();
    facilitator.register(scheme);
    let supported = ready(facilitator.supported()).unwrap();
    assert_eq!(supported.kinds.len(), 1);
    assert_eq!(supported.kinds[0].network, "ledger:main");
    assert_eq!(supported.signers["ledger:*"], vec!["ledger-bot".to_owned()]);

    let mut note = JsonObject::new();
    note.insert("amount".into(), json!("125"));
    let payload = PaymentPayload {
        x402_version: 2,
        resource: None,
        accepted: requirements.clone(),
        payload: note,
        extensions: None,
    };
    let request = FacilitatorRequest::new(payload.clone(), requirements.clone());
    assert!(ready(facilitator.verify(&request)).unwrap().is_valid);
    let settled = ready(facilitator.settle(&request)).unwrap();
    assert!(settled.success);
    assert_eq!(settled.transaction, "iou-1");

    // Routing checks happen before the plugin: wrong scheme, network, version.
    let mut wrong_scheme = request.clone();
    wrong_scheme.payment_payload.accepted.scheme = "other".into();
    let answer = ready(facilitator.verify(&wrong_scheme)).unwrap();
    assert_eq!(answer.invalid_reason, Some(ErrorReason::INVALID_SCHEME));

    let mut wrong_network = request.clone();
    wrong_network.payment_payload.accepted.network = ChainId::parse("ledger:test").unwrap();
    let answer = ready(facilitator.settle(&wrong_network)).unwrap();
    assert!(!answer.success);
    assert_eq!(answer.error_reason, Some(ErrorReason::INVALID_NETWORK));

    let mut unknown = request.clone();
    unknown.payment_requirements.network = ChainId::parse("ledger:test").unwrap();
    unknown.payment_payload.accepted.network = ChainId::parse("ledger:test").unwrap();
    let answer = ready(facilitator.verify(&unknown)).unwrap();
    assert_eq!(answer.invalid_reason, Some(ErrorReason::UNSUPPORTED_SCHEME));

    let mut v1 = request;
    v1.payment_payload.x402_version = 1;
    let answer = ready(facilitator.verify(&v1)).unwrap();
    assert_eq!(
        answer.invalid_reason,
        Some(ErrorReason::INVALID_X402_VERSION)
    );
}
