//! The payment flow, independent of the transport: offer → policy → budget
//! reservation → signature → send (the same payment again after transport
//! errors and while the settlement outcome is not known) → receipt → budget
//! commit, or the payment left outstanding.
//!
//! A transport (HTTP through reqwest, MCP, …) implements
//! [`PaymentTransport`]: how to send a request with or without a payment,
//! how to read an answer's status, offer and receipt. The flow itself is
//! [`X402Client::pay_through`]; [`X402Client::send`] and
//! [`crate::X402Middleware`] are its HTTP adapters.

use std::time::Duration;

use paywire_core::{BoxFuture, JsonObject, PaymentRequired, PaymentRequirements, SettleResponse};
use url::Url;

use crate::client::{ClientError, PaymentOutcome, PreparedPayment, X402Client};

/// Redirects within the seller's origin that a payment follows at most
/// before the flow stops carrying it.
const MAX_PAID_HOPS: usize = 5;

/// Longest wait before asking again about an outcome that is not known yet,
/// when the server did not say how long to wait.
const DEFAULT_OUTCOME_WAIT: Duration = Duration::from_secs(1);

/// What an answer says, as far as the flow is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerStatus {
    /// The resource was served (HTTP 2xx).
    Granted,
    /// A payment is required, or the one sent was not accepted (HTTP 402).
    PaymentRequired,
    /// The server cannot answer now (HTTP 503). With a retry delay
    /// ([`PaymentTransport::retry_after`]) it keeps the payment for a retry:
    /// the settlement outcome is not known yet.
    Unavailable,
    /// Anything else (an error, a redirect).
    Other,
}

/// A transport failure, and whether sending the same request again is safe
/// and useful (it certainly did not reach the server, or timed out).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    message: String,
    retryable: bool,
}

impl TransportError {
    /// A failure the flow may answer by sending the same request again
    /// (connection refused, time-out).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure after which the request is not sent again.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// Whether the same request may be sent again.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// A named value a [`SignInProvider`] adds to a request (an HTTP header, an
/// MCP `_meta` entry): a sign-in proof or a session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The field name, e.g. `SIGN-IN-WITH-X`.
    pub name: String,
    /// The value.
    pub value: String,
}

impl Credential {
    /// A credential `name: value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl std::fmt::Debug for Credential {
    // The value is a bearer secret (session token) or a signed proof.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .finish()
    }
}

/// Named values of an answer (HTTP headers, MCP `_meta` entries), as a
/// [`SignInProvider`] reads them.
pub trait AnswerFields {
    /// The value of field `name`, if present and text.
    fn field(&self, name: &str) -> Option<&str>;
}

impl AnswerFields for JsonObject {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name)?.as_str()
    }
}

/// A pre-payment step: on a payment-required answer, offer a credential that
/// may get the resource without paying (e.g. a `SIGN-IN-WITH-X` proof for a
/// wallet that already paid). The request is sent again with it first; if
/// the server still asks for a payment, the client pays as usual.
pub trait SignInProvider: Send + Sync {
    /// The credential to send `resource` again with, given the server's
    /// offer; `None` to skip straight to payment.
    fn sign_in<'a>(
        &'a self,
        resource: &'a Url,
        required: &'a PaymentRequired,
    ) -> BoxFuture<'a, Option<Credential>>;

    /// A credential to send up front on the first request to `resource`
    /// (e.g. a session token the server issued after an earlier sign-in),
    /// so a returning request costs one round trip. `None` by default.
    fn session(&self, _resource: &Url) -> Option<Credential> {
        None
    }

    /// Sees an answer from `resource` that granted access after signing in
    /// or paying (to keep a session token it carries).
    fn remember(&self, _resource: &Url, _answer: &dyn AnswerFields) {}

    /// The server asked for a payment although [`Self::session`] offered a
    /// credential for `resource`: forget it (the flow then signs in or pays
    /// as usual).
    fn forget(&self, _resource: &Url) {}
}

