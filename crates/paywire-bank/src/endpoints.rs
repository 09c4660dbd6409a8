//! The authority's client-facing HTTP endpoints, served by the facilitator:
//! `POST /authorize`, `GET /.well-known/jwks.json`, and the principal's
//! account operations `POST /bundles/freeze` and
//! `POST /attestations/revoke`.
//!
//! Credential-authenticated calls carry `Authorization: Bearer
//! pwb1.<bundle>.<secret>` (optionally followed by `@<authority origin>`,
//! which must then be ours). The ledger keeps only
//! [`credential_digest`] of the secret. Failures are
//! [`wire::AuthorityError`] bodies with 4xx statuses; texts never quote a
//! credential.

use std::sync::Arc;

use paywire_core::{BoxFuture, EndpointPath, PluginEndpoint, PluginRequest, PluginResponse};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::authority::{Authority, unix_now};
use crate::config::resource_origin;
use crate::money::{Currency, parse_minor};
use crate::store::{AuthorizeOutcome, Bundle, BundleStatus, NewHold};
use crate::wire::{self, AuthorizeRequest, AuthorizeResponse, Claims, reason};

/// The credential prefix.
pub const CREDENTIAL_PREFIX: &str = "pwb1";
/// Where a principal freezes its bundle.
pub const FREEZE_PATH: &str = "/bundles/freeze";
/// Where a principal revokes one of its attestations.
pub const REVOKE_PATH: &str = "/attestations/revoke";
/// The longest resource URL accepted.
pub const MAX_RESOURCE_LEN: usize = 2048;

/// What the ledger stores for a credential secret: SHA-256 of its text
/// (the base64url string after the bundle id).
pub fn credential_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The endpoints of `authority`.
pub fn endpoints(authority: &Arc<Authority>) -> Vec<Arc<dyn PluginEndpoint>> {
    vec![
        Arc::new(AuthorizeEndpoint(Arc::clone(authority))),
        Arc::new(JwksEndpoint(Arc::clone(authority))),
        Arc::new(FreezeEndpoint(Arc::clone(authority))),
        Arc::new(RevokeEndpoint(Arc::clone(authority))),
    ]
}

/// A refusal answered to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    code: &'static str,
    message: String,
}

fn answer(status: u16, code: &'static str, message: impl Into<String>) -> Answer {
    Answer {
        status,
        code,
        message: message.into(),
    }
}

impl Answer {
    fn response(&self) -> PluginResponse {
        let body = wire::AuthorityError {
            error: self.code.to_owned(),
            message: self.message.clone(),
        };
        let value = serde_json::to_value(body).unwrap_or(serde_json::Value::Null);
        let response =
            PluginResponse::json(self.status, &value).with_header("cache-control", "no-store");
        if self.status == 401 {
            response.with_header("www-authenticate", "Bearer")
        } else {
            response
        }
    }
}

fn internal(error: &crate::store::StoreError) -> Answer {
    tracing::error!(%error, "bank ledger failed");
    answer(503, "internal_error", "the ledger is unavailable, retry")
}

fn ok_json(value: &serde_json::Value) -> PluginResponse {
    PluginResponse::json(200, value).with_header("cache-control", "no-store")
}

fn respond(result: Result<PluginResponse, Answer>) -> PluginResponse {
    result.unwrap_or_else(|refusal| refusal.response())
}

fn require_post(request: &PluginRequest) -> Result<(), Answer> {
    if request.method != "POST" {
        return Err(answer(405, "invalid_request", "use POST"));
    }
    let json = request.header("content-type").is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err(answer(
            415,
            "invalid_request",
            "the body must be application/json",
        ));
    }
    Ok(())
}

/// The bundle the request's credential opens.
async fn authenticate(authority: &Authority, request: &PluginRequest) -> Result<Bundle, Answer> {
    let unauthorized = || answer(401, "unauthorized", "a valid bundle credential is required");
    let token = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?
        .trim();
    let (token, origin) = match token.split_once('@') {
        Some((token, origin)) => (token, Some(origin)),
        None => (token, None),
    };
    if origin.is_some_and(|origin| origin != authority.config.origin) {
        return Err(unauthorized());
    }
    let mut parts = token.split('.');
    let (Some(CREDENTIAL_PREFIX), Some(bundle_id), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized());
    };
    if secret.is_empty() || secret.len() > 128 {
        return Err(unauthorized());
    }
    let bundle = authority
        .store
        .bundle_by_credential(credential_digest(secret))
        .await
        .map_err(|error| internal(&error))?
        .ok_or_else(unauthorized)?;
    if bundle.id != bundle_id {
        return Err(unauthorized());
    }
    Ok(bundle)
}

/// `POST /authorize`.
#[derive(Debug)]
pub struct AuthorizeEndpoint(pub Arc<Authority>);

impl PluginEndpoint for AuthorizeEndpoint {
    fn path(&self) -> EndpointPath {
        EndpointPath::Exact(wire::AUTHORIZE_PATH.to_owned())
    }

