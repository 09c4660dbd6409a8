//! The bundle authority's scheme facilitator: `/verify` and `/settle` of
//! `batch-settlement` on a `<label>:credit` network, against the
//! authority's own ledger ([`crate::store`]).
//!
//! `/verify` checks the attestation (signature with a published key,
//! `iss`, `exp`, amount and asset, `aud`, `resource`) and, in the ledger,
//! that its `jti` is neither settled nor revoked. `/settle` takes the
//! settlement-time `amount` as the charge (at most the attested amount),
//! commits at most one terminal result per `jti` and answers an identical
//! repeat with the same result. Ledger failures are [`SchemeError`]s
//! (retryable), never a terminal answer.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paywire_core::{
    AtomicAmount, BoxFuture, ChainId, ErrorReason, FacilitatorConfig, FacilitatorParts,
    PaymentPayload, PaymentRequirements, PluginError, SchemeError, SchemeFacilitator,
    SettleResponse, SettlementLookup, VerifyResponse,
};
use sha2::{Digest as _, Sha256};

use crate::config::{AuthorityConfig, BankConfig, resource_origin};
use crate::jws::Verified;
use crate::money::parse_minor;
use crate::store::{self, AuthorityStore, Hold, HoldStatus, SettleCharge, SettleOutcome};
use crate::wire::{self, BundleState, Claims, ConsumePayload, SettleExtra, reason};

/// How often the sweeper releases lapsed holds.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// The authority: its checked configuration and its ledger, shared by the
/// scheme facilitator and the HTTP endpoints.
pub struct Authority {
    /// The checked configuration (keys included).
    pub config: AuthorityConfig,
    /// The ledger.
    pub store: Arc<dyn AuthorityStore>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Now, Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A refusal: the spec's code and a detail (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub reason: ErrorReason,
    /// Human-readable detail.
    pub message: String,
    /// The bundle, once the signature verified.
    pub payer: Option<String>,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason: ErrorReason::from_static(code),
        message: message.into(),
        payer: None,
    }
}

/// An attestation that passed the checks shared by `/verify` and `/settle`.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Its claims.
    pub claims: Claims,
    /// The attested amount.
    pub amount: u64,
}

/// A check outcome: a refusal is an answer, a store failure an error.
type CheckResult = Result<Result<Checked, Refusal>, SchemeError>;

fn store_error(error: &store::StoreError) -> SchemeError {
    SchemeError::Chain(error.to_string())
}

impl Authority {
    /// Verifies the attestation inside `payload`'s signature and issuer only.
    ///
    /// # Errors
    /// A refusal (`attestation_invalid`) when it is not ours or malformed.
    pub fn attestation(&self, payload: &PaymentPayload) -> Result<Verified, Refusal> {
        let consume: ConsumePayload =
            serde_json::from_value(serde_json::Value::Object(payload.payload.clone()))
                .map_err(|_| refuse(reason::ATTESTATION_INVALID, "payload is not a consume"))?;
        if consume.kind != wire::CONSUME {
            return Err(refuse(
                reason::ATTESTATION_INVALID,
                "payload type is not consume",
            ));
        }
        let verified = self
            .config
            .keys
            .verify(&consume.attestation)
            .map_err(|error| refuse(reason::ATTESTATION_INVALID, error.to_string()))?;
        if verified.claims.iss != self.config.origin {
            return Err(refuse(reason::ATTESTATION_INVALID, "foreign issuer"));
        }
        Ok(verified)
    }

    fn check_requirements(&self, requirements: &PaymentRequirements) -> Result<(), Refusal> {
        if requirements.scheme != wire::SCHEME {
            return Err(refuse("invalid_scheme", "not batch-settlement"));
        }
        if requirements.network != self.config.network {
            return Err(refuse("invalid_network", "not this authority's network"));
        }
        if requirements.extra_str("authority") != Some(self.config.origin.as_str()) {
            return Err(refuse(
                "invalid_payment_requirements",
                "extra.authority is not this authority",
            ));
        }
        if requirements.pay_to != wire::PAY_TO_MERCHANT {
            return Err(refuse(
                "invalid_payment_requirements",
                "payTo must be merchant",
            ));
        }
        if requirements.asset != self.config.currency.code() {
            return Err(refuse("unsupported_asset", "not this authority's currency"));
        }
        Ok(())
    }