/// The next request of a redirect answered to a paid request.
#[derive(Debug)]
pub struct Hop<R> {
    /// The request to send (without the payment).
    pub request: R,
    /// Whether the payment may go with it: the same origin, and the server
    /// did not answer with a receipt (it has not taken the payment).
    pub carries_payment: bool,
}

/// What the flow needs from a transport. Requests carrying a payment must
/// never be forwarded by the transport on its own (say, along a redirect to
/// another origin): the flow decides where a payment goes.
pub trait PaymentTransport: Send + Sync {
    /// A request: the resource and its arguments.
    type Request: Send;
    /// An answer.
    type Response: Send;

    /// The resource `request` addresses (sign-in sessions and challenges
    /// are bound to it).
    fn resource<'r>(&self, request: &'r Self::Request) -> &'r Url;

    /// A copy of `request` to send again; `None` when it cannot be replayed
    /// (a streamed body).
    fn try_clone(&self, request: &Self::Request) -> Option<Self::Request>;

    /// Adds a sign-in credential to `request`.
    fn attach(
        &self,
        request: &mut Self::Request,
        credential: &Credential,
    ) -> Result<(), TransportError>;

    /// Adds the signed payment to `request`.
    fn attach_payment(
        &self,
        request: &mut Self::Request,
        payment: &PreparedPayment,
    ) -> Result<(), TransportError>;

    /// Sends a request that carries no payment.
    fn send(&self, request: Self::Request)
    -> BoxFuture<'_, Result<Self::Response, TransportError>>;

    /// Sends a request that carries the payment, never following a redirect.
    fn send_paid(
        &self,
        request: Self::Request,
    ) -> BoxFuture<'_, Result<Self::Response, TransportError>>;

    /// What `response` says.
    fn status(&self, response: &Self::Response) -> AnswerStatus;

    /// Asks whether `request` may be paid with `requirements`, the option
    /// the policy chose, before the budget is reserved and anything is
    /// signed; `Err(reason)` refuses ([`ClientError::Vetoed`], nothing
    /// signed). A per-request approval (say, of an MCP tool call with its
    /// arguments), where [`crate::PaymentHooks::before_sign`] sees only the
    /// option. Approves by default.
    fn approve<'a>(
        &'a self,
        _request: &'a Self::Request,
        _requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    /// The settlement receipt `response` carries, if any and readable.
    fn receipt(&self, response: &Self::Response) -> Option<SettleResponse>;

    /// How long the server asks to wait before trying again (HTTP
    /// `Retry-After` in seconds). `None` by default.
    fn retry_after(&self, _response: &Self::Response) -> Option<Duration> {
        None
    }

    /// The value of field `name` of `response` (for [`SignInProvider::remember`]).
    fn field<'r>(&self, response: &'r Self::Response, name: &str) -> Option<&'r str>;

    /// Reads the offer of a payment-required answer, refusing one larger
    /// than `max_body` bytes before buffering it.
    fn read_offer(
        &self,
        response: Self::Response,
        max_body: usize,
    ) -> BoxFuture<'_, Result<PaymentRequired, ClientError>>;

    /// The request a redirect `response` to `sent` leads to; `None` (the
    /// default) when it is not a redirect or the transport has none.
    fn redirect(
        &self,
        _sent: &Self::Request,
        _response: &Self::Response,
    ) -> Option<Hop<Self::Request>> {
        None
    }

    /// Points `retry` at the place that asked for the payment, when the
    /// unpaid request was forwarded there on its way (an HTTP redirect).
    /// Does nothing by default.
    fn pay_where_challenged(&self, _retry: &mut Self::Request, _challenge: &Self::Response) {}
}

/// The final answer of the flow, and how the payment ended if one was made.
#[derive(Debug)]
pub struct Delivered<R> {
    /// The final answer.
    pub response: R,
    /// The payment's outcome; `None` when nothing was paid.
    pub outcome: Option<PaymentOutcome>,
}

impl<R> Delivered<R> {
    fn unpaid(response: R) -> Self {
        Self {
            response,
            outcome: None,
        }
    }
}

