//! The paying side of the `credit` binding: a bundle credential that asks
//! its authority's `/authorize` for an attestation per payment.
//!
//! Security rules this side keeps:
//! - the credential goes only to its own authority origin: an offer whose
//!   `extra.authority` is another origin is refused before anything is
//!   sent, and `purchaseUrl` is never followed (a 402 cannot phish the
//!   credential);
//! - `/authorize` is never redirected (a redirect could carry the
//!   credential elsewhere);
//! - one idempotency key per logical payment, reused on every retry of
//!   that payment (a timeout never decrements the bundle twice); transport
//!   failures, timeouts and 5xx answers are retried a bounded number of
//!   times with backoff, 4xx answers never;
//! - the credential secret never appears in `Debug`, `Display`, logs or
//!   error texts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use paywire_core::{
    AssetCatalog, AssetInfo, BoxFuture, ChainId, ChainIdPattern, CreatedPayment, Extensions,
    JsonObject, PaymentRequirements, PluginError, Registration, ResourceInfo, SchemeClient,
    SchemeError, Secret, WalletConfig, WalletParts,
};

use crate::money::{Currency, MAX_MINOR};
use crate::server::{asset_info, origin_of};
use crate::wire::{
    AUTHORIZE_PATH, AuthorityError, AuthorizeRequest, AuthorizeResponse, CONSUME, CREDIT_REFERENCE,
    Claims, ConsumePayload, CreditExtra, PAY_TO_MERCHANT, SCHEME,
};

/// The prefix of a bundle credential.
pub const CREDENTIAL_PREFIX: &str = "pwb1";

/// Why a bundle credential was refused. Never quotes the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Not `pwb1.<bundle id>.<secret>@<authority origin>`.
    #[error("a bundle credential is pwb1.<bundle id>.<secret>@<authority origin>")]
    Format,
    /// The bundle id is empty, too long, or has characters outside
    /// `[A-Za-z0-9_-]`.
    #[error("the bundle id must be 1 to 64 characters of [A-Za-z0-9_-]")]
    BundleId,
    /// The secret is not 16 to 128 base64url characters.
    #[error("the credential secret must be 16 to 128 base64url characters")]
    Secret,
    /// A plain `http` authority that is not this machine: the credential
    /// would cross the network in clear.
    #[error("the authority must be https (plain http only on localhost)")]
    Insecure,
    /// The authority is not an `http(s)` origin.
    #[error("the authority must be an http(s) origin: {0}")]
    Authority(#[from] crate::server::OriginError),
}

/// A bundle credential, `pwb1.<bundle id>.<secret>@<authority origin>`:
/// the bearer secret that lets its holder spend the bundle at that
/// authority. `Debug` and `Display` mask the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleCredential {
    bundle_id: String,
    secret: Secret,
    authority: String,
}

impl BundleCredential {
    /// Parses and checks a credential.
    pub fn parse(text: &str) -> Result<Self, CredentialError> {
        let text = text.trim();
        let (token, authority) = text.rsplit_once('@').ok_or(CredentialError::Format)?;
        let mut parts = token.splitn(3, '.');
        let (Some(CREDENTIAL_PREFIX), Some(bundle_id), Some(secret)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(CredentialError::Format);
        };
        let id_ok = (1..=64).contains(&bundle_id.len())
            && bundle_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !id_ok {
            return Err(CredentialError::BundleId);
        }
        let secret_ok = (16..=128).contains(&secret.len())
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !secret_ok {
            return Err(CredentialError::Secret);
        }
        let authority = origin_of(authority, true)?;
        if let Some(host) = authority.strip_prefix("http://") {
            let host = host.rsplit_once(':').map_or(host, |(host, _)| host);
            if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
                return Err(CredentialError::Insecure);
            }
        }
        Ok(Self {
            bundle_id: bundle_id.to_owned(),
            secret: Secret::new(secret),
            authority,
        })
    }

    /// A credential from its parts (the authority is normalized).
    pub fn new(bundle_id: &str, secret: &str, authority: &str) -> Result<Self, CredentialError> {
        Self::parse(&format!(
            "{CREDENTIAL_PREFIX}.{bundle_id}.{secret}@{authority}"
        ))
    }

    /// The bundle id (the payer shown in receipts).
    pub fn bundle_id(&self) -> &str {
        &self.bundle_id
    }

    /// The authority origin the credential belongs to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The bearer secret: never log or echo it.
    pub fn secret(&self) -> &str {
        self.secret.expose()
    }

    /// The whole credential text: never log or echo it.
    pub fn expose(&self) -> String {
        format!(
            "{CREDENTIAL_PREFIX}.{}.{}@{}",
            self.bundle_id,
            self.secret.expose(),
            self.authority
        )
    }
}

