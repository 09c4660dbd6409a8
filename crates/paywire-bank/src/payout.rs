//! Seller payouts: on each run, every settled and unpaid charge is claimed
//! into one payout batch per currency, grouped per seller (by the
//! attestation's `aud`), and paid as one `pain.001` (SEPA) or NACHA credit
//! file, with one statement per seller listing every `jti`.
//!
//! Fee: `fee = floor(gross × fee_bps / 10 000)` per seller and batch (the
//! rounding favours the seller), `net = gross − fee`.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::account::{AbaRouting, AchAccount, AchAccountType, Bic, Iban};
use crate::files::{AchEntry, AchFile, AchKind, FileError, SepaCredit, SepaParty, SepaPayout};
use crate::funding::{
    AchOriginatorConfig, OpsError, Rail, WrittenFile, batch_id, check_ach_name, check_sepa_name,
    days_after, iso_date, originator,
};
use crate::money::Currency;
use crate::outbox::Outbox;
use crate::store::{AuthorityStore, PayoutCharge};

/// A SEPA account (name, IBAN, BIC).
#[derive(Clone, Deserialize)]
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
#[derive(Clone, Deserialize)]
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
    pub files: Vec<WrittenFile>,
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

impl PayoutConfig {
    /// Checks what serde cannot: the fee in range, seller names usable in
    /// file names and unique, each seller's account for its rail, no origin
    /// paid twice on one rail.
    pub fn validate(&self) -> Result<(), OpsError> {
        let bad = |what: String| Err(OpsError::Config(what));
        if self.fee_bps > 10_000 {
            return bad("payouts.fee_bps: at most 10000".into());
        }
        if self.execution_days_ahead > 60 {
            return bad("payouts.execution_days_ahead: at most 60".into());
        }
        if let Some(sepa) = &self.debtor.sepa {
            check_sepa_name(&sepa.name, "payouts.debtor.sepa")?;
        }
        if let Some(ach) = &self.debtor.ach {
            ach.validate("payouts.debtor.ach")?;
        }
        let mut seen = HashSet::new();
        for (n, seller) in self.sellers.iter().enumerate() {
            let name_ok = !seller.name.is_empty()
                && seller.name.len() <= 64
                && seller
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return bad(format!(
                    "payouts.sellers[{n}].name: 1 to 64 of A-Z a-z 0-9 - _"
                ));
            }
            if seller.name.eq_ignore_ascii_case("unassigned") {
                return bad(format!(
                    "payouts.sellers[{n}].name: `unassigned` names the statement of charges without a seller"
                ));
            }
            // Case-insensitive file systems would merge their statements.
            if !seen.insert(seller.name.to_ascii_lowercase()) {
                return bad(format!("payouts.sellers[{n}].name: used twice"));
            }
            let account = match seller.rail {
                Rail::Sepa => seller.sepa.is_some(),
                Rail::Ach => seller.ach.is_some(),
            };
            if !account {
                return bad(format!(
                    "payouts.sellers[{n}]: the account of its rail is missing"
                ));
            }
            let at = format!("payouts.sellers[{n}]");
            if let Some(sepa) = &seller.sepa {
                check_sepa_name(&sepa.name, &format!("{at}.sepa"))?;
            }
            if let Some(ach) = &seller.ach {
                check_ach_name(&ach.name, &format!("{at}.ach.name"))?;
            }
            let twice = self.sellers[..n]
                .iter()
                .any(|other| other.origin == seller.origin && other.rail == seller.rail);
            if twice {
                return bad(format!(
                    "payouts.sellers[{n}].origin: paid twice on one rail"
                ));
            }
        }
        Ok(())
    }

    /// The seller paid for charges to `audience` over `rail`.
    fn seller(&self, audience: &str, rail: Rail) -> Option<&SellerConfig> {
        self.sellers
            .iter()
            .find(|s| s.rail == rail && s.origin == audience)
    }
}

/// The charges of one seller in one batch.
struct Group<'a> {
    seller: &'a SellerConfig,
    charges: Vec<PayoutCharge>,
    gross: u64,
    fee: u64,
    net: u64,
}