/// Where the flow stands after a payment-required answer.
enum Challenge<T: PaymentTransport> {
    /// A sign-in got an answer other than a payment request.
    Answered(T::Response),
    /// Pay: the request to send with the payment, and the payment.
    Pay(T::Request, Box<PreparedPayment>),
}

/// Counters of one paid request.
#[derive(Debug, Default)]
struct Progress {
    /// Re-sends after transport errors.
    transport_retries: u32,
    /// Re-sends while the outcome was not known yet.
    outcome_retries: u32,
    /// Same-origin redirects followed with the payment.
    hops: usize,
    /// Whether the payment was handed to the transport at least once.
    sent: bool,
}

/// An answer's fields through its transport.
struct FieldsOf<'r, T: PaymentTransport> {
    transport: &'r T,
    response: &'r T::Response,
}

impl<T: PaymentTransport> AnswerFields for FieldsOf<'_, T> {
    fn field(&self, name: &str) -> Option<&str> {
        self.transport.field(self.response, name)
    }
}

impl X402Client {
    /// Sends `request` through `transport`; on a payment-required answer
    /// first tries the sign-in provider (if any), then pays and sends the
    /// request again with the payment (the same payment after transport
    /// errors and while the outcome is not known yet). Returns the final
    /// answer, with the payment's outcome when a payment was made.
    ///
    /// Once the payment was handed to the transport, the budget counts it
    /// until a receipt says it settled or a spend probe proves it unspent,
    /// whatever the answer.
    pub async fn pay_through<T: PaymentTransport>(
        &self,
        transport: &T,
        request: T::Request,
    ) -> Result<Delivered<T::Response>, ClientError> {
        let retry = transport.try_clone(&request);
        let mut request = request;
        let session = self.offer_session(transport, &mut request);
        let response = transport.send(request).await?;
        if transport.status(&response) != AnswerStatus::PaymentRequired {
            return Ok(Delivered::unpaid(response));
        }
        if let (Some(provider), Some(resource)) = (&self.sign_in, session) {
            tracing::debug!("session refused; signing in again");
            provider.forget(&resource);
        }
        match self.answer_challenge(transport, retry, response).await {
            Ok(Challenge::Answered(response)) => Ok(Delivered::unpaid(response)),
            Ok(Challenge::Pay(retry, prepared)) => {
                self.send_paid(transport, retry, &prepared).await
            }
            Err(error) => {
                self.hooks.on_failure(&error).await;
                Err(error)
            }
        }
    }

    /// Adds the sign-in provider's session credential for the request's
    /// resource, if it has one; returns the resource it was offered for.
    fn offer_session<T: PaymentTransport>(
        &self,
        transport: &T,
        request: &mut T::Request,
    ) -> Option<Url> {
        let provider = self.sign_in.as_ref()?;
        let resource = transport.resource(request).clone();
        let credential = provider.session(&resource)?;
        match transport.attach(request, &credential) {
            Ok(()) => Some(resource),
            Err(error) => {
                tracing::debug!(%error, "session credential not sent");
                None
            }
        }
    }

    /// Answers a payment-required `response`: signs in if the provider can,
    /// else chooses, reserves and signs a payment.
    async fn answer_challenge<T: PaymentTransport>(
        &self,
        transport: &T,
        retry: Option<T::Request>,
        response: T::Response,
    ) -> Result<Challenge<T>, ClientError> {
        let mut retry = retry.ok_or(ClientError::BodyNotReplayable)?;
        transport.pay_where_challenged(&mut retry, &response);
        let mut required = transport.read_offer(response, self.max_402_body).await?;
        if let Some(provider) = &self.sign_in {
            let resource = transport.resource(&retry).clone();
            if let Some(credential) = provider.sign_in(&resource, &required).await {
                match self
                    .send_signed_in(transport, provider.as_ref(), &retry, &credential)
                    .await?
                {
                    Ok(response) => return Ok(Challenge::Answered(response)),
                    Err(Some(offer)) => required = offer,
                    Err(None) => {}
                }
            }
        }
        let (requirements, selection) = self.choose(&required).await?;
        // The transport's approval comes after the policy chose (it sees the
        // option that would be paid) and before the budget is reserved.
        transport
            .approve(&retry, &requirements)
            .await
            .map_err(ClientError::Vetoed)?;
        let requested = transport.resource(&retry).clone();
        let prepared = self
            .sign_chosen(&required, requirements, selection, Some(&requested))
            .await?;
        Ok(Challenge::Pay(retry, Box::new(prepared)))
    }