impl fmt::Display for BundleCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CREDENTIAL_PREFIX}.{}.***@{}",
            self.bundle_id, self.authority
        )
    }
}

impl fmt::Debug for BundleCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleCredential({self})")
    }
}

/// How `/authorize` is retried: `attempts` tries in all, waiting `backoff`,
/// then twice as long, and so on, between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (at least 1).
    pub attempts: u32,
    /// The first wait.
    pub backoff: Duration,
    /// Timeout of one call.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The `batch-settlement` scheme client of one bundle credential.
pub struct CreditClient {
    credential: BundleCredential,
    http: reqwest::Client,
    retry: RetryPolicy,
}

impl fmt::Debug for CreditClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreditClient")
            .field("credential", &self.credential)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One failed `/authorize` attempt.
enum Attempt {
    /// Worth another try with the same idempotency key.
    Retry(String),
    /// Final.
    Fail(SchemeError),
}

impl CreditClient {
    /// A client for `credential` with the default retry policy.
    pub fn new(credential: BundleCredential) -> Result<Self, SchemeError> {
        Self::with_retry(credential, RetryPolicy::default())
    }

    /// A client for `credential` retrying as `retry` says.
    pub fn with_retry(
        credential: BundleCredential,
        retry: RetryPolicy,
    ) -> Result<Self, SchemeError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(retry.timeout)
            .build()
            .map_err(|_| SchemeError::Chain("the HTTP client could not be built".into()))?;
        Ok(Self {
            credential,
            http,
            retry: RetryPolicy {
                attempts: retry.attempts.max(1),
                ..retry
            },
        })
    }

    /// Its credential.
    pub fn credential(&self) -> &BundleCredential {
        &self.credential
    }

    /// Checks that `requirements` is a credit offer this credential may
    /// pay: its authority is the credential's, its asset a currency, its
    /// `payTo` the merchant. Returns the amount in minor units.
    pub fn check_offer(&self, requirements: &PaymentRequirements) -> Result<u64, SchemeError> {
        let invalid = |why: &str| SchemeError::InvalidRequirements(why.to_owned());
        if requirements.scheme != SCHEME || requirements.network.reference() != CREDIT_REFERENCE {
            return Err(SchemeError::Unsupported(format!(
                "{} on {}",
                requirements.scheme, requirements.network
            )));
        }
        let extra: CreditExtra = requirements
            .extra
            .clone()
            .map(serde_json::Value::Object)
            .and_then(|extra| serde_json::from_value(extra).ok())
            .ok_or_else(|| invalid("the credit offer has no valid extra.authority"))?;
        let authority = origin_of(&extra.authority, true)
            .map_err(|_| invalid("extra.authority is not an http(s) origin"))?;
        if authority != self.credential.authority {
            // Never send the credential to another origin.
            return Err(SchemeError::Unsupported(format!(
                "the offer's authority {authority} is not this bundle's ({})",
                self.credential.authority
            )));
        }
        Currency::from_code(&requirements.asset).map_err(|e| invalid(&e.to_string()))?;
        if requirements.pay_to != PAY_TO_MERCHANT {
            return Err(invalid(
                "a credit offer pays the merchant (payTo \"merchant\")",
            ));
        }
        requirements
            .amount
            .to_u128()
            .and_then(|a| u64::try_from(a).ok())
            .filter(|a| *a > 0 && *a <= MAX_MINOR)
            .ok_or_else(|| invalid("the amount must be above zero and at most 10^15 minor units"))
    }

    /// Asks the authority for an attestation of `amount` for `resource`,
    /// retrying transient failures with one idempotency key.
    pub async fn authorize(
        &self,
        requirements: &PaymentRequirements,
        resource: &str,
    ) -> Result<String, SchemeError> {
        let amount = self.check_offer(requirements)?;
        origin_of(resource, false).map_err(|_| {
            SchemeError::InvalidRequirements("the resource is not an http(s) URL".into())
        })?;
        let request = AuthorizeRequest {
            bundle_id: self.credential.bundle_id.clone(),
            amount: amount.to_string(),
            asset: requirements.asset.clone(),
            resource: resource.to_owned(),
            idempotency_key: idempotency_key()?,
        };
        let url = format!("{}{AUTHORIZE_PATH}", self.credential.authority);
        let mut wait = self.retry.backoff;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts {
            match self.authorize_once(&url, &request).await {
                Ok(attestation) => {
                    self.check_attestation(&attestation, &request)?;
                    return Ok(attestation);
                }
                Err(Attempt::Fail(error)) => return Err(error),
                Err(Attempt::Retry(why)) => {
                    tracing::warn!(attempt, bundle = %self.credential.bundle_id, %why,
                        "authorize failed; retrying with the same idempotency key");
                    last = why;
                }
            }
            if attempt < self.retry.attempts {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
        }
        Err(SchemeError::Chain(format!(
            "the authority {} did not authorize: {last}",
            self.credential.authority
        )))
    }

    async fn authorize_once(
        &self,
        url: &str,
        request: &AuthorizeRequest,
    ) -> Result<String, Attempt> {
        let sent = self
            .http
            .post(url)
            .bearer_auth(self.credential.expose())
            .json(request)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_timeout() => return Err(Attempt::Retry("timed out".into())),
            Err(_) => return Err(Attempt::Retry("connection failed".into())),
        };
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|_| Attempt::Retry("the answer was cut".into()))?;
        if status.is_server_error() {
            return Err(Attempt::Retry(format!("HTTP {}", status.as_u16())));
        }
        if status.is_success() {
            return serde_json::from_slice::<AuthorizeResponse>(&body)
                .map(|r| r.attestation)
                .map_err(|_| {
                    Attempt::Fail(SchemeError::Signing(
                        "the authority's answer has no attestation".into(),
                    ))
                });
        }
        Err(Attempt::Fail(refusal(status.as_u16(), &body)))
    }

    /// The attestation must be what was asked: our bundle, amount, asset
    /// and resource, issued by our authority (a mismatch is never sent).
    fn check_attestation(
        &self,
        attestation: &str,
        request: &AuthorizeRequest,
    ) -> Result<(), SchemeError> {
        let bad = |why: &str| SchemeError::Signing(format!("the authority's attestation {why}"));
        let mut parts = attestation.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("is not a compact JWS"));
        };
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| bad("has unreadable claims"))?;
        let matches = claims.iss == self.credential.authority
            && claims.sub == request.bundle_id
            && claims.amount == request.amount
            && claims.asset == request.asset
            && claims.resource == request.resource;
        if matches {
            Ok(())
        } else {
            Err(bad("does not match the authorization asked for"))
        }
    }
}

