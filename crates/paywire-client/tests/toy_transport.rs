//! The payment flow over a transport that is not HTTP: an in-process "call"
//! transport (a resource URL, named credentials, a payload; answers with a
//! status, an offer, a receipt and named fields, as an MCP tool call would)
//! against a toy scheme, end to end: offer, policy (the cheaper option),
//! budget, one signature, the same payment re-sent after a transport error
//! and while the outcome is pending, the receipt, the budget committed, and
//! a session credential remembered from the answer's fields.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paywire_client::{
    AnswerFields, AnswerStatus, AssetInfo, Budget, BudgetRule, BudgetScope, ClientError,
    Credential, PaymentStatus, PaymentTransport, PreparedPayment, SignInProvider, StaticCatalog,
    TransportError, X402Client,
};
use paywire_core::{
    BoxFuture, ChainId, ChainIdPattern, ErrorReason, JsonObject, PaymentPayload, PaymentRequired,
    PaymentRequirements, ResourceInfo, SchemeClient, SchemeError, SettleResponse,
};
use url::Url;

const TOY: &str = "toy:local";
const ASSET: &str = "TOY";
const SESSION: &str = "toy-session";

fn network() -> ChainId {
    ChainId::parse(TOY).expect("toy network")
}

/// The toy scheme's signature: the payer's name over the amount and nonce.
fn toy_signature(payer: &str, requirements: &PaymentRequirements, nonce: u64) -> String {
    format!("signed-by:{payer}:{}:{nonce}", requirements.amount)
}

/// The paying side of the toy scheme; counts its signatures.
struct ToyWallet {
    signed: AtomicUsize,
}

impl SchemeClient for ToyWallet {
    fn scheme(&self) -> &'static str {
        "toy"
    }
    fn payer(&self, _: &ChainId) -> Option<String> {
        Some("alice".into())
    }
    fn create_payload<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        let nonce = self.signed.fetch_add(1, Ordering::SeqCst) as u64;
        Box::pin(async move {
            let mut payload = JsonObject::new();
            payload.insert("payer".into(), "alice".into());
            payload.insert("nonce".into(), nonce.into());
            payload.insert(
                "signature".into(),
                toy_signature("alice", requirements, nonce).into(),
            );
            Ok(payload)
        })
    }
}

/// A call: the resource, credentials by name, and the payment it carries.
#[derive(Debug, Clone)]
struct Call {
    resource: Url,
    credentials: BTreeMap<String, String>,
    payment: Option<PaymentPayload>,
}

/// An answer: what it says, what it carries.
#[derive(Debug)]
struct Reply {
    status: AnswerStatus,
    offer: Option<PaymentRequired>,
    receipt: Option<SettleResponse>,
    fields: JsonObject,
    content: Option<String>,
}

impl Reply {
    fn with_status(status: AnswerStatus) -> Self {
        Self {
            status,
            offer: None,
            receipt: None,
            fields: JsonObject::new(),
            content: None,
        }
    }
}

/// The seller: two options for its tool, a toy verifier, and a script for
/// the paid calls (first lost on the way, then pending, then settled).
#[derive(Default)]
struct Seller {
    paid_calls: Mutex<Vec<PaymentPayload>>,
    paid_attempts: AtomicUsize,
    calls: AtomicUsize,
}

impl Seller {
    fn offer(&self, resource: &Url) -> PaymentRequired {
        let option = |amount: u64| PaymentRequirements {
            scheme: "toy".into(),
            network: network(),
            amount: amount.into(),
            asset: ASSET.into(),
            pay_to: "seller".into(),
            max_timeout_seconds: 60,
            extra: None,
        };
        PaymentRequired {
            x402_version: 2,
            error: None,
            resource: ResourceInfo::new(resource.as_str()),
            // The dearer option first (field lesson 19).
            accepts: vec![option(500), option(300)],
            extensions: None,
        }
    }

    fn answer(&self, call: Call) -> Result<Reply, TransportError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if call.credentials.get(SESSION).map(String::as_str) == Some("alice-session") {
            let mut reply = Reply::with_status(AnswerStatus::Granted);
            reply.content = Some("the weather is fine".into());
            return Ok(reply);
        }
        let Some(payment) = call.payment else {
            let mut reply = Reply::with_status(AnswerStatus::PaymentRequired);
            reply.offer = Some(self.offer(&call.resource));
            return Ok(reply);
        };
        let attempt = self.paid_attempts.fetch_add(1, Ordering::SeqCst);
        if attempt == 0 {
            return Err(TransportError::retryable(
                "connection reset before the call left",
            ));
        }
        self.paid_calls.lock().expect("lock").push(payment.clone());
        if !self
            .offer(&call.resource)
            .accepts
            .contains(&payment.accepted)
            || !valid(&payment)
        {
            let mut reply = Reply::with_status(AnswerStatus::PaymentRequired);
            reply.offer = Some(self.offer(&call.resource));
            return Ok(reply);
        }
        if attempt == 1 {
            let mut reply = Reply::with_status(AnswerStatus::PaymentRequired);
            reply.receipt = Some(SettleResponse::failed(
                network(),
                ErrorReason::TRANSACTION_PENDING,
                None,
                "toy-tx-1",
            ));
            return Ok(reply);
        }
        let mut reply = Reply::with_status(AnswerStatus::Granted);
        reply.receipt = Some(SettleResponse::settled(network(), "toy-tx-1", None));
        reply.fields.insert(SESSION.into(), "alice-session".into());
        reply.content = Some("the weather is fine".into());
        Ok(reply)
    }
}

