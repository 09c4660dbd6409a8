//! The paying client: wallets, policy, budget and hooks, and the request
//! flow shared by the reqwest middleware and the plain API.

use std::sync::Arc;
use std::time::Duration;

use paywire_core::codec::{
    self, PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER,
};
use paywire_core::extensions::PAYMENT_IDENTIFIER;
use paywire_core::{
    BoxFuture, ChainIdPattern, DecodeError, Extensions, PaymentPayload, PaymentRequired,
    PaymentRequirements, SchemeClient, SchemeRegistry, SettleResponse, X402_VERSION,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::budget::{Budget, BudgetError, Reconciliation, Reservation};
use crate::policy::{AssetCatalog, Catalogs, Exclusion, Selection, SelectionPolicy};
use crate::redirect;
use crate::spend::SpendProbe;

/// Default cap on a 402 answer's body (64 KiB): a payment challenge is a few
/// kilobytes of JSON.
pub const DEFAULT_MAX_402_BODY: usize = 64 * 1024;

/// Default time one reconciliation of outstanding payments may take before
/// a payment goes ahead without it.
const DEFAULT_RECONCILE_TIMEOUT: Duration = Duration::from_secs(5);

/// Redirects within the seller's origin that a payment follows at most
/// before the flow stops carrying it.
const MAX_PAID_HOPS: usize = 5;

/// Why a paid request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server's 402 could not be read.
    #[error("unreadable 402 answer: {0}")]
    BadPaymentRequired(#[from] DecodeError),
    /// The 402 carried neither a `PAYMENT-REQUIRED` header nor a JSON body.
    #[error("402 answer without payment requirements")]
    MissingPaymentRequired,
    /// The 402 answer's body is larger than the configured limit; nothing
    /// was signed.
    #[error("the 402 answer's body exceeds the {limit}-byte limit; nothing was signed")]
    PaymentRequiredTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// No offered option is acceptable; the text explains each one.
    #[error("no acceptable payment option:\n{0}")]
    NoAcceptableOption(String),
    /// A `before_sign` hook refused.
    #[error("payment vetoed: {0}")]
    Vetoed(String),
    /// The budget refused.
    #[error("budget: {0}")]
    Budget(#[from] BudgetError),
    /// The wallet could not sign.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The request body is a stream and cannot be sent a second time.
    #[error("the request body cannot be replayed, so it cannot be retried with a payment")]
    BodyNotReplayable,
    /// Transport failure.
    #[error("HTTP error: {0}")]
    Http(String),
}

/// How the paid request ended, attached to the response's extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentOutcome {
    /// The option that was paid.
    pub requirements: PaymentRequirements,
    /// The decoded `PAYMENT-RESPONSE`, if the server sent one.
    pub receipt: Option<SettleResponse>,
    /// What happened to the payment.
    pub status: PaymentStatus,
}

/// What happened to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Settled (the receipt says `success: true`, whatever the HTTP status),
    /// or a 2xx answer without a receipt.
    Paid,
    /// Sent to the chain but not confirmed yet; it may still land.
    Pending,
    /// Not settled (the server refused or settlement failed). The server
    /// may still hold the signed authorization: the budget keeps counting it
    /// until it is proven unspent.
    NotPaid,
}

/// Callbacks around payments. Every method has a default that does nothing.
#[async_trait::async_trait]
pub trait PaymentHooks: Send + Sync {
    /// Called before signing; an `Err` vetoes the payment.
    async fn before_sign(&self, _requirements: &PaymentRequirements) -> Result<(), String> {
        Ok(())
    }
    /// Called after the paid request completed.
    async fn after_payment(&self, _outcome: &PaymentOutcome) {}
    /// Called when paying failed.
    async fn on_failure(&self, _error: &ClientError) {}
}

struct NoHooks;
impl PaymentHooks for NoHooks {}

