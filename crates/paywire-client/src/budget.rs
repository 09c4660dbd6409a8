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
//!
//! The file is SQLite through paywire-store's [`SqliteHandle`]: every
//! statement runs on the handle's own thread (WAL, `busy_timeout` 5 s), so
//! a commit waiting for `fsync` or for another process's write lock never
//! blocks the async runtime. Each read-modify-write (reserve, the re-check
//! before a payment becomes outstanding) is one `BEGIN IMMEDIATE`
//! transaction inside one call. The schema is the `budget` component of
//! paywire-store's migrations; files of earlier releases are adopted.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use paywire_core::{AtomicAmount, ChainId, PaymentPayload, PaymentRequirements};
use paywire_store::rusqlite::{self, Connection, OptionalExtension, TransactionBehavior, params};
use paywire_store::sqlite::SqliteHandle;
use paywire_store::{Migration, Migrations};

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

impl From<paywire_store::StoreError> for BudgetError {
    fn from(error: paywire_store::StoreError) -> Self {
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

/// The `budget` schema (paywire-store migrations).
///
/// Budget files from before paywire-store kept their version in `PRAGMA
/// user_version`: 0 (or unset) with a `spends` table is our version 1, and
/// user version `n >= 1` is our version `n + 1` (a file from a later
/// release of that scheme is therefore refused as newer). Version 2 keeps
/// setting `user_version = 1`, so an older binary opening the file sees the
/// schema it knows instead of migrating it again.
const MIGRATIONS: Migrations = Migrations::new(
    "budget",
    &[
        Migration::new(
            1,
            "spends",
            "CREATE TABLE IF NOT EXISTS spends (
                 id TEXT PRIMARY KEY,
                 network TEXT NOT NULL,
                 asset TEXT NOT NULL,
                 amount TEXT NOT NULL,
                 usd_micros TEXT,
                 created_at INTEGER NOT NULL,
                 state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released'))
             );
             CREATE INDEX IF NOT EXISTS spends_by_time ON spends (created_at);",
        ),
        // SQLite cannot alter a CHECK constraint: copy into a new table.
        Migration::new(
            2,
            "outstanding payments",
            "ALTER TABLE spends RENAME TO spends_v1;
             CREATE TABLE spends (
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
             );
             INSERT INTO spends (id, network, asset, amount, usd_micros, created_at, state)
                 SELECT id, network, asset, amount, usd_micros, created_at, state FROM spends_v1;
             DROP TABLE spends_v1;
             CREATE INDEX IF NOT EXISTS spends_by_time ON spends (created_at);
             CREATE INDEX IF NOT EXISTS spends_to_probe ON spends (state, probe_after);
             PRAGMA user_version = 1;",
        ),
    ],
)
.with_legacy_version(
    "SELECT CASE
         WHEN user_version > 0 THEN user_version + 1
         WHEN EXISTS (SELECT 1 FROM pragma_table_info('spends')) THEN 1
         ELSE 0
     END
     FROM pragma_user_version",
);

/// Unix seconds; injectable so tests can move time.
type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

/// The persisted budget. Its SQLite work runs on the store's own thread
/// (paywire-store's [`SqliteHandle`]), never on an async runtime worker.
pub struct Budget {
    rules: Arc<[BudgetRule]>,
    db: SqliteHandle,
    clock: Clock,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("rules", &self.rules)
            .field("path", &self.db.path())
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
    sum(
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
        let spent = spent_since(db, &rule.scope, since, now, except)?;
        if spent.saturating_add(amount) > limit {
            return Err(BudgetError::Exceeded(format!(
                "{label} limit {limit} {unit}: {spent} spent or outstanding, \
                 {amount} more asked"
            )));
        }
    }
    Ok(())
}

/// Checks a payment against every rule; the micro-dollars it counts for
/// (when a USD rule applies).
fn check(
    db: &Connection,
    rules: &[BudgetRule],
    requirements: &PaymentRequirements,
    info: Option<&AssetInfo>,
    now: i64,
) -> Result<Option<u128>, BudgetError> {
    let mut usd = None;
    for rule in rules {
        let Some(amount) = counted(rule, requirements, info)? else {
            continue;
        };
        if rule.scope == BudgetScope::Usd {
            usd = Some(amount);
        }
        check_rule(db, rule, amount, now, "")?;
    }
    Ok(usd)
}

/// Checks the reserved row `id` against the limits again, as if it were
/// asked for now: a reservation stops counting once stale (15 minutes),
/// even while its signature is still being made (a hardware wallet
/// waiting for a button), and other payments may have taken its room.
fn recheck(db: &Connection, rules: &[BudgetRule], id: &str, now: i64) -> Result<(), BudgetError> {
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
    for rule in rules {
        let counted = match &rule.scope {
            BudgetScope::Usd => usd.as_deref(),
            BudgetScope::Asset {
                network: n,
                asset: a,
            } => {
                (n.as_str() == network && a.eq_ignore_ascii_case(&asset)).then_some(amount.as_str())
            }
        };
        let Some(counted) = counted else { continue };
        let counted = counted
            .parse::<u128>()
            .map_err(|e| BudgetError::Store(format!("reservation {id}: {e}")))?;
        check_rule(db, rule, counted, now, id)?;
    }
    Ok(())
}

/// The amount and dollar columns of a row reserved for `reserved` atomic
/// units (`usd` micro-dollars) once charged `charged`: `None` when the
/// charge is not below the reservation (or a column is unreadable: the
/// reservation then counts whole).
fn partial(
    reserved: &str,
    usd: Option<&str>,
    charged: AtomicAmount,
) -> Option<(String, Option<String>)> {
    let reserved = reserved.parse::<u128>().ok()?;
    let charged = charged.to_u128()?;
    if charged >= reserved {
        return None;
    }
    let usd = match usd {
        Some(usd) => {
            let usd = usd.parse::<u128>().ok()?;
            // usd * charged / reserved, rounded up (never under-count).
            Some(usd.checked_mul(charged)?.div_ceil(reserved).to_string())
        }
        None => None,
    };
    Some((charged.to_string(), usd))
}

/// Moves a pending payment to `state` (`committed` or `released`).
fn set_state(db: &Connection, id: &str, state: &str) -> Result<(), BudgetError> {
    db.execute(
        "UPDATE spends SET state = ?1, payload = NULL, probe_after = NULL
         WHERE id = ?2 AND state IN ('reserved', 'outstanding')",
        params![state, id],
    )?;
    Ok(())
}

impl Budget {
    /// A budget persisted in the SQLite file at `path` (created if needed;
    /// files written by earlier versions are adopted and migrated; a file
    /// with a newer schema is refused).
    pub async fn open(path: impl AsRef<Path>, rules: Vec<BudgetRule>) -> Result<Self, BudgetError> {
        Self::with_handle(SqliteHandle::open(path).await?, rules).await
    }

