//! The PostgreSQL side: read the rows `/settle` left, bulk-insert copies
//! (multi-row `INSERT ... SELECT FROM UNNEST`) into a ledger the facilitator
//! migrated, and measure the tables.

use paywire_store::postgres::PgPool;
use paywire_store::tokio_postgres::Row;
use serde_json::{Value, json};

use super::fill::{Generator, SettledRow};

/// The ledger's tables.
const TABLES: [&str; 3] = [
    "x402_settlements",
    "x402_payment_ids",
    "x402_settled_transactions",
];

/// Columns of `x402_settlements` in [`SettledRow`] order.
const COLUMNS: &str = "fingerprint, network, payment_id, state, transaction_hash, response, \
    last_error, attempts, created_at, updated_at, request, delivered_state, delivered_to, \
    delivered_payment_id, delivered_at";

fn error(e: impl std::fmt::Display) -> String {
    format!("postgres: {e}")
}

fn settled_row(r: &Row) -> Result<SettledRow, String> {
    Ok(SettledRow {
        fingerprint: r.try_get(0).map_err(error)?,
        network: r.try_get(1).map_err(error)?,
        payment_id: r.try_get(2).map_err(error)?,
        state: r.try_get(3).map_err(error)?,
        transaction_hash: r.try_get(4).map_err(error)?,
        response: r.try_get(5).map_err(error)?,
        last_error: r.try_get(6).map_err(error)?,
        attempts: r.try_get(7).map_err(error)?,
        created_at: r.try_get(8).map_err(error)?,
        updated_at: r.try_get(9).map_err(error)?,
        request: r.try_get(10).map_err(error)?,
        delivered_state: r.try_get(11).map_err(error)?,
        delivered_to: r.try_get(12).map_err(error)?,
        delivered_payment_id: r.try_get(13).map_err(error)?,
        delivered_at: r.try_get(14).map_err(error)?,
        bindings: Vec::new(),
        transactions: Vec::new(),
    })
}

/// The confirmed settlements of the ledger at `url`, with their bindings:
/// all of them, or `sample` found at random keys (through the primary key).
pub async fn settled_rows(url: &str, sample: Option<usize>) -> Result<Vec<SettledRow>, String> {
    let pool = PgPool::connect(url).await.map_err(error)?;
    let sql = format!("SELECT {COLUMNS} FROM x402_settlements WHERE state = 'confirmed'");
    let found = match sample {
        None => pool.query(&sql, &[]).await.map_err(error)?,
        Some(count) => {
            let sql = format!("{sql} AND fingerprint >= $1 ORDER BY fingerprint LIMIT 1");
            let mut found = Vec::with_capacity(count);
            for _ in 0..count {
                let from = super::fill::random_key();
                found.extend(pool.query(&sql, &[&from]).await.map_err(error)?);
            }
            found
        }
    };
    let mut rows = found
        .iter()
        .map(settled_row)
        .collect::<Result<Vec<_>, _>>()?;
    for row in &mut rows {
        row.bindings = pairs(
            &pool,
            "SELECT id, created_at FROM x402_payment_ids WHERE fingerprint = $1",
            &row.fingerprint,
        )
        .await?;
        row.transactions = pairs(
            &pool,
            "SELECT transaction_hash, created_at FROM x402_settled_transactions WHERE fingerprint = $1",
            &row.fingerprint,
        )
        .await?;
    }
    Ok(rows)
}

async fn pairs(pool: &PgPool, sql: &str, fingerprint: &str) -> Result<Vec<(String, i64)>, String> {
    pool.query(sql, &[&fingerprint])
        .await
        .map_err(error)?
        .iter()
        .map(|r| Ok((r.try_get(0).map_err(error)?, r.try_get(1).map_err(error)?)))
        .collect()
}