/// A pre-payment step: on a 402, offer a header that may get the resource
/// without paying (e.g. a `SIGN-IN-WITH-X` proof for a wallet that already
/// paid). The request is retried with it first; if the server still answers
/// 402, the client pays as usual.
pub trait SignInProvider: Send + Sync {
    /// The header to retry `url` with, given the server's 402; `None` to
    /// skip straight to payment.
    fn sign_in<'a>(
        &'a self,
        url: &'a reqwest::Url,
        required: &'a PaymentRequired,
    ) -> BoxFuture<'a, Option<(HeaderName, HeaderValue)>>;

    /// A header to send up front on the first request to `url` (e.g. a
    /// session token the server issued after an earlier sign-in), so a
    /// returning request costs one round trip. `None` by default.
    fn session(&self, _url: &reqwest::Url) -> Option<(HeaderName, HeaderValue)> {
        None
    }

    /// Sees the headers of a response to `url` that the flow got without a
    /// 402 after signing in or paying (to keep a session token it carries).
    fn remember(&self, _url: &reqwest::Url, _headers: &HeaderMap) {}

    /// The server answered 402 although [`Self::session`] offered a header
    /// for `url`: forget it (the flow then signs in or pays as usual).
    fn forget(&self, _url: &reqwest::Url) {}
}

/// A signed payment ready to be sent, with its budget reservation.
#[derive(Debug, Clone)]
pub struct PreparedPayment {
    /// The payload.
    pub payload: PaymentPayload,
    /// Its `PAYMENT-SIGNATURE` header value.
    pub header: String,
    /// Why this option was chosen over the others.
    pub selection: Selection,
    reservation: Option<Reservation>,
}

/// The client. Cheap to share behind an `Arc`.
pub struct X402Client {
    wallets: SchemeRegistry<dyn SchemeClient>,
    policy: SelectionPolicy,
    catalog: Catalogs,
    budget: Option<Arc<Budget>>,
    hooks: Arc<dyn PaymentHooks>,
    sign_in: Option<Arc<dyn SignInProvider>>,
    retries: u32,
    outcome_retries: u32,
    max_outcome_wait: Duration,
    spend_probe: Option<Arc<dyn SpendProbe>>,
    reconcile_timeout: Duration,
    max_402_body: usize,
    /// Sends requests carrying a payment; never follows redirects. Built on
    /// first use unless configured.
    paid_http: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl std::fmt::Debug for X402Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X402Client")
            .field("wallets", &self.wallets)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Builder for [`X402Client`].
pub struct X402ClientBuilder {
    client: X402Client,
}

impl X402ClientBuilder {
    /// Registers a wallet for `scheme` on `networks`.
    pub fn wallet(mut self, networks: ChainIdPattern, wallet: Arc<dyn SchemeClient>) -> Self {
        let scheme = wallet.scheme().to_owned();
        self.client.wallets.register(scheme, networks, wallet);
        self
    }

    /// Sets the selection policy.
    pub fn policy(mut self, policy: SelectionPolicy) -> Self {
        self.client.policy = policy;
        self
    }

    /// Adds an asset catalog (decimals and USD status of assets).
    pub fn catalog(mut self, catalog: Arc<dyn AssetCatalog>) -> Self {
        self.client.catalog.0.push(catalog);
        self
    }

    /// Enforces a budget.
    pub fn budget(mut self, budget: Arc<Budget>) -> Self {
        self.client.budget = Some(budget);
        self
    }

    /// Installs hooks.
    pub fn hooks(mut self, hooks: Arc<dyn PaymentHooks>) -> Self {
        self.client.hooks = hooks;
        self
    }

    /// Tries `provider` (e.g. sign-in-with-x) on every 402 before paying.
    pub fn sign_in(mut self, provider: Arc<dyn SignInProvider>) -> Self {
        self.client.sign_in = Some(provider);
        self
    }

    /// How many times a paid request is re-sent, with the same payment, after
    /// a transport error (default 2).
    pub fn retries(mut self, retries: u32) -> Self {
        self.client.retries = retries;
        self
    }

