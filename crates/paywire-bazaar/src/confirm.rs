//! Confirming a declaration against its origin before it is listed.
//!
//! The resource URL of a payment is whatever the paying client echoed, so a
//! payer could otherwise attach their own recipient, price and description
//! to someone else's URL. The facilitator therefore asks the origin: it
//! sends the declared method to the URL without payment (a well-behaved x402
//! server stops at 402 and runs nothing), and lists the resource only when
//! that 402 offers the recipient, asset, network and scheme that were paid.
//! The entry is built from the origin's answer (its offer, its description
//! and its declaration), never from the payer's echo.
//!
//! The fetch is bounded (time, body size, no redirects, no proxy) and, unless
//! a devnet configuration allows it, reaches public addresses only: IP
//! literals are checked before the request, names by the resolver the
//! connection uses.

mod address;
mod cache;

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paywire_core::extensions::BAZAAR;
use paywire_core::{PaymentPayload, PaymentRequired, PaymentRequirements, codec};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::Semaphore;

pub use address::is_public_address;

use crate::catalog::DiscoveredResource;
use crate::extract::extract;
use address::{NonPublicAddress, PublicOnlyResolver};
use cache::AnswerCache;

/// How long the origin has to answer, by default.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest 402 body read when the origin sends no `PAYMENT-REQUIRED` header
/// (64 KiB; the header itself is capped at [`codec::MAX_HEADER_LEN`]).
pub const MAX_PAYMENT_REQUIRED_BODY: usize = 64 * 1024;

const BODY_METHODS: &[&str] = &["POST", "PUT", "PATCH"];
const QUERY_METHODS: &[&str] = &["GET", "HEAD", "DELETE"];

/// Settings of an [`OriginConfirmer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmConfig {
    /// Total time for one fetch: resolution, connection, headers and body.
    pub timeout: Duration,
    /// Also fetch from private, loopback, link-local and other non-public
    /// addresses. For devnets only: on a public facilitator it lets any
    /// payer make the facilitator send requests into its own network.
    pub allow_private_addresses: bool,
    /// How long an origin's 402 answer is reused.
    pub answer_ttl: Duration,
    /// How long a failed fetch (timeout, wrong status, bad 402) is reused.
    pub failure_ttl: Duration,
    /// How many answers are remembered.
    pub cache_capacity: usize,
    /// How many fetches may run at once; a payment arriving when all are in
    /// use is not confirmed (the next payment for the resource retries).
    pub max_concurrent_fetches: usize,
}

impl Default for ConfirmConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_CONFIRM_TIMEOUT,
            allow_private_addresses: false,
            answer_ttl: Duration::from_secs(300),
            failure_ttl: Duration::from_secs(60),
            cache_capacity: 256,
            max_concurrent_fetches: 16,
        }
    }
}

/// Why a declaration was not confirmed by its origin (and is not listed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unconfirmed(pub String);

fn unconfirmed(reason: impl Into<String>) -> Unconfirmed {
    Unconfirmed(reason.into())
}

/// The HTTP client of an [`OriginConfirmer`] could not be built.
#[derive(Debug, thiserror::Error)]
#[error("origin confirmation client: {0}")]
pub struct ConfirmSetupError(String);

/// What to ask the origin about one settled payment: the request to send
/// and the payment option its 402 must offer.
#[derive(Debug, Clone)]
pub struct Probe {
    method: Method,
    url: url::Url,
    paid: PaymentRequirements,
}

impl Probe {
    /// The URL that will be fetched (the echoed resource URL, without
    /// fragment).
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    fn cache_key(&self) -> String {
        format!("{} {}", self.method, self.url)
    }
}

type Answer = Result<Arc<PaymentRequired>, Unconfirmed>;

/// Confirms declarations against their origins, remembering the origins'
/// answers for a short while.
pub struct OriginConfirmer {
    /// Built once, at the first confirmation: a facilitator whose payments
    /// carry no declaration never loads the root certificates (about 1 MB
    /// resident). A failed build is kept too (with its cause, logged once):
    /// it is not retried for every declaration.
    http: tokio::sync::OnceCell<Result<reqwest::Client, String>>,
    config: ConfirmConfig,
    cache: AnswerCache<Answer>,
    fetches: Semaphore,
}

impl std::fmt::Debug for OriginConfirmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginConfirmer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OriginConfirmer {
    /// A confirmer with `config`. Its HTTP client is built at the first
    /// confirmation; a client that cannot be built then leaves every
    /// declaration unconfirmed, with the reason, and is logged as an error.
    /// Never fails today; the `Result` keeps room for checks of `config`.
    pub fn new(config: ConfirmConfig) -> Result<Self, ConfirmSetupError> {
        Ok(Self {
            http: tokio::sync::OnceCell::new(),
            cache: AnswerCache::new(config.cache_capacity),
            fetches: Semaphore::new(config.max_concurrent_fetches.max(1)),
            config,
        })
    }