    fn handle(&self, request: PluginRequest) -> BoxFuture<'_, PluginResponse> {
        Box::pin(async move { respond(authorize(&self.0, &request).await) })
    }
}

/// A checked `/authorize` body.
struct Authorization {
    request: AuthorizeRequest,
    amount: u64,
    currency: Currency,
    audience: String,
}

fn valid_idempotency_key(key: &str) -> bool {
    (8..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn parse_authorization(authority: &Authority, body: &[u8]) -> Result<Authorization, Answer> {
    let bad = |message: &str| answer(400, "invalid_request", message);
    let request: AuthorizeRequest = serde_json::from_slice(body)
        .map_err(|_| bad("the body is not an authorization request (bundleId, amount, asset, resource, idempotencyKey)"))?;
    let amount = parse_minor(&request.amount)
        .map_err(|_| bad("amount must be a canonical integer of minor units"))?;
    if amount == 0 {
        return Err(bad("amount must be above zero"));
    }
    if amount > authority.config.raw.max_authorize_amount {
        return Err(bad("amount is above this authority's limit"));
    }
    let currency = Currency::from_code(&request.asset).map_err(|_| bad("unsupported asset"))?;
    if request.resource.len() > MAX_RESOURCE_LEN {
        return Err(bad("resource is too long"));
    }
    let audience =
        resource_origin(&request.resource).map_err(|detail| bad(&format!("resource {detail}")))?;
    if !valid_idempotency_key(&request.idempotency_key) {
        return Err(bad("idempotencyKey must be 8-128 of [A-Za-z0-9._:-]"));
    }
    Ok(Authorization {
        request,
        amount,
        currency,
        audience,
    })
}

fn params_digest(authorization: &Authorization) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for field in [
        authorization.amount.to_string().as_str(),
        authorization.currency.code(),
        authorization.request.resource.as_str(),
        authorization.audience.as_str(),
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}

fn mint_jti() -> Result<String, Answer> {
    let mut bytes = [0_u8; 12];
    getrandom::fill(&mut bytes).map_err(|_| answer(503, "internal_error", "no randomness"))?;
    Ok(format!("att_{}", hex::encode(bytes)))
}

async fn authorize(
    authority: &Authority,
    request: &PluginRequest,
) -> Result<PluginResponse, Answer> {
    require_post(request)?;
    let bundle = authenticate(authority, request).await?;
    let authorization = parse_authorization(authority, &request.body)?;
    if authorization.request.bundle_id != bundle.id {
        return Err(answer(
            404,
            reason::BUNDLE_NOT_FOUND,
            "no such bundle for this credential",
        ));
    }
    let now = unix_now();
    let settings = &authority.config.raw;
    let claims = Claims {
        iss: authority.config.origin.clone(),
        sub: bundle.id.clone(),
        aud: authorization.audience.clone(),
        exp: now + settings.presentation_ttl_seconds,
        hold_exp: now + settings.hold_seconds,
        iat: now,
        jti: mint_jti()?,
        amount: authorization.amount.to_string(),
        asset: authorization.currency.code().to_owned(),
        resource: authorization.request.resource.clone(),
    };
    let attestation = authority
        .config
        .keys
        .sign(&claims)
        .map_err(|_| answer(503, "internal_error", "signing failed"))?;
    let outcome = authority
        .store
        .authorize(NewHold {
            bundle_id: bundle.id.clone(),
            idempotency_key: authorization.request.idempotency_key.clone(),
            params_digest: params_digest(&authorization),
            jti: claims.jti.clone(),
            amount: authorization.amount,
            currency: authorization.currency,
            audience: claims.aud.clone(),
            attestation: attestation.clone(),
            hold_exp: claims.hold_exp,
            now,
        })
        .await
        .map_err(|error| internal(&error))?;
    let attestation = match outcome {
        AuthorizeOutcome::Created => {
            tracing::info!(bundle = %bundle.id, jti = %claims.jti, amount = authorization.amount, "credit authorized");
            attestation
        }
        AuthorizeOutcome::Replayed { attestation } => attestation,
        AuthorizeOutcome::Conflict => {
            return Err(answer(
                409,
                reason::IDEMPOTENCY_CONFLICT,
                "the idempotency key was used with other parameters",
            ));
        }
        AuthorizeOutcome::Insufficient { .. } => {
            return Err(answer(
                402,
                reason::INSUFFICIENT_CREDITS,
                "the bundle cannot cover the amount",
            ));
        }
        AuthorizeOutcome::NotFound => {
            return Err(answer(404, reason::BUNDLE_NOT_FOUND, "no such bundle"));
        }
        AuthorizeOutcome::Frozen => {
            return Err(answer(403, reason::BUNDLE_REVOKED, "the bundle is frozen"));
        }
        AuthorizeOutcome::CurrencyMismatch => {
            return Err(answer(
                400,
                "invalid_request",
                "the asset is not the bundle's currency",
            ));
        }
    };
    let body = serde_json::to_value(AuthorizeResponse { attestation })
        .map_err(|_| answer(503, "internal_error", "encoding failed"))?;
    Ok(ok_json(&body))
}

/// `GET /.well-known/jwks.json`.
#[derive(Debug)]
pub struct JwksEndpoint(pub Arc<Authority>);

impl PluginEndpoint for JwksEndpoint {
    fn path(&self) -> EndpointPath {
        EndpointPath::Exact(wire::JWKS_PATH.to_owned())
    }

    fn handle(&self, request: PluginRequest) -> BoxFuture<'_, PluginResponse> {
        Box::pin(async move {
            if request.method != "GET" && request.method != "HEAD" {
                return answer(405, "invalid_request", "use GET").response();
            }
            PluginResponse::new(
                200,
                "application/jwk-set+json",
                self.0.config.keys.jwks().to_string(),
            )
            .with_header("cache-control", "public, max-age=300")
        })
    }
}

/// `POST /bundles/freeze`: the principal freezes its own bundle (body
/// `{}` or `{"reason": "..."}`).
#[derive(Debug)]
pub struct FreezeEndpoint(pub Arc<Authority>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeRequest {
    #[serde(default)]
    reason: Option<String>,
}

impl PluginEndpoint for FreezeEndpoint {
    fn path(&self) -> EndpointPath {
        EndpointPath::Exact(FREEZE_PATH.to_owned())
    }

    fn handle(&self, request: PluginRequest) -> BoxFuture<'_, PluginResponse> {
        Box::pin(async move { respond(freeze(&self.0, &request).await) })
    }
}

async fn freeze(authority: &Authority, request: &PluginRequest) -> Result<PluginResponse, Answer> {
    require_post(request)?;
    let bundle = authenticate(authority, request).await?;
    let body: FreezeRequest = serde_json::from_slice(&request.body).map_err(|_| {
        answer(
            400,
            "invalid_request",
            "the body is `{}` or `{\"reason\": \"...\"}`",
        )
    })?;
    let reason_text = match body.reason.as_deref() {
        None => "principal".to_owned(),
        Some(text)
            if text.len() <= 64 && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            format!("principal: {text}")
        }
        Some(_) => {
            return Err(answer(
                400,
                "invalid_request",
                "reason: at most 64 printable ASCII characters",
            ));
        }
    };
    if bundle.status == BundleStatus::Active {
        let frozen = authority
            .store
            .freeze(&bundle.id, &reason_text, unix_now())
            .await
            .map_err(|error| internal(&error))?;
        if !frozen {
            return Err(answer(404, reason::BUNDLE_NOT_FOUND, "no such bundle"));
        }
        tracing::info!(bundle = %bundle.id, "bundle frozen by its principal");
    }
    Ok(ok_json(
        &serde_json::json!({ "bundleId": bundle.id, "status": "frozen" }),
    ))
}

