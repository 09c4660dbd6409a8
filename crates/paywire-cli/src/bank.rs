//! `paywire bank collect|payout|returns`: the bank rail's batch operations,
//! run against the bundle authority of a facilitator configuration (its
//! `[[chains]]` credit tables, with their `funding` and `payouts` tables).
//!
//! Output names counts, amounts, sellers and file paths; never a bank
//! detail, a credential or the ledger's URL.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use paywire_bank::funding::{self, FundingConfig, WrittenFile};
use paywire_bank::outbox::Outbox;
use paywire_bank::payout::{self, PayoutConfig, PayoutReport};
use paywire_bank::returns::{self, ReturnsReport};
use paywire_bank::store::{self, AuthorityStore};
use paywire_facilitator::FacilitatorConfig;
use paywire_facilitator::config::StoreLocation;

/// `paywire bank …`.
#[derive(Debug, Subcommand)]
pub enum BankCommand {
    /// Write the collection (direct debit) file of every purchase not yet
    /// collected, and make matured purchases spendable.
    Collect(BankArgs),
    /// Write the payout (credit transfer) file of every settled, unpaid
    /// charge, per seller, with statements.
    Payout(BankArgs),
    /// Import the bank's returns: a `pain.002` status report (SEPA) or a
    /// NACHA returns file (ACH), given with `--file`.
    Returns(BankArgs),
}

/// The options every `paywire bank` command takes.
#[derive(Debug, Args)]
pub struct BankArgs {
    /// The facilitator configuration (TOML) whose credit network to use.
    #[arg(long, short)]
    config: PathBuf,
    /// The credit network (`acme:credit`), when the configuration has
    /// several.
    #[arg(long)]
    network: Option<String>,
    /// The file to import (`returns`).
    #[arg(long)]
    file: Option<PathBuf>,
}

/// One credit network's operations settings.
struct Operations {
    store: Arc<dyn AuthorityStore>,
    table: serde_json::Value,
}

