//! Every statement the ledger runs on the `/settle` path, in its periodic
//! jobs (recovery, retention purge) and in its lookups reaches its rows
//! through an index, on a populated ledger, so that no step grows with the
//! ledger beyond an index lookup's log factor. The statements are the
//! product's own text (`ledger_statements()` of each store), so a query
//! rewritten into a scan, or an index dropped, fails here.
//!
//! The one whole-ledger statement is `state_counts` (the `/metrics` gauge of
//! rows per state, cached by the server): it must count over the state
//! index (SQLite: a covering-index scan, never the 2 KB rows).

use std::time::{SystemTime, UNIX_EPOCH};

use paywire_facilitator::Ledger;
use paywire_store::postgres::PgPool;
use paywire_store::rusqlite::{Connection, params};
use paywire_store::tokio_postgres::types::{ToSql, Type};
use paywire_testkit::postgres::PgCluster;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The ledger tables a statement must never read in full.
const SQLITE_TABLES: [&str; 3] = ["settlements", "payment_ids", "settled_transactions"];

/// Settlements in the populated ledgers.
const ROWS: i64 = 20_000;

/// The statement that counts the whole ledger by design.
const WHOLE_LEDGER: &str = "state_counts";

/// PostgreSQL tables that hold one row per job, not per settlement: a
/// sequential scan of them is the right plan.
const POSTGRES_SMALL_TABLES: [&str; 1] = ["x402_ledger_cursors"];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// The state and transaction of settlement `n` in a ledger shaped like a
/// live one: mostly confirmed, some failures before and after sending, a
/// few still open.
fn shape(n: i64) -> (&'static str, Option<String>) {
    let transaction = Some(format!("0x{n:064x}"));
    match n % 100 {
        0 | 1 => ("failed", None),
        2 => ("failed", transaction),
        3 => ("pending", transaction),
        4 => ("received", None),
        _ => ("confirmed", transaction),
    }
}

