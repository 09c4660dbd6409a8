//! Funding a bundle over a bank rail: the purchase page and API (a SEPA
//! direct-debit mandate or an ACH debit authorization), off-session
//! top-ups, and the collection files (`pain.008` / NACHA debits) that turn
//! purchases into money.
//!
//! Availability of the bought credits follows the operator's policy
//! ([`Availability`]): spendable at once up to a risk limit per purchase,
//! or only some days after the collection date.
//!
//! Decisions:
//! - Ids: bundle `bdl_<24 hex>`, its mandate `mdt_<same hex>` (one mandate
//!   per bundle, found again for top-ups), purchase `pur_<24 hex>` (SEPA)
//!   or `pur_<15 hex>` (ACH: the NACHA individual id holds 15 characters,
//!   written as the 15 digits upper-cased and mapped back on returns).
//!   The SEPA character set has no `_`: files carry `pur-…`/`mdt-…`, and
//!   batch ids are `col-<yyyymmdd>-<16 hex>` / `pay-<yyyymmdd>-<16 hex>`.
//! - A purchase validates every field (tier, name, IBAN/BIC or ABA/account,
//!   the mandate checkbox) before the first write; the three writes
//!   (bundle, mandate, purchase) are separate ledger calls, so a database
//!   failure between them can leave an empty bundle nobody holds a
//!   credential for, never credits without a purchase.
//! - The credential (`pwb1.<bundle>.<secret>@<authority>`, 32 random bytes
//!   base64url) is shown once; the ledger keeps SHA-256 of the secret text.
//! - Top-ups need the bundle credential, `top_up.allowed`, a mandate
//!   accepted with "off session", an active bundle; `top_up.max_per_day`
//!   (price, minor units, per bundle and UTC day) is counted in the
//!   process's memory (not shared across instances, reset on restart).
//! - The collection claim is final: each purchase is in exactly one file.
//!   Configurations are checked with the writers' own rules first, and
//!   mandates are validated at purchase, so a claimed batch fails to be
//!   written only on I/O; that is [`OpsError::Unwritten`], with the claimed
//!   ids logged.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use paywire_core::ChainId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::account::{AbaRouting, AchAccount, AchAccountType, Bic, Iban};
use crate::files::{
    AchEntry, AchFile, AchKind, AchOriginator, DateTime, FileError, SepaCollection, SepaDebit,
    SepaParty,
};
use crate::money::{Currency, MAX_MINOR};
use crate::outbox::Outbox;
use crate::store::{AuthorityStore, CollectionEntry, StoreError};

mod page;

pub use page::{purchase_endpoint, purchase_endpoints};

/// Path of the purchase page and API.
pub const PURCHASE_PATH: &str = "/purchase";
/// Path of the off-session top-up API.
pub const TOP_UP_PATH: &str = "/purchase/top-up";

/// An operation failed. Texts name batches, purchases and rules, never
/// bank details or credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// The ledger failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bank file could not be built or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The configuration is not usable.
    #[error("bank operations configuration: {0}")]
    Config(String),
    /// A stored mandate's details are not what this version wrote.
    #[error("mandate {0}: stored details are unreadable")]
    Mandate(String),
    /// Purchases (or charges) were claimed into batch `batch_id` but its
    /// file could not be written: they are in no file yet. The claimed
    /// ids are logged; hand them to the bank by hand or re-issue the batch.
    #[error("batch {batch_id} ({count} items) was claimed but its file was not written: {source}")]
    Unwritten {
        /// The claimed batch.
        batch_id: String,
        /// How many purchases or charges it claimed.
        count: usize,
        /// Why the file was not written.
        #[source]
        source: FileError,
    },
}

/// One file written to an outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The batch id (one per file).
    pub batch_id: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Transactions in it.
    pub count: usize,
    /// Their sum, minor units.
    pub total: u64,
    /// Their currency.
    pub currency: Currency,
}

/// A bank rail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rail {
    /// SEPA (EUR): `pain.008` debits, `pain.001` credits.
    Sepa,
    /// ACH (USD): NACHA files.
    Ach,
}