/// `POST /attestations/revoke` (body `{"jti": "att_..."}`): the principal
/// revokes an open attestation of its own bundle.
#[derive(Debug)]
pub struct RevokeEndpoint(pub Arc<Authority>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    jti: String,
}

impl PluginEndpoint for RevokeEndpoint {
    fn path(&self) -> EndpointPath {
        EndpointPath::Exact(REVOKE_PATH.to_owned())
    }

    fn handle(&self, request: PluginRequest) -> BoxFuture<'_, PluginResponse> {
        Box::pin(async move { respond(revoke(&self.0, &request).await) })
    }
}

async fn revoke(authority: &Authority, request: &PluginRequest) -> Result<PluginResponse, Answer> {
    require_post(request)?;
    let bundle = authenticate(authority, request).await?;
    let body: RevokeRequest = serde_json::from_slice(&request.body).map_err(|_| {
        answer(
            400,
            "invalid_request",
            "the body is `{\"jti\": \"att_...\"}`",
        )
    })?;
    let not_found = || {
        answer(
            404,
            "attestation_not_found",
            "no such attestation of this bundle",
        )
    };
    if body.jti.len() > 64 {
        return Err(not_found());
    }
    let hold = authority
        .store
        .hold(&body.jti)
        .await
        .map_err(|error| internal(&error))?
        .filter(|hold| hold.bundle_id == bundle.id)
        .ok_or_else(not_found)?;
    let revoked = authority
        .store
        .revoke(&hold.jti, unix_now())
        .await
        .map_err(|error| internal(&error))?;
    if !revoked {
        return Err(answer(
            409,
            "not_revocable",
            "the attestation is no longer open (settled, lapsed or revoked)",
        ));
    }
    tracing::info!(bundle = %bundle.id, jti = %hold.jti, "attestation revoked by its principal");
    Ok(ok_json(
        &serde_json::json!({ "jti": hold.jti, "status": "revoked" }),
    ))
}
