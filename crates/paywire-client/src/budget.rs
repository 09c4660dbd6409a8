//! Spending budgets: per call, per hour, per day and in total, per asset or
//! in US dollars across USD stablecoins; persisted in SQLite so a restarted
//! agent keeps its spend, and enforced with reserve → commit/release so that
//! concurrent requests cannot overspend.
//!
//! A payment goes through these states:
//!
//! - `reserved`: checked against the limits and counted, not signed yet (a
//!   reservation abandoned by a crash stops counting after 15 minutes; one
//!   whose signature took longer is checked against the limits again before
//!   it becomes outstanding, and refused if it no longer fits);
//! - `outstanding`: the signed authorization exists and may have reached the
//!   server, which could settle it at any time; counted until the payment is
//!   settled or proven unspent by a [`SpendProbe`], whatever the server
//!   answered;
//! - `committed`: settled; counted;
//! - `released`: never sent, or proven unspent; not counted.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use paywire_core::{ChainId, PaymentPayload, PaymentRequirements};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::policy::AssetInfo;
use paywire_core::{SpendProbe, SpendState};

/// What a rule limits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
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

/// What one [`Budget::reconcile`] pass decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Outstanding authorizations found executed on chain: now spent.
    pub settled: usize,
    /// Outstanding authorizations proven unspent: no longer counted.
    pub released: usize,
    /// Outstanding authorizations probed without a decision: still counted.
    pub undecided: usize,
}

/// Reservations older than this that were never signed are considered
/// abandoned (a crash between reserve and signing must not block the budget
/// forever); one signed later is checked again ([`Budget::mark_outstanding`]).
/// Signed (outstanding) payments never go stale.
const STALE_RESERVATION_SECS: i64 = 15 * 60;

/// After an undecided probe, wait this long before asking the chain again,
/// so an unreachable RPC does not slow every payment down.
const PROBE_RETRY_SECS: i64 = 30;

/// Outstanding payments probed per reconciliation pass at most.
const PROBES_PER_PASS: i64 = 32;

/// `PRAGMA user_version` of the current schema. Version 0 (no version set)
/// had no `outstanding` state.
const SCHEMA_VERSION: i64 = 1;

const SPENDS_TABLE: &str = "CREATE TABLE spends (
    id TEXT PRIMARY KEY,
    network TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    usd_micros TEXT,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('reserved', 'outstanding', 'committed', 'released')),
    payload TEXT,
    probe_after INTEGER
);";

const SPENDS_INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS spends_by_time ON spends (created_at);
    CREATE INDEX IF NOT EXISTS spends_to_probe ON spends (state, probe_after);";

/// Unix seconds; injectable so tests can move time.
type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

/// The persisted budget.
pub struct Budget {
    rules: Vec<BudgetRule>,
    db: Mutex<Connection>,
    clock: Clock,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

fn system_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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

/// Brings a budget file of any earlier version to [`SCHEMA_VERSION`], in one
/// immediate transaction so that two processes opening it do not both migrate.
fn migrate(db: &mut Connection) -> Result<(), BudgetError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(BudgetError::Store(format!(
            "the budget file has schema version {version}, newer than this program's {SCHEMA_VERSION}"
        )));
    }
    if version < SCHEMA_VERSION {
        let has_v0: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spends')",
            [],
            |row| row.get(0),
        )?;
        if has_v0 {
            // SQLite cannot alter a CHECK constraint: copy into a new table.
            tx.execute_batch("ALTER TABLE spends RENAME TO spends_v0;")?;
            tx.execute_batch(SPENDS_TABLE)?;
            tx.execute_batch(
                "INSERT INTO spends (id, network, asset, amount, usd_micros, created_at, state)
                 SELECT id, network, asset, amount, usd_micros, created_at, state FROM spends_v0;
                 DROP TABLE spends_v0;",
            )?;
        } else {
            tx.execute_batch(SPENDS_TABLE)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.execute_batch(SPENDS_INDEXES)?;
    tx.commit()?;
    Ok(())
}

impl Budget {
    /// A budget persisted in the SQLite file at `path` (created if needed;
    /// files written by earlier versions are migrated).
    pub fn open(path: impl AsRef<Path>, rules: Vec<BudgetRule>) -> Result<Self, BudgetError> {
        Self::with_connection(Connection::open(path)?, rules)
    }