    /// How many times a paid request is re-sent, with the same payment, when
    /// the server says the settlement outcome is not known yet (a pending
    /// receipt, or 503 with `Retry-After`) (default 3). Re-sending the same
    /// payment never pays twice; paying again with a new one could.
    pub fn outcome_retries(mut self, retries: u32) -> Self {
        self.client.outcome_retries = retries;
        self
    }

    /// Longest wait honoured from a `Retry-After` before such a re-send
    /// (default 10 s).
    pub fn max_outcome_wait(mut self, wait: Duration) -> Self {
        self.client.max_outcome_wait = wait;
        self
    }

    /// Lets the budget ask the chain about payments it still counts as
    /// outstanding (signed and sent, not known to be settled): a payment
    /// proven unspent after its authorization expired is released, a settled
    /// one committed. Without a probe, outstanding payments keep counting.
    pub fn spend_probe(mut self, probe: Arc<dyn SpendProbe>) -> Self {
        self.client.spend_probe = Some(probe);
        self
    }

    /// How long the reconciliation run before each payment may take before
    /// the payment goes ahead without it (default 5 s); undecided payments
    /// keep counting.
    pub fn reconcile_timeout(mut self, timeout: Duration) -> Self {
        self.client.reconcile_timeout = timeout;
        self
    }

    /// Largest 402 body the client reads (default [`DEFAULT_MAX_402_BODY`]);
    /// a larger one is refused with [`ClientError::PaymentRequiredTooLarge`]
    /// before anything is signed.
    pub fn max_402_body(mut self, bytes: usize) -> Self {
        self.client.max_402_body = bytes;
        self
    }

    /// The HTTP client that sends requests carrying a payment (default: a
    /// plain `reqwest` client that does not follow redirects), e.g. to set a
    /// proxy, TLS roots or timeouts for them. Build it with
    /// `.redirect(reqwest::redirect::Policy::none())`: the flow follows
    /// redirects itself so that the payment never reaches another origin
    /// (an HTTP client forwards custom headers such as `PAYMENT-SIGNATURE`
    /// across origins). [`X402Client::send`] and [`crate::X402Middleware`]
    /// send paid requests with it; everything else goes through your client
    /// or middleware chain.
    pub fn paid_request_client(self, client: reqwest::Client) -> Self {
        let _ = self.client.paid_http.set(Ok(client));
        self
    }

    /// Finishes the client.
    pub fn build(self) -> X402Client {
        self.client
    }
}

/// A random identifier with a prefix (e.g. `pay_` + 32 hex characters).
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    // The OS generator does not fail on supported platforms; fall back to
    // time-derived bytes rather than aborting a payment.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
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

impl X402Client {
    /// Starts a builder with no wallets, an open policy and no budget.
    pub fn builder() -> X402ClientBuilder {
        X402ClientBuilder {
            client: X402Client {
                wallets: SchemeRegistry::new(),
                policy: SelectionPolicy::default(),
                catalog: Catalogs::default(),
                budget: None,
                hooks: Arc::new(NoHooks),
                sign_in: None,
                retries: 2,
                outcome_retries: 3,
                max_outcome_wait: Duration::from_secs(10),
                spend_probe: None,
                reconcile_timeout: DEFAULT_RECONCILE_TIMEOUT,
                max_402_body: DEFAULT_MAX_402_BODY,
                paid_http: std::sync::OnceLock::new(),
            },
        }
    }

    /// Applies wallets, policy and budget to the offered options.
    pub fn select(&self, required: &PaymentRequired) -> Selection {
        self.policy.select(
            &required.accepts,
            &self.catalog,
            |r| self.wallets.supports(&r.scheme, &r.network),
            |r, info| {
                let budget = self.budget.as_ref()?;
                budget
                    .fits(r, info)
                    .err()
                    .map(|e| Exclusion::Budget(e.to_string()))
            },
        )
    }

