//! The SQLite side: read the rows `/settle` left, bulk-insert copies into
//! a ledger the facilitator migrated, and measure the file.

use std::path::Path;

use paywire_store::rusqlite::{self, Connection, params};
use serde_json::{Value, json};

use super::fill::{Generator, SettledRow};

/// Columns of `settlements` in [`SettledRow`] order.
const COLUMNS: &str = "fingerprint, network, payment_id, state, transaction_hash, response, \
    last_error, attempts, created_at, updated_at, request, delivered_state, delivered_to, \
    delivered_payment_id, delivered_at";

fn error(e: rusqlite::Error) -> String {
    format!("sqlite: {e}")
}

/// The confirmed settlements of the ledger at `path`, with their bindings:
/// all of them, or `sample` found at random keys (through the primary key).
pub fn settled_rows(path: &Path, sample: Option<usize>) -> Result<Vec<SettledRow>, String> {
    let conn = Connection::open(path).map_err(error)?;
    let mut rows = match sample {
        None => query_rows(&conn, "", &[])?,
        Some(count) => {
            let mut rows = Vec::with_capacity(count);
            for _ in 0..count {
                let from = super::fill::random_key();
                rows.extend(query_rows(
                    &conn,
                    "AND fingerprint >= ?1 ORDER BY fingerprint LIMIT 1",
                    &[&from],
                )?);
            }
            rows
        }
    };
    for row in &mut rows {
        row.bindings = pairs(
            &conn,
            "SELECT id, created_at FROM payment_ids WHERE fingerprint = ?1",
            &row.fingerprint,
        )?;
        row.transactions = pairs(
            &conn,
            "SELECT transaction_hash, created_at FROM settled_transactions WHERE fingerprint = ?1",
            &row.fingerprint,
        )?;
    }
    Ok(rows)
}

fn query_rows(
    conn: &Connection,
    filter: &str,
    values: &[&dyn rusqlite::ToSql],
) -> Result<Vec<SettledRow>, String> {
    let mut statement = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM settlements WHERE state = 'confirmed' {filter}"
        ))
        .map_err(error)?;
    statement
        .query_map(values, |r| {
            Ok(SettledRow {
                fingerprint: r.get(0)?,
                network: r.get(1)?,
                payment_id: r.get(2)?,
                state: r.get(3)?,
                transaction_hash: r.get(4)?,
                response: r.get(5)?,
                last_error: r.get(6)?,
                attempts: r.get(7)?,
                created_at: r.get(8)?,
                updated_at: r.get(9)?,
                request: r.get(10)?,
                delivered_state: r.get(11)?,
                delivered_to: r.get(12)?,
                delivered_payment_id: r.get(13)?,
                delivered_at: r.get(14)?,
                bindings: Vec::new(),
                transactions: Vec::new(),
            })
        })
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)
}

fn pairs(conn: &Connection, sql: &str, fingerprint: &str) -> Result<Vec<(String, i64)>, String> {
    let mut statement = conn.prepare(sql).map_err(error)?;
    statement
        .query_map([fingerprint], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)
}

/// Inserts every row of `generator` into the migrated ledger at `path`, in
/// transactions of `batch` settlements. Plain INSERTs: a duplicate key is
/// an error, never silently skipped.
pub fn bulk_insert(
    path: &Path,
    generator: &mut Generator<'_>,
    batch: usize,
) -> Result<u64, String> {
    let conn = Connection::open(path).map_err(error)?;
    // Loading only: the facilitator opens the file with its own settings.
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")
        .map_err(error)?;
    let mut inserted = 0u64;
    loop {
        let rows = generator.batch(batch);
        if rows.is_empty() {
            break;
        }
        insert_batch(&conn, &rows)?;
        inserted += rows.len() as u64;
    }
    Ok(inserted)
}

fn insert_batch(conn: &Connection, rows: &[SettledRow]) -> Result<(), String> {
    let tx = conn.unchecked_transaction().map_err(error)?;
    {
        let mut settlement = tx
            .prepare_cached(&format!(
                "INSERT INTO settlements ({COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))
            .map_err(error)?;
        let mut binding = tx
            .prepare_cached(
                "INSERT INTO payment_ids (id, fingerprint, created_at) VALUES (?1, ?2, ?3)",
            )
            .map_err(error)?;
        let mut transaction = tx
            .prepare_cached(
                "INSERT INTO settled_transactions (transaction_hash, fingerprint, created_at)
                 VALUES (?1, ?2, ?3)",
            )
            .map_err(error)?;
        for row in rows {
            settlement
                .execute(params![
                    row.fingerprint,
                    row.network,
                    row.payment_id,
                    row.state,
                    row.transaction_hash,
                    row.response,
                    row.last_error,
                    row.attempts,
                    row.created_at,
                    row.updated_at,
                    row.request,
                    row.delivered_state,
                    row.delivered_to,
                    row.delivered_payment_id,
                    row.delivered_at,
                ])
                .map_err(error)?;
            for (id, at) in &row.bindings {
                binding
                    .execute(params![id, row.fingerprint, at])
                    .map_err(error)?;
            }
            for (hash, at) in &row.transactions {
                transaction
                    .execute(params![hash, row.fingerprint, at])
                    .map_err(error)?;
            }
        }
    }
    tx.commit().map_err(error)
}

/// Size of the ledger at `path` after a WAL checkpoint: the main file, the
/// WAL, and per table and index when SQLite has the `dbstat` table.
pub fn size(path: &Path) -> Result<Value, String> {
    let conn = Connection::open(path).map_err(error)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(error)?;
    let file = std::fs::metadata(path).map_or(0, |m| m.len());
    let wal_path = format!("{}-wal", path.display());
    let wal = std::fs::metadata(wal_path).map_or(0, |m| m.len());
    let objects = conn
        .prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        .and_then(|mut statement| {
            statement
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .ok()
        .map(|rows| {
            rows.into_iter()
                .map(|(name, bytes)| (name, json!(bytes)))
                .collect::<serde_json::Map<String, Value>>()
        });
    Ok(json!({"total_bytes": file + wal, "file_bytes": file, "wal_bytes": wal, "objects": objects}))
}

/// Rows per ledger table.
pub fn counts(path: &Path) -> Result<Value, String> {
    let conn = Connection::open(path).map_err(error)?;
    let mut counts = serde_json::Map::new();
    for table in ["settlements", "payment_ids", "settled_transactions"] {
        let n: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .map_err(error)?;
        counts.insert(table.to_owned(), json!(n));
    }
    Ok(Value::Object(counts))
}