    /// The HTTP client, built on first use off the async workers (loading
    /// the system's root certificates reads files).
    async fn http(&self) -> Result<&reqwest::Client, Unconfirmed> {
        let built = self
            .http
            .get_or_init(|| async {
                let config = self.config.clone();
                let built = tokio::task::spawn_blocking(move || build_client(&config))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|built| built.map_err(|e| with_causes(&e)));
                if let Err(error) = &built {
                    tracing::error!(%error,
                        "bazaar: cannot start the HTTP client; no declaration can be confirmed");
                }
                built
            })
            .await;
        built
            .as_ref()
            .map_err(|e| unconfirmed(format!("cannot start the HTTP client: {e}")))
    }

    /// The settings in use.
    pub fn config(&self) -> &ConfirmConfig {
        &self.config
    }

    /// What to ask the origin about `payload`, settled against
    /// `requirements`, or why it cannot be confirmed at all: an MCP tool
    /// (no URL answers a plain request for it), a URL that is not plain
    /// `http(s)`, or an IP literal that is not public.
    pub fn probe(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Probe, Unconfirmed> {
        let input = payload
            .extensions
            .as_ref()
            .and_then(|e| e.0.get(BAZAAR))
            .and_then(|declared| declared.pointer("/info/input"))
            .ok_or_else(|| unconfirmed("the payment carries no bazaar declaration"))?;
        let text = |key: &str| input.get(key).and_then(Value::as_str);
        match text("type") {
            Some("http") => {}
            Some("mcp") => {
                return Err(unconfirmed(
                    "MCP tool declarations cannot be confirmed against their origin and are not listed",
                ));
            }
            _ => return Err(unconfirmed("info.input.type must be \"http\" or \"mcp\"")),
        }
        let method = text("method")
            .filter(|m| QUERY_METHODS.contains(m) || BODY_METHODS.contains(m))
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or_else(|| unconfirmed("info.input.method is not an HTTP method"))?;
        let resource = payload
            .resource
            .as_ref()
            .ok_or_else(|| unconfirmed("the payment names no resource"))?;
        let url = self.checked_url(&resource.url)?;
        Ok(Probe {
            method,
            url,
            paid: requirements.clone(),
        })
    }

    fn checked_url(&self, text: &str) -> Result<url::Url, Unconfirmed> {
        let mut url =
            url::Url::parse(text).map_err(|e| unconfirmed(format!("resource url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(unconfirmed("resource url must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(unconfirmed("resource url must not carry credentials"));
        }
        url.set_fragment(None);
        // The parser has already turned decimal, octal and hex IPv4
        // spellings into addresses; names are checked when resolved.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            Some(url::Host::Domain(_)) => None,
            None => return Err(unconfirmed("resource url has no host")),
        };
        if !self.config.allow_private_addresses && literal.is_some_and(|ip| !is_public_address(ip))
        {
            return Err(unconfirmed(
                "the resource url points to a private or reserved address",
            ));
        }
        Ok(url)
    }

    fn ttl(&self, answer: &Answer) -> Duration {
        match answer {
            Ok(_) => self.config.answer_ttl,
            Err(_) => self.config.failure_ttl,
        }
    }

    /// The verdict on `probe` from a remembered answer of the origin, if
    /// one is fresh: the entry to list (as of `now`, Unix seconds) or why
    /// not. `None` means the origin must be asked ([`Self::confirm`]).
    pub fn cached(
        &self,
        probe: &Probe,
        now: u64,
    ) -> Option<Result<DiscoveredResource, Unconfirmed>> {
        let cell = self.cache.fresh(&probe.cache_key(), |a| self.ttl(a))?;
        let (_, answer) = cell.get()?;
        Some(verdict(answer, probe, now))
    }

    /// Asks the origin (or reuses its fresh answer) and returns the entry
    /// to list as of `now` (Unix seconds), or why the declaration is not
    /// confirmed.
    pub async fn confirm(
        &self,
        probe: &Probe,
        now: u64,
    ) -> Result<DiscoveredResource, Unconfirmed> {
        let cell = self.cache.cell(&probe.cache_key(), |a| self.ttl(a));
        let stamped = cell
            .get_or_try_init(|| async {
                let _permit = self.fetches.try_acquire().map_err(|_| {
                    unconfirmed("too many confirmations in progress; a later payment retries")
                })?;
                let answer = self.fetch(probe).await.map(Arc::new);
                Ok::<_, Unconfirmed>((Instant::now(), answer))
            })
            .await?;
        verdict(&stamped.1, probe, now)
    }

    async fn fetch(&self, probe: &Probe) -> Result<PaymentRequired, Unconfirmed> {
        let mut request = self
            .http()
            .await?
            .request(probe.method.clone(), probe.url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        // Never the example body or headers of the declaration: the payer
        // wrote those, and the request goes to an address the payer chose.
        if BODY_METHODS.contains(&probe.method.as_str()) {
            request = request.body(Vec::new());
        }
        let seconds = self.config.timeout.as_secs_f64();
        let attempt = async {
            let response = request.send().await.map_err(|e| transport_failure(&e))?;
            read_payment_required(response).await
        };
        let answer = tokio::time::timeout(self.config.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(unconfirmed(format!(
                    "the origin did not answer within {seconds} s"
                )))
            });
        if let Err(reason) = &answer {
            tracing::debug!(url = %probe.url, %reason, "origin did not confirm");
        }
        answer
    }
}

/// `error` with its chain of causes (reqwest's own message names only the
/// kind of failure).
fn with_causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// The confirmer's HTTP client: no redirects, no proxy, the configured
/// timeouts, and (unless private addresses are allowed) a resolver that
/// refuses names resolving to non-public addresses.
fn build_client(config: &ConfirmConfig) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .user_agent(concat!(
            "paywire-bazaar/",
            env!("CARGO_PKG_VERSION"),
            " (catalog confirmation)"
        ));
    if !config.allow_private_addresses {
        builder = builder.dns_resolver(PublicOnlyResolver);
    }
    builder.build()
}