/// Pays every settled, unpaid charge settled at or before `now`.
///
/// Per rail whose paying account is configured (`debtor.sepa` → EUR,
/// `debtor.ach` → USD): one batch claims every such charge (atomically,
/// each charge in exactly one batch ever, so a second run finds nothing
/// already paid), groups them per seller by `aud`, and writes one payment
/// file (`<batch>.xml` pain.001 or `<batch>.ach` NACHA credits) and one
/// statement per seller (`<batch>-<seller>.statement.json`). Everything is
/// built in memory before the first file is written.
///
/// A claimed charge whose `aud` has no seller on the rail (the
/// configuration changed since it was settled: `/settle` admits registered
/// servers only) is not lost: it is listed in
/// `<batch>-unassigned.statement.json` and in [`PayoutReport::unassigned`]
/// for a manual payment.
pub async fn run_payout(
    store: &dyn AuthorityStore,
    config: &PayoutConfig,
    outbox: &Outbox,
    now: u64,
) -> Result<PayoutReport, OpsError> {
    config.validate()?;
    let mut report = PayoutReport::default();
    for rail in [Rail::Sepa, Rail::Ach] {
        let configured = match rail {
            Rail::Sepa => config.debtor.sepa.is_some(),
            Rail::Ach => config.debtor.ach.is_some(),
        };
        if !configured {
            continue;
        }
        let currency = rail.currency();
        let batch = batch_id("pay", now)?;
        let charges = store.claim_payout(&batch, currency, now, now).await?;
        if charges.is_empty() {
            continue;
        }
        let count = charges.len();
        let jtis: Vec<String> = charges.iter().map(|c| c.jti.clone()).collect();
        pay_batch(config, outbox, rail, &batch, charges, now, &mut report).map_err(|error| {
            tracing::error!(batch = %batch, charges = ?jtis, %error, "payout claimed but not written");
            match error {
                OpsError::File(source) => OpsError::Unwritten {
                    batch_id: batch.clone(),
                    count,
                    source,
                },
                other => other,
            }
        })?;
    }
    Ok(report)
}

/// Groups, builds and writes one claimed batch.
fn pay_batch(
    config: &PayoutConfig,
    outbox: &Outbox,
    rail: Rail,
    batch: &str,
    charges: Vec<PayoutCharge>,
    now: u64,
    report: &mut PayoutReport,
) -> Result<(), OpsError> {
    let (groups, unassigned) = group(config, rail, charges)?;
    let currency = rail.currency();
    let date = iso_date(
        days_after(now, config.execution_days_ahead),
        "execution date",
    )?;
    let paid: Vec<&Group<'_>> = groups.iter().filter(|g| g.net > 0).collect();
    let payment = if paid.is_empty() {
        None
    } else {
        Some(payment_file(config, rail, batch, &paid, now, date)?)
    };
    let payment_name = payment.as_ref().map(|(name, _)| name.clone());
    let mut statements = Vec::with_capacity(groups.len() + 1);
    for g in &groups {
        let name = format!("{batch}-{}.statement.json", g.seller.name);
        let text = statement(batch, config.fee_bps, currency, g, payment_name.as_deref());
        statements.push((name, text));
    }
    if !unassigned.is_empty() {
        let name = format!("{batch}-unassigned.statement.json");
        statements.push((name, unassigned_statement(batch, currency, &unassigned)));
    }
    // Built: now write, statements first. The payment file is the last
    // write, so a failure before it leaves the batch claimed with no
    // payment file (what `OpsError::Unwritten` tells the operator), never
    // a written payment reported as unwritten and paid again by hand.
    for (name, text) in &statements {
        outbox.write(name, text)?;
    }
    if let Some((name, text)) = payment {
        let path = outbox.write(&name, &text)?;
        let total = paid.iter().map(|g| g.net).sum();
        tracing::info!(batch = %batch, credits = paid.len(), total, currency = %currency, "payout file written");
        report.files.push(WrittenFile {
            batch_id: batch.to_owned(),
            path,
            count: paid.len(),
            total,
            currency,
        });
    }
    for g in groups {
        report.sellers.push(SellerPayout {
            name: g.seller.name.clone(),
            currency,
            gross: g.gross,
            fee: g.fee,
            net: g.net,
            jtis: g.charges.iter().map(|c| c.jti.clone()).collect(),
            file: (g.net > 0).then(|| payment_name.clone()).flatten(),
            statement: format!("{batch}-{}.statement.json", g.seller.name),
        });
    }
    if !unassigned.is_empty() {
        tracing::error!(batch = %batch, count = unassigned.len(), "payout: charges without a seller, listed for manual payment");
    }
    report.unassigned.extend(unassigned);
    Ok(())
}

/// The claimed charges per seller (in configuration order), and those of
/// no seller.
fn group(
    config: &PayoutConfig,
    rail: Rail,
    charges: Vec<PayoutCharge>,
) -> Result<(Vec<Group<'_>>, Vec<PayoutCharge>), OpsError> {
    let mut per_seller: Vec<Group<'_>> = Vec::new();
    let mut unassigned = Vec::new();
    for charge in charges {
        let Some(seller) = config.seller(&charge.audience, rail) else {
            unassigned.push(charge);
            continue;
        };
        if !per_seller.iter().any(|g| g.seller.name == seller.name) {
            per_seller.push(Group {
                seller,
                charges: Vec::new(),
                gross: 0,
                fee: 0,
                net: 0,
            });
        }
        let Some(g) = per_seller.iter_mut().find(|g| g.seller.name == seller.name) else {
            unassigned.push(charge);
            continue;
        };
        g.gross = g
            .gross
            .checked_add(charge.charged)
            .ok_or(FileError::Overflow("seller gross"))?;
        g.charges.push(charge);
    }
    for g in &mut per_seller {
        g.fee = fee_for(g.gross, config.fee_bps);
        g.net = g.gross - g.fee;
    }
    per_seller.sort_by(|a, b| a.seller.name.cmp(&b.seller.name));
    Ok((per_seller, unassigned))
}