impl Rail {
    /// The rail's name as stored with mandates (`sepa`, `ach`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sepa => "sepa",
            Self::Ach => "ach",
        }
    }

    /// The currency the rail moves.
    pub fn currency(self) -> Currency {
        match self {
            Self::Sepa => Currency::Eur,
            Self::Ach => Currency::Usd,
        }
    }
}

/// One purchase tier: pay `price`, receive `credits` (a bonus when
/// `credits > price`), minor units of the rail's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Credits granted.
    pub credits: u64,
    /// Price collected.
    pub price: u64,
}

/// When bought credits become spendable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Availability {
    /// At once, up to `risk_limit` minor units per purchase; the rest on
    /// the collection date.
    Immediate {
        /// Credits of one purchase spendable before its collection.
        risk_limit: u64,
    },
    /// Nothing before the collection date; everything `days` days after it
    /// (the return window the operator wants to wait out).
    AfterCollection {
        /// Days after the collection date.
        days: u32,
    },
}

/// Our SEPA creditor identity (the collecting account).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SepaCreditorConfig {
    /// Account holder name.
    pub name: String,
    /// Account.
    pub iban: Iban,
    /// Bank, if the bank wants it.
    #[serde(default)]
    pub bic: Option<Bic>,
    /// SEPA creditor identifier.
    pub creditor_scheme_id: String,
}

/// Our ACH originator identity (collections and payouts).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AchOriginatorConfig {
    /// Company name.
    pub company_name: String,
    /// Company identification (10 characters, usually `1` + EIN).
    pub company_id: String,
    /// Our bank (ODFI).
    pub odfi_routing: AbaRouting,
    /// Immediate destination (the ACH operator or our bank).
    pub immediate_destination: AbaRouting,
    /// Immediate destination name.
    pub destination_name: String,
    /// Immediate origin name.
    pub origin_name: String,
}

/// Off-session top-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUpConfig {
    /// Whether a bundle credential may buy a tier on its stored mandate.
    #[serde(default)]
    pub allowed: bool,
    /// Largest total price of top-ups per bundle and UTC day, minor units
    /// (0: no limit beyond the tiers).
    #[serde(default)]
    pub max_per_day: u64,
}

/// The `funding` table of a credit network's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FundingConfig {
    /// Tiers on sale (at least one).
    pub tiers: Vec<TierConfig>,
    /// The rail purchases are collected over.
    pub rail: Rail,
    /// When bought credits become spendable.
    pub availability: Availability,
    /// Days between a purchase's collection run and the requested
    /// collection (or ACH effective) date.
    #[serde(default = "default_days_ahead")]
    pub collection_days_ahead: u32,
    /// The directory collection files are written to.
    pub outbox: PathBuf,
    /// Our SEPA creditor identity (rail `sepa`).
    #[serde(default)]
    pub sepa: Option<SepaCreditorConfig>,
    /// Our ACH originator identity (rail `ach`).
    #[serde(default)]
    pub ach: Option<AchOriginatorConfig>,
    /// Off-session top-ups.
    #[serde(default)]
    pub top_up: TopUpConfig,
    /// Most first purchases (new bundles) one process accepts per minute,
    /// all callers together: the purchase API is unauthenticated and every
    /// purchase is a debit instruction and ledger rows (default 60).
    #[serde(default = "default_purchase_rate")]
    pub max_purchases_per_minute: u32,
}

fn default_days_ahead() -> u32 {
    2
}

fn default_purchase_rate() -> u32 {
    60
}

impl FundingConfig {
    /// The currency of bundles funded this way.
    pub fn currency(&self) -> Currency {
        self.rail.currency()
    }