impl Operations {
    /// The `key` table of the network (`funding`, `payouts`).
    fn section<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, String> {
        let value = self
            .table
            .get(key)
            .cloned()
            .ok_or_else(|| format!("the credit network has no `{key}` table"))?;
        // Tables hold bank details: the error names a field, never a value.
        serde_json::from_value(value)
            .map_err(|e| format!("`{key}`: {}", paywire_bank::config::scrub_serde_error(&e)))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The credit table of `args` and its ledger.
async fn operations(args: &BankArgs) -> Result<Operations, String> {
    let config = FacilitatorConfig::load(&args.config).map_err(|e| e.to_string())?;
    let credit: Vec<&serde_json::Value> = config
        .chains
        .iter()
        .filter(|table| {
            table.network().is_some_and(|network| match &args.network {
                Some(wanted) => network == wanted,
                None => network.ends_with(":credit"),
            })
        })
        .map(paywire_facilitator::ChainTable::expose)
        .collect();
    let table = match credit.as_slice() {
        [one] => (*one).clone(),
        [] => return Err("the configuration has no such credit network".into()),
        _ => {
            return Err(
                "the configuration has several credit networks: pick one with --network".into(),
            );
        }
    };
    let location = match table.get("store").and_then(serde_json::Value::as_str) {
        Some(store) => store.to_owned(),
        None => match config.store_location().map_err(|e| e.to_string())? {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(url) => url.expose().to_owned(),
            _ => return Err("unsupported ledger location".into()),
        },
    };
    // The store's errors never quote the location (it may hold a password).
    let store = store::open(&location)
        .await
        .map_err(|e| format!("the bank ledger: {e}"))?;
    Ok(Operations { store, table })
}

fn outbox(dir: &Path) -> Result<Outbox, String> {
    Outbox::new(dir).map_err(|e| format!("outbox {}: {e}", dir.display()))
}

fn print_files(files: &[WrittenFile]) {
    for file in files {
        println!(
            "file {} batch {}: {} item(s), {} {}",
            file.path.display(),
            file.batch_id,
            file.count,
            file.currency.format(file.total),
            file.currency
        );
    }
}

async fn collect(args: &BankArgs) -> Result<(), String> {
    let ops = operations(args).await?;
    let config: FundingConfig = ops.section("funding")?;
    let at = now();
    let matured = funding::mature(ops.store.as_ref(), at)
        .await
        .map_err(|e| e.to_string())?;
    let files = funding::run_collection(ops.store.as_ref(), &config, &outbox(&config.outbox)?, at)
        .await
        .map_err(|e| e.to_string())?;
    println!("{matured} purchase(s) matured");
    if files.is_empty() {
        println!("nothing to collect");
    }
    print_files(&files);
    Ok(())
}

/// The payout report as text: one line per seller, then the files.
pub(crate) fn payout_lines(report: &PayoutReport) -> Vec<String> {
    let mut lines = Vec::new();
    for seller in &report.sellers {
        let money = |minor: u64| format!("{} {}", seller.currency.format(minor), seller.currency);
        lines.push(format!(
            "seller {}: {} charge(s), gross {}, fee {}, net {}{}",
            seller.name,
            seller.jtis.len(),
            money(seller.gross),
            money(seller.fee),
            money(seller.net),
            seller
                .file
                .as_deref()
                .map(|f| format!(", file {f}"))
                .unwrap_or_default()
        ));
    }
    if !report.unassigned.is_empty() {
        lines.push(format!(
            "{} settled charge(s) belong to no configured seller (kept unpaid)",
            report.unassigned.len()
        ));
    }
    lines
}

async fn pay_out(args: &BankArgs) -> Result<(), String> {
    let ops = operations(args).await?;
    let config: PayoutConfig = ops.section("payouts")?;
    let report = payout::run_payout(ops.store.as_ref(), &config, &outbox(&config.outbox)?, now())
        .await
        .map_err(|e| e.to_string())?;
    if report.sellers.is_empty() {
        println!("nothing to pay out");
    }
    for line in payout_lines(&report) {
        println!("{line}");
    }
    print_files(&report.files);
    Ok(())
}

fn print_returns(report: &ReturnsReport) {
    for returned in &report.returned {
        println!(
            "returned {} (bundle {} frozen): {} returned, {} lost ({})",
            returned.purchase_id,
            returned.bundle_id,
            returned.returned,
            returned.loss,
            returned.reason
        );
    }
    println!(
        "{} return(s) recorded, {} already known, {} unknown",
        report.returned.len(),
        report.already,
        report.unknown.len()
    );
}

async fn import_returns(args: &BankArgs) -> Result<(), String> {
    let file = args
        .file
        .as_deref()
        .ok_or("returns needs --file (a pain.002 report or a NACHA returns file)")?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let ops = operations(args).await?;
    let at = now();
    let report = if text.trim_start().starts_with('<') {
        returns::import_pain002(ops.store.as_ref(), &text, at).await
    } else {
        returns::import_nacha(ops.store.as_ref(), &text, at).await
    }
    .map_err(|e| e.to_string())?;
    print_returns(&report);
    Ok(())
}

/// Runs one `paywire bank` command: exit 0 when done, 1 when it failed
/// (the reason on stderr), 2 for a usage error.
pub async fn run(command: BankCommand) -> ExitCode {
    let result = match &command {
        BankCommand::Collect(args) => collect(args).await,
        BankCommand::Payout(args) => pay_out(args).await,
        BankCommand::Returns(args) => import_returns(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("paywire bank: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_bank::Currency;
    use paywire_bank::payout::SellerPayout;

    #[test]
    fn payout_totals_are_exact_decimal_money_per_seller() {
        let report = PayoutReport {
            sellers: vec![SellerPayout {
                name: "shop".into(),
                currency: Currency::Eur,
                gross: 12_345,
                fee: 247,
                net: 12_098,
                jtis: vec!["att_1".into(), "att_2".into()],
                file: Some("pay_1.xml".into()),
                statement: "pay_1.statement.txt".into(),
            }],
            ..PayoutReport::default()
        };
        assert_eq!(
            payout_lines(&report),
            [
                "seller shop: 2 charge(s), gross 123.45 EUR, fee 2.47 EUR, net 120.98 EUR, file pay_1.xml"
            ]
        );
    }
}
