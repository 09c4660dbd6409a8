//! Spending budgets: per call, per hour, per day and in total, per asset or
//! in US dollars across USD stablecoins; persisted in SQLite so a restarted
//! agent keeps its spend, and enforced with reserve → commit/release so that
//! concurrent requests cannot overspend.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior, params};
use x402_core::{ChainId, PaymentRequirements};

use crate::policy::AssetInfo;

/// What a rule limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetScope {
    /// Spending in US dollars across every known USD stablecoin, counted in
    /// micro-dollars (1 USD = 1,000,000).
    Usd,
    /// Spending of one asset on one network, in atomic units.
    Asset {
        /// Network.
        network: ChainId,
        /// Asset address or code (compared case-insensitively).
        asset: String,
    },
}

/// Limits for one scope; `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRule {
    /// What is limited.
    pub scope: BudgetScope,
    /// Largest single payment.
    pub per_call: Option<u128>,
    /// Sum over the last hour.
    pub per_hour: Option<u128>,
    /// Sum over the last 24 hours.
    pub per_day: Option<u128>,
    /// Sum over all time.
    pub total: Option<u128>,
}

impl BudgetRule {
    /// A US-dollar rule; limits in micro-dollars.
    pub fn usd() -> Self {
        Self {
            scope: BudgetScope::Usd,
            per_call: None,
            per_hour: None,
            per_day: None,
            total: None,
        }
    }
}

/// Why the budget refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// A limit would be exceeded.
    #[error("{0}")]
    Exceeded(String),
    /// The store failed.
    #[error("budget store: {0}")]
    Store(String),
}

impl From<rusqlite::Error> for BudgetError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.to_string())
    }
}

/// A reservation that must be committed (paid) or released (not paid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Row id in the store.
    pub id: String,
}

/// Reservations older than this without commit are considered abandoned
/// (a crash between reserve and commit must not block the budget forever).
const STALE_RESERVATION_SECS: i64 = 15 * 60;

/// The persisted budget.
pub struct Budget {
    rules: Vec<BudgetRule>,
    db: Mutex<Connection>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("rules", &self.rules)
            .finish()
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Micro-dollars of `amount` of an asset with `decimals`, rounded up.
fn usd_micros(amount: u128, decimals: u8) -> Option<u128> {
    if decimals <= 6 {
        amount.checked_mul(10u128.checked_pow(u32::from(6 - decimals))?)
    } else {
        let divisor = 10u128.checked_pow(u32::from(decimals - 6))?;
        Some(amount.div_ceil(divisor))
    }
}

impl Budget {
    /// A budget persisted in the SQLite file at `path` (created if needed).
    pub fn open(path: impl AsRef<Path>, rules: Vec<BudgetRule>) -> Result<Self, BudgetError> {
        Self::with_connection(Connection::open(path)?, rules)
    }

    /// A budget kept in memory only.
    pub fn in_memory(rules: Vec<BudgetRule>) -> Result<Self, BudgetError> {
        Self::with_connection(Connection::open_in_memory()?, rules)
    }

    fn with_connection(db: Connection, rules: Vec<BudgetRule>) -> Result<Self, BudgetError> {
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS spends (
                 id TEXT PRIMARY KEY,
                 network TEXT NOT NULL,
                 asset TEXT NOT NULL,
                 amount TEXT NOT NULL,
                 usd_micros TEXT,
                 created_at INTEGER NOT NULL,
                 state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released'))
             );
             CREATE INDEX IF NOT EXISTS spends_by_time ON spends (created_at);",
        )?;
        Ok(Self {
            rules,
            db: Mutex::new(db),
        })
    }

