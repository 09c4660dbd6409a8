//! The purchase page and API (`/purchase`) and off-session top-ups
//! (`/purchase/top-up`).
//!
//! Everything a request carries is validated before the first write: a
//! refused purchase stores nothing. Bank details are never logged and never
//! echoed beyond the account's last four characters; the bundle
//! credential is shown once, in the answer to the purchase.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use paywire_core::{BoxFuture, EndpointPath, PluginEndpoint, PluginRequest, PluginResponse};
use serde_json::{Value, json};

use super::{
    FundingConfig, FundingContext, MandateDetails, PURCHASE_PATH, Rail, TOP_UP_PATH, TierConfig,
    availability, credential_digest, iso_date, new_secret, random_hex,
};
use crate::account::{AbaRouting, AchAccount, AchAccountType, Bic, Iban};
use crate::store::{Bundle, BundleStatus, Mandate, NewBundle, NewPurchase};
use crate::wire::CREDIT_REFERENCE;

mod html;

/// The purchase page and API at exactly [`PURCHASE_PATH`]: `GET` → the
/// form, `POST` → a purchase (form-encoded or JSON). Top-ups are served by
/// the second endpoint of [`purchase_endpoints`].
pub fn purchase_endpoint(ctx: FundingContext) -> Arc<dyn PluginEndpoint> {
    Arc::new(Funding {
        shared: Arc::new(Shared::new(ctx)),
        path: PURCHASE_PATH,
    })
}

/// Both funding endpoints ([`PURCHASE_PATH`] and [`TOP_UP_PATH`]), sharing
/// one state: register both.
pub fn purchase_endpoints(ctx: FundingContext) -> Vec<Arc<dyn PluginEndpoint>> {
    let shared = Arc::new(Shared::new(ctx));
    vec![
        Arc::new(Funding {
            shared: Arc::clone(&shared),
            path: PURCHASE_PATH,
        }),
        Arc::new(Funding {
            shared,
            path: TOP_UP_PATH,
        }),
    ]
}

/// State shared by the funding endpoints.
struct Shared {
    ctx: FundingContext,
    /// Top-up prices per (bundle, UTC day) taken by this process.
    top_ups: Mutex<HashMap<(String, u64), u64>>,
    /// First purchases of the current minute: (minute, count).
    purchases: Mutex<(u64, u32)>,
}

impl Shared {
    fn new(ctx: FundingContext) -> Self {
        Self {
            ctx,
            top_ups: Mutex::new(HashMap::new()),
            purchases: Mutex::new((0, 0)),
        }
    }

    /// Counts a first purchase against the per-minute limit.
    fn admit_purchase(&self, now: u64) -> Result<(), Refusal> {
        let mut window = self
            .purchases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let minute = now / 60;
        if window.0 != minute {
            *window = (minute, 0);
        }
        if window.1 >= self.config().max_purchases_per_minute {
            tracing::warn!("purchase refused: per-minute limit reached");
            return Err(Refusal::new(
                429,
                "rate_limited",
                "too many purchases, try again in a minute",
            ));
        }
        window.1 += 1;
        Ok(())
    }

    fn config(&self) -> &FundingConfig {
        &self.ctx.config
    }
}

/// One funding endpoint.
struct Funding {
    shared: Arc<Shared>,
    path: &'static str,
}

impl PluginEndpoint for Funding {
    fn path(&self) -> EndpointPath {
        EndpointPath::Exact(self.path.to_owned())
    }

    fn handle(&self, request: PluginRequest) -> BoxFuture<'_, PluginResponse> {
        Box::pin(async move {
            let html = wants_html(&request);
            let result = match (self.path, request.method.as_str()) {
                (PURCHASE_PATH, "GET" | "HEAD") => {
                    return html::page(&self.shared.ctx, None);
                }
                (PURCHASE_PATH, "POST") => purchase(&self.shared, &request).await,
                (TOP_UP_PATH, "POST") => top_up(&self.shared, &request).await,
                _ => Err(Refusal::new(
                    405,
                    "method_not_allowed",
                    "method not allowed",
                )),
            };
            match result {
                Ok(done) if html => html::receipt(&self.shared.ctx, &done),
                Ok(done) => {
                    PluginResponse::json(201, &done.json()).with_header("cache-control", "no-store")
                }
                Err(refusal) if html && refusal.status == 400 => {
                    html::page(&self.shared.ctx, Some(&refusal.message))
                }
                Err(refusal) => refusal.response(self.path),
            }
        })
    }
}