    /// A budget kept in memory only.
    pub fn in_memory(rules: Vec<BudgetRule>) -> Result<Self, BudgetError> {
        Self::with_connection(Connection::open_in_memory()?, rules)
    }

    fn with_connection(mut db: Connection, rules: Vec<BudgetRule>) -> Result<Self, BudgetError> {
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch("PRAGMA journal_mode = WAL;")?;
        migrate(&mut db)?;
        Ok(Self {
            rules,
            db: Mutex::new(db),
            clock: Box::new(system_secs),
        })
    }

    /// Replaces the clock (Unix seconds) that dates payments and decides
    /// when an outstanding payment is due for a probe (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// The configured rules.
    pub fn rules(&self) -> &[BudgetRule] {
        &self.rules
    }

    fn now(&self) -> i64 {
        (self.clock)()
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

    /// Committed, outstanding and live reserved spending of `scope` since
    /// `since`, leaving out the row `except` (empty: none).
    fn spent_since(
        db: &Connection,
        scope: &BudgetScope,
        since: i64,
        now: i64,
        except: &str,
    ) -> Result<u128, BudgetError> {
        Self::sum(
            db,
            scope,
            "created_at >= ?1 AND id != ?3 AND (state IN ('committed', 'outstanding')
                OR (state = 'reserved' AND created_at >= ?2))",
            params![since, now - STALE_RESERVATION_SECS, except],
        )
    }

