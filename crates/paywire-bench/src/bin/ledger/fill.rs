//! The rows one successful `/settle` leaves in the ledger, and copies of
//! them for the bulk fill: each copy keeps a real settlement's shape (the
//! same request and response JSON, the same bindings) with fresh values of
//! the same length wherever a settlement is unique (fingerprint, transaction
//! hash, authorization nonce and signature), and its own timestamps.

use alloy_primitives::hex;
use serde_json::Value;

/// One settlement with the rows that point at it, as `/settle` left them.
#[derive(Debug, Clone)]
pub struct SettledRow {
    pub fingerprint: String,
    pub network: String,
    pub payment_id: Option<String>,
    pub state: String,
    pub transaction_hash: Option<String>,
    pub response: Option<String>,
    pub last_error: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub request: Option<String>,
    pub delivered_state: Option<String>,
    pub delivered_to: Option<String>,
    pub delivered_payment_id: Option<String>,
    pub delivered_at: Option<i64>,
    /// `payment_ids` rows bound to this fingerprint (payment identifier, and
    /// the authorization's `spend:` binding): id and `created_at`.
    pub bindings: Vec<(String, i64)>,
    /// `settled_transactions` rows claimed by this fingerprint.
    pub transactions: Vec<(String, i64)>,
}

/// Random lowercase hex of `len` characters (`len` even), with `0x` when
/// `prefixed`: the same length as the value it replaces.
fn random_hex(len: usize, prefixed: bool) -> String {
    let bytes: Vec<u8> = (0..len / 2).map(|_| rand_byte()).collect();
    let body = hex::encode(bytes);
    if prefixed { format!("0x{body}") } else { body }
}

fn rand_byte() -> u8 {
    // B256::random is the only randomness source the bench already links.
    thread_local! {
        static POOL: std::cell::RefCell<(alloy_primitives::B256, usize)> =
            std::cell::RefCell::new((alloy_primitives::B256::random(), 0));
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.1 == 32 {
            *pool = (alloy_primitives::B256::random(), 0);
        }
        let byte = pool.0[pool.1];
        pool.1 += 1;
        byte
    })
}

/// A random settlement key (64 hex characters, as fingerprints are).
pub fn random_key() -> String {
    random_hex(64, false)
}

/// A fresh value shaped like `old` (same length, same `0x` prefix).
fn fresh_like(old: &str) -> String {
    match old.strip_prefix("0x") {
        Some(body) => random_hex(body.len(), true),
        None => random_hex(old.len(), false),
    }
}

/// A template: a real settled row and the values unique to it.
#[derive(Debug, Clone)]
pub struct Template {
    row: SettledRow,
    unique: Vec<String>,
}

impl Template {
    /// Finds the values unique to `row`: its fingerprint, the transaction
    /// hashes it names, and the nonce and signature of its authorization.
    pub fn new(row: SettledRow) -> Self {
        let mut unique = vec![row.fingerprint.clone()];
        unique.extend(row.transaction_hash.clone());
        unique.extend(row.transactions.iter().map(|(hash, _)| hash.clone()));
        if let Some(request) = row
            .request
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
        {
            for pointer in [
                "/paymentPayload/payload/authorization/nonce",
                "/paymentPayload/payload/signature",
            ] {
                if let Some(text) = request.pointer(pointer).and_then(Value::as_str) {
                    unique.push(text.to_owned());
                }
            }
        }
        unique.sort();
        unique.dedup();
        // Longest first, so that no value is replaced inside a longer one.
        unique.sort_by_key(|value| std::cmp::Reverse(value.len()));
        Self { row, unique }
    }