    /// Reconciles the budget's outstanding payments that are due with the
    /// spend probe, within the reconcile timeout. `None` without a budget or
    /// a probe, when nothing is due, or when the pass failed or timed out
    /// (undecided payments keep counting: this never stops a payment).
    pub async fn reconcile(&self) -> Option<Reconciliation> {
        let (budget, probe) = (self.budget.as_ref()?, self.spend_probe.as_ref()?);
        match budget.has_due_probes() {
            Ok(true) => {}
            Ok(false) => return None,
            Err(error) => {
                tracing::warn!(%error, "budget store unreadable; reconciliation skipped");
                return None;
            }
        }
        match tokio::time::timeout(self.reconcile_timeout, budget.reconcile(probe.as_ref())).await {
            Ok(Ok(done)) => Some(done),
            Ok(Err(error)) => {
                tracing::warn!(%error, "reconciliation of outstanding payments failed");
                None
            }
            Err(_) => {
                tracing::warn!("reconciliation of outstanding payments timed out");
                None
            }
        }
    }

    /// Chooses, reserves budget for, and signs a payment for `required`.
    /// From here the payment counts as outstanding in the budget: if it is
    /// then not sent at all, hand it to [`Self::abandon`]; once sent, to
    /// [`Self::finish`].
    pub async fn prepare(
        &self,
        required: &PaymentRequired,
    ) -> Result<PreparedPayment, ClientError> {
        self.reconcile().await;
        let selection = self.select(required);
        let Some(requirements) = selection.chosen().cloned() else {
            return Err(ClientError::NoAcceptableOption(selection.explain()));
        };
        self.hooks
            .before_sign(&requirements)
            .await
            .map_err(ClientError::Vetoed)?;
        let info = self
            .catalog
            .asset_info(&requirements.network, &requirements.asset);
        let reservation = match &self.budget {
            Some(budget) => Some(budget.reserve(&requirements, info.as_ref())?),
            None => None,
        };
        let signed = match self
            .wallets
            .find(&requirements.scheme, &requirements.network)
        {
            Some(wallet) => wallet
                .create_payload(&requirements)
                .await
                .map_err(|e| ClientError::Signing(e.to_string())),
            None => Err(ClientError::Signing("no wallet".into())),
        };
        let payload = match signed {
            Ok(payload) => payload,
            Err(error) => {
                if let (Some(budget), Some(reservation)) = (&self.budget, &reservation) {
                    let _ = budget.release(reservation);
                }
                return Err(error);
            }
        };
        let extensions = Self::echo_extensions(required.extensions.as_ref());
        let payload = PaymentPayload {
            x402_version: X402_VERSION,
            payload,
            extensions,
            resource: Some(required.resource.clone()),
            accepted: requirements,
        };
        if let (Some(budget), Some(reservation)) = (&self.budget, &reservation)
            && let Err(error) = budget.mark_outstanding(reservation, &payload)
        {
            let _ = budget.release(reservation);
            return Err(error.into());
        }
        let header = codec::encode_header(&payload);
        Ok(PreparedPayment {
            payload,
            header,
            selection,
            reservation,
        })
    }

    /// Echoes the server's extensions, adding a payment identifier when the
    /// server supports one (it is then reused on every retry of this payment).
    fn echo_extensions(offered: Option<&Extensions>) -> Option<Extensions> {
        let mut extensions = offered?.clone();
        if extensions.contains(PAYMENT_IDENTIFIER) {
            let mut id = serde_json::Map::new();
            id.insert("id".into(), serde_json::Value::String(random_id("pay_")));
            extensions.append_info(PAYMENT_IDENTIFIER, id);
        }
        Some(extensions)
    }

