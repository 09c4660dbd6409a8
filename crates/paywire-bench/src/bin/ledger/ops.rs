//! The ledger operations alone, in process: the store calls a successful
//! `/settle` makes, in its order, for fresh settlements; lookups of settled
//! ones; and the periodic jobs' queries. Timed per call, so that a step that
//! grows with the ledger shows without the chain's latency around it.

use std::time::Instant;

use paywire_core::{FacilitatorRequest, SettleResponse};
use paywire_facilitator::Ledger;
use paywire_facilitator::store::{Delivery, SettlementState};
use serde_json::{Value, json};

use super::fill::{SettledRow, Template};

/// Microsecond timings of one operation.
#[derive(Default)]
struct Timings(Vec<u64>);

impl Timings {
    fn to_json(&self) -> Value {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let at = |p: f64| {
            sorted
                .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        let mean = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().sum::<u64>() as f64 / sorted.len() as f64
        };
        json!({"calls": sorted.len(), "mean_us": mean, "p50_us": at(0.5), "p99_us": at(0.99)})
    }
}

macro_rules! timed {
    ($timings:expr, $call:expr) => {{
        let began = Instant::now();
        let out = $call.await.map_err(|e| e.to_string())?;
        $timings.0.push(began.elapsed().as_micros() as u64);
        out
    }};
}

/// A template's request and response, decoded as the facilitator has them.
fn decoded(row: &SettledRow) -> Result<(FacilitatorRequest, SettleResponse, String), String> {
    let request = serde_json::from_str(row.request.as_deref().ok_or("a row without request")?)
        .map_err(|e| e.to_string())?;
    let response = serde_json::from_str(row.response.as_deref().ok_or("a row without response")?)
        .map_err(|e| e.to_string())?;
    let spend = row
        .bindings
        .iter()
        .map(|(id, _)| id.clone())
        .find(|id| id.starts_with("spend:"))
        .ok_or("a row without spend binding")?;
    Ok((request, response, spend))
}

/// Runs `settlements` fresh settlements' ledger steps and as many lookups of
/// the settled rows `existing` on `ledger`, then each periodic query once.
pub async fn time_operations(
    ledger: &Ledger,
    template: &Template,
    existing: &[SettledRow],
    settlements: usize,
) -> Result<Value, String> {
    let names = [
        "get_new",
        "spend_binding_new",
        "mark_received",
        "mark_submitted",
        "claim_transaction",
        "claim_spend",
        "record_outcome",
        "mark_delivered",
        "get_settled",
        "spend_binding_settled",
    ];
    let mut timings: Vec<Timings> = names.iter().map(|_| Timings::default()).collect();
    let whole = Instant::now();
    for i in 0..settlements {
        let row = template.copy(paywire_now());
        let (request, mut response, spend) = decoded(&row)?;
        let key = row.fingerprint.as_str();
        let transaction = row.transaction_hash.clone().unwrap_or_default();
        response.transaction.clone_from(&transaction);
        timed!(timings[0], ledger.get(key));
        timed!(timings[1], ledger.payment_id_binding(&spend));
        timed!(timings[2], ledger.mark_received(key, &request, None));
        timed!(timings[3], ledger.mark_submitted(key, &transaction));
        timed!(timings[4], ledger.claim_transaction(&transaction, key));
        timed!(timings[5], ledger.claim_payment_id(&spend, key));
        timed!(timings[6], ledger.record_outcome(key, &response));
        let delivery = Delivery {
            state: SettlementState::Confirmed,
            caller: None,
            payment_id: None,
            at: u64::try_from(paywire_now()).unwrap_or(0),
        };
        timed!(timings[7], ledger.mark_delivered(key, &delivery));
        if !existing.is_empty() {
            let settled = &existing[i % existing.len()];
            timed!(timings[8], ledger.get(&settled.fingerprint));
            if let Some((id, _)) = settled.bindings.first() {
                timed!(timings[9], ledger.payment_id_binding(id));
            }
        }
    }
    let settle_path_seconds = whole.elapsed().as_secs_f64();
    let mut report = serde_json::Map::new();
    for (name, timing) in names.iter().zip(&timings) {
        report.insert((*name).to_owned(), timing.to_json());
    }
    let mut periodic: [Timings; 4] = Default::default();
    timed!(periodic[0], ledger.unresolved());
    timed!(periodic[1], ledger.state_counts());
    let now = u64::try_from(paywire_now()).unwrap_or(0);
    // The retention purge with a cutoff of now: every failure counts as old.
    timed!(periodic[2], ledger.purge_unsent_failures(now));
    // The same purge again at once: its floor when nothing is new (the first
    // run moved the cursor to `now`), which every run pays.
    timed!(periodic[3], ledger.purge_unsent_failures(now));
    report.insert("unresolved".into(), periodic[0].to_json());
    report.insert("state_counts".into(), periodic[1].to_json());
    report.insert("purge_unsent_failures".into(), periodic[2].to_json());
    report.insert("purge_unsent_failures_again".into(), periodic[3].to_json());
    report.insert("settle_path_seconds".into(), json!(settle_path_seconds));
    Ok(Value::Object(report))
}

/// Unix seconds now.
pub fn paywire_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