/// Fills the migrated SQLite ledger at `path` with [`ROWS`] settlements
/// spread over 90 days, their `spend:` bindings and transaction claims.
fn populate_sqlite(path: &std::path::Path) -> TestResult {
    let mut conn = Connection::open(path)?;
    let tx = conn.transaction()?;
    let start = now() - 90 * 86_400;
    for n in 0..ROWS {
        let fingerprint = format!("{n:064x}");
        let at = start + n * 90 * 86_400 / ROWS;
        let (state, transaction) = shape(n);
        tx.execute(
            "INSERT INTO settlements (fingerprint, network, state, transaction_hash, response,
                                      attempts, created_at, updated_at, request)
             VALUES (?1, 'eip155:8453', ?2, ?3, '{}', 1, ?4, ?4, '{}')",
            params![fingerprint, state, transaction, at],
        )?;
        tx.execute(
            "INSERT INTO payment_ids (id, fingerprint, created_at) VALUES (?1, ?2, ?3)",
            params![format!("spend:eip155:8453:{n:040x}"), fingerprint, at],
        )?;
        if let Some(transaction) = transaction.filter(|_| state != "failed") {
            tx.execute(
                "INSERT INTO settled_transactions (transaction_hash, fingerprint, created_at)
                 VALUES (?1, ?2, ?3)",
                params![transaction, fingerprint, at],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The `EXPLAIN QUERY PLAN` lines of `sql` (parameters left unbound).
fn sqlite_plan(conn: &Connection, sql: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let mut rows = statement.raw_query();
    let mut lines = Vec::new();
    while let Some(row) = rows.next()? {
        lines.push(row.get::<_, String>(3)?);
    }
    Ok(lines)
}

/// Why `plan` of statement `name` reads a ledger table in full, if it does.
fn sqlite_scan(name: &str, plan: &[String]) -> Option<String> {
    plan.iter()
        .find(|line| {
            let Some(rest) = line.strip_prefix("SCAN ") else {
                return false;
            };
            let table = rest.split_whitespace().next().unwrap_or_default();
            let whole_ledger_count =
                name == WHOLE_LEDGER && rest.contains("USING COVERING INDEX settlements_state");
            SQLITE_TABLES.contains(&table) && !whole_ledger_count
        })
        .map(|line| format!("{name}: {line} (plan {plan:?})"))
}

fn assert_sqlite_plans(conn: &Connection, when: &str) -> TestResult {
    let mut scans = Vec::new();
    let statements = paywire_facilitator::sqlite::ledger_statements();
    assert!(
        statements.len() >= 15,
        "statements went missing: {statements:?}"
    );
    for (name, sql) in statements {
        let plan = sqlite_plan(conn, &sql)?;
        scans.extend(sqlite_scan(name, &plan));
    }
    assert!(
        scans.is_empty(),
        "{when}: full scans of ledger tables:\n{}",
        scans.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn sqlite_ledger_statements_use_indexes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ledger.sqlite");
    drop(Ledger::open(&path).await?);
    populate_sqlite(&path)?;
    let conn = Connection::open(&path)?;
    // The facilitator never runs ANALYZE: the plans must hold without
    // statistics, and with them (an operator may run it).
    assert_sqlite_plans(&conn, "without ANALYZE")?;
    conn.execute_batch("ANALYZE")?;
    assert_sqlite_plans(&conn, "after ANALYZE")?;
    Ok(())
}

/// Fills the migrated PostgreSQL ledger with [`ROWS`] settlements shaped as
/// [`shape`] does, then ANALYZE.
async fn populate_postgres(pool: &PgPool) -> TestResult {
    let start = now() - 90 * 86_400;
    pool.execute(
        "INSERT INTO x402_settlements (fingerprint, network, state, transaction_hash, response,
                                       attempts, created_at, updated_at, request)
         SELECT lpad(to_hex(n), 64, '0'), 'eip155:8453',
                CASE WHEN n % 100 IN (0, 1, 2) THEN 'failed' WHEN n % 100 = 3 THEN 'pending'
                     WHEN n % 100 = 4 THEN 'received' ELSE 'confirmed' END,
                CASE WHEN n % 100 IN (0, 1, 4) THEN NULL ELSE '0x' || lpad(to_hex(n), 64, '0') END,
                '{}', 1, $1 + n * 7776000 / $2, $1 + n * 7776000 / $2, '{}'
           FROM generate_series(0::bigint, $2::bigint - 1) AS n",
        &[&start, &ROWS],
    )
    .await?;
    pool.execute(
        "INSERT INTO x402_payment_ids (id, fingerprint, created_at)
         SELECT 'spend:eip155:8453:' || lpad(to_hex(n), 40, '0'), lpad(to_hex(n), 64, '0'),
                $1 + n * 7776000 / $2
           FROM generate_series(0::bigint, $2::bigint - 1) AS n",
        &[&start, &ROWS],
    )
    .await?;
    pool.execute(
        "INSERT INTO x402_settled_transactions (transaction_hash, fingerprint, created_at)
         SELECT transaction_hash, fingerprint, created_at FROM x402_settlements
          WHERE transaction_hash IS NOT NULL AND state <> 'failed'",
        &[],
    )
    .await?;
    pool.get()
        .await?
        .batch_execute("ANALYZE x402_settlements, x402_payment_ids, x402_settled_transactions")
        .await?;
    Ok(())
}

/// A value of `kind` for parameter `index` of statement `name`: for the
/// purges, the retention cutoff (30 days ago) and the batch size they run
/// with; elsewhere a key that may exist and the current time.
fn parameter(name: &str, index: usize, kind: &Type) -> Box<dyn ToSql + Sync + Send> {
    const DAY: i64 = 86_400;
    // The purges: a cutoff 30 days back, the orphan purge's window the hour
    // before it (since its last run: the purge runs hourly), batches of 1,000.
    let int8: i64 = match (name, index) {
        ("purge_orphan_payment_ids", 0) => now() - 30 * DAY - 3_600,
        ("purge_unsent_failures", 0) | ("purge_orphan_payment_ids", 1) => now() - 30 * DAY,
        ("purge_unsent_failures" | "purge_orphan_payment_ids", _) => 1_000,
        _ => now(),
    };
    match *kind {
        Type::INT8 => Box::new(int8),
        _ => Box::new(format!("{:064x}", 12_345)),
    }
}

/// The `EXPLAIN` lines of `sql` run with the values [`parameter`] gives
/// (`generic`: the plan a prepared statement reuses whatever the values).
async fn postgres_plan(
    pool: &PgPool,
    name: &str,
    sql: &str,
    generic: bool,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let connection = pool.get().await?;
    let mode = if generic {
        "force_generic_plan"
    } else {
        "force_custom_plan"
    };
    connection
        .batch_execute(&format!("SET plan_cache_mode = {mode}"))
        .await?;
    let prepared = connection.prepare(sql).await?;
    let values: Vec<_> = prepared
        .params()
        .iter()
        .enumerate()
        .map(|(index, kind)| parameter(name, index, kind))
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as _).collect();
    let explain = connection.prepare(&format!("EXPLAIN {sql}")).await?;
    let rows = connection.query(&explain, &refs).await?;
    connection.batch_execute("RESET plan_cache_mode").await?;
    Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect())
}

#[tokio::test]
async fn postgres_ledger_statements_use_indexes() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    drop(Ledger::connect_postgres(cluster.url()).await?);
    let pool = PgPool::connect(cluster.url()).await?;
    populate_postgres(&pool).await?;
    let statements = paywire_facilitator::postgres::ledger_statements();
    assert!(
        statements.len() >= 15,
        "statements went missing: {statements:?}"
    );
    let mut scans = Vec::new();
    for (name, sql) in statements {
        if name == WHOLE_LEDGER {
            continue;
        }
        for generic in [false, true] {
            let plan = postgres_plan(&pool, name, &sql, generic).await?;
            let scans_ledger = plan.iter().any(|line| {
                line.contains("Seq Scan on x402_")
                    && !POSTGRES_SMALL_TABLES
                        .iter()
                        .any(|table| line.contains(&format!("Seq Scan on {table}")))
            });
            if scans_ledger {
                scans.push(format!(
                    "{name} (generic plan: {generic}):\n  {}",
                    plan.join("\n  ")
                ));
            }
        }
    }
    assert!(
        scans.is_empty(),
        "sequential scans of ledger tables:\n{}",
        scans.join("\n")
    );
    Ok(())
}