/// The payment file (name and text) crediting every group's net.
fn payment_file(
    config: &PayoutConfig,
    rail: Rail,
    batch: &str,
    paid: &[&Group<'_>],
    now: u64,
    date: String,
) -> Result<(String, String), OpsError> {
    let missing = || OpsError::Config("payouts: a seller's or our account is missing".into());
    match rail {
        Rail::Sepa => {
            let debtor = config.debtor.sepa.as_ref().ok_or_else(missing)?;
            let mut credits = Vec::with_capacity(paid.len());
            for (n, g) in paid.iter().enumerate() {
                let account = g.seller.sepa.as_ref().ok_or_else(missing)?;
                credits.push(SepaCredit {
                    end_to_end_id: format!("{batch}-{:03}", n + 1),
                    amount: g.net,
                    creditor: account.party(),
                    remittance: format!("Payout {batch}: {} charges", g.charges.len()),
                });
            }
            let file = SepaPayout {
                batch_id: batch.to_owned(),
                created_at: now,
                execution_date: date,
                debtor: debtor.party(),
                credits,
            };
            Ok((format!("{batch}.xml"), crate::sepa::pain001(&file)?))
        }
        Rail::Ach => {
            let origin = config.debtor.ach.as_ref().ok_or_else(missing)?;
            let tail: String = batch
                .chars()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let mut entries = Vec::with_capacity(paid.len());
            for (n, g) in paid.iter().enumerate() {
                let account = g.seller.ach.as_ref().ok_or_else(missing)?;
                entries.push(AchEntry {
                    id: format!("P{:04}{}", n + 1, tail.to_ascii_uppercase()),
                    name: account.name.clone(),
                    routing: account.routing.clone(),
                    account: account.account.clone(),
                    account_type: account.account_type,
                    amount: g.net,
                });
            }
            let file = AchFile {
                batch_id: batch.to_owned(),
                created_at: now,
                effective_date: date,
                originator: originator(origin),
                kind: AchKind::Credits,
                entries,
            };
            Ok((format!("{batch}.ach"), crate::nacha::write(&file)?))
        }
    }
}

/// One seller's statement (JSON): every charge with its amount and
/// settlement time, gross, fee, net. No bank details.
fn statement(
    batch: &str,
    fee_bps: u32,
    currency: Currency,
    g: &Group<'_>,
    file: Option<&str>,
) -> String {
    let charges: Vec<Value> = g
        .charges
        .iter()
        .map(
            |c| json!({ "jti": c.jti, "amount": c.charged.to_string(), "settledAt": c.settled_at }),
        )
        .collect();
    let body = json!({
        "batchId": batch,
        "seller": g.seller.name,
        "origin": g.seller.origin,
        "currency": currency.code(),
        "count": g.charges.len(),
        "gross": g.gross.to_string(),
        "feeBps": fee_bps,
        "fee": g.fee.to_string(),
        "net": g.net.to_string(),
        "grossDecimal": currency.format(g.gross),
        "feeDecimal": currency.format(g.fee),
        "netDecimal": currency.format(g.net),
        "paymentFile": file,
        "charges": charges,
    });
    format!("{body:#}\n")
}

/// The statement of claimed charges no seller is configured for.
fn unassigned_statement(batch: &str, currency: Currency, charges: &[PayoutCharge]) -> String {
    let list: Vec<Value> = charges
        .iter()
        .map(|c| json!({ "jti": c.jti, "aud": c.audience, "amount": c.charged.to_string(), "settledAt": c.settled_at }))
        .collect();
    let total: u128 = charges.iter().map(|c| u128::from(c.charged)).sum();
    let body = json!({
        "batchId": batch,
        "seller": null,
        "currency": currency.code(),
        "note": "claimed charges whose aud has no configured seller: pay by hand",
        "total": total.to_string(),
        "charges": list,
    });
    format!("{body:#}\n")
}

impl SepaAccountConfig {
    fn party(&self) -> SepaParty {
        SepaParty {
            name: self.name.clone(),
            iban: self.iban.clone(),
            bic: self.bic.clone(),
        }
    }
}

impl std::fmt::Debug for SepaAccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SepaAccountConfig")
            .field("iban", &self.iban)
            .field("bic", &self.bic)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AchAccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AchAccountConfig")
            .field("routing", &self.routing)
            .field("account", &self.account)
            .field("account_type", &self.account_type)
            .finish_non_exhaustive()
    }
}