    /// Checks what serde cannot: at least one tier, amounts in range, the
    /// rail's identity present.
    pub fn validate(&self) -> Result<(), OpsError> {
        let bad = |what: &str| Err(OpsError::Config(what.to_owned()));
        if self.tiers.is_empty() {
            return bad("funding.tiers: at least one tier");
        }
        for tier in &self.tiers {
            if tier.price == 0
                || tier.credits == 0
                || tier.price > MAX_MINOR
                || tier.credits > MAX_MINOR
            {
                return bad("funding.tiers: credits and price must be 1..=10^15 minor units");
            }
        }
        if self.collection_days_ahead > 60 {
            return bad("funding.collection_days_ahead: at most 60");
        }
        match (self.rail, &self.sepa, &self.ach) {
            (Rail::Sepa, Some(sepa), _) => sepa.validate("funding.sepa"),
            (Rail::Ach, _, Some(ach)) => ach.validate("funding.ach"),
            (Rail::Sepa, None, _) => bad("funding.sepa: required for rail \"sepa\""),
            (Rail::Ach, _, None) => bad("funding.ach: required for rail \"ach\""),
        }
    }
}

/// Refuses a name a SEPA file cannot carry (checked with the writer's own
/// rule, so a claimed batch never fails on configuration).
pub(crate) fn check_sepa_name(name: &str, at: &str) -> Result<(), OpsError> {
    crate::files::sepa_text(name, "name", 70)
        .map(drop)
        .map_err(|_| OpsError::Config(format!("{at}.name: no characters a SEPA file can carry")))
}

/// Refuses a name a NACHA file cannot carry.
pub(crate) fn check_ach_name(name: &str, at: &str) -> Result<(), OpsError> {
    if name.chars().any(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(OpsError::Config(format!("{at}: needs letters or digits")))
    }
}

impl SepaCreditorConfig {
    fn validate(&self, at: &str) -> Result<(), OpsError> {
        check_sepa_name(&self.name, at)?;
        crate::files::sepa_id(&self.creditor_scheme_id, "creditor_scheme_id", 35).map_err(
            |_| {
                OpsError::Config(format!(
                    "{at}.creditor_scheme_id: 1 to 35 characters of the SEPA set, no spaces"
                ))
            },
        )?;
        Ok(())
    }
}

impl AchOriginatorConfig {
    /// Checks the names and the company id the NACHA writer needs.
    pub(crate) fn validate(&self, at: &str) -> Result<(), OpsError> {
        check_ach_name(&self.company_name, &format!("{at}.company_name"))?;
        check_ach_name(&self.destination_name, &format!("{at}.destination_name"))?;
        check_ach_name(&self.origin_name, &format!("{at}.origin_name"))?;
        let id_ok = (1..=10).contains(&self.company_id.len())
            && self.company_id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !id_ok {
            return Err(OpsError::Config(format!(
                "{at}.company_id: 1 to 10 letters or digits"
            )));
        }
        Ok(())
    }
}

/// What the purchase endpoints need.
#[derive(Clone)]
pub struct FundingContext {
    /// The ledger.
    pub store: Arc<dyn AuthorityStore>,
    /// The funding configuration.
    pub config: Arc<FundingConfig>,
    /// Our origin (`iss`), written into bundle credentials.
    pub authority: String,
    /// The credit network served.
    pub network: ChainId,
}

impl std::fmt::Debug for FundingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FundingContext")
            .field("authority", &self.authority)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// One day in seconds.
const DAY: u64 = 86_400;

/// A stored mandate's details (the JSON in [`crate::store::Mandate::details`]):
/// bank details, so no `Debug`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "rail", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum MandateDetails {
    /// A SEPA Core direct-debit mandate.
    Sepa {
        /// Debtor name.
        name: String,
        /// Debtor account.
        iban: Iban,
        /// Debtor bank, if given.
        bic: Option<Bic>,
        /// Signature date, `YYYY-MM-DD`.
        signed_on: String,
    },
    /// An ACH debit authorization.
    Ach {
        /// Account holder name.
        name: String,
        /// Receiving bank.
        routing: AbaRouting,
        /// Account.
        account: AchAccount,
        /// Checking or savings.
        account_type: AchAccountType,
        /// Authorization date, `YYYY-MM-DD`.
        signed_on: String,
    },
}

impl MandateDetails {
    /// The last four characters of the account, for receipts.
    pub(crate) fn masked_account(&self) -> String {
        let full = match self {
            Self::Sepa { iban, .. } => iban.as_str(),
            Self::Ach { account, .. } => account.as_str(),
        };
        let tail: String = full
            .chars()
            .skip(full.chars().count().saturating_sub(4))
            .collect();
        format!("…{tail}")
    }
}