    /// A copy created at `created_at`, with fresh unique values.
    pub fn copy(&self, created_at: i64) -> SettledRow {
        let swaps: Vec<(&str, String)> = self
            .unique
            .iter()
            .map(|old| (old.as_str(), fresh_like(old)))
            .collect();
        let swap = |text: &str| {
            let mut text = text.to_owned();
            for (old, new) in &swaps {
                if text.contains(old) {
                    text = text.replace(old, new);
                }
            }
            text
        };
        let swap_opt = |text: &Option<String>| text.as_deref().map(swap);
        let shift = created_at - self.row.created_at;
        let row = &self.row;
        SettledRow {
            fingerprint: swap(&row.fingerprint),
            network: row.network.clone(),
            payment_id: swap_opt(&row.payment_id),
            state: row.state.clone(),
            transaction_hash: swap_opt(&row.transaction_hash),
            response: swap_opt(&row.response),
            last_error: row.last_error.clone(),
            attempts: row.attempts,
            created_at,
            updated_at: row.updated_at + shift,
            request: swap_opt(&row.request),
            delivered_state: row.delivered_state.clone(),
            delivered_to: row.delivered_to.clone(),
            delivered_payment_id: swap_opt(&row.delivered_payment_id),
            delivered_at: row.delivered_at.map(|at| at + shift),
            bindings: row
                .bindings
                .iter()
                .map(|(id, at)| (swap(id), at + shift))
                .collect(),
            transactions: row
                .transactions
                .iter()
                .map(|(hash, at)| (swap(hash), at + shift))
                .collect(),
        }
    }
}

/// Generates the `rows` copies in batches of `batch`: settlement `i` is
/// created `span_seconds * i / rows` after `start` (spread over the span),
/// from template `i % templates.len()`.
pub struct Generator<'a> {
    templates: &'a [Template],
    rows: usize,
    next: usize,
    start: i64,
    span_seconds: i64,
}

impl<'a> Generator<'a> {
    pub fn new(templates: &'a [Template], rows: usize, start: i64, span_seconds: i64) -> Self {
        Self {
            templates,
            rows,
            next: 0,
            start,
            span_seconds,
        }
    }

    /// The next at most `batch` rows (empty when done).
    pub fn batch(&mut self, batch: usize) -> Vec<SettledRow> {
        let end = (self.next + batch).min(self.rows);
        let rows = (self.next..end)
            .map(|i| {
                let offset = self.span_seconds.saturating_mul(i as i64) / (self.rows.max(1) as i64);
                self.templates[i % self.templates.len()].copy(self.start + offset)
            })
            .collect();
        self.next = end;
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SettledRow {
        SettledRow {
            fingerprint: "ab".repeat(32),
            network: "eip155:31337".into(),
            payment_id: None,
            state: "confirmed".into(),
            transaction_hash: Some(format!("0x{}", "cd".repeat(32))),
            response: Some(format!(r#"{{"transaction":"0x{}"}}"#, "cd".repeat(32))),
            last_error: None,
            attempts: 1,
            created_at: 100,
            updated_at: 102,
            request: Some(format!(
                r#"{{"paymentPayload":{{"payload":{{"authorization":{{"nonce":"0x{}"}},"signature":"0x{}"}}}}}}"#,
                "ee".repeat(32),
                "ff".repeat(65)
            )),
            delivered_state: Some("confirmed".into()),
            delivered_to: None,
            delivered_payment_id: None,
            delivered_at: Some(102),
            bindings: vec![(format!("spend:eip155:31337:0x{}", "ee".repeat(32)), 101)],
            transactions: vec![(format!("0x{}", "cd".repeat(32)), 101)],
        }
    }

    #[test]
    fn a_copy_has_fresh_unique_values_of_the_same_size() {
        let template = Template::new(row());
        let copy = template.copy(1_000);
        let original = row();
        assert_ne!(copy.fingerprint, original.fingerprint);
        assert_eq!(copy.fingerprint.len(), original.fingerprint.len());
        assert_eq!(
            copy.transaction_hash,
            copy.transactions.first().map(|t| t.0.clone())
        );
        let request = copy.request.unwrap_or_default();
        assert_eq!(request.len(), original.request.unwrap_or_default().len());
        assert!(!request.contains(&"ee".repeat(32)) && !request.contains(&"ff".repeat(65)));
        assert!(!copy.bindings[0].0.contains(&"ee".repeat(32)));
        assert_eq!(
            (copy.created_at, copy.updated_at, copy.delivered_at),
            (1_000, 1_002, Some(1_002))
        );
    }
}
