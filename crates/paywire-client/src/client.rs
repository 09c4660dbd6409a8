//! The paying client: wallets, policy, budget and hooks, and the steps of
//! a payment (prepare, finish, abandon) that the flow ([`crate::flow`])
//! runs for every transport.

use std::sync::Arc;
use std::time::Duration;

use paywire_core::codec;
use paywire_core::extensions::PAYMENT_IDENTIFIER;
use paywire_core::{
    BoxFuture, ChainIdPattern, DecodeError, Extensions, JsonObject, PaymentPayload,
    PaymentRequired, PaymentRequirements, SchemeClient, SchemeRegistry, SettleResponse, SpendProbe,
    X402_VERSION,
};

use crate::budget::{Budget, BudgetError, Reconciliation, Reservation};
use crate::flow::{AnswerStatus, SignInProvider, TransportError};
use crate::policy::{AssetCatalog, Catalogs, Exclusion, Selection, SelectionPolicy};

/// Default cap on a 402 answer's body (64 KiB): a payment challenge is a few
/// kilobytes of JSON.
pub const DEFAULT_MAX_402_BODY: usize = 64 * 1024;

/// Default time one reconciliation of outstanding payments may take before
/// a payment goes ahead without it.
const DEFAULT_RECONCILE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a paid request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The transport failed (connection, time-out, an answer that could
    /// not be read).
    #[error("transport error: {0}")]
    Transport(#[from] TransportError),
}

/// How the paid request ended (the HTTP adapters attach it to the
/// response's extensions).
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
    /// Settled (the receipt says `success: true`, whatever the status), or
    /// an answer that granted access without a receipt.
    Paid,
    /// Sent to the chain but not confirmed yet; it may still land.
    Pending,
    /// Not settled (the server refused or settlement failed). The server
    /// may still hold the signed authorization: the budget keeps counting it
    /// until it is proven unspent.
    NotPaid,
}

/// Callbacks around payments. Every method has a default that does nothing.
pub trait PaymentHooks: Send + Sync {
    /// Called before signing; an `Err` vetoes the payment.
    fn before_sign<'a>(
        &'a self,
        _requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    /// Called after the paid request completed.
    fn after_payment<'a>(&'a self, _outcome: &'a PaymentOutcome) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
    /// Called when paying failed.
    fn on_failure<'a>(&'a self, _error: &'a ClientError) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

struct NoHooks;
impl PaymentHooks for NoHooks {}

/// A signed payment ready to be sent, with its budget reservation.
#[derive(Debug, Clone)]
pub struct PreparedPayment {
    /// The payload.
    pub payload: PaymentPayload,
    /// The payload encoded as the `PAYMENT-SIGNATURE` header value (base64
    /// JSON).
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
    pub(crate) hooks: Arc<dyn PaymentHooks>,
    pub(crate) sign_in: Option<Arc<dyn SignInProvider>>,
    pub(crate) retries: u32,
    pub(crate) outcome_retries: u32,
    pub(crate) max_outcome_wait: Duration,
    spend_probe: Option<Arc<dyn SpendProbe>>,
    reconcile_timeout: Duration,
    pub(crate) max_402_body: usize,
    /// Sends HTTP requests carrying a payment; never follows redirects.
    /// Built on first use unless configured.
    #[cfg(feature = "reqwest")]
    pub(crate) paid_http: std::sync::OnceLock<Result<reqwest::Client, String>>,
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
    /// a transport error that allows it (default 2).
    pub fn retries(mut self, retries: u32) -> Self {
        self.client.retries = retries;
        self
    }

    /// How many times a paid request is re-sent, with the same payment, when
    /// the server says the settlement outcome is not known yet (a pending
    /// receipt, or HTTP 503 with `Retry-After`) (default 3). Re-sending the same
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

    /// Largest offer (402 body) the client reads (default
    /// [`DEFAULT_MAX_402_BODY`]); a larger one is refused with
    /// [`ClientError::PaymentRequiredTooLarge`] before anything is signed.
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
    #[cfg(feature = "reqwest")]
    pub fn paid_request_client(self, client: reqwest::Client) -> Self {
        let _ = self.client.paid_http.set(Ok(client));
        self
    }