    /// A budget kept in memory only.
    pub async fn in_memory(rules: Vec<BudgetRule>) -> Result<Self, BudgetError> {
        Self::with_handle(SqliteHandle::open_in_memory().await?, rules).await
    }

    /// A budget in an open database (created or migrated as needed).
    pub async fn with_handle(
        db: SqliteHandle,
        rules: Vec<BudgetRule>,
    ) -> Result<Self, BudgetError> {
        db.migrate(&MIGRATIONS).await?;
        Ok(Self {
            rules: rules.into(),
            db,
            clock: Box::new(system_secs),
        })
    }

    /// Replaces the clock (Unix seconds) that dates payments and decides
    /// when an outstanding payment is due for a probe (tests).
    #[must_use]
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

    /// Runs `work` on the database thread.
    async fn call<T, F>(&self, work: F) -> Result<T, BudgetError>
    where
        F: FnOnce(&mut Connection) -> Result<T, BudgetError> + Send + 'static,
        T: Send + 'static,
    {
        self.db.call_and_then(work).await
    }

    /// Whether a payment would fit, without reserving anything.
    pub async fn fits(
        &self,
        requirements: &PaymentRequirements,
        info: Option<&AssetInfo>,
    ) -> Result<(), BudgetError> {
        let (rules, now) = (Arc::clone(&self.rules), self.now());
        let (requirements, info) = (requirements.clone(), info.cloned());
        self.call(move |db| check(db, &rules, &requirements, info.as_ref(), now).map(|_| ()))
            .await
    }