    /// Sends `retry` with a sign-in `credential`: `Ok(answer)` when the
    /// server did not ask for a payment, `Err(Some(offer))` with its new
    /// offer when it did, `Err(None)` when the credential could not be sent.
    async fn send_signed_in<T: PaymentTransport>(
        &self,
        transport: &T,
        provider: &dyn SignInProvider,
        retry: &T::Request,
        credential: &Credential,
    ) -> Result<Result<T::Response, Option<PaymentRequired>>, ClientError> {
        let mut signed = transport
            .try_clone(retry)
            .ok_or(ClientError::BodyNotReplayable)?;
        if let Err(error) = transport.attach(&mut signed, credential) {
            tracing::warn!(%error, "sign-in credential not sent; paying instead");
            return Ok(Err(None));
        }
        let response = transport.send(signed).await?;
        match transport.status(&response) {
            AnswerStatus::PaymentRequired => {
                tracing::debug!("sign-in did not grant access; paying");
                let offer = transport.read_offer(response, self.max_402_body).await?;
                Ok(Err(Some(offer)))
            }
            status => {
                if status == AnswerStatus::Granted {
                    let fields = FieldsOf {
                        transport,
                        response: &response,
                    };
                    provider.remember(transport.resource(retry), &fields);
                }
                Ok(Ok(response))
            }
        }
    }