    /// Finishes the client.
    pub fn build(self) -> X402Client {
        self.client
    }
}

/// Merges the client's data for one extension into the server's
/// declaration, as the TypeScript SDK does: objects merge member by member,
/// the server's members stay as declared and the client adds the others; a
/// value that is not an object on either side is replaced by the client's.
fn merge_extension(declared: &mut serde_json::Value, client: serde_json::Value) {
    use serde_json::Value;
    match (declared, client) {
        (Value::Object(declared), Value::Object(client)) => {
            for (key, value) in client {
                match declared.get_mut(&key) {
                    Some(existing @ Value::Object(_)) if value.is_object() => {
                        merge_extension(existing, value);
                    }
                    Some(_) => {}
                    None => {
                        declared.insert(key, value);
                    }
                }
            }
        }
        (declared, client) => *declared = client,
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
                #[cfg(feature = "reqwest")]
                paid_http: std::sync::OnceLock::new(),
            },
        }
    }

    /// Applies wallets, policy and budget to the offered options.
    pub async fn select(&self, required: &PaymentRequired) -> Selection {
        let budget_verdicts = self.budget_verdicts(&required.accepts).await;
        self.policy.select(
            &required.accepts,
            &self.catalog,
            |r| self.wallets.supports(&r.scheme, &r.network),
            |r, _| {
                // The verdict of an equal option: the budget's answer depends
                // on the requirements (and their asset's info) only.
                let index = required.accepts.iter().position(|a| a == r)?;
                budget_verdicts.get(index).cloned().flatten()
            },
        )
    }

    /// The budget's exclusion of each option (none without a budget).
    async fn budget_verdicts(&self, accepts: &[PaymentRequirements]) -> Vec<Option<Exclusion>> {
        let Some(budget) = &self.budget else {
            return Vec::new();
        };
        let mut verdicts = Vec::with_capacity(accepts.len());
        for requirements in accepts {
            let info = self
                .catalog
                .asset_info(&requirements.network, &requirements.asset);
            let verdict = budget.fits(requirements, info.as_ref()).await;
            verdicts.push(verdict.err().map(|e| Exclusion::Budget(e.to_string())));
        }
        verdicts
    }

    /// Reconciles the budget's outstanding payments that are due with the
    /// spend probe, within the reconcile timeout. `None` without a budget or
    /// a probe, when nothing is due, or when the pass failed or timed out
    /// (undecided payments keep counting: this never stops a payment).
    pub async fn reconcile(&self) -> Option<Reconciliation> {
        let (budget, probe) = (self.budget.as_ref()?, self.spend_probe.as_ref()?);
        match budget.has_due_probes().await {
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
    /// [`Self::finish`]. The payment is bound to the 402's own resource:
    /// this method does not know where the 402 came from, so it is for
    /// callers that do (the client's own transports bind payments to the
    /// URL they contacted).
    pub async fn prepare(
        &self,
        required: &PaymentRequired,
    ) -> Result<PreparedPayment, ClientError> {
        let (requirements, selection) = self.choose(required).await?;
        self.sign_chosen(required, requirements, selection, None)
            .await
    }

    /// The option to pay for `required`, chosen by wallets, policy and
    /// budget, and accepted by the `before_sign` hook. Nothing is reserved
    /// or signed yet.
    pub(crate) async fn choose(
        &self,
        required: &PaymentRequired,
    ) -> Result<(PaymentRequirements, Selection), ClientError> {
        self.reconcile().await;
        let selection = self.select(required).await;
        let Some(requirements) = selection.chosen().cloned() else {
            return Err(ClientError::NoAcceptableOption(selection.explain()));
        };
        self.hooks
            .before_sign(&requirements)
            .await
            .map_err(ClientError::Vetoed)?;
        Ok((requirements, selection))
    }

    /// Reserves budget for and signs `requirements`, the option
    /// [`Self::choose`] chose from `required`.
    pub(crate) async fn sign_chosen(
        &self,
        required: &PaymentRequired,
        requirements: PaymentRequirements,
        selection: Selection,
        requested: Option<&url::Url>,
    ) -> Result<PreparedPayment, ClientError> {
        let resource = bound_resource(&required.resource, requested);
        let info = self
            .catalog
            .asset_info(&requirements.network, &requirements.asset);
        let reservation = match &self.budget {
            Some(budget) => Some(budget.reserve(&requirements, info.as_ref()).await?),
            None => None,
        };
        let signed = match self
            .wallets
            .find(&requirements.scheme, &requirements.network)
        {
            Some(wallet) => wallet
                .create_payment_for(&requirements, required.extensions.as_ref(), &resource)
                .await
                .map_err(|e| ClientError::Signing(e.to_string())),
            None => Err(ClientError::Signing("no wallet".into())),
        };
        let created = match signed {
            Ok(created) => created,
            Err(error) => {
                if let (Some(budget), Some(reservation)) = (&self.budget, &reservation) {
                    let _ = budget.release(reservation).await;
                }
                return Err(error);
            }
        };
        let extensions = Self::echo_extensions(required.extensions.as_ref(), created.extensions);
        let payload = PaymentPayload {
            x402_version: X402_VERSION,
            payload: created.payload,
            extensions,
            resource: Some(resource),
            accepted: requirements,
        };
        if let (Some(budget), Some(reservation)) = (&self.budget, &reservation)
            && let Err(error) = budget.mark_outstanding(reservation, &payload).await
        {
            let _ = budget.release(reservation).await;
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
    /// server supports one (it is then reused on every retry of this payment),
    /// and the extension data the scheme produced with the payment (e.g. a
    /// gas-sponsoring permit), merged into the server's declarations.
    fn echo_extensions(offered: Option<&Extensions>, created: JsonObject) -> Option<Extensions> {
        if offered.is_none() && created.is_empty() {
            return None;
        }
        let mut extensions = offered.cloned().unwrap_or_default();
        if extensions.contains(PAYMENT_IDENTIFIER) {
            let mut id = serde_json::Map::new();
            id.insert("id".into(), serde_json::Value::String(random_id("pay_")));
            extensions.append_info(PAYMENT_IDENTIFIER, id);
        }
        for (key, value) in created {
            match extensions.0.get_mut(&key) {
                Some(declared) => merge_extension(declared, value),
                None => {
                    extensions.0.insert(key, value);
                }
            }
        }
        Some(extensions)
    }

    /// Records the outcome of a sent payment in the budget and hooks, given
    /// the final answer's status and receipt: a receipt with `success: true`
    /// commits it as spent (a usage-based payment for what the chain proves
    /// it was charged); any other answer leaves it
    /// outstanding (the server may still settle the authorization it holds)
    /// until it is settled or proven unspent.
    pub async fn finish(
        &self,
        prepared: &PreparedPayment,
        answer: AnswerStatus,
        receipt: Option<SettleResponse>,
    ) -> PaymentOutcome {
        let status = match &receipt {
            Some(r) if r.success => PaymentStatus::Paid,
            Some(r) if r.is_pending() => PaymentStatus::Pending,
            // Access granted without a receipt: the server took the payment
            // but did not say how; count it as spent (never under-count a
            // budget).
            None if answer == AnswerStatus::Granted => PaymentStatus::Paid,
            _ => PaymentStatus::NotPaid,
        };
        let settled = receipt.as_ref().filter(|r| r.success);
        if let (Some(budget), Some(reservation), Some(settled)) =
            (&self.budget, &prepared.reservation, settled)
        {
            let committed = match self.charge(&prepared.payload, settled).await {
                Charge::Proven(charged) => budget.commit_charged(reservation, charged).await,
                Charge::Maximum => budget.commit(reservation).await,
                Charge::Outstanding => Ok(()),
            };
            if let Err(error) = committed {
                tracing::error!(%error, "could not record the payment in the budget");
            }
        }
        let outcome = PaymentOutcome {
            requirements: prepared.payload.accepted.clone(),
            receipt,
            status,
        };
        self.hooks.after_payment(&outcome).await;
        outcome
    }

    /// What a settled payment counts in the budget. The server chooses the
    /// facilitator of a usage-based payment, so its receipt's `amount` is a
    /// claim, never the truth: only the chain, through the spend probe, can
    /// lower the authorized maximum, and only to what the named transaction
    /// moved under this very authorization. A receipt naming no transaction
    /// (a zero charge) proves nothing either: the authorization may still be
    /// settled until its deadline, so its maximum stays outstanding until
    /// the probe proves it unspent. Other schemes count their whole amount.
    async fn charge(&self, payload: &PaymentPayload, receipt: &SettleResponse) -> Charge {
        let accepted = &payload.accepted;
        if !self.policy.is_usage_based(&accepted.scheme) {
            return Charge::Maximum;
        }
        if receipt.transaction.is_empty() {
            tracing::info!(claimed = ?receipt.amount,
                "usage-based payment settled without a transaction; its maximum stays outstanding until proven unspent");
            return Charge::Outstanding;
        }
        let Some(probe) = &self.spend_probe else {
            tracing::info!("no spend probe to verify the usage-based charge; counting the maximum");
            return Charge::Maximum;
        };
        let read = probe.settled_amount(payload, &receipt.transaction);
        let Ok(Some(onchain)) = tokio::time::timeout(self.reconcile_timeout, read).await else {
            tracing::warn!(claimed = ?receipt.amount, transaction = %receipt.transaction,
                "the chain does not confirm the usage-based charge; counting the maximum");
            return Charge::Maximum;
        };
        if receipt.amount != Some(onchain) {
            tracing::warn!(claimed = ?receipt.amount, %onchain,
                "the receipt's charge differs from the chain's; counting the chain's");
        }
        if onchain > accepted.amount {
            return Charge::Maximum;
        }
        Charge::Proven(onchain)
    }

    /// Releases the budget of a prepared payment that was never sent (its
    /// signed authorization never left the client). Never call it for a
    /// payment that was sent, whatever the answer.
    pub async fn abandon(&self, prepared: &PreparedPayment) {
        if let (Some(budget), Some(reservation)) = (&self.budget, &prepared.reservation) {
            let _ = budget.release(reservation).await;
        }
    }
}

/// What a settled payment counts in the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charge {
    /// The amount the chain proves was moved.
    Proven(paywire_core::AtomicAmount),
    /// The whole reserved amount.
    Maximum,
    /// Nothing proven yet: the payment stays outstanding at its maximum.
    Outstanding,
}

/// The resource a payment is bound to: the 402's, unless it names another
/// server than the one the request went to. A scheme binding its
/// authorization to the resource (the `credit` binding's `aud`) then binds
/// it to the resource actually contacted, so a server relaying someone
/// else's 402 cannot have the payer authorize a payment it spends there.
/// Without a contacted URL ([`X402Client::prepare`]) the 402's stands.
fn bound_resource(
    offered: &paywire_core::ResourceInfo,
    requested: Option<&url::Url>,
) -> paywire_core::ResourceInfo {
    let Some(requested) = requested else {
        return offered.clone();
    };
    let web = |url: &url::Url| matches!(url.scheme(), "http" | "https");
    let mut contacted = requested.clone();
    // Never sent to a server, so never part of what was bought.
    contacted.set_fragment(None);
    let keep = match url::Url::parse(&offered.url) {
        // The same web origin.
        Ok(offered) if web(&contacted) => web(&offered) && offered.origin() == contacted.origin(),
        // Transports whose resources name no server (MCP's `mcp://tool/…`)
        // keep theirs, unless the 402 names a web resource.
        Ok(offered) => !web(&offered),
        Err(_) => !web(&contacted),
    };
    if keep {
        return offered.clone();
    }
    paywire_core::ResourceInfo {
        url: contacted.into(),
        ..offered.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{CountingWallet, required};
    use paywire_core::SpendState;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Veto;
    impl PaymentHooks for Veto {
        fn before_sign<'a>(
            &'a self,
            _: &'a PaymentRequirements,
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Err("not today".into()) })
        }
    }

    #[test]
    fn payments_are_bound_to_the_server_contacted() {
        let bound = |offered: &str, contacted: &str| {
            let contacted = url::Url::parse(contacted).unwrap();
            let offered = paywire_core::ResourceInfo::new(offered);
            bound_resource(&offered, Some(&contacted)).url
        };
        // The same origin: the 402's resource as it is.
        assert_eq!(
            bound(
                "https://shop.example/r?x=1",
                "https://SHOP.example:443/other#f"
            ),
            "https://shop.example/r?x=1"
        );
        // Another origin (host, scheme or port): the URL contacted, no fragment.
        for contacted in [
            "https://rogue.example/r#frag",
            "http://shop.example/r",
            "https://shop.example:8443/r",
        ] {
            let expected = contacted.split('#').next().unwrap();
            assert_eq!(bound("https://shop.example/r", contacted), expected);
        }
        // MCP names no server: its own resource stays, a relayed web one does not.
        assert_eq!(
            bound("mcp://tool/forecast", "mcp://tool/forecast"),
            "mcp://tool/forecast"
        );
        assert_eq!(
            bound("https://shop.example/r", "mcp://tool/forecast"),
            "mcp://tool/forecast"
        );
        assert_eq!(
            bound("not a url", "https://a.example/r"),
            "https://a.example/r"
        );
        // Without a contacted URL nothing is rebound.
        let offered = paywire_core::ResourceInfo::new("https://shop.example/r");
        assert_eq!(bound_resource(&offered, None).url, offered.url);
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
                assert!(why.contains("maxTimeoutSeconds 301 exceeds"), "{why}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(wallet.0.load(Ordering::SeqCst), 0, "nothing signed");
        long.accepts[0].max_timeout_seconds = 300;
        assert!(client.prepare(&long).await.is_ok());
    }

    /// A usage-based wallet that adds a gas-sponsoring permit to its payment
    /// when the server declared the extension.
    struct UptoWallet;

    impl SchemeClient for UptoWallet {
        fn scheme(&self) -> &'static str {
            "upto"
        }
        fn payer(&self, _: &paywire_core::ChainId) -> Option<String> {
            Some("0xpayer".into())
        }
        fn create_payload<'a>(
            &'a self,
            _: &'a PaymentRequirements,
        ) -> BoxFuture<'a, Result<JsonObject, paywire_core::SchemeError>> {
            Box::pin(async {
                Err(paywire_core::SchemeError::Unsupported(
                    "signs through create_payment".into(),
                ))
            })
        }
        fn create_payment<'a>(
            &'a self,
            requirements: &'a PaymentRequirements,
            offered: Option<&'a Extensions>,
        ) -> BoxFuture<'a, Result<paywire_core::CreatedPayment, paywire_core::SchemeError>>
        {
            let sponsored = offered.is_some_and(|e| e.contains("gasSponsoring"));
            Box::pin(async move {
                let mut payload = JsonObject::new();
                payload.insert("max".into(), requirements.amount.to_string().into());
                let mut created = paywire_core::CreatedPayment::new(payload);
                if sponsored {
                    created = created.with_extension(
                        "gasSponsoring",
                        serde_json::json!({"info": {"permit": "0xsigned", "version": "client"}}),
                    );
                }
                Ok(created)
            })
        }
    }

    fn upto_required(sponsoring: bool) -> PaymentRequired {
        let mut required = required();
        required.accepts[0].scheme = "upto".into();
        if sponsoring && let Some(extensions) = required.extensions.as_mut() {
            extensions.0.insert(
                "gasSponsoring".into(),
                serde_json::json!({"info": {"version": "server"}, "schema": {}}),
            );
        }
        required
    }

    fn usdc_scope() -> crate::budget::BudgetScope {
        crate::budget::BudgetScope::Asset {
            network: paywire_core::ChainId::parse("eip155:8453").unwrap(),
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
        }
    }

    /// The chain as the tests script it: what a named transaction moved
    /// (for any payload), whether the authorization is spent, and which
    /// transactions it was asked about.
    struct ChainProbe {
        moved: Option<u64>,
        state: std::sync::Mutex<SpendState>,
        asked: std::sync::Mutex<Vec<String>>,
    }

    impl ChainProbe {
        fn new(moved: Option<u64>) -> Arc<Self> {
            Arc::new(Self {
                moved,
                state: std::sync::Mutex::new(SpendState::Unknown),
                asked: std::sync::Mutex::new(Vec::new()),
            })
        }
    }

    impl SpendProbe for ChainProbe {
        fn probe<'a>(&'a self, _: &'a PaymentPayload) -> BoxFuture<'a, SpendState> {
            let state = *self.state.lock().unwrap();
            Box::pin(async move { state })
        }
        fn settled_amount<'a>(
            &'a self,
            _: &'a PaymentPayload,
            transaction: &'a str,
        ) -> BoxFuture<'a, Option<paywire_core::AtomicAmount>> {
            self.asked.lock().unwrap().push(transaction.to_owned());
            let moved = self.moved.map(Into::into);
            Box::pin(async move { moved })
        }
    }

    /// An `upto` client with a budget on a clock the test moves, and, if
    /// given, a spend probe.
    async fn upto_client_on(
        probe: Option<Arc<ChainProbe>>,
    ) -> (X402Client, Arc<Budget>, Arc<std::sync::atomic::AtomicI64>) {
        let rule = crate::budget::BudgetRule {
            scope: usdc_scope(),
            per_call: Some(10_000),
            per_hour: None,
            per_day: None,
            total: Some(1_000_000),
        };
        let now = Arc::new(std::sync::atomic::AtomicI64::new(1_800_000_000));
        let clock = Arc::clone(&now);
        let budget = Budget::in_memory(vec![rule])
            .await
            .unwrap()
            .with_clock(move || clock.load(Ordering::SeqCst));
        let budget = Arc::new(budget);
        let mut builder = X402Client::builder()
            .wallet(
                ChainIdPattern::parse("eip155:*").unwrap(),
                Arc::new(UptoWallet),
            )
            .budget(budget.clone());
        if let Some(probe) = probe {
            builder = builder.spend_probe(probe);
        }
        (builder.build(), budget, now)
    }

    async fn upto_client() -> (X402Client, Arc<Budget>) {
        let (client, budget, _) = upto_client_on(None).await;
        (client, budget)
    }

    fn receipt(amount: Option<u64>) -> SettleResponse {
        let mut receipt = SettleResponse::settled(
            paywire_core::ChainId::parse("eip155:8453").unwrap(),
            "0xtx",
            None,
        );
        receipt.amount = amount.map(Into::into);
        receipt
    }

    /// Pays one `upto` option (maximum 10,000) and finishes it with
    /// `receipt`; returns what it added to the spent and outstanding totals.
    async fn settle_upto(
        client: &X402Client,
        budget: &Budget,
        receipt: SettleResponse,
    ) -> (u128, u128) {
        let scope = usdc_scope();
        let spent = budget.spent_total(&scope).await.unwrap();
        let outstanding = budget.outstanding_total(&scope).await.unwrap();
        let prepared = client.prepare(&upto_required(false)).await.unwrap();
        assert_eq!(
            budget.outstanding_total(&scope).await.unwrap(),
            outstanding + 10_000
        );
        let outcome = client
            .finish(&prepared, AnswerStatus::Granted, Some(receipt))
            .await;
        assert_eq!(outcome.status, PaymentStatus::Paid);
        (
            budget.spent_total(&scope).await.unwrap() - spent,
            budget.outstanding_total(&scope).await.unwrap() - outstanding,
        )
    }

    /// Hostile review r2: the server (which picks the facilitator) can claim
    /// any charge; without the chain's word the maximum counts.
    #[tokio::test]
    async fn a_claimed_charge_the_chain_does_not_confirm_counts_the_maximum() {
        let unconfirmed = ChainProbe::new(None);
        for probe in [None, Some(Arc::clone(&unconfirmed))] {
            let (client, budget, _) = upto_client_on(probe).await;
            for claimed in [Some(2_500), Some(1), Some(0), Some(20_000), None] {
                let counted = settle_upto(&client, &budget, receipt(claimed)).await;
                assert_eq!(counted, (10_000, 0), "{claimed:?}");
            }
        }
        assert_eq!(unconfirmed.asked.lock().unwrap().len(), 5);
        assert!(
            unconfirmed
                .asked
                .lock()
                .unwrap()
                .iter()
                .all(|t| t == "0xtx")
        );
    }

    /// What the chain proves was moved counts, whatever the receipt claims
    /// (lower or higher), but never more than the authorized maximum.
    #[tokio::test]
    async fn a_charge_the_chain_confirms_counts_the_chains_amount() {
        for (claimed, moved, counted) in [
            (Some(2_500), 2_500, 2_500),
            (Some(1), 4_000, 4_000),
            (None, 3_000, 3_000),
            (Some(2_500), 20_000, 10_000),
        ] {
            let probe = ChainProbe::new(Some(moved));
            let (client, budget, _) = upto_client_on(Some(Arc::clone(&probe))).await;
            let added = settle_upto(&client, &budget, receipt(claimed)).await;
            assert_eq!(added, (counted, 0), "{claimed:?} {moved}");
            assert_eq!(*probe.asked.lock().unwrap(), ["0xtx"]);
        }
    }

    /// A zero charge sends no transaction, so nothing proves it; the
    /// authorization could still be settled until its deadline. Its maximum
    /// stays outstanding until the chain proves it unspent (field lesson 31).
    #[tokio::test]
    async fn a_zero_charge_stays_outstanding_until_proven_unspent() {
        let probe = ChainProbe::new(Some(0));
        let (client, budget, now) = upto_client_on(Some(Arc::clone(&probe))).await;
        let mut zero = receipt(Some(0));
        zero.transaction = String::new();
        assert_eq!(settle_upto(&client, &budget, zero).await, (0, 10_000));
        assert!(
            probe.asked.lock().unwrap().is_empty(),
            "no transaction to ask about"
        );

        now.fetch_add(3_600, Ordering::SeqCst);
        assert_eq!(client.reconcile().await.map(|r| r.undecided), Some(1));
        let scope = usdc_scope();
        assert_eq!(budget.outstanding_total(&scope).await.unwrap(), 10_000);

        *probe.state.lock().unwrap() = SpendState::Unspent;
        now.fetch_add(3_600, Ordering::SeqCst);
        assert_eq!(client.reconcile().await.map(|r| r.released), Some(1));
        assert_eq!(budget.outstanding_total(&scope).await.unwrap(), 0);
        assert_eq!(budget.spent_total(&scope).await.unwrap(), 0);
    }

    /// An exact payment's receipt never lowers what it counts, even with a
    /// probe that would confirm a lower amount.
    #[tokio::test]
    async fn an_exact_payment_counts_its_whole_amount() {
        let exact = Arc::new(CountingWallet(AtomicUsize::new(0)));
        let rule = crate::budget::BudgetRule {
            scope: usdc_scope(),
            per_call: None,
            per_hour: None,
            per_day: None,
            total: None,
        };
        let budget = Arc::new(Budget::in_memory(vec![rule]).await.unwrap());
        let probe = ChainProbe::new(Some(1));
        let client = X402Client::builder()
            .wallet(ChainIdPattern::parse("eip155:*").unwrap(), exact)
            .budget(budget.clone())
            .spend_probe(probe.clone())
            .build();
        let prepared = client.prepare(&required()).await.unwrap();
        client
            .finish(&prepared, AnswerStatus::Granted, Some(receipt(Some(1))))
            .await;
        assert_eq!(budget.spent_total(&usdc_scope()).await.unwrap(), 10_000);
        assert!(probe.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_usage_based_maximum_over_the_per_call_limit_is_not_signed() {
        let (client, _budget) = upto_client().await;
        let mut required = upto_required(false);
        required.accepts[0].amount = 10_001u64.into();
        required.accepts[0].extra = Some(
            [("expectedAmount".to_owned(), serde_json::json!("10"))]
                .into_iter()
                .collect(),
        );
        assert!(matches!(
            client.prepare(&required).await,
            Err(ClientError::NoAcceptableOption(_))
        ));
    }

    #[tokio::test]
    async fn extension_data_from_the_scheme_is_sent_with_the_payment() {
        let (client, _budget) = upto_client().await;
        let prepared = client.prepare(&upto_required(true)).await.unwrap();
        let extensions = prepared.payload.extensions.clone().unwrap();
        assert_eq!(
            extensions.0["gasSponsoring"],
            serde_json::json!({"info": {"version": "server", "permit": "0xsigned"}, "schema": {}}),
            "the server's fields stay, the client's are added"
        );
        let id = extensions
            .info(PAYMENT_IDENTIFIER)
            .and_then(|info| info.get("id").cloned());
        assert!(id.is_some_and(|id| id.as_str().is_some_and(|id| id.starts_with("pay_"))));
        let sent: PaymentPayload =
            codec::decode_payment_signature(prepared.header.as_bytes()).unwrap();
        assert_eq!(sent.extensions, prepared.payload.extensions);

        // Nothing declared: nothing added.
        let prepared = client.prepare(&upto_required(false)).await.unwrap();
        let extensions = prepared.payload.extensions.unwrap();
        assert!(!extensions.contains("gasSponsoring"));
    }
}