/// Whether the caller is the HTML form (answers are pages) rather than an
/// API client (answers are JSON).
fn wants_html(request: &PluginRequest) -> bool {
    request.method != "POST" || content_type(request) == "application/x-www-form-urlencoded"
}

/// The media type of the request body, lower case, without parameters.
fn content_type(request: &PluginRequest) -> String {
    request
        .header("content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A refused request.
#[derive(Debug)]
pub(super) struct Refusal {
    status: u16,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }

    fn internal() -> Self {
        Self::new(500, "internal_error", "the purchase could not be recorded")
    }

    fn response(&self, path: &str) -> PluginResponse {
        let body = json!({ "error": self.code, "message": self.message });
        let mut response =
            PluginResponse::json(self.status, &body).with_header("cache-control", "no-store");
        if self.status == 405 {
            let allow = if path == PURCHASE_PATH {
                "GET, HEAD, POST"
            } else {
                "POST"
            };
            response = response.with_header("allow", allow);
        }
        if self.status == 401 {
            response = response.with_header("www-authenticate", "Bearer");
        }
        response
    }
}

/// A completed purchase or top-up.
#[derive(Debug)]
pub(super) struct Done {
    pub(super) bundle_id: String,
    /// The credential, on a first purchase only (shown once).
    pub(super) credential: Option<String>,
    pub(super) purchase_id: String,
    pub(super) mandate_id: String,
    pub(super) tier: TierConfig,
    pub(super) asset: &'static str,
    pub(super) spendable_now: u64,
    pub(super) spendable_at: u64,
    /// `…1234`.
    pub(super) account: String,
}

impl Done {
    fn json(&self) -> Value {
        let mut body = json!({
            "bundleId": self.bundle_id,
            "purchaseId": self.purchase_id,
            "mandateId": self.mandate_id,
            "mandateReference": super::sepa_reference(&self.mandate_id),
            "credits": self.tier.credits.to_string(),
            "price": self.tier.price.to_string(),
            "asset": self.asset,
            "spendableNow": self.spendable_now.to_string(),
            "spendableAt": self.spendable_at,
            "account": self.account,
        });
        if let (Some(credential), Some(map)) = (&self.credential, body.as_object_mut()) {
            map.insert("credential".into(), Value::String(credential.clone()));
        }
        body
    }
}

/// The request's fields, from a form or a JSON object (strings, numbers
/// and booleans; booleans of a form are present checkboxes).
fn fields(request: &PluginRequest) -> Result<HashMap<String, String>, Refusal> {
    match content_type(request).as_str() {
        "application/x-www-form-urlencoded" => {
            let mut map = HashMap::new();
            for (key, value) in form_urlencoded::parse(&request.body) {
                if map.insert(key.into_owned(), value.into_owned()).is_some() {
                    return Err(Refusal::invalid("a field is repeated"));
                }
            }
            Ok(map)
        }
        "application/json" => {
            let value: Value = serde_json::from_slice(&request.body)
                .map_err(|_| Refusal::invalid("the body is not valid JSON"))?;
            let Value::Object(object) = value else {
                return Err(Refusal::invalid("the body must be a JSON object"));
            };
            let mut map = HashMap::new();
            for (key, value) in object {
                let text = match value {
                    Value::String(text) => text,
                    Value::Bool(true) => "on".to_owned(),
                    Value::Bool(false) | Value::Null => continue,
                    Value::Number(number) => number.to_string(),
                    _ => return Err(Refusal::invalid(format!("field {key:?} must be a scalar"))),
                };
                map.insert(key, text);
            }
            Ok(map)
        }
        _ => Err(Refusal::new(
            415,
            "unsupported_media_type",
            "send application/x-www-form-urlencoded or application/json",
        )),
    }
}

/// Field names every request may carry.
const KNOWN_FIELDS: &[&str] = &[
    "tier",
    "name",
    "iban",
    "bic",
    "routing",
    "account",
    "accountType",
    "accept",
    "offSession",
];

/// A present, non-empty field (trimmed).
fn field<'a>(fields: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn checked(fields: &HashMap<String, String>, name: &str) -> bool {
    field(fields, name).is_some_and(|v| matches!(v, "on" | "true" | "yes" | "1"))
}

