//! The facilitator's Prometheus metrics, kept in typed `prometheus-client`
//! families and encoded by it (OpenMetrics text, or the classic Prometheus
//! text format for scrapers that do not ask for OpenMetrics).
//!
//! Every label value is bounded: routes are the router's patterns, networks
//! and schemes are those the facilitator settles (else `other`: the payload
//! is the attacker's), reasons are machine codes from a bounded set (else
//! `other`), and RPC endpoints are named by scheme, host and port only.
//! Values read at scrape time (ledger states, signer balances, RPC errors,
//! pool use) are handed in by the `/metrics` handler ([`ScrapeData`]).
//! The list of series is in `docs/facilitator-operators.md`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use paywire_core::{ErrorReason, RpcErrorCount};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ledger::{PoolStatus, SettlementState};

/// `Content-Type` of the OpenMetrics text format (what
/// `prometheus-client`'s `text::encode` writes).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `Content-Type` of the classic Prometheus text format (version 0.0.4).
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The label value of a network, scheme or reason that may not be shown.
pub const OTHER: &str = "other";

/// Upper bounds (seconds) of the settle latency histogram buckets.
const SETTLE_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Upper bounds (seconds) of the verify latency histogram buckets.
const VERIFY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Scheme-specific reason codes kept as labels beyond the core's generic
/// ones; later codes are counted as `other`.
const MAX_EXTRA_REASONS: usize = 64;

/// Longest reason code kept as a label.
const MAX_REASON_LEN: usize = 64;

/// Every ledger state, so that a state without rows shows as 0.
const STATES: [SettlementState; 5] = [
    SettlementState::Received,
    SettlementState::Submitted,
    SettlementState::Pending,
    SettlementState::Confirmed,
    SettlementState::Failed,
];

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// OpenMetrics 1.0 text ([`OPENMETRICS_CONTENT_TYPE`]).
    OpenMetrics,
    /// Prometheus text 0.0.4 ([`TEXT_CONTENT_TYPE`]).
    Text,
}

impl Format {
    /// The format a scraper asks for in its `Accept` header: OpenMetrics
    /// when it names it (Prometheus does), else the classic text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Text,
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// The `network` and `scheme` labels of a payment: ones the facilitator
/// settles, or [`OTHER`] for both (see
/// [`LedgeredFacilitator::payment_kind`](crate::LedgeredFacilitator::payment_kind)).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PaymentKind {
    network: String,
    scheme: String,
}

impl PaymentKind {
    /// A payment of no kind the facilitator settles, or not parsed.
    pub fn other() -> Self {
        Self {
            network: OTHER.to_owned(),
            scheme: OTHER.to_owned(),
        }
    }

    /// A supported (network, scheme): the caller checked it.
    pub(crate) fn supported(network: String, scheme: String) -> Self {
        Self { network, scheme }
    }

    /// The `network` label.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The `scheme` label.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
    reason: String,
    network: String,
    scheme: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: String,
}

type Histograms = Family<PaymentKind, Histogram, fn() -> Histogram>;

fn settle_histogram() -> Histogram {
    Histogram::new(SETTLE_BUCKETS)
}

fn verify_histogram() -> Histogram {
    Histogram::new(VERIFY_BUCKETS)
}

/// The native balance of one settlement signer, read at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScrapedBalance {
    pub(crate) network: String,
    pub(crate) signer: String,
    pub(crate) unit: &'static str,
    /// In the unit; a float, as Prometheus keeps every value.
    pub(crate) balance: f64,
}

/// What the `/metrics` handler reads just before encoding.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScrapeData {
    /// Ledger rows per state (`None`: the store cannot say).
    pub(crate) ledger_states: Option<Vec<(SettlementState, u64)>>,
    pub(crate) balances: Vec<ScrapedBalance>,
    /// Per network, the failures its plugin counted.
    pub(crate) rpc_errors: Vec<(String, RpcErrorCount)>,
    pub(crate) pool: Option<PoolStatus>,
}