/// `n` random bytes as lower-case hex.
pub(crate) fn random_hex(n: usize) -> Result<String, getrandom::Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A fresh credential secret: 32 random bytes, base64url without padding.
pub(crate) fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the ledger keeps of a credential secret: SHA-256 of its text.
pub(crate) fn credential_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// `YYYY-MM-DD` of the UTC day of `unix`.
pub(crate) fn iso_date(unix: u64, field: &'static str) -> Result<String, FileError> {
    let t = DateTime::from_unix(unix, field)?;
    Ok(format!(
        "{:04}-{:02}-{:02}",
        t.date.year, t.date.month, t.date.day
    ))
}

/// A batch id: `<prefix>-<yyyymmdd>-<16 hex>` (29 characters; `-`, not
/// `_`, which the SEPA character set lacks).
pub(crate) fn batch_id(prefix: &str, now: u64) -> Result<String, OpsError> {
    let day = iso_date(now, "batch date")?.replace('-', "");
    let random = random_hex(8).map_err(|e| OpsError::Config(format!("randomness: {e}")))?;
    Ok(format!("{prefix}-{day}-{random}"))
}

/// A ledger id (`pur_…`, `mdt_…`) as a SEPA file carries it: the SEPA
/// character set has no `_`, so `pur-…`, `mdt-…`.
pub(crate) fn sepa_reference(id: &str) -> String {
    id.replacen('_', "-", 1)
}

/// The purchase id of a SEPA end-to-end id (see [`sepa_reference`]).
pub(crate) fn purchase_of_sepa_reference(reference: &str) -> String {
    match reference.strip_prefix("pur-") {
        Some(rest) => format!("pur_{rest}"),
        None => reference.to_owned(),
    }
}

/// `now + days` days, in seconds, saturating.
pub(crate) fn days_after(now: u64, days: u32) -> u64 {
    now.saturating_add(u64::from(days) * DAY)
}

/// The NACHA individual id of an ACH purchase: ACH purchase ids are
/// `pur_` and 15 hex digits, written as those 15 digits in upper case.
pub(crate) fn ach_entry_id(purchase_id: &str) -> Option<String> {
    let hex = purchase_id.strip_prefix("pur_")?;
    (hex.len() == 15 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_uppercase())
}

/// The purchase id of a NACHA individual id (see [`ach_entry_id`]).
pub(crate) fn purchase_of_ach_id(id: &str) -> String {
    let id = id.trim();
    if id.len() == 15 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("pur_{}", id.to_ascii_lowercase())
    } else {
        id.to_owned()
    }
}

/// Credits spendable at once and when the rest becomes spendable, under
/// the configured policy (measured from `now`, not aligned to days).
pub(crate) fn availability(config: &FundingConfig, credits: u64, now: u64) -> (u64, u64) {
    let collection = days_after(now, config.collection_days_ahead);
    match config.availability {
        Availability::Immediate { risk_limit } => (credits.min(risk_limit), collection),
        Availability::AfterCollection { days } => (0, days_after(collection, days)),
    }
}