/// The tier chosen: `tier` is its index in the configured list.
fn tier(config: &FundingConfig, fields: &HashMap<String, String>) -> Result<TierConfig, Refusal> {
    let text = field(fields, "tier").ok_or_else(|| Refusal::invalid("choose a tier"))?;
    text.parse::<usize>()
        .ok()
        .and_then(|index| config.tiers.get(index).copied())
        .ok_or_else(|| Refusal::invalid("no such tier"))
}

/// The account holder's name: 1 to 70 characters, no control characters,
/// and (SEPA) something the SEPA character set can carry.
fn holder_name(rail: Rail, fields: &HashMap<String, String>) -> Result<String, Refusal> {
    let name = field(fields, "name")
        .ok_or_else(|| Refusal::invalid("the account holder's name is required"))?;
    if name.chars().count() > 70 || name.chars().any(char::is_control) {
        return Err(Refusal::invalid(
            "the account holder's name must be 1 to 70 printable characters",
        ));
    }
    let carried = match rail {
        Rail::Sepa => crate::files::sepa_text(name, "name", 70).is_ok(),
        Rail::Ach => name.chars().any(|c| c.is_ascii_alphanumeric()),
    };
    if !carried {
        return Err(Refusal::invalid(
            "the account holder's name has no characters the bank format can carry",
        ));
    }
    Ok(name.to_owned())
}

/// A validated first purchase.
struct Order {
    tier: TierConfig,
    details: MandateDetails,
    off_session: bool,
}

/// Validates everything a first purchase carries.
fn order(
    config: &FundingConfig,
    fields: &HashMap<String, String>,
    now: u64,
) -> Result<Order, Refusal> {
    if let Some(unknown) = fields.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(Refusal::invalid(format!(
            "unknown field {:?}",
            unknown.chars().take(32).collect::<String>()
        )));
    }
    let tier = tier(config, fields)?;
    let name = holder_name(config.rail, fields)?;
    if !checked(fields, "accept") {
        let what = match config.rail {
            Rail::Sepa => "the SEPA direct debit mandate must be accepted",
            Rail::Ach => "the ACH debit authorization must be accepted",
        };
        return Err(Refusal::invalid(what));
    }
    let signed_on = iso_date(now, "mandate date").map_err(|_| Refusal::internal())?;
    let details = match config.rail {
        Rail::Sepa => {
            let iban = Iban::parse(field(fields, "iban").unwrap_or_default())
                .map_err(|e| Refusal::invalid(e.to_string()))?;
            let bic = field(fields, "bic")
                .map(Bic::parse)
                .transpose()
                .map_err(|e| Refusal::invalid(e.to_string()))?;
            MandateDetails::Sepa {
                name,
                iban,
                bic,
                signed_on,
            }
        }
        Rail::Ach => {
            let routing = AbaRouting::parse(field(fields, "routing").unwrap_or_default())
                .map_err(|e| Refusal::invalid(e.to_string()))?;
            let account = AchAccount::parse(field(fields, "account").unwrap_or_default())
                .map_err(|e| Refusal::invalid(e.to_string()))?;
            let account_type = match field(fields, "accountType") {
                Some("checking") => AchAccountType::Checking,
                Some("savings") => AchAccountType::Savings,
                _ => return Err(Refusal::invalid("accountType must be checking or savings")),
            };
            MandateDetails::Ach {
                name,
                routing,
                account,
                account_type,
                signed_on,
            }
        }
    };
    Ok(Order {
        tier,
        details,
        off_session: checked(fields, "offSession"),
    })
}