    /// The checks `/verify` and `/settle` share: requirements, signature,
    /// issuer, asset, `resource` and `aud` bindings.
    ///
    /// # Errors
    /// A refusal with the spec's code.
    pub fn check_static(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Checked, Refusal> {
        self.check_requirements(requirements)?;
        let verified = self.attestation(payload)?;
        let claims = verified.claims;
        let payer = Some(claims.sub.clone());
        let with_payer = |mut refusal: Refusal| {
            refusal.payer.clone_from(&payer);
            refusal
        };
        if claims.asset != requirements.asset {
            return Err(with_payer(refuse(
                reason::ATTESTATION_INVALID,
                "asset differs",
            )));
        }
        let amount = parse_minor(&claims.amount)
            .map_err(|_| with_payer(refuse(reason::ATTESTATION_INVALID, "bad amount claim")))?;
        if claims.hold_exp <= claims.exp {
            return Err(with_payer(refuse(
                reason::ATTESTATION_INVALID,
                "holdExp before exp",
            )));
        }
        let expected = expected_resource(payload).map_err(&with_payer)?;
        if claims.resource != expected {
            return Err(with_payer(refuse(
                reason::ATTESTATION_INVALID,
                "attested for another resource",
            )));
        }
        if let Some(url) = payload
            .resource
            .as_ref()
            .map(|resource| resource.url.as_str())
        {
            let origin = resource_origin(url)
                .map_err(|detail| with_payer(refuse(reason::ATTESTATION_INVALID, detail)))?;
            if claims.aud != origin {
                return Err(with_payer(refuse(
                    reason::ATTESTATION_INVALID,
                    "attested for another audience",
                )));
            }
        }
        Ok(Checked { claims, amount })
    }

    async fn check_verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        now: u64,
    ) -> CheckResult {
        let checked = match self.check_static(payload, requirements) {
            Ok(checked) => checked,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let payer = Some(checked.claims.sub.clone());
        let fail = |code: &'static str, message: &str| {
            Ok(Err(Refusal {
                reason: ErrorReason::from_static(code),
                message: message.to_owned(),
                payer: payer.clone(),
            }))
        };
        let price = requirements.amount.to_u128().unwrap_or(u128::MAX);
        if u128::from(checked.amount) < price {
            return fail(
                reason::PRICE_NOT_ACCEPTABLE,
                "attested amount below the price",
            );
        }
        if now >= checked.claims.exp {
            return fail(reason::ATTESTATION_EXPIRED, "presentation window passed");
        }
        let hold = self
            .store
            .hold(&checked.claims.jti)
            .await
            .map_err(|error| store_error(&error))?;
        let Some(hold) = hold else {
            return fail(reason::ATTESTATION_INVALID, "unknown attestation");
        };
        if hold_mismatch(&hold, &checked) {
            return fail(
                reason::ATTESTATION_INVALID,
                "attestation does not match its hold",
            );
        }
        match hold.status {
            HoldStatus::Open if now < hold.hold_exp => Ok(Ok(checked)),
            HoldStatus::Open | HoldStatus::Expired => fail(reason::HOLD_EXPIRED, "the hold lapsed"),
            HoldStatus::Settled => fail(reason::ALREADY_SETTLED, "already settled"),
            HoldStatus::Revoked => fail(reason::REVOKED, "revoked by the principal"),
        }
    }

    /// The answer to a committed settlement of `hold`.
    ///
    /// # Errors
    /// A store failure.
    pub async fn settled_response(&self, hold: &Hold) -> Result<SettleResponse, SchemeError> {
        let charged = hold.charged.unwrap_or(0);
        let bundle = self
            .store
            .bundle(&hold.bundle_id)
            .await
            .map_err(|error| store_error(&error))?;
        let extra = SettleExtra {
            commitment_id: hold.jti.clone(),
            charged_amount: charged.to_string(),
            bundle_state: BundleState {
                bundle_id: hold.bundle_id.clone(),
                balance: hold.balance_after.unwrap_or(0).to_string(),
                asset: hold.currency.code().to_owned(),
                expires_at: bundle.and_then(|bundle| bundle.expires_at),
            },
        };
        let mut response = SettleResponse::settled(
            self.config.network.clone(),
            "",
            Some(hold.bundle_id.clone()),
        );
        response.amount = Some(AtomicAmount::from(charged));
        let serde_json::Value::Object(extra) =
            serde_json::to_value(&extra).map_err(|error| SchemeError::Chain(error.to_string()))?
        else {
            return Err(SchemeError::Chain(
                "the settle extra is not an object".into(),
            ));
        };
        response.extra = Some(extra);
        Ok(response)
    }