/// A fresh idempotency key (128 random bits, hex).
fn idempotency_key() -> Result<String, SchemeError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|_| SchemeError::Signing("no randomness for an idempotency key".into()))?;
    Ok(hex::encode(bytes))
}

/// The error for a 4xx answer of `/authorize`.
fn refusal(status: u16, body: &[u8]) -> SchemeError {
    use crate::wire::reason;
    let Ok(error) = serde_json::from_slice::<AuthorityError>(body) else {
        return SchemeError::Signing(format!(
            "the authority refused the authorization (HTTP {status})"
        ));
    };
    let what = match error.error.as_str() {
        reason::INSUFFICIENT_CREDITS => {
            "the bundle has insufficient credits (buy more at the authority)"
        }
        reason::BUNDLE_NOT_FOUND => "the authority does not know this bundle or credential",
        reason::BUNDLE_REVOKED => "the bundle is frozen",
        reason::IDEMPOTENCY_CONFLICT => "the idempotency key was used for another authorization",
        "unauthorized" => "the authority refused the credential",
        "rate_limited" => "the authority is rate limiting this bundle",
        _ => "the authority refused the authorization",
    };
    let code: String = error
        .error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(48)
        .collect();
    SchemeError::Signing(format!("{what} ({code}, HTTP {status})"))
}

impl SchemeClient for CreditClient {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn payer(&self, network: &ChainId) -> Option<String> {
        (network.reference() == CREDIT_REFERENCE).then(|| self.credential.bundle_id.clone())
    }