/// The toy verifier: the signature matches the signed fields.
fn valid(payment: &PaymentPayload) -> bool {
    let payer = payment.payload.get("payer").and_then(|v| v.as_str());
    let nonce = payment
        .payload
        .get("nonce")
        .and_then(serde_json::value::Value::as_u64);
    let signature = payment.payload.get("signature").and_then(|v| v.as_str());
    match (payer, nonce, signature) {
        (Some(payer), Some(nonce), Some(signature)) => {
            signature == toy_signature(payer, &payment.accepted, nonce)
        }
        _ => false,
    }
}

/// The transport: calls go straight to the seller, in process.
struct InProcess {
    seller: Arc<Seller>,
    /// Fails every paid call with this error after it left.
    paid_failure: Option<TransportError>,
    /// Cannot put a payment on a call at all (nothing leaves).
    refuses_payments: bool,
}

impl InProcess {
    fn to(seller: &Arc<Seller>) -> Self {
        Self {
            seller: Arc::clone(seller),
            paid_failure: None,
            refuses_payments: false,
        }
    }
}

impl PaymentTransport for InProcess {
    type Request = Call;
    type Response = Reply;

    fn resource<'r>(&self, request: &'r Call) -> &'r Url {
        &request.resource
    }

    fn try_clone(&self, request: &Call) -> Option<Call> {
        Some(request.clone())
    }

    fn attach(&self, request: &mut Call, credential: &Credential) -> Result<(), TransportError> {
        request
            .credentials
            .insert(credential.name.clone(), credential.value.clone());
        Ok(())
    }

    fn attach_payment(
        &self,
        request: &mut Call,
        payment: &PreparedPayment,
    ) -> Result<(), TransportError> {
        if self.refuses_payments {
            return Err(TransportError::fatal("no room for a payment on this call"));
        }
        request.payment = Some(payment.payload.clone());
        Ok(())
    }

    fn send(&self, request: Call) -> BoxFuture<'_, Result<Reply, TransportError>> {
        assert!(
            request.payment.is_none(),
            "an unpaid call carries no payment"
        );
        Box::pin(async move { self.seller.answer(request) })
    }

    fn send_paid(&self, request: Call) -> BoxFuture<'_, Result<Reply, TransportError>> {
        assert!(request.payment.is_some(), "a paid call carries the payment");
        Box::pin(async move {
            let reply = self.seller.answer(request);
            match &self.paid_failure {
                Some(error) => Err(error.clone()),
                None => reply,
            }
        })
    }

    fn status(&self, response: &Reply) -> AnswerStatus {
        response.status
    }

    fn receipt(&self, response: &Reply) -> Option<SettleResponse> {
        response.receipt.clone()
    }

    fn field<'r>(&self, response: &'r Reply, name: &str) -> Option<&'r str> {
        response.fields.field(name)
    }

    fn read_offer(
        &self,
        response: Reply,
        _max_body: usize,
    ) -> BoxFuture<'_, Result<PaymentRequired, ClientError>> {
        Box::pin(async move { response.offer.ok_or(ClientError::MissingPaymentRequired) })
    }
}

/// Keeps the session field of granted answers and offers it up front.
#[derive(Default)]
struct Sessions(Mutex<Option<String>>);

impl SignInProvider for Sessions {
    fn sign_in<'a>(
        &'a self,
        _: &'a Url,
        _: &'a PaymentRequired,
    ) -> BoxFuture<'a, Option<Credential>> {
        Box::pin(async { None })
    }

    fn session(&self, _: &Url) -> Option<Credential> {
        let token = self.0.lock().expect("lock").clone()?;
        Some(Credential::new(SESSION, token))
    }

    fn remember(&self, _: &Url, answer: &dyn AnswerFields) {
        if let Some(token) = answer.field(SESSION) {
            *self.0.lock().expect("lock") = Some(token.to_owned());
        }
    }
}

fn call() -> Call {
    Call {
        resource: Url::parse("toy://seller/weather").expect("url"),
        credentials: BTreeMap::new(),
        payment: None,
    }
}