    fn failed(&self, refusal: Refusal) -> SettleResponse {
        let mut response = SettleResponse::failed(
            self.config.network.clone(),
            refusal.reason,
            refusal.payer,
            "",
        );
        response.error_message = Some(refusal.message);
        response
    }

    async fn settle_checked(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        now: u64,
    ) -> Result<SettleResponse, SchemeError> {
        let checked = match self.check_static(payload, requirements) {
            Ok(checked) => checked,
            Err(refusal) => return Ok(self.failed(refusal)),
        };
        let payer = Some(checked.claims.sub.clone());
        let refusal = |code: &'static str, message: &str| Refusal {
            reason: ErrorReason::from_static(code),
            message: message.to_owned(),
            payer: payer.clone(),
        };
        let charge = requirements
            .amount
            .to_u128()
            .and_then(|charge| u64::try_from(charge).ok())
            .filter(|charge| *charge <= checked.amount);
        let Some(charge) = charge else {
            return Ok(self.failed(refusal(
                reason::CHARGE_EXCEEDS_ATTESTATION,
                "the charge is above the attested amount",
            )));
        };
        // Checked before the charge is committed, so that a mismatch never
        // leaves a settled hold answered as a failure.
        if self.mismatched_hold(&checked).await? {
            return Ok(self.failed(refusal(reason::ATTESTATION_INVALID, "hold mismatch")));
        }
        let outcome = self
            .store
            .settle(SettleCharge {
                jti: checked.claims.jti.clone(),
                charge,
                params_digest: settle_digest(&checked.claims.jti, requirements),
                now,
            })
            .await
            .map_err(|error| store_error(&error))?;
        let (code, message) = match outcome {
            SettleOutcome::Settled(hold) | SettleOutcome::Repeated(hold) => {
                if hold_mismatch(&hold, &checked) {
                    return Ok(self.failed(refusal(reason::ATTESTATION_INVALID, "hold mismatch")));
                }
                tracing::info!(jti = %hold.jti, charged = charge, "credit settled");
                return self.settled_response(&hold).await;
            }
            SettleOutcome::Conflict => (reason::SETTLE_CONFLICT, "settled with other parameters"),
            SettleOutcome::HoldExpired => (reason::HOLD_EXPIRED, "the hold lapsed"),
            SettleOutcome::Revoked => (reason::REVOKED, "revoked by the principal"),
            SettleOutcome::OverHold => (
                reason::CHARGE_EXCEEDS_ATTESTATION,
                "the charge is above the hold",
            ),
            SettleOutcome::Unknown => (reason::ATTESTATION_INVALID, "unknown attestation"),
        };
        Ok(self.failed(refusal(code, message)))
    }

    /// Whether the ledger holds `checked`'s `jti` for another bundle,
    /// amount, audience or asset than the attestation says.
    async fn mismatched_hold(&self, checked: &Checked) -> Result<bool, SchemeError> {
        let recorded = self
            .store
            .hold(&checked.claims.jti)
            .await
            .map_err(|error| store_error(&error))?;
        Ok(recorded.is_some_and(|hold| hold_mismatch(&hold, checked)))
    }

    /// The registered server allowed to settle for `audience` with API key
    /// id `caller`, if any.
    pub fn admits(&self, caller: Option<&str>, audience: &str) -> bool {
        caller.is_some_and(|caller| {
            self.config
                .raw
                .servers
                .iter()
                .any(|server| server.origin == audience && server.api_key == caller)
        })
    }
}

fn hold_mismatch(hold: &Hold, checked: &Checked) -> bool {
    hold.bundle_id != checked.claims.sub
        || hold.amount != checked.amount
        || hold.audience != checked.claims.aud
        || hold.currency.code() != checked.claims.asset
}

/// The `resource` claim a payload must carry: its resource URL when it
/// names one, else `sha256:<hex>` of the JCS of its accepted requirements.
///
/// # Errors
/// `attestation_invalid` when the accepted requirements cannot be encoded.
pub fn expected_resource(payload: &PaymentPayload) -> Result<String, Refusal> {
    if let Some(resource) = &payload.resource {
        return Ok(resource.url.clone());
    }
    let value = serde_json::to_value(&payload.accepted)
        .map_err(|_| refuse(reason::ATTESTATION_INVALID, "unreadable requirements"))?;
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(jcs(&value)))
    ))
}

