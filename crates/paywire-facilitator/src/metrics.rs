//! A handful of Prometheus metrics, kept by hand (no exporter dependency):
//! requests by route and status, verify/settle outcomes by reason, and a
//! settle latency histogram. Rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the settle latency histogram buckets.
const SETTLE_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    verify: BTreeMap<(String, String), u64>,
    settle: BTreeMap<(String, String), u64>,
    settle_buckets: [u64; SETTLE_BUCKETS.len()],
    settle_count: u64,
    settle_sum: f64,
    unresolved: u64,
    recovered: BTreeMap<String, u64>,
    rate_limited: BTreeMap<String, u64>,
    bazaar: BTreeMap<String, u64>,
}

/// The facilitator's metrics registry.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    fn update(&self, f: impl FnOnce(&mut Inner)) {
        // A poisoned lock only means a panic elsewhere mid-update; counters stay usable.
        let mut guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard);
    }

    /// Counts one HTTP request on `route` answered with `status`.
    pub fn request(&self, route: &str, status: u16) {
        self.update(|m| *m.requests.entry((route.to_owned(), status)).or_default() += 1);
    }

    /// Counts one verify outcome (`valid`, `invalid`, `malformed`, `error`)
    /// with its reason.
    pub fn verify(&self, outcome: &str, reason: &str) {
        self.update(|m| {
            *m.verify
                .entry((outcome.to_owned(), reason.to_owned()))
                .or_default() += 1;
        });
    }

    /// Counts one bazaar cataloging outcome (`cataloged`, `rejected` by
    /// validation, `unconfirmed` by the resource's origin, `error`).
    pub fn bazaar(&self, outcome: &str) {
        self.update(|m| *m.bazaar.entry(outcome.to_owned()).or_default() += 1);
    }

    /// Counts one settle outcome (`confirmed`, `failed`, `pending`, `cached`,
    /// `replay`, `malformed`, `error`, `conflict`) with its reason.
    pub fn settle(&self, outcome: &str, reason: &str) {
        self.update(|m| {
            *m.settle
                .entry((outcome.to_owned(), reason.to_owned()))
                .or_default() += 1;
        });
    }

    /// Records the duration of one scheme settlement.
    pub fn settle_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        self.update(|m| {
            for (bucket, bound) in m.settle_buckets.iter_mut().zip(SETTLE_BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            m.settle_count += 1;
            m.settle_sum += seconds;
        });
    }

    /// Sets the number of settlements without a final outcome (seen by the
    /// last reconciliation pass).
    pub fn set_unresolved(&self, count: u64) {
        self.update(|m| m.unresolved = count);
    }

    /// Counts one settlement re-run by recovery, by resulting state
    /// (`confirmed`, `failed`, `pending`, `error`).
    pub fn recovered(&self, outcome: &str) {
        self.update(|m| *m.recovered.entry(outcome.to_owned()).or_default() += 1);
    }

    /// Counts one request refused by a rate limit (`ip` or `payer`).
    pub fn rate_limited(&self, limit: &str) {
        self.update(|m| *m.rate_limited.entry(limit.to_owned()).or_default() += 1);
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.update(|m| {
            let _ = writeln!(
                out,
                "# HELP x402_http_requests_total HTTP requests by route and status.\n# TYPE x402_http_requests_total counter"
            );
            for ((route, status), count) in &m.requests {
                let _ = writeln!(
                    out,
                    "x402_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                    escape(route)
                );
            }
            for (name, help, map) in [
                ("x402_verify_total", "Verify outcomes by reason.", &m.verify),
                ("x402_settle_total", "Settle outcomes by reason.", &m.settle),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for ((outcome, reason), count) in map {
                    let _ = writeln!(
                        out,
                        "{name}{{outcome=\"{}\",reason=\"{}\"}} {count}",
                        escape(outcome),
                        escape(reason)
                    );
                }
            }
            let _ = writeln!(
                out,
                "# HELP x402_settlements_unresolved Settlements without a final outcome (received, submitted, pending).\n# TYPE x402_settlements_unresolved gauge\nx402_settlements_unresolved {}",
                m.unresolved
            );
            for (name, help, label, map) in [
                (
                    "x402_recovered_total",
                    "Settlements re-run by recovery, by resulting state.",
                    "outcome",
                    &m.recovered,
                ),
                (
                    "x402_rate_limited_total",
                    "Requests refused by a rate limit.",
                    "limit",
                    &m.rate_limited,
                ),
                (
                    "x402_bazaar_declarations_total",
                    "Bazaar declarations of settled payments, by outcome.",
                    "outcome",
                    &m.bazaar,
                ),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (value, count) in map {
                    let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {count}", escape(value));
                }
            }
            let name = "x402_settle_duration_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} Time spent settling through the scheme.\n# TYPE {name} histogram"
            );
            for (count, bound) in m.settle_buckets.iter().zip(SETTLE_BUCKETS) {
                let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", m.settle_count);
            let _ = writeln!(out, "{name}_sum {}", m.settle_sum);
            let _ = writeln!(out, "{name}_count {}", m.settle_count);
        });
        out
    }
}

/// The wire name of a reason (`insufficient_funds`), `""` for none.
pub(crate) fn reason_code(reason: Option<&paywire_core::ErrorReason>) -> String {
    reason
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let metrics = Metrics::default();
        metrics.request("/settle", 200);
        metrics.request("/settle", 200);
        metrics.verify("invalid", "insufficient_funds");
        metrics.settle("confirmed", "");
        metrics.settle_latency(Duration::from_millis(300));
        metrics.set_unresolved(3);
        metrics.recovered("confirmed");
        metrics.rate_limited("ip");
        let text = metrics.render();
        assert!(text.contains("x402_settlements_unresolved 3"));
        assert!(text.contains("x402_recovered_total{outcome=\"confirmed\"} 1"));
        assert!(text.contains("x402_rate_limited_total{limit=\"ip\"} 1"));
        assert!(text.contains("x402_http_requests_total{route=\"/settle\",status=\"200\"} 2"));
        assert!(
            text.contains("x402_verify_total{outcome=\"invalid\",reason=\"insufficient_funds\"} 1")
        );
        assert!(text.contains("x402_settle_duration_seconds_bucket{le=\"0.25\"} 0"));
        assert!(text.contains("x402_settle_duration_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("x402_settle_duration_seconds_count 1"));
    }
}