/// Inserts every row of `generator` into the migrated ledger at `url`, one
/// transaction of three multi-row INSERTs per `batch` settlements. Plain
/// INSERTs: a duplicate key is an error, never silently skipped.
pub async fn bulk_insert(
    url: &str,
    generator: &mut Generator<'_>,
    batch: usize,
) -> Result<u64, String> {
    let pool = PgPool::connect(url).await.map_err(error)?;
    let mut connection = pool.get().await.map_err(error)?;
    let mut inserted = 0u64;
    loop {
        let rows = generator.batch(batch);
        if rows.is_empty() {
            break;
        }
        let tx = connection.transaction().await.map_err(error)?;
        // Loading only: a lost batch is simply reloaded.
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(error)?;
        insert_settlements(&tx, &rows).await?;
        let (ids, fingerprints, at): (Vec<_>, Vec<_>, Vec<_>) = rows
            .iter()
            .flat_map(|r| {
                r.bindings
                    .iter()
                    .map(|(id, at)| (id.clone(), r.fingerprint.clone(), *at))
            })
            .fold((Vec::new(), Vec::new(), Vec::new()), unzip3);
        tx.execute(
            "INSERT INTO x402_payment_ids (id, fingerprint, created_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])",
            &[&ids, &fingerprints, &at],
        )
        .await
        .map_err(error)?;
        let (hashes, fingerprints, at): (Vec<_>, Vec<_>, Vec<_>) = rows
            .iter()
            .flat_map(|r| {
                r.transactions
                    .iter()
                    .map(|(h, at)| (h.clone(), r.fingerprint.clone(), *at))
            })
            .fold((Vec::new(), Vec::new(), Vec::new()), unzip3);
        tx.execute(
            "INSERT INTO x402_settled_transactions (transaction_hash, fingerprint, created_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])",
            &[&hashes, &fingerprints, &at],
        )
        .await
        .map_err(error)?;
        tx.commit().await.map_err(error)?;
        inserted += rows.len() as u64;
    }
    Ok(inserted)
}

type Triple = (Vec<String>, Vec<String>, Vec<i64>);

fn unzip3(mut acc: Triple, (a, b, c): (String, String, i64)) -> Triple {
    acc.0.push(a);
    acc.1.push(b);
    acc.2.push(c);
    acc
}

async fn insert_settlements(
    tx: &paywire_store::tokio_postgres::Transaction<'_>,
    rows: &[SettledRow],
) -> Result<(), String> {
    let text = |f: fn(&SettledRow) -> &String| rows.iter().map(f).cloned().collect::<Vec<_>>();
    let opt = |f: fn(&SettledRow) -> &Option<String>| {
        rows.iter().map(f).cloned().collect::<Vec<Option<String>>>()
    };
    let int = |f: fn(&SettledRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let delivered_at: Vec<Option<i64>> = rows.iter().map(|r| r.delivered_at).collect();
    tx.execute(
        &format!(
            "INSERT INTO x402_settlements ({COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[],
                                  $11::text[], $12::text[], $13::text[], $14::text[], $15::bigint[])"
        ),
        &[
            &text(|r| &r.fingerprint),
            &text(|r| &r.network),
            &opt(|r| &r.payment_id),
            &text(|r| &r.state),
            &opt(|r| &r.transaction_hash),
            &opt(|r| &r.response),
            &opt(|r| &r.last_error),
            &int(|r| r.attempts),
            &int(|r| r.created_at),
            &int(|r| r.updated_at),
            &opt(|r| &r.request),
            &opt(|r| &r.delivered_state),
            &opt(|r| &r.delivered_to),
            &opt(|r| &r.delivered_payment_id),
            &delivered_at,
        ],
    )
    .await
    .map_err(error)?;
    Ok(())
}

/// `VACUUM ANALYZE` of the ledger's tables, as autovacuum would do after a
/// load this size (visibility map and statistics), so that the timed phase
/// does not run into it.
pub async fn vacuum_analyze(url: &str) -> Result<(), String> {
    let pool = PgPool::connect(url).await.map_err(error)?;
    pool.get()
        .await
        .map_err(error)?
        .batch_execute(&format!("VACUUM ANALYZE {}", TABLES.join(", ")))
        .await
        .map_err(error)
}

/// `pg_total_relation_size` per ledger table (heap, TOAST and indexes) and
/// in total, plus the indexes' share.
pub async fn size(url: &str) -> Result<Value, String> {
    let pool = PgPool::connect(url).await.map_err(error)?;
    let mut tables = serde_json::Map::new();
    let mut total = 0i64;
    for table in TABLES {
        let row = pool
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass), pg_indexes_size($1::text::regclass),
                        pg_relation_size($1::text::regclass)",
                &[&table],
            )
            .await
            .map_err(error)?;
        let (all, indexes, heap): (i64, i64, i64) = (
            row.try_get(0).map_err(error)?,
            row.try_get(1).map_err(error)?,
            row.try_get(2).map_err(error)?,
        );
        total += all;
        tables.insert(
            table.to_owned(),
            json!({"total_bytes": all, "index_bytes": indexes, "heap_bytes": heap,
                   "toast_and_other_bytes": all - indexes - heap}),
        );
    }
    Ok(json!({"total_bytes": total, "tables": tables}))
}

/// Rows per ledger table.
pub async fn counts(url: &str) -> Result<Value, String> {
    let pool = PgPool::connect(url).await.map_err(error)?;
    let mut counts = serde_json::Map::new();
    for table in TABLES {
        let row = pool
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await
            .map_err(error)?;
        counts.insert(
            table.to_owned(),
            json!(row.try_get::<_, i64>(0).map_err(error)?),
        );
    }
    Ok(Value::Object(counts))
}
