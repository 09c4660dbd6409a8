//! Seller payouts: on each run, every settled and unpaid charge is claimed
//! into one payout batch per currency, grouped per seller (by the
//! attestation's `aud`), and paid as one `pain.001` (SEPA) or NACHA credit
//! file, with one statement per seller listing every `jti`.
//!
//! Fee: `fee = floor(gross × fee_bps / 10 000)` per seller and batch (the
//! rounding favours the seller), `net = gross − fee`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::account::{AbaRouting, AchAccount, AchAccountType, Bic, Iban};
use crate::funding::{AchOriginatorConfig, OpsError, Rail};
use crate::money::Currency;
use crate::outbox::Outbox;
use crate::store::{AuthorityStore, PayoutCharge};

/// A SEPA account (name, IBAN, BIC).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SepaAccountConfig {
    /// Account holder name.
    pub name: String,
    /// Account.
    pub iban: Iban,
    /// Bank, if known.
    #[serde(default)]
    pub bic: Option<Bic>,
}

/// A US account paid by ACH credit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AchAccountConfig {
    /// Account holder name.
    pub name: String,
    /// The receiving bank (RDFI).
    pub routing: AbaRouting,
    /// The account.
    pub account: AchAccount,
    /// Checking or savings.
    pub account_type: AchAccountType,
}

/// The accounts payouts are paid from: our SEPA account (EUR payouts)
/// and/or our ACH originator (USD payouts).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebtorConfig {
    /// Our SEPA account.
    #[serde(default)]
    pub sepa: Option<SepaAccountConfig>,
    /// Our ACH originator.
    #[serde(default)]
    pub ach: Option<AchOriginatorConfig>,
}

/// One seller (a registered resource server) and where it is paid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SellerConfig {
    /// Its name (statement file names: `[A-Za-z0-9._-]`).
    pub name: String,
    /// Its origin: the `aud` of its charges.
    pub origin: String,
    /// How it is paid.
    pub rail: Rail,
    /// Its SEPA account (rail `sepa`).
    #[serde(default)]
    pub sepa: Option<SepaAccountConfig>,
    /// Its US account (rail `ach`).
    #[serde(default)]
    pub ach: Option<AchAccountConfig>,
}

/// The `payouts` table of a credit network's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutConfig {
    /// The authority's fee in basis points (0..=10 000).
    #[serde(default)]
    pub fee_bps: u32,
    /// The billing cycle (informational: runs are started by the operator
    /// or a scheduler, e.g. `paywire bank payout` from cron).
    #[serde(default)]
    pub cycle: Option<String>,
    /// Days between a run and the requested execution (effective) date.
    #[serde(default = "default_days_ahead")]
    pub execution_days_ahead: u32,
    /// The directory payout files and statements are written to.
    pub outbox: PathBuf,
    /// Our paying accounts.
    pub debtor: DebtorConfig,
    /// The sellers.
    #[serde(default)]
    pub sellers: Vec<SellerConfig>,
}

fn default_days_ahead() -> u32 {
    1
}

/// What one seller gets from one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerPayout {
    /// The seller's name.
    pub name: String,
    /// The currency.
    pub currency: Currency,
    /// Sum of its charges, minor units.
    pub gross: u64,
    /// Our fee.
    pub fee: u64,
    /// Paid to it (`gross − fee`).
    pub net: u64,
    /// The charges' `jti`s.
    pub jtis: Vec<String>,
    /// The payment file carrying its credit (none when `net` is 0).
    pub file: Option<String>,
    /// Its statement file.
    pub statement: String,
}

/// What a payout run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayoutReport {
    /// Payment files written.
    pub files: Vec<crate::funding::WrittenFile>,
    /// Per seller and currency.
    pub sellers: Vec<SellerPayout>,
    /// Claimed charges no configured seller can be paid for (their `aud`
    /// has no seller of the charge's rail): listed in an
    /// `<batch>-unassigned.statement.json` file, paid by hand.
    pub unassigned: Vec<PayoutCharge>,
}

/// `floor(gross × fee_bps / 10 000)`, exact.
pub fn fee_for(gross: u64, fee_bps: u32) -> u64 {
    let fee = u128::from(gross) * u128::from(fee_bps) / 10_000;
    u64::try_from(fee).unwrap_or(gross).min(gross)
}

/// Pays every settled, unpaid charge (settled at or before `now`): see the
/// module documentation.
pub async fn run_payout(
    store: &dyn AuthorityStore,
    config: &PayoutConfig,
    outbox: &Outbox,
    now: u64,
) -> Result<PayoutReport, OpsError> {
    let _ = (store, config, outbox, now);
    Err(OpsError::Config("not yet".into()))
}