/// A purchase id: `pur_` and 24 hex digits (SEPA), or 15 (ACH: the NACHA
/// individual id carries at most 15 characters).
fn purchase_id(rail: Rail) -> Result<String, Refusal> {
    let random = random_hex(12).map_err(|_| Refusal::internal())?;
    let digits = match rail {
        Rail::Sepa => 24,
        Rail::Ach => 15,
    };
    Ok(format!("pur_{}", &random[..digits]))
}

/// The seconds of the Unix clock.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `POST /purchase`: a new bundle, its credential and mandate, and the
/// purchase of a tier.
async fn purchase(shared: &Shared, request: &PluginRequest) -> Result<Done, Refusal> {
    let config = shared.config();
    let now = unix_now();
    let order = order(config, &fields(request)?, now)?;
    shared.admit_purchase(now)?;
    // Every id and secret before the first write.
    let hex = random_hex(12).map_err(|_| Refusal::internal())?;
    let (bundle_id, mandate_id) = (format!("bdl_{hex}"), format!("mdt_{hex}"));
    let secret = new_secret().map_err(|_| Refusal::internal())?;
    let purchase_id = purchase_id(config.rail)?;
    let details = serde_json::to_string(&order.details).map_err(|_| Refusal::internal())?;
    let store = &shared.ctx.store;
    let fail = |error: crate::store::StoreError| {
        tracing::error!(%error, bundle = %bundle_id, "purchase: ledger write failed");
        Refusal::internal()
    };
    store
        .create_bundle(NewBundle {
            id: bundle_id.clone(),
            currency: config.currency(),
            credential_digest: credential_digest(&secret),
            expires_at: None,
            now,
        })
        .await
        .map_err(fail)?;
    store
        .save_mandate(Mandate {
            id: mandate_id.clone(),
            bundle_id: bundle_id.clone(),
            rail: config.rail.name().to_owned(),
            details,
            off_session: order.off_session,
            created_at: now,
        })
        .await
        .map_err(fail)?;
    let mut done = buy(
        shared,
        &bundle_id,
        &mandate_id,
        purchase_id,
        order.tier,
        now,
    )
    .await?;
    done.credential = Some(format!(
        "pwb1.{bundle_id}.{secret}@{}",
        shared.ctx.authority
    ));
    done.account = order.details.masked_account();
    tracing::info!(
        bundle = %bundle_id, purchase = %done.purchase_id, credits = order.tier.credits,
        network = %shared.ctx.network, "bundle purchased"
    );
    Ok(done)
}

/// Records the purchase of `tier` on `mandate_id` for `bundle_id`.
async fn buy(
    shared: &Shared,
    bundle_id: &str,
    mandate_id: &str,
    purchase_id: String,
    tier: TierConfig,
    now: u64,
) -> Result<Done, Refusal> {
    let config = shared.config();
    let (spendable_now, spendable_at) = availability(config, tier.credits, now);
    let recorded = shared
        .ctx
        .store
        .purchase(NewPurchase {
            id: purchase_id.clone(),
            bundle_id: bundle_id.to_owned(),
            mandate_id: mandate_id.to_owned(),
            credits: tier.credits,
            price: tier.price,
            currency: config.currency(),
            spendable_now,
            spendable_at,
            now,
        })
        .await
        .map_err(|error| {
            tracing::error!(%error, bundle = %bundle_id, "purchase: ledger write failed");
            Refusal::internal()
        })?;
    if !recorded {
        return Err(Refusal::new(
            403,
            "bundle_revoked",
            "the bundle cannot be funded (frozen)",
        ));
    }
    Ok(Done {
        bundle_id: bundle_id.to_owned(),
        credential: None,
        purchase_id,
        mandate_id: mandate_id.to_owned(),
        tier,
        asset: config.currency().code(),
        spendable_now: spendable_now.min(tier.credits),
        spendable_at,
        account: String::new(),
    })
}