fn scope() -> BudgetScope {
    BudgetScope::Asset {
        network: network(),
        asset: ASSET.into(),
    }
}

/// A client with the toy wallet, a 1000-unit budget and a session keeper.
async fn payer() -> (X402Client, Arc<ToyWallet>, Arc<Budget>) {
    let budget = Arc::new(
        Budget::in_memory(vec![BudgetRule {
            scope: scope(),
            per_call: None,
            per_hour: None,
            per_day: None,
            total: Some(1_000),
        }])
        .await
        .expect("budget"),
    );
    let wallet = Arc::new(ToyWallet {
        signed: AtomicUsize::new(0),
    });
    let info = AssetInfo {
        symbol: ASSET.into(),
        decimals: 6,
        usd_stable: true,
    };
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("toy:*").expect("pattern"),
            Arc::clone(&wallet) as Arc<dyn SchemeClient>,
        )
        .catalog(Arc::new(StaticCatalog::default().with(
            network(),
            ASSET,
            info,
        )))
        .budget(Arc::clone(&budget))
        .sign_in(Arc::new(Sessions::default()))
        .max_outcome_wait(Duration::from_millis(5))
        .build();
    (client, wallet, budget)
}

/// (spent, outstanding) in the toy asset.
async fn totals(budget: &Budget) -> (u128, u128) {
    (
        budget.spent_total(&scope()).await.expect("spent"),
        budget
            .outstanding_total(&scope())
            .await
            .expect("outstanding"),
    )
}

#[tokio::test]
async fn a_toy_transport_pays_once_resends_the_same_payment_and_commits_the_budget() {
    let (client, wallet, budget) = payer().await;
    let seller = Arc::new(Seller::default());
    let transport = InProcess::to(&seller);

    let delivered = client
        .pay_through(&transport, call())
        .await
        .expect("paid call");
    assert_eq!(delivered.response.status, AnswerStatus::Granted);
    assert_eq!(
        delivered.response.content.as_deref(),
        Some("the weather is fine")
    );
    let outcome = delivered.outcome.expect("an outcome");
    assert_eq!(outcome.status, PaymentStatus::Paid);
    assert_eq!(
        outcome.requirements.amount,
        300u64.into(),
        "the cheaper option"
    );
    assert_eq!(
        outcome.receipt.map(|r| r.transaction),
        Some("toy-tx-1".to_owned())
    );
    assert_eq!(
        wallet.signed.load(Ordering::SeqCst),
        1,
        "signed exactly once"
    );
    let paid = seller.paid_calls.lock().expect("lock").clone();
    assert_eq!(paid.len(), 2, "pending, then settled (the first was lost)");
    assert_eq!(paid[0], paid[1], "the same payment, re-sent as is");
    assert_eq!(seller.paid_attempts.load(Ordering::SeqCst), 3);
    assert_eq!(
        totals(&budget).await,
        (300, 0),
        "settled: committed, no longer outstanding"
    );

    // The answer's session field lets the next call in without a payment.
    let calls_before = seller.calls.load(Ordering::SeqCst);
    let returning = client
        .pay_through(&transport, call())
        .await
        .expect("returning call");
    assert_eq!(returning.response.status, AnswerStatus::Granted);
    assert!(returning.outcome.is_none(), "nothing paid");
    assert_eq!(
        seller.calls.load(Ordering::SeqCst),
        calls_before + 1,
        "one call"
    );
    assert_eq!(wallet.signed.load(Ordering::SeqCst), 1);
}

/// Field lesson 31 over any transport: a payment that left and got no
/// answer keeps counting (the seller may hold it); one that never left is
/// released at once.
#[tokio::test]
async fn a_payment_lost_after_it_left_keeps_counting_one_that_never_left_does_not() {
    let (client, wallet, budget) = payer().await;
    let seller = Arc::new(Seller::default());
    // The paid call reaches the seller; its answer is lost.
    let lost = InProcess {
        paid_failure: Some(TransportError::fatal(
            "connection reset after the call left",
        )),
        ..InProcess::to(&seller)
    };
    match client.pay_through(&lost, call()).await {
        Err(ClientError::Transport(error)) => assert!(!error.is_retryable(), "{error}"),
        other => panic!(
            "expected a transport error, got {:?}",
            other.map(|d| d.outcome)
        ),
    }
    assert_eq!(seller.paid_attempts.load(Ordering::SeqCst), 1, "it arrived");
    assert_eq!(totals(&budget).await, (0, 300), "sent: still counted");

    let refusing = InProcess {
        refuses_payments: true,
        ..InProcess::to(&seller)
    };
    assert!(matches!(
        client.pay_through(&refusing, call()).await,
        Err(ClientError::Transport(_))
    ));
    assert_eq!(wallet.signed.load(Ordering::SeqCst), 2);
    assert_eq!(totals(&budget).await, (0, 300), "never sent: released");
}
