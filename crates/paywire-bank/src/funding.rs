//! Funding a bundle over a bank rail: the purchase page and API (a SEPA
//! direct-debit mandate or an ACH debit authorization), off-session
//! top-ups, and the collection files (`pain.008` / NACHA debits) that turn
//! purchases into money.
//!
//! Availability of the bought credits follows the operator's policy
//! ([`Availability`]): spendable at once up to a risk limit per purchase,
//! or only some days after the collection date.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use paywire_core::{
    BoxFuture, ChainId, EndpointPath, PluginEndpoint, PluginRequest, PluginResponse,
};
use serde::{Deserialize, Serialize};

use crate::account::{AbaRouting, AchAccount, AchAccountType, Bic, Iban};
use crate::files::FileError;
use crate::money::{Currency, MAX_MINOR};
use crate::outbox::Outbox;
use crate::store::{AuthorityStore, StoreError};

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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
}

fn default_days_ahead() -> u32 {
    2
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
        match self.rail {
            Rail::Sepa if self.sepa.is_none() => bad("funding.sepa: required for rail \"sepa\""),
            Rail::Ach if self.ach.is_none() => bad("funding.ach: required for rail \"ach\""),
            _ => Ok(()),
        }
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

/// The purchase page and API at exactly [`PURCHASE_PATH`]: `GET` → the
/// form, `POST` → a purchase (form-encoded or JSON).
pub fn purchase_endpoint(ctx: FundingContext) -> Arc<dyn PluginEndpoint> {
    Arc::new(Purchase {
        shared: Arc::new(Shared::new(ctx)),
        path: PURCHASE_PATH,
    })
}

/// Both funding endpoints ([`PURCHASE_PATH`] and [`TOP_UP_PATH`]), sharing
/// one state: register both.
pub fn purchase_endpoints(ctx: FundingContext) -> Vec<Arc<dyn PluginEndpoint>> {
    let shared = Arc::new(Shared::new(ctx));
    vec![
        Arc::new(Purchase {
            shared: Arc::clone(&shared),
            path: PURCHASE_PATH,
        }),
        Arc::new(Purchase {
            shared,
            path: TOP_UP_PATH,
        }),
    ]
}

/// State shared by the funding endpoints.
struct Shared {
    ctx: FundingContext,
    /// Top-up totals per (bundle, UTC day) in this process.
    top_ups: Mutex<HashMap<(String, u64), u64>>,
}

impl Shared {
    fn new(ctx: FundingContext) -> Self {
        Self {
            ctx,
            top_ups: Mutex::new(HashMap::new()),
        }
    }
}

struct Purchase {
    shared: Arc<Shared>,
    path: &'static str,
}

impl PluginEndpoint for Purchase {
    fn path(&self) -> EndpointPath {
        EndpointPath::Exact(self.path.to_owned())
    }

    fn handle(&self, request: PluginRequest) -> BoxFuture<'_, PluginResponse> {
        let _ = (&self.shared.ctx, &self.shared.top_ups, request);
        Box::pin(async { PluginResponse::new(501, "text/plain", "not yet") })
    }
}

/// Claims every purchase not yet collected into one batch and writes its
/// collection file (`<batch id>.xml` for SEPA, `.ach` for ACH) to
/// `outbox`. Nothing to collect: nothing written, an empty list.
pub async fn run_collection(
    store: &dyn AuthorityStore,
    config: &FundingConfig,
    outbox: &Outbox,
    now: u64,
) -> Result<Vec<WrittenFile>, OpsError> {
    let _ = (store, config, outbox, now);
    Err(OpsError::Config("not yet".into()))
}

/// Makes the credits of purchases whose time came spendable; returns how
/// many purchases matured.
pub async fn mature(store: &dyn AuthorityStore, now: u64) -> Result<u64, OpsError> {
    Ok(store.mature_purchases(now).await?)
}

#[allow(dead_code)]
fn _uses(_: AchAccount, _: AchAccountType) {}