/// Claims every purchase not yet collected into one batch and writes its
/// collection file (`<batch id>.xml` for SEPA, `.ach` for ACH) to
/// `outbox`. Nothing to collect: nothing written, an empty list.
///
/// The claim is atomic and final (each purchase is in exactly one batch);
/// a file that then fails to be written is reported as
/// [`OpsError::Unwritten`] with the claimed purchase ids in the error log.
pub async fn run_collection(
    store: &dyn AuthorityStore,
    config: &FundingConfig,
    outbox: &Outbox,
    now: u64,
) -> Result<Vec<WrittenFile>, OpsError> {
    config.validate()?;
    let currency = config.currency();
    let batch = batch_id("col", now)?;
    let entries = store
        .claim_collection(&batch, config.rail.name(), currency, now)
        .await?;
    if entries.is_empty() {
        tracing::info!(rail = config.rail.name(), "collection: nothing to collect");
        return Ok(Vec::new());
    }
    let count = entries.len();
    let written = write_collection(config, outbox, &batch, &entries, now).map_err(|error| {
        let ids: Vec<&str> = entries.iter().map(|e| e.purchase_id.as_str()).collect();
        tracing::error!(batch = %batch, purchases = ?ids, %error, "collection claimed but not written");
        match error {
            OpsError::File(source) => OpsError::Unwritten { batch_id: batch.clone(), count, source },
            other => other,
        }
    })?;
    tracing::info!(
        batch = %batch, count, total = written.total, currency = %currency,
        "collection file written"
    );
    // The policy's maturity counts from this collection, not from the
    // purchase: a late collection run never makes credits spendable
    // before their debit can have executed.
    let (_, spendable_at) = availability(config, 0, now);
    if let Err(error) = store.collection_written(&batch, spendable_at, now).await {
        // The file exists and goes to the bank; its credits stay pending
        // (the safe side) until the operator records the batch.
        tracing::error!(batch = %batch, %error, "collection file written but not recorded as written; its credits stay pending");
    }
    Ok(vec![written])
}

/// Builds and writes one collection file.
fn write_collection(
    config: &FundingConfig,
    outbox: &Outbox,
    batch: &str,
    entries: &[CollectionEntry],
    now: u64,
) -> Result<WrittenFile, OpsError> {
    let total = entries
        .iter()
        .try_fold(0u64, |sum, e| sum.checked_add(e.price))
        .ok_or(FileError::Overflow("collection total"))?;
    let date = iso_date(
        days_after(now, config.collection_days_ahead),
        "collection date",
    )?;
    let (name, text) = match config.rail {
        Rail::Sepa => {
            let collection = sepa_collection(config, batch, entries, now, date)?;
            (format!("{batch}.xml"), crate::sepa::pain008(&collection)?)
        }
        Rail::Ach => {
            let file = ach_debits(config, batch, entries, now, date)?;
            (format!("{batch}.ach"), crate::nacha::write(&file)?)
        }
    };
    let path = outbox.write(&name, &text)?;
    Ok(WrittenFile {
        batch_id: batch.to_owned(),
        path,
        count: entries.len(),
        total,
        currency: config.currency(),
    })
}

/// The stored details of an entry's mandate.
fn details_of(entry: &CollectionEntry) -> Result<MandateDetails, OpsError> {
    serde_json::from_str(&entry.mandate.details)
        .map_err(|_| OpsError::Mandate(entry.mandate.id.clone()))
}

fn sepa_collection(
    config: &FundingConfig,
    batch: &str,
    entries: &[CollectionEntry],
    now: u64,
    collection_date: String,
) -> Result<SepaCollection, OpsError> {
    let creditor = config
        .sepa
        .as_ref()
        .ok_or_else(|| OpsError::Config("funding.sepa: required for rail \"sepa\"".into()))?;
    let mut debits = Vec::with_capacity(entries.len());
    for entry in entries {
        let MandateDetails::Sepa {
            name,
            iban,
            bic,
            signed_on,
        } = details_of(entry)?
        else {
            return Err(OpsError::Mandate(entry.mandate.id.clone()));
        };
        debits.push(SepaDebit {
            end_to_end_id: sepa_reference(&entry.purchase_id),
            amount: entry.price,
            debtor: SepaParty { name, iban, bic },
            mandate_id: sepa_reference(&entry.mandate.id),
            mandate_signed_on: signed_on,
        });
    }
    Ok(SepaCollection {
        batch_id: batch.to_owned(),
        created_at: now,
        collection_date,
        creditor: SepaParty {
            name: creditor.name.clone(),
            iban: creditor.iban.clone(),
            bic: creditor.bic.clone(),
        },
        creditor_scheme_id: creditor.creditor_scheme_id.clone(),
        debits,
    })
}

