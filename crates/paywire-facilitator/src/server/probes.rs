//! `GET /ready` and `GET /metrics`, over the chain probes the plugins gave:
//! whether each settled network is reachable and the one configured, the
//! native balance of each settlement signer and the RPC failures counted;
//! and over the ledger: rows per state and the use of its pool.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use paywire_core::{ChainProbe, RpcErrorCount};
use serde_json::json;

use super::AppState;
use crate::ledger::SettlementState;
use crate::metrics::{Format, ScrapeData, ScrapedBalance};

/// How long a `/ready` probe may take per chain.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a `/metrics` scrape waits for one chain's signer balances, or
/// for the ledger's state counts.
const BALANCE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the ledger's state counts are reused by later scrapes.
const LEDGER_STATES_MAX_AGE: Duration = Duration::from_secs(5);

/// `GET /ready`: 200 when every chain answers as configured, else 503
/// naming the kind of failure per chain (the detail goes to the log).
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    let mut chains = Vec::with_capacity(state.probes.len());
    let mut all_ok = true;
    for probe in state.probes.iter() {
        let problem = match tokio::time::timeout(PROBE_TIMEOUT, probe.ready()).await {
            Ok(Ok(())) => None,
            Ok(Err(problem)) => Some(publishable(&problem)),
            Err(_) => Some(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        };
        all_ok &= problem.is_none();
        let network = probe.network();
        chains.push(match problem {
            None => json!({"network": network, "ok": true}),
            Some(error) => json!({"network": network, "ok": false, "error": error}),
        });
    }
    if all_ok {
        let body = json!({"status": "ready", "chains": chains});
        return (StatusCode::OK, Json(body)).into_response();
    }
    tracing::warn!(?chains, "not ready");
    let body = json!({
        "error": "not_ready",
        "message": "one or more chains are unreachable or misconfigured",
        "chains": chains,
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// `GET /metrics`: the registry, with the values read at scrape time
/// (ledger states, signer balances, RPC errors, pool use), in OpenMetrics
/// when the scraper asks for it (Prometheus does), else the classic text
/// format.
pub(super) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let data = ScrapeData {
        ledger_states: ledger_states(&state).await,
        balances: signer_balances(&state.probes).await,
        rpc_errors: rpc_errors(&state.probes),
        pool: state.ledger().pool_status(),
    };
    state.metrics.set_scraped(data);
    let text = state.metrics.render(format);
    ([(header::CONTENT_TYPE, format.content_type())], text).into_response()
}

/// The ledger's rows per state: counted at most every
/// [`LEDGER_STATES_MAX_AGE`] (one `GROUP BY` over the state index), so
/// that frequent scrapes, or several scrapers, do not load the database.
async fn ledger_states(state: &AppState) -> Option<Vec<(SettlementState, u64)>> {
    if let Some(cached) = state.metrics.cached_ledger_states(LEDGER_STATES_MAX_AGE) {
        return cached;
    }
    let counted = match tokio::time::timeout(BALANCE_TIMEOUT, state.ledger().state_counts()).await {
        Ok(Ok(counts)) => counts,
        Ok(Err(error)) => {
            tracing::warn!(%error, "ledger states could not be counted for /metrics");
            None
        }
        Err(_) => {
            tracing::warn!("ledger states not counted within the scrape's time");
            None
        }
    };
    state.metrics.cache_ledger_states(counted.clone());
    counted
}

/// The native (gas) balance of every settlement signer, read when scraped
/// so an operator can alert before a signer runs dry. A chain that does
/// not answer within two seconds is left out rather than delaying the
/// scrape.
async fn signer_balances(probes: &[Arc<dyn ChainProbe>]) -> Vec<ScrapedBalance> {
    let mut scraped = Vec::new();
    for probe in probes {
        let Ok(balances) = tokio::time::timeout(BALANCE_TIMEOUT, probe.signer_balances()).await
        else {
            continue;
        };
        for balance in balances {
            // Prometheus keeps floats; wei lose digits beyond 2^53, not magnitude.
            let Ok(value) = balance.balance.to_string().parse::<f64>() else {
                continue;
            };
            scraped.push(ScrapedBalance {
                network: probe.network().to_string(),
                signer: balance.signer,
                unit: probe.balance_unit(),
                balance: value,
            });
        }
    }
    scraped
}

/// The RPC failures each chain's plugin counted, per network.
fn rpc_errors(probes: &[Arc<dyn ChainProbe>]) -> Vec<(String, RpcErrorCount)> {
    probes
        .iter()
        .flat_map(|probe| {
            let network = probe.network().to_string();
            probe
                .rpc_errors()
                .into_iter()
                .map(move |count| (network.clone(), count))
        })
        .collect()
}

/// Longest probe text `/ready` shows.
const MAX_PUBLIC_PROBLEM: usize = 200;

/// A plugin's probe text as the public `/ready` page may show it: plugins
/// are asked to name only the kind of failure, and this keeps a careless one
/// from publishing an RPC URL (where providers put API keys) or a long node
/// message.
fn publishable(problem: &str) -> String {
    let words: Vec<&str> = problem
        .split_whitespace()
        .map(|word| if word.contains("://") { "<URL>" } else { word })
        .collect();
    let text = words.join(" ");
    match text.char_indices().nth(MAX_PUBLIC_PROBLEM) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::publishable;

    #[test]
    fn urls_and_long_texts_never_reach_the_public_page() {
        assert_eq!(
            publishable("node at https://node.example/v2/KEY123 refused"),
            "node at <URL> refused"
        );
        assert_eq!(publishable("RPC error -32001"), "RPC error -32001");
        let long = "é".repeat(500);
        assert_eq!(publishable(&long).chars().count(), 201);
    }
}