    /// Reserves the payment's amount atomically (checked and recorded in one
    /// immediate transaction, so concurrent callers, even in other processes
    /// sharing the file, cannot both pass the same limit).
    pub async fn reserve(
        &self,
        requirements: &PaymentRequirements,
        info: Option<&AssetInfo>,
    ) -> Result<Reservation, BudgetError> {
        let (rules, now) = (Arc::clone(&self.rules), self.now());
        let (requirements, info) = (requirements.clone(), info.cloned());
        let id = crate::random_id("spend_");
        self.call(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let usd = check(&tx, &rules, &requirements, info.as_ref(), now)?;
            tx.execute(
                "INSERT INTO spends (id, network, asset, amount, usd_micros, created_at, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'reserved')",
                params![
                    id,
                    requirements.network.as_str(),
                    requirements.asset,
                    requirements.amount.to_string(),
                    usd.map(|u| u.to_string()),
                    now
                ],
            )?;
            tx.commit()?;
            Ok(Reservation { id })
        })
        .await
    }

    /// Records that the reserved payment was signed as `payload`, which is
    /// about to leave the client: from now on it counts until it is settled
    /// ([`Self::commit`]) or proven unspent ([`Self::reconcile`]). The payload
    /// is kept in the store for the probe until then (an EIP-3009
    /// authorization can only pay the recipient it names).
    ///
    /// The limits are checked again first, in the same immediate
    /// transaction: a reservation that went stale while it was being signed
    /// may no longer fit, and is then refused with [`BudgetError::Exceeded`]
    /// (the caller releases it and must not send the payment).
    pub async fn mark_outstanding(
        &self,
        reservation: &Reservation,
        payload: &PaymentPayload,
    ) -> Result<(), BudgetError> {
        let json = serde_json::to_string(payload).map_err(|e| BudgetError::Store(e.to_string()))?;
        let lifetime = i64::try_from(payload.accepted.max_timeout_seconds).unwrap_or(i64::MAX);
        let (rules, now) = (Arc::clone(&self.rules), self.now());
        let probe_after = now.saturating_add(lifetime);
        let id = reservation.id.clone();
        self.call(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            recheck(&tx, &rules, &id, now)?;
            tx.execute(
                "UPDATE spends SET state = 'outstanding', payload = ?1, probe_after = ?2
                 WHERE id = ?3 AND state = 'reserved'",
                params![json, probe_after, id],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Records the payment as spent (it was settled).
    pub async fn commit(&self, reservation: &Reservation) -> Result<(), BudgetError> {
        self.set_state(&reservation.id, "committed").await
    }

    /// Records the payment as spent for `charged`, when a usage-based
    /// payment was settled for less than the reserved maximum: the rest of
    /// the reservation stops counting. Pass only an amount the chain proved
    /// (a receipt's `amount` is the server's claim). A `charged` at or above
    /// the reserved amount commits the reserved amount (nothing raises a
    /// reservation). Dollar amounts shrink in proportion, rounded up.
    pub async fn commit_charged(
        &self,
        reservation: &Reservation,
        charged: AtomicAmount,
    ) -> Result<(), BudgetError> {
        let id = reservation.id.clone();
        self.call(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = tx
                .query_row(
                    "SELECT amount, usd_micros FROM spends
                     WHERE id = ?1 AND state IN ('reserved', 'outstanding')",
                    params![id],
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?)),
                )
                .optional()?;
            if let Some((amount, usd)) = row
                && let Some((amount, usd)) = partial(&amount, usd.as_deref(), charged)
            {
                tx.execute(
                    "UPDATE spends SET amount = ?1, usd_micros = ?2 WHERE id = ?3",
                    params![amount, usd, id],
                )?;
            }
            set_state(&tx, &id, "committed")?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Stops counting a payment whose authorization never left the client.
    /// (An authorization that was sent is released by [`Self::reconcile`]
    /// once it is proven unspent, never on the server's word.)
    pub async fn release(&self, reservation: &Reservation) -> Result<(), BudgetError> {
        self.set_state(&reservation.id, "released").await
    }

    async fn set_state(&self, id: &str, state: &'static str) -> Result<(), BudgetError> {
        let id = id.to_owned();
        self.call(move |db| set_state(db, &id, state)).await
    }

    /// Asks `probe` about the outstanding payments that are due (whose
    /// authorization lifetime has passed, and not probed in the last 30
    /// seconds): a spent one is committed, an unspent one released, an
    /// undecided one (e.g. the RPC node is unreachable) keeps counting.
    pub async fn reconcile(&self, probe: &dyn SpendProbe) -> Result<Reconciliation, BudgetError> {
        let due = self.due_for_probe().await?;
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
                    self.set_state(&id, "committed").await?;
                    result.settled += 1;
                }
                SpendState::Unspent => {
                    self.set_state(&id, "released").await?;
                    result.released += 1;
                }
                SpendState::Unknown => {
                    self.postpone_probe(&id).await?;
                    result.undecided += 1;
                }
            }
            tracing::debug!(%id, ?state, "outstanding payment probed");
        }
        Ok(result)
    }