    /// The configured rules.
    pub fn rules(&self) -> &[BudgetRule] {
        &self.rules
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, BudgetError> {
        self.db
            .lock()
            .map_err(|_| BudgetError::Store("budget lock poisoned".into()))
    }

    /// The amount a rule counts for this payment, or why it cannot count it.
    fn counted(
        rule: &BudgetRule,
        requirements: &PaymentRequirements,
        info: Option<&AssetInfo>,
    ) -> Result<Option<u128>, BudgetError> {
        let amount = requirements.amount.to_u128().ok_or_else(|| {
            BudgetError::Exceeded(format!(
                "amount {} is too large to budget",
                requirements.amount
            ))
        })?;
        Ok(match &rule.scope {
            BudgetScope::Usd => match info {
                Some(info) if info.usd_stable => {
                    Some(usd_micros(amount, info.decimals).ok_or_else(|| {
                        BudgetError::Exceeded("amount too large to convert to USD".into())
                    })?)
                }
                // A USD budget cannot bound an asset of unknown value: refuse.
                _ => {
                    return Err(BudgetError::Exceeded(format!(
                        "a USD budget is set and {} on {} is not a known USD stablecoin",
                        requirements.asset, requirements.network
                    )));
                }
            },
            BudgetScope::Asset { network, asset } => (network == &requirements.network
                && asset.eq_ignore_ascii_case(&requirements.asset))
            .then_some(amount),
        })
    }

    /// Sums what `scope` counts over the rows selected by `filter` (an SQL
    /// condition over `created_at` and `state` with parameters `args`).
    fn sum(
        db: &Connection,
        scope: &BudgetScope,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<u128, BudgetError> {
        let mut statement = db.prepare_cached(&format!(
            "SELECT network, asset, amount, usd_micros FROM spends WHERE {filter}"
        ))?;
        let rows = statement.query_map(args, |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut sum: u128 = 0;
        for row in rows {
            let (network, asset, amount, usd) = row?;
            let counted = match scope {
                BudgetScope::Usd => usd.and_then(|u| u.parse::<u128>().ok()),
                BudgetScope::Asset {
                    network: n,
                    asset: a,
                } => (n.as_str() == network && a.eq_ignore_ascii_case(&asset))
                    .then(|| amount.parse::<u128>().ok())
                    .flatten(),
            };
            sum = sum.saturating_add(counted.unwrap_or(0));
        }
        Ok(sum)
    }

    /// Committed and live reserved spending of `scope` since `since`.
    fn spent_since(db: &Connection, scope: &BudgetScope, since: i64) -> Result<u128, BudgetError> {
        Self::sum(
            db,
            scope,
            "created_at >= ?1 AND (state = 'committed' OR (state = 'reserved' AND created_at >= ?2))",
            params![since, now_secs() - STALE_RESERVATION_SECS],
        )
    }

    fn check(
        &self,
        db: &Connection,
        requirements: &PaymentRequirements,
        info: Option<&AssetInfo>,
    ) -> Result<Option<u128>, BudgetError> {
        let now = now_secs();
        let mut usd = None;
        for rule in &self.rules {
            let Some(amount) = Self::counted(rule, requirements, info)? else {
                continue;
            };
            if rule.scope == BudgetScope::Usd {
                usd = Some(amount);
            }
            let unit = match rule.scope {
                BudgetScope::Usd => "micro-USD",
                BudgetScope::Asset { .. } => "atomic units",
            };
            if let Some(limit) = rule.per_call
                && amount > limit
            {
                return Err(BudgetError::Exceeded(format!(
                    "per-call limit {limit} {unit} < {amount}"
                )));
            }
            for (limit, since, label) in [
                (rule.per_hour, now - 3600, "hourly"),
                (rule.per_day, now - 86_400, "daily"),
                (rule.total, i64::MIN, "total"),
            ] {
                let Some(limit) = limit else { continue };
                let spent = Self::spent_since(db, &rule.scope, since)?;
                if spent.saturating_add(amount) > limit {
                    return Err(BudgetError::Exceeded(format!(
                        "{label} limit {limit} {unit}: {spent} spent, {amount} more asked"
                    )));
                }
            }
        }
        Ok(usd)
    }

    /// Whether a payment would fit, without reserving anything.
    pub fn fits(
        &self,
        requirements: &PaymentRequirements,
        info: Option<&AssetInfo>,
    ) -> Result<(), BudgetError> {
        let db = self.lock()?;
        self.check(&db, requirements, info).map(|_| ())
    }

    /// Reserves the payment's amount atomically (checked and recorded in one
    /// immediate transaction, so concurrent callers, even in other processes
    /// sharing the file, cannot both pass the same limit).
    pub fn reserve(
        &self,
        requirements: &PaymentRequirements,
        info: Option<&AssetInfo>,
    ) -> Result<Reservation, BudgetError> {
        let mut db = self.lock()?;
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let usd = self.check(&tx, requirements, info)?;
        let id = crate::random_id("spend_");
        tx.execute(
            "INSERT INTO spends (id, network, asset, amount, usd_micros, created_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'reserved')",
            params![
                id,
                requirements.network.as_str(),
                requirements.asset,
                requirements.amount.to_string(),
                usd.map(|u| u.to_string()),
                now_secs()
            ],
        )?;
        tx.commit()?;
        Ok(Reservation { id })
    }

    /// Records the reserved payment as spent.
    pub fn commit(&self, reservation: &Reservation) -> Result<(), BudgetError> {
        self.set_state(reservation, "committed")
    }

    /// Returns a reservation that was not paid.
    pub fn release(&self, reservation: &Reservation) -> Result<(), BudgetError> {
        self.set_state(reservation, "released")
    }

    fn set_state(&self, reservation: &Reservation, state: &str) -> Result<(), BudgetError> {
        let db = self.lock()?;
        db.execute(
            "UPDATE spends SET state = ?1 WHERE id = ?2 AND state = 'reserved'",
            params![state, reservation.id],
        )?;
        Ok(())
    }

    /// Committed spending of a scope over all time.
    pub fn spent_total(&self, scope: &BudgetScope) -> Result<u128, BudgetError> {
        let db = self.lock()?;
        Self::sum(&db, scope, "state = 'committed'", [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn usdc() -> AssetInfo {
        AssetInfo {
            symbol: "USDC".into(),
            decimals: 6,
            usd_stable: true,
        }
    }

    fn requirement(amount: u64) -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: ChainId::eip155(8453),
            amount: amount.into(),
            asset: "0xusdc".into(),
            pay_to: "0xa".into(),
            max_timeout_seconds: 60,
            extra: None,
        }
    }

    #[test]
    fn converts_to_micro_dollars() {
        assert_eq!(usd_micros(10_000, 6), Some(10_000));
        assert_eq!(usd_micros(1, 18), Some(1), "rounds up");
        assert_eq!(usd_micros(10u128.pow(18), 18), Some(1_000_000));
        assert_eq!(usd_micros(5, 2), Some(50_000));
    }

    #[test]
    fn limits_per_call_and_total() {
        let rule = BudgetRule {
            per_call: Some(50_000),
            total: Some(100_000),
            ..BudgetRule::usd()
        };
        let budget = Budget::in_memory(vec![rule]).unwrap();
        assert!(matches!(
            budget.reserve(&requirement(60_000), Some(&usdc())),
            Err(BudgetError::Exceeded(_))
        ));
        let first = budget.reserve(&requirement(50_000), Some(&usdc())).unwrap();
        budget.commit(&first).unwrap();
        let second = budget.reserve(&requirement(40_000), Some(&usdc())).unwrap();
        // Reserved but not committed still counts: no overspend by concurrency.
        assert!(budget.reserve(&requirement(20_000), Some(&usdc())).is_err());
        budget.release(&second).unwrap();
        assert!(budget.reserve(&requirement(20_000), Some(&usdc())).is_ok());
        assert_eq!(budget.spent_total(&BudgetScope::Usd).unwrap(), 50_000);
    }

    #[test]
    fn usd_budget_refuses_unknown_assets() {
        let budget = Budget::in_memory(vec![BudgetRule {
            total: Some(1),
            ..BudgetRule::usd()
        }])
        .unwrap();
        assert!(budget.reserve(&requirement(1), None).is_err());
    }

    #[test]
    fn persists_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.db");
        let rule = BudgetRule {
            per_day: Some(30_000),
            ..BudgetRule::usd()
        };
        {
            let budget = Budget::open(&path, vec![rule.clone()]).unwrap();
            let spend = budget.reserve(&requirement(20_000), Some(&usdc())).unwrap();
            budget.commit(&spend).unwrap();
        }
        let budget = Budget::open(&path, vec![rule]).unwrap();
        assert!(
            budget.reserve(&requirement(20_000), Some(&usdc())).is_err(),
            "spend survived the restart"
        );
        assert!(budget.reserve(&requirement(10_000), Some(&usdc())).is_ok());
    }

    #[test]
    fn concurrent_reservations_cannot_overspend() {
        let budget = Arc::new(
            Budget::in_memory(vec![BudgetRule {
                total: Some(100_000),
                ..BudgetRule::usd()
            }])
            .unwrap(),
        );
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || {
                    budget.reserve(&requirement(10_000), Some(&usdc())).is_ok()
                })
            })
            .collect();
        let granted = handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|granted| *granted)
            .count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn asset_scope_counts_only_its_asset() {
        let rule = BudgetRule {
            scope: BudgetScope::Asset {
                network: ChainId::eip155(8453),
                asset: "0xUSDC".into(),
            },
            per_call: Some(5),
            per_hour: None,
            per_day: None,
            total: None,
        };
        let budget = Budget::in_memory(vec![rule]).unwrap();
        assert!(budget.fits(&requirement(6), Some(&usdc())).is_err());
        let mut other = requirement(6);
        other.asset = "0xother".into();
        assert!(budget.fits(&other, None).is_ok());
    }
}