/// What a reqwest failure tells the payer: no internal detail (resolved
/// addresses, error chains) that would help map the facilitator's network.
fn transport_failure(error: &reqwest::Error) -> Unconfirmed {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<NonPublicAddress>() {
            return unconfirmed("the resource host resolves to a private or reserved address");
        }
        source = cause.source();
    }
    tracing::debug!(%error, "origin fetch failed");
    if error.is_timeout() {
        unconfirmed("the origin did not answer in time")
    } else if error.is_connect() {
        unconfirmed("the origin could not be reached")
    } else {
        unconfirmed("the request to the origin failed")
    }
}

async fn read_payment_required(
    mut response: reqwest::Response,
) -> Result<PaymentRequired, Unconfirmed> {
    let status = response.status();
    if status.is_redirection() {
        return Err(unconfirmed(format!(
            "the origin answered {} (redirects are not followed)",
            status.as_u16()
        )));
    }
    if status != reqwest::StatusCode::PAYMENT_REQUIRED {
        return Err(unconfirmed(format!(
            "the origin answered {} to an unpaid request, not 402",
            status.as_u16()
        )));
    }
    if let Some(header) = response.headers().get(codec::PAYMENT_REQUIRED_HEADER) {
        return codec::decode_payment_required(header.as_bytes())
            .map_err(|e| unconfirmed(format!("the origin's PAYMENT-REQUIRED header: {e}")));
    }
    let too_large = || {
        unconfirmed(format!(
            "the origin's 402 body exceeds {MAX_PAYMENT_REQUIRED_BODY} bytes"
        ))
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PAYMENT_REQUIRED_BODY as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_failure(&e))? {
        if body.len() + chunk.len() > MAX_PAYMENT_REQUIRED_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    codec::from_versioned_json(&body).map_err(|e| {
        unconfirmed(format!(
            "the origin's 402 carries no payment requirements: {e}"
        ))
    })
}

/// Payment addresses compare case-insensitively when they are hex (EVM
/// checksums are only a casing), exactly otherwise (base58 is case-sensitive).
fn same_address(a: &str, b: &str) -> bool {
    if a.starts_with("0x") && b.starts_with("0x") {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Whether the origin's offer is the option that was paid. The amount is
/// not compared: prices may depend on the request, and the listed price is
/// the origin's own.
fn offers_what_was_paid(offer: &PaymentRequirements, paid: &PaymentRequirements) -> bool {
    offer.scheme == paid.scheme
        && offer.network == paid.network
        && same_address(&offer.asset, &paid.asset)
        && same_address(&offer.pay_to, &paid.pay_to)
}

fn verdict(answer: &Answer, probe: &Probe, now: u64) -> Result<DiscoveredResource, Unconfirmed> {
    let origin = answer.as_ref().map_err(Clone::clone)?;
    entry_from_origin(origin, probe, now)
}

/// The catalog entry as the origin describes it, keyed by the URL that was
/// fetched.
fn entry_from_origin(
    origin: &PaymentRequired,
    probe: &Probe,
    now: u64,
) -> Result<DiscoveredResource, Unconfirmed> {
    let offer = origin
        .accepts
        .iter()
        .find(|offer| offers_what_was_paid(offer, &probe.paid))
        .ok_or_else(|| {
            unconfirmed("the origin's 402 does not offer the paid payTo, asset and network")
        })?;
    let mut resource = origin.resource.clone();
    resource.url = probe.url.to_string();
    let described = PaymentPayload {
        x402_version: origin.x402_version,
        payload: serde_json::Map::default(),
        extensions: origin.extensions.clone(),
        resource: Some(resource),
        accepted: offer.clone(),
    };
    match extract(&described, offer, now) {
        Some(Ok(entry)) => Ok(entry),
        Some(Err(e)) => Err(unconfirmed(format!("the origin's declaration: {e}"))),
        None => Err(unconfirmed(
            "the origin's 402 carries no bazaar declaration",
        )),
    }
}
