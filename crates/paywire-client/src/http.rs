//! The HTTP adapter of the payment flow over `reqwest`: [`X402Client::send`]
//! for a plain `reqwest::Client`, and the transport that
//! [`crate::X402Middleware`] uses for `reqwest-middleware` stacks.
//!
//! Requests carrying the payment are sent by the client's paid-request
//! client, which never follows redirects: an HTTP client forwards
//! `PAYMENT-SIGNATURE` along redirects to any origin, so the flow follows
//! them itself ([`crate::redirect`]).

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use paywire_core::codec::{
    self, PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER,
};
use paywire_core::{BoxFuture, PaymentRequired, SettleResponse};
use reqwest::StatusCode;
use url::Url;

use crate::client::{ClientError, PreparedPayment, X402Client};
use crate::flow::{
    AnswerFields, AnswerStatus, Credential, Delivered, Hop, PaymentTransport, TransportError,
};
use crate::redirect;

impl From<reqwest::Error> for TransportError {
    fn from(error: reqwest::Error) -> Self {
        if error.is_connect() || error.is_timeout() {
            Self::retryable(error.to_string())
        } else {
            Self::fatal(error.to_string())
        }
    }
}

impl AnswerFields for HeaderMap {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name)?.to_str().ok()
    }
}

/// Something that executes HTTP requests: a `reqwest::Client`, the rest of
/// a middleware chain, the paid-request client.
pub(crate) trait SendHttp: Send + Sync {
    /// Sends `request`.
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> BoxFuture<'_, Result<reqwest::Response, TransportError>>;
}

impl SendHttp for reqwest::Client {
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> BoxFuture<'_, Result<reqwest::Response, TransportError>> {
        Box::pin(async move {
            reqwest::Client::execute(self, request)
                .await
                .map_err(TransportError::from)
        })
    }
}

impl<S: SendHttp + ?Sized> SendHttp for &S {
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> BoxFuture<'_, Result<reqwest::Response, TransportError>> {
        (**self).execute(request)
    }
}

/// The client's paid-request client (never follows redirects).
pub(crate) struct PaidRequests<'c>(pub(crate) &'c X402Client);

impl SendHttp for PaidRequests<'_> {
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> BoxFuture<'_, Result<reqwest::Response, TransportError>> {
        Box::pin(self.0.execute_paid(request))
    }
}

/// The flow's HTTP transport: `unpaid` sends requests without a payment
/// (following redirects as it is configured to), `paid` the ones carrying
/// it (never following redirects).
pub(crate) struct HttpTransport<U, P> {
    pub(crate) unpaid: U,
    pub(crate) paid: P,
}

impl<U: SendHttp, P: SendHttp> PaymentTransport for HttpTransport<U, P> {
    type Request = reqwest::Request;
    type Response = reqwest::Response;

    fn resource<'r>(&self, request: &'r reqwest::Request) -> &'r Url {
        request.url()
    }

    fn try_clone(&self, request: &reqwest::Request) -> Option<reqwest::Request> {
        request.try_clone()
    }

    fn attach(
        &self,
        request: &mut reqwest::Request,
        credential: &Credential,
    ) -> Result<(), TransportError> {
        let name = HeaderName::from_bytes(credential.name.as_bytes())
            .map_err(|e| TransportError::fatal(format!("credential name: {e}")))?;
        let value = HeaderValue::from_str(&credential.value)
            .map_err(|e| TransportError::fatal(format!("credential value: {e}")))?;
        request.headers_mut().insert(name, value);
        Ok(())
    }

    fn attach_payment(
        &self,
        request: &mut reqwest::Request,
        payment: &PreparedPayment,
    ) -> Result<(), TransportError> {
        let value = HeaderValue::from_str(&payment.header)
            .map_err(|e| TransportError::fatal(format!("payment header: {e}")))?;
        request
            .headers_mut()
            .insert(PAYMENT_SIGNATURE_HEADER, value);
        Ok(())
    }

    fn send(
        &self,
        request: reqwest::Request,
    ) -> BoxFuture<'_, Result<reqwest::Response, TransportError>> {
        self.unpaid.execute(request)
    }

    fn send_paid(
        &self,
        request: reqwest::Request,
    ) -> BoxFuture<'_, Result<reqwest::Response, TransportError>> {
        self.paid.execute(request)
    }

    fn status(&self, response: &reqwest::Response) -> AnswerStatus {
        answer_status(response.status())
    }

    fn receipt(&self, response: &reqwest::Response) -> Option<SettleResponse> {
        receipt(response.headers())
    }

    fn retry_after(&self, response: &reqwest::Response) -> Option<Duration> {
        response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    }

    fn field<'r>(&self, response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
        response.headers().field(name)
    }

    fn read_offer(
        &self,
        response: reqwest::Response,
        max_body: usize,
    ) -> BoxFuture<'_, Result<PaymentRequired, ClientError>> {
        Box::pin(read_offer(response, max_body))
    }

    fn redirect(
        &self,
        sent: &reqwest::Request,
        response: &reqwest::Response,
    ) -> Option<Hop<reqwest::Request>> {
        redirect::next_hop(sent, response)
    }

    fn pay_where_challenged(&self, retry: &mut reqwest::Request, challenge: &reqwest::Response) {
        redirect::pay_where_challenged(retry, challenge.url());
    }
}