/// Our ACH originator as the file writer wants it.
pub(crate) fn originator(config: &AchOriginatorConfig) -> AchOriginator {
    AchOriginator {
        company_name: config.company_name.clone(),
        company_id: config.company_id.clone(),
        odfi_routing: config.odfi_routing.clone(),
        immediate_destination: config.immediate_destination.clone(),
        destination_name: config.destination_name.clone(),
        origin_name: config.origin_name.clone(),
    }
}

fn ach_debits(
    config: &FundingConfig,
    batch: &str,
    entries: &[CollectionEntry],
    now: u64,
    effective_date: String,
) -> Result<AchFile, OpsError> {
    let origin = config
        .ach
        .as_ref()
        .ok_or_else(|| OpsError::Config("funding.ach: required for rail \"ach\"".into()))?;
    let mut lines = Vec::with_capacity(entries.len());
    for entry in entries {
        let MandateDetails::Ach {
            name,
            routing,
            account,
            account_type,
            ..
        } = details_of(entry)?
        else {
            return Err(OpsError::Mandate(entry.mandate.id.clone()));
        };
        let id = ach_entry_id(&entry.purchase_id)
            .ok_or_else(|| OpsError::Mandate(entry.mandate.id.clone()))?;
        lines.push(AchEntry {
            id,
            name,
            routing,
            account,
            account_type,
            amount: entry.price,
        });
    }
    Ok(AchFile {
        batch_id: batch.to_owned(),
        created_at: now,
        effective_date,
        originator: originator(origin),
        kind: AchKind::Debits,
        entries: lines,
    })
}

/// Makes the credits of purchases whose time came spendable; returns how
/// many purchases matured.
pub async fn mature(store: &dyn AuthorityStore, now: u64) -> Result<u64, OpsError> {
    let matured = store.mature_purchases(now).await?;
    if matured > 0 {
        tracing::info!(matured, "purchases matured");
    }
    Ok(matured)
}

/// `Debug` of configured accounts: no names, the account types mask their
/// numbers themselves.
impl std::fmt::Debug for SepaCreditorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SepaCreditorConfig")
            .field("iban", &self.iban)
            .field("bic", &self.bic)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AchOriginatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AchOriginatorConfig")
            .field("odfi_routing", &self.odfi_routing)
            .field("immediate_destination", &self.immediate_destination)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_ids_map_to_file_references_and_back() {
        let ach = "pur_0123456789abcde";
        let entry = ach_entry_id(ach).unwrap();
        assert_eq!(entry, "0123456789ABCDE");
        assert_eq!(purchase_of_ach_id(&entry), ach);
        assert_eq!(purchase_of_ach_id(" 0123456789ABCDE "), ach);
        assert_eq!(ach_entry_id("pur_0123456789abcdef01234567"), None);
        assert_eq!(purchase_of_ach_id("B000001"), "B000001");
        let sepa = "pur_0123456789abcdef01234567";
        assert_eq!(sepa_reference(sepa), "pur-0123456789abcdef01234567");
        assert_eq!(purchase_of_sepa_reference(&sepa_reference(sepa)), sepa);
        assert_eq!(purchase_of_sepa_reference("PAYOUT-1"), "PAYOUT-1");
    }

    #[test]
    fn availability_follows_the_policy() {
        let mut config: FundingConfig = serde_json::from_value(serde_json::json!({
            "tiers": [{ "credits": 1000, "price": 900 }], "rail": "sepa",
            "availability": { "mode": "immediate", "risk_limit": 300 },
            "collection_days_ahead": 2, "outbox": "/x"
        }))
        .unwrap();
        let now = 1_790_000_000;
        assert_eq!(availability(&config, 1000, now), (300, now + 2 * DAY));
        assert_eq!(availability(&config, 200, now), (200, now + 2 * DAY));
        config.availability = Availability::AfterCollection { days: 5 };
        assert_eq!(availability(&config, 1000, now), (0, now + 7 * DAY));
    }

    #[test]
    fn batch_ids_fit_sepa_message_ids() {
        let id = batch_id("col", 1_790_000_000).unwrap();
        assert_eq!(id.len(), 29);
        assert!(id.starts_with("col-20260921-"));
        assert!(crate::files::sepa_id(&id, "MsgId", 35).is_ok());
    }
}