/// The facilitator's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    verify: Family<OutcomeLabels, Counter>,
    settle: Family<OutcomeLabels, Counter>,
    verify_duration: Histograms,
    settle_duration: Histograms,
    settled_amount: Family<PaymentKind, Counter>,
    unresolved: Gauge,
    recovered: Family<OutcomeLabel, Counter>,
    rate_limited: Family<LimitLabel, Counter>,
    bazaar: Family<OutcomeLabel, Counter>,
    scraped: Arc<Mutex<ScrapeData>>,
    extra_reasons: Mutex<HashSet<String>>,
    ledger_states: Mutex<Option<CachedStates>>,
}

/// Ledger rows per state, and when they were counted.
type CachedStates = (Instant, Option<Vec<(SettlementState, u64)>>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("paywire");
        let metrics = Self {
            requests: Family::default(),
            verify: Family::default(),
            settle: Family::default(),
            verify_duration: Family::new_with_constructor(verify_histogram),
            settle_duration: Family::new_with_constructor(settle_histogram),
            settled_amount: Family::default(),
            unresolved: Gauge::default(),
            recovered: Family::default(),
            rate_limited: Family::default(),
            bazaar: Family::default(),
            scraped: Arc::default(),
            extra_reasons: Mutex::default(),
            ledger_states: Mutex::default(),
            registry: Registry::default(),
        };
        metrics.register(&mut registry);
        Self {
            registry,
            ..metrics
        }
    }
}