    /// Whether `amount` more of `rule`'s scope fits its limits now, next to
    /// everything counted but the row `except`.
    fn check_rule(
        db: &Connection,
        rule: &BudgetRule,
        amount: u128,
        now: i64,
        except: &str,
    ) -> Result<(), BudgetError> {
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
            let spent = Self::spent_since(db, &rule.scope, since, now, except)?;
            if spent.saturating_add(amount) > limit {
                return Err(BudgetError::Exceeded(format!(
                    "{label} limit {limit} {unit}: {spent} spent or outstanding, \
                     {amount} more asked"
                )));
            }
        }
        Ok(())
    }

    fn check(
        &self,
        db: &Connection,
        requirements: &PaymentRequirements,
        info: Option<&AssetInfo>,
    ) -> Result<Option<u128>, BudgetError> {
        let now = self.now();
        let mut usd = None;
        for rule in &self.rules {
            let Some(amount) = Self::counted(rule, requirements, info)? else {
                continue;
            };
            if rule.scope == BudgetScope::Usd {
                usd = Some(amount);
            }
            Self::check_rule(db, rule, amount, now, "")?;
        }
        Ok(usd)
    }

    /// Checks the reserved row `id` against the limits again, as if it were
    /// asked for now: a reservation stops counting once stale (15 minutes),
    /// even while its signature is still being made (a hardware wallet
    /// waiting for a button), and other payments may have taken its room.
    fn recheck(&self, db: &Connection, id: &str) -> Result<(), BudgetError> {
        let row = db
            .query_row(
                "SELECT network, asset, amount, usd_micros FROM spends
                 WHERE id = ?1 AND state = 'reserved'",
                params![id],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((network, asset, amount, usd)) = row else {
            return Err(BudgetError::Store(format!(
                "reservation {id} is not pending"
            )));
        };
        let now = self.now();
        for rule in &self.rules {
            let counted = match &rule.scope {
                BudgetScope::Usd => usd.as_deref(),
                BudgetScope::Asset {
                    network: n,
                    asset: a,
                } => (n.as_str() == network && a.eq_ignore_ascii_case(&asset))
                    .then_some(amount.as_str()),
            };
            let Some(counted) = counted else { continue };
            let counted = counted
                .parse::<u128>()
                .map_err(|e| BudgetError::Store(format!("reservation {id}: {e}")))?;
            Self::check_rule(db, rule, counted, now, id)?;
        }
        Ok(())
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
                self.now()
            ],
        )?;
        tx.commit()?;
        Ok(Reservation { id })
    }

    /// Records that the reserved payment was signed as `payload`, which is
    /// about to leave the client: from now on it counts until it is settled
    /// ([`Self::commit`]) or proven unspent ([`Self::reconcile`]). The payload
    /// is kept in the store for the probe until then (an EIP-3009
    /// authorization can only pay the recipient it names).
    ///
    /// The limits are checked again first: a reservation that went stale
    /// while it was being signed may no longer fit, and is then refused with
    /// [`BudgetError::Exceeded`] (the caller releases it and must not send
    /// the payment).
    pub fn mark_outstanding(
        &self,
        reservation: &Reservation,
        payload: &PaymentPayload,
    ) -> Result<(), BudgetError> {
        let json = serde_json::to_string(payload).map_err(|e| BudgetError::Store(e.to_string()))?;
        let lifetime = i64::try_from(payload.accepted.max_timeout_seconds).unwrap_or(i64::MAX);
        let probe_after = self.now().saturating_add(lifetime);
        let mut db = self.lock()?;
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        self.recheck(&tx, &reservation.id)?;
        tx.execute(
            "UPDATE spends SET state = 'outstanding', payload = ?1, probe_after = ?2
             WHERE id = ?3 AND state = 'reserved'",
            params![json, probe_after, reservation.id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records the payment as spent (it was settled).
    pub fn commit(&self, reservation: &Reservation) -> Result<(), BudgetError> {
        self.set_state(&reservation.id, "committed")
    }

    /// Stops counting a payment whose authorization never left the client.
    /// (An authorization that was sent is released by [`Self::reconcile`]
    /// once it is proven unspent, never on the server's word.)
    pub fn release(&self, reservation: &Reservation) -> Result<(), BudgetError> {
        self.set_state(&reservation.id, "released")
    }

    fn set_state(&self, id: &str, state: &str) -> Result<(), BudgetError> {
        let db = self.lock()?;
        db.execute(
            "UPDATE spends SET state = ?1, payload = NULL, probe_after = NULL
             WHERE id = ?2 AND state IN ('reserved', 'outstanding')",
            params![state, id],
        )?;
        Ok(())
    }

    /// Asks `probe` about the outstanding payments that are due (whose
    /// authorization lifetime has passed, and not probed in the last 30
    /// seconds): a spent one is committed, an unspent one released, an
    /// undecided one (e.g. the RPC node is unreachable) keeps counting.
    pub async fn reconcile(&self, probe: &dyn SpendProbe) -> Result<Reconciliation, BudgetError> {
        let due = self.due_for_probe()?;
        let mut result = Reconciliation::default();
        for (id, payload) in due {
            let state = match serde_json::from_str::<PaymentPayload>(&payload) {
                Ok(payload) => probe.probe(&payload).await,
                Err(error) => {
                    tracing::warn!(%id, %error, "outstanding payment unreadable; it stays counted");
                    SpendState::Unknown
                }
            };
            match state {
                SpendState::Spent => {
                    self.set_state(&id, "committed")?;
                    result.settled += 1;
                }
                SpendState::Unspent => {
                    self.set_state(&id, "released")?;
                    result.released += 1;
                }
                SpendState::Unknown => {
                    self.postpone_probe(&id)?;
                    result.undecided += 1;
                }
            }
            tracing::debug!(%id, ?state, "outstanding payment probed");
        }
        Ok(result)
    }

    fn due_for_probe(&self) -> Result<Vec<(String, String)>, BudgetError> {
        let db = self.lock()?;
        let mut statement = db.prepare_cached(
            "SELECT id, payload FROM spends
             WHERE state = 'outstanding' AND payload IS NOT NULL AND probe_after <= ?1
             ORDER BY probe_after LIMIT ?2",
        )?;
        let rows = statement.query_map(params![self.now(), PROBES_PER_PASS], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn postpone_probe(&self, id: &str) -> Result<(), BudgetError> {
        let db = self.lock()?;
        db.execute(
            "UPDATE spends SET probe_after = ?1 WHERE id = ?2 AND state = 'outstanding'",
            params![self.now().saturating_add(PROBE_RETRY_SECS), id],
        )?;
        Ok(())
    }

    /// Whether any outstanding payment is due for a probe (cheap; lets the
    /// client skip reconciliation, and its RPC calls, most of the time).
    pub fn has_due_probes(&self) -> Result<bool, BudgetError> {
        let db = self.lock()?;
        let due = db
            .query_row(
                "SELECT 1 FROM spends
                 WHERE state = 'outstanding' AND payload IS NOT NULL AND probe_after <= ?1
                 LIMIT 1",
                params![self.now()],
                |_| Ok(()),
            )
            .optional()?;
        Ok(due.is_some())
    }

    /// Committed (settled) spending of a scope over all time.
    pub fn spent_total(&self, scope: &BudgetScope) -> Result<u128, BudgetError> {
        let db = self.lock()?;
        Self::sum(&db, scope, "state = 'committed'", [])
    }

    /// Signed payments of a scope not yet known to be settled or unspent
    /// (they count against the limits like spending).
    pub fn outstanding_total(&self, scope: &BudgetScope) -> Result<u128, BudgetError> {
        let db = self.lock()?;
        Self::sum(&db, scope, "state = 'outstanding'", [])
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
            network: ChainId::parse("eip155:8453").unwrap(),
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

    fn payload(requirements: PaymentRequirements) -> PaymentPayload {
        PaymentPayload {
            x402_version: 2,
            payload: paywire_core::JsonObject::new(),
            extensions: None,
            resource: None,
            accepted: requirements,
        }
    }

    /// Answers what the test tells it, and counts the questions.
    struct ScriptedProbe {
        answer: Mutex<SpendState>,
        asked: std::sync::atomic::AtomicUsize,
    }

    impl ScriptedProbe {
        fn new(answer: SpendState) -> Self {
            Self {
                answer: Mutex::new(answer),
                asked: Default::default(),
            }
        }
        fn answer(&self, answer: SpendState) {
            *self.answer.lock().unwrap() = answer;
        }
        fn asked(&self) -> usize {
            self.asked.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl SpendProbe for ScriptedProbe {
        fn probe<'a>(&'a self, _: &'a PaymentPayload) -> paywire_core::BoxFuture<'a, SpendState> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = *self.answer.lock().unwrap();
            Box::pin(async move { answer })
        }
    }

    fn clocked(rule: BudgetRule) -> (Budget, Arc<std::sync::atomic::AtomicI64>) {
        let now = Arc::new(std::sync::atomic::AtomicI64::new(1_800_000_000));
        let clock = Arc::clone(&now);
        let budget = Budget::in_memory(vec![rule])
            .unwrap()
            .with_clock(move || clock.load(std::sync::atomic::Ordering::SeqCst));
        (budget, now)
    }

    /// Field lesson 31: a sent authorization counts until settled or proven
    /// unspent; it does not go stale like an unsigned reservation.
    #[tokio::test]
    async fn outstanding_counts_until_proven_unspent() {
        let (budget, now) = clocked(BudgetRule {
            total: Some(15_000),
            ..BudgetRule::usd()
        });
        let sent = budget.reserve(&requirement(10_000), Some(&usdc())).unwrap();
        budget
            .mark_outstanding(&sent, &payload(requirement(10_000)))
            .unwrap();
        now.fetch_add(24 * 3600, std::sync::atomic::Ordering::SeqCst);
        assert!(
            budget.fits(&requirement(10_000), Some(&usdc())).is_err(),
            "still counted a day later"
        );
        assert_eq!(budget.outstanding_total(&BudgetScope::Usd).unwrap(), 10_000);

        let probe = ScriptedProbe::new(SpendState::Unknown);
        let done = budget.reconcile(&probe).await.unwrap();
        assert_eq!(done.undecided, 1);
        assert!(budget.fits(&requirement(10_000), Some(&usdc())).is_err());
        // Undecided: not asked again for a while.
        probe.answer(SpendState::Unspent);
        assert_eq!(budget.reconcile(&probe).await.unwrap().released, 0);
        assert_eq!(probe.asked(), 1);
        now.fetch_add(PROBE_RETRY_SECS, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(budget.reconcile(&probe).await.unwrap().released, 1);
        assert!(budget.fits(&requirement(10_000), Some(&usdc())).is_ok());
        assert_eq!(budget.outstanding_total(&BudgetScope::Usd).unwrap(), 0);
        assert_eq!(budget.spent_total(&BudgetScope::Usd).unwrap(), 0);
    }

    /// Review r3 finding 3: a reservation that went stale while it was
    /// being signed is checked again before it counts for good, and refused
    /// if others took its room; a fresh one is not affected.
    #[test]
    fn a_reservation_signed_after_going_stale_is_checked_again() {
        let (budget, now) = clocked(BudgetRule {
            total: Some(100_000),
            ..BudgetRule::usd()
        });
        let slow = budget.reserve(&requirement(60_000), Some(&usdc())).unwrap();
        now.fetch_add(
            STALE_RESERVATION_SECS + 60,
            std::sync::atomic::Ordering::SeqCst,
        );
        let quick = budget.reserve(&requirement(60_000), Some(&usdc())).unwrap();
        budget
            .mark_outstanding(&quick, &payload(requirement(60_000)))
            .unwrap();
        match budget.mark_outstanding(&slow, &payload(requirement(60_000))) {
            Err(BudgetError::Exceeded(why)) => assert!(why.contains("total limit"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        budget.release(&slow).unwrap();
        assert_eq!(budget.outstanding_total(&BudgetScope::Usd).unwrap(), 60_000);

        // Stale but still fitting: it becomes outstanding.
        let late = budget.reserve(&requirement(40_000), Some(&usdc())).unwrap();
        now.fetch_add(
            STALE_RESERVATION_SECS + 60,
            std::sync::atomic::Ordering::SeqCst,
        );
        budget
            .mark_outstanding(&late, &payload(requirement(40_000)))
            .unwrap();
        assert_eq!(
            budget.outstanding_total(&BudgetScope::Usd).unwrap(),
            100_000
        );
    }

    #[tokio::test]
    async fn a_spent_outstanding_payment_is_committed_once() {
        let (budget, now) = clocked(BudgetRule {
            total: Some(25_000),
            ..BudgetRule::usd()
        });
        let sent = budget.reserve(&requirement(10_000), Some(&usdc())).unwrap();
        budget
            .mark_outstanding(&sent, &payload(requirement(10_000)))
            .unwrap();
        let probe = ScriptedProbe::new(SpendState::Spent);
        assert_eq!(
            budget.reconcile(&probe).await.unwrap(),
            Reconciliation::default(),
            "not due before its lifetime ends"
        );
        now.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(budget.reconcile(&probe).await.unwrap().settled, 1);
        // A late receipt for the same payment changes nothing.
        budget.commit(&sent).unwrap();
        assert_eq!(budget.spent_total(&BudgetScope::Usd).unwrap(), 10_000);
        assert!(budget.fits(&requirement(15_000), Some(&usdc())).is_ok());
        assert!(budget.fits(&requirement(15_001), Some(&usdc())).is_err());
    }

    #[test]
    fn migrates_a_version_0_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.db");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE spends (
                     id TEXT PRIMARY KEY,
                     network TEXT NOT NULL,
                     asset TEXT NOT NULL,
                     amount TEXT NOT NULL,
                     usd_micros TEXT,
                     created_at INTEGER NOT NULL,
                     state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released'))
                 );
                 CREATE INDEX spends_by_time ON spends (created_at);",
            )
            .unwrap();
            db.execute(
                "INSERT INTO spends VALUES ('old', 'eip155:8453', '0xusdc', '20000', '20000', ?1, 'committed')",
                params![system_secs()],
            )
            .unwrap();
        }
        let rule = BudgetRule {
            total: Some(35_000),
            ..BudgetRule::usd()
        };
        let budget = Budget::open(&path, vec![rule.clone()]).unwrap();
        assert_eq!(budget.spent_total(&BudgetScope::Usd).unwrap(), 20_000);
        let sent = budget.reserve(&requirement(10_000), Some(&usdc())).unwrap();
        budget
            .mark_outstanding(&sent, &payload(requirement(10_000)))
            .unwrap();
        drop(budget);
        let budget = Budget::open(&path, vec![rule]).unwrap();
        assert_eq!(budget.outstanding_total(&BudgetScope::Usd).unwrap(), 10_000);
        assert!(budget.fits(&requirement(10_000), Some(&usdc())).is_err());
    }

    #[test]
    fn asset_scope_counts_only_its_asset() {
        let rule = BudgetRule {
            scope: BudgetScope::Asset {
                network: ChainId::parse("eip155:8453").unwrap(),
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