/// What an HTTP status says to the flow.
pub(crate) fn answer_status(status: StatusCode) -> AnswerStatus {
    match status {
        status if status.is_success() => AnswerStatus::Granted,
        StatusCode::PAYMENT_REQUIRED => AnswerStatus::PaymentRequired,
        StatusCode::SERVICE_UNAVAILABLE => AnswerStatus::Unavailable,
        _ => AnswerStatus::Other,
    }
}

/// The decoded `PAYMENT-RESPONSE` of `headers`, if present and readable.
pub(crate) fn receipt(headers: &HeaderMap) -> Option<SettleResponse> {
    headers
        .get(PAYMENT_RESPONSE_HEADER)
        .and_then(|v| codec::decode_payment_response(v.as_bytes()).ok())
}

/// The response of a flow, with the payment's outcome in its extensions.
fn with_outcome(delivered: Delivered<reqwest::Response>) -> reqwest::Response {
    let Delivered {
        mut response,
        outcome,
    } = delivered;
    if let Some(outcome) = outcome {
        response.extensions_mut().insert(outcome);
    }
    response
}

/// Reads the `PaymentRequired` of a 402 answer: the header first, else the body.
pub fn payment_required_from(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PaymentRequired, ClientError> {
    if let Some(value) = headers.get(PAYMENT_REQUIRED_HEADER) {
        return Ok(codec::decode_payment_required(value.as_bytes())?);
    }
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        return Ok(codec::from_versioned_json(body)?);
    }
    Err(ClientError::MissingPaymentRequired)
}

/// Reads the `PaymentRequired` of a 402 answer: from its `PAYMENT-REQUIRED`
/// header (the body, perhaps a paywall page, is then not read), else from
/// its body, read up to `limit` bytes.
async fn read_offer(
    response: reqwest::Response,
    limit: usize,
) -> Result<PaymentRequired, ClientError> {
    if response.headers().contains_key(PAYMENT_REQUIRED_HEADER) {
        return payment_required_from(response.headers(), &[]);
    }
    let headers = response.headers().clone();
    let body = read_limited(response, limit).await?;
    payment_required_from(&headers, &body)
}

