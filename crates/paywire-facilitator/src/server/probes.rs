//! `GET /ready` and `GET /metrics`, over the chain probes the plugins gave:
//! whether each settled network is reachable and the one configured, and
//! the native balance of each settlement signer.

use std::fmt::Write as _;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use paywire_core::ChainProbe;
use serde_json::json;

use super::AppState;

/// How long a `/ready` probe may take per chain.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a `/metrics` scrape waits for one chain's signer balances.
const BALANCE_TIMEOUT: Duration = Duration::from_secs(2);

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

/// `GET /metrics`: the counters, and the signer balances read now.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    text.push_str(&signer_balances(&state.probes).await);
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// A metric name fragment from a plugin's unit name (`wei`, `lamports`).
fn unit_name(unit: &str) -> String {
    unit.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The native (gas) balance of every settlement signer,
/// `x402_signer_balance_<unit>`, read when scraped so an operator can alert
/// before a signer runs dry. A chain that does not answer within two
/// seconds is left out rather than delaying the scrape.
async fn signer_balances(probes: &[std::sync::Arc<dyn ChainProbe>]) -> String {
    // One metric family per unit, each with its HELP and TYPE once.
    let mut families: Vec<(String, String)> = Vec::new();
    for probe in probes {
        let name = format!("x402_signer_balance_{}", unit_name(probe.balance_unit()));
        let index = if let Some(index) = families.iter().position(|(known, _)| *known == name) {
            index
        } else {
            families.push((name.clone(), String::new()));
            families.len() - 1
        };
        let Ok(balances) = tokio::time::timeout(BALANCE_TIMEOUT, probe.signer_balances()).await
        else {
            continue;
        };
        let lines = &mut families[index].1;
        for balance in balances {
            let _ = writeln!(
                lines,
                "{name}{{network=\"{}\",signer=\"{}\"}} {}",
                probe.network(),
                balance.signer,
                balance.balance
            );
        }
    }
    let mut text = String::new();
    for (name, lines) in families {
        let _ = write!(
            text,
            "# HELP {name} Native balance of each settlement signer.\n# TYPE {name} gauge\n{lines}"
        );
    }
    text
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