    /// Records the outcome of a sent payment in the budget and hooks: a
    /// receipt with `success: true` commits it as spent; any other answer
    /// leaves it outstanding (the server may still settle the authorization
    /// it holds) until it is settled or proven unspent.
    pub async fn finish(
        &self,
        prepared: &PreparedPayment,
        status: u16,
        headers: &HeaderMap,
    ) -> PaymentOutcome {
        let receipt = headers
            .get(PAYMENT_RESPONSE_HEADER)
            .and_then(|v| codec::decode_payment_response(v.as_bytes()).ok());
        let status = match &receipt {
            Some(r) if r.success => PaymentStatus::Paid,
            Some(r) if r.is_pending() => PaymentStatus::Pending,
            // A 2xx without a receipt: the server took the payment but did not
            // say how; count it as spent (never under-count a budget).
            None if (200..300).contains(&status) => PaymentStatus::Paid,
            _ => PaymentStatus::NotPaid,
        };
        let settled = receipt.as_ref().is_some_and(|r| r.success);
        if let (Some(budget), Some(reservation), true) =
            (&self.budget, &prepared.reservation, settled)
            && let Err(error) = budget.commit(reservation)
        {
            tracing::error!(%error, "could not record the payment in the budget");
        }
        let outcome = PaymentOutcome {
            requirements: prepared.payload.accepted.clone(),
            receipt,
            status,
        };
        self.hooks.after_payment(&outcome).await;
        outcome
    }

    /// Releases the budget of a prepared payment that was never sent (its
    /// signed authorization never left the client). Never call it for a
    /// payment that was sent, whatever the answer.
    pub fn abandon(&self, prepared: &PreparedPayment) {
        if let (Some(budget), Some(reservation)) = (&self.budget, &prepared.reservation) {
            let _ = budget.release(reservation);
        }
    }

    /// Sends `request` with `http`; on 402 first tries the sign-in provider
    /// (if any), then pays and retries once with the payment (re-sending the
    /// same payment on transport errors). Returns the final response; its
    /// extensions carry a [`PaymentOutcome`] when a payment was made.
    ///
    /// The paid request goes to the URL that asked for the payment and is
    /// sent by the paid-request client
    /// ([`X402ClientBuilder::paid_request_client`]) without following
    /// redirects. A redirect answered to it is followed once by this flow:
    /// with the payment only within the same origin while the server has not
    /// taken it, otherwise without it through `http` (whose own redirect
    /// policy then applies).
    pub async fn send(
        &self,
        http: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, ClientError> {
        self.pay_flow(
            request,
            |request| async move { http.execute(request).await.map_err(Transport::from) },
            |request| self.execute_paid(request),
        )
        .await
    }

    /// Sends a request carrying the payment with the paid-request client.
    pub(crate) async fn execute_paid(
        &self,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, Transport> {
        let client = self
            .paid_http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|error| Transport {
                retryable: false,
                message: format!("the HTTP client for paid requests could not be built: {error}"),
            })?;
        let sent_to = request.url().clone();
        let response = client.execute(request).await.map_err(Transport::from)?;
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
        if response.headers().contains_key(PAYMENT_REQUIRED_HEADER) {
            return payment_required_from(response.headers(), &[]);
        }
        let headers = response.headers().clone();
        let body = read_limited(response, self.max_402_body).await?;
        payment_required_from(&headers, &body)
    }

    /// The request flow shared by [`X402Client::send`] and the middleware:
    /// `execute` sends requests without a payment (following redirects as
    /// it is configured to), `execute_paid` the ones carrying it (never
    /// following redirects).
    pub(crate) async fn pay_flow<F, Fut, P, PFut>(
        &self,
        request: reqwest::Request,
        mut execute: F,
        mut execute_paid: P,
    ) -> Result<reqwest::Response, ClientError>
    where
        F: FnMut(reqwest::Request) -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::Response, Transport>>,
        P: FnMut(reqwest::Request) -> PFut,
        PFut: std::future::Future<Output = Result<reqwest::Response, Transport>>,
    {
        let retry = request.try_clone();
        let mut request = request;
        let session = self.sign_in.as_ref().and_then(|provider| {
            let (name, value) = provider.session(request.url())?;
            request.headers_mut().insert(name, value);
            Some((provider, request.url().clone()))
        });
        let response = execute(request)
            .await
            .map_err(|e| ClientError::Http(e.message))?;
        if response.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
            return Ok(response);
        }
        if let Some((provider, url)) = session {
            tracing::debug!("session refused; signing in again");
            provider.forget(&url);
        }
        let result = async {
            let mut retry = retry.ok_or(ClientError::BodyNotReplayable)?;
            redirect::pay_where_challenged(&mut retry, response.url());
            let mut required = self.read_payment_required(response).await?;
            if let Some(provider) = &self.sign_in
                && let Some((name, value)) = provider.sign_in(retry.url(), &required).await
            {
                let mut signed = retry.try_clone().ok_or(ClientError::BodyNotReplayable)?;
                signed.headers_mut().insert(name, value);
                let response = execute(signed)
                    .await
                    .map_err(|e| ClientError::Http(e.message))?;
                if response.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
                    if response.status().is_success() {
                        provider.remember(retry.url(), response.headers());
                    }
                    return Ok(Err(response));
                }
                tracing::debug!("sign-in did not grant access; paying");
                required = self.read_payment_required(response).await?;
            }
            let prepared = self.prepare(&required).await?;
            let value = match HeaderValue::from_str(&prepared.header) {
                Ok(value) => value,
                Err(error) => {
                    self.abandon(&prepared);
                    return Err(ClientError::Http(error.to_string()));
                }
            };
            Ok::<_, ClientError>(Ok((retry, prepared, value)))
        }
        .await;
        let (retry, prepared, value) = match result {
            Ok(Ok(parts)) => parts,
            Ok(Err(response)) => return Ok(response),
            Err(error) => {
                self.hooks.on_failure(&error).await;
                return Err(error);
            }
        };
        self.send_paid(retry, &prepared, &value, &mut execute, &mut execute_paid)
            .await
    }