    /// Without the resource URL there is nothing to authorize: the paying
    /// client calls [`SchemeClient::create_payment_for`].
    fn create_payload<'a>(
        &'a self,
        _requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        Box::pin(async {
            Err(SchemeError::InvalidRequirements(
                "a credit attestation is bound to the resource URL; use create_payment_for".into(),
            ))
        })
    }

    fn create_payment_for<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        _offered: Option<&'a Extensions>,
        resource: &'a ResourceInfo,
    ) -> BoxFuture<'a, Result<CreatedPayment, SchemeError>> {
        Box::pin(async move {
            let attestation = self.authorize(requirements, &resource.url).await?;
            let payload = ConsumePayload {
                kind: CONSUME.to_owned(),
                attestation,
            };
            match serde_json::to_value(payload) {
                Ok(serde_json::Value::Object(map)) => Ok(CreatedPayment::new(map)),
                _ => Err(SchemeError::Signing(
                    "the payload does not serialize".into(),
                )),
            }
        })
    }
}

/// Credit assets: `USD` is US dollars (a dollar budget applies), `EUR` is
/// not; both have 2 decimals. Any `<label>:credit` network.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreditCatalog;

impl AssetCatalog for CreditCatalog {
    fn asset_info(&self, network: &ChainId, asset: &str) -> Option<AssetInfo> {
        if network.reference() != CREDIT_REFERENCE {
            return None;
        }
        Currency::from_code(asset).ok().map(asset_info)
    }
}

/// A wallet holding a bundle credential (`WalletConfig::key`): a
/// `batch-settlement` client on every `*:credit` network (the offers it
/// pays are those of its own authority), the bundle id as its address, no
/// spend probe.
///
/// Budgets count a credit payment at its authorized maximum (the offer's
/// `amount`), also once settled: the receipt's `chargedAmount` comes from
/// the resource server, and nothing the client can check (no chain, no
/// authority balance query) proves it, so counting it could under-count.
pub fn wallet_parts(config: &WalletConfig) -> Result<WalletParts, PluginError> {
    let credential = BundleCredential::parse(config.key.expose())
        .map_err(|e| PluginError::config("key", e.to_string()))?;
    let address = credential.bundle_id().to_owned();
    let client =
        CreditClient::new(credential).map_err(|e| PluginError::config("key", e.to_string()))?;
    let pattern = ChainIdPattern::reference(CREDIT_REFERENCE)
        .map_err(|e| PluginError::config("key", e.to_string()))?;
    let client: Arc<dyn SchemeClient> = Arc::new(client);
    let mut parts = WalletParts::default();
    parts.schemes.push(Registration::new(pattern, client));
    parts.addresses.push(address);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";

    #[test]
    fn credentials_parse_and_never_print_their_secret() {
        let text = format!("pwb1.bdl_7f3a91.{SECRET}@HTTPS://Credits.Acme.example/");
        let credential = BundleCredential::parse(&text).unwrap();
        assert_eq!(credential.bundle_id(), "bdl_7f3a91");
        assert_eq!(credential.authority(), "https://credits.acme.example");
        assert_eq!(credential.secret(), SECRET);
        let local = format!("pwb1.b.{SECRET}@http://127.0.0.1:8080");
        assert!(BundleCredential::parse(&local).is_ok());
        for shown in [format!("{credential}"), format!("{credential:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(shown.contains("bdl_7f3a91"), "{shown}");
        }
        for bad in [
            String::new(),
            format!("pwb2.b.{SECRET}@https://a.example"),
            format!("pwb1.b.{SECRET}"),
            format!("pwb1..{SECRET}@https://a.example"),
            "pwb1.b.short@https://a.example".to_owned(),
            format!("pwb1.b.{SECRET}@https://a.example/path"),
            format!("pwb1.b/x.{SECRET}@https://a.example"),
            format!("pwb1.b.{SECRET}@http://credits.example"),
        ] {
            let error = BundleCredential::parse(&bad).unwrap_err();
            assert!(!error.to_string().contains(SECRET), "{error}");
        }
    }

    #[test]
    fn the_catalog_values_dollars_not_euros() {
        let credit: ChainId = "acme:credit".parse().unwrap();
        let usd = CreditCatalog.asset_info(&credit, "USD").unwrap();
        assert!(usd.usd_stable && usd.decimals == 2);
        let eur = CreditCatalog.asset_info(&credit, "EUR").unwrap();
        assert!(!eur.usd_stable && eur.decimals == 2);
        assert!(CreditCatalog.asset_info(&credit, "GBP").is_none());
        let evm: ChainId = "eip155:1".parse().unwrap();
        assert!(CreditCatalog.asset_info(&evm, "USD").is_none());
    }
}