/// Reads a body of at most `limit` bytes, refusing a larger one before
/// buffering it (by its announced length, else as it streams in).
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ClientError> {
    let too_large = ClientError::PaymentRequiredTooLarge { limit };
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(TransportError::from)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl X402Client {
    /// Sends `request` with `http`; on 402 first tries the sign-in provider
    /// (if any), then pays and retries once with the payment (re-sending the
    /// same payment on transport errors). Returns the final response; its
    /// extensions carry a [`crate::PaymentOutcome`] when a payment was made.
    ///
    /// The paid request goes to the URL that asked for the payment and is
    /// sent by the paid-request client
    /// ([`crate::X402ClientBuilder::paid_request_client`]) without following
    /// redirects. A redirect answered to it is followed once by this flow:
    /// with the payment only within the same origin while the server has not
    /// taken it, otherwise without it through `http` (whose own redirect
    /// policy then applies).
    pub async fn send(
        &self,
        http: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_through(http, request).await
    }

    /// Runs the flow over an HTTP transport and attaches the outcome to the
    /// final response (the middleware's entry point).
    pub(crate) async fn send_through<U: SendHttp>(
        &self,
        unpaid: U,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, ClientError> {
        let transport = HttpTransport {
            unpaid,
            paid: PaidRequests(self),
        };
        self.pay_through(&transport, request)
            .await
            .map(with_outcome)
    }

    /// Sends a request carrying the payment with the paid-request client.
    async fn execute_paid(
        &self,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, TransportError> {
        let client = self
            .paid_http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|error| {
                TransportError::fatal(format!(
                    "the HTTP client for paid requests could not be built: {error}"
                ))
            })?;
        let sent_to = request.url().clone();
        let response = client.execute(request).await?;
        if *response.url() != sent_to {
            tracing::error!(
                "the client for paid requests followed a redirect: the payment may have reached \
                 another origin; build it with redirect::Policy::none()"
            );
        }
        Ok(response)
    }

    /// Reads the `PaymentRequired` of a 402 answer: from its
    /// `PAYMENT-REQUIRED` header (the body, perhaps a paywall page, is then
    /// not read), else from its body, read up to the configured limit.
    pub async fn read_payment_required(
        &self,
        response: reqwest::Response,
    ) -> Result<PaymentRequired, ClientError> {
        read_offer(response, self.max_402_body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{CountingWallet, required};
    use crate::{Budget, PaymentOutcome, PaymentStatus};
    use paywire_core::extensions::PAYMENT_IDENTIFIER;
    use paywire_core::{ChainId, ChainIdPattern};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// Sends every request with one scripted function.
    struct Scripted<F>(F);

    impl<F, Fut> SendHttp for Scripted<F>
    where
        F: Fn(reqwest::Request) -> Fut + Send + Sync,
        Fut: Future<Output = Result<reqwest::Response, TransportError>> + Send + 'static,
    {
        fn execute(
            &self,
            request: reqwest::Request,
        ) -> BoxFuture<'_, Result<reqwest::Response, TransportError>> {
            Box::pin((self.0)(request))
        }
    }

    impl X402Client {
        /// The HTTP flow with one scripted transport for unpaid and paid
        /// requests.
        async fn flow_through<F, Fut>(
            &self,
            request: reqwest::Request,
            execute: F,
        ) -> Result<reqwest::Response, ClientError>
        where
            F: Fn(reqwest::Request) -> Fut + Send + Sync + Copy,
            Fut: Future<Output = Result<reqwest::Response, TransportError>> + Send + 'static,
        {
            let transport = HttpTransport {
                unpaid: Scripted(execute),
                paid: Scripted(execute),
            };
            self.pay_through(&transport, request)
                .await
                .map(with_outcome)
        }
    }

    /// `finish` with what an HTTP answer says.
    async fn finish_http(
        client: &X402Client,
        prepared: &PreparedPayment,
        status: u16,
        headers: &HeaderMap,
    ) -> PaymentOutcome {
        let status = StatusCode::from_u16(status).unwrap();
        client
            .finish(prepared, answer_status(status), receipt(headers))
            .await
    }

    #[test]
    fn http_statuses_map_to_answers() {
        for (status, answer) in [
            (200, AnswerStatus::Granted),
            (204, AnswerStatus::Granted),
            (402, AnswerStatus::PaymentRequired),
            (503, AnswerStatus::Unavailable),
            (500, AnswerStatus::Other),
            (302, AnswerStatus::Other),
        ] {
            assert_eq!(
                answer_status(StatusCode::from_u16(status).unwrap()),
                answer,
                "{status}"
            );
        }
    }

    fn response(status: u16, headers: &[(&str, String)]) -> reqwest::Response {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        reqwest::Response::from(builder.body(Vec::<u8>::new()).unwrap_or_default())
    }

    #[tokio::test]
    async fn retries_resend_the_same_payment_and_identifier() {
        let wallet = Arc::new(CountingWallet(AtomicUsize::new(0)));
        let client = X402Client::builder()
            .wallet(ChainIdPattern::parse("eip155:*").unwrap(), wallet.clone())
            .build();
        let sent: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());
        let challenge = codec::encode_header(&required());
        let request = reqwest::Client::new()
            .get("http://127.0.0.1:9/r")
            .build()
            .unwrap();
        let response = client
            .flow_through(request, |request| {
                let header = request
                    .headers()
                    .get(PAYMENT_SIGNATURE_HEADER)
                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                let attempt = {
                    let mut sent = sent.lock().unwrap();
                    sent.push(header);
                    sent.len()
                };
                let challenge = challenge.clone();
                async move {
                    match attempt {
                        1 => Ok(response(402, &[(PAYMENT_REQUIRED_HEADER, challenge)])),
                        2 | 3 => Err(TransportError::retryable("connection refused")),
                        _ => Ok(response(200, &[])),
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let sent = sent.into_inner().unwrap();
        assert_eq!(sent.len(), 4);
        assert!(sent[0].is_none());
        assert!(sent[1].is_some());
        assert!(
            sent[1..].windows(2).all(|w| w[0] == w[1]),
            "one payment, re-sent as is"
        );
        assert_eq!(wallet.0.load(Ordering::SeqCst), 1, "signed exactly once");
        let payload =
            codec::decode_payment_signature(sent[1].as_deref().unwrap().as_bytes()).unwrap();
        let id = payload
            .extensions
            .as_ref()
            .and_then(|e| e.info(PAYMENT_IDENTIFIER))
            .and_then(|info| info.get("id"))
            .and_then(|id| id.as_str())
            .unwrap();
        assert!(id.starts_with("pay_") && id.len() >= 16, "{id}");
    }

    /// A settlement whose outcome the server does not know yet (503 with
    /// `Retry-After`, then a pending receipt) is asked again with the same
    /// payment until it is final; never with a new one.
    #[tokio::test]
    async fn unknown_settlement_outcomes_are_asked_again_with_the_same_payment() {
        let wallet = Arc::new(CountingWallet(AtomicUsize::new(0)));
        let client = X402Client::builder()
            .wallet(ChainIdPattern::parse("eip155:*").unwrap(), wallet.clone())
            .max_outcome_wait(Duration::from_millis(10))
            .build();
        let sent: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());
        let challenge = codec::encode_header(&required());
        let network = ChainId::parse("eip155:8453").unwrap();
        let pending = codec::encode_header(&SettleResponse::failed(
            network.clone(),
            paywire_core::ErrorReason::TRANSACTION_PENDING,
            None,
            "0xabc",
        ));
        let settled = codec::encode_header(&SettleResponse::settled(network, "0xabc", None));
        let request = reqwest::Client::new()
            .get("http://127.0.0.1:9/r")
            .build()
            .unwrap();
        let response = client
            .flow_through(request, |request| {
                let header = request
                    .headers()
                    .get(PAYMENT_SIGNATURE_HEADER)
                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                let attempt = {
                    let mut sent = sent.lock().unwrap();
                    sent.push(header);
                    sent.len()
                };
                let (challenge, pending, settled) =
                    (challenge.clone(), pending.clone(), settled.clone());
                async move {
                    Ok(match attempt {
                        1 => response(402, &[(PAYMENT_REQUIRED_HEADER, challenge)]),
                        2 => response(503, &[("retry-after", "2".into())]),
                        3 => response(402, &[(PAYMENT_RESPONSE_HEADER, pending)]),
                        _ => response(200, &[(PAYMENT_RESPONSE_HEADER, settled)]),
                    })
                }
            })
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let outcome = response.extensions().get::<PaymentOutcome>().unwrap();
        assert_eq!(outcome.status, PaymentStatus::Paid);
        let sent = sent.into_inner().unwrap();
        assert_eq!(sent.len(), 4);
        assert!(sent[1..].windows(2).all(|w| w[0] == w[1] && w[0].is_some()));
        assert_eq!(wallet.0.load(Ordering::SeqCst), 1, "signed exactly once");
    }

    /// A plain 503 (no `Retry-After`) and a definite refusal are answers,
    /// not reasons to ask again; the number of re-sends is bounded.
    #[tokio::test]
    async fn outcome_retries_are_bounded_and_need_a_reason() {
        let wallet = Arc::new(CountingWallet(AtomicUsize::new(0)));
        let client = X402Client::builder()
            .wallet(ChainIdPattern::parse("eip155:*").unwrap(), wallet)
            .max_outcome_wait(Duration::from_millis(1))
            .outcome_retries(2)
            .build();
        let challenge = codec::encode_header(&required());
        for (status, retry_after, expected_sends) in
            [(503, false, 2), (503, true, 4), (500, true, 2)]
        {
            let sends = AtomicUsize::new(0);
            let request = reqwest::Client::new()
                .get("http://127.0.0.1:9/r")
                .build()
                .unwrap();
            let response = client
                .flow_through(request, |_| {
                    let attempt = sends.fetch_add(1, Ordering::SeqCst) + 1;
                    let challenge = challenge.clone();
                    async move {
                        Ok(if attempt == 1 {
                            response(402, &[(PAYMENT_REQUIRED_HEADER, challenge)])
                        } else if retry_after {
                            response(status, &[("retry-after", "1".into())])
                        } else {
                            response(status, &[])
                        })
                    }
                })
                .await
                .unwrap();
            assert_eq!(response.status(), status);
            assert_eq!(
                sends.load(Ordering::SeqCst),
                expected_sends,
                "{status} {retry_after}"
            );
        }
    }

    fn receipt_headers(receipt: &SettleResponse) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            PAYMENT_RESPONSE_HEADER,
            HeaderValue::from_str(&codec::encode_header(receipt)).unwrap(),
        );
        headers
    }

    /// Field lesson 31: only a success receipt or a refusal before sending
    /// ends the counting of a payment; an error answer does not.
    #[tokio::test]
    async fn the_budget_follows_receipts_not_status_codes() {
        let scope = crate::BudgetScope::Asset {
            network: ChainId::parse("eip155:8453").unwrap(),
            asset: required().accepts[0].asset.clone(),
        };
        let budget = Arc::new(
            Budget::in_memory(vec![crate::BudgetRule {
                scope: scope.clone(),
                per_call: None,
                per_hour: None,
                per_day: None,
                total: Some(100_000),
            }])
            .await
            .unwrap(),
        );
        let client = X402Client::builder()
            .wallet(
                ChainIdPattern::parse("eip155:*").unwrap(),
                Arc::new(CountingWallet(AtomicUsize::new(0))),
            )
            .budget(Arc::clone(&budget))
            .build();
        let totals = async || {
            (
                budget.spent_total(&scope).await.unwrap(),
                budget.outstanding_total(&scope).await.unwrap(),
            )
        };
        let refused = client.prepare(&required()).await.unwrap();
        let failed = SettleResponse::failed(
            ChainId::parse("eip155:8453").unwrap(),
            paywire_core::ErrorReason::INSUFFICIENT_FUNDS,
            None,
            "",
        );
        let outcome = finish_http(&client, &refused, 402, &receipt_headers(&failed)).await;
        assert_eq!(outcome.status, PaymentStatus::NotPaid);
        finish_http(&client, &refused, 500, &HeaderMap::new()).await;
        assert_eq!(
            totals().await,
            (0, 10_000),
            "the server holds it: still counted"
        );

        let settled = client.prepare(&required()).await.unwrap();
        let success = SettleResponse {
            success: true,
            error_reason: None,
            transaction: "0xabc".into(),
            ..failed.clone()
        };
        let outcome = finish_http(&client, &settled, 500, &receipt_headers(&success)).await;
        assert_eq!(outcome.status, PaymentStatus::Paid);
        assert_eq!(totals().await, (10_000, 10_000));

        let unsent = client.prepare(&required()).await.unwrap();
        assert_eq!(totals().await, (10_000, 20_000));
        client.abandon(&unsent).await;
        assert_eq!(totals().await, (10_000, 10_000), "never sent: released");
    }

    #[tokio::test]
    async fn pending_receipts_are_reported_as_pending() {
        let wallet = Arc::new(CountingWallet(AtomicUsize::new(0)));
        let client = X402Client::builder()
            .wallet(ChainIdPattern::parse("eip155:*").unwrap(), wallet)
            .build();
        let prepared = client.prepare(&required()).await.unwrap();
        let pending = SettleResponse::failed(
            ChainId::parse("eip155:8453").unwrap(),
            paywire_core::ErrorReason::TRANSACTION_PENDING,
            None,
            "0xabc",
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            PAYMENT_RESPONSE_HEADER,
            HeaderValue::from_str(&codec::encode_header(&pending)).unwrap(),
        );
        let outcome = finish_http(&client, &prepared, 402, &headers).await;
        assert_eq!(outcome.status, PaymentStatus::Pending);
        let failed = SettleResponse::failed(
            ChainId::parse("eip155:8453").unwrap(),
            paywire_core::ErrorReason::INSUFFICIENT_FUNDS,
            None,
            "",
        );
        headers.insert(
            PAYMENT_RESPONSE_HEADER,
            HeaderValue::from_str(&codec::encode_header(&failed)).unwrap(),
        );
        assert_eq!(
            finish_http(&client, &prepared, 402, &headers).await.status,
            PaymentStatus::NotPaid
        );
        // A 200 whose receipt says failure is not "paid".
        assert_eq!(
            finish_http(&client, &prepared, 200, &headers).await.status,
            PaymentStatus::NotPaid
        );
    }
}