/// RFC 8785 canonical JSON for the values requirements hold (objects with
/// sorted keys, strings, integers, booleans, null).
pub fn jcs(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            let members: Vec<String> = keys
                .into_iter()
                .map(|key| format!("{}:{}", Value::String(key.clone()), jcs(&map[key])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(jcs).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// The digest binding a settlement's parameters: the `jti` and the JCS of
/// the settlement-time requirements (the charge included).
pub fn settle_digest(jti: &str, requirements: &PaymentRequirements) -> [u8; 32] {
    let requirements = serde_json::to_value(requirements).unwrap_or(serde_json::Value::Null);
    let mut hasher = Sha256::new();
    hasher.update(jti.as_bytes());
    hasher.update([0]);
    hasher.update(jcs(&requirements).as_bytes());
    hasher.finalize().into()
}

/// The `credit` scheme facilitator of one authority.
#[derive(Debug, Clone)]
pub struct CreditFacilitator {
    authority: Arc<Authority>,
}

impl CreditFacilitator {
    /// The facilitator of `authority`.
    pub fn new(authority: Arc<Authority>) -> Self {
        Self { authority }
    }
}

impl SchemeFacilitator for CreditFacilitator {
    fn scheme(&self) -> &str {
        wire::SCHEME
    }

    fn networks(&self) -> Vec<ChainId> {
        vec![self.authority.config.network.clone()]
    }

    fn kind_extra(&self, _network: &ChainId) -> Option<paywire_core::JsonObject> {
        let mut extra = serde_json::Map::new();
        extra.insert(
            "authority".to_owned(),
            self.authority.config.origin.clone().into(),
        );
        extra.insert(
            "asset".to_owned(),
            self.authority.config.currency.code().into(),
        );
        Some(extra)
    }

    fn signers(&self, _network: &ChainId) -> Vec<String> {
        Vec::new()
    }

    fn verify<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<VerifyResponse, SchemeError>> {
        Box::pin(async move {
            let checked = self
                .authority
                .check_verify(payload, requirements, unix_now())
                .await?;
            Ok(match checked {
                Ok(checked) => VerifyResponse::valid(checked.claims.sub),
                Err(refusal) => {
                    tracing::info!(reason = %refusal.reason, "credit attestation refused");
                    VerifyResponse::invalid(refusal.reason, refusal.payer)
                        .with_message(refusal.message)
                }
            })
        })
    }

    fn settle<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        Box::pin(
            self.authority
                .settle_checked(payload, requirements, unix_now()),
        )
    }

    fn spend_key(
        &self,
        payload: &PaymentPayload,
        _requirements: &PaymentRequirements,
    ) -> Option<String> {
        let verified = self.authority.attestation(payload).ok()?;
        Some(format!(
            "credit:{}:{}",
            verified.claims.iss, verified.claims.jti
        ))
    }

    fn replay_reason(&self) -> ErrorReason {
        ErrorReason::from_static(reason::SETTLE_CONFLICT)
    }

    fn admit_caller(
        &self,
        caller: Option<&str>,
        payload: &PaymentPayload,
        _requirements: &PaymentRequirements,
    ) -> Result<(), ErrorReason> {
        let verified = self
            .authority
            .attestation(payload)
            .map_err(|refusal| refusal.reason)?;
        if self.authority.admits(caller, &verified.claims.aud) {
            Ok(())
        } else {
            tracing::warn!(aud = %verified.claims.aud, "verify or settle by a caller not registered for the audience");
            Err(ErrorReason::from_static(reason::UNAUTHORIZED_SERVER))
        }
    }

    fn idempotent_settle(&self) -> bool {
        true
    }

    fn authenticated_payer(
        &self,
        payload: &PaymentPayload,
        _requirements: &PaymentRequirements,
    ) -> Option<String> {
        self.authority
            .attestation(payload)
            .ok()
            .map(|verified| verified.claims.sub)
    }

    fn lookup_settlement<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        _requirements: &'a PaymentRequirements,
        _known_transaction: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SettlementLookup>, SchemeError>> {
        Box::pin(async move {
            let Ok(verified) = self.authority.attestation(payload) else {
                return Ok(None);
            };
            let hold = self
                .authority
                .store
                .hold(&verified.claims.jti)
                .await
                .map_err(|error| store_error(&error))?;
            let Some(hold) = hold else { return Ok(None) };
            let payer = Some(hold.bundle_id.clone());
            let failed = |code: &'static str, message: &str| {
                self.authority.failed(Refusal {
                    reason: ErrorReason::from_static(code),
                    message: message.to_owned(),
                    payer: payer.clone(),
                })
            };
            Ok(Some(match hold.status {
                HoldStatus::Settled => {
                    SettlementLookup::Settled(self.authority.settled_response(&hold).await?)
                }
                HoldStatus::Open if unix_now() < hold.hold_exp => SettlementLookup::Open,
                HoldStatus::Open | HoldStatus::Expired => {
                    SettlementLookup::Unsettleable(failed(reason::HOLD_EXPIRED, "the hold lapsed"))
                }
                HoldStatus::Revoked => {
                    SettlementLookup::Unsettleable(failed(reason::REVOKED, "revoked"))
                }
            }))
        })
    }
}

/// The facilitator parts for the configured credit networks: one
/// authority per `[[chains]]` entry, its ledger opened, its endpoints
/// built and its sweeper started.
///
/// # Errors
/// [`PluginError::Config`] for an invalid entry, a `/settle` without API
/// keys, a registered server naming an unknown API key id, or a ledger
/// that cannot be opened.
pub async fn facilitator_parts(
    config: &FacilitatorConfig,
) -> Result<FacilitatorParts, PluginError> {
    let mut parts = FacilitatorParts::default();
    if let Some(second) = config.entries.get(1) {
        return Err(PluginError::config(
            &second.at,
            "one credit network per facilitator (its origin is the authority, its /authorize the only one)",
        ));
    }
    for entry in &config.entries {
        let checked = BankConfig::from_entry(entry)?;
        check_admission(config, &entry.at, &checked)?;
        let location = checked
            .raw
            .store
            .clone()
            .or_else(|| {
                config
                    .ledger
                    .as_ref()
                    .map(|ledger| ledger.expose().to_owned())
            })
            .unwrap_or_else(|| ":memory:".to_owned());
        let store = store::open(&location).await.map_err(|error| {
            PluginError::config(format!("{}.store", entry.at), error.to_string())
        })?;
        let authority = Arc::new(Authority {
            config: checked,
            store,
        });
        spawn_sweeper(Arc::downgrade(&authority.store));
        parts
            .endpoints
            .extend(crate::endpoints::endpoints(&authority));
        if let Some(funding) = &authority.config.raw.funding {
            parts.endpoints.extend(crate::funding::purchase_endpoints(
                crate::funding::FundingContext {
                    store: Arc::clone(&authority.store),
                    config: Arc::new(funding.clone()),
                    authority: authority.config.origin.clone(),
                    network: authority.config.network.clone(),
                },
            ));
        }
        parts
            .schemes
            .push(Arc::new(CreditFacilitator::new(authority)));
    }
    Ok(parts)
}

fn check_admission(
    config: &FacilitatorConfig,
    at: &str,
    checked: &AuthorityConfig,
) -> Result<(), PluginError> {
    if !config.settle_authenticated {
        return Err(PluginError::config(
            at,
            "a credit network needs API keys on /settle (registered servers settle with them)",
        ));
    }
    for (index, server) in checked.raw.servers.iter().enumerate() {
        if !config.api_key_ids.contains(&server.api_key) {
            return Err(PluginError::config(
                format!("{at}.servers[{index}].api_key"),
                format!("names no facilitator API key id ({:?})", server.api_key),
            ));
        }
    }
    Ok(())
}

/// Releases lapsed holds and matures purchases every [`SWEEP_INTERVAL`], until the ledger is dropped.
fn spawn_sweeper(store: Weak<dyn AuthorityStore>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no tokio runtime: lapsed credit holds are released at settle only");
        return;
    };
    runtime.spawn(async move {
        let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            ticker.tick().await;
            let Some(store) = store.upgrade() else { return };
            let now = unix_now();
            match store.release_expired(now).await {
                Ok(0) => {}
                Ok(released) => tracing::info!(released, "lapsed credit holds released"),
                Err(error) => tracing::warn!(%error, "releasing lapsed credit holds failed"),
            }
            if let Err(error) = crate::funding::mature(&*store, now).await {
                tracing::warn!(%error, "maturing purchases failed");
            }
        }
    });
}