    /// Sends the paid request: asks again with the same payment while the
    /// outcome is not known yet, carries it across a redirect only within
    /// the origin until the server takes it, and follows any other redirect
    /// without it.
    async fn send_paid<T: PaymentTransport>(
        &self,
        transport: &T,
        retry: T::Request,
        prepared: &PreparedPayment,
    ) -> Result<Delivered<T::Response>, ClientError> {
        let mut target = retry;
        let mut progress = Progress::default();
        loop {
            let response = self
                .deliver_payment(transport, &target, prepared, &mut progress)
                .await?;
            let status = transport.status(&response);
            if let Some(provider) = &self.sign_in
                && status == AnswerStatus::Granted
            {
                let fields = FieldsOf {
                    transport,
                    response: &response,
                };
                provider.remember(transport.resource(&target), &fields);
            }
            let receipt = transport.receipt(&response);
            if progress.outcome_retries < self.outcome_retries
                && let Some(wait) = self.outcome_not_known_yet(
                    status,
                    receipt.as_ref(),
                    transport.retry_after(&response),
                )
            {
                progress.outcome_retries += 1;
                tracing::info!(
                    ?wait,
                    attempt = progress.outcome_retries,
                    "settlement outcome not known yet; re-sending the same payment"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let hop = match transport.redirect(&target, &response) {
                Some(hop) if hop.carries_payment && progress.hops < MAX_PAID_HOPS => {
                    progress.hops += 1;
                    target = hop.request;
                    continue;
                }
                hop => hop,
            };
            let outcome = self.finish(prepared, status, receipt).await;
            return Ok(match hop {
                None => Delivered {
                    response,
                    outcome: Some(outcome),
                },
                Some(hop) => follow_unpaid(transport, hop.request, response, outcome).await,
            });
        }
    }

    /// Sends `target` with the payment, again (the same payment) after
    /// transport errors that allow it, at most `retries` times per paid
    /// request. A payment never handed to the transport is released.
    async fn deliver_payment<T: PaymentTransport>(
        &self,
        transport: &T,
        target: &T::Request,
        prepared: &PreparedPayment,
        progress: &mut Progress,
    ) -> Result<T::Response, ClientError> {
        loop {
            let paid = match paid_copy(transport, target, prepared) {
                Ok(paid) => paid,
                Err(error) => {
                    if !progress.sent {
                        self.abandon(prepared).await;
                    }
                    self.hooks.on_failure(&error).await;
                    return Err(error);
                }
            };
            progress.sent = true;
            match transport.send_paid(paid).await {
                Ok(response) => return Ok(response),
                Err(error) if progress.transport_retries < self.retries && error.is_retryable() => {
                    progress.transport_retries += 1;
                    let attempt = progress.transport_retries;
                    tracing::warn!(%error, attempt, "paid request failed; re-sending the same payment");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(error) => {
                    // The server may have received it: the payment stays
                    // outstanding in the budget until proven unspent.
                    let error = ClientError::Transport(error);
                    self.hooks.on_failure(&error).await;
                    return Err(error);
                }
            }
        }
    }

    /// How long to wait before sending the same payment again when the
    /// answer says its settlement outcome is not known yet: a pending
    /// receipt, or "unavailable" with a retry delay (the server kept the
    /// payment for a retry).
    fn outcome_not_known_yet(
        &self,
        status: AnswerStatus,
        receipt: Option<&SettleResponse>,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let pending = receipt.is_some_and(SettleResponse::is_pending);
        let unknown = status == AnswerStatus::Unavailable && retry_after.is_some();
        (pending || unknown).then(|| {
            retry_after
                .unwrap_or(DEFAULT_OUTCOME_WAIT)
                .min(self.max_outcome_wait)
        })
    }
}

/// A copy of `target` carrying the payment.
fn paid_copy<T: PaymentTransport>(
    transport: &T,
    target: &T::Request,
    prepared: &PreparedPayment,
) -> Result<T::Request, ClientError> {
    let mut paid = transport
        .try_clone(target)
        .ok_or(ClientError::BodyNotReplayable)?;
    transport.attach_payment(&mut paid, prepared)?;
    Ok(paid)
}

/// Follows the redirect answered to a paid request, without the payment;
/// the outcome goes with the final answer (or with the redirect itself when
/// it cannot be followed).
async fn follow_unpaid<T: PaymentTransport>(
    transport: &T,
    request: T::Request,
    redirect: T::Response,
    outcome: PaymentOutcome,
) -> Delivered<T::Response> {
    let response = match transport.send(request).await {
        Ok(followed) => followed,
        Err(error) => {
            tracing::warn!(%error, "following the paid request's redirect failed; answering the redirect");
            redirect
        }
    };
    Delivered {
        response,
        outcome: Some(outcome),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use paywire_core::ChainIdPattern;

    use super::*;
    use crate::budget::{Budget, BudgetRule, BudgetScope};
    use crate::testing::{CountingWallet, required};

    /// Answers every unpaid call with [`required`]'s offer and every paid
    /// one as granted; approves or refuses as told, recording what it saw.
    struct Approving {
        verdict: Result<(), String>,
        seen: Mutex<Vec<(String, PaymentRequirements)>>,
        paid_calls: AtomicUsize,
    }

    impl PaymentTransport for Approving {
        type Request = String;
        type Response = AnswerStatus;

        fn resource<'r>(&self, _: &'r String) -> &'r Url {
            static RESOURCE: std::sync::LazyLock<Url> = std::sync::LazyLock::new(|| {
                Url::parse("https://api.example/paid").expect("a valid URL")
            });
            &RESOURCE
        }
        fn try_clone(&self, request: &String) -> Option<String> {
            Some(request.clone())
        }
        fn attach(&self, _: &mut String, _: &Credential) -> Result<(), TransportError> {
            Ok(())
        }
        fn attach_payment(
            &self,
            _: &mut String,
            _: &PreparedPayment,
        ) -> Result<(), TransportError> {
            Ok(())
        }
        fn send(&self, _: String) -> BoxFuture<'_, Result<AnswerStatus, TransportError>> {
            Box::pin(async { Ok(AnswerStatus::PaymentRequired) })
        }
        fn send_paid(&self, _: String) -> BoxFuture<'_, Result<AnswerStatus, TransportError>> {
            self.paid_calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(AnswerStatus::Granted) })
        }
        fn status(&self, response: &AnswerStatus) -> AnswerStatus {
            *response
        }
        fn receipt(&self, _: &AnswerStatus) -> Option<SettleResponse> {
            None
        }
        fn field<'r>(&self, _: &'r AnswerStatus, _: &str) -> Option<&'r str> {
            None
        }
        fn read_offer(
            &self,
            _: AnswerStatus,
            _: usize,
        ) -> BoxFuture<'_, Result<PaymentRequired, ClientError>> {
            Box::pin(async { Ok(required()) })
        }
        fn approve<'a>(
            &'a self,
            request: &'a String,
            requirements: &'a PaymentRequirements,
        ) -> BoxFuture<'a, Result<(), String>> {
            self.seen
                .lock()
                .expect("lock")
                .push((request.clone(), requirements.clone()));
            let verdict = self.verdict.clone();
            Box::pin(async move { verdict })
        }
    }

    async fn client() -> (X402Client, Arc<CountingWallet>, Arc<Budget>, BudgetScope) {
        let wallet = Arc::new(CountingWallet(AtomicUsize::new(0)));
        let offered = &required().accepts[0];
        let scope = BudgetScope::Asset {
            network: offered.network.clone(),
            asset: offered.asset.clone(),
        };
        let rule = BudgetRule {
            scope: scope.clone(),
            per_call: None,
            per_hour: None,
            per_day: None,
            total: Some(1_000_000),
        };
        let budget = Arc::new(Budget::in_memory(vec![rule]).await.expect("budget"));
        let client = X402Client::builder()
            .wallet(
                ChainIdPattern::parse("eip155:*").expect("pattern"),
                wallet.clone(),
            )
            .budget(budget.clone())
            .build();
        (client, wallet, budget, scope)
    }

    fn transport(verdict: Result<(), String>) -> Approving {
        Approving {
            verdict,
            seen: Mutex::new(Vec::new()),
            paid_calls: AtomicUsize::new(0),
        }
    }

    #[tokio::test]
    async fn a_refused_approval_signs_nothing_and_reserves_nothing() {
        let (client, wallet, budget, scope) = client().await;
        let refusing = transport(Err("too dear for this call".into()));
        let refused = client.pay_through(&refusing, "forecast".into()).await;
        assert!(
            matches!(&refused, Err(ClientError::Vetoed(reason)) if reason == "too dear for this call"),
            "{refused:?}"
        );
        let seen = refusing.seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            [("forecast".to_owned(), required().accepts[0].clone())]
        );
        assert_eq!(wallet.0.load(Ordering::SeqCst), 0, "nothing signed");
        assert_eq!(refusing.paid_calls.load(Ordering::SeqCst), 0);
        assert_eq!(budget.outstanding_total(&scope).await.expect("read"), 0);
        assert_eq!(budget.spent_total(&scope).await.expect("read"), 0);
    }

    #[tokio::test]
    async fn an_approved_payment_is_signed_once_and_sent() {
        let (client, wallet, budget, scope) = client().await;
        let approving = transport(Ok(()));
        let delivered = client
            .pay_through(&approving, "forecast".into())
            .await
            .expect("paid");
        assert_eq!(delivered.response, AnswerStatus::Granted);
        assert_eq!(approving.seen.lock().expect("lock").len(), 1);
        assert_eq!(wallet.0.load(Ordering::SeqCst), 1);
        assert_eq!(approving.paid_calls.load(Ordering::SeqCst), 1);
        // Reserved before signing; granted without a receipt, it stays
        // counted as outstanding.
        assert_eq!(
            budget.outstanding_total(&scope).await.expect("read"),
            10_000
        );
    }
}