/// A lock that a panic elsewhere mid-update did not make unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "HTTP requests by route and status.",
            self.requests.clone(),
        );
        registry.register(
            "verify",
            "Verify outcomes by reason, network and scheme.",
            self.verify.clone(),
        );
        registry.register(
            "settle",
            "Settle outcomes by reason, network and scheme.",
            self.settle.clone(),
        );
        registry.register(
            "verify_duration_seconds",
            "Time spent verifying through the scheme.",
            self.verify_duration.clone(),
        );
        registry.register(
            "settle_duration_seconds",
            "Time spent settling through the scheme.",
            self.settle_duration.clone(),
        );
        registry.register(
            "settled_amount",
            "Atomic units settled (confirmed), by network and scheme: the settlement answer's amount \
             (what a usage-based payment was charged), else the requirements' amount. Sums every \
             asset of the network and scheme.",
            self.settled_amount.clone(),
        );
        registry.register(
            "settlements_unresolved",
            "Settlements without a final outcome (received, submitted, pending) seen by the last reconciliation pass.",
            self.unresolved.clone(),
        );
        registry.register(
            "recovered",
            "Settlements re-run by recovery, by resulting state.",
            self.recovered.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit.",
            self.rate_limited.clone(),
        );
        registry.register(
            "bazaar_declarations",
            "Bazaar declarations of settled payments, by outcome.",
            self.bazaar.clone(),
        );
        registry.register_collector(Box::new(Scraped(Arc::clone(&self.scraped))));
    }

    /// Counts one HTTP request on `route` (the router's pattern) answered
    /// with `status`.
    pub fn request(&self, route: &str, status: u16) {
        let labels = RequestLabels {
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts one verify outcome (`valid`, `invalid`, `malformed`, `error`,
    /// `conflict`) with its reason code.
    pub fn verify(&self, kind: &PaymentKind, outcome: &'static str, reason: &str) {
        let labels = self.outcome_labels(kind, outcome, reason);
        self.verify.get_or_create(&labels).inc();
    }

    /// Records the duration of one scheme verification.
    pub fn verify_latency(&self, kind: &PaymentKind, elapsed: Duration) {
        self.verify_duration
            .get_or_create(kind)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one settle outcome (`confirmed`, `failed`, `pending`, `cached`,
    /// `replay`, `malformed`, `error`, `conflict`, `refused`, `overloaded`)
    /// with its reason code (for `cached`, the recorded state).
    pub fn settle(&self, kind: &PaymentKind, outcome: &'static str, reason: &str) {
        let labels = self.outcome_labels(kind, outcome, reason);
        self.settle.get_or_create(&labels).inc();
    }

    /// Adds one confirmed settlement's `amount` (atomic units; saturating
    /// at `u64::MAX`) to the settled volume of `kind`.
    pub fn settled_amount(&self, kind: &PaymentKind, amount: &paywire_core::AtomicAmount) {
        let amount = amount
            .to_u128()
            .and_then(|amount| u64::try_from(amount).ok())
            .unwrap_or(u64::MAX);
        self.settled_amount.get_or_create(kind).inc_by(amount);
    }

    /// Records the duration of one scheme settlement.
    pub fn settle_latency(&self, kind: &PaymentKind, elapsed: Duration) {
        self.settle_duration
            .get_or_create(kind)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one bazaar cataloging outcome (`cataloged`, `rejected` by
    /// validation, `unconfirmed` by the resource's origin, `error`).
    pub fn bazaar(&self, outcome: &str) {
        let labels = OutcomeLabel {
            outcome: outcome.to_owned(),
        };
        self.bazaar.get_or_create(&labels).inc();
    }

    /// Sets the number of settlements without a final outcome (seen by the
    /// last reconciliation pass).
    pub fn set_unresolved(&self, count: u64) {
        self.unresolved
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one settlement re-run by recovery, by resulting state
    /// (`confirmed`, `failed`, `pending`, `error`).
    pub fn recovered(&self, outcome: &str) {
        let labels = OutcomeLabel {
            outcome: outcome.to_owned(),
        };
        self.recovered.get_or_create(&labels).inc();
    }

    /// Counts one request refused by a rate limit (`ip` or `payer`).
    pub fn rate_limited(&self, limit: &str) {
        let labels = LimitLabel {
            limit: limit.to_owned(),
        };
        self.rate_limited.get_or_create(&labels).inc();
    }

    /// Replaces the values read at scrape time.
    pub(crate) fn set_scraped(&self, data: ScrapeData) {
        *lock(&self.scraped) = data;
    }

    /// The ledger's state counts, if counted less than `max_age` ago.
    #[allow(clippy::option_option)] // Outer: cached or not; inner: the store's answer.
    pub(crate) fn cached_ledger_states(
        &self,
        max_age: Duration,
    ) -> Option<Option<Vec<(SettlementState, u64)>>> {
        let cached = lock(&self.ledger_states);
        let (at, states) = cached.as_ref()?;
        (at.elapsed() < max_age).then(|| states.clone())
    }

    /// Keeps the ledger's state counts for [`Self::cached_ledger_states`].
    pub(crate) fn cache_ledger_states(&self, states: Option<Vec<(SettlementState, u64)>>) {
        *lock(&self.ledger_states) = Some((Instant::now(), states));
    }

    /// Every metric in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut text = String::new();
        let encoded = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)
            }
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            }
        };
        // Writing to a String fails only if an encoder reports an error,
        // which ours never do; an empty scrape beats a panic.
        if encoded.is_err() {
            tracing::error!("metrics could not be encoded");
            text.clear();
        }
        text
    }

    fn outcome_labels(
        &self,
        kind: &PaymentKind,
        outcome: &'static str,
        reason: &str,
    ) -> OutcomeLabels {
        OutcomeLabels {
            outcome,
            reason: self.reason_label(reason),
            network: kind.network.clone(),
            scheme: kind.scheme.clone(),
        }
    }

    /// `reason` as a label: empty, a generic code, or one of the first
    /// [`MAX_EXTRA_REASONS`] scheme codes seen; anything else (text that is
    /// not a code, or one code too many) is [`OTHER`]. Plugins' codes are
    /// constants, but an upstream facilitator's answer is not.
    fn reason_label(&self, reason: &str) -> String {
        let is_code = reason.len() <= MAX_REASON_LEN
            && reason
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !is_code {
            return OTHER.to_owned();
        }
        if reason.is_empty() || ErrorReason::GENERIC.iter().any(|g| g.as_str() == reason) {
            return reason.to_owned();
        }
        let mut extra = lock(&self.extra_reasons);
        if extra.contains(reason) || extra.len() < MAX_EXTRA_REASONS {
            extra.insert(reason.to_owned());
            return reason.to_owned();
        }
        OTHER.to_owned()
    }
}

/// The wire name of a reason (`insufficient_funds`), `""` for none.
pub(crate) fn reason_code(reason: Option<&ErrorReason>) -> String {
    reason.map(|r| r.as_str().to_owned()).unwrap_or_default()
}

/// `host` as `scheme://host[:port]` at most: a plugin is asked to name
/// endpoints so, and this keeps a careless one from publishing a path,
/// query or user info (where providers put API keys).
fn bare_host(host: &str) -> String {
    let (scheme, rest) = host.split_once("://").unwrap_or(("", host));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, after)| after);
    if scheme.is_empty() {
        authority.to_owned()
    } else {
        format!("{scheme}://{authority}")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BalanceLabels {
    network: String,
    signer: String,
    unit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcErrorLabels {
    network: String,
    host: String,
    kind: &'static str,
}

/// The values read at scrape time, encoded as the registry is.
#[derive(Debug)]
struct Scraped(Arc<Mutex<ScrapeData>>);

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let data = lock(&self.0).clone();
        if let Some(states) = &data.ledger_states {
            let mut family = encoder.encode_descriptor(
                "ledger_settlements",
                "Settlements in the ledger by state (the ledger may be shared by several instances).",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for state in STATES {
                let count = states
                    .iter()
                    .filter(|(s, _)| *s == state)
                    .map(|(_, n)| *n)
                    .sum::<u64>();
                let labels = StateLabel {
                    state: state.as_str(),
                };
                ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        if !data.balances.is_empty() {
            let mut family = encoder.encode_descriptor(
                "signer_balance",
                "Native balance of each settlement signer, in the chain's smallest unit.",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for balance in &data.balances {
                let labels = BalanceLabels {
                    network: balance.network.clone(),
                    signer: balance.signer.clone(),
                    unit: balance.unit,
                };
                ConstGauge::new(balance.balance).encode(family.encode_family(&labels)?)?;
            }
        }
        if !data.rpc_errors.is_empty() {
            let mut family = encoder.encode_descriptor(
                "rpc_errors",
                "RPC failures per chain, endpoint host and kind.",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (network, error) in &data.rpc_errors {
                let labels = RpcErrorLabels {
                    network: network.clone(),
                    host: bare_host(&error.host),
                    kind: error.kind.as_str(),
                };
                ConstCounter::new(error.count).encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(pool) = data.pool {
            encode_pool(&mut encoder, pool)?;
        }
        Ok(())
    }
}

/// `db_pool_connections{state}` and `db_pool_waiting`.
fn encode_pool(encoder: &mut DescriptorEncoder, pool: PoolStatus) -> Result<(), std::fmt::Error> {
    let gauge = |n: usize| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
    let mut family = encoder.encode_descriptor(
        "db_pool_connections",
        "Database pool connections: open, idle, in use, and the maximum.",
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    let in_use = pool.size.saturating_sub(pool.available);
    for (state, n) in [
        ("open", pool.size),
        ("idle", pool.available),
        ("in_use", in_use),
        ("max", pool.max),
    ] {
        gauge(n).encode(family.encode_family(&StateLabel { state })?)?;
    }
    let waiting = encoder.encode_descriptor(
        "db_pool_waiting",
        "Tasks waiting for a database connection.",
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    gauge(pool.waiting).encode(waiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind() -> PaymentKind {
        PaymentKind::supported("eip155:8453".into(), "exact".into())
    }

    #[test]
    fn renders_counters_gauges_and_histograms_in_both_formats() {
        let metrics = Metrics::default();
        metrics.request("/settle", 200);
        metrics.request("/settle", 200);
        metrics.verify(&kind(), "invalid", "insufficient_funds");
        metrics.settle(&kind(), "confirmed", "");
        metrics.settle_latency(&kind(), Duration::from_millis(300));
        metrics.set_unresolved(3);
        metrics.recovered("confirmed");
        metrics.rate_limited("ip");
        for format in [Format::OpenMetrics, Format::Text] {
            let text = metrics.render(format);
            assert!(text.contains("paywire_settlements_unresolved 3"), "{text}");
            assert!(text.contains("paywire_recovered_total{outcome=\"confirmed\"} 1"));
            assert!(text.contains("paywire_rate_limited_total{limit=\"ip\"} 1"));
            assert!(
                text.contains("paywire_http_requests_total{route=\"/settle\",status=\"200\"} 2")
            );
            assert!(text.contains(
                "paywire_verify_total{outcome=\"invalid\",reason=\"insufficient_funds\",network=\"eip155:8453\",scheme=\"exact\"} 1"
            ));
            assert!(text.contains(
                "paywire_settle_duration_seconds_bucket{le=\"0.5\",network=\"eip155:8453\",scheme=\"exact\"} 1"
            ) || text.contains(
                "paywire_settle_duration_seconds_bucket{network=\"eip155:8453\",scheme=\"exact\",le=\"0.5\"} 1"
            ), "{text}");
        }
        assert!(metrics.render(Format::OpenMetrics).ends_with("# EOF\n"));
        assert!(!metrics.render(Format::Text).contains("# EOF"));
    }

    #[test]
    fn reasons_that_are_not_codes_or_too_many_become_other() {
        let metrics = Metrics::default();
        assert_eq!(metrics.reason_label(""), "");
        assert_eq!(
            metrics.reason_label("insufficient_funds"),
            "insufficient_funds"
        );
        assert_eq!(metrics.reason_label("who \"knows\"\n"), OTHER);
        assert_eq!(metrics.reason_label(&"a".repeat(65)), OTHER);
        for n in 0..MAX_EXTRA_REASONS {
            assert_eq!(
                metrics.reason_label(&format!("code_{n}")),
                format!("code_{n}")
            );
        }
        assert_eq!(metrics.reason_label("one_too_many"), OTHER);
        // A code already admitted stays itself.
        assert_eq!(metrics.reason_label("code_0"), "code_0");
        // Generic codes are never crowded out.
        assert_eq!(metrics.reason_label("invalid_scheme"), "invalid_scheme");
    }

    #[test]
    fn scraped_values_show_as_gauges_and_counters_without_url_secrets() {
        let metrics = Metrics::default();
        metrics.set_scraped(ScrapeData {
            ledger_states: Some(vec![(SettlementState::Confirmed, 4)]),
            balances: vec![ScrapedBalance {
                network: "eip155:8453".into(),
                signer: "0xabc".into(),
                unit: "wei",
                balance: 1.5e18,
            }],
            rpc_errors: vec![(
                "eip155:8453".into(),
                RpcErrorCount::new(
                    "https://user:PASS@node.example:8545/v2/KEY?apikey=QKEY",
                    paywire_core::RpcErrorKind::Timeout,
                    7,
                ),
            )],
            pool: Some(PoolStatus::new(5, 2, 1, 10)),
        });
        let text = metrics.render(Format::OpenMetrics);
        assert!(
            text.contains("paywire_ledger_settlements{state=\"confirmed\"} 4"),
            "{text}"
        );
        assert!(text.contains("paywire_ledger_settlements{state=\"pending\"} 0"));
        assert!(text.contains(
            "paywire_signer_balance{network=\"eip155:8453\",signer=\"0xabc\",unit=\"wei\"} 1.5e18"
        ) || text.contains("unit=\"wei\"} 1500000000000000000"), "{text}");
        assert!(text.contains(
            "paywire_rpc_errors_total{network=\"eip155:8453\",host=\"https://node.example:8545\",kind=\"timeout\"} 7"
        ), "{text}");
        for secret in ["PASS", "KEY", "user"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("paywire_db_pool_connections{state=\"in_use\"} 3"));
        assert!(text.contains("paywire_db_pool_waiting 1"));
    }

    #[test]
    fn bare_host_keeps_scheme_host_and_port_only() {
        assert_eq!(
            bare_host("https://u:p@h.example:1/x?k=v#f"),
            "https://h.example:1"
        );
        assert_eq!(bare_host("h.example/path"), "h.example");
        assert_eq!(bare_host("http://h"), "http://h");
    }
}