/// The bundle a `Authorization: Bearer pwb1.<bundle>.<secret>[@<origin>]`
/// header opens.
async fn authenticate(shared: &Shared, request: &PluginRequest) -> Result<Bundle, Refusal> {
    let unauthorized =
        || Refusal::new(401, "unauthorized", "a valid bundle credential is required");
    let token = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?
        .trim();
    let (token, origin) = match token.split_once('@') {
        Some((token, origin)) => (token, Some(origin)),
        None => (token, None),
    };
    if origin.is_some_and(|origin| origin != shared.ctx.authority) {
        return Err(unauthorized());
    }
    let mut parts = token.split('.');
    let (Some("pwb1"), Some(bundle_id), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized());
    };
    if secret.is_empty() || secret.len() > 256 {
        return Err(unauthorized());
    }
    let bundle = shared
        .ctx
        .store
        .bundle_by_credential(credential_digest(secret))
        .await
        .map_err(|_| Refusal::internal())?
        .ok_or_else(unauthorized)?;
    if bundle.id != bundle_id {
        return Err(unauthorized());
    }
    Ok(bundle)
}

/// `POST /purchase/top-up`: a tier bought off-session on the bundle's
/// mandate.
async fn top_up(shared: &Shared, request: &PluginRequest) -> Result<Done, Refusal> {
    let config = shared.config();
    let bundle = authenticate(shared, request).await?;
    let fields = fields(request)?;
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "tier") {
        return Err(Refusal::invalid(format!(
            "unknown field {:?}",
            unknown.chars().take(32).collect::<String>()
        )));
    }
    let tier = tier(config, &fields)?;
    if !config.top_up.allowed {
        return Err(Refusal::new(
            403,
            "top_up_disabled",
            "off-session top-ups are not offered",
        ));
    }
    if bundle.status == BundleStatus::Frozen {
        return Err(Refusal::new(403, "bundle_revoked", "the bundle is frozen"));
    }
    let mandate_id = bundle.id.replacen("bdl_", "mdt_", 1);
    let mandate = shared
        .ctx
        .store
        .mandate(&mandate_id)
        .await
        .map_err(|_| Refusal::internal())?
        .filter(|m| m.bundle_id == bundle.id && m.off_session)
        .ok_or_else(|| {
            Refusal::new(
                403,
                "no_off_session_mandate",
                "the bundle's mandate does not allow off-session top-ups",
            )
        })?;
    let details: MandateDetails =
        serde_json::from_str(&mandate.details).map_err(|_| Refusal::internal())?;
    let now = unix_now();
    reserve_top_up(shared, &bundle.id, tier.price, now)?;
    let purchase_id = purchase_id(config.rail)?;
    let result = buy(shared, &bundle.id, &mandate.id, purchase_id, tier, now).await;
    if result.is_err() {
        release_top_up(shared, &bundle.id, tier.price, now);
    }
    let mut done = result?;
    done.account = details.masked_account();
    tracing::info!(bundle = %bundle.id, purchase = %done.purchase_id, credits = tier.credits, "bundle topped up");
    Ok(done)
}

/// Counts `price` against the bundle's top-up allowance of the UTC day.
fn reserve_top_up(shared: &Shared, bundle: &str, price: u64, now: u64) -> Result<(), Refusal> {
    let limit = shared.config().top_up.max_per_day;
    let mut taken = shared
        .top_ups
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let day = now / super::DAY;
    taken.retain(|(_, d), _| *d == day);
    let used = taken.entry((bundle.to_owned(), day)).or_insert(0);
    let after = used.saturating_add(price);
    if limit > 0 && after > limit {
        return Err(Refusal::new(
            429,
            "top_up_limit",
            "the daily top-up limit is reached",
        ));
    }
    *used = after;
    Ok(())
}

fn release_top_up(shared: &Shared, bundle: &str, price: u64, now: u64) {
    let mut taken = shared
        .top_ups
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(used) = taken.get_mut(&(bundle.to_owned(), now / super::DAY)) {
        *used = used.saturating_sub(price);
    }
}

/// The credit network's asset label for pages.
pub(super) fn network_label(ctx: &FundingContext) -> String {
    format!("{} ({CREDIT_REFERENCE})", ctx.network)
}