    async fn due_for_probe(&self) -> Result<Vec<(String, String)>, BudgetError> {
        let now = self.now();
        self.call(move |db| {
            let mut statement = db.prepare_cached(
                "SELECT id, payload FROM spends
                 WHERE state = 'outstanding' AND payload IS NOT NULL AND probe_after <= ?1
                 ORDER BY probe_after LIMIT ?2",
            )?;
            let rows = statement.query_map(params![now, PROBES_PER_PASS], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn postpone_probe(&self, id: &str) -> Result<(), BudgetError> {
        let (id, after) = (id.to_owned(), self.now().saturating_add(PROBE_RETRY_SECS));
        self.call(move |db| {
            db.execute(
                "UPDATE spends SET probe_after = ?1 WHERE id = ?2 AND state = 'outstanding'",
                params![after, id],
            )?;
            Ok(())
        })
        .await
    }

    /// Whether any outstanding payment is due for a probe (cheap; lets the
    /// client skip reconciliation, and its RPC calls, most of the time).
    pub async fn has_due_probes(&self) -> Result<bool, BudgetError> {
        let now = self.now();
        self.call(move |db| {
            let due = db
                .query_row(
                    "SELECT 1 FROM spends
                     WHERE state = 'outstanding' AND payload IS NOT NULL AND probe_after <= ?1
                     LIMIT 1",
                    params![now],
                    |_| Ok(()),
                )
                .optional()?;
            Ok(due.is_some())
        })
        .await
    }

    /// Committed (settled) spending of a scope over all time.
    pub async fn spent_total(&self, scope: &BudgetScope) -> Result<u128, BudgetError> {
        let scope = scope.clone();
        self.call(move |db| sum(db, &scope, "state = 'committed'", []))
            .await
    }

    /// Signed payments of a scope not yet known to be settled or unspent
    /// (they count against the limits like spending).
    pub async fn outstanding_total(&self, scope: &BudgetScope) -> Result<u128, BudgetError> {
        let scope = scope.clone();
        self.call(move |db| sum(db, &scope, "state = 'outstanding'", []))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

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

    #[tokio::test]
    async fn limits_per_call_and_total() {
        let rule = BudgetRule {
            per_call: Some(50_000),
            total: Some(100_000),
            ..BudgetRule::usd()
        };
        let budget = Budget::in_memory(vec![rule]).await.unwrap();
        assert!(matches!(
            budget.reserve(&requirement(60_000), Some(&usdc())).await,
            Err(BudgetError::Exceeded(_))
        ));
        let first = budget
            .reserve(&requirement(50_000), Some(&usdc()))
            .await
            .unwrap();
        budget.commit(&first).await.unwrap();
        let second = budget
            .reserve(&requirement(40_000), Some(&usdc()))
            .await
            .unwrap();
        // Reserved but not committed still counts: no overspend by concurrency.
        assert!(
            budget
                .reserve(&requirement(20_000), Some(&usdc()))
                .await
                .is_err()
        );
        budget.release(&second).await.unwrap();
        assert!(
            budget
                .reserve(&requirement(20_000), Some(&usdc()))
                .await
                .is_ok()
        );
        assert_eq!(budget.spent_total(&BudgetScope::Usd).await.unwrap(), 50_000);
    }

    #[tokio::test]
    async fn usd_budget_refuses_unknown_assets() {
        let budget = Budget::in_memory(vec![BudgetRule {
            total: Some(1),
            ..BudgetRule::usd()
        }])
        .await
        .unwrap();
        assert!(budget.reserve(&requirement(1), None).await.is_err());
    }

    #[tokio::test]
    async fn persists_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.db");
        let rule = BudgetRule {
            per_day: Some(30_000),
            ..BudgetRule::usd()
        };
        {
            let budget = Budget::open(&path, vec![rule.clone()]).await.unwrap();
            let spend = budget
                .reserve(&requirement(20_000), Some(&usdc()))
                .await
                .unwrap();
            budget.commit(&spend).await.unwrap();
        }
        let budget = Budget::open(&path, vec![rule]).await.unwrap();
        assert!(
            budget
                .reserve(&requirement(20_000), Some(&usdc()))
                .await
                .is_err(),
            "spend survived the restart"
        );
        assert!(
            budget
                .reserve(&requirement(10_000), Some(&usdc()))
                .await
                .is_ok()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reservations_cannot_overspend() {
        // Two handles on one file: two connections, as two processes would
        // have; 20 reservations race from both on a multi-threaded runtime.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.db");
        let rule = BudgetRule {
            total: Some(100_000),
            ..BudgetRule::usd()
        };
        let budgets = [
            Arc::new(Budget::open(&path, vec![rule.clone()]).await.unwrap()),
            Arc::new(Budget::open(&path, vec![rule]).await.unwrap()),
        ];
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let budget = Arc::clone(&budgets[i % 2]);
                tokio::spawn(async move {
                    budget
                        .reserve(&requirement(10_000), Some(&usdc()))
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut granted = 0;
        for handle in handles {
            if handle.await.unwrap_or(false) {
                granted += 1;
            }
        }
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

    async fn clocked(rule: BudgetRule) -> (Budget, Arc<std::sync::atomic::AtomicI64>) {
        let now = Arc::new(std::sync::atomic::AtomicI64::new(1_800_000_000));
        let clock = Arc::clone(&now);
        let budget = Budget::in_memory(vec![rule])
            .await
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
        })
        .await;
        let sent = budget
            .reserve(&requirement(10_000), Some(&usdc()))
            .await
            .unwrap();
        budget
            .mark_outstanding(&sent, &payload(requirement(10_000)))
            .await
            .unwrap();
        now.fetch_add(24 * 3600, std::sync::atomic::Ordering::SeqCst);
        assert!(
            budget
                .fits(&requirement(10_000), Some(&usdc()))
                .await
                .is_err(),
            "still counted a day later"
        );
        assert_eq!(
            budget.outstanding_total(&BudgetScope::Usd).await.unwrap(),
            10_000
        );

        let probe = ScriptedProbe::new(SpendState::Unknown);
        let done = budget.reconcile(&probe).await.unwrap();
        assert_eq!(done.undecided, 1);
        assert!(
            budget
                .fits(&requirement(10_000), Some(&usdc()))
                .await
                .is_err()
        );
        // Undecided: not asked again for a while.
        probe.answer(SpendState::Unspent);
        assert_eq!(budget.reconcile(&probe).await.unwrap().released, 0);
        assert_eq!(probe.asked(), 1);
        now.fetch_add(PROBE_RETRY_SECS, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(budget.reconcile(&probe).await.unwrap().released, 1);
        assert!(
            budget
                .fits(&requirement(10_000), Some(&usdc()))
                .await
                .is_ok()
        );
        assert_eq!(
            budget.outstanding_total(&BudgetScope::Usd).await.unwrap(),
            0
        );
        assert_eq!(budget.spent_total(&BudgetScope::Usd).await.unwrap(), 0);
    }

    /// Review r3 finding 3: a reservation that went stale while it was
    /// being signed is checked again before it counts for good, and refused
    /// if others took its room; a fresh one is not affected.
    #[tokio::test]
    async fn a_reservation_signed_after_going_stale_is_checked_again() {
        let (budget, now) = clocked(BudgetRule {
            total: Some(100_000),
            ..BudgetRule::usd()
        })
        .await;
        let slow = budget
            .reserve(&requirement(60_000), Some(&usdc()))
            .await
            .unwrap();
        now.fetch_add(
            STALE_RESERVATION_SECS + 60,
            std::sync::atomic::Ordering::SeqCst,
        );
        let quick = budget
            .reserve(&requirement(60_000), Some(&usdc()))
            .await
            .unwrap();
        budget
            .mark_outstanding(&quick, &payload(requirement(60_000)))
            .await
            .unwrap();
        match budget
            .mark_outstanding(&slow, &payload(requirement(60_000)))
            .await
        {
            Err(BudgetError::Exceeded(why)) => assert!(why.contains("total limit"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        budget.release(&slow).await.unwrap();
        assert_eq!(
            budget.outstanding_total(&BudgetScope::Usd).await.unwrap(),
            60_000
        );

        // Stale but still fitting: it becomes outstanding.
        let late = budget
            .reserve(&requirement(40_000), Some(&usdc()))
            .await
            .unwrap();
        now.fetch_add(
            STALE_RESERVATION_SECS + 60,
            std::sync::atomic::Ordering::SeqCst,
        );
        budget
            .mark_outstanding(&late, &payload(requirement(40_000)))
            .await
            .unwrap();
        assert_eq!(
            budget.outstanding_total(&BudgetScope::Usd).await.unwrap(),
            100_000
        );
    }

    #[tokio::test]
    async fn a_spent_outstanding_payment_is_committed_once() {
        let (budget, now) = clocked(BudgetRule {
            total: Some(25_000),
            ..BudgetRule::usd()
        })
        .await;
        let sent = budget
            .reserve(&requirement(10_000), Some(&usdc()))
            .await
            .unwrap();
        budget
            .mark_outstanding(&sent, &payload(requirement(10_000)))
            .await
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
        budget.commit(&sent).await.unwrap();
        assert_eq!(budget.spent_total(&BudgetScope::Usd).await.unwrap(), 10_000);
        assert!(
            budget
                .fits(&requirement(15_000), Some(&usdc()))
                .await
                .is_ok()
        );
        assert!(
            budget
                .fits(&requirement(15_001), Some(&usdc()))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn migrates_a_version_0_file() {
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
        let budget = Budget::open(&path, vec![rule.clone()]).await.unwrap();
        assert_eq!(budget.spent_total(&BudgetScope::Usd).await.unwrap(), 20_000);
        let sent = budget
            .reserve(&requirement(10_000), Some(&usdc()))
            .await
            .unwrap();
        budget
            .mark_outstanding(&sent, &payload(requirement(10_000)))
            .await
            .unwrap();
        drop(budget);
        let budget = Budget::open(&path, vec![rule]).await.unwrap();
        assert_eq!(
            budget.outstanding_total(&BudgetScope::Usd).await.unwrap(),
            10_000
        );
        assert!(
            budget
                .fits(&requirement(10_000), Some(&usdc()))
                .await
                .is_err()
        );
    }

    /// The bookkeeping version of `budget` and the file's `user_version`.
    fn versions(path: &Path) -> (Option<i64>, i64) {
        let db = Connection::open(path).unwrap();
        let recorded = db
            .query_row(
                "SELECT version FROM paywire_schema_versions WHERE component = 'budget'",
                [],
                |row| row.get(0),
            )
            .optional()
            .unwrap();
        let user: i64 = db
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        (recorded, user)
    }

    #[tokio::test]
    async fn a_new_file_is_at_the_newest_version_and_readable_by_the_old_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.db");
        drop(Budget::open(&path, vec![]).await.unwrap());
        // user_version 1: a release from before paywire-store sees its own
        // schema and does not copy the table again.
        assert_eq!(versions(&path), (Some(2), 1));
    }

    /// A file written by the release before paywire-store (`user_version`
    /// 1, outstanding payments with their payloads) is adopted as it is.
    #[tokio::test]
    async fn a_version_1_file_is_adopted_without_copying() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.db");
        let json = serde_json::to_string(&payload(requirement(10_000))).unwrap();
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
                     state TEXT NOT NULL
                         CHECK (state IN ('reserved', 'outstanding', 'committed', 'released')),
                     payload TEXT,
                     probe_after INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS spends_by_time ON spends (created_at);
                 CREATE INDEX IF NOT EXISTS spends_to_probe ON spends (state, probe_after);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
            db.execute(
                "INSERT INTO spends VALUES
                     ('sent', 'eip155:8453', '0xusdc', '10000', '10000', ?1, 'outstanding', ?2, 0)",
                params![system_secs(), json],
            )
            .unwrap();
        }
        let budget = Budget::open(&path, vec![BudgetRule::usd()]).await.unwrap();
        assert_eq!(versions(&path), (Some(2), 1));
        assert_eq!(
            budget.outstanding_total(&BudgetScope::Usd).await.unwrap(),
            10_000
        );
        // The payload survived (migration 2 would have dropped it): the probe
        // can still settle the payment.
        let probe = ScriptedProbe::new(SpendState::Spent);
        assert_eq!(budget.reconcile(&probe).await.unwrap().settled, 1);
        assert_eq!(budget.spent_total(&BudgetScope::Usd).await.unwrap(), 10_000);
    }

    #[tokio::test]
    async fn a_newer_budget_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Recorded by a newer release in the bookkeeping table.
        let path = dir.path().join("newer.db");
        drop(Budget::open(&path, vec![]).await.unwrap());
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE paywire_schema_versions SET version = 3 WHERE component = 'budget'",
                [],
            )
            .unwrap();
        match Budget::open(&path, vec![]).await {
            Err(BudgetError::Store(why)) => {
                assert!(
                    why.contains("`budget`") && why.contains("version 3"),
                    "{why}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A file of the old scheme with a user_version newer than it knew.
        let path = dir.path().join("old-newer.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE spends (id TEXT); PRAGMA user_version = 2;")
            .unwrap();
        assert!(matches!(
            Budget::open(&path, vec![]).await,
            Err(BudgetError::Store(why)) if why.contains("version 3")
        ));
    }

    /// The budget's SQLite work runs on the store's thread: while a reserve
    /// waits for another process's write lock, this current-thread runtime
    /// keeps running its other tasks.
    #[tokio::test]
    async fn budget_work_runs_off_the_runtime_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.db");
        let budget = Budget::open(
            &path,
            vec![BudgetRule {
                total: Some(100_000),
                ..BudgetRule::usd()
            }],
        )
        .await
        .unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (locked_tx, locked) = std::sync::mpsc::channel::<()>();
        // Another process holds the write lock until a task on this runtime
        // has run, or 3 s have passed (the reserve waits up to 5 s).
        let holder = std::thread::spawn(move || {
            let mut other = Connection::open(&path).unwrap();
            let tx = other
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            locked_tx.send(()).unwrap();
            let released_by_the_runtime =
                wait.recv_timeout(std::time::Duration::from_secs(3)).is_ok();
            tx.commit().unwrap();
            released_by_the_runtime
        });
        locked
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        let ticker = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            go.send(()).is_ok()
        });
        let reservation = budget.reserve(&requirement(10_000), Some(&usdc())).await;
        assert!(reservation.is_ok(), "{reservation:?}");
        assert!(ticker.await.unwrap(), "the ticker could not signal");
        assert!(
            holder.join().unwrap(),
            "the runtime stood still while the budget waited for the lock"
        );
    }

    #[tokio::test]
    async fn asset_scope_counts_only_its_asset() {
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
        let budget = Budget::in_memory(vec![rule]).await.unwrap();
        assert!(budget.fits(&requirement(6), Some(&usdc())).await.is_err());
        let mut other = requirement(6);
        other.asset = "0xother".into();
        assert!(budget.fits(&other, None).await.is_ok());
    }
}