    /// Sends the paid request with `execute_paid`: re-sends the same payment
    /// on transport errors that certainly did not reach the server and while
    /// the outcome is not known yet, carries it across a redirect only within
    /// the origin until the server takes it, and follows any other redirect
    /// without it.
    async fn send_paid<F, Fut, P, PFut>(
        &self,
        retry: reqwest::Request,
        prepared: &PreparedPayment,
        value: &HeaderValue,
        execute: &mut F,
        execute_paid: &mut P,
    ) -> Result<reqwest::Response, ClientError>
    where
        F: FnMut(reqwest::Request) -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::Response, Transport>>,
        P: FnMut(reqwest::Request) -> PFut,
        PFut: std::future::Future<Output = Result<reqwest::Response, Transport>>,
    {
        let mut target = retry;
        let (mut attempt, mut outcome_attempt, mut hops) = (0, 0, 0);
        loop {
            let Some(mut paid) = target.try_clone() else {
                if attempt == 0 && hops == 0 {
                    self.abandon(prepared);
                }
                return Err(ClientError::BodyNotReplayable);
            };
            paid.headers_mut()
                .insert(PAYMENT_SIGNATURE_HEADER, value.clone());
            let mut response = match execute_paid(paid).await {
                Ok(response) => response,
                Err(error) if attempt < self.retries && error.retryable => {
                    attempt += 1;
                    tracing::warn!(error = %error.message, attempt, "paid request failed; re-sending the same payment");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    continue;
                }
                Err(error) => {
                    // The server may have received it: the payment stays
                    // outstanding in the budget until proven unspent.
                    let error = ClientError::Http(error.message);
                    self.hooks.on_failure(&error).await;
                    return Err(error);
                }
            };
            if let Some(provider) = &self.sign_in
                && response.status().is_success()
            {
                provider.remember(target.url(), response.headers());
            }
            if outcome_attempt < self.outcome_retries
                && let Some(wait) = self.outcome_not_known_yet(&response)
            {
                outcome_attempt += 1;
                tracing::info!(
                    ?wait,
                    attempt = outcome_attempt,
                    "settlement outcome not known yet; re-sending the same payment"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let hop = match redirect::next_hop(&target, &response) {
                Some(hop) if hop.carries_payment && hops < MAX_PAID_HOPS => {
                    hops += 1;
                    target = hop.request;
                    continue;
                }
                hop => hop,
            };
            let outcome = self
                .finish(prepared, response.status().as_u16(), response.headers())
                .await;
            let Some(hop) = hop else {
                response.extensions_mut().insert(outcome);
                return Ok(response);
            };
            return Ok(follow_unpaid(hop.request, response, outcome, execute).await);
        }
    }
}

/// Follows the redirect answered to a paid request, without the payment,
/// with `execute`; the outcome goes with the final answer (or with the
/// redirect itself when it cannot be followed).
async fn follow_unpaid<F, Fut>(
    request: reqwest::Request,
    mut redirect: reqwest::Response,
    outcome: PaymentOutcome,
    execute: &mut F,
) -> reqwest::Response
where
    F: FnMut(reqwest::Request) -> Fut,
    Fut: std::future::Future<Output = Result<reqwest::Response, Transport>>,
{
    match execute(request).await {
        Ok(mut followed) => {
            followed.extensions_mut().insert(outcome);
            followed
        }
        Err(error) => {
            tracing::warn!(error = %error.message, "following the paid request's redirect failed; answering the redirect");
            redirect.extensions_mut().insert(outcome);
            redirect
        }
    }
}

impl X402Client {
    /// How long to wait before re-sending the same payment, when `response`
    /// says its settlement outcome is not known yet: a pending receipt, or a
    /// 503 with `Retry-After` (the server kept the payment for a retry).
    fn outcome_not_known_yet(&self, response: &reqwest::Response) -> Option<Duration> {
        let pending = response
            .headers()
            .get(PAYMENT_RESPONSE_HEADER)
            .and_then(|v| codec::decode_payment_response(v.as_bytes()).ok())
            .is_some_and(|receipt| receipt.is_pending());
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let unknown =
            response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some();
        (pending || unknown).then(|| {
            retry_after
                .unwrap_or(Duration::from_secs(1))
                .min(self.max_outcome_wait)
        })
    }
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
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
    {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport failure, and whether the request certainly did not reach the
/// server (so that re-sending the same payment is safe and useful).
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) retryable: bool,
    pub(crate) message: String,
}

impl From<reqwest::Error> for Transport {
    fn from(error: reqwest::Error) -> Self {
        Self {
            retryable: error.is_connect() || error.is_timeout(),
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_core::{BoxFuture, ChainId, JsonObject, ResourceInfo, SchemeError};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    impl X402Client {
        /// `pay_flow` with one transport for unpaid and paid requests.
        async fn flow_through<F, Fut>(
            &self,
            request: reqwest::Request,
            execute: F,
        ) -> Result<reqwest::Response, ClientError>
        where
            F: FnMut(reqwest::Request) -> Fut + Copy,
            Fut: std::future::Future<Output = Result<reqwest::Response, Transport>>,
        {
            self.pay_flow(request, execute, execute).await
        }
    }

    /// Signs nothing real; counts how many payloads it produced.
    struct CountingWallet(AtomicUsize);

    impl SchemeClient for CountingWallet {
        fn scheme(&self) -> &str {
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

    fn required() -> PaymentRequired {
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

    fn response(status: u16, headers: &[(&str, String)]) -> reqwest::Response {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        reqwest::Response::from(builder.body(Vec::<u8>::new()).unwrap_or_default())
    }

    struct Veto;
    #[async_trait::async_trait]
    impl PaymentHooks for Veto {
        async fn before_sign(&self, _: &PaymentRequirements) -> Result<(), String> {
            Err("not today".into())
        }
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
                        2 | 3 => Err(Transport {
                            retryable: true,
                            message: "connection refused".into(),
                        }),
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
        let pending = codec::encode_header(&paywire_core::SettleResponse::failed(
            network.clone(),
            paywire_core::ErrorReason::TRANSACTION_PENDING,
            None,
            "0xabc",
        ));
        let settled = codec::encode_header(&paywire_core::SettleResponse::settled(
            network, "0xabc", None,
        ));
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

    #[tokio::test]
    async fn a_hook_can_veto_before_signing() {
        let wallet = Arc::new(CountingWallet(AtomicUsize::new(0)));
        let client = X402Client::builder()
            .wallet(ChainIdPattern::parse("eip155:*").unwrap(), wallet.clone())
            .hooks(Arc::new(Veto))
            .build();
        assert!(matches!(
            client.prepare(&required()).await,
            Err(ClientError::Vetoed(_))
        ));
        assert_eq!(wallet.0.load(Ordering::SeqCst), 0, "nothing signed");
    }

    /// An offer whose authorization would live longer than the policy's
    /// cap (300 s by default) is refused, with the reason, before signing.
    #[tokio::test]
    async fn offers_above_the_timeout_cap_are_not_signed() {
        let wallet = Arc::new(CountingWallet(AtomicUsize::new(0)));
        let client = X402Client::builder()
            .wallet(ChainIdPattern::parse("eip155:*").unwrap(), wallet.clone())
            .build();
        let mut long = required();
        long.accepts[0].max_timeout_seconds = 301;
        match client.prepare(&long).await {
            Err(ClientError::NoAcceptableOption(why)) => {
                assert!(why.contains("maxTimeoutSeconds 301 exceeds"), "{why}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(wallet.0.load(Ordering::SeqCst), 0, "nothing signed");
        long.accepts[0].max_timeout_seconds = 300;
        assert!(client.prepare(&long).await.is_ok());
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
            .unwrap(),
        );
        let client = X402Client::builder()
            .wallet(
                ChainIdPattern::parse("eip155:*").unwrap(),
                Arc::new(CountingWallet(AtomicUsize::new(0))),
            )
            .budget(Arc::clone(&budget))
            .build();
        let totals = || {
            (
                budget.spent_total(&scope).unwrap(),
                budget.outstanding_total(&scope).unwrap(),
            )
        };
        let refused = client.prepare(&required()).await.unwrap();
        let failed = paywire_core::SettleResponse::failed(
            ChainId::parse("eip155:8453").unwrap(),
            paywire_core::ErrorReason::INSUFFICIENT_FUNDS,
            None,
            "",
        );
        let outcome = client
            .finish(&refused, 402, &receipt_headers(&failed))
            .await;
        assert_eq!(outcome.status, PaymentStatus::NotPaid);
        client.finish(&refused, 500, &HeaderMap::new()).await;
        assert_eq!(totals(), (0, 10_000), "the server holds it: still counted");

        let settled = client.prepare(&required()).await.unwrap();
        let success = paywire_core::SettleResponse {
            success: true,
            error_reason: None,
            transaction: "0xabc".into(),
            ..failed.clone()
        };
        let outcome = client
            .finish(&settled, 500, &receipt_headers(&success))
            .await;
        assert_eq!(outcome.status, PaymentStatus::Paid);
        assert_eq!(totals(), (10_000, 10_000));

        let unsent = client.prepare(&required()).await.unwrap();
        assert_eq!(totals(), (10_000, 20_000));
        client.abandon(&unsent);
        assert_eq!(totals(), (10_000, 10_000), "never sent: released");
    }

    #[tokio::test]
    async fn pending_receipts_are_reported_as_pending() {
        let wallet = Arc::new(CountingWallet(AtomicUsize::new(0)));
        let client = X402Client::builder()
            .wallet(ChainIdPattern::parse("eip155:*").unwrap(), wallet)
            .build();
        let prepared = client.prepare(&required()).await.unwrap();
        let pending = paywire_core::SettleResponse::failed(
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
        let outcome = client.finish(&prepared, 402, &headers).await;
        assert_eq!(outcome.status, PaymentStatus::Pending);
        let failed = paywire_core::SettleResponse::failed(
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
            client.finish(&prepared, 402, &headers).await.status,
            PaymentStatus::NotPaid
        );
        // A 200 whose receipt says failure is not "paid".
        assert_eq!(
            client.finish(&prepared, 200, &headers).await.status,
            PaymentStatus::NotPaid
        );
    }
}
